# FUOTA: the LoRaWAN application-layer packages ChirpStack v4 drives (docs/design/fuota.md).
# Each package is a small module imported only when a downlink arrives on its fPort, so a node that is
# never updated pays nothing for them. A package object takes a downlink payload and returns the
# uplink answer (bytes, or None when the specification says the device stays silent); it never raises
# on malformed input.
from citynode.compat import const

PORT_MULTICAST = const(200)  # TS005 Remote Multicast Setup, default fPort
PORT_FRAGMENTATION = const(201)  # TS004 Fragmented Data Block Transport, default fPort
PORT_CLOCK = const(202)  # TS003 Application Layer Clock Synchronization, default fPort


def le(b, pos, n):
    """Unsigned little-endian integer of ``n`` bytes at ``b[pos]``."""
    v = 0
    for i in range(n - 1, -1, -1):
        v = (v << 8) | b[pos + i]
    return v


def put_le(buf, pos, value, n):
    for i in range(n):
        buf[pos + i] = (value >> (8 * i)) & 0xFF
