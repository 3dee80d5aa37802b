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

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

from streams.settings import Settings


class WorkerApp(faust.App):
    """A Faust app that carries the worker's settings to its transport."""

    settings: Settings
    every_record_topics: frozenset[str]
    """Topics whose every record must reach an agent (see ``_DeliverEverything``)."""

    def __init__(self, id: str, settings: Settings, every_record_topics: frozenset[str],
                 **options: Any) -> None:
        self.settings = settings
        self.every_record_topics = every_record_topics
        super().__init__(id, **options)

    def _new_transport(self) -> Any:
        return Transport(self.conf.broker_consumer, self)

    def _new_producer_transport(self) -> Any:
        return Transport(self.conf.broker_producer, self)


def _every_record_topics(app: Any) -> frozenset[str]:
    topics: frozenset[str] = app.every_record_topics
    return topics


def _settings(app: Any) -> Settings:
    settings: Settings = app.settings
    return settings


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Read when the consumer starts (its fetcher is made then), so setting it now holds.
        consumer._fetch_max_wait_ms = _settings(self.app).fetch_max_wait_ms
        # Records of aborted transactions (an app may write link requests or policies
        # transactionally) never reach an agent; Faust asks for read_committed only when it
        # runs transactions itself.
        consumer._isolation_level = "read_committed"
        return consumer


class _DeliverEverything(defaultdict[Any, int | None]):
    """Faust's per-partition read offsets, as its delivery loop sees them: no offset at all
    for the topics where every record must reach the agents.

    Faust's delivery loop (faust/transport/consumer.py, ``_drain_messages``) compares each
    record with the last offset it read: it drops a record below it as already delivered,
    and records a jump past it as a gap in the log, which the next commit steps over. A
    seek moves that offset back to the committed one while the loop may still be handing
    out records it had fetched before the seek: the jump past them is taken for a gap, and
    the same records fetched again after the seek are dropped. Records then reach no agent
    and are committed all the same (measured here: 4 to 7 records on every partition,
    right after the committed offset, on a restarted worker). With no offset to compare
    with, the loop delivers whatever it fetched: after a seek some records come twice,
    which the tables absorb (they keep the event ids they applied), and none is skipped.
    The workers' event topics are neither compacted nor transactional, so they have no
    real gaps for Faust to step over. Faust keeps the offsets for its own bookkeeping."""

    def __init__(self, topics: frozenset[str]) -> None:
        super().__init__(lambda: None)
        self.topics = topics

    def __getitem__(self, tp: Any) -> int | None:
        if tp.topic in self.topics:
            return None
        return super().__getitem__(tp)


class _Consumer(faust_aiokafka.Consumer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._every_record = _every_record_topics(self.app)
        self._read_offset = _DeliverEverything(self._every_record)

    def _new_consumer_thread(self) -> Any:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def _new_offset(self, tp: Any) -> int | None:
        """The offset to commit: never past a record no agent has acknowledged.

        Faust commits the first run of consecutive acknowledged offsets unless the lowest
        one is more than one past the committed offset, so a lone record at the committed
        offset that never reached an agent is committed over. For the event topics the
        record at the committed offset must be acknowledged first."""
        if tp.topic in self._every_record:
            acked = self._acked[tp]
            committed = self._committed_offset[tp]
            if acked and committed is not None and min(acked) > committed:
                return None
        offset: int | None = super()._new_offset(tp)
        return offset


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
