"""The publish path: one aiokafka producer, acks=all, an answer only after the broker's ack.

Batching comes from concurrency, not from lingering: while one produce request per
partition is in flight, the sends of other requests pile up in the accumulator and leave
together in the next one, so ``linger_ms`` stays 0 and a lone webhook is not delayed.

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
import time
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from streams.errors import BrokerUnavailable
from streams.settings import Settings

log = logging.getLogger(__name__)

Headers = Sequence[tuple[str, bytes]]


class Publisher:
    """Sends records and waits for acks=all within a deadline."""

    def __init__(self, settings: Settings, *, client_id: str = "edume-streams-ingress") -> None:
        self._settings = settings
        self._client_id = client_id
        self._producer: AIOKafkaProducer | None = None
        self._starter: asyncio.Task[None] | None = None
        self._prober: asyncio.Task[None] | None = None
        self._broker_reachable = False
        self._stopping = False

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
        self._starter = asyncio.create_task(self._start_loop(), name="producer-start")

    async def wait_started(self, timeout_s: float) -> bool:
        """Wait until the producer runs (used by ``dev`` and tests); False on timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.ready:
                return True
            await asyncio.sleep(0.05)
        return self.ready

    async def _start_loop(self) -> None:
        delay = 0.2
        while not self._stopping:
            producer = self._new_producer()
            try:
                await asyncio.wait_for(
                    producer.start(), timeout=max(5.0, self._settings.publish_timeout_s)
                )
            except (TimeoutError, KafkaError, OSError) as exc:
                log.warning(
                    "broker not reachable at %s (%s); retrying in %.1fs",
                    self._settings.kafka_bootstrap_servers,
                    type(exc).__name__,
                    delay,
                )
                with contextlib.suppress(Exception):
                    await producer.stop()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self._producer = producer
            self._broker_reachable = True
            log.info(
                "producer connected to %s (idempotence %s)",
                self._settings.kafka_bootstrap_servers,
                "on" if self._settings.kafka_enable_idempotence else "off",
            )
            self._prober = asyncio.create_task(self._probe_loop(), name="broker-probe")
            return

    async def _probe_loop(self) -> None:
        """Keep ``ready`` honest: ask the broker for metadata every few seconds."""
        assert self._producer is not None
        client = self._producer.client
        interval = self._settings.ready_probe_interval_s
        while not self._stopping:
            try:
                await asyncio.wait_for(client.fetch_all_metadata(), timeout=interval)
            except (TimeoutError, KafkaError, OSError):
                if self._broker_reachable:
                    log.warning("broker stopped answering metadata requests")
                self._broker_reachable = False
            else:
                if not self._broker_reachable:
                    log.info("broker answering again")
                self._broker_reachable = True
            await asyncio.sleep(interval)

    async def enqueue(
        self, topic: str, key: bytes, value: bytes, headers: Headers
    ) -> asyncio.Future[object]:
        """Hand one record to the producer; return the future of the broker's acknowledgement.

        The future resolves when the broker acknowledged the record with acks=all, or fails
        once the producer gives up (its request timeout). Raises ``BrokerUnavailable`` when
        the producer is not running or refuses the record. It can wait (for topic metadata,
        or room in a full batch): the caller bounds it, and cancelling it before it returns
        withdraws the record (aiokafka's contract), so nothing is half-sent.
        """
        producer = self._producer
        if producer is None:
            raise BrokerUnavailable("not connected to the broker yet")
        try:
            future: asyncio.Future[object] = await producer.send(
                topic, value, key=key, headers=headers
            )
        except KafkaError as exc:
            raise BrokerUnavailable(f"send to {topic} failed: {type(exc).__name__}") from None
        return future

    def mark_unreachable(self) -> None:
        """An acknowledgement did not come in time: not ready until the next probe answers."""
        self._broker_reachable = False

    async def stop(self) -> None:
        """Flush what is queued and close the connections."""
        self._stopping = True
        for task in (self._starter, self._prober):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._producer is not None:
            producer, self._producer = self._producer, None
            with contextlib.suppress(Exception):
                await producer.stop()
        self._broker_reachable = False

