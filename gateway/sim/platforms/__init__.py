"""Stand-ins for the data platforms that cannot run here: an NGSI-LD broker and a FROST-Server.

Each speaks the real protocol over HTTP on loopback and answers as the real server does; see the
module docstrings for what each checks and docs/ for the sources.
"""

from __future__ import annotations

__all__: list[str] = []
