"""Simulators of data platforms that cannot run on a test machine (NGSI-LD broker, FROST-Server).

They speak the real protocols, check the documented request shapes and answer like the real servers,
including partial failures; they are for tests and the demo, never for production.
"""

from __future__ import annotations

__all__: list[str] = []
