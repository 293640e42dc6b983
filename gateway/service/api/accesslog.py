"""An access log line per API request, so that an operator can see the load the page and clients put on it.

One INFO line on the ``citynode.access`` logger per request to ``/api/*``, ``/health`` and
``/metrics``: method, path, status, response bytes and milliseconds. The query string is left out (a
search term is the operator's own business) and so are headers, so no bearer token or client address
ever reaches the log. Static files and ``/`` are not logged (one line per page load is not load).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

__all__ = ["access_log_middleware"]

log = logging.getLogger("citynode.access")

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_LOGGED = ("/api/", "/health", "/metrics")


@web.middleware
async def access_log_middleware(request: web.Request, handler: _Handler) -> web.StreamResponse:
    if not request.path.startswith(_LOGGED):
        return await handler(request)
    start = time.perf_counter()
    status = 500
    size = 0
    try:
        response = await handler(request)
        status = response.status
        size = response.body_length if response.prepared else len(getattr(response, "body", b"") or b"")
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        ms = (time.perf_counter() - start) * 1000
        log.info("%s %s %d %d bytes %.1f ms", request.method, request.path, status, size, ms)
