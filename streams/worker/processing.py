"""The workers' processors: a batch of records in, records to write and states to keep out.

A processor reads a batch, folds each usable record into its key's state with the pure
reducers, and answers what to write: dead letters, re-keyed records, the records the
reducers decided, and the new state of every key that changed (encoded, for the table
and its changelog). It sends nothing to Kafka and changes no table, so a failure half-way
leaves no trace there; the shell writes the records first, then the states, then
acknowledges the batch. The one thing a processor keeps is the learner processor's
reminder index: when each learner state it encoded next has a reminder due.

Records are checked before they are used:
- not an eduMe webhook of this topic's family (not JSON, unknown type, wrong shape, a
  timestamp that is not a time): to ``streams.dlq`` with the reason;
- a usable event under another key or partition than the ingress would have chosen
  (another producer, another partitioner): forwarded to the re-keying topic, at its key's
  partition, and applied when it comes back from there. The reducers do not depend on
  order, so the detour changes nothing but the time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar, cast

from schemas.common import Family
from schemas.outputs import CatalogImport, TrainingEvidence
from streams.core import headers, topics
from streams.core.catalog_imports import read_import
from streams.core.clock import MAX_CLOCK_SKEW_S, rfc3339
from streams.core.erasures import ErasureBook, learner_predates
from streams.core.evidence import evidence_output
from streams.core.records import InRecord, Layout, OutRecord, dead_letter, partition_for
from streams.core.state.catalog import (
    CatalogView,
    CourseEntry,
    CourseEvent,
    apply_course_event,
    apply_course_import,
)
from streams.core.state.codec import (
    decode_course,
    decode_learner,
    encode_course,
    encode_learner,
    next_reminder_due,
)
from streams.core.state.common import Meta, Output, Stamped, UnusableEvent
from streams.core.state.links import (
    due_reminders,
    next_due,
)
from streams.core.state.mandatory import announce_for_policies, learner_step
from streams.core.state.policies import PolicyBook, parse_policy_record
from streams.core.state.progress import LearnerEvent, LearnerState, completed_course_of
from streams.core.webhooks import Webhook, read_webhook, reason_kind
from streams.worker.reminders import ReminderIndex

S = TypeVar("S")
Load = Callable[[str], bytes | None]
"""A table lookup: the encoded state of a key, or None."""


class ReplicaView(Protocol):
    """What every worker knows of all courses and erased learners: the policies, the
    catalog and the erasures."""

    @property
    def policies(self) -> PolicyBook: ...

    @property
    def catalog(self) -> CatalogView: ...

    @property
    def erasures(self) -> ErasureBook: ...


@dataclass
class Step:
    """What a batch comes to."""

    outputs: list[OutRecord] = field(default_factory=list)
    states: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    """key -> (table partition, encoded state), for every key whose state changed."""
    applied: Counter[str] = field(default_factory=Counter)
    """Events applied, by canonical type."""
    repeats: int = 0
    dead: Counter[str] = field(default_factory=Counter)
    """Dead letters, by kind of reason."""
    rekeyed: int = 0
    reminders: int = 0
    """Reminders fired."""
    erased: int = 0
    """Records ignored: stamped before their learner's erasure."""
    announced: int = 0
    """Completions announced because of a policy (``LearnerProcessor.announce``)."""
    key_of: dict[int, str] = field(default_factory=dict)
    """Cause (an input record's index in the batch, or a due reminder's) -> the key whose
    new state holds its effect: when that state cannot be kept, the cause is not kept
    either (see ``Worker``)."""

    def caused_by(self, cause: int, since: int) -> None:
        """Mark the outputs from index ``since`` on as coming from ``cause``."""
        outputs = self.outputs
        for index in range(since, len(outputs)):
            outputs[index] = outputs[index]._replace(cause=cause)


def out_record(layout: Layout, output: Output, received_at: bytes) -> OutRecord:
    """A reducer's output as the record to write: partitioned by its key (murmur2, by the
    producer), or by its ``partition_key``."""
    by = output.partition_key
    return OutRecord(
        layout.name(output.topic),
        None if by is None else partition_for(by.encode(), layout.count(output.topic)),
        output.key.encode(),
        output.value.model_dump_json().encode(),
        [
            (headers.EVENT_ID, output.event_id.encode()),
            (headers.EVENT_TYPE, output.event_type.encode()),
            (headers.RECEIVED_AT, received_at),
        ],
    )


NOTHING = object()
"""``before_apply``'s answer when the event needs nothing after it."""


class _KeyedProcessor(Generic[S]):
    """Folds a batch of one event family into per-key states (the tables' values)."""

    family: Family

    def __init__(self, layout: Layout, *, max_clock_skew_s: float = MAX_CLOCK_SKEW_S) -> None:
        self.layout = layout
        self.dlq = layout.name(topics.STREAMS_DLQ)
        self.max_clock_skew_s = max_clock_skew_s
        self._table_partitions = layout.count(topics.EVENT_TOPIC_BY_FAMILY[self.family])

    def new_state(self, key: str) -> S:
        raise NotImplementedError

    def decode(self, data: bytes) -> S:
        raise NotImplementedError

    def encode(self, state: S) -> bytes:
        raise NotImplementedError

    def seen(self, state: S, meta: Meta) -> bool:
        raise NotImplementedError

    def apply(self, state: S, webhook: Webhook) -> list[Output]:
        raise NotImplementedError

    def read(self, record: InRecord) -> Webhook | OutRecord | None:
        """The record as a usable event, what to write instead (a dead letter, or the
        record re-keyed), or None: nothing to do with it."""
        return read_webhook(record, self.family, self.layout, max_skew_s=self.max_clock_skew_s)

    def erased(self, webhook: Webhook) -> bool:
        """Whether the event is of a learner erased after it was stamped (ignored)."""
        return False

    def before_apply(self, state: S, webhook: Webhook) -> object:
        """What ``after_apply`` needs of the state before the event (``NOTHING``: nothing
        to do after it)."""
        return NOTHING

    def after_apply(self, state: S, webhook: Webhook, record: InRecord,
                    before: object) -> list[Output]:
        """Records that need the input record itself, decided once the event is applied."""
        return []

    def after_erasure(self, key: str, state: S) -> S:
        """The state to go on from: ``state``, or a new one when ``state`` holds only what
        predates its learner's erasure (a state the erasure has not reached yet)."""
        return state

    def process(self, records: Sequence[InRecord], load: Load) -> Step:
        step = Step()
        working: dict[str, S] = {}
        changed: set[str] = set()
        for index, record in enumerate(records):
            read = self.read(record)
            if read is None:
                continue
            if isinstance(read, OutRecord):
                if read.topic == self.dlq:
                    reason = dict(read.headers)[headers.DLQ_REASON]
                    text = reason.decode() if isinstance(reason, bytes) else str(reason)
                    step.dead[reason_kind(text)] += 1
                else:
                    step.rekeyed += 1
                step.outputs.append(read._replace(cause=index))
                continue
            if self.erased(read):
                step.erased += 1
                continue
            state = working.get(read.key)
            if state is None:
                raw = load(read.key)
                state = self.decode(raw) if raw else self.new_state(read.key)
                state = working[read.key] = self.after_erasure(read.key, state)
            if self.seen(state, read.meta):
                step.repeats += 1
                continue
            before = self.before_apply(state, read)
            for output in self.apply(state, read):
                step.outputs.append(self._out_record(output, record)._replace(cause=index))
            if before is not NOTHING:
                for output in self.after_apply(state, read, record, before):
                    step.outputs.append(self._out_record(output, record)._replace(cause=index))
            changed.add(read.key)
            step.key_of[index] = read.key
            step.applied[read.event.CANONICAL_TYPE] += 1
        for key in changed:
            partition = partition_for(key.encode(), self._table_partitions)
            step.states[key] = (partition, self.encode(working[key]))
        return step

    def _out_record(self, output: Output, cause: InRecord) -> OutRecord:
        return out_record(self.layout, output, cause.received_at())


class CourseProcessor(_KeyedProcessor[CourseEntry]):
    """``edume.course.events`` and ``catalog.imports`` (courses that predate the webhooks,
    co-partitioned with the events) into the catalog."""

    family: Family = "course"

    def __init__(self, layout: Layout, *, max_clock_skew_s: float = MAX_CLOCK_SKEW_S) -> None:
        super().__init__(layout, max_clock_skew_s=max_clock_skew_s)
        self._imports = layout.name(topics.CATALOG_IMPORTS)

    def read(self, record: InRecord) -> Webhook | OutRecord | None:
        if record.topic == self._imports:
            return read_import(record, self.layout, max_skew_s=self.max_clock_skew_s)
        return super().read(record)

    def new_state(self, key: str) -> CourseEntry:
        return CourseEntry(int(key))

    def decode(self, data: bytes) -> CourseEntry:
        return decode_course(data)

    def encode(self, state: CourseEntry) -> bytes:
        return encode_course(state)

    def seen(self, state: CourseEntry, meta: Meta) -> bool:
        return state.applied.seen(meta.event_id, meta.short)

    def apply(self, state: CourseEntry, webhook: Webhook) -> list[Output]:
        if isinstance(webhook.event, CatalogImport):
            apply_course_import(state, webhook.event, webhook.meta)
            return []
        event: CourseEvent = webhook.event
        apply_course_event(state, event, webhook.meta)
        return []


class LearnerProcessor(_KeyedProcessor[LearnerState]):
    """``edume.learner.events`` into learner progress, deciding mandatory completions."""

    family: Family = "learner"

    def __init__(
        self, layout: Layout, replica: ReplicaView, reminder_after_s: float | None = None, *,
        max_clock_skew_s: float = MAX_CLOCK_SKEW_S,
    ) -> None:
        super().__init__(layout, max_clock_skew_s=max_clock_skew_s)
        self.replica = replica
        self.links = reminder_after_s is not None
        """Whether this worker issues links (assignment links and reminders)."""
        self.reminder_after_us = int((reminder_after_s or 0) * 1_000_000)
        self.due = ReminderIndex(self._table_partitions)
        """The next reminder due per learner whose state this processor last encoded:
        the shell's timer index (see ``streams.worker.timer``)."""

    def new_state(self, key: str) -> LearnerState:
        return LearnerState(int(key))

    def decode(self, data: bytes) -> LearnerState:
        return decode_learner(data)

    def seen(self, state: LearnerState, meta: Meta) -> bool:
        return state.applied.seen(meta.event_id, meta.short)

    def encode(self, state: LearnerState) -> bytes:
        if self.links:
            self._note_due(str(state.user_id), state)
        return encode_learner(state)

    def _note_due(self, key: str, state: LearnerState) -> None:
        self._set_due(key, next_due(state))

    def _set_due(self, key: str, due: int | None) -> None:
        if due is None:
            self.due.pop(key, None)
        else:
            self.due[key] = due

    def index_reminders(self, states: Iterable[tuple[str, int, bytes]]) -> None:
        """Add stored states (key, table partition, encoded state) to the timer index, as
        after the tables were recovered (the shell clears it first): only each state's
        pending reminders are read."""
        self.due.load(states)

    def restore_due(self, key: str, raw: bytes | None) -> None:
        """Index ``key``'s next reminder from its stored state ``raw`` (None: no state): after
        a recovery, and when a new state computed for the key was not kept."""
        self._set_due(key, next_reminder_due(raw) if raw else None)

    def erased(self, webhook: Webhook) -> bool:
        book = self.replica.erasures
        if not book:
            return False
        user = getattr(webhook.event.payload, "user", None)
        external = getattr(user, "eId", None)
        return book.erased_before(webhook.meta.ts, int(webhook.key),
                                  external if isinstance(external, str) else None)

    def after_erasure(self, key: str, state: LearnerState) -> LearnerState:
        book = self.replica.erasures
        return self.new_state(key) if book and learner_predates(state, book) else state

    def before_apply(self, state: LearnerState, webhook: Webhook) -> object:
        """For an event that can complete a course: the course, and its completion before."""
        course_id = completed_course_of(webhook.event)
        if course_id is None:
            return NOTHING
        progress = state.courses.get(course_id)
        return course_id, None if progress is None else progress.completed

    def after_apply(self, state: LearnerState, webhook: Webhook, record: InRecord,
                    before: object) -> list[Output]:
        """The evidence of a completion this event made (the first, or an earlier-stamped
        one that took it over): ``training.evidence``."""
        course_id, completed_before = cast(tuple[int, Stamped | None], before)
        progress = state.courses.get(course_id)
        completed = None if progress is None else progress.completed
        if completed is None or completed == completed_before or (
                completed.event_id != webhook.meta.short):
            return []
        signature = record.header(headers.SIGNATURE)
        received = record.header(headers.RECEIVED_AT)
        return [evidence_output(TrainingEvidence(
            userId=state.user_id, courseId=course_id, completedAt=str(completed.value["at"]),
            eventId=webhook.meta.event_id, event=(record.value or b"").decode(),
            signature=signature.decode() if signature is not None else None,
            receivedAt=received.decode() if received is not None else None,
            topic=record.topic, partition=record.partition, offset=record.offset))]

    def apply(self, state: LearnerState, webhook: Webhook) -> list[Output]:
        event: LearnerEvent = webhook.event
        replica = self.replica
        return learner_step(state, event, webhook.meta, replica.policies, replica.catalog,
                            links=self.links, reminder_after_us=self.reminder_after_us)

    def fire_reminders(self, keys: Sequence[str], load: Load, now_us: int) -> Step:
        """Fire the reminders of ``keys`` due by ``now_us``: issue-link events, and the
        learners' new states (each fired reminder marked, so it never fires again). Each
        key's index in ``keys`` is the cause of its records (``Step.key_of``)."""
        step = Step()
        received_at = rfc3339(now_us // 1000).encode()
        for cause, key in enumerate(keys):
            raw = load(key)
            if raw is None:
                self.due.pop(key, None)
                continue
            state = self.decode(raw)
            before = len(state.reminders)
            outputs = due_reminders(state, now_us, self.replica.policies,
                                    self.replica.catalog)
            if len(state.reminders) == before:
                self._note_due(key, state)
                continue
            self._decided(step, cause, key, state, outputs, received_at)
            step.reminders += len(outputs)
        return step

    def _decided(self, step: Step, cause: int, key: str, state: LearnerState,
                 outputs: Sequence[Output], received_at: bytes) -> None:
        """A learner's records decided outside a batch of events (``cause``: its index in
        the keys asked for), and its new state."""
        step.outputs += [out_record(self.layout, o, received_at)._replace(cause=cause)
                         for o in outputs]
        step.key_of[cause] = key
        partition = partition_for(key.encode(), self._table_partitions)
        step.states[key] = (partition, self.encode(state))


    def announce(self, keys: Sequence[str], load: Load, now_us: int,
                 courses: Iterable[int] | None = None) -> Step:
        """The completions the policies in force call for and no event announced yet
        (``announce_for_policies``) for the learners ``keys``, and their new states (each
        course marked announced). Each key's index in ``keys`` is the cause of its records."""
        step = Step()
        received_at = rfc3339(now_us // 1000).encode()
        replica = self.replica
        wanted = None if courses is None else set(courses)
        for cause, key in enumerate(keys):
            raw = load(key)
            if raw is None:
                continue
            state = self.decode(raw)
            outputs = announce_for_policies(state, replica.policies, replica.catalog, wanted)
            if not outputs:
                continue
            self._decided(step, cause, key, state, outputs, received_at)
            step.announced += len(outputs)
        return step


def check_policies(records: Sequence[InRecord], layout: Layout) -> Step:
    """``training.policies``: every worker reads all of it into its policy book; the owner of
    a partition only sends what cannot be read there to ``streams.dlq``."""
    step = Step()
    dlq = layout.name(topics.STREAMS_DLQ)
    for index, record in enumerate(records):
        try:
            parse_policy_record(record.key, record.value)
        except UnusableEvent as exc:
            step.outputs.append(dead_letter(record, str(exc), dlq)._replace(cause=index))
            step.dead[reason_kind(str(exc))] += 1
        else:
            step.applied[topics.TRAINING_POLICIES] += 1
    return step
