"""Session persistence (citynode.lorawan.session): deep sleep keeps the exact state in RTC memory, a power
cut falls back to flash and skips FCntUp forward by at most one reserve step, and no FCntUp or DevNonce is
ever reused, whatever instant the power goes (LoRaWAN 1.0.4 §4.3.1.5 and §6.2.5)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "firmware" / "lib"))
from citynode.lorawan import session as sess

KEY_N = bytes(range(16))
KEY_A = bytes(range(16, 32))


def test_records_are_checked_by_magic_and_crc() -> None:
    rec = sess.encode_record({"a": 1})
    assert sess.decode_record(rec) == {"a": 1}
    assert sess.decode_record(rec[:-1] + b"2") is None
    assert sess.decode_record(b"\x00" * 64) is None  # what RTC memory holds after a cold boot
    assert sess.decode_record(None) is None


def test_fresh_device_starts_at_zero(tmp_path: Path) -> None:
    store = sess.SessionStore(sess.FileStore(str(tmp_path / "lorawan.json")), sess.MemoryStore())
    s = store.load()
    assert (s.joined, s.fcnt_up, s.devnonce_next) == (False, 0, 0)
    assert store.take_devnonce() == 0
    assert store.take_devnonce() == 1


def test_deep_sleep_restores_exact_state_from_rtc(tmp_path: Path) -> None:
    flash, rtc = sess.FileStore(str(tmp_path / "s")), sess.MemoryStore()
    a = sess.SessionStore(flash, rtc, step=100)
    a.load()
    a.start("otaa", 0x26011234, KEY_N, KEY_A)
    for _ in range(7):
        a.take_fcnt_up()
    a.session.fcnt_down = 3
    a.session.dr = 4
    a.save()
    b = sess.SessionStore(flash, rtc, step=100).load()  # deep sleep: RAM lost, RTC kept
    assert (b.joined, b.dev_addr, b.nwk_skey, b.app_skey) == (True, 0x26011234, KEY_N, KEY_A)
    assert (b.fcnt_up, b.fcnt_down, b.dr) == (7, 3, 4)


def test_power_loss_resumes_at_the_reserve_limit(tmp_path: Path) -> None:
    flash, rtc = sess.FileStore(str(tmp_path / "s")), sess.MemoryStore()
    a = sess.SessionStore(flash, rtc, step=100)
    a.load()
    a.start("otaa", 0x26011234, KEY_N, KEY_A)
    used = [a.take_fcnt_up() for _ in range(150)]
    assert used == list(range(150))
    assert a.flash_writes == 2  # join accept (reserves 0..99) + one reserve for 100..199
    rtc.clear()  # power loss
    b = sess.SessionStore(flash, rtc, step=100)
    b.load()
    assert b.session.fcnt_up == 200  # skipped forward, never back
    assert b.take_fcnt_up() == 200


def test_flash_wear_is_one_write_per_step(tmp_path: Path) -> None:
    store = sess.SessionStore(sess.FileStore(str(tmp_path / "s")), sess.MemoryStore(), step=250)
    store.load()
    store.start("otaa", 1, KEY_N, KEY_A)
    for _ in range(10_000):
        store.take_fcnt_up()
    assert store.flash_writes == 1 + 10_000 // 250 - 1


def test_stale_rtc_from_an_older_session_is_ignored(tmp_path: Path) -> None:
    flash, rtc = sess.FileStore(str(tmp_path / "s")), sess.MemoryStore()
    a = sess.SessionStore(flash, rtc)
    a.load()
    a.start("otaa", 0x111, KEY_N, KEY_A)
    old_rtc = rtc.read()
    a.take_devnonce()
    a.start("otaa", 0x222, KEY_A, KEY_N)
    rtc.write(old_rtc)  # e.g. a reset between the flash and the RTC write
    s = sess.SessionStore(flash, rtc).load()
    assert s.dev_addr == 0x222
    assert s.devnonce_next == 1


def test_corrupt_flash_record_is_an_error_not_a_devnonce_restart(tmp_path: Path) -> None:
    p = tmp_path / "s"
    p.write_bytes(b"CNL1garbage")
    with pytest.raises(sess.SessionError, match="corrupt"):
        sess.SessionStore(sess.FileStore(str(p)), sess.MemoryStore()).load()


def test_bad_step_names_the_field() -> None:
    with pytest.raises(ValueError, match="step"):
        sess.SessionStore(sess.MemoryStore(), step=0)


# The power-cut harness runs on the MicroPython unix port. A node boots, joins (DevNonce), sends uplinks,
# receives a downlink now and then, sleeps, and rejoins every few cycles. Every store write and every
# transmission is an "instant" where the power can go: before, halfway through (a torn temp file or RTC
# record) or after. At the cut the node either loses RTC memory too (power loss) or keeps it (reset,
# brown-out, watchdog). The harness cuts at every phase of a period longer than one boot cycle, so every
# instant of the cycle is hit, and records what went on air.
HARNESS = r"""
import json, os
from citynode.lorawan import session as S

class Cut(Exception):
    pass

st = {"ops": 0, "cut": None, "period": 1}

def op(torn=None):
    st["ops"] += 1
    if st["cut"] is not None and st["ops"] % st["period"] == st["cut"]:
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

class NoReserve(S.SessionStore):
    # A naive store that keeps the counter only in RTC and flash-saves every 100 uplinks, after the fact.
    def take_fcnt_up(self):
        s = self.session
        n = s.fcnt_up
        s.fcnt_up = n + 1
        self._write_rtc()
        if n % self.step == 0:
            self._write_flash()
        return n

def run(path, cut, period, power_loss, store_cls, air_target):
    try:
        os.remove(path)
    except OSError:
        pass
    flash, rtc = CutFile(path), CutRTC()
    st["ops"], st["cut"], st["period"] = 0, cut, period
    air = []
    cuts = 0
    def tx(frame):
        op()
        air.append(frame)
        op()
    while len(air) < air_target:
        try:
            ss = store_cls(flash, rtc, step=3)
            s = ss.load()
            cycle = 0
            while len(air) < air_target:
                if not s.joined:
                    d = ss.take_devnonce()
                    tx(["join", d])
                    ss.start("otaa", 0x26000000 + d, b"n" * 16, b"a" * 16)
                for i in range(2):
                    n = ss.take_fcnt_up()
                    tx(["up", s.dev_addr, n])
                s.fcnt_down += 1
                ss.save()
                cycle += 1
                if cycle % 3 == 0:
                    ss.forget()
                # deep sleep: RAM is lost, RTC memory survives
                ss = store_cls(flash, rtc, step=3)
                s = ss.load()
        except Cut:
            cuts += 1
            if power_loss:
                rtc.clear()
    return {"air": air, "cuts": cuts}

for store_cls in (S.SessionStore, NoReserve):
    for power_loss in (True, False):
        for cut in range(PERIOD):
            r = run(PATH, cut, PERIOD, power_loss, store_cls, 40)
            r["store"] = store_cls.__name__
            r["power_loss"] = power_loss
            r["cut"] = cut
            print(json.dumps(r))  # one line per run: the heap is ESP32-sized
"""


def reused(air: list) -> list[str]:
    """Every DevNonce or (DevAddr, FCntUp) that went on air twice, and every FCnt that went backwards."""
    problems = []
    nonces = [f[1] for f in air if f[0] == "join"]
    if len(nonces) != len(set(nonces)):
        problems.append(f"DevNonce reused: {nonces}")
    last: dict[int, int] = {}
    for f in air:
        if f[0] == "up":
            addr, n = f[1], f[2]
            if addr in last and n <= last[addr]:
                problems.append(f"FCntUp {n} after {last[addr]} in session {addr:#x}")
            last[addr] = n
    return problems


@pytest.mark.slow
def test_no_counter_is_reused_when_power_is_cut_at_any_instant(micropython, tmp_path: Path) -> None:
    period = 97  # longer than one boot-to-sleep cycle, so each phase is a different instant of the cycle
    code = HARNESS.replace("PERIOD", str(period)).replace("PATH", json.dumps(str(tmp_path / "lorawan.rec")))
    results = [json.loads(line) for line in micropython.run(code, timeout=120).splitlines() if line]
    ours = [r for r in results if r["store"] == "SessionStore"]
    assert len(ours) == 2 * period
    for r in ours:
        where = f"cut phase {r['cut']}, {'power loss' if r['power_loss'] else 'reset keeping RTC'}"
        assert r["cuts"] >= 1, where
        assert len(r["air"]) >= 40, where
        assert reused(r["air"]) == [], where
    # Both kinds of frame were on air and sessions rotated, so the harness exercised joins and uplinks.
    assert sum(f[0] == "join" for r in ours for f in r["air"]) > 2 * period
    # The harness does catch reuse: a store without the write-ahead reserve reuses counters on power loss.
    naive = [r for r in results if r["store"] == "NoReserve" and r["power_loss"]]
    assert any(reused(r["air"]) for r in naive)


def test_esp32_rtc_memory_store_on_micropython(micropython) -> None:
    # machine.RTC().memory() returns the bytes last written (b"" after a cold boot) and takes bytes.
    got = micropython.eval_json("""
import json
from citynode.lorawan import session as S
class FakeRTC:
    def __init__(self):
        self.mem = b""
    def memory(self, data=None):
        if data is None:
            return self.mem
        self.mem = bytes(data)
rtc = FakeRTC()
flash = S.MemoryStore()
a = S.SessionStore(flash, S.RTCStore(rtc))
a.load()
a.start("otaa", 0x26000001, bytes(16), bytes(16))
for i in range(5):
    a.take_fcnt_up()
b = S.SessionStore(flash, S.RTCStore(rtc)).load()
rtc.mem = b""
c = S.SessionStore(flash, S.RTCStore(rtc)).load()
print(json.dumps([b.fcnt_up, c.fcnt_up, len(rtc.mem) == 0]))
""")
    assert got == [5, 100, True]


def test_a_full_session_fits_esp32_rtc_user_memory() -> None:
    # ESP32 MicroPython: machine.RTC().memory() holds at most 2048 bytes (MICROPY_HW_RTC_USER_MEM_MAX).
    from citynode.lorawan.dutycycle import DutyCycle

    store = sess.SessionStore(sess.MemoryStore(), sess.MemoryStore())
    store.load()
    s = store.start("otaa", 0xFFFFFFFF, KEY_N, KEY_A)
    for i in range(3, 16):
        s.channels[i] = [869_850_000, 0, 7]
        s.dl_freqs[i] = 869_850_000
    s.fcnt_up, s.fcnt_limit, s.fcnt_down = 0xFFFFFFFF, 0x1000000FF, 0xFFFFFFFF
    s.dutycycle = DutyCycle(lambda: 0).state()
    assert len(sess.encode_record(s.to_dict())) < 2048
