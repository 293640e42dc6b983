"""The HAL: board validation, the MicroPython and CircuitPython backends wired against recording
fakes of machine / busio / digitalio / analogio / alarm, and the sim backend on the real unix port."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import env_sim_paths  # noqa: F401

from citynode import hal
from citynode.hal import BoardError, board_get
from citynode.hal.cpy import CpyHal
from citynode.hal.mpy import MpyHal

HELTEC_V3 = {
    "name": "heltec_wifi_lora32_v3",
    "radio": "sx1262",
    "i2c": {"sda": 41, "scl": 42},
    "uart": {"pm": {"tx": 43, "rx": 44, "baud": 9600, "id": 1}, "distance": {"tx": 45, "rx": 46, "id": 2}},
    "pins": {"trigger": 5, "echo": 6, "tilt": 7},
    "battery": {"pin": 1, "divider": 4.9},
    "vext": {"pin": 36, "active": 0},
}


# --- board validation -----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "board, path, kind, message",
    [
        ({}, "i2c.sda", int, "board i2c.sda: missing"),
        ({"i2c": 5}, "i2c.sda", int, "board i2c.sda: missing"),
        ({"i2c": {"sda": "41"}}, "i2c.sda", int, "board i2c.sda: expected int, got '41'"),
        ({"i2c": {"sda": True}}, "i2c.sda", int, "board i2c.sda: expected int, got True"),
        ({"battery": {"divider": "x"}}, "battery.divider", (int, float), "expected int or float"),
    ],
)
def test_board_get_names_the_bad_field(board, path, kind, message):
    with pytest.raises(BoardError) as info:
        board_get(board, path, kind)
    assert info.value.field == path and message in str(info.value)


@pytest.mark.parametrize(
    "needs, field",
    [
        (["i2c.sda", "i2c.scl", "battery.pin"], None),
        (["i2c.sda", "uart.pm.tx", "uart.gps.tx"], "uart.gps.tx"),
        ([("pins.echo", "uart.distance.rx")], None),
        ([("pins.ping", "uart.sonar.rx")], "pins.ping or uart.sonar.rx"),
    ],
)
def test_check_board_fails_early_naming_the_field(needs, field):
    if field is None:
        hal.check_board(HELTEC_V3, needs)
        return
    with pytest.raises(BoardError) as info:
        hal.check_board(HELTEC_V3, needs)
    assert info.value.field == field


def test_backend_choice():
    assert hal.backend_name({"name": "sim"}) == "sim"
    assert hal.backend_name(HELTEC_V3) == "sim"  # CPython: only simulated hardware exists
    with pytest.raises(BoardError, match="hal"):
        hal.load(HELTEC_V3, name="zephyr")


# --- MicroPython backend against a recording fake `machine` ------------------------------------------------

def fake_machine(cause="DEEPSLEEP_RESET"):
    calls = []

    def rec(name):
        class Obj:
            def __init__(self, *a, **k):
                calls.append((name, a, k))
                self.args, self.kwargs = a, k

            def atten(self, value):
                calls.append((name + ".atten", (value,), {}))

        Obj.__name__ = name
        return Obj

    m = types.SimpleNamespace(
        I2C=rec("I2C"), UART=rec("UART"), SPI=rec("SPI"), WDT=rec("WDT"), RTC=rec("RTC"), ADC=rec("ADC"), Pin=rec("Pin"),
        PWRON_RESET=1, HARD_RESET=2, WDT_RESET=3, DEEPSLEEP_RESET=4, SOFT_RESET=5,
    )
    m.Pin.IN, m.Pin.OUT, m.Pin.PULL_UP, m.Pin.PULL_DOWN = 1, 3, 2, 1
    m.ADC.ATTN_11DB = 3
    m.reset_cause = lambda: getattr(m, cause)
    m.deepsleep = lambda ms: calls.append(("deepsleep", (ms,), {}))
    m.calls = calls
    return m


def test_mpy_builds_buses_from_the_board():
    m = fake_machine()
    h = MpyHal(HELTEC_V3, machine=m)
    i2c = h.i2c()
    assert h.i2c() is i2c  # one bus object per board
    assert i2c.args == (0,) and i2c.kwargs["freq"] == 400000
    assert (i2c.kwargs["scl"].args[0], i2c.kwargs["sda"].args[0]) == (42, 41)
    uart = h.uart("pm")
    assert uart.args == (1,) and uart.kwargs == {"baudrate": 9600, "tx": 43, "rx": 44, "timeout": 0, "rxbuf": 256}
    assert h.uart("distance").args == (2,)
    h.adc("battery")
    assert ("ADC.atten", (3,), {}) in m.calls  # 11 dB: the full range a LiPo divider needs
    assert h.battery_divider() == 4.9
    assert h.peripheral_power(True) is True
    vext = [c for c in m.calls if c[0] == "Pin" and c[1][0] == 36][-1]
    assert vext[1][1] == m.Pin.OUT and vext[2] == {"value": 0}  # Vext is active low
    h.deep_sleep(900000)
    assert m.calls[-1] == ("deepsleep", (900000,), {})


@pytest.mark.parametrize(
    "board_change, call, field",
    [
        ({"uart": {"pm": {"rx": 44}}}, lambda h: h.uart("pm"), "uart.pm.tx"),
        ({"uart": {"pm": {"tx": 1, "rx": 3, "id": 0}}}, lambda h: h.uart("pm"), "uart.pm.id"),
        ({"i2c": {"sda": 41}}, lambda h: h.i2c(), "i2c.scl"),
        ({"i2c": {"sda": 41, "scl": "SCL"}}, lambda h: h.i2c(), "i2c.scl"),
        ({"pins": {}}, lambda h: h.pin("tilt"), "pins.tilt"),
        ({"battery": {"divider": 2}}, lambda h: h.adc("battery"), "battery.adc_pin"),
        ({"battery": {"method": "solar"}}, lambda h: h.adc("battery"), "battery.method"),
        ({"i2c": {"sda": 300, "scl": 1}}, lambda h: h.i2c(), "i2c.sda"),
    ],
)
def test_mpy_bad_board_fields_are_named(board_change, call, field):
    board = dict(HELTEC_V3, **board_change)
    with pytest.raises(BoardError) as info:
        call(MpyHal(board, machine=fake_machine()))
    assert info.value.field == field


def _board(repo_root, name):
    return json.loads((repo_root / "boards" / f"{name}.json").read_text())


def test_mpy_wires_the_heltec_v3_board_file(repo_root):
    m = fake_machine()
    h = MpyHal(_board(repo_root, "heltec_wifi_lora_32_v3"), machine=m)
    i2c = h.i2c()
    assert (i2c.kwargs["sda"].args[0], i2c.kwargs["scl"].args[0], i2c.kwargs["freq"]) == (41, 42, 100000)
    for name in ("pm", "distance"):  # one sensor UART, shared by whichever sensor the role uses
        u = h.uart(name)
        assert u.args == (1,) and (u.kwargs["tx"], u.kwargs["rx"], u.kwargs["baudrate"]) == (47, 48, 9600)
    h.adc("battery")
    pins = {c[1][0]: c for c in m.calls if c[0] == "Pin"}
    assert 1 in pins  # ADC on GPIO1
    assert pins[37][1][1] == m.Pin.OUT and pins[37][2] == {"value": 0}  # ADC_Ctrl enables the divider
    assert h.battery_divider() == 4.9
    assert h.peripheral_power(True) is True
    assert [c for c in m.calls if c[0] == "Pin" and c[1][0] == 36][-1][2] == {"value": 0}  # Vext on = low
    with pytest.raises(BoardError) as info:
        h.pin("trigger", "out")  # not on the board file: the installer adds "pins"
    assert info.value.field == "pins.trigger"


def test_mpy_t_beam_gps_uart_and_pmu_battery(repo_root):
    m = fake_machine()
    regs = {0x82: 0x03, 0x78: 0xEE, 0x79: 0x05}  # 0xEE5 = 3813 x 1.1 mV = 4.194 V
    writes = []

    class PmuBus:
        def readfrom_mem(self, addr, reg, n):
            assert addr == 52
            return bytes(regs.get(reg + i, 0) for i in range(n))

        def writeto_mem(self, addr, reg, data):
            writes.append((reg, bytes(data)))

    m.I2C = lambda *a, **k: PmuBus()
    h = MpyHal(_board(repo_root, "lilygo_t_beam"), machine=m)
    gps = h.uart("gps")
    assert gps.args == (1,) and (gps.kwargs["tx"], gps.kwargs["rx"]) == (12, 34)
    assert h.uart("pm").args == (2,)
    adc = h.adc("battery")
    assert writes == [(0x82, bytes((0x83,)))]  # battery-voltage ADC enabled
    assert adc.read_uv() == 4194300 and h.battery_divider() == 1.0


def test_mpy_ttgo_battery_divider(repo_root):
    m = fake_machine()
    h = MpyHal(_board(repo_root, "ttgo_lora32_v21"), machine=m)
    h.adc("battery")
    assert [c for c in m.calls if c[0] == "Pin"][-1][1][0] == 35 and h.battery_divider() == 2.0
    assert h.peripheral_power(True) is False


@pytest.mark.parametrize(
    "cause, expected",
    [("PWRON_RESET", "power_on"), ("HARD_RESET", "power_on"), ("WDT_RESET", "watchdog"),
     ("DEEPSLEEP_RESET", "deep_sleep"), ("SOFT_RESET", "soft")],
)
def test_mpy_reset_cause_uses_the_schema_vocabulary(cause, expected, repo_root):
    assert MpyHal(HELTEC_V3, machine=fake_machine(cause)).reset_cause() == expected
    schema = json.loads((repo_root / "codecs" / "schema.json").read_text())
    fields = schema["messages"]["device_status"]["versions"]["1"]
    enum = next(f["values"] for f in fields if f["name"] == "reset_cause")
    assert expected in enum


# --- CircuitPython backend against fakes of its modules ------------------------------------------------------

class FakeBusioI2C:
    def __init__(self, scl, sda, frequency):
        self.pins, self.frequency, self.locked, self.log = (scl, sda), frequency, False, []

    def try_lock(self):
        if self.locked:
            return False
        self.locked = True
        return True

    def unlock(self):
        self.locked = False

    def writeto_then_readfrom(self, addr, out, into):
        assert self.locked
        self.log.append(("wr", addr, bytes(out)))
        for i in range(len(into)):
            into[i] = out[0] + i

    def writeto(self, addr, data):
        assert self.locked
        self.log.append(("w", addr, bytes(data)))


class FakeUART:
    def __init__(self, tx, rx, baudrate, timeout, receiver_buffer_size):
        self.pins, self.baudrate, self.pending = (tx, rx), baudrate, bytearray(b"\xaa\xc0")

    @property
    def in_waiting(self):
        return len(self.pending)

    def read(self, n):
        out, self.pending = bytes(self.pending[:n]), self.pending[n:]
        return out

    def write(self, data):
        return len(data)


def cpy_modules(reason="DEEP_SLEEP_ALARM"):
    gpio = types.SimpleNamespace(**{f"GPIO{i}": f"GPIO{i}" for i in range(48)})
    rr = types.SimpleNamespace(POWER_ON=1, BROWNOUT=2, SOFTWARE=3, DEEP_SLEEP_ALARM=4, RESET_PIN=5, WATCHDOG=6, UNKNOWN=7)
    return {
        "board": types.SimpleNamespace(SDA="board.SDA", SCL="board.SCL", D5="board.D5"),
        "microcontroller": types.SimpleNamespace(pin=gpio, ResetReason=rr, cpu=types.SimpleNamespace(reset_reason=getattr(rr, reason))),
        "busio": types.SimpleNamespace(I2C=FakeBusioI2C, UART=FakeUART),
        "analogio": types.SimpleNamespace(AnalogIn=lambda pin: types.SimpleNamespace(value=32768, reference_voltage=3.3)),
        "alarm": types.SimpleNamespace(sleep_memory=bytearray(64)),
    }


def test_cpy_adapters_speak_the_machine_method_names():
    board = dict(HELTEC_V3, i2c={"sda": "SDA", "scl": "SCL", "freq": 100000})
    h = CpyHal(board, modules=cpy_modules())
    i2c = h.i2c()
    assert i2c.bus.pins == ("board.SCL", "board.SDA") and i2c.bus.frequency == 100000
    assert i2c.readfrom_mem(0x77, 0xD0, 3) == bytes((0xD0, 0xD1, 0xD2))
    i2c.writeto(0x77, b"\x74\x25")
    assert i2c.bus.log == [("wr", 0x77, b"\xd0"), ("w", 0x77, b"\x74\x25")] and not i2c.bus.locked
    uart = h.uart("pm")
    assert uart.uart.pins == ("GPIO43", "GPIO44") and uart.any() == 2 and uart.read() == b"\xaa\xc0"
    assert uart.read() is None  # like machine.UART with nothing waiting
    assert h.adc("battery").read_uv() == 1650025  # 32768/65535 of 3.3 V
    rtc = h.rtc()
    assert rtc.memory() == b""
    rtc.memory(b"queued readings")
    assert rtc.memory() == b"queued readings"
    assert h.reset_cause() == "deep_sleep"


@pytest.mark.parametrize("reason, expected", [("POWER_ON", "power_on"), ("BROWNOUT", "brownout"), ("SOFTWARE", "soft"),
                                              ("WATCHDOG", "watchdog"), ("RESET_PIN", "power_on"), ("UNKNOWN", "power_on")])
def test_cpy_reset_reasons(reason, expected):
    assert CpyHal(HELTEC_V3, modules=cpy_modules(reason)).reset_cause() == expected


def test_cpy_unknown_pin_name_is_named():
    board = dict(HELTEC_V3, i2c={"sda": "SDA", "scl": "GP99"})
    with pytest.raises(BoardError) as info:
        CpyHal(board, modules=cpy_modules()).i2c()
    assert info.value.field == "i2c.scl"


# --- the sim backend on the real unix port ------------------------------------------------------------------

def test_sim_random_is_identical_on_micropython_and_cpython(micropython):
    from citynode_sim.sim import SimRandom

    code = """
import json
from citynode_sim.sim import SimRandom
r = SimRandom(42)
print(json.dumps([r.next32() for _ in range(5)] + [r.randint(1, 6) for _ in range(5)]))
"""
    r = SimRandom(42)
    assert micropython.eval_json(code) == [r.next32() for _ in range(5)] + [r.randint(1, 6) for _ in range(5)]


def test_sim_primitives(micropython):
    code = """
import json
from citynode_sim.sim import SimI2C, SimPin, SimClock, SimRTC
out = {}
try:
    SimI2C().readfrom_mem(0x40, 0, 1)
except OSError as e:
    out["enodev"] = e.args[0]
p = SimPin()
edges = []
p.irq(lambda pin: edges.append(pin.value()), SimPin.IRQ_RISING)
for level in (1, 1, 0, 1, 0):
    p.edge(level)
out["edges"] = edges
c = SimClock()
c.sleep_ms(1500)
out["ms"] = c.ticks_ms()
r = SimRTC()
r.memory(b"abc")
out["rtc"] = r.memory().decode()
print(json.dumps(out))
"""
    assert micropython.eval_json(code) == {"enodev": 19, "edges": [1, 1], "ms": 1500, "rtc": "abc"}


# Each role loads only its own drivers, as a node does. The unix port compiles every module from
# source here (a node runs mpy-cross output), and compiling needs a transient heap of about four times
# the source size: so the biggest modules are imported first, with a collection after each.
_AIR_NODE = """
import gc, json
from citynode.drivers.bme680 import BME680_I2C
gc.collect()
import citynode_sim.sim_bme680
gc.collect()
from citynode import hal
import citynode_sim.sim
gc.collect()
import citynode_sim.simdev
gc.collect()
from citynode.drivers import SensorError
from citynode.drivers.particulate import particulate_sensor
from citynode.drivers.battery import Battery
gc.collect()
h = hal.load({{"name": "sim", "battery": {{"divider": 2.0}}}}, seed={seed}, values={values})
bme = BME680_I2C(h.i2c(), clock=h.clock)
pm = particulate_sensor("{pm}", h.uart("pm"), h.clock, samples=2)
bat = Battery(h.adc("battery"), h.battery_divider())
heap = [0] * {cycles}  # preallocated: the bookkeeping must not look like growth
out = []
for cycle in range({cycles}):
    r = {{}}
    for fn in (bme.measure, pm.read, bat.read_volts):
        try:
            v = fn()
            r.update(v if isinstance(v, dict) else {{"battery": v}})
        except SensorError as e:
            r.setdefault("faults", []).append(e.sensor)
    h.deep_sleep(900000)
    gc.collect()
    heap[cycle] = gc.mem_alloc()
    if cycle < 3:
        out.append(r)
print(json.dumps({{"first": out, "heap": heap, "reset": h.reset_cause()}}))
"""

_BIN_NODE = """
import gc, json
from citynode import hal
from citynode.drivers.hcsr04 import HCSR04
from citynode.drivers.a02yyuw import A02YYUW
from citynode.drivers.bin import BinMonitor, TiltSwitch
gc.collect()
h = hal.load({{"name": "sim"}}, seed={seed}, values={values})
bin_hc = BinMonitor(HCSR04(h.pin("trigger", "out"), h.pin("echo"), h.time_pulse_us, h.clock), 1000, 300,
                    tilt=TiltSwitch(h.pin("tilt"), h.clock))
bin_uart = BinMonitor(A02YYUW(h.uart("distance"), h.clock), 1000, 300)
heap = [0] * {cycles}  # preallocated: the bookkeeping must not look like growth
out = []
for cycle in range({cycles}):
    r = {{"hc": bin_hc.measure({temp}), "uart": bin_uart.measure({temp})}}
    h.deep_sleep(900000)
    gc.collect()
    heap[cycle] = gc.mem_alloc()
    if cycle < 3:
        out.append(r)
print(json.dumps({{"first": out, "heap": heap}}))
"""


def _air_node(micropython, seed=1, values="{}", pm="sds011", cycles=3):
    return micropython.eval_json(_AIR_NODE.format(seed=seed, values=values, pm=pm, cycles=cycles), timeout=120)


def _bin_node(micropython, seed=1, values="{}", temp=18.0, cycles=3):
    return micropython.eval_json(_BIN_NODE.format(seed=seed, values=values, temp=temp, cycles=cycles), timeout=120)


def test_sim_board_air_quality_drivers(micropython):
    values = ('{"air": [{"temperature": 18.0, "pressure": 1009.0, "relative_humidity": 55.0, "gas_resistance": 90000}],'
              ' "pm": [(7.5, 12.0)], "battery_v": 3.95}')
    got = _air_node(micropython, values=values)
    r = got["first"][0]
    # integer pressure compensation moves in 2 Pa steps above 2^30 (divide before doubling)
    assert r["temperature"] == 18.0 and abs(r["pressure"] - 1009.0) <= 0.02
    assert abs(r["relative_humidity"] - 55.0) <= 0.01
    assert abs(r["gas_resistance"] - 90000) < 900
    assert (r["pm2_5"], r["pm10"]) == (7.5, 12.0)
    assert abs(r["battery"] - 3.95) <= 0.01
    assert got["reset"] == "deep_sleep"


def test_sim_board_bin_drivers(micropython):
    got = _bin_node(micropython, values='{"distance_mm": [700], "air_temperature_c": 18.0, "tilt": 1}')
    r = got["first"][0]
    for key in ("hc", "uart"):
        assert r[key]["distance"] == 700 and r[key]["fill_level"] == 60, key
    assert r["hc"]["tilt"] is True


def test_sim_board_is_deterministic_per_seed(micropython):
    a = _air_node(micropython, seed=5, pm="pms5003")["first"]
    b = _air_node(micropython, seed=5, pm="pms5003")["first"]
    c = _air_node(micropython, seed=6, pm="pms5003")["first"]
    assert a == b and a != c
    assert all(-5 <= r["temperature"] <= 32 and 985 <= r["pressure"] <= 1035 for r in a)
    d = _bin_node(micropython, seed=9)["first"]
    assert d == _bin_node(micropython, seed=9)["first"]
    assert all(300 <= r["uart"]["distance"] <= 1200 for r in d)


def test_sim_board_faults_become_sensor_errors(micropython):
    r = _air_node(micropython, values='{"fault": ["bme680", "pm"]}')["first"][0]
    assert r["faults"] == ["bme680", "sds011"] and "temperature" not in r
    r = _bin_node(micropython, values='{"fault": ["distance"]}', temp=None)["first"][0]
    assert r["hc"]["faults"] == r["uart"]["faults"] == ["temperature", "distance", "fill_level"]


@pytest.mark.parametrize("node", ["air", "bin"])
def test_env_drivers_do_not_grow_the_heap_over_cycles(micropython, node):
    run = _air_node if node == "air" else _bin_node
    heap = run(micropython, cycles=200)["heap"]  # live heap after gc.collect(), one entry per cycle
    # the simulators' bounded command logs fill during the first cycles; after that the live heap
    # is flat: the second hundred cycles never exceed the first
    assert max(heap[100:]) <= max(heap[50:100]), heap


# --- what the crowd_count role and the app ask of the HAL -----------------------------------------------

def test_sim_crowd_sources_repeat_their_population_as_time_passes(micropython):
    code = """
import json
from citynode import hal
h = hal.load({"name": "sim"}, seed=3)
src = h.wifi_source(6)
buf = bytearray(1024)
def drain():
    total = 0
    while True:
        n = src.read(buf)
        if not n:
            return total
        total += n
first, idle = drain(), drain()
h.clock.sleep_ms(60000)
again = drain()
seen = []
ble = h.bluetooth().BLE()
ble.irq(lambda event, data: seen.append(event))
ble.active(True)
ble.gap_scan(0)
at_start = len(seen)
h.clock.sleep_ms(30000)
h.clock.sleep_ms(30000)
after_period = len(seen)
ble.gap_scan(None)
h.clock.sleep_ms(120000)
print(json.dumps([first, idle, again, at_start, after_period, len(seen)]))
"""
    first, idle, again, at_start, after_period, stopped = micropython.eval_json(code)
    assert first > 0 and idle == 0 and again == first  # the same devices probe again a minute later
    assert at_start == 20 and after_period == 40 and stopped == 40  # 20 adverts per minute until stopped


def test_sim_reset_ends_the_run_and_faults_disable_crowd_sources(micropython):
    code = """
import json
from citynode import hal
h = hal.load({"name": "sim"}, values={"fault": ["wifi", "ble"]})
out = []
for fn in (lambda: h.wifi_source(1), h.bluetooth):
    try:
        fn()
        out.append("ok")
    except OSError:
        out.append("absent")
try:
    h.reset()
except SystemExit:
    out.append("exit")
print(json.dumps(out + [h.hard_irq]))
"""
    assert micropython.eval_json(code) == ["absent", "absent", "exit", False]


def test_mpy_crowd_sources_use_wifisniff_and_bluetooth():
    calls = []
    network = types.SimpleNamespace(STA_IF=0, WLAN=lambda i: types.SimpleNamespace(active=lambda on: calls.append(("active", on))))
    sniff = types.SimpleNamespace(start=lambda ch: calls.append(("start", ch)))
    bt = types.SimpleNamespace(BLE=object)
    m = fake_machine()
    m.reset = lambda: calls.append(("reset",))
    h = MpyHal(HELTEC_V3, machine=m, modules={"network": network, "wifisniff": sniff, "bluetooth": bt})
    assert h.wifi_source(6) is sniff and calls == [("active", True), ("start", 6)]
    assert h.bluetooth() is bt and h.hard_irq is True
    with pytest.raises(BoardError) as info:
        h.wifi_source(15)
    assert info.value.field == "wifi_channel"
    h.reset()
    assert calls[-1] == ("reset",)


def test_cpy_wifi_monitor_source_keeps_only_the_management_header():
    from citynode.hal.cpy import CpyWifiSource

    keys = types.SimpleNamespace(RAW="raw", RSSI="rssi", CH="ch")
    frame = bytes(range(40))  # 24-byte header + body the counter must never see
    packets = [{"raw": frame, "rssi": -60, "ch": 6}, {"raw": frame[:10], "rssi": -70, "ch": 6}]
    monitor = types.SimpleNamespace(packet=lambda: packets.pop(0) if packets else None)
    src = CpyWifiSource(monitor, keys)
    buf = bytearray(30)  # room for one 28-byte record: the second waits for the next read
    assert src.read(buf) == 28
    assert buf[:4] == bytes((24, 0, (-60) & 0xFF, 6)) and buf[4:28] == frame[:24]
    assert src.read(buf) == 14 and buf[4:14] == frame[:10]
    assert src.read(buf) == 0
