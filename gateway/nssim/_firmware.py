"""The firmware's LoRaWAN modules (crypto, frames, MAC commands, EU868), imported under CPython.

The simulator never re-implements LoRaWAN security or framing: it uses the exact code the nodes run,
the same way ``citynode lorawan decode`` does (``gateway.lorawan_tools``): ``firmware/lib`` is appended
to ``sys.path`` (it holds only the ``citynode`` package, so it never shadows anything).
"""

from __future__ import annotations

import sys

from gateway.paths import firmware_dir

_lib = str(firmware_dir() / "lib")
if _lib not in sys.path:
    sys.path.append(_lib)

from citynode import lorawan  # noqa: E402
from citynode.lorawan import airtime, crypto, frames, maccmd, region  # noqa: E402
from citynode.radio import udp  # noqa: E402

__all__ = ["lorawan", "airtime", "crypto", "frames", "maccmd", "region", "udp"]
