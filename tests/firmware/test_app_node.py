"""The node application on the real MicroPython unix port: the cycle, config, backlog and downlinks.

Each test runs in its own directory, which plays the node's flash filesystem. The role is scripted
(the sensor drivers have their own tests); the link is the console stand-in the virtual device uses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

PRELUDE = r'''
import json
from citynode import app, config, links

class TestHal:
    def __init__(self, cause="power_on"):
        self.cause = cause
        self.fed = 0
        self.deep = []
        self.slept_ms = 0
    def wdt(self, timeout_ms):
        return self
    def feed(self):
        self.fed += 1
    def reset_cause(self):
        return self.cause
    def deep_sleep(self, ms):
        self.deep.append(ms)
    def sleep_ms(self, ms):
        self.slept_ms += ms
    def reset(self):
        raise SystemExit(0)

class Clock:
    t = 1000000
    def now(self):
        return Clock.t

class BinRole:
    msg_type = "bin_fill"
    sleep = "deep"
    def __init__(self, readings):
        self.readings = list(readings)
        self.actions = []
    def configure(self, cfg):
        self.depth = cfg["bin_depth"]
        self.fire = cfg["fire_threshold"]
    def measure(self):
        r = self.readings.pop(0)
        if r == "boom":
            raise OSError("i2c bus stuck")
        return dict(r)
    def urgent(self, r):
        return r.get("temperature", 0) >= self.fire
    def faults(self):
        return ["distance"] if not self.readings else []
    def action(self, name):
        self.actions.append(name)

READING = {"distance": 850, "fill_level": 62, "temperature": 18.5, "tilt": False}

def make_node(readings, downlinks=(), cause="power_on", link=None, raw=None):
    cfg = config.validate(raw or {"role": "bin_fill", "board": "sim", "start_delay_max": 0})
    config.files.write("config.json", cfg)
    hal = TestHal(cause)
    node = app.Node(cfg, hal, BinRole(readings), link or links.ConsoleLink(downlinks=list(downlinks)),
                    battery=lambda: 3.61, now=Clock().now)
    return node, hal
'''


@pytest.fixture()
def node_dir(tmp_path: Path) -> Path:
    return tmp_path


def run(micropython: Any, node_dir: Path, body: str) -> list[str]:
    return micropython.run(PRELUDE + body, cwd=node_dir).strip().splitlines()


def test_first_cycle_sends_status_then_the_reading(micropython: Any, node_dir: Path) -> None:
    out = run(micropython, node_dir, "node, hal = make_node([READING])\nnode.boot()\nprint('sleep', node.cycle())\n")
    assert out[0] == "joined"
    assert out[1].startswith("uplink fport=1 ")  # device_status after a power-on reset
    assert out[2] == "uplink fport=11 len=12 hex=8601190352183e1855f4183d"
    assert out[3] == "sleep 3600"  # bin_fill default interval


def test_no_status_after_a_deep_sleep_wake_until_a_day_has_passed(micropython: Any, node_dir: Path) -> None:
    out = run(micropython, node_dir, """
node, hal = make_node([READING, READING, READING], cause="power_on")
node.boot(); node.cycle()
node, hal = make_node([READING, READING], cause="deep_sleep")
node.boot(); node.cycle()
Clock.t += 24 * 3600
node.cycle()
""")
    ports = [line.split()[1] for line in out if line.startswith("uplink")]
    assert ports == ["fport=1", "fport=11", "fport=11", "fport=1", "fport=11"]


def test_a_failing_sensor_sends_the_reading_with_faults(micropython: Any, node_dir: Path) -> None:
    out = run(micropython, node_dir, "node, hal = make_node(['boom'])\nnode.boot()\nnode.cycle()\n")
    assert "measure failed: i2c bus stuck" in out
    uplink = [line for line in out if line.startswith("uplink fport=11")][0]
    from gateway.contract.codec import decode

    payload = bytes.fromhex(uplink.split("hex=")[1])
    reading = decode(11, payload)["readings"][0]
    assert reading == {"battery": 3.61, "faults": ["distance", "fill_level", "temperature", "tilt"]}


def test_unsent_readings_are_kept_and_sent_batched_later(micropython: Any, node_dir: Path) -> None:
    out = run(micropython, node_dir, """
class DownLink(links.ConsoleLink):
    up = False
    def send(self, fport, data, confirmed=False):
        if not DownLink.up:
            raise links.LinkError("no network")
        return links.ConsoleLink.send(self, fport, data, confirmed)
link = DownLink()
node, hal = make_node([READING] * 3, link=link, cause="deep_sleep")
node.state["last_status"] = Clock.t
node.boot()
node.cycle(); Clock.t += 3600
node.cycle(); Clock.t += 3600
DownLink.up = True
node.cycle()
print("backlog", len(node.backlog))
""")
    assert sum("uplink failed fport=11: no network" in line for line in out) == 2
    sent = [line for line in out if line.startswith("uplink fport=11")]
    assert len(sent) == 1
    from gateway.contract.codec import decode

    batch = decode(11, bytes.fromhex(sent[0].split("hex=")[1]))
    assert [r["offset_s"] for r in batch["readings"]] == [0, 3600, 7200]
    assert out[-1] == "backlog 0"


def test_backlog_survives_a_reboot_and_overflow_is_reported(micropython: Any, node_dir: Path) -> None:
    out = run(micropython, node_dir, """
from citynode.backlog import Backlog
b = Backlog(3)
for t in range(5):
    b.push(1000 + t, {"distance": t})
b2 = Backlog(3)
print(len(b2), b2.overflowed, [r["distance"] for r in b2.newest_first()])
""")
    assert out == ["3 True [4, 3, 2]"]


def test_clock_reset_after_power_cut_keeps_backlog_order(micropython: Any, node_dir: Path) -> None:
    out = run(micropython, node_dir, """
from citynode.backlog import Backlog
b = Backlog(10)
b.push(900000, {"distance": 1}); b.push(903600, {"distance": 2})
b.push(50, {"distance": 3})  # the RTC restarted at its epoch
print([(r["distance"], r["offset_s"]) for r in b.newest_first()])
""")
    assert out == ["[(3, 0), (2, 1), (1, 3601)]"]


def test_downlink_config_is_applied_and_saved(micropython: Any, node_dir: Path) -> None:
    from gateway.contract.codec import encode_downlink

    _, data = encode_downlink({"interval": 1800, "bin_depth": 900, "occupancy_reset": True})
    out = run(micropython, node_dir, f"""
node, hal = make_node([READING], downlinks=[{{"after": 2, "fport": 2, "hex": "{data.hex()}"}}])
node.boot()
print("sleep", node.cycle())
print("actions", node.role.actions, "depth", node.role.depth)
print(json.dumps(config.load()))
""")
    assert "downlink applied: bin_depth interval occupancy_reset" in out
    assert "config saved: interval bin_depth" in out or "config saved: bin_depth interval" in out
    assert "sleep 1800" in out
    assert "actions ['occupancy_reset'] depth 900" in out
    saved = json.loads(out[-1])
    assert saved["interval"] == 1800 and saved["bin_depth"] == 900
    assert "occupancy_reset" not in saved


def test_malformed_downlink_keeps_the_configuration(micropython: Any, node_dir: Path) -> None:
    out = run(micropython, node_dir, """
node, hal = make_node([READING], downlinks=[{"after": 2, "fport": 2, "hex": "8201a1001801"}])
node.boot()
print("sleep", node.cycle())
""")
    assert any(line.startswith("downlink rejected: ") for line in out)
    assert out[-1] == "sleep 3600"


def test_fire_alarm_reading_goes_out_confirmed(micropython: Any, node_dir: Path) -> None:
    out = run(micropython, node_dir, """
class Recorder(links.ConsoleLink):
    def send(self, fport, data, confirmed=False):
        print("confirmed", fport, confirmed)
        return links.ConsoleLink.send(self, fport, data, confirmed)
node, hal = make_node([dict(READING, temperature=71.2)], link=Recorder())
node.boot(); node.cycle()
""")
    assert "confirmed 11 True" in out


def test_reboot_downlink_resets_after_the_cycle(micropython: Any, node_dir: Path) -> None:
    from gateway.contract.codec import encode_downlink

    _, data = encode_downlink({"reboot": True})
    out = run(micropython, node_dir, f"""
node, hal = make_node([READING, READING], downlinks=[{{"after": 2, "fport": 2, "hex": "{data.hex()}"}}])
try:
    node.run(cycles=2)
except SystemExit:
    print("reset")
""")
    assert out[-2:] == ["rebooting", "reset"]


def test_deep_sleep_role_sleeps_until_the_next_slot(micropython: Any, node_dir: Path) -> None:
    out = run(micropython, node_dir, "node, hal = make_node([READING] * 3)\nnode.run(cycles=3)\nprint(hal.deep, hal.fed >= 6)\n")
    assert out[-1] == "[3600000, 3600000] True"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"board": "sim"}, "role"),
        ({"role": "weather", "board": "sim"}, "role"),
        ({"role": "bin_fill"}, "board"),
        ({"role": "bin_fill", "board": "sim", "interval": 30}, "interval"),
        ({"role": "bin_fill", "board": "sim", "adr": "yes"}, "adr"),
        ({"role": "bin_fill", "board": "sim", "bin_depth": 50}, "bin_depth"),
        ({"role": "bin_fill", "board": "sim", "dev_eui": "0011"}, "dev_eui"),
        ({"role": "bin_fill", "board": "sim", "app_key": "zz" * 16}, "app_key"),
        ({"role": "bin_fill", "board": "sim", "region": "US915"}, "region"),
        ({"role": "bin_fill", "board": "sim", "queue_max": 0}, "queue_max"),
    ],
)
def test_bad_config_fails_at_boot_naming_the_field(micropython: Any, node_dir: Path, raw: dict, field: str) -> None:
    out = run(micropython, node_dir, f"""
try:
    config.validate(json.loads({json.dumps(json.dumps(raw))}))
except config.ConfigError as e:
    print("ConfigError", e.field, e)
""")
    assert out[0].startswith(f"ConfigError {field} config {field}:")


def test_config_write_survives_a_power_cut_at_every_step(micropython: Any, node_dir: Path) -> None:
    out = run(micropython, node_dir, """
import os
from citynode import files
files.write("config.json", {"role": "bin_fill", "board": "sim", "interval": 600})
# 1. cut while the new copy was being written: a torn .tmp, the old file whole
with open("config.json.tmp", "w") as f:
    f.write('{"role": "bin_fi')
print(1, files.read("config.json")["interval"])
# 2. cut on FAT after the old file was removed, before the rename: only .tmp is left
files.write("config.json.tmp", {"role": "bin_fill", "board": "sim", "interval": 900})
os.remove("config.json")
print(2, files.read("config.json")["interval"], sorted(n for n in os.listdir() if n.startswith("config")))
# 3. a corrupt file and no copy: the caller gets the default (boot then fails naming config.json)
with open("config.json", "w") as f:
    f.write("{garbage")
print(3, files.read("config.json", "default"))
try:
    config.load()
except config.ConfigError as e:
    print(3, e.field)
""")
    assert out == ["1 600", "2 900 ['config.json']", "3 default", "3 config.json"]


def test_device_status_reports_the_running_app_slot_and_the_last_update(micropython: Any, node_dir: Path) -> None:
    # citynode.fuota.slots' marker: app slot a runs 0.2.0, and a later package was refused (a file hash)
    from gateway.contract import codec

    (node_dir / "slots.json").write_text(json.dumps({"active": "a", "previous": None, "trial": False, "boots": 0,
                                                     "versions": {"a": "0.2.0"}, "update": "refused_hash"}))
    out = run(micropython, node_dir, "node, hal = make_node([READING])\nnode.boot()\n")
    status = codec.decode(1, bytes.fromhex(out[1].split("hex=")[1]))["readings"][0]
    assert (status["firmware"], status["update"]) == ("0.2.0", "refused_hash")


def test_a_fuota_downlink_without_the_software_mac_loads_nothing(micropython: Any, node_dir: Path) -> None:
    out = run(micropython, node_dir, """
import sys
node, hal = make_node([READING], downlinks=[{"after": 1, "fport": 200, "hex": "0200"}])
node.boot()
node.cycle()
print(json.dumps(sorted(m for m in sys.modules if m.startswith("citynode.fuota"))))
""")
    assert "downlink on fport 200 ignored: FUOTA needs the software MAC" in out
    assert out[-1] == "[]"


def test_a_reset_during_an_update_session_resumes_it_at_boot(micropython: Any, node_dir: Path) -> None:
    # fuota.json holds the multicast group and a Class C session still ahead (citynode.fuota.node): the
    # node, provisioned for FUOTA, loads FuotaNode at boot, which takes them back and asks for the time;
    # without a session in fuota.json nothing of FUOTA is loaded
    gps = 1767225600 - 315964782
    group = [0x01020304, "00" * 16, "11" * 16, 0, 2**32 - 1, 7]
    (node_dir / "fuota.json").write_text(json.dumps({"session_cnt": 0, "mc": [group],
                                                     "mc_c": [[gps + 3600, gps + 3600 + 1024, 869525000, 3]]}))
    code = """
import sys
class Mac:
    def now_ms(self):
        return 0
    def listen(self, *a):
        pass
class Link:
    mac = Mac()
    joined = True
raw = {"role": "bin_fill", "board": "sim", "start_delay_max": 0, "gen_app_key": "00" * 16}
node, hal = make_node([READING], link=Link(), raw=raw)
node._status_due = lambda: False
node.boot()
f = node.fuota
print(json.dumps(None if f is None else [f.fuota.multicast.groups[0][0], f.fuota.multicast._fcnt[0],
                                          f.session()[2:], f.busy(), [a[1] for a in f.answers]]))
"""
    from gateway.field.micropython import run_code

    def boot() -> str:  # 256 KB: the app and the FUOTA modules are compiled from source here (64-bit port)
        return run_code(PRELUDE + code, heapsize="256k", cwd=node_dir).stdout.strip().splitlines()[-1]

    assert json.loads(boot()) == [0x01020304, 7, [869525000, 3], True, [202]]
    (node_dir / "fuota.json").write_text(json.dumps({"session_cnt": 0, "mc": [group]}))
    assert boot() == "null"
