"""The worker's hardening without a broker: write failures told permanent from transient, what
a refused record costs its batch, background work that outlives its failures, the stall
rule behind /healthz, the bounded wait for the catalog, the catalog reader that reads by
position and resumes past a record it cannot apply, and Faust's data directory."""

from __future__ import annotations

import asyncio
import functools
import json
import os
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from aiokafka import TopicPartition
from confluent_kafka import KafkaError

from streams.core import headers, topics
from streams.core.errors import BrokerUnavailable, PublishError, RecordRefused
from streams.core.records import InRecord, Layout, OutRecord
from streams.core.state.catalog import CourseEntry
from streams.core.state.codec import encode_course
from streams.kafka.clients import KafkaConnection
from streams.kafka.publisher import Delivery, Publisher, record_error
from streams.settings import Settings
from streams.worker import replica as replica_module
from streams.worker.app import WORKER_PRODUCER_CONFIG, Worker, wait_for_catalog
from streams.worker.health import Backoff, RecentRefusals, StallDetector, supervise
from streams.worker.links import CATALOG_BUILD_WAIT_S, CATALOG_GRACE_S, record_age_ms
from streams.worker.processing import check_policies
from streams.worker.replica import Replica, _at_highwater
from streams.worker.run import data_directory
from streams.worker.sink import Sink
from streams.worker.writes import Losses
from tests.unit.test_worker_processing import (
    LAYOUT,
    Store,
    link_processor,
    link_request,
    published_course,
    record,
)
from tests.unit.test_worker_processing import Replica as ReplicaView

DLQ = LAYOUT.name(topics.STREAMS_DLQ)


class Clock:
    """A clock the test moves by hand; ``sleep`` moves it too."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


# ---------------------------------------------------------------- permanent or transient


@pytest.mark.parametrize("code", [
    KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE, KafkaError.INVALID_RECORD,
    KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError._UNKNOWN_PARTITION,
    KafkaError.INVALID_TIMESTAMP,
])
def test_errors_that_refuse_one_record_for_good_are_permanent(code: int) -> None:
    error = record_error(KafkaError(code), "the broker did not take the record")
    assert isinstance(error, RecordRefused) and error.permanent
    assert error.error_name == KafkaError(code).name()
    assert str(error) == f"the broker did not take the record: {KafkaError(code).name()}"


@pytest.mark.parametrize("code", [
    KafkaError._MSG_TIMED_OUT, KafkaError.REQUEST_TIMED_OUT, KafkaError.NOT_ENOUGH_REPLICAS,
    KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN,
    KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT, KafkaError._FATAL,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    # The whole producer refused (credentials, IdempotentWrite): the process is unready
    # until that is fixed; its records wait rather than go to the DLQ.
    KafkaError.CLUSTER_AUTHORIZATION_FAILED, KafkaError.SASL_AUTHENTICATION_FAILED,
])
def test_every_other_error_is_transient(code: int) -> None:
    error = record_error(KafkaError(code), "x")
    assert isinstance(error, BrokerUnavailable) and not error.permanent
    assert error.error_name == KafkaError(code).name()


def test_a_fatal_or_retriable_error_is_transient_whatever_its_code() -> None:
    for error in (KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, fatal=True),
                  KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, retriable=True)):
        assert not record_error(error, "x").permanent


def test_delivery_reports_carry_the_classification() -> None:
    settled: list[PublishError | None] = []

    class Collect(Delivery):
        def settle(self, error: PublishError | None) -> None:
            settled.append(error)

    Collect()(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), None)
    Collect()(KafkaError(KafkaError._MSG_TIMED_OUT), None)
    Collect()(None, None)
    assert [e.permanent if e else None for e in settled] == [True, False, None]


def test_a_record_larger_than_the_producer_takes_is_refused_for_good_at_once() -> None:
    publisher = Publisher(Settings(kafka_bootstrap_servers="127.0.0.1:9"),
                          extra_config={"message.max.bytes": 1000})
    producer = publisher._producer = publisher._new_producer()
    try:
        with pytest.raises(RecordRefused) as refused:
            publisher.publish("t", b"k", b"x" * 5000, [], Delivery())
        assert refused.value.error_name == "MSG_SIZE_TOO_LARGE"
    finally:
        producer.purge()
        producer.flush(0)


def test_the_changelogs_take_what_the_workers_producer_takes() -> None:
    limit = Publisher(Settings(), extra_config=WORKER_PRODUCER_CONFIG).config()[
        "message.max.bytes"]
    for name in (topics.CATALOG_CHANGELOG, topics.PROGRESS_CHANGELOG, topics.LINKS_CHANGELOG):
        assert topics.BY_NAME[name].kafka_configs()["max.message.bytes"] == str(limit), name
    # Room for a dead letter or a re-keyed copy of the largest webhook an event topic takes.
    assert limit >= int(topics.BY_NAME[topics.LEARNER_EVENTS].kafka_configs()[
        "max.message.bytes"])


# ---------------------------------------------------------------- the sink


Answer = PublishError | None


class FakePublisher:
    """Answers each record by its key from a script: an error to settle it with, None for an
    acknowledgement, or ("raise", error) for a refusal at ``publish`` itself. The last answer
    of a script repeats."""

    def __init__(self, scripts: dict[bytes, list[Any]]) -> None:
        self.scripts = scripts
        self.sent: list[bytes] = []

    def publish(self, topic: str, key: bytes, value: bytes | None, hdrs: Any,
                delivery: Delivery, *, partition: int | None = None) -> None:
        script = self.scripts[key]
        answer = script.pop(0) if len(script) > 1 else script[0]
        self.sent.append(key)
        if isinstance(answer, tuple):
            raise answer[1]
        asyncio.get_running_loop().call_soon(delivery.settle, answer)


def _header(record: OutRecord, name: str) -> bytes:
    value = dict(record.headers)[name]
    assert isinstance(value, bytes)
    return value


def _out(key: bytes) -> OutRecord:
    return OutRecord("p.out", None, key, b"{}", [])


TOO_LARGE = record_error(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), "refused")
TIMED_OUT = record_error(KafkaError(KafkaError._MSG_TIMED_OUT), "timed out")


async def test_the_sink_answers_permanent_refusals_and_retries_the_rest_with_growing_pauses(
) -> None:
    publisher = FakePublisher({
        b"ok": [None],
        b"big": [TOO_LARGE],
        b"slow": [TIMED_OUT, TIMED_OUT, TIMED_OUT, TIMED_OUT, None],
        b"huge": [("raise", TOO_LARGE)],
        b"queue": [("raise", BrokerUnavailable("the producer's queue is full")), None],
    })
    failures: list[tuple[str, int]] = []
    clock = Clock()
    sink = Sink(cast(Publisher, publisher), retry_first_s=0.5, retry_max_s=2.0,
                failed=lambda kind, n: failures.append((kind, n)), sleep=clock.sleep)
    records = [_out(k) for k in (b"ok", b"big", b"slow", b"huge", b"queue")]
    refused = await sink.write(records)
    assert [(r.position, r.error_name) for r in refused] == [(1, "MSG_SIZE_TOO_LARGE"),
                                                             (3, "MSG_SIZE_TOO_LARGE")]
    assert publisher.sent.count(b"big") == publisher.sent.count(b"huge") == 1
    assert publisher.sent.count(b"slow") == 5 and publisher.sent.count(b"ok") == 1
    assert clock.slept == [0.5, 1.0, 2.0, 2.0]  # doubling, capped
    assert ("permanent", 2) in failures
    assert sum(n for kind, n in failures if kind == "transient") == 5
    assert await sink.write([]) == []


# ---------------------------------------------------------------- what a refusal costs


def _requests() -> tuple[list[InRecord], Any]:
    """Two hub-link requests of u1 and one of u2, processed: each request gives a
    links.issue record and its signed link (links.issued)."""
    values = [link_request("u1", kind="hub", teamIds=[7], reason=str(i)) for i in range(2)]
    values.append(link_request("u2", kind="hub", teamIds=[7]))
    keys = ["u1", "u1", "u2"]
    records = [record(v, k, topics.LINK_REQUESTS, offset=i)
               for i, (v, k) in enumerate(zip(values, keys, strict=True))]
    return records, link_processor(ReplicaView()).process(records, Store().load)


def test_outputs_and_states_know_their_cause() -> None:
    _, step = _requests()
    assert [o.cause for o in step.outputs] == [0, 0, 1, 1, 2, 2]
    assert step.key_of == {0: "u1", 1: "u1", 2: "u2"}
    assert set(step.states) == {"u1", "u2"}


def test_a_learners_outputs_know_the_event_that_caused_them() -> None:
    from streams.core.state.policies import Policy
    from streams.worker.processing import LearnerProcessor
    from tests.worker_support import learner_story

    replica = ReplicaView()
    replica.policies.apply(9961, Policy(9961, True, None), (0, 0, 0))
    events = [*learner_story(10, [9961], [9961], group=5), *learner_story(11, [7], [], group=5)]
    received = (headers.RECEIVED_AT, b"2026-12-01T00:00:00.000Z")  # after every stamp
    records = [record(e.value, e.key, topics.LEARNER_EVENTS, offset=i)._replace(
        headers=[(headers.EVENT_ID, e.event_id.encode()), received])
        for i, e in enumerate(events)]
    step = LearnerProcessor(LAYOUT, replica, 3600.0).process(records, Store().load)
    causes = {o.topic.removeprefix("p."): o.cause for o in step.outputs}
    assert causes == {topics.LINK_ISSUE: 0, topics.MANDATORY_COMPLETED: 4,
                      topics.TRAINING_EVIDENCE: 4}
    assert step.key_of == {i: "10" for i in range(5)} | {i: "11" for i in range(5, 9)}


def test_a_refused_output_sends_every_record_of_its_key_to_the_dlq_and_keeps_no_state(
) -> None:
    records, step = _requests()
    issued = LAYOUT.name(topics.LINK_ISSUED)
    refused = next(o for o in step.outputs if o.cause == 1 and o.topic == issued)
    losses = Losses(step, DLQ)
    losses.output_refused(refused, "MSG_SIZE_TOO_LARGE")
    assert set(losses.kept_states()) == {"u2"}
    written = [o for o in step.outputs if o is not refused]
    letters = losses.dead_letters(records, written)
    assert [letter.cause for letter in letters] == [0, 1]
    reasons = [_header(letter, headers.DLQ_REASON).decode() for letter in letters]
    assert reasons[1] == f"{issued} refused the record it caused (MSG_SIZE_TOO_LARGE)"
    assert "same key" in reasons[0] and "left as it was" in reasons[0]
    for letter, cause in zip(letters, records[:2], strict=True):
        # The contract's dead letter: the record unchanged, keyed and headed by its place.
        assert letter.topic == DLQ and letter.value == cause.value
        assert letter.key == cause.source.encode()
        assert _header(letter, headers.DLQ_SOURCE) == cause.source.encode()
        assert len(_header(letter, headers.EVENT_ID)) == 64


def test_a_refused_state_sends_its_keys_records_to_the_dlq() -> None:
    records, step = _requests()
    losses = Losses(step, DLQ)
    changelog = OutRecord("p.edume-streams.links.changelog", 3, b"u2", b"{}", [])
    losses.state_refused(changelog, "MSG_SIZE_TOO_LARGE")
    assert set(losses.keys) == {"u2"}
    (letter,) = losses.dead_letters(records, step.outputs)
    assert letter.cause == 2
    assert _header(letter, headers.DLQ_REASON).decode() == (
        "p.edume-streams.links.changelog refused its key's new state (MSG_SIZE_TOO_LARGE); "
        "the state was left as it was")


def test_a_refused_dead_letter_or_reminder_costs_no_other_record() -> None:
    poison = record(b"{not json", "u3", topics.LINK_REQUESTS)
    step = link_processor(ReplicaView()).process([poison], Store().load)
    dead = [o for o in step.outputs if o.topic == DLQ]
    assert dead and dead[0].cause == 0
    losses = Losses(step, DLQ)
    losses.output_refused(dead[0], "MSG_SIZE_TOO_LARGE")
    assert not losses.causes and not losses.keys
    # A cause that is no input record (a due reminder): its key's state is not kept, and
    # there is nothing to send to the DLQ.
    reminder = OutRecord(LAYOUT.name(topics.LINK_ISSUE), None, b"e", b"{}", [], cause=0)
    from streams.worker.processing import Step

    fired = Step(outputs=[reminder], states={"42": (1, b"{}")}, key_of={0: "42"})
    losses = Losses(fired, DLQ)
    losses.output_refused(reminder, "TOPIC_AUTHORIZATION_FAILED")
    assert set(losses.keys) == {"42"} and losses.kept_states() == {}
    assert losses.dead_letters([], []) == []


def test_a_dead_letter_already_written_is_not_written_twice() -> None:
    records, step = _requests()
    losses = Losses(step, DLQ)
    losses.state_refused(OutRecord("c", 0, b"u2", b"{}", []), "MSG_SIZE_TOO_LARGE")
    already = OutRecord(DLQ, None, b"x", b"{}", [], cause=2)
    assert losses.dead_letters(records, [*step.outputs, already]) == []


def test_a_policy_key_too_long_for_int_is_a_dead_letter_not_an_error() -> None:
    key = "9" * 4301
    value = json.dumps({"courseId": 1, "mandatory": True, "groupIds": None}).encode()
    step = check_policies([record(value, key, topics.TRAINING_POLICIES, partition=0)], LAYOUT)
    (dead,) = step.outputs
    assert dead.topic == DLQ and dead.cause == 0
    assert _header(dead, headers.DLQ_REASON).startswith(b"the key is not a courseId")


# ---------------------------------------------------------------- supervised tasks


async def test_a_failing_task_is_logged_counted_and_restarted_with_growing_pauses(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    restarts: list[str] = []
    runs = 0

    async def run() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise OSError("connection refused")
        if runs in (2, 3):
            raise ValueError("Exceeds the limit (4300 digits) for integer string conversion")
        if runs == 4:
            clock.now += 120  # a long healthy run, then a failure
            raise ValueError("again")

    await supervise("replica", run, restarted=restarts.append, backoff=Backoff(1.0, 3.0),
                    quiet=(OSError,), clock=clock, sleep=clock.sleep)
    assert runs == 5 and restarts == ["replica"] * 4
    assert clock.slept == [1.0, 2.0, 3.0, 1.0]  # doubling, capped, reset after a good run
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 3  # the expected OSError is a warning without one
    assert any("OSError" in r.getMessage() and not r.exc_info for r in caplog.records)


async def test_a_cancelled_task_is_not_restarted() -> None:
    async def run() -> None:
        await asyncio.sleep(10)

    task = asyncio.create_task(supervise("t", run, restarted=lambda _: pytest.fail()))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# ---------------------------------------------------------------- the stall rule


def test_an_unready_worker_is_stalled_only_when_nothing_moves() -> None:
    clock = Clock()
    stall = StallDetector(60.0, clock=clock)
    for second in range(0, 600, 5):  # recovering a large table: offsets keep moving
        clock.now += 5
        stall.observe(ready=False, waiting=True, processed=0, activity=second)
        assert stall.stalled() is None
    clock.now += 59
    stall.observe(ready=False, waiting=True, processed=0, activity=595)
    assert stall.stalled() is None
    clock.now += 1
    assert stall.stalled() == "not ready, and nothing moved for 60s"
    stall.observe(ready=True, waiting=False, processed=0, activity=595)
    assert stall.stalled() is None


def test_a_ready_worker_with_input_waiting_and_none_processed_is_stalled() -> None:
    clock = Clock()
    stall = StallDetector(60.0, clock=clock)
    stall.observe(ready=True, waiting=False, processed=1, activity=1)
    clock.now += 3600  # idle for an hour: nothing waits
    stall.observe(ready=True, waiting=False, processed=1, activity=1)
    assert stall.stalled() is None
    stall.observe(ready=True, waiting=True, processed=1, activity=(1, 7))
    clock.now += 30
    stall.observe(ready=True, waiting=True, processed=2, activity=(2, 7))
    clock.now += 59  # processing goes on: a backlog, not a stall
    stall.observe(ready=True, waiting=True, processed=2, activity=(2, 8))
    assert stall.stalled() is None
    clock.now += 1
    assert stall.stalled() == "input waiting, and none processed for 60s"


def test_a_worker_never_observed_counts_as_unready_since_it_was_made() -> None:
    clock = Clock()
    stall = StallDetector(300.0, clock=clock)
    clock.now += 299
    assert stall.stalled() is None
    clock.now += 1
    assert stall.stalled() == "not ready, and nothing moved for 300s"


def test_recent_refusals_show_for_a_while_after_the_last() -> None:
    clock = Clock()
    refusals = RecentRefusals(window_s=900.0, clock=clock, wall_ms=lambda: 1_767_225_600_000)
    assert refusals.summary() is None
    refusals.note("p.training.mandatory.completed", "MSG_SIZE_TOO_LARGE")
    clock.now += 600
    refusals.note("p.edume-streams.progress.changelog", "MSG_SIZE_TOO_LARGE")
    clock.now += 42
    assert refusals.summary() == (
        "2 records refused for good since 2026-01-01T00:00:00.000Z, the latest 42s ago "
        "(p.edume-streams.progress.changelog: MSG_SIZE_TOO_LARGE); the records that caused "
        "them are in streams.dlq")
    clock.now += 900
    assert refusals.summary() is None
    refusals.note("t", "TOPIC_AUTHORIZATION_FAILED")
    assert (refusals.summary() or "").startswith("1 record refused for good")


# ---------------------------------------------------------------- the wait for the catalog


def test_a_records_age_counts_a_future_stamp_as_now() -> None:
    assert record_age_ms(1_000, 61_000) == 60_000
    assert record_age_ms(61_000, 61_000) == 0
    assert record_age_ms(86_400_000 + 61_000, 61_000) == 0  # a day in the future: new


def _course_link(course: int, timestamp_ms: int) -> InRecord:
    value = link_request("u1", kind="course", contentId=course, teamIds=[7])
    return record(value, "u1", topics.LINK_REQUESTS)._replace(timestamp_ms=timestamp_ms)


async def _wait(records: list[InRecord], clock: Clock, wall_ms: int, *,
                caught_up: Callable[[], bool] = lambda: True,
                interrupted: Callable[[], bool] = lambda: False,
                replica: ReplicaView | None = None) -> str:
    processor = link_processor(replica or ReplicaView())
    start = clock.now
    return await wait_for_catalog(
        processor, records, caught_up=caught_up, interrupted=interrupted, clock=clock,
        wall_ms=lambda: wall_ms + int((clock.now - start) * 1000), sleep=clock.sleep)


async def test_a_link_stamped_in_the_future_waits_no_longer_than_the_grace() -> None:
    clock = Clock()
    now_ms = 1_767_225_600_000
    future = _course_link(999, now_ms + 86_400_000)
    assert await _wait([future], clock, now_ms) == "deadline"
    assert clock.now - 1000.0 == pytest.approx(CATALOG_GRACE_S, abs=0.2)


async def test_the_wait_for_the_catalog_has_a_hard_deadline_and_ends_on_a_rebalance() -> None:
    now_ms = 1_767_225_600_000
    old = _course_link(999, now_ms - 3_600_000)
    clock = Clock()
    assert await _wait([old], clock, now_ms) == "decided" and clock.slept == []
    clock = Clock()  # the copy of the catalog stays behind: the hard deadline
    assert await _wait([old], clock, now_ms, caught_up=lambda: False) == "deadline"
    assert clock.now - 1000.0 == pytest.approx(CATALOG_BUILD_WAIT_S, abs=0.2)
    clock = Clock()  # a rebalance begins after 2 s
    assert await _wait([old], clock, now_ms, caught_up=lambda: False,
                       interrupted=lambda: clock.now >= 1002.0) == "interrupted"
    assert clock.now == pytest.approx(1002.0, abs=0.2)
    replica = ReplicaView()
    clock = Clock()  # the course arrives after 3 s

    def caught_up() -> bool:
        if clock.now >= 1003.0:
            replica.catalog[999] = published_course(999, [7])
        return True

    young = _course_link(999, now_ms)
    assert await _wait([young], clock, now_ms, caught_up=caught_up, replica=replica) == (
        "decided")
    assert clock.now == pytest.approx(1003.0, abs=0.2)


# ---------------------------------------------------------------- the catalog reader


class FakeConsumer:
    """An aiokafka consumer over fixed partitions: ``log`` holds each partition's records
    and its end offset (past a transaction marker, or records deleted, when greater than
    the last record's offset + 1)."""

    def __init__(self, log: dict[TopicPartition, tuple[list[Any], int]]) -> None:
        self.log = log
        self.positions: dict[TopicPartition, int] = {}
        self.assigned: list[TopicPartition] = []

    def _end(self, tp: TopicPartition) -> int:
        return self.log.get(tp, ([], 0))[1]

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def assign(self, tps: list[TopicPartition]) -> None:
        self.assigned = list(tps)

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    async def seek_to_beginning(self, *tps: TopicPartition) -> None:
        for tp in tps:
            self.positions[tp] = 0

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self._end(tp) for tp in tps}

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, Any]:
        out = {}
        for tp in self.assigned:
            records = [r for r in self.log.get(tp, ([], 0))[0]
                       if r.offset >= self.positions[tp]]
            if records:
                out[tp] = records
            self.positions[tp] = self._end(tp)
        if not out:
            await asyncio.sleep(0.005)
        return out

    def highwater(self, tp: TopicPartition) -> int:
        return self._end(tp)

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]


def _rec(offset: int, key: bytes | None, value: bytes | None) -> Any:
    return SimpleNamespace(offset=offset, key=key, value=value, headers=[],
                           timestamp=1_767_225_600_000 + offset)


async def _until(check: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    for _ in range(int(timeout_s / 0.01)):
        if check():
            return True
        await asyncio.sleep(0.01)
    return check()


async def test_the_reader_resumes_past_a_record_it_cannot_apply_and_reads_by_position(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    layout = Layout.from_catalog("p.")
    changelog = TopicPartition(layout.name(topics.CATALOG_CHANGELOG), 0)
    policies = TopicPartition(layout.name(topics.TRAINING_POLICIES), 0)
    policy = json.dumps({"courseId": 7, "mandatory": True, "groupIds": None}).encode()
    log = {
        # A state this code cannot decode, then a good one.
        changelog: ([_rec(0, b"5", b"not a state"),
                     _rec(1, b"6", encode_course(CourseEntry(6)))], 2),
        # A key int() refuses, a policy, then a transaction's commit marker at offset 2.
        policies: ([_rec(0, b"9" * 4301, policy), _rec(1, b"7", policy)], 3),
    }
    consumers: list[FakeConsumer] = []

    def new_consumer(*_args: Any, **_kwargs: Any) -> FakeConsumer:
        consumers.append(FakeConsumer(log))
        return consumers[-1]

    monkeypatch.setattr(replica_module, "aio_consumer", new_consumer)
    replica = Replica(KafkaConnection("127.0.0.1:9"), layout, retry_s=0.01)
    restarts: list[str] = []
    replica.start(restarts.append)
    try:
        assert await _until(lambda: replica.caught_up() and 6 in replica.catalog)
        assert replica.ready.is_set()
        assert restarts == ["replica"]  # the undecodable state, once
        assert len(consumers) == 2  # the second reading started past it
        assert 5 not in replica.catalog
        assert [p.course_id for p in replica.policies.policies()] == [7]
    finally:
        await replica.stop()


async def test_a_partition_counts_as_read_at_its_end_offset_not_its_last_record() -> None:
    tp = TopicPartition("p.training.policies", 0)
    consumer = FakeConsumer({tp: ([_rec(0, b"7", b"{}")], 2)})  # a marker at offset 1
    consumer.assign([tp])
    consumer.positions[tp] = 1  # the record read, the marker not yet
    assert not await _at_highwater(cast(Any, consumer))
    consumer.positions[tp] = 2
    assert await _at_highwater(cast(Any, consumer))
    consumer.log[TopicPartition("p.training.policies", 1)] = ([], 0)
    consumer.assign([tp, TopicPartition("p.training.policies", 1)])
    consumer.positions[TopicPartition("p.training.policies", 1)] = 0
    assert await _at_highwater(cast(Any, consumer))  # an empty partition is read


# ---------------------------------------------------------------- Faust's data directory


def test_the_data_directory_is_a_temporary_one_removed_at_exit_unless_set(
    tmp_path: Path,
) -> None:
    with data_directory(Settings()) as path:
        assert Path(path).is_dir() and not Path(path).is_relative_to(Path.cwd())
    assert not os.path.exists(path)
    chosen = tmp_path / "a" / "data"
    with data_directory(Settings(worker_data_dir=str(chosen))) as path:
        assert path == str(chosen) and chosen.is_dir()
    assert chosen.is_dir()


async def test_the_worker_gives_faust_its_data_directory_and_the_changelogs_their_limit(
    tmp_path: Path,
) -> None:
    settings = Settings(link_secret="x", worker_api_tokens=("t",))
    worker = Worker(settings, Layout.from_catalog("p."), str(tmp_path))
    assert Path(worker.app.conf.datadir) == tmp_path
    for table in (worker.catalog, worker.progress, worker.links_table):
        config = table.table.changelog_topic.config
        assert config["max.message.bytes"] == topics.STATE_MAX_MESSAGE_BYTES


async def test_a_failing_timer_is_counted_and_paused_and_a_failing_batch_handled_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = Settings(link_secret="x", worker_api_tokens=("t",))
    worker = Worker(settings, Layout.from_catalog("p."), str(tmp_path))
    calls: list[str] = []

    async def failing() -> None:
        calls.append("tick")
        raise ValueError("a state that does not decode")

    tick = worker._timer_task("reminders", failing)
    await tick()
    await tick()  # within the pause: skipped
    assert calls == ["tick"]
    restarts = worker.metrics.task_restarts
    assert restarts.labels("reminders")._value.get() == 1

    slept: list[float] = []

    async def no_wait(seconds: float) -> None:
        slept.append(seconds)

    from streams.worker import app as app_module

    monkeypatch.setattr(app_module, "supervise", functools.partial(supervise, sleep=no_wait))
    attempts: list[int] = []

    async def handle(events: Any) -> None:
        attempts.append(len(events))
        assert worker._batches_running == 1  # a batch in hand: input waits
        if len(attempts) < 3:
            raise ValueError("not yet")

    await worker._until_handled("learners", handle, [1, 2])
    assert attempts == [2, 2, 2] and slept == [1.0, 2.0]
    assert restarts.labels("learners")._value.get() == 2
    assert worker._batches_running == 0


def test_the_stall_timeout_is_a_duration() -> None:
    assert Settings().worker_stall_timeout_s == 300.0
    assert Settings.from_env({"WORKER_STALL_TIMEOUT": "90s"}).worker_stall_timeout_s == 90.0
    assert Settings.from_env({"WORKER_STALL_TIMEOUT": "10m"}).worker_stall_timeout_s == 600.0
    assert Settings.from_env({"WORKER_DATA_DIR": " "}).worker_data_dir is None
