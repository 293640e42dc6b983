"""The gateway's status page and the store queries behind it and the live terminal view.

* :mod:`gateway.web.history`: recent per-field series and link quality of a device, uplinks per minute.
* :mod:`gateway.web.page`: serves ``/`` and ``/static/*`` (plain files in ``gateway/web/static``:
  no build step, no CDN; they ship inside the wheel as package data).
"""

from __future__ import annotations

from gateway.web.history import DeviceHistory, FieldSeries, LinkPoint, device_history, uplinks_since
from gateway.web.page import add_page_routes

__all__ = [
    "DeviceHistory",
    "FieldSeries",
    "LinkPoint",
    "add_page_routes",
    "device_history",
    "uplinks_since",
]
