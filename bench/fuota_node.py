"""FUOTA on the node (issue 19): a battery node's time in Class C and its radio charge for a typical
update, and the heap the update takes on the 32-bit frozen build against the 64 KB budget.

Class C time: the firmware's own decoder (citynode.fuota.fragmentation, run under CPython) is fed the
fragments ChirpStack sends (gateway.sim.nssim.applayer.data_fragments: M uncoded, then R coded), one
per Class C margin (5 s, ChirpStack's default), with random loss; the node listens from the session
start until the block is complete (citynode.fuota.node stops the window then). Charge: that time at
the radio's receive current (SX1276 11.5 mA as in bench/airtime_budget.py; SX1262 4.6 mA, DC-DC,
datasheet Table 3-4 "Rx DC-DC, LoRa 125 kHz").

Heap: build/micropython-unix32 (citynode frozen, 32-bit) with a 64 KB heap; a ballast the size of a
LoRaWAN node's resident heap (measured here: bin_fill, 20 cycles on the same build and budget) is
allocated first, then citynode.fuota.node.FuotaNode takes the unicast setup, every multicast frame of
the session (10 % of the uncoded fragments lost, 20 % redundancy) and hands the complete block over to
the boot step (fuota.json). The FUOTA peak is the largest live heap above the ballast after any frame
(gc.collect()); the ballast is one block and the harness's own code is compiled into the heap, so the
emulation is somewhat pessimistic. Then the boot step as main.py runs it (citynode.fuota.slots.select:
the package check and the install into app_a, no app built) on the files the session left: in 64 KB,
timed; and in 1 KB steps down from 64 KB, the smallest heap from which on it installs in every larger
one. And package.check alone, timed. Times are the fastest of 3 runs each. The packages are full ones
(`citynode fuota build --full`): the frozen factory app cannot be copied into a slot.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "firmware" / "lib"))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from bench.results import machine, write_section  # noqa: E402
from gateway.field import fuota  # noqa: E402
from gateway.sim.nssim import applayer  # noqa: E402

FROZEN = ROOT / "build" / "micropython-unix32" / "micropython"
SPACING_S = 5  # ChirpStack's multicast_class_c_margin default
RX_MA = {"SX1276": 11.5, "SX1262": 4.6}
GEN = bytes(range(16, 32))
MC_KEY = bytes(range(1, 17))
MC_ADDR = 0x01020304
WALL = 1767225600
GPS = WALL - 315964782


def toa_ms(n: int, dr: int) -> float:
    from citynode.lorawan import airtime, region

    sf, bw = region.dr_params(dr)
    return airtime.time_on_air_ms(n, sf, bw)


def class_c_seconds(size: int, frag: int, redundancy: int, loss: float, seed: int, dr: int = 5) -> float | None:
    """Seconds from the session start to the block's completion on the node (None: never complete)."""
    from citynode.fuota.fragmentation import Fragmentation
    from citynode.fuota.store import RamStore

    rng = random.Random(seed)
    payload = rng.randbytes(size)
    frags = applayer.data_fragments(payload, frag, redundancy, 1)
    m = -(-size // frag)
    f = Fragmentation(RamStore(m * frag), version=1, max_missing=256)
    setup = applayer.frag_session_setup_req(1, payload, frag, 0, bytes(4))
    f.handle(setup)
    for k, data in enumerate(frags):
        if rng.random() < loss:
            continue
        f.handle(data)
        if f.complete:
            return k * SPACING_S + toa_ms(13 + len(data), dr) / 1000
    return None


def class_c_table() -> str:
    rows = ["| block | DR / FragSize | fragments M + R | loss | time in Class C (s) | SX1276 charge (mAh) "
            "| SX1262 charge (mAh) |", "|---|---|---|---|---:|---:|---:|"]
    for size, frag, dr in ((50_000, 239, 5), (16_000, 239, 5), (50_000, 48, 0)):
        m = -(-size // frag)
        r = -(-m * 20 // 100)
        for loss in (0.0, 0.1):
            times = [t for t in (class_c_seconds(size, frag, 20, loss, s, dr) for s in range(5)) if t is not None]
            lo, hi = min(times), max(times)
            ch = {k: (lo * v / 3600, hi * v / 3600) for k, v in RX_MA.items()}
            rows.append(f"| {size // 1000} KB | DR{dr} / {frag} B | {m} + {r} | {loss:.0%} | {lo:,.0f}-{hi:,.0f} "
                        f"| {ch['SX1276'][0]:.1f}-{ch['SX1276'][1]:.1f} | {ch['SX1262'][0]:.1f}-{ch['SX1262'][1]:.1f} |")
    return "\n".join(rows)


HEAP_SCRIPT = r"""
import gc, json, os, sys
from binascii import unhexlify
args = json.loads(sys.stdin.readline())
ballast = bytearray(args["ballast"])
from citynode.fuota.node import FuotaNode
class Mac:
    t = 0
    def now_ms(self):
        return Mac.t
gc.collect()
base = gc.mem_alloc()
node = FuotaNode({"gen_app_key": args["gen"], "fuota_pub": args["pub"], "fuota_block_max": 200000,
                  "fuota_max_missing": args["cmax"]}, Mac(), lambda: args["wall"], "0.1.0", None,
                 out=lambda *a: None)
peak = 0
frames = 0
while True:
    line = sys.stdin.readline()
    if not line.strip():
        break
    kind, port, hx = line.split()
    data = unhexlify(hx)
    hx = line = None
    if kind == "u":
        node.downlink(int(port), data)
    else:
        Mac.t = (args["start"] - args["gps0"]) * 1000 + frames * 5000 + 100
        node._on_frame(data, -80, 7)
        frames += 1
    data = None
    gc.collect()
    a = gc.mem_alloc() - base
    if a > peak:
        peak = a
fr = node.fuota.fragmentation
complete = fr.complete
node.finish()
print(json.dumps({"complete": complete, "handed_over": node.handed_over, "refused": node.refused, "peak": peak}))
"""

# The boot step as main.py runs it (citynode.fuota.slots.select, before the app is imported), timed; and
# the package check alone (citynode.fuota.package.check on the block file), timed.
BOOT_SCRIPT = r"""
import time
t0 = time.ticks_ms()
from citynode.fuota.slots import select
m = select()
print("boot_ms", time.ticks_diff(time.ticks_ms(), t0), m.get("update"), m.get("detail"))
"""
CHECK_SCRIPT = r"""
import json, time
from binascii import unhexlify
from citynode.fuota import package
from citynode.fuota.store import FileStore
p = json.loads(open("fuota.json").read())["install"]
s = FileStore("fuota.bin", p["length"])
t0 = time.ticks_ms()
manifest, reason = package.check(s, p["length"], unhexlify(json.loads(open("config.json").read())["fuota_pub"]),
                                 p["running"])
print("check_ms", time.ticks_diff(time.ticks_ms(), t0), reason)
"""


def node_resident() -> int:
    """A LoRaWAN node's resident heap on the frozen build at 64 KB (largest end-of-cycle alloc)."""
    from gateway.sim.device_run import prepare_fs, stream_lorawan_device

    os.environ["CITYNODE_MICROPYTHON"] = str(FROZEN)
    with tempfile.TemporaryDirectory() as tmp:
        fs = Path(tmp) / "fs"
        prepare_fs(fs, "bin_fill", cycles=20, heap_report=True, lorawan=True)
        lines = list(stream_lorawan_device(fs, heapsize="64k", time_scale=100))
    allocs = [int(m.group(1)) for m in (re.search(r"heap cycle=\d+ alloc=(\d+)", x) for x in lines) if m]
    return max(allocs)


def run_frozen(code: str, cwd: Path, heapsize: str = "64k", stdin: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, MICROPYPATH=".frozen")
    return subprocess.run([str(FROZEN), "-X", f"heapsize={heapsize}", "-c", code], input=stdin, text=True,
                          capture_output=True, cwd=cwd, env=env, timeout=600)


def boot_step(d: Path, saved: dict[str, bytes], heap_kb: int) -> tuple[bool, int | None, str]:
    """The boot step on the hand-over ``saved`` left, in ``heap_kb`` KB: (installed, ms, outcome)."""
    for name in ("slots.json", "slots.json.tmp"):
        (d / name).unlink(missing_ok=True)
    if (d / "app_a").exists():
        import shutil

        shutil.rmtree(d / "app_a")
    for name, data in saved.items():
        (d / name).write_bytes(data)
    proc = run_frozen(BOOT_SCRIPT, d, f"{heap_kb}k")
    out = [x for x in proc.stdout.splitlines() if x.startswith("boot_ms")]
    if proc.returncode or not out:
        return False, None, (proc.stdout.splitlines() or proc.stderr.splitlines() or ["?"])[-1]
    _, ms, update, detail = out[0].split(" ", 3)
    return update == "installed", int(ms), f"{update} {detail}"


def heap_case(size: int, frag: int, ballast: int, cmax: int) -> dict:
    rng = random.Random(size + frag)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for name, version in (("v1", "0.1.0"), ("v2", "0.2.0")):
            (d / name / "citynode").mkdir(parents=True)
            (d / name / "VERSION").write_text(version)
        # the new version: changed modules of 5 KB each, incompressible
        for i in range(size // 5000):
            (d / "v2" / "citynode" / f"m{i}.mpy").write_bytes(rng.randbytes(5000 - 40))
        # one fixed signing key, so that the figures repeat (the smallest heap varies by a few KB with the
        # key: 25-29 KB for the 101 KB package over fresh keys)
        key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
        pub = key.public_key().public_bytes_raw().hex()
        # full: the factory app is frozen (the node passes no tree), so the package carries the whole tree
        pkg = fuota.build_package(d / "v1", d / "v2", key, full=True)
        start = GPS + 100
        lines = []
        ke = applayer.mc_ke_key(applayer.mc_root_key(GEN))
        lines.append(("u", 200, applayer.mc_group_setup_req(MC_ADDR, applayer.encrypt_mc_key(ke, MC_KEY))))
        lines.append(("u", 201, applayer.frag_session_setup_req(2, pkg, frag, 0, bytes(4), gen_app_key=GEN)))
        lines.append(("u", 200, applayer.mc_class_c_session_req(start, 14, 869525000, 5)))
        app, nwk = applayer.mc_session_keys(MC_KEY, MC_ADDR)
        from citynode.lorawan import frames

        m = -(-len(pkg) // frag)
        for k, f in enumerate(applayer.data_fragments(pkg, frag, 20, 2)):
            if k < m and rng.random() < 0.1:
                continue
            lines.append(("m", 201, frames.build_downlink(nwk, app, MC_ADDR, k, 201, f)))
        stdin = json.dumps({"gen": GEN.hex(), "pub": pub, "wall": WALL, "gps0": GPS, "start": start,
                            "ballast": ballast, "cmax": cmax}) + "\n"
        stdin += "".join(f"{k} {p} {b.hex()}\n" for k, p, b in lines) + "\n"
        fs = d / "fs"
        fs.mkdir()
        proc = run_frozen(HEAP_SCRIPT, fs, stdin=stdin)
        out = proc.stdout.strip().splitlines()
        result = {"size": len(pkg), "frag": frag, "m": m}
        if proc.returncode == 0 and out:
            result.update(json.loads(out[-1]), fits=True)
        else:
            result.update(fits=False, error=(out or proc.stderr.splitlines() or ["?"])[-1])
            return result
        if not result.get("handed_over"):
            return result
        # the reboot: the boot step checks and installs what the session handed over
        (fs / "config.json").write_text(json.dumps({"fuota_pub": pub}))
        saved = {name: (fs / name).read_bytes() for name in ("fuota.json", "fuota.bin")}
        checks = [run_frozen(CHECK_SCRIPT, fs).stdout.split() for _ in range(3)]  # the fastest of 3
        ok = [int(c[1]) for c in checks if c[:1] == ["check_ms"] and c[2] == "None"]
        result["check_ms"] = min(ok) if len(ok) == 3 else None
        boots = [boot_step(fs, saved, 64) for _ in range(3)]
        result["installed"], _, result["outcome"] = boots[0]
        times = [b[1] for b in boots if b[0]]
        result["boot_ms"] = min(times) if len(times) == 3 else None
        # the smallest heap (1 KB steps down from 64 KB) from which on every heap installs: near the limit
        # the outcome is not monotonic (heap fragmentation), so no bisection
        least = None
        for kb in range(64, 7, -1):
            if not boot_step(fs, saved, kb)[0]:
                break
            least = kb
        result["boot_heap_kb"] = least if result["installed"] else None
        return result


def heap_table(ballast: int) -> tuple[str, list[dict]]:
    rows = ["| package | FragSize | M | C_max | FUOTA live peak during the session | session beside the node "
            f"({ballast / 1024:.1f} KB) | boot step (check + install) in 64 KB | smallest heap for the boot step (it installs in this and every larger one) "
            "| check | whole boot step |",
            "|---|---:|---:|---:|---:|:---|:---|---:|---:|---:|"]
    results = []
    for size, frag in ((16_000, 239), (50_000, 239), (100_000, 239), (50_000, 48)):
        m = -(-size // frag)
        cmax = max(16, -(-m * 12 // 100))  # the 10 % losses plus a margin
        r = heap_case(size, frag, ballast, cmax)
        results.append(r)
        peak = f"{r['peak']:,} B" if "peak" in r else "-"
        session = "received, handed over" if r.get("handed_over") else f"no: {r.get('error') or r.get('refused')}"
        boot = "installed" if r.get("installed") else f"no: {r.get('outcome', '-')}"
        least = f"{r['boot_heap_kb']} KB" if r.get("boot_heap_kb") else "-"
        check = f"{r['check_ms']:,} ms" if r.get("check_ms") is not None else "-"
        whole = f"{r['boot_ms']:,} ms" if r.get("boot_ms") is not None else "-"
        rows.append(f"| {r['size'] // 1000} KB | {frag} B | {r['m']} | {cmax} | {peak} | {session} | {boot} | {least} "
                    f"| {check} | {whole} |")
    return "\n".join(rows), results


def main() -> None:
    ballast = node_resident()
    table, _ = heap_table(ballast)
    body = (
        "## FUOTA on the node: time in Class C, radio charge, heap\n\n"
        f"Measured on {machine()} with `bench/fuota_node.py` (method in its docstring).\n\n"
        "### A battery node's Class C session (20 % redundancy, one fragment per 5 s, 5 loss patterns per row)\n\n"
        + class_c_table()
        + "\n\nThe node listens only from the session start until its block is complete, so the time grows with\n"
        "the loss (a lost fragment costs a 5 s slot more). The Class A uplinks of the session (McGroupSetupAns,\n"
        "FragSessionSetupAns, AppTimeReq, McClassCSessionAns, FragSessionStatusAns) add a few tens of\n"
        "milliseconds of TX. At DR0 the same 50 KB takes five times as many fragments and is not a practical\n"
        "battery update.\n\n"
        f"### Heap on the 32-bit frozen build, 64 KB: the session beside a LoRaWAN node's resident heap "
        f"({ballast:,} B), the check and install in the boot step\n\n"
        + table
        + "\n\nThe session runs in the app beside the node; once the block is complete the app hands it over\n"
        "(one write of fuota.json) and reboots, and main.py's slot selection checks the package (Ed25519 in\n"
        "MicroPython big integers, SHA-512, SHA-256 of every file, streamed from the block file) and installs\n"
        "it into the inactive slot before the app, its MAC, role and drivers exist (citynode.fuota.install).\n"
        "Check and boot step times are wall-clock on this machine (x86) running the 32-bit unix port; an\n"
        "ESP32 (not measured here) is slower.\n"
    )
    write_section("fuota_node", body)
    print(body)


if __name__ == "__main__":
    main()
