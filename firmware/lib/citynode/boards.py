# Board descriptions: load boards/<name>.json and check it before any pin is touched. A board file is
# data only (pins, radio, buses, battery, which roles it can carry); the HAL turns it into machine /
# busio objects and open_radio() into a radio driver. Every error names the field, e.g.
#     BoardError: heltec_wifi_lora_32_v3: radio.pins.busy: required for an sx1262
import json

ROLES = ("air_quality", "bin_fill", "passenger_count", "crowd_count")
MCUS = ("esp32", "esp32s3", "unix")
RUNTIMES = ("micropython", "circuitpython", "unix")
RADIO_CHIPS = ("sx1276", "sx1262", "virtual", "rak3172", "wio_e5")
AT_MODEMS = ("rak3172", "wio_e5")  # modules with their own LoRaWAN stack, driven over a UART (citynode.lorawan_at)
TCXO_MV = (1600, 1700, 1800, 2200, 2400, 2700, 3000, 3300)  # SX1261/2 13.3.6
RF_SWITCHES = ("dio2", "none")

# ESP32 datasheet 2.2: GPIO 34..39 are input only; ADC1 (usable while WiFi runs) is GPIO 32..39.
# ESP32-S3 datasheet 2.3: GPIO 0..21 and 26..48 exist; ADC1 is GPIO 1..10.
_GPIO = {
    "esp32": [p for p in range(40) if p not in (20, 24, 28, 29, 30, 31)],
    "esp32s3": [p for p in range(49) if p not in (22, 23, 24, 25)],
    "unix": list(range(256)),
}
_INPUT_ONLY = {"esp32": (34, 35, 36, 37, 38, 39), "esp32s3": (), "unix": ()}
_ADC1 = {"esp32": (32, 33, 34, 35, 36, 37, 38, 39), "esp32s3": (1, 2, 3, 4, 5, 6, 7, 8, 9, 10), "unix": None}

DEFAULT_DIRS = ("boards", "/boards", "../boards")


class BoardError(Exception):
    """A board file is missing or wrong. ``field`` is the dotted path of the offending entry."""

    def __init__(self, board, field, reason):
        super().__init__("%s: %s: %s" % (board, field, reason))
        self.board = board
        self.field = field


class _Checker:
    def __init__(self, board, data):
        self.board = board
        self.data = data
        self.used = {}  # gpio -> field using it

    def fail(self, field, reason):
        raise BoardError(self.board, field, reason)

    def section(self, parent, key, path, required=True):
        v = parent.get(key)
        if v is None:
            if required:
                self.fail(path, "missing")
            return None
        if not isinstance(v, dict):
            self.fail(path, "must be an object")
        return v

    def str_in(self, parent, key, path, choices):
        v = parent.get(key)
        if v not in choices:
            self.fail(path, "must be one of %s (got %r)" % (", ".join(choices), v))
        return v

    def integer(self, parent, key, path, lo, hi, required=True):
        v = parent.get(key)
        if v is None and not required:
            return None
        if not isinstance(v, int) or isinstance(v, bool) or v < lo or v > hi:
            self.fail(path, "must be an integer %d..%d (got %r)" % (lo, hi, v))
        return v

    def pin(self, parent, key, path, output=False, required=True, shared_ok=False, adc=False):
        v = parent.get(key)
        if v is None:
            if required:
                self.fail(path, "missing")
            return None
        mcu = self.data["mcu"]
        if not isinstance(v, int) or isinstance(v, bool) or v not in _GPIO[mcu]:
            self.fail(path, "%r is not a GPIO of the %s" % (v, mcu))
        if output and v in _INPUT_ONLY[mcu]:
            self.fail(path, "GPIO%d is input-only on the %s and cannot drive this signal" % (v, mcu))
        if adc and _ADC1[mcu] is not None and v not in _ADC1[mcu]:
            self.fail(path, "GPIO%d is not an ADC1 pin of the %s (ADC2 is unusable while WiFi runs)" % (v, mcu))
        if not shared_ok:
            if v in self.used:
                self.fail(path, "GPIO%d is already used by %s" % (v, self.used[v]))
            self.used[v] = path
        return v


def validate_board(data, board="board"):
    """Check a parsed board description; return it unchanged, or raise BoardError naming the field."""
    if not isinstance(data, dict):
        raise BoardError(board, "(file)", "must be a JSON object")
    c = _Checker(board, data)
    name = data.get("name")
    if not isinstance(name, str) or not name:
        c.fail("name", "missing")
    if board != "board" and name != board:
        c.fail("name", "%r does not match the file name %r" % (name, board))
    c.board = name
    if not isinstance(data.get("title"), str):
        c.fail("title", "missing")
    mcu = c.str_in(data, "mcu", "mcu", MCUS)
    runtimes = data.get("runtimes")
    if not isinstance(runtimes, list) or not runtimes or any(r not in RUNTIMES for r in runtimes):
        c.fail("runtimes", "must be a non-empty list of %s (got %r)" % (", ".join(RUNTIMES), runtimes))

    radio = c.section(data, "radio", "radio")
    chip = c.str_in(radio, "chip", "radio.chip", RADIO_CHIPS)
    if chip not in AT_MODEMS and (chip == "virtual") != (mcu == "unix"):
        c.fail("radio.chip", "the virtual radio is for the unix port only, and the unix port has no SPI radio")
    if chip in AT_MODEMS and mcu == "unix" and not data.get("sim"):
        c.fail("sim", "an AT modem on the unix port is the host's simulator: the board needs \"sim\": true")
    c.integer(radio, "max_power_dbm", "radio.max_power_dbm", -9, 22)
    if chip in AT_MODEMS:
        # RAK3172 (RUI3): UART2 at 115200 8N1 by default; Wio-E5: 9600 8N1 (LoRa-E5 AT spec)
        u = c.section(radio, "uart", "radio.uart")
        c.integer(u, "id", "radio.uart.id", 0 if mcu == "unix" else 1, 2)  # ESP32 UART0 carries the REPL
        c.pin(u, "tx", "radio.uart.tx", output=True)
        c.pin(u, "rx", "radio.uart.rx")
        c.integer(u, "baudrate", "radio.uart.baudrate", 1200, 921600)
    elif chip == "virtual":
        if not isinstance(radio.get("host"), str):
            c.fail("radio.host", "missing")
        c.integer(radio, "port", "radio.port", 1, 65535)
    else:
        spi = c.section(radio, "spi", "radio.spi")
        c.integer(spi, "id", "radio.spi.id", 0, 3)
        c.integer(spi, "baudrate", "radio.spi.baudrate", 100000, 10000000)  # SX127x/SX126x: 10 MHz max
        c.pin(spi, "sck", "radio.spi.sck", output=True)
        c.pin(spi, "mosi", "radio.spi.mosi", output=True)
        c.pin(spi, "miso", "radio.spi.miso")
        pins = c.section(radio, "pins", "radio.pins")
        c.pin(pins, "nss", "radio.pins.nss", output=True)
        c.pin(pins, "reset", "radio.pins.reset", output=True)
        if chip == "sx1262":
            if pins.get("busy") is None:
                c.fail("radio.pins.busy", "required for an sx1262 (datasheet 8.3.1)")
            c.pin(pins, "busy", "radio.pins.busy")
            c.pin(pins, "dio1", "radio.pins.dio1", required=False)
            tcxo = radio.get("tcxo_mv")
            if tcxo is not None and tcxo not in TCXO_MV:
                c.fail("radio.tcxo_mv", "must be null or one of %s (got %r)" % (TCXO_MV, tcxo))
            c.str_in(radio, "rf_switch", "radio.rf_switch", RF_SWITCHES)
            if not isinstance(radio.get("dcdc", True), bool):
                c.fail("radio.dcdc", "must be true or false")
        else:
            c.pin(pins, "dio0", "radio.pins.dio0", required=False)
            c.pin(pins, "dio1", "radio.pins.dio1", required=False)
            if radio.get("tcxo_mv") is not None:
                c.fail("radio.tcxo_mv", "citynode's SX1276 boards use a crystal; must be null")
            if chip == "sx1276" and radio.get("max_power_dbm") < 2:
                c.fail("radio.max_power_dbm", "PA_BOOST starts at +2 dBm")

    i2c = c.section(data, "i2c", "i2c", required=False)
    if i2c is not None:
        c.integer(i2c, "id", "i2c.id", 0, 1)
        c.pin(i2c, "sda", "i2c.sda", output=True)
        c.pin(i2c, "scl", "i2c.scl", output=True)
        c.integer(i2c, "freq", "i2c.freq", 10000, 1000000)
    pmu = c.section(data, "pmu", "pmu", required=False)
    if pmu is not None:
        c.str_in(pmu, "chip", "pmu.chip", ("axp192", "axp2101"))
        c.integer(pmu, "address", "pmu.address", 0x08, 0x77)
        shared = i2c is not None and pmu.get("sda") == i2c.get("sda") and pmu.get("scl") == i2c.get("scl")
        c.pin(pmu, "sda", "pmu.sda", output=True, shared_ok=shared)
        c.pin(pmu, "scl", "pmu.scl", output=True, shared_ok=shared)
    for key in ("uart", "gps"):
        u = c.section(data, key, key, required=False)
        if u is not None:
            c.integer(u, "id" if key == "uart" else "uart_id", key + (".id" if key == "uart" else ".uart_id"), 0, 2)
            c.pin(u, "tx", key + ".tx", output=True)
            c.pin(u, "rx", key + ".rx")
            c.integer(u, "baudrate", key + ".baudrate", 1200, 921600)
    if data.get("uart") and data.get("gps") and data["uart"].get("id") == data["gps"].get("uart_id"):
        c.fail("gps.uart_id", "UART %d is already the sensor UART" % data["gps"]["uart_id"])
    if chip in AT_MODEMS:
        modem_uart = radio["uart"]["id"]
        for key, field, what in (("uart", "id", "sensor"), ("gps", "uart_id", "GPS")):
            if data.get(key) and data[key].get(field) == modem_uart:
                c.fail("radio.uart.id", "UART %d is already the %s UART" % (modem_uart, what))

    battery = c.section(data, "battery", "battery")
    method = c.str_in(battery, "method", "battery.method", ("adc", "pmu"))
    if method == "adc":
        c.pin(battery, "adc_pin", "battery.adc_pin", adc=True)
        d = battery.get("divider")
        if not isinstance(d, (int, float)) or isinstance(d, bool) or not 1 <= d <= 20:
            c.fail("battery.divider", "must be the divider ratio V_battery / V_pin, 1..20 (got %r)" % (d,))
        if battery.get("enable_pin") is not None:
            c.pin(battery, "enable_pin", "battery.enable_pin", output=True)
            c.integer(battery, "enable_level", "battery.enable_level", 0, 1)
    elif pmu is None or battery.get("pmu") != pmu.get("chip"):
        c.fail("battery.pmu", "must name the board's pmu.chip")
    power = c.section(data, "power", "power", required=False)
    if power is not None:
        c.pin(power, "vext_pin", "power.vext_pin", output=True)
        c.integer(power, "vext_on_level", "power.vext_on_level", 0, 1)
    c.pin(data, "led_pin", "led_pin", output=True, required=False)

    roles = data.get("roles")
    if not isinstance(roles, list) or not roles:
        c.fail("roles", "must be a non-empty list of %s" % ", ".join(ROLES))
    for r in roles:
        if r not in ROLES:
            c.fail("roles", "unknown role %r (known: %s)" % (r, ", ".join(ROLES)))
    if "passenger_count" in roles and not data.get("gps"):
        c.fail("roles", "passenger_count needs a gps UART")
    if ("air_quality" in roles or "bin_fill" in roles) and i2c is None and not data.get("uart"):
        c.fail("roles", "air_quality/bin_fill need an i2c bus or a sensor uart")
    if "crowd_count" in roles and mcu not in ("esp32", "esp32s3", "unix"):
        c.fail("roles", "crowd_count needs WiFi/BLE")
    notes = data.get("notes", [])
    if not isinstance(notes, list) or any(not isinstance(n, str) for n in notes):
        c.fail("notes", "must be a list of strings")
    return data


def load_board(name, dirs=DEFAULT_DIRS):
    """Read and validate ``<dir>/<name>.json`` from the first of ``dirs`` that has it."""
    if not isinstance(name, str) or not name or "/" in name or "." in name:
        raise BoardError(repr(name), "board", "must be a board name like 'heltec_wifi_lora_32_v3'")
    for d in dirs:
        path = "%s/%s.json" % (d, name)
        try:
            f = open(path)
        except OSError:
            continue
        try:
            try:
                data = json.load(f)
            except ValueError as exc:
                raise BoardError(name, "(file)", "%s is not valid JSON (%s)" % (path, exc))
        finally:
            f.close()
        return validate_board(data, name)
    raise BoardError(name, "board", "no %s.json in %s" % (name, ", ".join(dirs)))


def supports_role(board, role):
    return role in board["roles"]


def radio_options(board):
    """Driver keyword arguments that come from the board (not the hardware objects)."""
    radio = board["radio"]
    if radio["chip"] == "sx1262":
        return {"tcxo_mv": radio.get("tcxo_mv"), "dio2_rf_switch": radio.get("rf_switch") == "dio2",
                "dcdc": radio.get("dcdc", True)}
    return {}


def open_radio(board, make_spi, make_pin, clock=None, public_network=True):
    """Build the board's radio driver. ``make_spi(id, sck, mosi, miso, baudrate)`` and
    ``make_pin(gpio, output)`` come from the runtime's HAL, so this module imports no `machine`.
    The sim board gets a UdpRadio (UDP to the network-server simulator, citynode_sim.udp; the factories
    are unused): ``clock`` is then its VirtualClock, which the MAC must share."""
    radio = board["radio"]
    chip = radio["chip"]
    if chip == "virtual":
        from citynode_sim.udp import UdpRadio

        return UdpRadio(radio["host"], radio["port"], clock=clock)
    s = radio["spi"]
    spi = make_spi(s["id"], s["sck"], s["mosi"], s["miso"], s["baudrate"])
    p = radio["pins"]
    nss = make_pin(p["nss"], True)
    reset = make_pin(p["reset"], True)
    if chip == "sx1262":
        from citynode.radio.sx126x import SX1262

        dio1 = make_pin(p["dio1"], False) if p.get("dio1") is not None else None
        return SX1262(spi, nss, reset, make_pin(p["busy"], False), dio1=dio1, clock=clock,
                      public_network=public_network, **radio_options(board))
    from citynode.radio.sx127x import SX1276

    dio0 = make_pin(p["dio0"], False) if p.get("dio0") is not None else None
    return SX1276(spi, nss, reset, dio0=dio0, clock=clock, public_network=public_network)
