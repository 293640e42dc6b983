"""The long-running gateway service: what runs in production.

``app`` starts and stops everything (``citynode gateway serve``); ``config`` validates ``gw.toml``;
``ingest`` receives ChirpStack events (MQTT, HTTP, AMQP); ``pipeline`` decodes and normalises them;
``store`` keeps uplinks, readings, devices and dead letters (SQLite or PostgreSQL); ``outbox`` and
``sinks`` deliver readings to the data platforms; ``api`` serves the read API, ``/metrics``,
``/health`` and the status page.

Rule (docs/architecture.md, checked by tests/test_architecture.py): this package imports only itself,
:mod:`gateway.contract`, :mod:`gateway.errors` and :mod:`gateway.paths`.
"""

from __future__ import annotations

__all__: list[str] = []
