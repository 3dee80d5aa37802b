"""Every worker's copy of the whole catalog and of every training policy.

A learner's events need courses and policies that live under other keys (course events
and policies are keyed by courseId, on 4 partitions; learners by userId, on 8), and that
other producers may partition differently. Both are small (a record per course), so every
worker reads all of them, rather than re-partitioning the learner stream by course:

- the catalog table's changelog (compacted, written by whichever worker owns the course);
- the course events themselves (``edume.course.events`` and its re-keying topic) and the
  imports of courses that predate the webhooks (``catalog.imports``), folded with the same
  pure reducer: a worker's copy does not wait for the course agent (which
  may be another worker, or this one blocked behind a batch of links waiting for the
  catalog), and ``caught_up`` says when the copy holds everything the topics held at the
  last fetch. Changelog states and events merge: an entry is a join of its events'
  versions (``merge_courses``), so the copy holds what either has seen;
- ``training.policies`` (compacted, written by ``edume-streams policy`` or any client);
- ``privacy.erasures`` (compacted, written by ``edume-streams forget`` and by the workers'
  derived erasures): the learners erased. An erasure read once the copy is ready is handed
  to ``on_erasure`` (the owners act on it); those read before are the worker's to sweep
  once its tables are recovered.

A plain consumer outside the consumer group reads every partition of both from the
beginning and follows them; ``ready`` is set once it has read what the topics held when
it started. Faust's GlobalTable would do the same job, but has known faults with several
workers (a worker's copy stops short: faust-streaming#283); this is a few dozen lines
whose behaviour the tests pin.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import cast

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from schemas import WEBHOOK_ADAPTER
from streams.core import headers, topics
from streams.core.catalog_imports import read_import
from streams.core.clock import MAX_CLOCK_SKEW_S, future_skew
from streams.core.erasures import Erasure, ErasureBook, parse_erasure_record
from streams.core.records import InRecord, Layout, received_at_us
from streams.core.state.catalog import (
    CourseEntry,
    CourseEvent,
    apply_course_event,
    apply_course_import,
    merge_courses,
)
from streams.core.state.codec import decode_course
from streams.core.state.common import UnusableEvent, meta_of
from streams.core.state.policies import Policy, PolicyBook, parse_policy_record
from streams.core.webhooks import Webhook, event_id_of
from streams.kafka.admin import drop_reached
from streams.kafka.clients import KafkaConnection, aio_consumer
from streams.worker.health import Backoff, supervise

log = logging.getLogger(__name__)


class Replica:
    """The catalog and the policies, followed from their topics."""

    def __init__(self, kafka: KafkaConnection, layout: Layout, *,
                 retry_s: float = 1.0, max_clock_skew_s: float = MAX_CLOCK_SKEW_S) -> None:
        self.kafka = kafka
        self.policies = PolicyBook()
        self.erasures = ErasureBook()
        self.on_erasure: Callable[[Erasure], None] = lambda _erasure: None
        self.on_policy: Callable[[int, Policy | None], None] = lambda _course, _policy: None
        """Called with each policy record read once the copy is ready."""
        self.catalog: dict[int, CourseEntry] = {}
        self.ready = asyncio.Event()
        self._catalog_topic = layout.name(topics.CATALOG_CHANGELOG)
        self._policy_topic = layout.name(topics.TRAINING_POLICIES)
        self._erasure_topic = layout.name(topics.PRIVACY_ERASURES)
        self._event_topics = (layout.name(topics.COURSE_EVENTS),
                              layout.name(topics.COURSE_REKEY))
        self._import_topic = layout.name(topics.CATALOG_IMPORTS)
        self._layout = layout
        self._retry_s = retry_s
        self._max_skew_s = max_clock_skew_s
        self._task: asyncio.Task[None] | None = None
        self.records_read = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._next: dict[TopicPartition, int] = {}
        """Per partition followed, the offset after the last record taken (applied, or
        failed to apply): where the next reading starts."""
        self._at_end = False
        """Whether, after the last fetch, every partition's position was at its high
        watermark (see ``caught_up``)."""

    def start(self, restarted: Callable[[str], None] = lambda _task: None) -> None:
        """Start reading. The reader outlives its failures (``supervise``): a broker that
        does not answer, or a record it cannot apply, ends one reading, which is counted
        through ``restarted`` and started again after a pause, where the last one
        stopped (past the record it failed on); the copy is kept."""
        reading = supervise(
            "replica", self._read, restarted=restarted,
            backoff=Backoff(self._retry_s, max(self._retry_s, 30.0)), quiet=(KafkaError, OSError),
        )
        self._task = asyncio.get_running_loop().create_task(reading, name="replica")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _read(self) -> None:
        """One reading: a new consumer, from where the last one stopped (from the beginning
        the first time), until it fails."""
        consumer = aio_consumer(
            self.kafka,
            group_id=None,
            isolation_level="read_committed",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
        )
        try:
            await consumer.start()
            self._consumer = consumer
            await self._follow(consumer)
        finally:
            self._consumer = None
            self._at_end = False
            await consumer.stop()

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        tps = [
            TopicPartition(topic, p)
            for topic in (self._catalog_topic, self._policy_topic, self._erasure_topic,
                          *self._event_topics, self._import_topic)
            for p in range(self._layout.partitions[topic])
        ]
        consumer.assign(tps)
        fresh = [tp for tp in tps if tp not in self._next]
        if fresh:
            await consumer.seek_to_beginning(*fresh)
        for tp, offset in self._next.items():
            consumer.seek(tp, offset)
        # What to read before answering: the ends as of now. (Read from a partition's end
        # offset, which the embedded broker reports right when every batch holds one
        # record: the workers write the changelog that way there, and a policy is one
        # record per request.)
        targets = {tp: end for tp, end in (await consumer.end_offsets(tps)).items() if end}
        while True:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for tp, records in batch.items():
                for record in records:
                    # Past the record before it is applied: a record that cannot be applied
                    # fails this reading, and the next one starts after it.
                    self._next[tp] = record.offset + 1
                    self.records_read += 1
                    if tp.topic in self._event_topics:
                        self._apply_event(record.value, record.headers, record.timestamp)
                    elif tp.topic == self._import_topic:
                        self._apply_import(InRecord(
                            tp.topic, tp.partition, record.offset, record.key, record.value,
                            record.headers, record.timestamp))
                    else:
                        self._apply(tp, record.key, record.value, record.timestamp,
                                    record.offset)
            await drop_reached(consumer, targets)
            if not targets and not self.ready.is_set():
                log.info("catalog (%d courses) and policies (%d) read",
                         len(self.catalog), len(self.policies))
                self.ready.set()
            self._at_end = await _at_highwater(consumer)

    def _apply(self, tp: TopicPartition, key: bytes | None, value: bytes | None,
               timestamp_ms: int, offset: int) -> None:
        if tp.topic == self._policy_topic:
            try:
                course_id, policy = parse_policy_record(key, value)
            except UnusableEvent:
                return  # the partition's owner sends it to streams.dlq
            if (self.policies.apply(course_id, policy, (timestamp_ms, tp.partition, offset))
                    and self.ready.is_set()):
                self.on_policy(course_id, policy)
        elif tp.topic == self._erasure_topic:
            try:
                erasure = parse_erasure_record(key, value)
            except UnusableEvent as exc:
                log.warning("%s/%d/%d is not an erasure: %s", tp.topic, tp.partition, offset, exc)
                return
            if erasure is not None and self.erasures.apply(erasure) and self.ready.is_set():
                self.on_erasure(erasure)
        elif value is not None and key is not None:
            entry = decode_course(value)
            held = self.catalog.get(entry.course_id)
            self.catalog[entry.course_id] = entry if held is None else merge_courses(held, entry)

    def _apply_event(self, value: bytes | None, record_headers: Sequence[tuple[str, bytes]],
                     timestamp_ms: int) -> None:
        """A course event into the copy (an unusable one, or one stamped too far after its
        receipt, is the course agent's to dead-letter; one under another key is applied here
        by the course it names)."""
        if value is None:
            return
        try:
            event = WEBHOOK_ADAPTER.validate_json(value)
            if event.FAMILY != "course":
                return
            given = dict(record_headers).get(headers.EVENT_ID)
            event_id = given.decode() if given else event_id_of(value)
            meta = meta_of(event_id, event.timestamp)
        except (ValidationError, UnusableEvent, UnicodeDecodeError):
            return
        received_us = received_at_us(record_headers, timestamp_ms)
        if received_us is not None and future_skew(meta.ts, received_us, self._max_skew_s):
            return
        course_id = int(event.routing_id)
        entry = self.catalog.get(course_id)
        if entry is None:
            entry = self.catalog[course_id] = CourseEntry(course_id)
        apply_course_event(entry, cast(CourseEvent, event), meta)

    def _apply_import(self, record: InRecord) -> None:
        """An import into the copy, when the course agent would fold it (one it dead-letters
        or ignores is left out here too)."""
        read = read_import(record, self._layout, max_skew_s=self._max_skew_s)
        if not isinstance(read, Webhook):
            return
        course_id = int(read.key)
        entry = self.catalog.get(course_id)
        if entry is None:
            entry = self.catalog[course_id] = CourseEntry(course_id)
        apply_course_import(entry, read.event, read.meta)

    def caught_up(self) -> bool:
        """Whether the copy holds everything the followed topics held at the last fetch:
        every partition's position has reached the high watermark of the fetch responses
        (which the embedded broker answers right, unlike its ListOffsets). By position,
        not by the last record seen: a partition emptied by retention, or ending in a
        transaction marker or a tombstone compaction removed, has no record at its end."""
        return self._consumer is not None and self.ready.is_set() and self._at_end


async def _at_highwater(consumer: AIOKafkaConsumer) -> bool:
    """Whether every assigned partition's position has reached the high watermark of its
    last fetch response (False while a partition has had none)."""
    ends: dict[TopicPartition, int] = {}
    for tp in consumer.assignment():
        highwater = consumer.highwater(tp)
        if highwater is None:
            return False
        ends[tp] = highwater
    await drop_reached(consumer, ends)
    return not ends
