"""The publish path: records handed to librdkafka, acknowledgements (acks=all) back on the loop.

Used by the ingress, and by any process that produces on an event loop. The ingress runs
on one event-loop thread, and that thread is what limits its throughput.
aiokafka builds batches, encodes produce requests and parses their answers in Python on
that thread: measured here, 20-100 µs of it per record depending on how well records
batch. librdkafka (confluent-kafka) does all of that in its own C threads, outside the
GIL; the loop thread only hands each record over (``produce``, 3-5 µs) and later runs
its delivery report (1-3 µs). Batching comes from librdkafka's queue: while one produce
request travels, the next fills up.

Delivery reports are served by ``poll(0)`` on the loop thread, from a timer that runs
only while records are outstanding (every ``poll_interval_s``), so every callback runs on
the loop and can settle futures directly.

Records are partitioned as Kafka's Java client does (murmur2 of the key), so every client
agrees where a courseId or userId lives. Idempotence is a setting, on by default;
librdkafka's idempotent producer also runs on the embedded broker. A fatal producer error
(possible only with idempotence) replaces the producer: records in the old one fail, so
their requests are answered 503 and eduMe retries them.

The producer connects in the background, so the ingress comes up (and answers
``/healthz``) while the broker is still down; a metadata probe every
``ready_probe_interval_s`` keeps ``ready`` honest for ``/readyz``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from streams.core.errors import BrokerUnavailable, ConfigurationError, PublishError, RecordRefused
from streams.core.headers import Headers
from streams.kafka.clients import client_config, refusal
from streams.settings import Settings

log = logging.getLogger(__name__)
rdkafka_log = logging.getLogger("streams.librdkafka")


PERMANENT_ERRORS: frozenset[int] = frozenset({
    KafkaError.MSG_SIZE_TOO_LARGE,  # over the topic's max.message.bytes, or the producer's
    KafkaError.RECORD_LIST_TOO_LARGE,
    KafkaError.INVALID_RECORD,
    KafkaError.INVALID_TIMESTAMP,
    KafkaError.TOPIC_EXCEPTION,  # not a valid topic name
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.UNSUPPORTED_FOR_MESSAGE_FORMAT,
    KafkaError.POLICY_VIOLATION,
    KafkaError._UNKNOWN_PARTITION,  # a partition the topic does not have
    KafkaError._INVALID_ARG,
})
"""librdkafka error codes that refuse one record for good: sending the same bytes again
gets the same answer. Every other error is transient (a broker down, a leader moving, a
timeout, a producer being replaced), including the ones that refuse the whole producer
(credentials, cluster authorization): those make the process unready instead."""


def record_error(err: KafkaError, what: str) -> PublishError:
    """A record's librdkafka error as ``RecordRefused`` (permanent) or ``BrokerUnavailable``,
    carrying the error's name and nothing of the record."""
    message = f"{what}: {err.name()}"
    if err.code() in PERMANENT_ERRORS and not (err.retriable() or err.fatal()):
        return RecordRefused(message, err.name())
    return BrokerUnavailable(message, err.name())


class Delivery:
    """One record's outcome. librdkafka calls it with ``(error, message)`` on the loop thread;
    subclasses implement ``settle`` (``None`` once the broker acknowledged the record)."""

    __slots__ = ()

    def __call__(self, err: KafkaError | None, _message: Any) -> None:
        if err is None:
            self.settle(None)
        else:
            self.settle(record_error(err, "the broker did not take the record"))

    def settle(self, error: PublishError | None) -> None:
        raise NotImplementedError


def producer_config(settings: Settings, *, client_id: str, delivery_timeout_s: float,
                    extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The librdkafka settings of every producer here (the ingress's, the workers', the
    commands'): acks=all, Java-compatible partitioning, bounded queues, a record reported
    within ``delivery_timeout_s``, then ``extra`` over them."""
    s = settings
    return {
        **client_config(s.kafka, "librdkafka"),
        "client.id": client_id,
        "acks": "all",
        "enable.idempotence": s.kafka_enable_idempotence,
        # Records of a partition stay in order through retries: the idempotent producer
        # keeps order with up to 5 requests in flight; without it, only one does (and
        # one request in flight batches best on the embedded broker, measured).
        "max.in.flight": 5 if s.kafka_enable_idempotence else 1,
        "partitioner": "murmur2_random",  # murmur2 of the key, as the Java client
        "linger.ms": s.kafka_linger_ms,
        "message.max.bytes": max(1_048_576, s.max_body_bytes + 64 * 1024),
        "message.timeout.ms": int(delivery_timeout_s * 1000),
        # A produce request the broker cannot acknowledge in time fails while the record
        # still has time for a retry.
        "request.timeout.ms": int(max(s.publish_timeout_s, 1.0) * 1000),
        "retry.backoff.ms": 100,
        "socket.nagle.disable": True,
        "queue.buffering.max.messages": 100_000,
        "queue.buffering.max.kbytes": 256 * 1024,
        "topic.metadata.refresh.interval.ms": 60_000,
        "logger": rdkafka_log,
        **(extra or {}),
    }


class SyncWriter:
    """A producer for the commands, configured as the ingress's (``producer_config``):
    ``send`` queues a record, ``finish`` waits for every acknowledgement (acks=all) and
    answers the tags of the records acknowledged; ``errors`` says why the others were not."""

    def __init__(self, settings: Settings, *, client_id: str, timeout_s: float) -> None:
        try:
            self._producer = Producer(producer_config(settings, client_id=client_id,
                                                      delivery_timeout_s=timeout_s))
        except (KafkaException, ValueError, TypeError) as exc:
            raise ConfigurationError(f"cannot configure the Kafka producer: {exc}") from None
        self._timeout_s = timeout_s
        self._done: set[Any] = set()
        self.errors: list[str] = []

    def send(self, topic: str, key: bytes, value: bytes | None,
             record_headers: Sequence[tuple[str, str | bytes | None]], tag: Any, *,
             what: str = "a record") -> None:
        def delivered(error: Any, _message: Any) -> None:
            if error is None:
                self._done.add(tag)
            else:
                self.errors.append(str(error))

        while True:
            try:
                self._producer.produce(topic, value, key, on_delivery=delivered,
                                       headers=list(record_headers))
                break
            except BufferError:
                self._producer.flush(self._timeout_s)
            except KafkaException as exc:
                raise BrokerUnavailable(f"the producer refused {what}: {exc}") from None
        self._producer.poll(0)

    def finish(self) -> set[Any]:
        left = self._producer.flush(self._timeout_s)
        if left:
            self.errors.append(f"{left} records not acknowledged in {self._timeout_s:.0f}s")
        done, self._done = self._done, set()
        return done


class Publisher:
    """Hands records to librdkafka; each record's ``Delivery`` is settled on the loop thread.

    ``extra_config`` is merged over ``config()``: librdkafka settings a process needs
    beyond the shared ones (say, ``{"batch.num.messages": 1}``).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        client_id: str = "edume-streams",
        poll_interval_s: float = 0.001,
        extra_config: Mapping[str, Any] | None = None,
    ) -> None:
        self._settings = settings
        self._client_id = client_id
        self._extra_config = dict(extra_config or {})
        self._poll_interval_s = poll_interval_s
        self._producer: Producer | None = None
        self._loop: asyncio.AbstractEventLoop  # set by start()
        self._polling = False
        self._prober: asyncio.Task[None] | None = None
        self._broker_reachable = False
        self._stopping = False
        self._replacer: asyncio.Task[None] | None = None
        self._last_replaced = -1e9
        self._generation = 0
        self._started = asyncio.Event()
        self.refused: str | None = None
        """Why the broker refuses this producer's credentials, certificates or producer id,
        naming the settings; None once that is over."""
        self._refused_fatally = -1
        """The generation of the last producer a fatal refusal ended (the ACLs refused its
        producer id): metadata answers do not show that fixed, a newer producer that lived
        on does."""
        self._answered_at: float | None = None
        """When the current producer's first probe was answered."""

    @property
    def ready(self) -> bool:
        """True while the producer runs, the broker answered the last probe, and nothing
        refuses the producer."""
        return self._producer is not None and self._broker_reachable and self.refused is None

    @property
    def delivery_timeout_s(self) -> float:
        """How long a record keeps being retried (after its request was answered 503, too):
        long enough to ride out a broker hiccup, short enough that eduMe's retry usually
        meets a settled delivery (it waits for one still in flight rather than sending
        twice). Every record is reported within this."""
        return max(self._settings.publish_timeout_s * 2, 3.0)

    def config(self) -> dict[str, Any]:
        """The librdkafka settings of this publisher's producers (``producer_config``)."""
        return producer_config(self._settings, client_id=self._client_id,
                               delivery_timeout_s=self.delivery_timeout_s,
                               extra=self._extra_config)

    async def start(self) -> None:
        """Create the producer (it connects in the background) and start the probe."""
        self._stopping = False
        self._loop = asyncio.get_running_loop()
        self._producer = self._new_producer()
        self._prober = self._loop.create_task(self._probe_loop(), name="broker-probe")

    def _new_producer(self) -> Producer:
        config = self.config()
        # Each producer's errors carry its generation: a replaced producer's must not touch
        # the new one. (A number, not the producer: a producer referring to itself through
        # its callback would outlive its last use and keep its connections open.)
        self._generation += 1
        self._answered_at = None
        generation = self._generation
        config["error_cb"] = lambda err: self._on_error(err, generation)
        try:
            return Producer(config)
        except (KafkaException, ValueError, TypeError) as exc:
            raise ConfigurationError(f"cannot configure the Kafka producer: {exc}") from None

    async def wait_started(self, timeout_s: float) -> bool:
        """Wait until the broker answered a probe (used by ``dev`` and tests); False on timeout."""
        try:
            await asyncio.wait_for(self._started.wait(), timeout_s)
        except TimeoutError:
            return False
        return self.ready

    def publish(self, topic: str, key: bytes, value: bytes | None,
                headers: Headers,
                delivery: Delivery, *, partition: int | None = None) -> None:
        """Queue one record; ``delivery`` is settled by the broker's acknowledgement (acks=all)
        or by the producer giving up on it (``message.timeout.ms``). Raises a
        ``PublishError`` when the record cannot even be queued (``RecordRefused`` when the
        producer refuses it for good, say larger than ``message.max.bytes``); ``delivery``
        is then not called. ``partition`` None: murmur2 of the key chooses; ``value`` None writes a
        tombstone."""
        producer = self._producer
        if producer is None:
            raise BrokerUnavailable("the producer is not running")
        try:
            producer.produce(
                topic, value, key, -1 if partition is None else partition,
                on_delivery=delivery, headers=headers,
            )
        except BufferError:
            raise BrokerUnavailable("the producer's queue is full") from None
        except KafkaException as exc:
            error = exc.args[0]
            if error.fatal() or error.code() == KafkaError._FATAL:
                self._replace_soon(producer)
            raise record_error(error, "the producer refused the record") from None
        if not self._polling:
            self._polling = True
            self._loop.call_later(self._poll_interval_s, self._poll)

    def _poll(self) -> None:
        """Serve delivery reports; again after ``poll_interval_s`` while records are out."""
        producer = self._producer
        if producer is None:
            self._polling = False
            return
        self._serve(producer)
        if len(producer):
            self._loop.call_later(self._poll_interval_s, self._poll)
        else:
            self._polling = False

    @property
    def credentials_refused(self) -> str | None:
        """Why the broker refuses the credentials or certificates, if it does (not a refusal
        by the ACLs, which the producer outlives: a replacement is ready once they are
        granted)."""
        return self.refused if self._refused_fatally < 0 else None

    def _serve(self, producer: Producer) -> None:
        """Serve the producer's events; a fatal error goes where ``error_cb``'s would."""
        error = _serve(producer)
        if error is not None:
            self._on_error(error, self._generation if producer is self._producer else -1)

    def _replace_soon(self, producer: Producer) -> None:
        """A fatal error (idempotent producer only: say, the broker lost the producer's
        state) makes a producer refuse every record: start a new one at once."""
        replacing = self._replacer is not None and not self._replacer.done()
        if replacing or self._stopping or self._producer is not producer:
            return
        self._broker_reachable = False
        self._replacer = self._loop.create_task(self._replace(producer), name="producer-replace")

    def _on_error(self, err: KafkaError, generation: int) -> None:
        """librdkafka's global errors (served by ``poll``, so on the loop thread)."""
        producer = self._producer
        reason = None if producer is None else refusal(self._settings.kafka, err.str(),
                                                       err.code())
        if producer is None or generation != self._generation:
            log.debug("replaced producer: %s", err.name())
        elif reason is not None:
            # Refused credentials or certificates: not ready while the broker refuses
            # (librdkafka keeps retrying; a fixed ACL or rotated user lets it in again).
            if reason != self.refused:
                log.error("%s", reason)
            self.refused = reason
            self._broker_reachable = False
            if err.fatal():  # say, an idempotent producer refused its producer id by ACLs
                self._refused_fatally = generation
                self._replace_soon(producer)
        elif err.fatal():
            log.error("the producer failed fatally (%s); replacing it", err.name())
            self._replace_soon(producer)
        elif err.code() == KafkaError._ALL_BROKERS_DOWN:
            if self._broker_reachable:
                log.warning("no broker reachable at %s", self._settings.kafka_bootstrap_servers)
            self._broker_reachable = False
        else:
            log.debug("producer: %s", err.name())

    async def _probe_loop(self) -> None:
        """Ask the cluster for metadata every few seconds: ``ready`` follows the answer. Also
        serves the producer's events (errors, logs) while no record is outstanding."""
        interval = self._settings.ready_probe_interval_s
        while not self._stopping:
            producer = self._producer
            if producer is None:
                return
            started = time.monotonic()
            try:
                await self._loop.run_in_executor(
                    None, producer.list_topics, None, max(interval, 1.0)
                )
                answered = True
            except KafkaException:
                answered = False
            if self._producer is not producer:
                continue
            self._serve(producer)
            if answered != self._broker_reachable:
                if answered:
                    log.info(
                        "broker answering at %s (idempotence %s)",
                        self._settings.kafka_bootstrap_servers,
                        "on" if self._settings.kafka_enable_idempotence else "off",
                    )
                else:
                    log.warning("broker stopped answering metadata requests")
                self._broker_reachable = answered
            if answered and self._answered_at is None:
                self._answered_at = time.monotonic()
            if answered and self.refused is not None and (
                self._refused_fatally < 0
                or (self._generation > self._refused_fatally and self._answered_at is not None
                    and time.monotonic() - self._answered_at > REFUSAL_CLEARED_S)
            ):
                log.info("the broker accepts the producer again")
                self.refused = None
                self._refused_fatally = -1
            if answered and self.refused is None:
                self._started.set()
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    async def _replace(self, old: Producer) -> None:
        # A fatal error that comes back at once (say, no right to write idempotently) must
        # not turn every request into a new producer.
        wait = self._last_replaced + 5.0 - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        self._last_replaced = time.monotonic()
        try:
            self._producer = self._new_producer()
        except ConfigurationError:
            log.exception("cannot start a new producer")
            return
        await self._abandon(old)

    async def _abandon(self, producer: Producer) -> None:
        """Fail whatever a producer still holds: each delivery is settled with an error. A
        record already in flight may have been written all the same; its request is
        answered 503 and eduMe's retry writes it again (consumers absorb the copy by its
        ``edume-event-id``). A report that never comes is covered by the ingress, which
        fails an in-flight entry older than the delivery timeout."""
        with contextlib.suppress(KafkaException):
            producer.purge()
        await _drain(producer, 5.0)
        if not len(producer):
            producer.close()  # its connections close now, not when it is collected

    def mark_unreachable(self) -> None:
        """An acknowledgement did not come in time: not ready until the next probe answers."""
        self._broker_reachable = False

    async def stop(self) -> None:
        """Wait for outstanding records (up to the publish timeout), then close."""
        self._stopping = True
        if self._prober is not None and not self._prober.done():
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prober
        if self._replacer is not None and not self._replacer.done():
            await self._replacer  # drains the producer it replaces
        producer, self._producer = self._producer, None
        self._started.clear()
        self._broker_reachable = False
        if producer is None:
            return
        await _drain(producer, self._settings.publish_timeout_s)
        await self._abandon(producer)


REFUSAL_CLEARED_S = 2.0
"""A producer started after a fatal refusal that has lived this long without one is
accepted (its producer id comes within a few hundred milliseconds of its start)."""


def _serve(producer: Producer) -> KafkaError | None:
    """Run what the producer has queued for the loop: delivery reports, errors, logs. A
    failing callback must not stop the reports of the others. A fatal error comes back:
    confluent-kafka raises it from ``poll`` instead of passing it to ``error_cb`` (seen on
    Apache Kafka: an idempotent producer whose producer id the ACLs refuse)."""
    try:
        producer.poll(0)
    except KafkaException as exc:
        error = exc.args[0] if exc.args else None
        if isinstance(error, KafkaError) and error.fatal():
            return error
        log.exception("serving the producer's events failed")
    except Exception:
        log.exception("serving the producer's events failed")
    return None


async def _drain(producer: Producer, seconds: float) -> None:
    """Serve the producer's reports until it holds nothing more, or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    _serve(producer)
    while len(producer) and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
        _serve(producer)
