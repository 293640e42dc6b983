"""A RAK3172 (STM32WLE5) with RUI3 firmware, as its AT command manual shows it (RAKwireless "RUI3 AT
Command Manual"; event forms of RUI3 4.x, as the RAK3172 prints them):

- every command is answered by its value lines (``AT+DR=?`` -> ``AT+DR=5``) and ``OK``, or by one
  error code: ``AT_ERROR`` (unknown command), ``AT_PARAM_ERROR`` (bad value), ``AT_BUSY_ERROR`` (the
  stack is in a transaction), ``AT_NO_NETWORK_JOINED`` (send before a join);
- ``AT+JOIN=<1 join|0 stop>:<auto-join 0|1>:<retry interval 7..255 s>:<attempts 0..255>`` answers ``OK``,
  then ``+EVT:JOINED`` or ``+EVT:JOIN_FAILED_RX_TIMEOUT``;
- ``AT+SEND=<port 1..223>:<hex payload>`` answers ``OK``, then a downlink as
  ``+EVT:RX_<window>:<rssi>:<snr>:UNICAST:<port>:<hex>``, then ``+EVT:TX_DONE`` (unconfirmed) or
  ``+EVT:SEND_CONFIRMED_OK`` / ``+EVT:SEND_CONFIRMED_FAILED(4)`` (``AT+CFM=1``);
- ``AT+XXX?`` prints a one-line description of the command.

The simulated module is the EU868 variant (``AT+BAND=4``) in Class A; other bands and classes are
refused with ``AT_PARAM_ERROR``.
"""

from __future__ import annotations

from gateway.sim.modems.base import ModemSim, parse_hex

__all__ = ["Rak3172Sim"]

OK = "OK"
AT_ERROR = "AT_ERROR"
AT_PARAM_ERROR = "AT_PARAM_ERROR"
AT_BUSY_ERROR = "AT_BUSY_ERROR"
AT_NO_NETWORK_JOINED = "AT_NO_NETWORK_JOINED"

_HELP = {
    "NWM": "get or set the network working mode (0 = P2P_LORA, 1 = LoRaWAN, 2 = P2P_FSK)",
    "NJM": "get or set the network join mode (0 = ABP, 1 = OTAA)",
    "BAND": "get or set the active region (0 = EU433, 1 = CN470, 2 = RU864, 3 = IN865, 4 = EU868, ...)",
    "CLASS": "get or set the device class (A = class A, B = class B, C = class C)",
    "DEVEUI": "get or set the device EUI (8 bytes in hex)",
    "APPEUI": "get or set the application EUI (8 bytes in hex)",
    "APPKEY": "get or set the application key (16 bytes in hex)",
    "ADR": "get or set the adaptive data rate setting (0 = off, 1 = on)",
    "CFM": "get or set the confirm mode (0 = off, 1 = on)",
    "DR": "get or set the data rate",
    "NJS": "get the join status (0 = not joined, 1 = joined)",
    "JOIN": "join network",
    "SEND": "send data along with the application port",
}


class Rak3172Sim(ModemSim):
    """RUI3 AT dialect over :class:`gateway.sim.modems.stack.ModemStack`."""

    NAME = "RAK3172"
    SECRET_COMMANDS = ("AT+APPKEY=",)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.settings = {"NWM": "1", "NJM": "1", "BAND": "4", "CLASS": "A", "ADR": "1", "CFM": "0",
                         "DEVEUI": "AC1F09FFFE000000", "APPEUI": "0000000000000000", "APPKEY": "0" * 32}

    def unknown(self) -> list[str]:
        return [AT_ERROR]

    def overflow(self) -> list[str]:
        return [AT_PARAM_ERROR]

    def handle(self, line: str) -> list[str]:
        if line.upper() == "AT":
            return [OK]
        if not line.upper().startswith("AT+"):
            return [AT_ERROR]
        body = line[3:]
        if body.endswith("?") and not body.endswith("=?"):
            name = body[:-1].upper()
            return [f"AT+{name}: {_HELP[name]}", OK] if name in _HELP else [AT_ERROR]
        name, eq, arg = body.partition("=")
        name = name.upper()
        if name not in _HELP:
            return [AT_ERROR]
        if eq and arg == "?":
            return self._query(name)
        if name == "JOIN":
            return self._join(arg)
        if name == "SEND":
            return self._send(arg)
        if not eq or name in ("NJS", "DR"):
            return self._set_dr(arg) if name == "DR" and eq else [AT_PARAM_ERROR]
        return self._set(name, arg)

    # ---- settings ----

    def _query(self, name: str) -> list[str]:
        if name == "NJS":
            value = "1" if self.stack.joined else "0"
        elif name == "DR":
            value = str(self.stack.dr)
        elif name in ("JOIN", "SEND"):
            return [AT_PARAM_ERROR]
        else:
            value = self.settings[name]
        return [f"AT+{name}={value}", OK]

    def _set(self, name: str, arg: str) -> list[str]:
        if name in ("DEVEUI", "APPEUI"):
            ok = parse_hex(arg) is not None and len(arg) == 16
        elif name == "APPKEY":
            ok = parse_hex(arg) is not None and len(arg) == 32
        elif name in ("NJM", "ADR", "CFM"):
            ok = arg in ("0", "1")
        elif name == "NWM":
            ok = arg in ("0", "1", "2")
        elif name == "BAND":
            ok = arg == "4"  # the simulated module: EU868 only
        else:  # CLASS
            ok = arg.upper() == "A"
        if not ok:
            return [AT_PARAM_ERROR]
        self.settings[name] = arg.upper()
        if name in ("DEVEUI", "APPEUI", "APPKEY", "NJM", "BAND", "NWM"):
            self.stack.reset_session()  # new identity or mode: join again
        if name == "ADR":
            self.stack.adr = arg == "1"
            if self.stack.mac is not None:
                self.stack.mac.session.adr = self.stack.adr
        return [OK]

    def _set_dr(self, arg: str) -> list[str]:
        if not arg.isdigit() or not 0 <= int(arg) <= 7:
            return [AT_PARAM_ERROR]
        if self.stack.mac is not None:
            self.stack.mac.session.dr = int(arg)
        return [OK]

    # ---- transactions ----

    def _join(self, arg: str) -> list[str]:
        parts = arg.split(":")
        if len(parts) != 4 or not all(p.isdigit() for p in parts):
            return [AT_PARAM_ERROR]
        start, auto, interval, attempts = (int(p) for p in parts)
        if start not in (0, 1) or auto not in (0, 1) or not 7 <= interval <= 255 or attempts > 255:
            return [AT_PARAM_ERROR]
        if self.settings["NWM"] != "1" or self.settings["NJM"] != "1":
            return [AT_ERROR]  # not in LoRaWAN OTAA mode
        if self.faults.take("busy"):
            return [AT_BUSY_ERROR]
        if start == 0:
            return [OK]
        st = self.stack
        st.dev_eui = bytes.fromhex(self.settings["DEVEUI"])
        st.join_eui = bytes.fromhex(self.settings["APPEUI"])
        st.app_key = bytes.fromhex(self.settings["APPKEY"])
        st.adr = self.settings["ADR"] == "1"
        st.reset_session()
        network = not self.faults.take("no_network")
        joined = st.join(max(1, attempts), network=network)
        return [OK, "+EVT:JOINED" if joined else "+EVT:JOIN_FAILED_RX_TIMEOUT"]

    def _send(self, arg: str) -> list[str]:
        port_text, colon, hex_text = arg.partition(":")
        data = parse_hex(hex_text)
        if not colon or not port_text.isdigit() or not 1 <= int(port_text) <= 223 or not data:
            return [AT_PARAM_ERROR]
        if not self.stack.joined:
            return [AT_NO_NETWORK_JOINED]
        if self.faults.take("busy"):
            return [AT_BUSY_ERROR]
        if self.faults.take("param_error") or len(data) > self.stack.max_payload():
            return [AT_PARAM_ERROR]
        confirmed = self.settings["CFM"] == "1"
        result = self.stack.send(int(port_text), data, confirmed)
        out = [OK]
        if result.port is not None:
            out.append(f"+EVT:RX_{result.window}:{result.rssi_dbm}:{round(result.snr_db or 0)}:UNICAST:"
                       f"{result.port}:{result.data.hex().upper()}")
        if confirmed:
            out.append("+EVT:SEND_CONFIRMED_OK" if result.ack else "+EVT:SEND_CONFIRMED_FAILED(4)")
        else:
            out.append("+EVT:TX_DONE")
        return out
