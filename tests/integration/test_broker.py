"""The embedded broker's lifecycle: nothing is left behind, even when start-up is cut short."""

from __future__ import annotations

import asyncio

import pytest

import streams.kafka.embedded as broker_module
from streams.core.topics import CATALOG
from streams.kafka.admin import ensure_topics
from streams.kafka.embedded import EmbeddedBroker


def test_an_interrupted_start_stops_the_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C or SIGTERM while ``dev`` waits for the broker to listen must not orphan it."""

    def interrupted(*_args: object, **_kwargs: object) -> bool:
        raise KeyboardInterrupt

    monkeypatch.setattr(broker_module, "answers", interrupted)
    broker = EmbeddedBroker()
    with pytest.raises(KeyboardInterrupt):
        broker.start()
    assert broker.process is None  # stopped and reaped by start() itself


def test_topics_are_created_once_with_the_catalog_layout(
    embedded_broker: EmbeddedBroker,
) -> None:
    broker = embedded_broker
    first = asyncio.run(ensure_topics(broker.kafka, "layout."))
    again = asyncio.run(ensure_topics(broker.kafka, "layout."))
    assert set(first.values()) == {"created"} and len(first) == len(CATALOG)
    assert set(again.values()) == {"exists"}
