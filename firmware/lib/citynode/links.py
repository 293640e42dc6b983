# Links carry payloads to the network. Every link offers the same small interface, implemented by
# the software LoRaWAN MAC (citynode.lorawan.mac) and the AT-modem backends as well:
#   join() -> bool, joined, send(fport, data, confirmed=False) -> (fport, bytes) or None,
#   max_payload() -> int (bytes allowed at the current data rate)


class LinkError(OSError):
    """The link could not deliver an uplink (not joined, radio fault, duty cycle)."""


class ConsoleLink:
    """Stand-in link for the unix port without a network: every uplink is accepted.

    Downlinks come from a script: a list of {"after": n, "fport": p, "hex": h}, delivered in the
    receive window of the n-th uplink (1-based), as a network server would.
    """

    def __init__(self, max_payload=51, downlinks=None):
        self._max = max_payload
        self._downlinks = list(downlinks or ())
        self.uplinks = 0
        self.joined = False

    def join(self):
        self.joined = True
        return True

    def max_payload(self):
        return self._max

    def send(self, fport, data, confirmed=False):
        if not self.joined:
            raise LinkError("not joined")
        self.uplinks += 1
        for item in self._downlinks:
            if item.get("after") == self.uplinks:
                self._downlinks.remove(item)
                return item["fport"], bytes.fromhex(item["hex"])
        return None


AT_MODEMS = ("rak3172", "wio_e5")  # radio.chip of boards whose LoRa module runs its own LoRaWAN stack


def lorawan_link(cfg, board, hal, sim, battery=None):
    """The board's LoRaWAN link: an AT modem's own stack over a UART (citynode.lorawan_at) or the
    software MAC over an SX127x/SX126x or the virtual radio (citynode.maclink). Only the module the
    board needs is imported."""
    if board["radio"]["chip"] in AT_MODEMS:
        from citynode.lorawan_at import lorawan_link
    else:
        from citynode.maclink import lorawan_link

    return lorawan_link(cfg, board, hal, sim, battery)


def __getattr__(name):  # MacLink lives in citynode.maclink (loaded only by nodes that use it)
    if name == "MacLink":
        from citynode.maclink import MacLink

        return MacLink
    raise AttributeError(name)
