"""What both simulated AT modems share: the UART side (bytes in, lines out), the command log and the
scripted faults. The dialects live in :mod:`gateway.sim.modems.rak3172` and :mod:`gateway.sim.modems.wio_e5`.

The UART: :meth:`ModemSim.write` takes the node's bytes; each line ending in CR LF (the manuals' command
terminator; a bare LF is accepted as the modems do) is one command, handled at once. A command that
takes air time (join, send) runs to its end inside that write, as the modem's stack would run it while
the node waits for its answer; its answer lines, the immediate ones and the later events, are then all
readable in the order the modem would print them. The node's driver reads them with :meth:`any` and
:meth:`read` like a ``machine.UART``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from gateway.sim.modems.stack import ModemStack

__all__ = ["HEX_DIGITS", "ModemFaults", "ModemSim", "parse_hex"]

HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_MAX_LINE = 600  # bytes; RUI3 takes up to 500 hex digits of payload in one AT+SEND


def parse_hex(text: str) -> bytes | None:
    """Bytes from an even number of hex digits, else None."""
    if len(text) % 2 or any(c not in HEX_DIGITS for c in text):
        return None
    return bytes.fromhex(text)


@dataclass
class ModemFaults:
    """Faults scripted for a run (sim.json ``"modem": {...}``), each a count used up one by one:

    ``busy``: the next N join or send commands are answered "busy" (RUI3 ``AT_BUSY_ERROR``, LoRa-E5
    ``LoRaWAN modem is busy``), as when the node asks while the stack is still in a transaction;
    ``no_network``: the next N join procedures hear no Join Accept (their join-requests go where no
    network listens); ``param_error``: the next N send commands are refused as a bad parameter (RUI3
    ``AT_PARAM_ERROR``, LoRa-E5 ``ERROR(-1)``)."""

    busy: int = 0
    no_network: int = 0
    param_error: int = 0
    NAMES: ClassVar[tuple[str, ...]] = ("busy", "no_network", "param_error")

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> ModemFaults:
        faults = cls()
        for key, value in data.items():
            if key not in cls.NAMES or not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"modem fault {key!r}: expected one of {', '.join(cls.NAMES)} with a count >= 0")
            setattr(faults, key, value)
        return faults

    def take(self, name: str) -> bool:
        """True (and one fewer left) if fault ``name`` is still scripted."""
        left = getattr(self, name)
        if left > 0:
            setattr(self, name, left - 1)
            return True
        return False


class ModemSim:
    """A simulated AT modem on a UART. Subclasses implement :meth:`handle` (one command line -> the
    lines the modem prints). ``commands`` logs every command with key material replaced by ``<key>``."""

    NAME = "?"
    SECRET_COMMANDS: tuple[str, ...] = ()

    def __init__(self, stack: ModemStack, faults: ModemFaults | None = None) -> None:
        self.stack = stack
        self.faults = faults or ModemFaults()
        self.commands: list[str] = []
        self._in = bytearray()
        self._out = bytearray()
        self.node_ms = 0  # the node's virtual time when its last command arrived

    # ---- the UART, as machine.UART: write / any / read ----

    def write(self, data: bytes) -> int:
        self._in.extend(data)
        while True:
            i = self._in.find(b"\n")
            if i < 0:
                if len(self._in) > _MAX_LINE:
                    self._in.clear()
                    self._emit(self.overflow())
                return len(data)
            raw = bytes(self._in[:i]).rstrip(b"\r").strip()
            del self._in[: i + 1]
            if not raw:
                continue
            try:
                line = raw.decode("ascii")
            except UnicodeDecodeError:
                self._emit(self.unknown())
                continue
            self.commands.append(self._loggable(line))
            self.stack.catch_up(self.node_ms)
            self._emit(self.handle(line))

    def any(self) -> int:
        return len(self._out)

    def read(self, n: int = -1) -> bytes | None:
        if not self._out:
            return None
        if n is None or n < 0:
            n = len(self._out)
        out = bytes(self._out[:n])
        del self._out[:n]
        return out

    def close(self) -> None:
        self.stack.close()

    # ---- for the dialects ----

    def handle(self, line: str) -> list[str]:
        raise NotImplementedError

    def unknown(self) -> list[str]:
        """The answer to a line that is no command."""
        raise NotImplementedError

    def overflow(self) -> list[str]:
        """The answer to a line longer than the modem's buffer."""
        return self.unknown()

    def _emit(self, lines: list[str]) -> None:
        for line in lines:
            self._out.extend(line.encode("ascii") + b"\r\n")

    def _loggable(self, line: str) -> str:
        upper = line.upper()
        for prefix in self.SECRET_COMMANDS:
            if upper.startswith(prefix.upper()):
                return line[: len(prefix)] + "<key>"
        return line
