# The software LoRaWAN MAC (citynode.lorawan.mac.ClassA) behind the link interface of
# citynode.links, and its construction from config + board. Its own module so that a node on the
# console link (the sim board without a network) does not hold it in RAM.
from citynode.links import LinkError


class MacLink:
    """The software LoRaWAN MAC (citynode.lorawan.mac.ClassA) behind the link interface the app uses."""

    def __init__(self, mac, out=print):
        self.mac = mac
        self.out = out

    @property
    def joined(self):
        return self.mac.joined

    def join(self):
        from citynode.lorawan import LoRaWANError

        try:
            ok = self.mac.join(attempts=1, wait=False)
        except LoRaWANError as exc:  # duty-cycle back-off, radio fault: try again next cycle
            self.out("join: %s" % (exc,))
            return False
        if not ok and self.mac.last_error:
            self.out(self.mac.last_error)
        return bool(ok)

    def max_payload(self):
        return self.mac.max_payload()

    def send(self, fport, data, confirmed=False):
        from citynode.lorawan import LoRaWANError

        try:
            downlink = self.mac.send(fport, data, confirmed)
        except LoRaWANError as exc:
            raise LinkError(str(exc))
        if downlink is None or downlink.port is None:
            return None
        return downlink.port, downlink.data

    def probe(self):
        return type(self.mac.radio).__name__


def _machine_spi(spi_id, sck, mosi, miso, baudrate):
    from machine import SPI, Pin

    return SPI(spi_id, baudrate=baudrate, sck=Pin(sck), mosi=Pin(mosi), miso=Pin(miso))


def _machine_pin(gpio, output):
    from machine import Pin

    return Pin(gpio, Pin.OUT if output else Pin.IN)


def _key(cfg, name, length):
    import binascii

    from citynode.config import ConfigError

    value = cfg.get(name)
    if not value:
        raise ConfigError(name, "required for OTAA (from the provisioning bundle)")
    data = binascii.unhexlify(value)
    if len(data) != length:
        raise ConfigError(name, "expected %d bytes" % length)
    return data


def lorawan_link(cfg, board, hal, sim, battery=None):
    """The software LoRaWAN MAC over the board's radio: an SX1276/SX1262 on SPI, or the sim board's
    UdpRadio (UDP to the network-server simulator). The session is kept in RTC memory across deep
    sleep and in flash (lorawan.rec) across power loss."""
    from citynode.boards import open_radio
    from citynode.lorawan.dutycycle import MonotonicMs
    from citynode.lorawan.mac import ClassA
    from citynode.lorawan.session import FileStore, RTCStore, SessionStore

    radio_board = board
    network = sim.get("network") if isinstance(sim, dict) else None
    if isinstance(network, dict):  # the sim board pointed at a network-server simulator
        radio_board = dict(board)
        radio_board["radio"] = dict(board["radio"], **network)
    make_spi = getattr(hal, "make_spi", None) or _machine_spi
    make_pin = getattr(hal, "make_pin", None) or _machine_pin
    clock = None
    extra = {}
    if radio_board["radio"]["chip"] == "virtual":
        # The virtual radio and the MAC share one node clock; `time_scale` speeds RX windows up;
        # `clock_epoch_ms` makes it steady (scale x real time, across reboots: FUOTA's Class C timing).
        from citynode_sim.udp import VirtualClock

        clock = VirtualClock(sim.get("time_scale", 1), sim.get("skip_ms"), sim.get("clock_epoch_ms"))
        extra = {"sleep_ms": clock.sleep_ms, "wall_s": clock.wall_s}
    radio = open_radio(radio_board, make_spi, make_pin, clock=clock)
    store = SessionStore(FileStore("lorawan.rec"), RTCStore(hal.rtc()), step=100)

    def level():  # DevStatusAns battery: 1..254 from 3.0..4.2 V (LoRaWAN 1.0.4 §5.5), 255 unknown
        try:
            volts = battery()
        except Exception:
            return 255
        return max(1, min(254, int((volts - 3.0) / 1.2 * 253) + 1))

    now_ms = clock.now_ms if clock is not None else MonotonicMs()
    mac = ClassA(radio, store, now_ms, dev_eui=_key(cfg, "dev_eui", 8), join_eui=_key(cfg, "join_eui", 8),
                 app_key=_key(cfg, "app_key", 16), battery=level if battery else None, **extra)
    return MacLink(mac)
