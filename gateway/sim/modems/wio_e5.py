"""A Seeed Wio-E5 (LoRa-E5, STM32WLE5) with its AT firmware, as Seeed's "LoRa-E5 AT Command
Specification" shows it:

- every answer line starts with ``+<COMMAND>: ``: ``AT`` -> ``+AT: OK``, ``AT+MODE=LWOTAA`` ->
  ``+MODE: LWOTAA``, ``AT+DR`` -> ``+DR: DR5``; a bad value is ``+<COMMAND>: ERROR(-1)``, an unknown
  command ``+AT: ERROR(-10)``;
- ``AT+JOIN`` prints ``+JOIN: Start``, ``+JOIN: NORMAL``, then ``+JOIN: Network joined`` and
  ``+JOIN: NetID <hex> DevAddr <aa:bb:cc:dd>``, or ``+JOIN: Join failed``, and ends with ``+JOIN: Done``;
  ``+JOIN: Joined already`` when joined (``AT+JOIN=FORCE`` joins again);
- ``AT+MSGHEX="<hex>"`` / ``AT+CMSGHEX="<hex>"`` (confirmed) print ``Start``, (``Wait ACK``),
  (``FPENDING``), (``ACK Received``), a downlink as ``PORT: <port>; RX: "<hex>"``, the window as
  ``RXWIN<n>, RSSI <dBm>, SNR <dB>``, then ``Done``; before a join ``Please join network first``; a
  payload too long for the data rate ``Length error <n>``;
- while a transaction runs, ``+<COMMAND>: LoRaWAN modem is busy``.

The simulated module is the EU868 variant (``AT+DR=EU868``) in Class A.
"""

from __future__ import annotations

from gateway.sim.modems.base import ModemSim, parse_hex

__all__ = ["WioE5Sim"]

_UNKNOWN = "+AT: ERROR(-10)"  # LoRa-E5 AT spec: -10 command unknown
_BAD_VALUE = "ERROR(-1)"  # -1 parameter is invalid
_BUSY = "LoRaWAN modem is busy"


class WioE5Sim(ModemSim):
    """LoRa-E5 AT dialect over :class:`gateway.sim.modems.stack.ModemStack`."""

    NAME = "Wio-E5"
    SECRET_COMMANDS = ("AT+KEY=",)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.mode = "LWOTAA"
        self.port = 8  # factory default application port
        self.ids = {"DevEui": "2CF7F12000000000", "AppEui": "8000000000000009"}
        self.app_key = "2B7E151628AED2A6ABF7158809CF4F3C"  # the LoRa-E5 factory default AppKey

    def unknown(self) -> list[str]:
        return [_UNKNOWN]

    def handle(self, line: str) -> list[str]:
        if line.upper() == "AT":
            return ["+AT: OK"]
        if not line.upper().startswith("AT+"):
            return [_UNKNOWN]
        name, eq, arg = line[3:].partition("=")
        name = name.upper()
        p = f"+{name}: "
        if name == "MODE":
            if arg.upper() not in ("LWOTAA", "LWABP", "TEST"):
                return [p + _BAD_VALUE]
            self.mode = arg.upper()
            self.stack.reset_session()
            return [p + self.mode]
        if name == "DR":
            return self._dr(p, eq, arg)
        if name == "CLASS":
            return [p + "A"] if arg.upper() == "A" else [p + _BAD_VALUE]
        if name == "ADR":
            if arg.upper() not in ("ON", "OFF"):
                return [p + _BAD_VALUE]
            self.stack.adr = arg.upper() == "ON"
            if self.stack.mac is not None:
                self.stack.mac.session.adr = self.stack.adr
            return [p + arg.upper()]
        if name == "ID":
            return self._id(p, arg)
        if name == "KEY":
            kind, _, value = arg.partition(",")
            value = value.strip().strip('"')
            if kind.strip().upper() != "APPKEY" or parse_hex(value) is None or len(value) != 32:
                return [p + _BAD_VALUE]
            self.app_key = value.upper()
            self.stack.reset_session()
            return [p + "APPKEY " + self.app_key]
        if name == "PORT":
            if not arg.isdigit() or not 1 <= int(arg) <= 223:
                return [p + _BAD_VALUE]
            self.port = int(arg)
            return [p + str(self.port)]
        if name == "JOIN":
            return self._join(p, arg)
        if name in ("MSGHEX", "CMSGHEX"):
            return self._send(p, name == "CMSGHEX", arg)
        return [_UNKNOWN]

    # ---- settings ----

    def _dr(self, p: str, eq: str, arg: str) -> list[str]:
        if not eq:
            return [p + f"DR{self.stack.dr}"]
        arg = arg.upper()
        if arg == "EU868":
            return [p + "EU868"]
        if arg.startswith("DR") and arg[2:].isdigit() and int(arg[2:]) <= 7:
            if self.stack.mac is not None:
                self.stack.mac.session.dr = int(arg[2:])
            return [p + arg]
        return [p + _BAD_VALUE]

    def _id(self, p: str, arg: str) -> list[str]:
        kind, _, value = arg.partition(",")
        kind = {"deveui": "DevEui", "appeui": "AppEui"}.get(kind.strip().lower(), "")
        value = value.strip().strip('"').replace(":", "").replace(" ", "")
        if not kind or parse_hex(value) is None or len(value) != 16:
            return [p + _BAD_VALUE]
        self.ids[kind] = value.upper()
        self.stack.reset_session()
        shown = ":".join(value.upper()[i : i + 2] for i in range(0, 16, 2))
        return [p + f"{kind}, {shown}"]

    # ---- transactions ----

    def _join(self, p: str, arg: str) -> list[str]:
        force = arg.upper() == "FORCE"
        if arg and not force:
            return [p + _BAD_VALUE]
        if self.mode != "LWOTAA":
            return [p + "ERROR(-12)"]  # -12: command unavailable in the current mode
        if self.faults.take("busy"):
            return [p + _BUSY]
        st = self.stack
        if st.joined and not force:
            return [p + "Joined already"]
        st.dev_eui = bytes.fromhex(self.ids["DevEui"])
        st.join_eui = bytes.fromhex(self.ids["AppEui"])
        st.app_key = bytes.fromhex(self.app_key)
        st.reset_session()
        out = [p + "Start", p + "NORMAL"]
        if st.join(1, network=not self.faults.take("no_network")):
            addr = f"{st.dev_addr:08X}"
            net_id = f"{getattr(st.mac.session, 'net_id', 0) or 0:06X}"
            out += [p + "Network joined", p + f"NetID {net_id} DevAddr " + ":".join(addr[i : i + 2] for i in range(0, 8, 2))]
        else:
            out.append(p + "Join failed")
        return out + [p + "Done"]

    def _send(self, p: str, confirmed: bool, arg: str) -> list[str]:
        text = arg.strip()
        if len(text) < 2 or text[0] != '"' or text[-1] != '"':
            return [p + _BAD_VALUE]
        data = parse_hex(text[1:-1].replace(" ", ""))
        if data is None:
            return [p + _BAD_VALUE]
        if not self.stack.joined:
            return [p + "Please join network first"]
        if self.faults.take("busy"):
            return [p + _BUSY]
        if self.faults.take("param_error"):
            return [p + _BAD_VALUE]
        if len(data) > self.stack.max_payload():
            return [p + f"Length error {self.stack.max_payload()}"]
        out = [p + "Start"]
        if confirmed:
            out.append(p + "Wait ACK")
        result = self.stack.send(self.port, data, confirmed)
        if result.fpending:
            out.append(p + "FPENDING")
        if confirmed and result.ack:
            out.append(p + "ACK Received")
        if result.port is not None:
            out.append(p + f'PORT: {result.port}; RX: "{result.data.hex().upper()}"')
        if result.window is not None:
            out.append(p + f"RXWIN{result.window}, RSSI {result.rssi_dbm}, SNR {result.snr_db:.1f}")
        return out + [p + "Done"]
