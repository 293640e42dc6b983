"""The hardware-in-the-loop rig: a device under test (DUT) chosen on the command line, never in a test.

    pytest hil_tests                                   # a fresh virtual device per test (default)
    pytest hil_tests --dut serial:/dev/ttyUSB0 --dut-board heltec_wifi_lora_32_v3 \\
        --dut-device 70B3D57ED0000001 --dut-bundles bundles   # a real board, flashed with that DevEUI's bundle
    pytest hil_tests --dut serial:/dev/pts/3 --dut-board sim --dut-device 70B3D57ED0000042 \\
        --dut-bundles bundles                                 # `citynode virtual-device` as a serial DUT

A serial DUT runs the tests of the role its bundle names and the role-independent ones; a test for
another role is skipped with the reason, and the summary says which roles were left out and which
boards carry them (boards/<board>.json "roles"). A port without RTS/DTR lines (a pseudo-terminal) gets
no hardware reset: a log line says so and the node runs from the soft reset the flash ended with.

A test states the node it needs with markers: ``@pytest.mark.role("bin_fill")`` (default bin_fill) and,
on the virtual board, ``@pytest.mark.scenario({...})`` (sim.json: cycles, seed, sensor values,
scripted downlinks). The ``dut`` fixture offers ``write(text)``, ``expect(regex, timeout) -> re.Match``
(a timeout fails showing the last output received and the path of the full log), ``reset()`` and
``put(name, text)`` (a file on the device's filesystem). Every byte received goes to a log file per
test: ``<pytest tmp dir>/dut.log``, or ``--dut-logs DIR`` to keep them (rigs).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import serial

from gateway.errors import CitynodeError
from gateway.field.firmware_build import build_firmware
from gateway.field.flash import config_from_bundle, flash_node, is_pty, load_board
from gateway.field.micropython import node_heap
from gateway.sim.virtual_device import VirtualDevice

DEFAULT_ROLE = "bin_fill"
VIRTUAL_EUI = "70B3D57ED0000042"
# Tests the node firmware cannot pass yet, left out of the run with the reason printed in the summary.
PENDING_MARK = "pending_firmware"
log = logging.getLogger("citynode.hil")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("citynode HIL")
    group.addoption("--dut", default="virtual", help="virtual (default) or serial:/dev/ttyUSB0")
    group.addoption("--dut-board", default=None, help="board of a serial DUT (boards/<board>.json)")
    group.addoption("--dut-device", default=None, help="DevEUI whose bundle a serial DUT is flashed with")
    group.addoption("--dut-bundles", default="bundles", help="bundle directory for a serial DUT")
    group.addoption("--dut-logs", default=None, help="keep one log per test in this directory")
    group.addoption("--run-pending", action="store_true",
                    help=f"also run tests marked {PENDING_MARK} (waiting for firmware support)")


def _check_dut_options(config: pytest.Config) -> None:
    """Usage errors of the DUT options: one line (pytest's `ERROR: ...`, exit status 4), before any test."""
    spec = config.getoption("--dut", default="virtual")
    if spec == "virtual":
        return
    if not spec.startswith("serial:") or not spec.split(":", 1)[1]:
        raise pytest.UsageError(f"--dut {spec!r}: expected virtual or serial:/dev/ttyUSB0")
    board = config.getoption("--dut-board")
    device = config.getoption("--dut-device")
    missing = [o for o, v in (("--dut-board BOARD", board), ("--dut-device DEVEUI", device)) if not v]
    if missing:
        raise pytest.UsageError(f"--dut {spec} needs {' and '.join(missing)} (the board's boards/<board>.json "
                                "name and a provisioned DevEUI whose bundle is in --dut-bundles)")
    try:
        load_board(board)
    except CitynodeError as exc:
        raise pytest.UsageError(f"--dut-board: {exc}") from None


def pytest_configure(config: pytest.Config) -> None:
    _check_dut_options(config)
    config.addinivalue_line("markers", "role(name): the node role the DUT is flashed with")
    config.addinivalue_line("markers", "scenario(dict): the virtual board's sim.json for this test")
    config.addinivalue_line("markers", "virtual_only: needs the virtual board's scripting")
    config.addinivalue_line("markers", "network: the virtual node talks LoRaWAN to the network-server simulator")
    config.addinivalue_line("markers", "heap(size): the virtual node's heap (default: its role's budget, node_heap)")
    config.addinivalue_line("markers", "fuota: the virtual node is provisioned for updates over the air (a GenAppKey "
                            "and the update key of the fuota_update fixture), runs a steady clock on the 32-bit "
                            "build without citynode frozen in")
    config.addinivalue_line("markers", f"{PENDING_MARK}(reason): waits for firmware support; left out of the run")


_LEFT_OUT: list[str] = []
_OTHER_ROLES: dict[str, list[str]] = {}  # role -> tests skipped because the serial DUT has another role


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-pending", default=False):
        return
    keep, drop = [], []
    for item in items:
        mark = item.get_closest_marker(PENDING_MARK)
        if mark is not None and "hil_tests" in str(item.path):
            drop.append(item)
            _LEFT_OUT.append(f"{item.nodeid}: {mark.args[0] if mark.args else 'pending firmware support'}")
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def _boards_carrying(role: str) -> list[str]:
    from gateway.paths import boards_dir

    out = []
    for path in sorted(boards_dir().glob("*.json")):
        if path.stem != "sim" and role in (json.loads(path.read_text()).get("roles") or ()):
            out.append(path.stem)
    return out


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _OTHER_ROLES:
        terminalreporter.section("HIL tests for other roles (a serial DUT runs the tests of its own role)")
        for role, tests in sorted(_OTHER_ROLES.items()):
            terminalreporter.write_line(
                f"{role}: {len(tests)} test(s) skipped; flash a {role} bundle on one of "
                f"{', '.join(_boards_carrying(role)) or 'no board'} and run again"
            )
    if _LEFT_OUT:
        terminalreporter.section("HIL tests left out (waiting for firmware support; --run-pending runs them)")
        for line in _LEFT_OUT:
            terminalreporter.write_line(line)


class DUT:
    """A node on a serial port (real or virtual): a reader thread logs everything and feeds expect()."""

    def __init__(self, port: str, log_path: Path, device: VirtualDevice | None = None) -> None:
        self.port_name = port
        self.log_path = log_path
        self.device = device
        self._buf = ""
        self._pos = 0
        self._cond = threading.Condition()
        self._log = log_path.open("a", encoding="utf-8", errors="replace")
        self._stop = False
        self._serial = serial.Serial(port, 115200, timeout=0.1)
        self._thread = threading.Thread(target=self._reader, daemon=True)
        self._thread.start()

    def _reader(self) -> None:
        while not self._stop:
            try:
                data = self._serial.read(4096)
            except (serial.SerialException, OSError, TypeError):
                if self._stop:
                    return
                time.sleep(0.05)
                continue
            if data:
                text = data.decode("utf-8", errors="replace").replace("\r\n", "\n")
                with self._cond:
                    self._buf += text
                    self._log.write(text)
                    self._log.flush()
                    self._cond.notify_all()

    def write(self, text: str) -> None:
        """Send text as typed on the console ("\\n" becomes the Enter key, "\\r")."""
        self._serial.write(text.replace("\n", "\r").encode())

    def expect(self, pattern: str, timeout: float = 15.0) -> re.Match[str]:
        """The next match of pattern in the output after the previous match; fails on timeout."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                match = regex.search(self._buf, self._pos)
                if match:
                    self._pos = match.end()
                    return match
                left = deadline - time.monotonic()
                if left <= 0:
                    tail = self._buf[max(self._pos, len(self._buf) - 2000):]
                    pytest.fail(
                        f"expected /{pattern}/ within {timeout:g} s; last output received:\n{tail}\n"
                        f"full log: {self.log_path}",
                        pytrace=False,
                    )
                self._cond.wait(left)

    @property
    def output(self) -> str:
        with self._cond:
            return self._buf

    def reset(self) -> None:
        """Restart the node like its reset button: virtual = power cycle; serial = EN low through RTS."""
        if self.device is not None:
            self.device.hard_reset("power_on")
        elif is_pty(self.port_name):
            self._note(f"reset: {self.port_name} is a pseudo-terminal without RTS/DTR lines: hardware reset "
                       "skipped (the node runs from the soft reset the flash ended with)")
        else:  # ESP32 dev boards: RTS drives EN (esptool's classic reset), DTR high keeps IO0 high
            try:
                self._serial.dtr = False
                self._serial.rts = True
                time.sleep(0.1)
                self._serial.rts = False
            except (OSError, serial.SerialException) as exc:  # an adapter without modem-control lines
                self._note(f"reset: {self.port_name} has no RTS/DTR lines ({exc}): hardware reset skipped")

    def _note(self, message: str) -> None:
        """A line of the rig's own in the DUT log (marked [hil]) and in pytest's log capture."""
        log.warning("%s", message)
        with self._cond:
            self._log.write(f"\n[hil] {message}\n")
            self._log.flush()

    def put(self, name: str, text: str) -> None:
        """Write a file on the device's filesystem (virtual: directly; serial: through the raw REPL)."""
        if self.device is not None:
            (self.device.fs_dir / name).write_text(text)
            return
        from gateway.field.flash import open_device

        self._pause()
        try:
            with open_device(self.port_name) as transport:
                transport.fs_writefile(name, text.encode())
        finally:
            self._resume()

    def _pause(self) -> None:
        self._stop = True
        self._thread.join()
        self._serial.close()

    def _resume(self) -> None:
        self._serial = serial.Serial(self.port_name, 115200, timeout=0.1)
        self._stop = False
        self._thread = threading.Thread(target=self._reader, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=5)
        self._serial.close()
        self._log.close()


@pytest.fixture(scope="session")
def app_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hil-app") / "app"
    build_firmware(out, sim=True)  # the virtual device's tree: `citynode flash` adds citynode_sim there
    return out


def virtual_bundle(role: str) -> dict[str, Any]:
    """A bundle as `citynode provision` writes it (gateway.field.provision.bundle_for), for the virtual node."""
    from gateway.field.provision import ROLE_SETTINGS

    s = ROLE_SETTINGS[role]
    return {"dev_eui": VIRTUAL_EUI, "join_eui": "70B3D57ED0001000", "app_key": "2B7E151628AED2A6ABF7158809CF4F3C",
            "role": role, "board": "sim", "region": "EU868",
            "intervals": {"interval": s.uplink_interval_s, "status_interval": s.status_interval_h}}


def _marker_arg(request: pytest.FixtureRequest, name: str, default: Any) -> Any:
    mark = request.node.get_closest_marker(name)
    return mark.args[0] if mark is not None and mark.args else default


FUOTA_SCALE = 10  # a node ready for updates: node time runs 10x real time, steadily (citynode_sim.udp)
FUOTA_INTERVAL_S = 60  # and reports once a minute of node time, so each FUOTA step takes seconds
FUOTA_GEN_APP_KEY = "000102030405060708090a0b0c0d0e0f"


@pytest.fixture(scope="session")
def fuota_update(app_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An update of the HIL app tree: a signing key pair, the package from the tree the node runs
    (0.1.0) to the same with a changed module (0.2.0), as `citynode fuota keygen` and `build` make them."""
    from gateway.field import fuota
    from gateway.sim.fuota_update import update_trees

    work = tmp_path_factory.mktemp("hil-update")
    key_path, pub_path = fuota.write_keypair(work / "city")
    base, target = update_trees(app_tree, work)
    package = fuota.build_package(base, target, fuota.load_private_key(key_path))
    return {"package": package, "pub": fuota.load_public_key(pub_path).hex(), "gen_app_key": FUOTA_GEN_APP_KEY,
            "base": fuota.tree_version(base, None), "target": fuota.tree_version(target, None),
            "scale": FUOTA_SCALE, "interval_s": FUOTA_INTERVAL_S, "dev_eui": VIRTUAL_EUI.lower(),
            "app_key": virtual_bundle(DEFAULT_ROLE)["app_key"]}


@pytest.fixture
def network_server(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The LoRaWAN network-server simulator (gateway.sim.nssim) on a free UDP port, knowing the virtual node."""
    from gateway.sim.nssim import NetworkServerSim
    from gateway.sim.nssim.registry import device_from_mapping

    role = _marker_arg(request, "role", DEFAULT_ROLE)
    sim = NetworkServerSim([device_from_mapping(virtual_bundle(role), "virtual node")], port=0)
    handle = sim.run_in_thread()
    try:
        yield sim
    finally:
        handle.stop()


@pytest.fixture
def dut(request: pytest.FixtureRequest, tmp_path: Path, app_tree: Path) -> Iterator[DUT]:
    spec: str = request.config.getoption("--dut")
    role = _marker_arg(request, "role", DEFAULT_ROLE)
    scenario = _marker_arg(request, "scenario", {"cycles": 1})
    logs = request.config.getoption("--dut-logs")
    log_dir = Path(logs) if logs else tmp_path
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / (re.sub(r"[^\w.-]+", "_", request.node.name) + ".log" if logs else "dut.log")
    if spec == "virtual":
        fs = tmp_path / "fs"
        shutil.copytree(app_tree, fs)  # what `citynode flash` copies (tests/field checks flash itself)
        config = config_from_bundle(virtual_bundle(role), "sim")
        updatable = request.node.get_closest_marker("fuota") is not None
        if updatable:  # `citynode provision --update-key`'s bundle: a GenAppKey and the update key
            update = request.getfixturevalue("fuota_update")
            config.update(gen_app_key=update["gen_app_key"], fuota_pub=update["pub"], interval=FUOTA_INTERVAL_S)
        (fs / "config.json").write_text(json.dumps(config))
        (fs / "board.json").write_text(json.dumps(load_board("sim")))
        if request.node.get_closest_marker("network"):
            server = request.getfixturevalue("network_server")
            # links.lorawan_link: the sim board's UdpRadio to the simulator; receive windows 5x faster.
            scenario = {**scenario, "network": {"port": server.port}, "time_scale": 5, "skip_ms": 1500}
            if updatable:  # a steady clock: the network server times the Class C fragments by it
                scenario = {**scenario, "time_scale": FUOTA_SCALE, "pace": FUOTA_SCALE,
                            "clock_epoch_ms": int(time.time() * 1000)}
                del scenario["skip_ms"]
        (fs / "sim.json").write_text(json.dumps(scenario))
        # every virtual node gets its role's budget (64k on the 32-bit frozen build, node_heap), on the
        # LoRaWAN link or not; the sim board's simulators run on the host (gateway/sim/simhost.py); a node
        # ready for updates runs its app's bytecode in the heap, on the 32-bit build without citynode
        # frozen in, at gateway.sim.fleet.UPDATE_HEAP
        if updatable:
            from gateway.sim.fleet import UPDATE_HEAP, update_interpreter

            try:
                request.getfixturevalue("monkeypatch").setenv("CITYNODE_MICROPYTHON", str(update_interpreter()))
            except CitynodeError as exc:
                pytest.skip(str(exc))
        heap = _marker_arg(request, "heap", UPDATE_HEAP if updatable else node_heap(role))
        with VirtualDevice(fs, heapsize=heap, boot=False) as device:
            d = DUT(device.port, log_path, device)
            try:
                d.reset()  # boot with the port open, so nothing the node prints is lost
                yield d
            finally:
                d.close()
    elif spec.startswith("serial:"):
        if request.node.get_closest_marker("virtual_only"):
            pytest.skip("needs the virtual board's scripted scenario (sim.json)")
        port = spec.split(":", 1)[1]
        board = request.config.getoption("--dut-board")
        device = request.config.getoption("--dut-device")
        result = flash_node(port, board, device, bundles=Path(request.config.getoption("--dut-bundles")),
                            app_dir=app_tree, selftest=False)
        if request.node.get_closest_marker("role") and result.role != role:
            _OTHER_ROLES.setdefault(role, []).append(request.node.nodeid)
            pytest.skip(f"the DUT is provisioned as {result.role}; this test needs a {role} node "
                        f"(boards carrying {role}: {', '.join(_boards_carrying(role))})")
        d = DUT(port, log_path)
        try:
            d.reset()
            yield d
        finally:
            d.close()
    else:
        raise pytest.UsageError(f"--dut {spec!r}: expected virtual or serial:/dev/ttyUSB0")
