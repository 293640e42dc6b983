# LoRaWAN through an AT-command modem with a certified stack (RAK3172 with RUI3 firmware, Seeed Wio-E5
# with the LoRa-E5 AT firmware), over a UART passed in by the board layer. It offers the same link
# interface as citynode's software MAC:
#     join() -> bool; send(fport, data, confirmed=False) -> (fport, bytes) | None;
#     max_payload() -> int; .joined; .datarate
# Sources: RAKwireless RUI3 AT command manual (RAK3172), Seeed "LoRa-E5 AT Command Specification" v1.0,
# LoRaWAN Regional Parameters RP002-1.0.3 (EU868 maximum payload sizes).
# Keys passed to setup() are written to the modem and never logged or echoed back.
#
# Boot: a board whose radio.chip is "rak3172" or "wio_e5" gets this link (citynode.links.lorawan_link
# -> lorawan_link() below). The first join() checks that the modem answers and writes the OTAA
# credentials, so a modem that is missing or busy at boot is a "join failed: ..." line and a retry
# at the next cycle, not a dead node; `joined` is true only once the modem reported its join.
# Every error here is a citynode.links.LinkError (an OSError), which the app reports and retries.
import time

from citynode.compat import const
from citynode.links import LinkError as _LinkError

_CMD_TIMEOUT_MS = const(3000)
_BUSY_RETRIES = const(5)
_BUSY_BACKOFF_MS = const(1000)
_JOIN_TIMEOUT_MS = const(90000)  # 8 attempts with back-off on the modem side
_SEND_TIMEOUT_MS = const(45000)  # confirmed uplink with NbTrans retries and RX2 windows

# RP002-1.0.3 2.4.6: EU868 maximum application payload N (no repeater) by data rate DR0..DR7
EU868_MAX_PAYLOAD = (51, 51, 51, 115, 222, 222, 222, 222)


class LinkError(_LinkError):
    """The LoRaWAN link could not do what was asked. ``code`` is the modem's error text, if any."""

    def __init__(self, message, code=None):
        super().__init__(message)
        self.code = code


class NotJoinedError(LinkError):
    """The modem says the device has not joined (RAK: AT_NO_NETWORK_JOINED, Wio: 'Please join network first')."""


class ModemBusyError(LinkError):
    """The modem stayed busy through every retry."""


class DutyCycleError(LinkError):
    """The regional duty cycle forbids sending now. ``wait_ms`` is how long the modem asked to wait (or None)."""

    def __init__(self, message, wait_ms=None, code=None):
        super().__init__(message, code)
        self.wait_ms = wait_ms


class ModemTimeoutError(LinkError):
    """No (complete) answer from the modem in time: wiring, baud rate or a hung modem."""


class LinkConfigError(LinkError):
    """A bad argument; ``field`` names it."""

    def __init__(self, field, reason):
        super().__init__("%s: %s" % (field, reason))
        self.field = field


def _clock_default():
    if hasattr(time, "ticks_ms"):
        return time
    from citynode.radio.base import default_clock

    return default_clock()


def _check_hex(field, value, nbytes):
    if not isinstance(value, str) or len(value) != 2 * nbytes:
        got = "%d characters" % len(value) if isinstance(value, str) else type(value).__name__
        raise LinkConfigError(field, "must be %d hex digits (got %s)" % (2 * nbytes, got))
    for c in value:
        if c not in "0123456789abcdefABCDEF":
            raise LinkConfigError(field, "must be hex digits only")
    return value.upper()


def _hex(data):
    return "".join("%02X" % b for b in data)


def _unhex(text):
    text = text.strip().strip('"')
    if len(text) % 2:
        raise ValueError("odd number of hex digits")
    return bytes(int(text[i : i + 2], 16) for i in range(0, len(text), 2))


class ATModem:
    """Line-oriented AT modem on a UART (MicroPython `machine.UART` API: write, read, any)."""

    MODEM = "?"

    def __init__(self, uart, clock=None, cmd_timeout_ms=_CMD_TIMEOUT_MS, join_timeout_ms=_JOIN_TIMEOUT_MS,
                 send_timeout_ms=_SEND_TIMEOUT_MS, out=None):
        self._uart = uart
        self._out = out  # print-like: why a join failed (the app then prints "join failed")
        self._clock = clock if clock is not None else _clock_default()
        self._rx = b""
        self._cmd_timeout_ms = cmd_timeout_ms
        self.join_timeout_ms = join_timeout_ms
        self.send_timeout_ms = send_timeout_ms
        self.joined = False
        self.datarate = None
        self.last_ack = None  # confirmed uplinks: True (ACK received) / False; None for unconfirmed
        self.last_rssi = None  # of the last downlink, dBm
        self.last_snr = None  # dB
        self.busy_retries = 0  # how often the modem answered "busy" (diagnostics)
        self._credentials = None  # (deveui, joineui, appkey, adr): written by the first join()

    def credentials(self, deveui, joineui, appkey, adr=True):
        """Keep the OTAA credentials (checked now) for join() to write to the modem: boot only builds
        the link, the first join() talks to the modem."""
        self._credentials = (_check_hex("dev_eui", deveui, 8), _check_hex("join_eui", joineui, 8),
                             _check_hex("app_key", appkey, 16), adr)

    def join(self):
        """OTAA join: True once the modem reports it joined, False when its join failed. With
        credentials(), first checks that the modem answers and writes them (again after a failure)."""
        if self._credentials is not None:
            self.probe()
            self.setup(*self._credentials)
            self._credentials, creds = None, self._credentials
            try:
                return self._join()
            except LinkError:
                self._credentials = creds
                raise
        return self._join()

    # ---- the link interface ----

    def max_payload(self):
        """Largest FRMPayload at the current data rate (EU868, RP002 2.4.6); 51 bytes before the DR is known."""
        dr = self.datarate
        if dr is None or dr < 0 or dr >= len(EU868_MAX_PAYLOAD):
            return EU868_MAX_PAYLOAD[0]
        return EU868_MAX_PAYLOAD[dr]

    def _check_send(self, fport, data, confirmed):
        if not isinstance(fport, int) or isinstance(fport, bool) or fport < 1 or fport > 223:
            raise LinkConfigError("fport", "must be 1..223 (got %r)" % (fport,))
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise LinkConfigError("data", "must be bytes (got %s)" % type(data).__name__)
        n = len(data)
        if n < 1 or n > self.max_payload():
            raise LinkConfigError(
                "data", "length must be 1..%d bytes at DR%s (got %d)" % (self.max_payload(), self.datarate, n)
            )
        if not self.joined:
            raise NotJoinedError("%s: join() first" % self.MODEM)

    # ---- UART line I/O ----

    def _write_line(self, line):
        self._uart.write(line.encode() + b"\r\n")

    def _readline(self, timeout_ms):
        """Next non-empty line without its line ending, or None after timeout_ms."""
        clock = self._clock
        start = clock.ticks_ms()
        while True:
            i = self._rx.find(b"\n")
            if i >= 0:
                raw = self._rx[:i]
                self._rx = self._rx[i + 1 :]
                raw = raw.strip()
                if raw:
                    try:
                        return raw.decode()
                    except UnicodeError:
                        continue  # line noise at boot or a baud mismatch: skip it
                continue
            n = self._uart.any()
            if n:
                chunk = self._uart.read(n)
                if chunk:
                    self._rx += chunk
                continue
            if clock.ticks_diff(clock.ticks_ms(), start) >= timeout_ms:
                return None
            clock.sleep_ms(10)

    def _drain(self):
        """Drop stale input (late events from an earlier exchange)."""
        while self._uart.any():
            self._uart.read(self._uart.any())
        self._rx = b""


class RAK3172(ATModem):
    """RAK3172 (STM32WLE5) with RUI3 firmware; UART default 115200 8N1.

    Command answers end in "OK" or an error code (AT_ERROR, AT_PARAM_ERROR, AT_BUSY_ERROR,
    AT_NO_NETWORK_JOINED, ...); the stack reports asynchronously with "+EVT:" lines.
    """

    MODEM = "RAK3172"

    def __init__(self, uart, **kwargs):
        super().__init__(uart, **kwargs)
        self._events = []
        self._downlink = None
        self._confirmed = None  # AT+CFM state as last set

    def command(self, cmd, timeout_ms=None):
        """Send one AT command; return its information lines. Retries AT_BUSY_ERROR with back-off."""
        timeout_ms = timeout_ms or self._cmd_timeout_ms
        for attempt in range(_BUSY_RETRIES):
            self._write_line(cmd)
            lines = []
            while True:
                line = self._readline(timeout_ms)
                if line is None:
                    raise ModemTimeoutError("%s: no answer to %s within %d ms" % (self.MODEM, cmd.split("=")[0], timeout_ms))
                if line == "OK":
                    return lines
                if line.startswith("+EVT:"):
                    self._events.append(line)
                    continue
                if line == cmd:
                    continue  # echo
                if line == "AT_BUSY_ERROR":
                    break
                if line.startswith("AT_"):
                    if line == "AT_NO_NETWORK_JOINED":
                        self.joined = False
                        raise NotJoinedError("%s: not joined (%s)" % (self.MODEM, line), line)
                    # Duty-cycle refusal: the code name is not verified against a RUI3 release; other
                    # AT_* codes still surface as LinkError with the code.
                    if line == "AT_DUTYCYCLE_RESTRICTED":
                        raise DutyCycleError("%s: duty cycle restricted" % self.MODEM, None, line)
                    raise LinkError("%s: %s answered %s" % (self.MODEM, cmd.split("=")[0], line), line)
                lines.append(line)
            self.busy_retries += 1
            self._clock.sleep_ms(_BUSY_BACKOFF_MS * (attempt + 1))
        raise ModemBusyError("%s: still AT_BUSY_ERROR after %d attempts (%s)" % (self.MODEM, _BUSY_RETRIES, cmd.split("=")[0]), "AT_BUSY_ERROR")

    def query(self, name):
        """Value of ``AT+NAME=?`` (RUI3 answers "AT+NAME=value" or just "value", then OK)."""
        for line in self.command("AT+%s=?" % name):
            if line.startswith("AT+%s=" % name):
                return line[len(name) + 4 :]
            return line
        raise LinkError("%s: empty answer to AT+%s=?" % (self.MODEM, name))

    def _wait_event(self, prefixes, timeout_ms):
        clock = self._clock
        start = clock.ticks_ms()
        while True:
            while self._events:
                ev = self._events.pop(0)
                for p in prefixes:
                    if ev.startswith(p):
                        return ev
                self._other_event(ev)
            left = timeout_ms - clock.ticks_diff(clock.ticks_ms(), start)
            if left <= 0:
                return None
            line = self._readline(left)
            if line is None:
                return None
            if line.startswith("+EVT:"):
                self._events.append(line)

    def _other_event(self, ev):
        # +EVT:RX_1:<rssi>:<snr>:UNICAST:<port>:<hex>  (RX window 1/2/B/C; RUI3 4.x single-line format)
        if ev.startswith("+EVT:RX_"):
            parts = ev[5:].split(":")
            if len(parts) >= 6:
                try:
                    self.last_rssi = int(parts[1])
                    self.last_snr = int(parts[2])
                    port = int(parts[4])
                    payload = _unhex(parts[5]) if len(parts) > 5 else b""
                except ValueError:
                    return
                if port > 0:
                    self._downlink = (port, payload)

    def probe(self):
        """Check the modem answers on the UART (raises ModemTimeoutError with a wiring hint); returns
        its name, for the self-test's radio check."""
        self._drain()
        try:
            self.command("AT", 1000)
        except ModemTimeoutError:
            raise ModemTimeoutError("%s: no answer to AT: check UART TX/RX wiring and 115200 baud" % self.MODEM)
        return self.MODEM

    def setup(self, deveui, joineui, appkey, adr=True):
        """OTAA credentials and EU868 Class A (RUI3: NJM=1 OTAA, BAND=4 EU868, CLASS=A)."""
        deveui = _check_hex("deveui", deveui, 8)
        joineui = _check_hex("joineui", joineui, 8)
        appkey = _check_hex("appkey", appkey, 16)
        self.command("AT+NWM=1")  # LoRaWAN mode (not P2P)
        self.command("AT+NJM=1")
        self.command("AT+BAND=4")
        self.command("AT+CLASS=A")
        self.command("AT+DEVEUI=" + deveui)
        self.command("AT+APPEUI=" + joineui)
        self.command("AT+APPKEY=" + appkey)
        self.command("AT+ADR=%d" % (1 if adr else 0))

    def _join(self):
        """OTAA join; True once +EVT:JOINED arrives, False on +EVT:JOIN_FAILED_* or timeout."""
        self._events = [e for e in self._events if not e.startswith("+EVT:JOIN")]
        # AT+JOIN=<join>:<auto-join>:<retry interval s>:<attempts>
        self.command("AT+JOIN=1:0:10:8")
        ev = self._wait_event(("+EVT:JOINED", "+EVT:JOIN_FAILED"), self.join_timeout_ms)
        self.joined = ev == "+EVT:JOINED"
        if not self.joined and self._out is not None:
            self._out("%s: no Join Accept (%s)" % (self.MODEM, ev or "no join event in time"))
        if self.joined:
            self._refresh_datarate()
        return self.joined

    def _refresh_datarate(self):
        try:
            self.datarate = int(self.query("DR"))
        except (ValueError, LinkError):
            self.datarate = None

    def send(self, fport, data, confirmed=False):
        """Uplink on ``fport``; returns the downlink (fport, bytes) received in RX1/RX2, or None."""
        self._check_send(fport, data, confirmed)
        if self._confirmed != confirmed:
            self.command("AT+CFM=%d" % (1 if confirmed else 0))
            self._confirmed = confirmed
        self._downlink = None
        self.last_ack = None
        self._events = [e for e in self._events if e.startswith("+EVT:JOIN")]
        self.command("AT+SEND=%d:%s" % (fport, _hex(data)))
        done = ("+EVT:SEND_CONFIRMED_OK", "+EVT:SEND_CONFIRMED_FAILED") if confirmed else ("+EVT:TX_DONE",)
        ev = self._wait_event(done, self.send_timeout_ms)
        if ev is None:
            raise ModemTimeoutError("%s: no end-of-send event within %d ms" % (self.MODEM, self.send_timeout_ms))
        if confirmed:
            self.last_ack = ev.startswith("+EVT:SEND_CONFIRMED_OK")
        self._refresh_datarate()
        return self._downlink


class WioE5(ATModem):
    """Seeed Wio-E5 / LoRa-E5 (STM32WLE5) with the LoRa-E5 AT firmware; UART default 9600 8N1.

    Every answer line starts with "+CMD:"; long operations (JOIN, MSGHEX, CMSGHEX) end with "+CMD: Done".
    """

    MODEM = "Wio-E5"

    def __init__(self, uart, **kwargs):
        super().__init__(uart, **kwargs)
        self._port = None

    def command(self, cmd, multi=False, timeout_ms=None):
        """Send ``cmd``; return the text after "+CMD: " of each answer line (until "Done" if ``multi``)."""
        timeout_ms = timeout_ms or self._cmd_timeout_ms
        name = cmd[3:].split("=")[0] if cmd.startswith("AT+") else "AT"
        prefix = "+%s: " % name
        for attempt in range(_BUSY_RETRIES):
            self._write_line(cmd)
            answers = []
            busy = False
            while True:
                line = self._readline(timeout_ms)
                if line is None:
                    raise ModemTimeoutError("%s: no answer to AT+%s within %d ms" % (self.MODEM, name, timeout_ms))
                if not line.startswith(prefix):
                    if line.startswith("+AT: ERROR") or line.startswith("+%s: ERROR" % name):
                        raise LinkError("%s: AT+%s answered %s" % (self.MODEM, name, line), line)
                    continue  # echo or an unrelated line
                text = line[len(prefix) :]
                if text.startswith("ERROR"):
                    raise LinkError("%s: AT+%s answered %s" % (self.MODEM, name, text), text)
                if "busy" in text:
                    busy = True
                    break
                if text.startswith("Please join network first"):
                    self.joined = False
                    raise NotJoinedError("%s: not joined (%s)" % (self.MODEM, text), text)
                if text.startswith("No band in"):
                    wait = None
                    try:
                        wait = int(text[len("No band in") :].strip().rstrip("ms"))
                    except ValueError:
                        pass
                    raise DutyCycleError("%s: duty cycle: %s" % (self.MODEM, text), wait, text)
                if text.startswith("Length error"):
                    raise LinkError("%s: payload too long for the data rate (%s)" % (self.MODEM, text), text)
                answers.append(text)
                if not multi or text == "Done" or text.startswith("Joined already"):
                    return answers
            if busy:
                self.busy_retries += 1
                self._clock.sleep_ms(_BUSY_BACKOFF_MS * (attempt + 1))
        raise ModemBusyError("%s: still busy after %d attempts (AT+%s)" % (self.MODEM, _BUSY_RETRIES, name), "busy")

    def probe(self):
        self._drain()
        try:
            self.command("AT", timeout_ms=1000)
        except ModemTimeoutError:
            raise ModemTimeoutError("%s: no answer to AT: check UART TX/RX wiring and 9600 baud" % self.MODEM)
        return self.MODEM

    def setup(self, deveui, joineui, appkey, adr=True):
        """OTAA credentials and EU868 Class A."""
        deveui = _check_hex("deveui", deveui, 8)
        joineui = _check_hex("joineui", joineui, 8)
        appkey = _check_hex("appkey", appkey, 16)
        self.command("AT+MODE=LWOTAA")
        self.command("AT+DR=EU868")
        self.command("AT+CLASS=A")
        self.command('AT+ID=DevEui,"%s"' % deveui)
        self.command('AT+ID=AppEui,"%s"' % joineui)
        self.command('AT+KEY=APPKEY,"%s"' % appkey)
        self.command("AT+ADR=%s" % ("ON" if adr else "OFF"))

    def _join(self):
        """OTAA join: True after "+JOIN: Network joined" (or "Joined already"), False on "Join failed"."""
        answers = self.command("AT+JOIN", multi=True, timeout_ms=self.join_timeout_ms)
        ok = False
        for text in answers:
            if text.startswith("Network joined") or text.startswith("Joined already"):
                ok = True
            elif text.startswith("Join failed"):
                ok = False
        self.joined = ok
        if not ok and self._out is not None:
            self._out("%s: no Join Accept (+JOIN: %s)" % (self.MODEM, answers[-2] if len(answers) > 1 else "no answer"))
        if ok:
            self._refresh_datarate()
        return ok

    def _refresh_datarate(self):
        # "+DR: DR5" or "+DR: EU868 DR5 SF7 BW125K"
        try:
            for text in self.command("AT+DR"):
                for tok in text.replace(",", " ").split():
                    if tok.startswith("DR") and tok[2:].isdigit():
                        self.datarate = int(tok[2:])
                        return
        except LinkError:
            pass
        self.datarate = None

    def send(self, fport, data, confirmed=False):
        """Uplink on ``fport``; returns the downlink (fport, bytes), or None."""
        self._check_send(fport, data, confirmed)
        if self._port != fport:
            self.command("AT+PORT=%d" % fport)
            self._port = fport
        verb = "CMSGHEX" if confirmed else "MSGHEX"
        answers = self.command('AT+%s="%s"' % (verb, _hex(data)), multi=True, timeout_ms=self.send_timeout_ms)
        downlink = None
        self.last_ack = False if confirmed else None
        for text in answers:
            if text.startswith("ACK Received"):
                self.last_ack = True
            elif text.startswith("PORT:"):
                # PORT: 2; RX: "1234"
                try:
                    port_part, rx_part = text.split(";", 1)
                    port = int(port_part[5:].strip())
                    payload = _unhex(rx_part.strip()[3:].strip())
                except ValueError:
                    continue
                downlink = (port, payload)
            elif text.startswith("RXWIN"):
                # RXWIN1, RSSI -45, SNR 9.0
                for part in text.split(","):
                    part = part.strip()
                    try:
                        if part.startswith("RSSI"):
                            self.last_rssi = int(part[4:].strip())
                        elif part.startswith("SNR"):
                            self.last_snr = float(part[3:].strip())
                    except ValueError:
                        pass
        self._refresh_datarate()
        return downlink


def lorawan_link(cfg, board, hal, sim=None, battery=None):
    """The AT modem named by the board's radio.chip ("rak3172" or "wio_e5") on its UART (radio.uart;
    on a simulated board the host's modem simulator, hal.uart("modem")), with the OTAA credentials from
    config.json. Nothing is sent to the modem before the first join()."""
    from citynode.config import ConfigError

    radio = board["radio"]
    cls = RAK3172 if radio["chip"] == "rak3172" else WioE5
    for key in ("dev_eui", "join_eui", "app_key"):
        if not cfg.get(key):
            raise ConfigError(key, "required for OTAA (from the provisioning bundle)")
    if board.get("sim"):
        uart, clock = hal.uart("modem"), hal.clock
    else:
        from machine import UART

        u = radio["uart"]
        uart = UART(u["id"], baudrate=u["baudrate"], tx=u["tx"], rx=u["rx"], timeout=0, rxbuf=512)
        clock = None
    modem = cls(uart, clock=clock, out=print)
    try:
        modem.credentials(cfg["dev_eui"], cfg["join_eui"], cfg["app_key"], cfg.get("adr", True) is not False)
    except LinkConfigError as exc:
        raise ConfigError(exc.field, str(exc))
    return modem
