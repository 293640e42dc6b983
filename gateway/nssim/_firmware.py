"""The firmware's LoRaWAN modules (crypto, frames, MAC commands, EU868), imported under CPython.

The simulator never re-implements LoRaWAN security or framing: it uses the exact code the nodes run,
the same way ``citynode lorawan decode`` does (``gateway.lorawan_tools``): ``firmware/lib`` is appended
to ``sys.path`` (it holds only the ``citynode`` package, so it never shadows anything), and so is
``gateway/sim/mpy`` for the virtual radio's datagram format (``citynode_sim.udp``).
"""

from __future__ import annotations

import sys

from gateway.paths import firmware_dir, sim_mpy_dir

for _lib in (str(firmware_dir() / "lib"), str(sim_mpy_dir())):
    if _lib not in sys.path:
        sys.path.append(_lib)

from citynode import lorawan  # noqa: E402
from citynode.lorawan import airtime, crypto, frames, maccmd, region  # noqa: E402
from citynode_sim import udp  # noqa: E402

__all__ = ["lorawan", "airtime", "crypto", "frames", "maccmd", "region", "udp"]
