"""Fixtures for the provisioning tests: the ChirpStack API simulator in-process on a free port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.chirpstack_client import ChirpStackClient
from gateway.chirpstack_sim import ChirpStackSimulator

TOKEN = "test-api-token"


@pytest.fixture
def sim() -> Iterator[ChirpStackSimulator]:
    """A fresh simulator (empty but for ChirpStack's default tenant), stopped after the test."""
    with ChirpStackSimulator(token=TOKEN) as server:
        yield server


@pytest.fixture
def client(sim: ChirpStackSimulator) -> Iterator[ChirpStackClient]:
    with ChirpStackClient(sim.address, TOKEN, timeout=5.0) as cs:
        yield cs
