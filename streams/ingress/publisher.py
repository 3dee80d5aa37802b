"""The publish path: records from concurrent requests, batched per partition, acks=all.

aiokafka's ``send()`` costs about 17 µs of Python per record (metadata check, serialisers,
the partitioner, a future and a metadata object per record); that alone would cap the
ingress well below its target. So the publisher does the batching itself: each request
appends its record to the buffer of its topic-partition and gets a future; one drain task
per partition turns the buffer into a single ``BatchBuilder`` (records appended in C) and
hands it to the producer with ``send_batch``. aiokafka keeps one batch per partition
queued and one produce request in flight per broker, so while a batch travels the next
one fills up: batching comes from concurrency, never from lingering, and a lone webhook
is not delayed. Keys are partitioned as Kafka's default partitioner does (murmur2), so
every client agrees where a courseId or userId lives.

The producer is started in the background and restarted after a failed start, so the
ingress comes up (and answers ``/healthz``) while the broker is still down; until the
producer is running every publish fails fast with ``BrokerUnavailable`` and ``/readyz``
says 503. Idempotence is a setting: on for Apache Kafka, off for the embedded broker,
whose memory store cannot answer aiokafka's InitProducerId (downstream consumers absorb
producer retries by the ``edume-event-id`` header).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from functools import lru_cache, partial
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2

from streams.errors import BrokerUnavailable
from streams.settings import Settings

log = logging.getLogger(__name__)

Headers = Sequence[tuple[str, bytes]]
_Record = tuple[bytes, bytes, Headers, "asyncio.Future[None]"]


@lru_cache(maxsize=1 << 16)
def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner for keyed records (murmur2, as the Java client does)."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


def _fail(waiters: list[asyncio.Future[None]], exc: BaseException) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_exception(exc)


def _settle(waiters: list[asyncio.Future[None]], topic: str, delivery: asyncio.Future[Any]) -> None:
    """The broker answered for a whole batch: settle every request's future in it."""
    if delivery.cancelled():
        _fail(waiters, BrokerUnavailable(f"send to {topic} was cancelled"))
        return
    exc = delivery.exception()
    if exc is not None:
        _fail(waiters, BrokerUnavailable(f"send to {topic} failed: {type(exc).__name__}"))
        return
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)


class Publisher:
    """Queues records into per-partition batches; their futures settle on the broker's ack."""

    def __init__(self, settings: Settings, *, client_id: str = "edume-streams-ingress") -> None:
        self._settings = settings
        self._client_id = client_id
        self._producer: AIOKafkaProducer | None = None
        self._starter: asyncio.Task[None] | None = None
        self._prober: asyncio.Task[None] | None = None
        self._broker_reachable = False
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop  # set by start()
        self._partition_counts: dict[str, int] = {}
        self._buffers: dict[tuple[str, int], list[_Record]] = {}
        self._drainers: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._started = asyncio.Event()

    @property
    def ready(self) -> bool:
        """True while the producer runs and the broker answered the last probe."""
        return self._producer is not None and self._broker_reachable

    def _new_producer(self) -> AIOKafkaProducer:
        s = self._settings
        # How long a record keeps being retried after its request was answered 503: long
        # enough to ride out a broker hiccup, short enough that eduMe's retry usually meets
        # a settled delivery (it waits for one still in flight rather than sending twice).
        timeout_ms = int(max(s.publish_timeout_s * 2, 3.0) * 1000)
        return AIOKafkaProducer(
            bootstrap_servers=s.kafka_bootstrap_servers,
            client_id=self._client_id,
            acks="all",
            enable_idempotence=s.kafka_enable_idempotence,
            linger_ms=0,
            max_batch_size=64 * 1024,
            max_request_size=max(1_048_576, s.max_body_bytes + 64 * 1024),
            request_timeout_ms=timeout_ms,
            retry_backoff_ms=100,
            metadata_max_age_ms=60_000,
        )

    async def start(self) -> None:
        """Begin connecting in the background; returns at once."""
        self._stopping = False
        self._loop = asyncio.get_running_loop()
        self._starter = asyncio.create_task(self._start_loop(), name="producer-start")

    async def wait_started(self, timeout_s: float) -> bool:
        """Wait until the producer runs (used by ``dev`` and tests); False on timeout."""
        try:
            await asyncio.wait_for(self._started.wait(), timeout_s)
        except TimeoutError:
            return False
        return self.ready

    async def _start_loop(self) -> None:
        delay = 0.2
        while not self._stopping:
            producer: AIOKafkaProducer | None = None
            try:
                producer = self._new_producer()
                await asyncio.wait_for(
                    producer.start(), timeout=max(5.0, self._settings.publish_timeout_s)
                )
            except asyncio.CancelledError:
                if producer is not None:
                    with contextlib.suppress(Exception):
                        await producer.stop()
                raise
            except Exception as exc:  # any failure to start is retried, and said
                log.warning(
                    "cannot start the producer for %s (%s: %s); retrying in %.1fs",
                    self._settings.kafka_bootstrap_servers,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                if producer is not None:
                    with contextlib.suppress(Exception):
                        await producer.stop()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self._producer = producer
            self._broker_reachable = True
            self._started.set()
            log.info(
                "producer connected to %s (idempotence %s)",
                self._settings.kafka_bootstrap_servers,
                "on" if self._settings.kafka_enable_idempotence else "off",
            )
            self._prober = asyncio.create_task(self._probe_loop(), name="broker-probe")
            return

    async def _probe_loop(self) -> None:
        """Keep ``ready`` honest, and the partition counts current: refresh the producer's
        own metadata every few seconds (the counts must be the ones ``send_batch`` checks
        against, or a record could be routed to a partition the producer does not know)."""
        assert self._producer is not None
        client = self._producer.client
        interval = self._settings.ready_probe_interval_s
        while not self._stopping:
            try:
                answered = await asyncio.wait_for(client.force_metadata_update(), interval)
            except (TimeoutError, KafkaError, OSError):
                answered = False
            if not answered:
                if self._broker_reachable:
                    log.warning("broker stopped answering metadata requests")
                self._broker_reachable = False
            else:
                if not self._broker_reachable:
                    log.info("broker answering again")
                self._broker_reachable = True
                for topic in list(self._partition_counts):
                    partitions = client.cluster.partitions_for_topic(topic)
                    if partitions and len(partitions) != self._partition_counts[topic]:
                        log.info("%s now has %d partitions", topic, len(partitions))
                        self._partition_counts[topic] = len(partitions)
            await asyncio.sleep(interval)

    async def enqueue(
        self,
        topic: str,
        key: bytes,
        value: bytes,
        headers: Headers,
        waiter: asyncio.Future[None],
    ) -> None:
        """Queue one record; ``waiter`` is settled by the broker's acknowledgement (acks=all).

        ``waiter`` resolves once the batch holding the record is acknowledged, or fails
        with ``BrokerUnavailable`` once the producer gives up on it (its request timeout).
        This only waits when the topic's partition count is not known yet; the caller
        bounds that wait, and the record is queued only after it (if this raises or is
        cancelled, the record was not queued and ``waiter`` is the caller's to settle).
        """
        producer = self._producer
        if producer is None:
            raise BrokerUnavailable("not connected to the broker yet")
        count = self._partition_counts.get(topic)
        if count is None:
            count = await self._learn_partitions(producer, topic)
        partition = partition_for(key, count)
        tp = (topic, partition)
        buffer = self._buffers.get(tp)
        if buffer is None:
            self._buffers[tp] = [(key, value, headers, waiter)]
        else:
            buffer.append((key, value, headers, waiter))
        if tp not in self._drainers:
            self._drainers[tp] = self._loop.create_task(self._drain(topic, partition))

    async def _learn_partitions(self, producer: AIOKafkaProducer, topic: str) -> int:
        try:
            partitions = await producer.partitions_for(topic)
        except KafkaError as exc:
            raise BrokerUnavailable(f"no metadata for {topic}: {type(exc).__name__}") from None
        if not partitions:
            raise BrokerUnavailable(f"topic {topic} has no partitions")
        self._partition_counts[topic] = len(partitions)
        return len(partitions)

    async def _drain(self, topic: str, partition: int) -> None:
        """Send what the partition's buffer holds, batch after batch, until it stays empty."""
        tp = (topic, partition)
        records: list[_Record] = []
        try:
            while records := self._buffers.pop(tp, []):
                await self._send(topic, partition, records)
        except BaseException as exc:
            # Whatever went wrong, no request may wait for ever: fail this batch and
            # everything queued behind it (eduMe is told to retry), then stop.
            failure = BrokerUnavailable(f"send to {topic} failed: {type(exc).__name__}")
            _fail([r[3] for r in records], failure)
            _fail([r[3] for r in self._buffers.pop(tp, [])], failure)
            if not isinstance(exc, Exception):
                raise
            log.exception("publishing to %s[%d] failed", topic, partition)
        finally:
            del self._drainers[tp]

    async def _send(self, topic: str, partition: int, records: list[_Record]) -> None:
        producer = self._producer
        if producer is None:
            _fail([r[3] for r in records], BrokerUnavailable("the producer stopped"))
            return
        batch = producer.create_batch()
        waiters: list[asyncio.Future[None]] = []
        for key, value, headers, waiter in records:
            if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                # Full: send it, and start the next one with this record. An empty batch
                # takes a record of any size (up to max_request_size).
                await self._submit(producer, batch, topic, partition, waiters)
                batch = producer.create_batch()
                waiters = []
                batch.append(key=key, value=value, timestamp=None, headers=headers)
            waiters.append(waiter)
        await self._submit(producer, batch, topic, partition, waiters)

    async def _submit(
        self,
        producer: AIOKafkaProducer,
        batch: Any,
        topic: str,
        partition: int,
        waiters: list[asyncio.Future[None]],
    ) -> None:
        try:
            # Waits while this partition's previous batch is still queued: meanwhile the
            # buffer fills, and the next batch carries everything that arrived.
            delivery = await producer.send_batch(batch, topic, partition=partition)
        except Exception as exc:  # aiokafka raises KafkaError, and AssertionError on metadata
            _fail(waiters, BrokerUnavailable(f"send to {topic} failed: {type(exc).__name__}"))
            return
        delivery.add_done_callback(partial(_settle, waiters, topic))

    def mark_unreachable(self) -> None:
        """An acknowledgement did not come in time: not ready until the next probe answers."""
        self._broker_reachable = False

    async def stop(self) -> None:
        """Flush what is queued and close the connections."""
        self._stopping = True
        if self._drainers:
            await asyncio.wait(
                list(self._drainers.values()), timeout=self._settings.publish_timeout_s
            )
        for task in (self._starter, self._prober):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._started.clear()
        if self._producer is not None:
            producer, self._producer = self._producer, None
            with contextlib.suppress(Exception):
                await producer.stop()
        self._broker_reachable = False
