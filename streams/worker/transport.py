"""Faust's aiokafka transport with the worker's own consumer and producer settings.

Faust builds its aiokafka clients itself and exposes only some of their settings; the
worker needs two more, so its app uses this transport (a subclass of Faust's, each
override a few lines that adjust what Faust built):

- ``fetch_max_wait_ms``: Faust fixes it at 1,500 ms. On Apache Kafka that costs nothing
  (a waiting fetch is answered as soon as records arrive), but the embedded broker answers
  a fetch only when the wait runs out (measured: 615 ms median from produce to consume at
  1,500 ms, 2.6 ms at 5 ms), so every event waited up to 1.5 s. ``KAFKA_FETCH_MAX_WAIT_MS``
  sets it (500 ms, Kafka's default; ``dev`` and the tests use 10 ms on the embedded broker).
- idempotence for Faust's own producer, which Faust turns on only with exactly-once
  processing: it follows ``KAFKA_ENABLE_IDEMPOTENCE`` here, except on the embedded broker,
  where aiokafka's idempotent producer cannot start (the worker writes its own records
  through librdkafka, idempotent there too; Faust's producer sends only what Faust sends).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

from streams.settings import Settings


class WorkerApp(faust.App):
    """A Faust app that carries the worker's settings to its transport."""

    settings: Settings

    def __init__(self, id: str, settings: Settings, **options: Any) -> None:
        self.settings = settings
        super().__init__(id, **options)

    def _new_transport(self) -> Any:
        return Transport(self.conf.broker_consumer, self)

    def _new_producer_transport(self) -> Any:
        return Transport(self.conf.broker_producer, self)


def _settings(app: Any) -> Settings:
    settings: Settings = app.settings
    return settings


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Read when the consumer starts (its fetcher is made then), so setting it now holds.
        consumer._fetch_max_wait_ms = _settings(self.app).fetch_max_wait_ms
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> Any:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Producer(faust_aiokafka.Producer):
    def _settings_extra(self) -> Mapping[str, Any]:
        extra = dict(super()._settings_extra())
        settings = _settings(self.app)
        if settings.kafka_enable_idempotence and not settings.kafka_embedded_broker:
            extra.update(acks="all", enable_idempotence=True)
        return extra


class Transport(faust_aiokafka.Transport):
    """Faust's aiokafka transport with the overrides above."""

    Consumer = _Consumer
    Producer = _Producer
