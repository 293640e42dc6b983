"""Simulators and the demo: everything that exists only for tests, rehearsals and ``make demo``.

Never needed in production. ``nssim`` is a LoRaWAN network-server simulator (UDP virtual radio, OTAA,
ADR, ChirpStack-shaped events); ``chirpstack`` is a gRPC servicer of ChirpStack's API built from
``chirpstack-api``; ``platforms`` stands in for an NGSI-LD broker and a FROST-Server; ``esp_rom`` is
the ESP32 ROM serial loader for the real esptool; ``virtual_device``, ``vdev_repl`` and ``simhost``
make a MicroPython unix-port process look like a board on a serial port; ``device_run``, ``fleet``
and ``demo`` run nodes and the whole chain; ``sample`` fills a store for the status page.

Rule (docs/architecture.md): this package may import every other package but :mod:`gateway.cli`.
"""

from __future__ import annotations

__all__: list[str] = []
