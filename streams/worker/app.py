"""The Faust app: topics, tables, agents and the query API, wired to the processors.

Agents are thin: each takes a batch of events (``take_events``), hands them to its
processor as plain records, writes what the processor answers, and returns; Faust then
acknowledges the batch. A batch's writes happen in this order, each acknowledged by the
broker before the next starts:

1. records the batch caused (dead letters, re-keyed records, mandatory completions);
2. the new states, to the tables' changelogs (then into the tables' memory);
3. the batch's input offsets, acknowledged to Faust, which commits them.

A worker killed anywhere in between replays the batch after its restart: the states in
the changelog already hold the events applied (their merge rules are idempotent, and the
batch's ids are among the latest each state remembers), so the replay changes nothing
that was written, writes what was not, and repeats at most the records of step 1 that
were written before the kill, byte for byte, with the same ``edume-event-id``.

The parts: ``processing`` and ``links`` (batches in, steps out), ``writes`` (a step
written, refusals handled), ``timer`` (the reminder timer), ``positions`` (lag, input
waiting), ``health`` (supervised tasks, the stall rule), ``replica``, ``tables``,
``transport`` (the consumer's guard), ``web`` and ``metrics``.

A write the broker fails for now (a broker down, a leader moving) is made again until it
succeeds (``streams.worker.sink``). A record it refuses for good (too large, not allowed)
would stall the partition for ever on every worker that takes it over, so the input
record that caused it goes to ``streams.dlq`` instead, with the other input records of its
key in the batch, and that key's new state is not kept (``streams.worker.writes``); the
batch is then acknowledged as usual. A batch whose handling raises is handled again after a pause
(``Worker._until_handled``); background work that raises is started again the same way
(``streams.worker.health``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import faust

from streams.core import topics
from streams.core.erasures import Erasure
from streams.core.records import InRecord, Layout
from streams.kafka.clients import faust_credentials
from streams.kafka.publisher import Publisher
from streams.settings import Settings, parse_bootstrap
from streams.worker import positions
from streams.worker.announcer import Announcer
from streams.worker.erasing import Eraser, Owned
from streams.worker.health import Backoff, RecentRefusals, StallDetector, supervise
from streams.worker.links import CATALOG_BUILD_WAIT_S, CATALOG_GRACE_S, LinkProcessor
from streams.worker.metrics import WorkerMetrics
from streams.worker.processing import CourseProcessor, LearnerProcessor, check_policies
from streams.worker.replica import Replica
from streams.worker.sink import Sink
from streams.worker.tables import StateTable
from streams.worker.timer import ReminderTimer
from streams.worker.transport import WorkerApp
from streams.worker.writes import Writer

log = logging.getLogger(__name__)

APP_NAME = "edume-streams"

INPUT_TOPICS = (topics.COURSE_EVENTS, topics.COURSE_REKEY, topics.CATALOG_IMPORTS,
                topics.LEARNER_EVENTS, topics.LEARNER_REKEY, topics.TRAINING_POLICIES,
                topics.LINK_REQUESTS, topics.LINK_REKEY, topics.LINK_ISSUE)
"""The topics the agents read: each record reaches an agent, and commits never pass one
not processed (the consumer's guard, ``streams.worker.transport``)."""

WORKER_PRODUCER_CONFIG: dict[str, Any] = {
    "message.max.bytes": int(topics.STATE_MAX_MESSAGE_BYTES),
}
"""librdkafka settings of the workers' producer beyond the shared ones: records up to the
size of the largest webhook (dead letters and re-keyed copies of one) and of the largest
state the changelog topics take, which are created with the same ``max.message.bytes``.
A larger record is refused by the producer itself, for good (see ``streams.worker.writes``)."""

NO_PARTITIONS = "no partitions assigned yet"
UPKEEP_EVERY_S = 0.2
"""How often the erasures and policies read lately are acted on (``Worker._upkeep``)."""
SETTLE_EVERY_S = 10.0
"""How often the table values that stayed fresh past their age are deflated."""
"""``/readyz``'s reason while the worker holds no partition."""

CONSUMER_MAX_FETCH_BYTES = 256 * 1024
"""What one fetch brings per partition (Faust's default is 1 MiB). A worker reading a
backlog holds a fetch of every input and changelog partition decoded into records; at
1 MiB that was the largest thing in memory after the tables (tracemalloc, onboarding
benchmark), and 256 KiB took 20 MB off the peak for 100,000 learners. A larger record
still comes (Apache Kafka returns a first record past the limit, KIP-74; so does the
embedded broker, checked with 400 KB); a batch takes at most ``WORKER_BATCH_MAX``
records anyway."""
def _raw_topic(app: faust.App, *names: str, **options: Any) -> Any:
    return app.topic(
        *names, key_type=bytes, value_type=bytes, key_serializer="raw",
        value_serializer="raw", **options,
    )


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


async def wait_for_catalog(
    processor: LinkProcessor,
    records: Sequence[InRecord],
    *,
    caught_up: Callable[[], bool],
    interrupted: Callable[[], bool],
    clock: Callable[[], float] = time.monotonic,
    wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    poll_s: float = 0.1,
) -> str:
    """Hold a batch of links the catalog would refuse until the catalog can be trusted: a
    young course link (``record_age_ms`` at most ``CATALOG_GRACE_S``) waits up to
    ``CATALOG_GRACE_S`` for a course event that may be a moment behind, and any course link
    up to ``CATALOG_BUILD_WAIT_S`` while the worker's copy of the catalog is behind the
    course topics (``caught_up`` False; the copy is read by its own consumer, so this wait
    never holds up the reading it waits for). Both are counted from when the batch began
    waiting, so no batch waits longer than ``CATALOG_BUILD_WAIT_S`` whatever its records'
    timestamps. Polled: the wait ends on a catalog change, on the clock, or as soon as
    ``interrupted`` answers True (a rebalance: Faust's waits for the batch in hand). Answers
    why it ended: ``decided`` (nothing left to wait for), ``deadline`` or ``interrupted``."""
    started = clock()
    while True:
        waited = clock() - started
        now_ms = wall_ms()
        young = processor.waiting_on_catalog(records, now_ms)
        behind = not caught_up() and processor.waiting_on_catalog(records, now_ms,
                                                                  any_age=True)
        if not ((young and waited < CATALOG_GRACE_S)
                or (behind and waited < CATALOG_BUILD_WAIT_S)):
            return "deadline" if young or behind else "decided"
        if interrupted():
            return "interrupted"
        await sleep(poll_s)


class Worker:
    """One worker process: the Faust app and what it writes with."""

    def __init__(self, settings: Settings, layout: Layout, data_dir: str) -> None:
        self.settings = settings
        self.layout = layout
        self.data_dir = data_dir
        """Faust's data directory (``WORKER_DATA_DIR``, or a temporary one: see ``run``)."""
        self.publisher = Publisher(settings, client_id=f"{APP_NAME}-worker",
                                   extra_config=WORKER_PRODUCER_CONFIG)
        self.sink = Sink(self.publisher, failed=self._write_failed)
        self.refusals = RecentRefusals()
        """Records refused for good lately: ``/readyz`` shows them as ``degraded``."""
        self.stall = StallDetector(settings.worker_stall_timeout_s)
        """The liveness rule behind ``/healthz``, fed by the ``stall-check`` timer."""
        self._processed = 0
        """Input records processed (batches finished): what the stall rule sees move."""
        self._batches_running = 0
        self._input_was_waiting = False
        self.replica = Replica(settings.kafka, layout,
                               max_clock_skew_s=settings.max_clock_skew_s)
        self.app = self._new_app()
        self.catalog = self._table("catalog", topics.CATALOG_CHANGELOG)
        self.progress = self._table("progress", topics.PROGRESS_CHANGELOG)
        self.links_table = self._table("links", topics.LINKS_CHANGELOG)
        skew = settings.max_clock_skew_s
        self.courses = CourseProcessor(layout, max_clock_skew_s=skew)
        self.learners = LearnerProcessor(layout, self.replica, settings.reminder_after_s,
                                         max_clock_skew_s=skew)
        settings.require_link_secret()
        self.links = LinkProcessor(layout, self.replica, base_url=settings.link_base_url,
                                   secret=str(settings.link_secret))
        self._locks: dict[str, asyncio.Lock] = {}
        """One per table: a batch and a reminder firing never change a key's state at once."""
        self._done_offset: dict[tuple[str, int], int] = {}
        """Per input partition, the offset after the last record processed and written."""
        self._input_topics = {layout.name(t) for t in INPUT_TOPICS}
        self.metrics = WorkerMetrics(self, self.app.sensors)
        self.writer = Writer(self.sink, layout.name(topics.STREAMS_DLQ), self.refusals,
                             self.metrics, embedded_broker=settings.kafka_embedded_broker)
        self.app.on_input_redelivered = self.metrics.skipped.inc
        self._done_generation = -1
        self.reminders = ReminderTimer(
            self.app, layout, self.learners, self.progress, self._lock(self.progress),
            self.writer.commit, self._done_offset, batch_max=settings.worker_batch_max,
            ready=self.ready, batch_done=self.metrics.batch_done)
        events_topic, requests_topic = (layout.name(topics.LEARNER_EVENTS),
                                        layout.name(topics.LINK_REQUESTS))
        self.eraser = Eraser(
            layout, self.replica.erasures, self.progress, self.links_table, self._lock,
            self.sink, Owned(progress=lambda p: self._assigned(events_topic, p),
                             links=lambda p: self._assigned(requests_topic, p)),
            forget_due=lambda key: self.learners.restore_due(key, None))
        self._arrived: deque[Erasure] = deque()
        """Erasures read while the worker runs, to apply (the ``erasures`` timer)."""
        self._swept_generation = -1
        self.replica.on_erasure = self._arrived.append
        self.announcer = Announcer(
            self.learners, self.progress, self._lock(self.progress), self.writer.commit,
            owned=lambda p: self._assigned(events_topic, p), batch_done=self.metrics.batch_done)
        self.replica.on_policy = self.announcer.policy_changed
        self._define_agents()
        from streams.worker.web import add_views

        add_views(self)

    @property
    def url(self) -> str:
        return str(self.app.conf.canonical_url).rstrip("/")

    def _new_app(self) -> WorkerApp:
        s = self.settings
        name = self.layout.name
        app = WorkerApp(
            f"{s.topic_prefix}{APP_NAME}",
            s,
            frozenset(name(t) for t in INPUT_TOPICS),
            broker=[f"kafka://{host}:{port}" for host, port in
                    parse_bootstrap(s.kafka_bootstrap_servers)],
            broker_credentials=faust_credentials(s.kafka),
            store="memory://",
            # Faust creates (and leaves empty: the tables are in memory) a data directory;
            # by default in the working directory. Braces would be read as a template.
            datadir=self.data_dir.replace("{", "{{").replace("}", "}}"),
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
            consumer_max_fetch_size=CONSUMER_MAX_FETCH_BYTES,
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
            internal=True, config={"max.message.bytes": topics.STATE_MAX_MESSAGE_BYTES},
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
                    await self._until_handled(agent_name, handle, events)

            app.agent(source, name=agent_name)(consume)

        agent(
            "courses",
            _raw_topic(app, name(topics.COURSE_EVENTS), name(topics.COURSE_REKEY),
                       name(topics.CATALOG_IMPORTS)),
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
        app.timer(interval, name="reminders")(self._timer_task("reminders",
                                                               self.reminders.fire))
        app.timer(UPKEEP_EVERY_S, name="upkeep")(self._timer_task("upkeep", self._upkeep))
        app.timer(SETTLE_EVERY_S, name="settle")(self._timer_task("settle", self._settle))
        check_every = max(0.2, min(5.0, self.settings.worker_stall_timeout_s / 10))
        app.timer(check_every, name="stall-check")(self._timer_task("stall-check",
                                                                    self._check_stall))

    async def _until_handled(self, task: str, handle: Callable[[Sequence[Any]], Awaitable[None]],
                             events: Sequence[Any]) -> None:
        """Handle a batch until it succeeds. A batch that raises is logged, counted
        (``edume_worker_task_restarts_total{task}``) and handled again after a pause that
        doubles up to 30 s: Faust acknowledges a batch however its handler ends, so giving
        up would lose it. Handling it again is safe (what was written is written again,
        the same; the states drop what they already hold), and a batch that never
        succeeds stalls its agent, which ``/healthz`` reports (``WORKER_STALL_TIMEOUT``)."""
        self._batches_running += 1
        try:
            await supervise(task, lambda: handle(events), restarted=self.metrics.task_restarted,
                            backoff=Backoff(1.0, 30.0))
        finally:
            self._batches_running -= 1

    def _timer_task(self, task: str, work: Callable[[], Awaitable[None]]
                    ) -> Callable[[], Awaitable[None]]:
        """``work`` as a timer's body that outlives its failures: a failure is logged and
        counted (``edume_worker_task_restarts_total{task}``), and the timer's next runs are
        skipped for a pause that doubles up to 30 s, reset by a run that succeeds."""
        pauses = Backoff(1.0, 30.0)
        resume_at = 0.0

        async def tick() -> None:
            nonlocal resume_at
            if time.monotonic() < resume_at:
                return
            try:
                await work()
            except Exception:
                pause = pauses.next()
                log.exception("timer %s failed; running it again in %.0fs", task, pause)
                self.metrics.task_restarted(task)
                resume_at = time.monotonic() + pause
            else:
                pauses.reset()

        tick.__name__ = tick.__qualname__ = f"{task.replace('-', '_')}_tick"
        return tick

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
        self._forget_done_of_earlier_assignments()
        if isinstance(processor, LinkProcessor):
            await self._wait_for_catalog(processor, records)
        async with self._lock(table):
            step = processor.process(records, table.get)
            dropped = await self.writer.commit(step, records, table)
            if isinstance(processor, LearnerProcessor):
                for key in dropped:
                    processor.restore_due(key, table.get(key))
        done = self._done_offset
        for record in records:
            tp_key = (record.topic, record.partition)
            done[tp_key] = max(done.get(tp_key, 0), record.offset + 1)
        self._processed += len(records)
        self.metrics.batch_done(step, len(events), time.perf_counter() - started)

    async def _wait_for_catalog(self, processor: LinkProcessor,
                                records: Sequence[InRecord]) -> None:
        """Hold a batch of links the catalog would refuse until the catalog can be trusted
        (see ``wait_for_catalog``); a rebalance, or the worker stopping, ends the wait."""
        app = self.app
        generation = app.rebalancing_count
        ended = await wait_for_catalog(
            processor, records, caught_up=self.replica.caught_up,
            interrupted=lambda: app.rebalancing_count != generation or app.should_stop,
        )
        if ended != "decided":
            log.info("a batch of %d link records waited for the catalog until %s",
                     len(records), ended)

    def _write_failed(self, kind: str, count: int) -> None:
        self.metrics.write_failures.labels(kind).inc(count)

    async def _policy_batch(self, events: Any) -> None:
        records = [in_record(e.message) for e in events]
        step = check_policies(records, self.layout)
        await self.writer.commit(step, records)
        self._processed += len(records)
        self.metrics.batch_done(step, len(events), 0.0)

    def _forget_done_of_earlier_assignments(self) -> None:
        """Start ``_done_offset`` afresh after each rebalance: a partition taken over again
        is read again from its committed offset. (Records Faust's consumer fetched and did
        not deliver are the consumer's guard's business: ``streams.worker.transport``.)"""
        if self._done_generation != self.app.rebalancing_count:
            self._done_generation = self.app.rebalancing_count
            self._done_offset.clear()

    async def start_io(self) -> None:
        """Start what the agents write and read with (before they get input)."""
        await self.publisher.start()
        self.replica.start(self.metrics.task_restarted)

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
            return NO_PARTITIONS
        return None

    def ready(self) -> bool:
        return self.not_ready_reason() is None

    def degraded(self) -> str | None:
        """Why the worker is degraded though it may be ready: records the broker refused for
        good in the last 15 minutes (their causes went to ``streams.dlq``), or None."""
        return self.refusals.summary()

    def stalled(self) -> str | None:
        """Why the worker is stuck for good (``StallDetector``): ``/healthz`` then answers
        503, so that the orchestrator restarts it. None while it lives."""
        return self.stall.stalled()

    def _assigned(self, topic: str, partition: int) -> bool:
        """Whether this worker consumes ``topic``'s ``partition`` now (owns the partition of
        the tables keyed like it, not as a standby)."""
        return (topic, partition) in self.app.consumer.assignment()

    async def _upkeep(self) -> None:
        """What the tables owe the erasures and the policies read lately, once they are
        recovered: erase (``Eraser``), then announce the completions policies call for
        (``Announcer``); after each rebalance, both for the states this worker now owns."""
        if self.not_ready_reason() is not None:
            return
        generation = self.app.rebalancing_count
        if generation != self._swept_generation:
            if self.replica.erasures:
                await self.eraser.sweep()
            self.announcer.rebalanced()
            self._swept_generation = generation
        while self._arrived:
            await self.eraser.arrived(self._arrived[0])
            self._arrived.popleft()
        await self.announcer.run()

    async def _settle(self) -> None:
        """Deflate the table values that stayed fresh too long (``StateTable.settle``)."""
        for table in (self.catalog, self.progress, self.links_table):
            table.settle()

    async def _check_stall(self) -> None:
        """Show the stall rule what the worker does (the ``stall-check`` timer). A worker that
        holds no partition (more workers than partitions) is idle, not stuck: the rule
        sees it as ready."""
        ready = self.not_ready_reason() in (None, NO_PARTITIONS)
        try:
            timeout = max(1.0, self.settings.worker_stall_timeout_s / 10)
            self._input_was_waiting = await asyncio.wait_for(
                positions.input_waiting(self.app.consumer, self._input_topics,
                                        batches_running=self._batches_running), timeout)
        except TimeoutError:  # the consumer did not answer: judge by the last answer
            log.warning("the consumer did not say where it is within %.0fs", timeout)
        tables: Any = self.app.tables  # faust's TableManager (the type says less)
        recovery = tables.recovery
        # What moves while the worker is unready: input processed, the catalog and policies
        # read until they are, changelog records recovered while recovering (reading that
        # goes on after, such as the catalog's, says nothing of a stuck rebalance).
        reading = None if self.replica.ready.is_set() else self.replica.records_read
        recovering = (None if recovery.completed.is_set()
                      else sum(recovery.active_offsets.values()))
        self.stall.observe(ready=ready, waiting=self._input_was_waiting,
                           processed=self._processed,
                           activity=(self._processed, reading, recovering))

    def table_sizes(self) -> dict[str, int]:
        return {t.name: len(t) for t in (self.catalog, self.progress, self.links_table)}

    def replica_sizes(self) -> tuple[int, int]:
        return len(self.replica.catalog), len(self.replica.policies)

    def recovery_seconds(self) -> float:
        return positions.recovery_seconds(self.app.tables)

    def lag(self) -> list[tuple[str, int, int]]:
        return positions.lag(self.app.consumer, self._input_topics)
