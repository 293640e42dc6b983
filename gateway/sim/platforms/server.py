"""The HTTP scaffolding the platform simulators share: an aiohttp server on a free port, as an async
context manager, and a ``serve`` loop for the demo and ``python -m``.

A simulator subclasses :class:`HttpSimulator`, adds its routes in :meth:`HttpSimulator.routes`
(and middlewares in :attr:`HttpSimulator.middlewares`) and answers as the real server does.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any, Self

from aiohttp import web

__all__ = ["HttpSimulator", "serve", "main"]


class HttpSimulator:
    """Base: ``async with Sim(port=0) as sim`` listens on ``sim.host``/``sim.port`` (a free port for 0)."""

    #: Printed by :func:`serve`, e.g. "NGSI-LD broker simulator": always says it is not the real server.
    title = "HTTP simulator"
    #: Appended to the base address to make :attr:`url` (e.g. the SensorThings service root "/v1.1").
    root = ""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host, self.port = host, port
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.root}"

    def middlewares(self) -> list[Any]:
        """aiohttp middlewares, outermost first (none by default)."""
        return []

    def routes(self, app: web.Application) -> None:
        """Add the simulator's routes to ``app``."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        app = web.Application(middlewares=self.middlewares())
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def serve(sim: HttpSimulator) -> None:
    """Run ``sim`` until cancelled (the demo's stand-in server), saying where and that it is a simulator."""
    async with sim:
        print(f"{sim.title} on {sim.url} (not a real server)", flush=True)
        await asyncio.Event().wait()


def main(factory: type[HttpSimulator], default_port: int) -> None:
    """``python -m gateway.sim.platforms.<name> [port]``."""
    try:
        asyncio.run(serve(factory(port=int(sys.argv[1]) if len(sys.argv) > 1 else default_port)))
    except KeyboardInterrupt:
        pass
