"""``citynode device run``: the node firmware on the MicroPython unix port with simulated sensors.

Examples::

    citynode device run --board sim --role bin_fill --cycles 3
    citynode device run --role air_quality --cycles 1000 --heap --decode
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from gateway.cli import DefaultsHelpFormatter
from gateway.contract import codec
from gateway.errors import ConfigError, DecodeError
from gateway.field.flash import board_roles
from gateway.field.micropython import node_heap
from gateway.sim.device_run import (
    ROLES,
    prepare_fs,
    stream_device,
    stream_lorawan_device,
)

__all__ = ["SIMULATED_BOARDS", "VALUES_HELP", "load_values", "register"]

# Boards whose peripherals the host simulates (gateway/sim/simhost.py and the sim HAL): a real board's
# file names SPI radios and pins that exist only on the board, so `device run` refuses it with one line.
# sim_rak3172 / sim_wio_e5: the sim board with an AT modem (gateway/sim/modems) instead of the
# citynode MAC; they need --lorawan (their modem talks to a network-server simulator).
SIMULATED_BOARDS = ("sim", "sim_rak3172", "sim_wio_e5")
AT_MODEM_BOARDS = ("sim_rak3172", "sim_wio_e5")

VALUES_HELP = """\
--values FILE: a JSON object scripting the simulated sensors. Lists are consumed one entry per
measurement; the last entry repeats. Every key is optional; unknown keys are refused.
  air                list of objects {"temperature": °C, "pressure": hPa, "relative_humidity": %,
                     "gas_resistance": ohm (optional)}: BME680 readings (air_quality)
  pm_sensor          "sds011" (default; measures PM2.5 and PM10) or "pms5003" (also PM1.0)
  pm                 list of [pm2_5, pm10] (sds011) or [pm1_0, pm2_5, pm10] (pms5003), µg/m³
  distance_mm        list of distances in mm, null for no echo (bin_fill)
  air_temperature_c  temperature the ultrasonic echo travels through, °C (default 20)
  battery_v          cell voltage, V (default 3.9)
  tilt               true when the bin is tipped over
  fault              list of sensors made absent or dead: "bme680", "pm", "distance", "wifi", "ble"
  passengers         {"stops_per_hour", "boardings_per_stop", "alightings_per_stop", "stops_per_trip": numbers,
                     "stops": list} (passenger_count)
  gps                {"position": [lat, lon], "route": [[lat, lon], ...], "period_s": s, "fix": bool}
  wifi, ble          objects of synthetic-crowd arguments; wifi_period_s, ble_period_s: seconds (crowd_count)
  wifi_replay        file name of a CNWIFI1 capture to replay (crowd_count)
Example: {"air": [{"temperature": 21.5, "pressure": 1013.2, "relative_humidity": 45}], "battery_v": 3.7}
"""

_NUMBER = (int, float)
_FAULTS = ("bme680", "pm", "distance", "wifi", "ble")
_AIR_KEYS = {"temperature": True, "pressure": True, "relative_humidity": True, "gas_resistance": False}
_PASSENGER_NUMBERS = ("stops_per_hour", "boardings_per_stop", "alightings_per_stop", "stops_per_trip")
_GPS_KEYS = ("position", "route", "period_s", "fix")


class _RawEpilogFormatter(DefaultsHelpFormatter):
    """Wraps the description like every command; keeps the --values table (text with line breaks) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def _is_number(value: object) -> bool:
    return isinstance(value, _NUMBER) and not isinstance(value, bool)


def _check(ok: bool, where: str, expected: str, value: object) -> None:
    if not ok:
        raise ConfigError(f"{where}: expected {expected}, got {json.dumps(value)}")


def _check_list(values: dict[str, Any], key: str, where: str) -> list[Any]:
    value = values[key]
    _check(isinstance(value, list) and bool(value), where, "a non-empty list", value)
    return value


def validate_values(values: object, source: str = "--values") -> dict[str, Any]:
    """The scripted sensor values, checked key by key; a bad one raises :class:`ConfigError` naming it."""
    _check(isinstance(values, dict), source, "a JSON object (see `citynode device run --help`)", values)
    assert isinstance(values, dict)
    for key in values:
        where = f"{source} {key}"
        value = values[key]
        if key == "air":
            for i, entry in enumerate(_check_list(values, key, where)):
                at = f"{where}[{i}]"
                _check(isinstance(entry, dict), at, "an object", entry)
                for name in entry:
                    if name not in _AIR_KEYS:
                        raise ConfigError(f"{at}.{name}: unknown key (known: {', '.join(_AIR_KEYS)})")
                    _check(_is_number(entry[name]), f"{at}.{name}", "a number", entry[name])
                for name, required in _AIR_KEYS.items():
                    if required and name not in entry:
                        raise ConfigError(f"{at}.{name}: missing (every air entry needs "
                                          "temperature, pressure and relative_humidity)")
        elif key == "pm_sensor":
            _check(value in ("sds011", "pms5003"), where, '"sds011" or "pms5003"', value)
        elif key == "pm":
            size = 3 if values.get("pm_sensor") == "pms5003" else 2
            shape = "[pm1_0, pm2_5, pm10]" if size == 3 else "[pm2_5, pm10]"
            for i, entry in enumerate(_check_list(values, key, where)):
                _check(isinstance(entry, list) and len(entry) == size and all(_is_number(x) for x in entry),
                       f"{where}[{i}]", f"{shape} numbers for {values.get('pm_sensor', 'sds011')}", entry)
        elif key == "distance_mm":
            for i, entry in enumerate(_check_list(values, key, where)):
                _check(entry is None or (_is_number(entry) and entry >= 0), f"{where}[{i}]",
                       "a distance in mm (a number >= 0) or null", entry)
        elif key in ("air_temperature_c", "battery_v", "wifi_period_s", "ble_period_s"):
            _check(_is_number(value), where, "a number", value)
        elif key == "tilt":
            _check(isinstance(value, bool) or value in (0, 1), where, "true, false, 0 or 1", value)
        elif key == "fault":
            _check(isinstance(value, list) and all(v in _FAULTS for v in value), where,
                   "a list of " + ", ".join(f'"{f}"' for f in _FAULTS), value)
        elif key == "passengers":
            _check(isinstance(value, dict), where, "an object", value)
            for name in value:
                if name == "stops":
                    _check(isinstance(value[name], list), f"{where}.stops", "a list", value[name])
                elif name in _PASSENGER_NUMBERS:
                    _check(_is_number(value[name]), f"{where}.{name}", "a number", value[name])
                else:
                    raise ConfigError(f"{where}.{name}: unknown key (known: stops, {', '.join(_PASSENGER_NUMBERS)})")
        elif key == "gps":
            _check(isinstance(value, dict), where, "an object", value)
            for name in value:
                if name not in _GPS_KEYS:
                    raise ConfigError(f"{where}.{name}: unknown key (known: {', '.join(_GPS_KEYS)})")
        elif key in ("wifi", "ble"):
            _check(isinstance(value, dict), where, "an object", value)
        elif key == "wifi_replay":
            _check(isinstance(value, str), where, "a file name", value)
        else:
            raise ConfigError(f"{where}: unknown key (known: air, pm_sensor, pm, distance_mm, air_temperature_c, "
                              "battery_v, tilt, fault, passengers, gps, wifi, ble, wifi_period_s, ble_period_s, "
                              "wifi_replay)")
    return values


def load_values(path: str) -> dict[str, Any]:
    """Read and validate a ``--values`` file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--values {path}: cannot read ({exc.strerror})") from None
    try:
        values = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"--values {path}: not valid JSON ({exc})") from None
    return validate_values(values, f"--values {path}:")


def check_board(board: str, role: str) -> None:
    """One line when ``device run`` cannot run ``role`` on ``board``."""
    roles = board_roles(board)
    if role not in roles:
        raise ConfigError(f"--board {board} does not carry role {role} (boards/{board}.json roles: "
                          f"{', '.join(roles) or 'none'})")
    if board not in SIMULATED_BOARDS:
        raise ConfigError(f"--board {board}: device run simulates only the {', '.join(SIMULATED_BOARDS)} boards; "
                          f"{board} is a real board: flash it with `citynode flash --board {board}`")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("device", help="run the node firmware as a virtual device",
                            description="Run the node firmware on this machine, on the MicroPython unix port "
                            "with simulated sensors.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    run = actions.add_parser(
        "run", help="run firmware/main.py on the MicroPython unix port (sim board)",
        description="Run firmware/main.py on the MicroPython unix port (found beside this Python, on the PATH "
        "or at $CITYNODE_MICROPYTHON) with the sensors of --board simulated, for --cycles measurement "
        "cycles; every uplink is printed as hex. The radio is a console link: nothing is sent and the "
        "node does not join. The role must be one the board carries (boards/<board>.json, `roles`). "
        "Exit status: 0 the cycles ran, 1 the firmware stopped or a payload did not decode, 2 bad option, "
        "board/role mismatch or --values file (one line why).",
        epilog=VALUES_HELP,
        formatter_class=_RawEpilogFormatter,
    )
    run.add_argument("--role", required=True, choices=ROLES, help="the node's role")
    run.add_argument("--board", default="sim", help="board definition in boards/ (default: sim)")
    run.add_argument("--cycles", type=int, default=3, help="measurement cycles to run (default 3)")
    run.add_argument("--seed", type=int, default=1, help="seed of the simulated sensors (default %(default)s)")
    run.add_argument("--values", help="JSON file scripting sensor values, one entry per cycle (format below)")
    run.add_argument("--heap", action="store_true", help="print heap use after every cycle")
    run.add_argument("--heapsize", default=None,
                     help="MicroPython heap (default: the role's budget on the chosen interpreter, 64k on the "
                          "32-bit frozen build; see bench/RESULTS.md, firmware heap)")
    run.add_argument("--lorawan", action="store_true",
                     help="real LoRaWAN link: the MAC over the virtual radio (--board sim) or a simulated AT modem "
                          "(--board sim_rak3172, sim_wio_e5) to a network-server simulator that the command starts "
                          "and stops itself; 'joined' only after a real Join Accept")
    run.add_argument("--decode", action="store_true", help="print each uplink decoded by the gateway")
    run.add_argument("--fs", type=Path, help="keep the node's filesystem in this directory")
    run.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.cycles < 1:
        raise ConfigError(f"--cycles: expected at least 1, got {args.cycles}")
    values = load_values(args.values) if args.values else None
    check_board(args.board, args.role)
    if args.board in AT_MODEM_BOARDS and not args.lorawan:
        raise ConfigError(f"--board {args.board}: its AT modem needs a network; add --lorawan")
    with tempfile.TemporaryDirectory(prefix="citynode-device-") as tmp:
        fs = args.fs or Path(tmp)
        prepare_fs(fs, args.role, board=args.board, cycles=args.cycles, seed=args.seed, values=values,
                   heap_report=args.heap, lorawan=args.lorawan)
        status = 0
        heapsize = args.heapsize or node_heap(args.role)
        if args.lorawan:  # a config downlink (adr on) rides on the first uplink's RX window
            lines = stream_lorawan_device(fs, heapsize=heapsize, downlinks=[codec.encode_downlink({"adr": True})])
        else:
            lines = stream_device(fs, heapsize=heapsize)
        for line in lines:
            if line == "joined" and not args.lorawan:
                # device run gives the node the console link (no network simulator in sim.json): its
                # join() accepts at once, no Join Accept was received, so "joined" would be untrue.
                line = "console link: no network, uplinks are printed and not sent (no join)"
            print(line, flush=True)
            if line.startswith("exit status "):
                status = 1
            if args.decode and line.startswith("uplink fport="):
                parts = dict(p.split("=", 1) for p in line.split()[1:])
                try:
                    print("  " + json.dumps(codec.decode(int(parts["fport"]), bytes.fromhex(parts["hex"]))))
                except DecodeError as exc:
                    print(f"  decode error: {exc}")
                    status = 1
    return status
