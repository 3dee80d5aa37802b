"""Fixtures: the embedded broker (one per session, on a free port), a fresh topic prefix per
test, and an in-process ingress over real loopback HTTP."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from streams.broker import EmbeddedBroker
from tests.support import RunningIngress, make_settings, serve_ingress


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """Started once; a failed start raises with the tail of the broker's log."""
    log_path = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log_path=log_path) as running:
        yield running


@pytest.fixture
def prefix() -> str:
    """A fresh topic prefix per test: tests share the broker, never topics."""
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture
async def ingress(broker: EmbeddedBroker, prefix: str) -> AsyncIterator[RunningIngress]:
    async with serve_ingress(make_settings(broker.bootstrap, prefix)) as running:
        yield running
