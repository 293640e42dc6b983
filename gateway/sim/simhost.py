"""The sim board's peripherals, run on the host for a firmware process on the MicroPython unix port.

On the unix port every imported module's bytecode lives in the heap, so the simulators of the sim
board (``citynode_sim.sim*``: a BME680 register map, particulate and distance sensors answering
their real frames, passengers crossing door beams, a GPS, WiFi and BLE populations) used to take
20-35 KB of a node's 96 KB. :class:`SimHost` runs those same modules here, in CPython, behind the
firmware's ``citynode_sim.simlink``: the firmware reads registers and frames over two pipes as it
would over I2C or a UART, and its drivers parse and compensate them as on a board.

Wire format (``gateway/sim/mpy/citynode_sim/simlink.py``): a request is one JSON line
``[seq, t_us, device, method, [args]]``; the host sets its virtual clock to ``t_us`` and answers with
a kind byte (``j`` JSON, ``b`` raw bytes, ``e`` an OSError's errno), the request's seq, a 24-bit
big-endian length and the payload. ``["sync", token]`` (the firmware resynchronising after an
interrupted call or a soft reset) is answered with the raw bytes ``\0sync`` + token. One :class:`SimHost` serves one interpreter run; the scenario is the run's ``sim.json``.

A board whose radio is an AT modem (``boards/sim_rak3172.json``, ``boards/sim_wio_e5.json``) gets the
modem simulator of :mod:`gateway.sim.modems` on its UART ``modem``: it talks LoRaWAN to the
network-server simulator named by the scenario's ``network`` (``{"port": N}``), with the scenario's
``modem`` faults. It keeps its session across the node's soft resets, as a powered modem does.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from gateway.paths import firmware_module

__all__ = ["LINK_ENV", "SimHost"]

LINK_ENV = "CITYNODE_SIM_LINK"
_EIO = 5
_ENODEV = 19
_NO_SEQ = 0xFF  # the seq of a reply to a line that could not be read (a request's seq is 1..127)
log = logging.getLogger(__name__)


def _sim_hal_class() -> Any:
    """citynode_sim.sim.SimHal from the checkout's firmware (the simulators run on CPython too)."""
    return firmware_module("citynode_sim.sim").SimHal


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


class SimHost:
    """Serves one firmware process: ``env`` and ``pass_fds`` go to its Popen, then :meth:`start`.

    ``scenario`` is sim.json's content (seed, values). Nothing is left running after :meth:`close`
    (or once the firmware process exits and its end of the pipes closes).
    """

    def __init__(self, scenario: dict[str, Any] | None = None, board: dict[str, Any] | None = None,
                 fs: Path | None = None) -> None:
        self._scenario = scenario
        self._board = board
        self._fs = fs
        self._hal: Any = None
        self._req_r, self._req_w = os.pipe()
        self._rep_r, self._rep_w = os.pipe()
        self._thread: threading.Thread | None = None
        self._wifi: Any = None
        self._ble: Any = None
        self._modem: Any = None

    @classmethod
    def for_fs(cls, fs: Path) -> SimHost:
        """A host for the device filesystem ``fs``: its sim.json (scenario) and board.json, read at the
        firmware's first request (a flash may write them after the interpreter started)."""
        return cls(fs=fs)

    def _files(self) -> tuple[dict[str, Any], dict[str, Any]]:
        scenario = self._scenario if self._scenario is not None else _read_json(self._fs / "sim.json") if self._fs else {}
        board = self._board if self._board is not None else _read_json(self._fs / "board.json") if self._fs else {}
        return scenario, board

    @property
    def hal(self) -> Any:
        """The citynode_sim.sim.SimHal whose devices the firmware reads."""
        if self._hal is None:
            scenario, board = self._files()
            self._hal = _sim_hal_class()(board, seed=scenario.get("seed", 1), values=scenario.get("values", {}))
        return self._hal

    @property
    def modem(self) -> Any:
        """The AT modem simulator on the board's modem UART (gateway.sim.modems), made at first use."""
        if self._modem is None:
            from gateway.sim.modems import ModemStack, make_modem

            scenario, board = self._files()
            network = scenario.get("network")
            if not isinstance(network, dict) or not isinstance(network.get("port"), int):
                raise OSError(_ENODEV, "modem: no network-server simulator in sim.json (network.port)")
            stack = ModemStack(network["port"], time_scale=scenario.get("time_scale", 5),
                               skip_ms=scenario.get("skip_ms", 1500))
            self._modem = make_modem(board.get("radio", {}).get("chip"), stack, scenario.get("modem"))
        return self._modem

    @property
    def pass_fds(self) -> tuple[int, int]:
        """The firmware's ends: it writes requests to the first and reads replies from the second."""
        return (self._req_w, self._rep_r)

    @property
    def env(self) -> dict[str, str]:
        return {LINK_ENV: f"{self._req_w},{self._rep_r}"}

    def start(self) -> None:
        """Call after the firmware process is spawned: closes its ends here and starts serving."""
        for fd in (self._req_w, self._rep_r):
            os.close(fd)
        self._req_w = self._rep_r = -1
        self._thread = threading.Thread(target=self._serve, name="citynode-simhost", daemon=True)
        self._thread.start()

    def close(self) -> None:
        for fd in (self._req_w, self._rep_r, self._rep_w):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._req_w = self._rep_r = self._rep_w = -1
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._modem is not None:
            self._modem.close()
            self._modem = None

    def __enter__(self) -> SimHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- serving ------------------------------------------------------------------------------

    def _serve(self) -> None:
        with os.fdopen(self._req_r, "rb", buffering=65536) as requests:
            for line in requests:
                if not line.strip():
                    continue  # the newline that ends a request an interrupted call left half-written
                seq = _NO_SEQ
                try:
                    request = json.loads(line)
                    if request[0] == "sync":  # citynode_sim.simlink resynchronises: answer with its token
                        reply = b"\0sync" + request[1].encode()
                    else:
                        seq, t_us, dev, method, args = request
                        if dev == "hal":
                            self._hal = None
                        clock = self.hal.clock
                        if t_us > clock.now_us:
                            clock.now_us = t_us
                        if dev == "uart:modem":
                            reply = self._modem_answer(t_us, method, args)
                        else:
                            reply = self._answer(dev, method, args)
                except OSError as exc:
                    reply = self._json(exc.errno if isinstance(exc.errno, int) else _EIO, b"e")
                except Exception:  # a simulator bug or a garbled line reaches the firmware as a bus error
                    log.exception("sim host: request %r failed", line)
                    reply = self._json(_EIO, b"e")
                if not reply.startswith(b"\0sync"):
                    reply = reply[:1] + bytes((seq,)) + reply[1:]  # kind, seq, length, payload
                try:
                    os.write(self._rep_w, reply)
                except OSError:  # the firmware process is gone
                    return

    @staticmethod
    def _json(value: Any, kind: bytes = b"j") -> bytes:
        data = json.dumps(value).encode()
        return kind + len(data).to_bytes(3, "big") + data

    @staticmethod
    def _raw(data: bytes | bytearray) -> bytes:
        return b"b" + len(data).to_bytes(3, "big") + bytes(data)

    def _nothing(self, dev: Any) -> bytes:
        quiet = getattr(dev, "quiet_until_ms", None)
        return self._json([None, quiet() if quiet is not None else 0])

    def _modem_answer(self, t_us: int, method: str, args: list[Any]) -> bytes:
        modem = self.modem
        modem.node_ms = t_us // 1000
        if method == "open":
            return self._json(None)
        if method == "any":
            return self._json(modem.any())
        if method == "read":
            data = modem.read(args[0])
            return self._raw(data) if data else self._json([None, 0])
        if method == "write":
            return self._json(modem.write(bytes.fromhex(args[0])))
        raise ValueError(f"sim host: no modem.{method}")

    def _answer(self, dev: str, method: str, args: list[Any]) -> bytes:
        if dev == "hal" and method == "new":  # a new SimHal per HAL the firmware builds, as in-process
            self._hal = self._wifi = self._ble = None
            return self._json(None)
        hal = self.hal
        if dev == "i2c":
            bus = hal.i2c()
            if method in ("readfrom_mem", "readfrom"):
                return self._raw(getattr(bus, method)(*args))
            if method in ("writeto_mem", "writeto"):
                return self._json(getattr(bus, method)(*args[:-1], bytes.fromhex(args[-1])))
            if method == "scan":
                return self._json(bus.scan())
        elif dev.startswith("uart:"):
            uart = hal.uart(dev[5:])
            if method == "open":
                return self._json(None)
            if method == "any":
                return self._json(uart.any())
            if method == "read":
                data = uart.read(args[0])
                return self._raw(data) if data else self._nothing(uart)
            if method == "write":
                return self._json(uart.write(bytes.fromhex(args[0])))
        elif dev.startswith("adc:") and method in ("read_uv", "read_u16"):
            return self._json(getattr(hal.adc(dev[4:]), method)())
        elif dev == "pin" and method == "open":
            return self._json(hal.pin(args[0]).level)
        elif dev == "transit":
            transit = hal.transit()
            if method == "due":
                return self._json(transit.due_us)
            if method == "fire":
                _, pin, level = transit._event
                transit.fire()
                return self._json([pin.name if pin is not None else None, level, transit.due_us])
        elif dev == "pulse" and method == "call":
            return self._json(hal.time_pulse_us(None, *args))
        elif dev == "wifi":
            if method == "open":
                self._wifi = hal.wifi_source(*args)
                return self._json(None)
            if method == "read":
                buf = bytearray(args[0])
                n = self._wifi.read(buf)
                return self._raw(memoryview(buf)[:n]) if n else self._nothing(self._wifi)
        elif dev == "ble":
            if method == "open":  # the population stays here; the firmware asks for it every period
                self._ble = hal.bluetooth()
                return self._json(self._ble.period_ms)
            if method == "adverts":  # 8-byte records: addr_type, address, rssi (signed)
                return self._raw(b"".join(bytes((t,)) + bytes(a) + (rssi & 0xFF).to_bytes(1, "big")
                                          for t, a, rssi in self._ble.adverts))
        raise ValueError(f"sim host: no {dev}.{method}")
