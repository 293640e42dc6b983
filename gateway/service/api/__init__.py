"""The gateway's HTTP API: read API, ``/metrics``, ``/health``, the status page and the live terminal view.

* :mod:`gateway.service.api.routes`: the aiohttp application (read API, health, metrics, ingest route).
* :mod:`gateway.service.api.liveview`: the live terminal view of a store (``citynode gateway watch``).

* :mod:`gateway.service.api.history`: recent per-field series and link quality of a device, uplinks per minute.
* :mod:`gateway.service.api.page`: serves ``/`` and ``/static/*`` (plain files in ``gateway/service/api/static``:
  no build step, no CDN; they ship inside the wheel as package data).
"""

from __future__ import annotations

from gateway.service.api.history import DeviceHistory, FieldSeries, LinkPoint, device_history, uplinks_since
from gateway.service.api.page import add_page_routes

__all__ = [
    "DeviceHistory",
    "FieldSeries",
    "LinkPoint",
    "add_page_routes",
    "device_history",
    "uplinks_since",
]
