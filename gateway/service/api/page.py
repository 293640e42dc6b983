"""Serves the status page: ``GET /`` (index.html) and ``GET /static/{app.js,style.css}``.

The files are package data (``gateway/service/api/static``), read once through :mod:`importlib.resources`
so they work from a wheel as well as from a checkout. Only the named files are served: no directory
listing, no path handling. The page needs no third-party origin, so its Content-Security-Policy
allows scripts, styles and fetches from the gateway itself only; together with the page building
every text node with ``textContent`` this keeps device names and tags from ever running as code.

The page reads ``/api/*`` like any client; when the API needs a bearer token (``http.api_token``)
the page asks for it and keeps it in the browser tab's ``sessionStorage`` only.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

__all__ = ["CONTENT_SECURITY_POLICY", "STATIC_FILES", "add_page_routes"]

STATIC_FILES: dict[str, str] = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidate: a gateway upgrade ships new files under the same names
}


def _load() -> dict[str, bytes]:
    root = resources.files("gateway.service.api") / "static"
    return {name: (root / name).read_bytes() for name in STATIC_FILES}


def add_page_routes(app: web.Application) -> None:
    """Register ``/`` and ``/static/{name}`` on ``app``. Raises ``FileNotFoundError`` if a file is missing."""
    files = _load()

    def respond(name: str) -> web.Response:
        return web.Response(body=files[name], headers={**_HEADERS, "Content-Type": STATIC_FILES[name]})

    async def index(request: web.Request) -> web.Response:
        return respond("index.html")

    async def static(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in files or name == "index.html":
            raise web.HTTPNotFound(text="no such file")
        return respond(name)

    app.router.add_get("/", index)
    app.router.add_get("/static/{name}", static)
