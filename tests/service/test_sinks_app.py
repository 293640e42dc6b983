"""Sinks inside the running gateway service: ``[sinks.*]`` config, /metrics, graceful shutdown."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.errors import ConfigError
from gateway.service.app import GatewayService
from gateway.service.config import parse_config
from gateway.service.sinks import worker_factories
from gateway.service.store import Store
from gateway.sim.platforms.ngsild import NgsiLdSimulator


def config(tmp_path: Path, url: str) -> Any:
    return parse_config({"store": {"path": str(tmp_path / "g.sqlite")},
                         "http": {"host": "127.0.0.1", "port": 0},
                         "sinks": {"ngsild": {"url": url, "retry_initial_s": 0.05, "retry_max_s": 0.1,
                                              "default_location": [7.0857, 51.5177]}}})


async def metrics(svc: GatewayService) -> set[str]:
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{svc.http_port}/metrics") as r:
        return set((await r.text()).splitlines())


def feed(svc: GatewayService, events: Any, aq_payload: Any, f_cnts: range) -> None:
    for f_cnt in f_cnts:
        svc.pipeline.handle("up", events.body(events.up(f_cnt=f_cnt, data=aq_payload(20 + f_cnt))), "json", "mqtt")


def test_the_service_delivers_to_configured_sinks_and_reports_them(tmp_path: Path, events: Any,
                                                                   aq_payload: Any) -> None:
    async def main() -> NgsiLdSimulator:
        async with NgsiLdSimulator() as broker:
            cfg = config(tmp_path, broker.url)
            async with GatewayService(cfg, worker_factories=worker_factories(cfg)) as svc:
                feed(svc, events, aq_payload, range(1, 6))
                while svc.store.pending("ngsild"):
                    await asyncio.sleep(0.02)
                lines = await metrics(svc)
                assert 'citynode_sink_delivered_total{sink="ngsild"} 40' in lines  # 5 uplinks x 8 fields
                assert 'citynode_sink_pending{sink="ngsild"} 0' in lines
                assert 'citynode_sink_failed_total{sink="ngsild"} 0' in lines
            return broker

    broker = asyncio.run(main())
    assert len(broker.updates) == 5


def test_shutdown_while_the_platform_is_down_keeps_everything_pending(tmp_path: Path, events: Any,
                                                                      aq_payload: Any) -> None:
    async def main() -> None:
        async with NgsiLdSimulator() as broker:
            broker.fail_next.extend([503] * 100_000)
            cfg = config(tmp_path, broker.url)
            async with GatewayService(cfg, worker_factories=worker_factories(cfg)) as svc:
                feed(svc, events, aq_payload, range(1, 4))
                while len(broker.requests) < 3:  # a few attempts with back-off
                    await asyncio.sleep(0.02)
                lines = await metrics(svc)
                assert 'citynode_sink_pending{sink="ngsild"} 24' in lines
            assert broker.updates == []

    asyncio.run(main())
    with Store.open(tmp_path / "g.sqlite") as store:  # the next start finds all of it still to deliver
        assert store.pending("ngsild") == 24 and store.dead_letters() == []


def test_no_sinks_no_worker_and_bad_sink_config_fails_at_start(tmp_path: Path) -> None:
    assert worker_factories(parse_config({"store": {"path": str(tmp_path / "g.sqlite")}})) == []
    with pytest.raises(ConfigError, match=r"sinks\.ngsild\.url: required"):
        worker_factories(parse_config({"sinks": {"ngsild": {"tenant": "x"}}}))
