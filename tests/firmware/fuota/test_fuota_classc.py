"""A FUOTA session on the node, on the MicroPython unix port: the MAC (citynode.lorawan.mac.ClassA) against
the scripted radio of the MAC tests (tests/firmware/lorawan/mac_fakes.py, which hears a frame only when
the radio is tuned to it and listening when its preamble starts), driven by citynode.fuota.node.FuotaNode
with the downlinks ChirpStack's flow sends one device (tests/firmware/fuota/server_side.py): McGroupSetup,
FragSessionSetup (v2), McClassCSession, the fragments as multicast frames in the Class C window with
fragments lost, FragSessionStatusReq. The node asks for the time before the session (its clock is not
synchronised), opens continuous RX on the multicast channel at the session start, rebuilds the block,
hands it over and reboots; the boot step (main.py's slot selection, before the app is built) checks the
signed package and installs it in an app slot; in the new version its status answer says nothing is
missing."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from gateway.field import fuota
from gateway.field.micropython import run_code

HERE = Path(__file__).resolve().parent
FAKES = (HERE.parent / "lorawan" / "mac_fakes.py").read_text()


def _server_side():
    spec = importlib.util.spec_from_file_location("fuota_server_side", HERE / "server_side.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SERVER = _server_side()
GEN = bytes(range(16, 32))
MC_KEY = bytes(range(1, 17))
MC_ADDR = 0x01020304
WALL = 1767225600  # the node's wall clock at the start (Unix s)
GPS_MINUS_UNIX = -315964782


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> tuple[bytes, bytes]:
    d = tmp_path_factory.mktemp("trees")
    for name, version, n in (("v1", "0.1.0", 1), ("v2", "0.2.0", 2)):
        (d / name / "toy").mkdir(parents=True)
        (d / name / "VERSION").write_text(version)
        (d / name / "toy" / "__init__.py").write_text(f"V = '{version}'\n" + f"# {n}\n" * 200)
    pair = fuota.generate_keypair()
    return fuota.build_package(d / "v1", d / "v2", load_pem_private_key(pair.private_pem, None)), pair.public_raw


CODE = r"""
import json, os, sys
from binascii import unhexlify
from citynode.lorawan.mac import ClassA
from citynode.lorawan.session import SessionStore, MemoryStore
from citynode.fuota.node import FuotaNode
ARGS = json.loads(sys.stdin.readline())
clock = FakeClock()
net = Network()
radio = FakeRadio(clock, net)
mac = ClassA(radio, SessionStore(MemoryStore(), MemoryStore()), clock, clock.sleep, dev_eui=DEV_EUI,
             join_eui=JOIN_EUI, app_key=APP_KEY, wall_s=lambda: clock.t // 1000)
assert mac.join()
os.mkdir("factory")
os.mkdir("factory/toy")
with open("factory/toy/__init__.py", "w") as f:
    f.write(ARGS["old"])
cfg = {"gen_app_key": ARGS["gen"], "fuota_pub": ARGS["pub"]}
node = FuotaNode(cfg, mac, lambda: ARGS["wall"], "0.1.0", "factory", out=lambda *a: None)
t0 = clock.t
def gps_ms(g):  # the network's GPS time -> the node's MAC clock (the node's guess is 20 s off)
    return t0 + (g - ARGS["gps0"]) * 1000
node._gps0 += 20000
sent = []
def send(port, data):
    sent.append([port, data.hex(), clock.t])
    dl = mac.send(port, data)
    if dl is not None and dl.port:
        node.downlink(dl.port, dl.data)
# The network's side of AppTimeReq: the correction from the node's DeviceTime to the network's GPS time.
def on_uplink(net, kind, f):
    if f.fport == 202 and f.payload[0] == 0x01:
        dev = int.from_bytes(f.payload[1:5], "little")
        corr = (ARGS["gps0"] + (clock.t - t0) // 1000) - dev
        return [(1, {"fport": 202, "payload": b"\x01" + (corr & 0xFFFFFFFF).to_bytes(4, "little")
                     + bytes([f.payload[5] & 0x0F])})]
    return []
net.script = on_uplink
rxs_before = len(radio.rxs())
status = None
while True:
    line = sys.stdin.readline()
    if not line.strip():
        break
    port, g, payload = line.split()
    port, g = int(port), int(g)
    if port == -1:  # a multicast frame on the air, at its GPS time
        radio.pending.append([gps_ms(g), 869525000, 9, 125000, unhexlify(payload)])
        continue
    if port == 201 and payload.startswith("01"):
        status = (g, payload)
        continue
    node.downlink(port, unhexlify(payload))  # unicast, in a Class A window after an uplink
    node.send_answers(send)
clock.sleep(1000)
resumed = None
if ARGS["reboot_at"]:  # the power goes in the middle of the session (RAM lost, files kept)
    node.wait(gps_ms(ARGS["start"] + 35) - clock.t, send)  # a checkpoint after 35 s
    node.checkpoint = lambda: None  # then none before the cut: the fragments since then are lost
    node.wait(gps_ms(ARGS["start"] + ARGS["reboot_at"]) - clock.t, send)
    before = node.fuota.fragmentation.received
    wall = ARGS["wall"] + (clock.t - t0) // 1000
    node = FuotaNode(cfg, mac, lambda: wall, "0.1.0", "factory", out=lambda *a: None)
    node._gps0 += 20000  # its clock guessed again from the wall clock, 20 s off: it asks for the time
    fr = node.fuota.fragmentation
    node.downlink(201, b"\x01\x01")  # FragSessionStatusReq (Participants 1, FragIndex 0)
    status_ans = node.answers.pop()[2]
    resumed = [before, fr.active, fr.received, fr.nb_frag, status_ans.hex(),
               [a[1] for a in node.answers], node.session() is not None]
node.wait(10 ** 7, send)  # Class C at the session start, until the block is complete
fr = node.fuota.fragmentation
done = [fr.complete, fr.received, node.handed_over, node.refused]
# the status request reaches the node after the block is complete, before it reboots: the answer (due
# after its random delay) goes up before the reboot, since ChirpStack asks only once
node.downlink(201, unhexlify(status[1]))
n_sent = len(sent)
node.wait(60000, send)
early = [[p for p, _, _ in sent[n_sent:]], node.answers]
synced = node.fuota.clock.synced
windows = [r for r in radio.rxs()[rxs_before:] if r["continuous"]]
# the node reboots (RAM lost, files kept): main.py's slot selection checks and installs the block before
# the app is built, then the app runs the new version; after the session the status request (unicast)
# is answered from the completed block's record, after a random delay
cnt = node.fuota.fragmentation.last_session_cnt
with open("config.json", "w") as f:
    f.write(json.dumps(cfg))
from citynode.fuota import slots
marker = slots.select(forget=False)
booted = [marker.get("active"), marker.get("update"), marker.get("detail"), "fuota.bin" in os.listdir("."),
          "install" in json.loads(open("fuota.json").read())]
node = FuotaNode(cfg, mac, lambda: ARGS["wall"], "0.2.0", "factory", out=lambda *a: None)
clock.t = max(clock.t, gps_ms(status[0]))
node.downlink(201, unhexlify(status[1]))
delay = [a[0] - clock.t for a in node.answers]
node.wait(60000, send)
with open("app_a/toy/__init__.py") as f:
    new = f.read()
print(json.dumps({"done": done, "early": early, "booted": booted, "resumed": resumed, "cnt": [cnt, node.state.get("session_cnt")], "sent": sent, "delay": delay, "new": new, "synced": synced,
                  "windows": [[w["freq"], w["sf"], w["bw"], w["iq"], w["crc"], w["got"]] for w in windows],
                  "t_first_window": windows[0]["t_open"] - gps_ms(ARGS["start"]),
                  "answers_left": node.answers, "busy": node.busy()}))
"""


@pytest.mark.parametrize(("lost", "reboot_at"), [(set(), 0), ({2, 5, 9, 30}, 0), ({2, 5, 9, 30}, 62)])
def test_a_class_c_session_delivers_and_installs_the_update(tmp_path, package, lost, reboot_at) -> None:
    """``reboot_at``: the power goes that many seconds after the session start (13 fragments in, the
    last checkpoint 35 s in) and the node resumes the session from fuota.json: the multicast group's
    keys and frame counter, the Class C window and the uncoded fragments of the last checkpoint."""
    data, pub = package
    gps0 = WALL + GPS_MINUS_UNIX
    start = gps0 + 200
    downlinks = SERVER.chirpstack_flow(2, data, GEN, MC_KEY, MC_ADDR, 50, 50, start, gps0, lost)
    m = -(-len(data) // 50)
    stdin = json.dumps({"gen": GEN.hex(), "pub": pub.hex(), "wall": WALL, "gps0": gps0, "start": start,
                        "old": "V = '0.1.0'\n" + "# 1\n" * 200, "reboot_at": reboot_at}) + "\n"
    stdin += "".join(f"{p} {g} {b.hex()}\n" for p, g, b in downlinks) + "\n"
    # 256 KB: the unix port compiles the MAC and the packages from source here (the heap a node needs
    # for FUOTA is measured by the heap tests, on the frozen build)
    out = run_code(FAKES + CODE, heapsize="256k", stdin=stdin, cwd=tmp_path, timeout=300).stdout
    r = json.loads(out.strip().splitlines()[-1])
    complete, received, handed_over, refused = r["done"]
    assert (complete, handed_over, refused) == (True, True, None)
    assert r["early"] == [[201], []]  # a status request before the reboot is answered before it
    # the boot step installed it in slot a, on trial, and dropped the hand-over and the block
    assert r["booted"] == ["a", "installed", "0.2.0", False, False]
    assert r["new"].startswith("V = '0.2.0'")
    assert received >= m - len(lost)
    # the answers went up in Class A uplinks: McGroupSetupAns, FragSessionSetupAns, AppTimeReq (the
    # node's clock was not synchronised), McClassCSessionAns; then the status, none missing
    ports = [p for p, _, _ in r["sent"]]
    assert ports[:4] == [200, 201, 200, 202] or ports[:4] == [200, 201, 202, 200]
    assert r["synced"] is True
    time_req = [bytes.fromhex(h) for p, h, _ in r["sent"] if p == 202][0]
    assert time_req[0] == 0x01 and time_req[5] & 0x10  # AppTimeReq with AnsRequired
    status = bytes.fromhex(r["sent"][-1][1])
    assert r["sent"][-1][0] == 201 and status[0] == 0x01 and status[1] == 0 and status[4] == 0  # v2: no error, none missing
    assert 0 <= r["delay"][0] <= 16 * 1000  # spread over answer_delay_max_s
    # continuous RX on the multicast channel, downlink polarity, from the session start (synced clock)
    assert r["windows"] and all(w[:5] == [869525000, 9, 125000, True, False] for w in r["windows"])
    assert abs(r["t_first_window"]) <= 1000
    assert sum(w[5] for w in r["windows"]) >= m - len(lost)
    assert (r["answers_left"], r["busy"]) == ([], False)
    assert r["cnt"] == [0, 0]  # TS004 v2 SessionCnt, kept across the reboot (replay protection)
    if reboot_at:
        before, active, kept, nb_frag, status, queued, pending = r["resumed"]
        # the session is resumed with the uncoded fragments of the last checkpoint (35 s in)
        assert (active, nb_frag, pending) == (True, m, True)
        assert 0 < kept < before
        # FragSessionStatusReq is answered truthfully: no error, received = kept, missing = M - kept
        ans = bytes.fromhex(status)
        assert (ans[0], ans[1], int.from_bytes(ans[2:4], "little"), ans[4]) == (0x01, 0, kept, m - kept)
        assert queued == [202]  # its clock is a guess again: AppTimeReq before the window
