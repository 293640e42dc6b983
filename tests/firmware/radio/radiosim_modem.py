# Simulated LoRaWAN AT modems on a fake UART: RAK3172 (RUI3) and Seeed Wio-E5 (LoRa-E5 AT firmware).
# They answer like the real firmware, including error codes, busy states, join/send events arriving
# later in virtual time, downlinks and ACKs. Plain Python for MicroPython and CPython.
from radiosim_hw import FakeClock, SequenceError

EU868_MAX = (51, 51, 51, 115, 222, 222, 222, 222)
HEX = "0123456789abcdefABCDEF"


def is_hex(s, n=None):
    if n is not None and len(s) != n:
        return False
    if len(s) % 2:
        return False
    for c in s:
        if c not in HEX:
            return False
    return True


class FakeUART:
    """UART with the MicroPython API (write/any/read). Output bytes become readable at their due time."""

    def __init__(self, modem, clock):
        self.modem = modem
        self.clock = clock
        self._in = b""
        self._out = []  # [due_us, bytes]
        self.written = []  # every line the host sent

    def write(self, buf):
        self._in += bytes(buf)
        while b"\n" in self._in:
            i = self._in.index(b"\n")
            raw = self._in[:i]
            self._in = self._in[i + 1 :]
            if not raw.endswith(b"\r"):
                raise SequenceError("AT command %r not terminated with CR LF" % raw)
            line = raw[:-1].decode()
            self.written.append(line)
            self.modem.on_line(line)
        return len(buf)

    def emit(self, text, delay_ms=0):
        due = self.clock.us + delay_ms * 1000
        if self._out and self._out[-1][0] > due:
            due = self._out[-1][0]  # keep order
        self._out.append([due, (text + "\r\n").encode()])

    def any(self):
        n = 0
        for due, data in self._out:
            if due <= self.clock.us:
                n += len(data)
        return n

    def read(self, n=-1):
        out = b""
        while self._out and self._out[0][0] <= self.clock.us and (n < 0 or len(out) < n):
            due, data = self._out[0]
            take = len(data) if n < 0 else min(len(data), n - len(out))
            out += data[:take]
            if take == len(data):
                self._out.pop(0)
            else:
                self._out[0][1] = data[take:]
        return out or None


class _ModemSim:
    def __init__(self, clock=None, join_ok=True, join_delay_ms=6000, dr=5, ack=True, busy_next=0, duty_cycle_ms=0):
        self.clock = clock or FakeClock()
        self.uart = FakeUART(self, self.clock)
        self.join_ok = join_ok
        self.join_delay_ms = join_delay_ms
        self.dr = dr
        self.ack = ack
        self.busy_next = busy_next
        self.duty_cycle_ms = duty_cycle_ms
        self.joined = False
        self.busy_until = 0
        self.downlinks = []  # (port, bytes) to deliver in RX1 after the next uplink
        self.uplinks = []  # (port, bytes, confirmed)
        self.dr_after_send = None  # ADR: data rate the network sets with the next uplink
        self.config = {}
        self.commands = []

    def on_line(self, line):
        self.commands.append(line.split("=")[0])
        self.handle(line)

    def emit(self, text, delay_ms=0):
        self.uart.emit(text, delay_ms)

    def is_busy(self, line):
        if line == "AT":
            return False
        if self.busy_next > 0:
            self.busy_next -= 1
            return True
        return self.clock.us < self.busy_until


class RAK3172Sim(_ModemSim):
    """RUI3: "OK" / "AT_*_ERROR" per command, "+EVT:..." asynchronously."""

    def handle(self, line):
        if self.is_busy(line):
            return self.emit("AT_BUSY_ERROR")
        if line == "AT":
            return self.emit("OK")
        if not line.startswith("AT+"):
            return self.emit("AT_ERROR")
        name, _, arg = line[3:].partition("=")
        if arg == "?":
            values = {"DR": str(self.dr), "NJS": "1" if self.joined else "0", "CFM": self.config.get("CFM", "0"),
                      "DEVEUI": self.config.get("DEVEUI", "AC1F09FFFE000001")}
            if name not in values:
                return self.emit("AT_ERROR")
            self.emit("AT+%s=%s" % (name, values[name]))
            return self.emit("OK")
        if name in ("DEVEUI", "APPEUI"):
            if not is_hex(arg, 16):
                return self.emit("AT_PARAM_ERROR")
        elif name == "APPKEY":
            if not is_hex(arg, 32):
                return self.emit("AT_PARAM_ERROR")
        elif name in ("NJM", "CFM", "ADR", "NWM"):
            if arg not in ("0", "1"):
                return self.emit("AT_PARAM_ERROR")
        elif name == "BAND":
            if arg != "4":
                return self.emit("AT_PARAM_ERROR")  # this simulated module is an EU868 one
        elif name == "CLASS":
            if arg not in ("A", "B", "C"):
                return self.emit("AT_PARAM_ERROR")
        elif name == "JOIN":
            return self._join(arg)
        elif name == "SEND":
            return self._send(arg)
        else:
            return self.emit("AT_ERROR")
        self.config[name] = arg
        self.emit("OK")

    def _join(self, arg):
        parts = arg.split(":")
        if not parts or parts[0] not in ("0", "1"):
            return self.emit("AT_PARAM_ERROR")
        self.emit("OK")
        self.busy_until = self.clock.us + self.join_delay_ms * 1000
        if self.join_ok:
            self.joined = True
            self.emit("+EVT:JOINED", self.join_delay_ms)
        else:
            self.emit("+EVT:JOIN_FAILED_RX_TIMEOUT", self.join_delay_ms)

    def _send(self, arg):
        port, _, hexdata = arg.partition(":")
        if not self.joined:
            return self.emit("AT_NO_NETWORK_JOINED")
        if not port.isdigit() or not 1 <= int(port) <= 223 or not hexdata or not is_hex(hexdata):
            return self.emit("AT_PARAM_ERROR")
        if len(hexdata) // 2 > EU868_MAX[self.dr]:
            return self.emit("AT_PARAM_ERROR")
        if self.duty_cycle_ms:
            return self.emit("AT_DUTYCYCLE_RESTRICTED")
        confirmed = self.config.get("CFM") == "1"
        data = bytes(int(hexdata[i : i + 2], 16) for i in range(0, len(hexdata), 2))
        self.uplinks.append((int(port), data, confirmed))
        self.emit("OK")
        self.busy_until = self.clock.us + 2100 * 1000
        if self.downlinks:
            dport, ddata = self.downlinks.pop(0)
            self.emit("+EVT:RX_1:-70:8:UNICAST:%d:%s" % (dport, "".join("%02X" % b for b in ddata)), 1100)
        if self.dr_after_send is not None:
            self.dr = self.dr_after_send
            self.dr_after_send = None
        if confirmed:
            self.emit("+EVT:SEND_CONFIRMED_OK" if self.ack else "+EVT:SEND_CONFIRMED_FAILED(4)", 2100)
        else:
            self.emit("+EVT:TX_DONE", 2100)


class WioE5Sim(_ModemSim):
    """LoRa-E5 AT firmware: every answer is "+CMD: ...", long operations end with "+CMD: Done"."""

    def __init__(self, dr_format="short", **kwargs):
        super().__init__(**kwargs)
        self.dr_format = dr_format
        self.port = 8  # factory default port

    def handle(self, line):
        if line == "AT":
            return self.emit("+AT: OK")
        if not line.startswith("AT+"):
            return self.emit("+AT: ERROR(-10)")
        name, eq, arg = line[3:].partition("=")
        if self.is_busy(line):
            return self.emit("+%s: LoRaWAN modem is busy" % name)
        if name == "MODE":
            if arg not in ("LWOTAA", "LWABP", "TEST"):
                return self.emit("+MODE: ERROR(-1)")
            return self.emit("+MODE: " + arg)
        if name == "DR":
            if eq:
                if arg != "EU868":
                    return self.emit("+DR: ERROR(-1)")
                return self.emit("+DR: EU868")
            if self.dr_format == "long":
                return self.emit("+DR: EU868 DR%d SF%d BW125K" % (self.dr, 12 - self.dr))
            return self.emit("+DR: DR%d" % self.dr)
        if name == "CLASS":
            return self.emit("+CLASS: " + arg)
        if name == "ADR":
            if arg not in ("ON", "OFF"):
                return self.emit("+ADR: ERROR(-1)")
            return self.emit("+ADR: " + arg)
        if name == "ID":
            kind, _, value = arg.partition(",")
            value = value.strip('"')
            if kind not in ("DevEui", "AppEui") or not is_hex(value, 16):
                return self.emit("+ID: ERROR(-1)")
            self.config[kind] = value
            return self.emit("+ID: %s, %s" % (kind, ":".join(value[i : i + 2] for i in range(0, 16, 2))))
        if name == "KEY":
            kind, _, value = arg.partition(",")
            value = value.strip('"')
            if kind != "APPKEY" or not is_hex(value, 32):
                return self.emit("+KEY: ERROR(-1)")
            self.config[kind] = value
            return self.emit("+KEY: APPKEY " + value)
        if name == "PORT":
            if not arg.isdigit() or not 1 <= int(arg) <= 223:
                return self.emit("+PORT: ERROR(-1)")
            self.port = int(arg)
            return self.emit("+PORT: %d" % self.port)
        if name == "JOIN":
            return self._join()
        if name in ("MSGHEX", "CMSGHEX"):
            return self._send(name, arg)
        return self.emit("+AT: ERROR(-10)")

    def _join(self):
        if self.joined:
            return self.emit("+JOIN: Joined already")
        self.emit("+JOIN: Start")
        self.emit("+JOIN: NORMAL")
        d = self.join_delay_ms
        self.busy_until = self.clock.us + d * 1000
        if self.join_ok:
            self.joined = True
            self.emit("+JOIN: Network joined", d)
            self.emit("+JOIN: NetID 000013 DevAddr 26:01:5F:66", d)
        else:
            self.emit("+JOIN: Join failed", d)
        self.emit("+JOIN: Done", d)

    def _send(self, name, arg):
        p = "+%s: " % name
        if not self.joined:
            return self.emit(p + "Please join network first")
        if len(arg) < 2 or arg[0] != '"' or arg[-1] != '"' or not is_hex(arg[1:-1]):
            return self.emit(p + "ERROR(-1)")
        hexdata = arg[1:-1]
        if len(hexdata) // 2 > EU868_MAX[self.dr]:
            return self.emit(p + "Length error 0")
        if self.duty_cycle_ms:
            return self.emit(p + "No band in %dms" % self.duty_cycle_ms)
        confirmed = name == "CMSGHEX"
        self.uplinks.append((self.port, bytes(int(hexdata[i : i + 2], 16) for i in range(0, len(hexdata), 2)), confirmed))
        self.emit(p + "Start")
        if confirmed:
            self.emit(p + "Wait ACK")
        self.busy_until = self.clock.us + 2100 * 1000
        if self.dr_after_send is not None:
            self.dr = self.dr_after_send
            self.dr_after_send = None
        got_rx = False
        if confirmed and self.ack:
            self.emit(p + "ACK Received", 1100)
            got_rx = True
        if self.downlinks:
            dport, ddata = self.downlinks.pop(0)
            self.emit(p + 'PORT: %d; RX: "%s"' % (dport, "".join("%02X" % b for b in ddata)), 1100)
            got_rx = True
        if got_rx:
            self.emit(p + "RXWIN1, RSSI -45, SNR 9.0", 1100)
        self.emit(p + "Done", 2100)


def make_modem(kind, **kwargs):
    """A simulated modem plus the matching citynode driver: returns (link, sim)."""
    from citynode.lorawan_at import RAK3172, WioE5

    if kind == "rak3172":
        sim = RAK3172Sim(**kwargs)
        return RAK3172(sim.uart, clock=sim.clock), sim
    sim = WioE5Sim(**kwargs)
    return WioE5(sim.uart, clock=sim.clock), sim
