"""The Faust app: topics, tables, agents and the query API, wired to the processors.

Agents are thin: each takes a batch of events (``take_events``), hands them to its
processor as plain records, writes what the processor answers, and returns; Faust then
acknowledges the batch. A batch's writes happen in this order, each acknowledged by the
broker before the next starts:

1. records the batch caused (dead letters, re-keyed records, mandatory completions);
2. the new states, to the tables' changelogs (then into the tables' memory);
3. the batch's input offsets, acknowledged to Faust, which commits them.

A worker killed anywhere in between replays the batch after its restart: the states in
the changelog already hold the events applied (each keeps its event ids), so the replay
changes nothing that was written, writes what was not, and repeats at most the records
of step 1 that were written before the kill, byte for byte, with the same
``edume-event-id``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import faust
from faust.types import TP

from streams import topics
from streams.kafka_clients import faust_credentials
from streams.publisher import Publisher
from streams.settings import Settings, parse_bootstrap
from streams.worker.metrics import WorkerMetrics
from streams.worker.processing import (
    CATALOG_BUILD_WAIT_S,
    CourseProcessor,
    LearnerProcessor,
    LinkProcessor,
    Step,
    check_policies,
)
from streams.worker.records import InRecord, Layout, OutRecord, partition_for
from streams.worker.replica import Replica
from streams.worker.sink import Sink
from streams.worker.tables import StateTable
from streams.worker.transport import WorkerApp

log = logging.getLogger(__name__)

APP_NAME = "edume-streams"


def _raw_topic(app: faust.App, *names: str, **options: Any) -> Any:
    return app.topic(
        *names, key_type=bytes, value_type=bytes, key_serializer="raw",
        value_serializer="raw", **options,
    )


def last_per_partition(records: Sequence[OutRecord]) -> tuple[list[OutRecord], list[OutRecord]]:
    """``records`` split into each partition's last record and all the others, in order."""
    last: dict[int | None, int] = {r.partition: i for i, r in enumerate(records)}
    tails = set(last.values())
    return ([r for i, r in enumerate(records) if i not in tails],
            [r for i, r in enumerate(records) if i in tails])


def in_record(message: Any) -> InRecord:
    """A Faust message as the processors take it."""
    return InRecord(
        message.topic,
        message.partition,
        message.offset,
        message.key,
        message.value,
        message.headers or (),
        int(message.timestamp * 1000),
    )


class Worker:
    """One worker process: the Faust app and what it writes with."""

    def __init__(self, settings: Settings, layout: Layout) -> None:
        self.settings = settings
        self.layout = layout
        self.publisher = Publisher(settings, client_id=f"{APP_NAME}-worker")
        self.sink = Sink(self.publisher)
        self.replica = Replica(settings.kafka, layout)
        self.app = self._new_app()
        self.catalog = self._table("catalog", topics.CATALOG_CHANGELOG)
        self.progress = self._table("progress", topics.PROGRESS_CHANGELOG)
        self.links_table = self._table("links", topics.LINKS_CHANGELOG)
        self.courses = CourseProcessor(layout)
        self.learners = LearnerProcessor(layout, self.replica, settings.reminder_after_s)
        settings.require_link_secret()
        self.links = LinkProcessor(layout, self.replica, base_url=settings.link_base_url,
                                   secret=str(settings.link_secret))
        self._locks: dict[str, asyncio.Lock] = {}
        """One per table: a batch and a reminder firing never change a key's state at once."""
        self._reminder_index_generation = -1
        self._done_offset: dict[tuple[str, int], int] = {}
        """Per input partition, the offset after the last record processed and written."""
        self._input_topics = {
            layout.name(t) for t in (topics.COURSE_EVENTS, topics.COURSE_REKEY,
                                     topics.LEARNER_EVENTS, topics.LEARNER_REKEY,
                                     topics.TRAINING_POLICIES, topics.LINK_REQUESTS,
                                     topics.LINK_REKEY, topics.LINK_ISSUE)
        }
        self.metrics = WorkerMetrics(self)
        self._next_offset: dict[tuple[str, int], int] = {}
        self._offsets_generation = -1
        self._reseek: asyncio.Future[None] | None = None
        self._define_agents()
        from streams.worker.web import add_views

        add_views(self)

    @property
    def url(self) -> str:
        return str(self.app.conf.canonical_url).rstrip("/")

    def _new_app(self) -> faust.App:
        s = self.settings
        name = self.layout.name
        app = WorkerApp(
            f"{s.topic_prefix}{APP_NAME}",
            s,
            frozenset(name(t) for t in (topics.COURSE_EVENTS, topics.COURSE_REKEY,
                                        topics.LEARNER_EVENTS, topics.LEARNER_REKEY)),
            broker=[f"kafka://{host}:{port}" for host, port in
                    parse_bootstrap(s.kafka_bootstrap_servers)],
            broker_credentials=faust_credentials(s.kafka),
            store="memory://",
            autodiscover=False,
            web_enabled=True,
            web_bind=s.worker_web_host,
            web_port=s.worker_web_port,
            web_host=s.worker_web_host,
            canonical_url=s.worker_url or f"http://{s.worker_web_host}:{s.worker_web_port}",
            web_router_enabled=False,
            web_tables_enabled=False,
            web_graph_enabled=False,
            web_stats_enabled=False,
            broker_session_timeout=s.worker_session_timeout_s,
            consumer_group_instance_id=s.worker_instance_id,
            broker_heartbeat_interval=max(0.5, s.worker_session_timeout_s / 5),
            broker_request_timeout=max(40.0, s.worker_session_timeout_s * 2),
            broker_commit_interval=s.worker_commit_interval_s,
            consumer_auto_offset_reset="earliest",
            topic_replication_factor=s.topic_replication_factor,
            topic_allow_declare=True,
            table_standby_replicas=1,
            stream_wait_empty=True,
            producer_acks=-1,
        )
        return app

    def _table(self, name: str, changelog: str) -> StateTable:
        topic_name = self.layout.name(changelog)
        partitions = self.layout.partitions[topic_name]
        changelog_topic = _raw_topic(
            self.app, topic_name, partitions=partitions, compacting=True, deleting=False,
            internal=True,
        )
        # bytes in and out (Faust's "raw" codec): a key is the Kafka key as written, so
        # recovery gives back exactly what the worker keeps.
        table = self.app.Table(
            name, key_type=bytes, value_type=bytes, partitions=partitions,
            changelog_topic=changelog_topic,
        )
        return StateTable(table, topic_name)

    def _define_agents(self) -> None:
        app, name = self.app, self.layout.name
        batch_max = self.settings.worker_batch_max
        within = self.settings.worker_batch_within_s

        def agent(
            agent_name: str, source: Any, handle: Callable[[Sequence[Any]], Awaitable[None]]
        ) -> None:
            async def consume(stream: Any) -> None:
                async for events in stream.take_events(batch_max, within):
                    await handle(events)

            app.agent(source, name=agent_name)(consume)

        agent(
            "courses",
            _raw_topic(app, name(topics.COURSE_EVENTS), name(topics.COURSE_REKEY)),
            lambda events: self._keyed_batch(self.courses, self.catalog, events),
        )
        agent(
            "learners",
            _raw_topic(app, name(topics.LEARNER_EVENTS), name(topics.LEARNER_REKEY)),
            lambda events: self._keyed_batch(self.learners, self.progress, events),
        )
        agent("policies", _raw_topic(app, name(topics.TRAINING_POLICIES)), self._policy_batch)
        agent(
            "links",
            _raw_topic(app, name(topics.LINK_REQUESTS), name(topics.LINK_REKEY),
                       name(topics.LINK_ISSUE)),
            lambda events: self._keyed_batch(self.links, self.links_table, events),
        )
        interval = min(1.0, max(0.05, self.settings.reminder_after_s / 10))
        app.timer(interval, name="reminders")(self._fire_reminders)

    def _lock(self, table: StateTable) -> asyncio.Lock:
        lock = self._locks.get(table.name)
        if lock is None:
            lock = self._locks[table.name] = asyncio.Lock()
        return lock

    async def _keyed_batch(
        self,
        processor: CourseProcessor | LearnerProcessor | LinkProcessor,
        table: StateTable,
        events: Any,
    ) -> None:
        await self.replica.ready.wait()
        started = time.perf_counter()
        records = [in_record(e.message) for e in events]
        self._check_offsets(records)
        if isinstance(processor, LinkProcessor):
            await self._wait_for_catalog(processor, records)
        async with self._lock(table):
            step = processor.process(records, table.get)
            await self._commit(step, table)
        done = self._done_offset
        for record in records:
            tp_key = (record.topic, record.partition)
            done[tp_key] = max(done.get(tp_key, 0), record.offset + 1)
        self.metrics.batch_done(step, len(events), time.perf_counter() - started)

    async def _wait_for_catalog(self, processor: LinkProcessor,
                                records: Sequence[InRecord]) -> None:
        """Hold a batch of links the catalog would refuse until the catalog can be trusted:
        a young course link waits up to ``CATALOG_GRACE_S`` for a course event that may be
        a moment behind, and any course link up to ``CATALOG_BUILD_WAIT_S`` while the
        worker's copy of the catalog is behind the course topics (the copy is read by its
        own consumer, so this wait never holds up the reading it waits for). Polled: the
        wait ends on a catalog change or on the clock."""
        build_deadline = time.monotonic() + CATALOG_BUILD_WAIT_S
        while True:
            now_ms = int(time.time() * 1000)
            young = processor.waiting_on_catalog(records, now_ms)
            building = (time.monotonic() < build_deadline and not self.replica.caught_up()
                        and processor.waiting_on_catalog(records, now_ms, any_age=True))
            if not (young or building):
                return
            await asyncio.sleep(0.1)

    async def _fire_reminders(self) -> None:
        """Fire the reminders due on this worker's learner partitions (Faust runs this on
        every worker, every ``interval``). The timers are in the learners' states, so they
        survive restarts and move with their partition; the index of when each is due is
        rebuilt from the table after every rebalance."""
        if not self.ready():
            return
        table, learners = self.progress, self.learners
        if self._reminder_index_generation != self.app.rebalancing_count:
            learners.index_reminders(table.items())
            self._reminder_index_generation = self.app.rebalancing_count
        now_us = time.time_ns() // 1000
        partitions = self.layout.count(topics.LEARNER_EVENTS)
        due_by_partition: dict[int, list[str]] = {}
        for key, at in learners.due.items():
            if at <= now_us:
                due_by_partition.setdefault(partition_for(key.encode(), partitions),
                                            []).append(key)
        owned = self._active_partitions(self.layout.name(topics.LEARNER_EVENTS))
        due = [key for p, keys in due_by_partition.items()
               if p in owned and self._caught_up(p) for key in keys]
        if not due:
            return
        async with self._lock(table):
            step = learners.fire_reminders(due, table.get, now_us)
            await self._commit(step, table)
        self.metrics.batch_done(step, 0, 0.0)

    def _caught_up(self, partition: int) -> bool:
        """Whether this worker has applied everything its learner partition held when last
        fetched: a reminder fires only then, so a completion already on the topic (sent
        while the worker was down, say) cancels it rather than arriving after it. Judged by
        the high watermark of the fetch responses (right on the embedded broker too, unlike
        its ListOffsets answer) against the offsets processed or committed."""
        consumer: Any = self.app.consumer  # _committed_offset: faust keeps no public one
        for name in (topics.LEARNER_EVENTS, topics.LEARNER_REKEY):
            tp = TP(self.layout.name(name), partition)
            try:
                highwater = consumer.highwater(tp)
            except Exception:  # not assigned (any more), or the consumer is stopping
                return False
            if highwater is None:
                return False
            done = max(self._done_offset.get((tp.topic, partition), 0),
                       consumer._committed_offset.get(tp) or 0)
            if done < highwater:
                return False
        return True

    def _active_partitions(self, topic: str) -> set[int]:
        return {tp.partition for tp in self.app.consumer.assignment() if tp.topic == topic}

    async def _commit(self, step: Step, table: StateTable) -> None:
        """Write a step: its records, then the new states (changelog, then memory)."""
        await self._write(step)
        if step.states:
            changelog = [table.changelog(k, p, v) for k, (p, v) in step.states.items()]
            if self.settings.kafka_embedded_broker:
                # The embedded broker answers a partition's end offset with the start of
                # its last batch plus one, and Faust's recovery reads a changelog up to
                # that offset. Each partition's last record goes alone, once the others
                # are written: the last batch of every changelog partition holds one
                # record, and recovery reads it all. A kill between the two writes leaves
                # an end offset short of the batch's tail, but the batch is not yet
                # acknowledged: its input comes again and writes the same states again.
                body, changelog = last_per_partition(changelog)
                await self.sink.write(body)
            await self.sink.write(changelog)
            for key, (partition, value) in step.states.items():
                table.put(key, partition, value)

    async def _policy_batch(self, events: Any) -> None:
        records = [in_record(e.message) for e in events]
        self._check_offsets(records)
        step = check_policies(records, self.layout)
        await self._write(step)
        self.metrics.batch_done(step, len(events), 0.0)

    def _check_offsets(self, records: Sequence[InRecord]) -> None:
        """Notice input records Faust's consumer did not deliver, and have them delivered.

        A partition's offsets come one after another (the event topics are neither
        compacted nor transactional), so a jump forward between two records of one
        rebalance generation means records fetched and never handed to an agent (Faust's
        consumer drops the rest of a fetched batch in several places without seeking
        back). They cannot be committed over (``transport._Consumer._new_offset``), so a
        seek back to the committed offsets brings them again; the records delivered twice
        change nothing."""
        if self._offsets_generation != self.app.rebalancing_count:
            self._offsets_generation = self.app.rebalancing_count
            self._next_offset.clear()
            self._done_offset.clear()
        skipped = False
        for record in records:
            tp = (record.topic, record.partition)
            expected = self._next_offset.get(tp)
            if expected is not None and record.offset > expected:
                skipped = True
                self.metrics.skipped.inc(record.offset - expected)
                log.warning("input records not delivered on %s/%d: offsets %d to %d; "
                            "reading again from the committed offsets", record.topic,
                            record.partition, expected, record.offset - 1)
            self._next_offset[tp] = record.offset + 1
        if skipped and (self._reseek is None or self._reseek.done()):
            self._next_offset.clear()
            self._reseek = asyncio.ensure_future(self.app.consumer.perform_seek())

    async def _write(self, step: Step) -> None:
        if step.outputs:
            await self.sink.write(step.outputs)

    async def start_io(self) -> None:
        """Start what the agents write and read with (before they get input)."""
        await self.publisher.start()
        self.replica.start()

    async def stop_io(self) -> None:
        await self.replica.stop()
        await self.publisher.stop()

    def not_ready_reason(self) -> str | None:
        """Why the worker is not ready yet, or None: tables recovered, the catalog and
        policies read, the producer connected, partitions assigned and consumed."""
        app = self.app
        tables: Any = app.tables  # faust's TableManager (the type says less)
        if not self.publisher.ready:
            return "the broker does not answer"
        if not self.replica.ready.is_set():
            return "reading the catalog and policies"
        if app.rebalancing or not tables.recovery.completed.is_set():
            return "rebalancing and recovering tables"
        if not app.consumer.assignment():
            return "no partitions assigned yet"
        return None

    def ready(self) -> bool:
        return self.not_ready_reason() is None

    def recovery_seconds(self) -> float:
        """How long the last recovery of the tables took (0 before one finished)."""
        tables: Any = self.app.tables
        recovery = tables.recovery
        started = getattr(recovery, "_recovery_started_at", None)
        ended = getattr(recovery, "_recovery_ended_at", None)
        return float(ended - started) if started and ended and ended >= started else 0.0

    def lag(self) -> list[tuple[str, int, int]]:
        """(topic, partition, records not read yet) per assigned input partition."""
        consumer: Any = self.app.consumer  # _read_offset: faust keeps no public position
        inputs = self._input_topics
        out = []
        for tp in consumer.assignment():
            if tp.topic not in inputs:
                continue
            try:
                highwater = consumer.highwater(tp)
            except Exception as exc:  # the consumer is starting or stopping
                log.debug("no high watermark for %s: %r", tp, exc)
                continue
            read = consumer._read_offset.get(tp)
            if highwater is not None:
                out.append((tp.topic, tp.partition, max(0, highwater - (read or 0) - 1)))
        return out
