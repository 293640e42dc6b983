"""Power cuts at every instant of a node's life, with the whole MAC in the loop (LoRaWAN 1.0.4 §4.3.1.5,
§6.2.5): whatever the instant, no DevNonce and no FCntUp of a session is ever put on air twice.

The node (citynode.lorawan.mac.ClassA on the MicroPython unix port) boots, joins, sends uplinks, sleeps,
and rejoins every few cycles. Every write to flash (temp file, rename) and to RTC memory, and every
transmission, is an instant where the power can go: before, half-way (a torn file or RTC record) or
after. At the cut the node either loses RTC memory too (power loss) or keeps it (reset, brown-out,
watchdog). The network side (mac_fakes.Network) tells sessions apart by MIC and records every frame that
went on air; the verdict is computed here, in CPython.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("mac_mpy", Path(__file__).with_name("mac_mpy.py"))
MPY = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(MPY)


@pytest.fixture(scope="module")
def firmware(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """citynode compiled to .mpy, as deployed (mac_mpy.py explains the heap)."""
    return MPY.compile_firmware(tmp_path_factory.mktemp("mpy"))

FAKES = Path(__file__).with_name("mac_fakes.py").read_text()

HARNESS = r"""
import json, os
from citynode.lorawan import session as S, frames, crypto
from citynode.lorawan.mac import ClassA

class Cut(Exception):
    pass

# The first cut comes at op FIRST, then every STRIDE ops: a stride shorter than a session and prime to
# the cycle length lands the later cuts at ever different instants of the cycle.
st = {"ops": 0, "next": None, "stride": 1}

def op(torn=None):
    st["ops"] += 1
    if st["next"] is not None and st["ops"] >= st["next"]:
        st["next"] += st["stride"]
        if torn:
            torn()
        raise Cut()

class CutFile(S.FileStore):
    def _write_tmp(self, data):
        op()
        op(lambda: S.FileStore._write_tmp(self, data[: len(data) // 2]))
        S.FileStore._write_tmp(self, data)
        op()

    def _replace(self):
        S.FileStore._replace(self)
        op()

class CutRTC(S.MemoryStore):
    def write(self, data):
        op()
        op(lambda: S.MemoryStore.write(self, data[: len(data) // 2]))
        S.MemoryStore.write(self, data)
        op()

class CutRadio(FakeRadio):
    def send(self, data):
        op()  # power gone before the frame left
        FakeRadio.send(self, data)
        op()  # the frame is on air, then the power goes

class AirLog(Network):
    # Joins: every DevNonce on air. Uplinks: identified by trying every session's keys (a node that lost
    # the join-accept keeps using the old session), then (session, FCnt) recorded as sent.
    def __init__(self):
        Network.__init__(self)
        self.sessions = []  # [devnonce, nwk, app]
        self.air = []

    def on_uplink(self, phy, freq, sf, bw):
        if frames.mtype_of(phy) == frames.JOIN_REQUEST:
            out = Network.on_uplink(self, phy, freq, sf, bw)
            self.air.append(["join", self.joins[-1].dev_nonce])
            self.sessions.append([self.joins[-1].dev_nonce, self.nwk, self.app])
            return out
        f = frames.unpack_data(phy)
        for dn, nwk, app in self.sessions:
            for hi in range(0, 4):
                fc = (hi << 16) | f.fcnt
                if crypto.data_mic(nwk, phy, f.dev_addr, fc, False, len(phy) - 4) == f.mic:
                    self.air.append(["up", dn, fc])
                    return []
        self.air.append(["unknown", 0, 0])
        return []

def run(path, first, stride, power_loss, air_target):
    for p in (path, path + ".tmp"):
        try:
            os.remove(p)
        except OSError:
            pass
    flash, rtc = CutFile(path), CutRTC()
    st["ops"], st["next"], st["stride"] = 0, first, stride
    clock = FakeClock()
    net = AirLog()
    cuts = 0
    while len(net.air) < air_target:
        try:
            while len(net.air) < air_target:
                store = S.SessionStore(flash, rtc, step=3)
                mac = ClassA(CutRadio(clock, net), store, clock, clock.sleep, dev_eui=DEV_EUI,
                             join_eui=JOIN_EUI, app_key=APP_KEY)
                if not mac.joined:
                    mac.join(attempts=3)
                    continue
                mac.send(10, b"x")
                mac.send(10, b"y")
                if mac.session.fcnt_up >= 12:
                    store.forget()  # rejoin now and then: new session, new DevNonce
                clock.sleep(60000)  # deep sleep; RAM lost, RTC kept
        except Cut:
            cuts += 1
            if power_loss:
                rtc.clear()
    return {"air": net.air, "cuts": cuts}

if NAIVE:
    # Control: a store that keeps FCntUp only in RTC memory, without the write-ahead reserve in flash.
    def _naive(self):
        s = self.session
        n = s.fcnt_up
        s.fcnt_up = n + 1
        self._write_rtc()
        return n
    S.SessionStore.take_fcnt_up = _naive

for power_loss in MODES:
    for first in range(1, FIRSTS + 1):
        r = run(PATH, first, STRIDE, power_loss, 30)
        r["power_loss"] = power_loss
        r["cut"] = first
        print(json.dumps(r))
"""


def reused(air: list) -> list[str]:
    problems = []
    nonces = [f[1] for f in air if f[0] == "join"]
    if len(nonces) != len(set(nonces)):
        problems.append(f"DevNonce reused: {nonces}")
    last: dict[int, int] = {}
    for entry in air:
        kind, session, fcnt = (entry + [0])[:3]
        if kind == "unknown":
            problems.append("an uplink no session's keys verify")
        if kind == "up":
            if session in last and fcnt <= last[session]:
                problems.append(f"FCntUp {fcnt} after {last[session]} in the session of DevNonce {session}")
            last[session] = fcnt
    return problems


def run_harness(firmware: Path, tmp_path: Path, naive: bool, modes: str, firsts: int) -> list[dict]:
    code = FAKES + (HARNESS.replace("NAIVE", str(naive)).replace("MODES", modes).replace("FIRSTS", str(firsts))
                    .replace("STRIDE", str(STRIDE)).replace("PATH", json.dumps(str(tmp_path / "flash.rec"))))
    lines = MPY.run(code, firmware).strip().splitlines()
    return [json.loads(line) for line in lines]


STRIDE = 37  # ops between cuts: a join + two uplinks take about 40


def test_mac_never_reuses_a_counter_whatever_instant_the_power_goes(firmware: Path, tmp_path: Path) -> None:
    results = run_harness(firmware, tmp_path, naive=False, modes="(True, False)", firsts=STRIDE)
    assert len(results) == 2 * STRIDE
    for r in results:
        where = f"first cut at op {r['cut']}, {'power loss' if r['power_loss'] else 'reset keeping RTC'}"
        assert r["cuts"] >= 3, where
        assert reused(r["air"]) == [], where
    kinds = [f[0] for r in results for f in r["air"]]
    assert kinds.count("join") > 2 * STRIDE and kinds.count("up") > 20 * STRIDE


def test_the_harness_catches_a_store_without_the_flash_reserve(firmware: Path, tmp_path: Path) -> None:
    results = run_harness(firmware, tmp_path, naive=True, modes="(True,)", firsts=12)
    assert any(reused(r["air"]) for r in results)
