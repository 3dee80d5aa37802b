"""The workers' processors: a batch of records in, records to write and states to keep out.

A processor reads a batch, folds each usable record into its key's state with the pure
reducers, and answers what to write: dead letters, re-keyed records, the records the
reducers decided, and the new state of every key that changed (encoded, for the table
and its changelog). It writes nothing itself, so a failure half-way leaves no trace; the
shell writes the records first, then the states, then acknowledges the batch.

Records are checked before they are used:
- not an eduMe webhook of this topic's family (not JSON, unknown type, wrong shape, a
  timestamp that is not a time): to ``streams.dlq`` with the reason;
- a usable event under another key or partition than the ingress would have chosen
  (another producer, another partitioner): forwarded to the re-keying topic, at its key's
  partition, and applied when it comes back from there. The reducers do not depend on
  order, so the detour changes nothing but the time.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

import orjson
from pydantic import ValidationError

from schemas import WEBHOOK_ADAPTER, canonical_type
from schemas.common import Family
from streams import headers, topics
from streams.errors import EdumeStreamsError
from streams.jsjson import canonical
from streams.state.catalog import CourseEntry, CourseEvent, apply_course_event
from streams.state.codec import decode_course, decode_learner, encode_course, encode_learner
from streams.state.common import Meta, UnusableEvent, meta_of
from streams.state.mandatory import CatalogView, Output, learner_step
from streams.state.policies import PolicyBook, parse_policy_record
from streams.state.progress import LearnerEvent, LearnerState
from streams.validation import summarise_validation
from streams.worker.records import InRecord, Layout, OutRecord, dead_letter, partition_for

S = TypeVar("S")
Load = Callable[[str], bytes | None]
"""A table lookup: the encoded state of a key, or None."""


class ReplicaView(Protocol):
    """What every worker knows of all courses: the policies and the catalog."""

    @property
    def policies(self) -> PolicyBook: ...

    @property
    def catalog(self) -> CatalogView: ...


class Webhook(NamedTuple):
    """A usable event: its model, its key and what the reducers need to know of it."""

    event: Any
    key: str
    meta: Meta
    record: InRecord


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


def _reason_kind(reason: str) -> str:
    """A short label for metrics: the reason's first words, never data from the record."""
    for kind in ("not JSON", "unknown type", "does not match", "timestamp", "tombstone",
                 "family", "key", "value"):
        if kind in reason:
            return kind.replace(" ", "_")
    return "other"


def event_id_of(value: bytes) -> str:
    """The ingress's event id of a webhook that came without one (another producer): SHA-256
    of its JSON.stringify form."""
    try:
        return hashlib.sha256(canonical(value)[1]).hexdigest()
    except EdumeStreamsError:
        return hashlib.sha256(value).hexdigest()


def read_webhook(record: InRecord, family: Family, layout: Layout) -> Webhook | OutRecord:
    """The record as a usable event of ``family``, or what to write instead of applying it
    (a dead letter, or the record re-keyed)."""
    dlq = layout.name(topics.STREAMS_DLQ)
    value = record.value
    if value is None:
        return dead_letter(record, "a tombstone (no value) on an event topic", dlq)
    try:
        event = WEBHOOK_ADAPTER.validate_json(value)
    except ValidationError as exc:
        return dead_letter(record, _why_not_a_webhook(exc, value), dlq)
    if event.FAMILY != family:
        return dead_letter(record, f"a {event.FAMILY} event on the {family} family topic", dlq)
    key = str(event.routing_id)
    key_bytes = key.encode()
    home = layout.name(topics.EVENT_TOPIC_BY_FAMILY[family])
    expected = partition_for(key_bytes, layout.partitions[home])
    if record.key != key_bytes or record.partition != expected:
        rekey = layout.name(REKEY_TOPIC[family])
        if record.topic == rekey:
            return dead_letter(record, "a key or partition the re-keying topic cannot hold", dlq)
        return OutRecord(rekey, expected, key_bytes, value, list(record.headers))
    try:
        meta = meta_of(record.event_id() or event_id_of(value), event.timestamp)
    except UnusableEvent as exc:
        return dead_letter(record, str(exc), dlq)
    return Webhook(event, key, meta, record)


REKEY_TOPIC: dict[Family, str] = {"course": topics.COURSE_REKEY, "learner": topics.LEARNER_REKEY}


def _why_not_a_webhook(exc: ValidationError, value: bytes) -> str:
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError:
        return "not JSON"
    if not isinstance(document, dict):
        return "not a JSON object"
    received = document.get("type")
    canonical_name = canonical_type(received)
    if canonical_name is None:
        shown = received[:100] if isinstance(received, str) else "missing or not a string"
        return f"unknown type {shown!r}"
    return f"{canonical_name} does not match its schema: {summarise_validation(exc, document)}"


class _KeyedProcessor(Generic[S]):
    """Folds a batch of one event family into per-key states (the tables' values)."""

    family: Family

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.dlq = layout.name(topics.STREAMS_DLQ)
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

    def process(self, records: Sequence[InRecord], load: Load) -> Step:
        step = Step()
        working: dict[str, S] = {}
        changed: set[str] = set()
        for record in records:
            read = read_webhook(record, self.family, self.layout)
            if isinstance(read, OutRecord):
                if read.topic == self.dlq:
                    reason = dict(read.headers)[headers.DLQ_REASON]
                    text = reason.decode() if isinstance(reason, bytes) else str(reason)
                    step.dead[_reason_kind(text)] += 1
                else:
                    step.rekeyed += 1
                step.outputs.append(read)
                continue
            state = working.get(read.key)
            if state is None:
                raw = load(read.key)
                state = working[read.key] = self.decode(raw) if raw else self.new_state(read.key)
            if self.seen(state, read.meta):
                step.repeats += 1
                continue
            for output in self.apply(state, read):
                step.outputs.append(self._out_record(output, record))
            changed.add(read.key)
            step.applied[read.event.CANONICAL_TYPE] += 1
        for key in changed:
            partition = partition_for(key.encode(), self._table_partitions)
            step.states[key] = (partition, self.encode(working[key]))
        return step

    def _out_record(self, output: Output, cause: InRecord) -> OutRecord:
        return OutRecord(
            self.layout.name(output.topic),
            None,
            output.key.encode(),
            output.value.model_dump_json().encode(),
            [
                (headers.EVENT_ID, output.event_id.encode()),
                (headers.EVENT_TYPE, output.event_type.encode()),
                (headers.RECEIVED_AT, cause.received_at()),
            ],
        )


class CourseProcessor(_KeyedProcessor[CourseEntry]):
    """``edume.course.events`` into the catalog."""

    family: Family = "course"

    def new_state(self, key: str) -> CourseEntry:
        return CourseEntry(int(key))

    def decode(self, data: bytes) -> CourseEntry:
        return decode_course(data)

    def encode(self, state: CourseEntry) -> bytes:
        return encode_course(state)

    def seen(self, state: CourseEntry, meta: Meta) -> bool:
        return meta.event_id in state.event_ids

    def apply(self, state: CourseEntry, webhook: Webhook) -> list[Output]:
        event: CourseEvent = webhook.event
        apply_course_event(state, event, webhook.meta)
        return []


class LearnerProcessor(_KeyedProcessor[LearnerState]):
    """``edume.learner.events`` into learner progress, deciding mandatory completions."""

    family: Family = "learner"

    def __init__(self, layout: Layout, replica: ReplicaView) -> None:
        super().__init__(layout)
        self.replica = replica

    def new_state(self, key: str) -> LearnerState:
        return LearnerState(int(key))

    def decode(self, data: bytes) -> LearnerState:
        return decode_learner(data)

    def encode(self, state: LearnerState) -> bytes:
        return encode_learner(state)

    def seen(self, state: LearnerState, meta: Meta) -> bool:
        return meta.event_id in state.event_ids

    def apply(self, state: LearnerState, webhook: Webhook) -> list[Output]:
        event: LearnerEvent = webhook.event
        replica = self.replica
        return learner_step(state, event, webhook.meta, replica.policies, replica.catalog)


def check_policies(records: Sequence[InRecord], layout: Layout) -> Step:
    """``training.policies``: every worker reads all of it into its policy book; the owner of
    a partition only sends what cannot be read there to ``streams.dlq``."""
    step = Step()
    dlq = layout.name(topics.STREAMS_DLQ)
    for record in records:
        try:
            parse_policy_record(record.key, record.value)
        except UnusableEvent as exc:
            step.outputs.append(dead_letter(record, str(exc), dlq))
            step.dead[_reason_kind(str(exc))] += 1
        else:
            step.applied[topics.TRAINING_POLICIES] += 1
    return step
