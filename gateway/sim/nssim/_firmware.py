"""The firmware's LoRaWAN modules (crypto, frames, MAC commands, EU868), imported under CPython.

The simulator never re-implements LoRaWAN security or framing: it uses the exact code the nodes run,
the same way ``citynode lorawan decode`` does (``gateway.field.lorawan_tools``), imported through
:func:`gateway.paths.firmware_module`.
"""

from __future__ import annotations

from gateway.paths import firmware_module

lorawan = firmware_module("citynode.lorawan")
airtime = firmware_module("citynode.lorawan.airtime")
crypto = firmware_module("citynode.lorawan.crypto")
frames = firmware_module("citynode.lorawan.frames")
maccmd = firmware_module("citynode.lorawan.maccmd")
region = firmware_module("citynode.lorawan.region")
udp = firmware_module("citynode_sim.udp")  # the virtual radio's datagram format

__all__ = ["lorawan", "airtime", "crypto", "frames", "maccmd", "region", "udp"]
