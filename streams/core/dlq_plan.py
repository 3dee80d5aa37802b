"""What ``dlq replay`` does with each dead letter, decided without a broker: which records
are replayed, where to and with which headers, which are left and why, and the counts. The
shell (``streams.dlq``) reads the dead-letter topics, asks the planner, and writes.

The rules are described in ``streams.dlq``; every decision is a pure function of a dead
letter and the worker's layout (tested without a broker).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Literal

import orjson
from pydantic import ValidationError

from schemas import WEBHOOK_ADAPTER, canonical_type
from schemas.common import Family
from streams.core import topics
from streams.core.clock import MAX_CLOCK_SKEW_S, rfc3339, timestamp_skew
from streams.core.errors import MalformedJSON
from streams.core.headers import (
    DLQ_REASON,
    DLQ_SOURCE,
    EVENT_ID,
    EVENT_TYPE,
    RECEIVED_AT,
    SIGNATURE,
)
from streams.core.jsjson import DEFAULT_MAX_DEPTH, canonical
from streams.core.records import InRecord, Layout, OutRecord
from streams.core.state.common import UnusableEvent, derived_id
from streams.core.state.links import read_request, request_id
from streams.core.state.policies import parse_policy_record
from streams.core.validation import summarise_validation
from streams.core.webhooks import Webhook, event_id_of, read_webhook

Source = Literal["webhooks", "streams"]
SOURCES: tuple[Source, ...] = ("webhooks", "streams")
DLQ_TOPIC: dict[Source, str] = {"webhooks": topics.WEBHOOKS_DLQ, "streams": topics.STREAMS_DLQ}

RecordHeaders = list[tuple[str, bytes]]
_HEX64 = re.compile(r"[0-9a-f]{64}")
"""An event id, or a signature: a SHA-256, lowercase hex."""
_DEAD_LETTER_HEADERS = frozenset((EVENT_ID, DLQ_REASON, DLQ_SOURCE))
_REPLAYED_HEADERS = frozenset((EVENT_ID, EVENT_TYPE, RECEIVED_AT, DLQ_REASON, DLQ_SOURCE))
"""Headers a replay writes itself (the rest of a dead letter's are kept as they are)."""


# ------------------------------------------------------------------------ records


class DeadLetter(InRecord):
    """A record read from a dead-letter topic (``topic`` is the broker's name of the
    dead-letter topic, ``TOPIC_PREFIX`` included)."""

    __slots__ = ()

    @property
    def place(self) -> str:
        """``topic/partition/offset``: what ``edume-streams.dlq.replayed`` knows it by."""
        return self.source

    def text(self, name: str) -> str | None:
        value = self.header(name)
        return None if value is None else value.decode("utf-8", "replace")

    def time_ms(self) -> int | None:
        """When it was dead-lettered: the record's timestamp, or else its
        ``edume-received-at``; None when it has neither."""
        if self.timestamp_ms >= 0:
            return self.timestamp_ms
        stamp = self.text(RECEIVED_AT)
        if stamp is None:
            return None
        try:
            return parse_time(stamp)
        except ValueError:
            return None

    def received_at(self) -> bytes:
        """The original ``edume-received-at``, or the record's own time in that form."""
        value = self.header(RECEIVED_AT)
        if value is not None:
            return value
        return rfc3339(max(self.timestamp_ms, 0)).encode()


@dataclass(frozen=True, slots=True)
class Replay:
    """A dead letter's copy to republish."""

    topic: str
    """The broker's name of the topic it goes to."""
    key: bytes
    value: bytes
    headers: RecordHeaders
    replay_id: str
    """What the copy is known by: its ``edume-event-id``, or for a link request without
    one the SHA-256 of its value (the links agent's identity of such a request)."""

    @property
    def event_id(self) -> str | None:
        for k, v in self.headers:
            if k == EVENT_ID:
                return v.decode()
        return None


Verdict = Literal["still invalid", "not replayable"]


@dataclass(frozen=True, slots=True)
class Leave:
    """A dead letter left where it is, and why."""

    verdict: Verdict
    reason: str


Decision = Replay | Leave


# ------------------------------------------------------------------------ decisions


def decide_webhook(
    dead: DeadLetter, prefix: str, max_depth: int = DEFAULT_MAX_DEPTH, *,
    max_skew_s: float = MAX_CLOCK_SKEW_S,
) -> Decision:
    """An ``edume.webhooks.dlq`` record: the event the ingress would publish for its body
    today, or why it would still refuse it. Mirrors the ingress's path (parse, canonical
    type, ``WEBHOOK_ADAPTER``, routing id, ``EVENT_TOPIC_BY_FAMILY``, ``MAX_CLOCK_SKEW``
    against the original ``edume-received-at``)."""
    body = dead.value
    if body is None:
        return Leave("still invalid", "a tombstone (no body)")
    try:
        document, js = canonical(body, max_depth=max_depth)
    except MalformedJSON as exc:
        return Leave("still invalid", f"body is {exc}")
    if type(document) is not dict:
        return Leave("still invalid", "body is not a JSON object")
    received_type = document.get("type")
    event_type = canonical_type(received_type)
    if event_type is None:
        return Leave(
            "still invalid",
            f"unknown type {received_type[:100]!r}"
            if isinstance(received_type, str)
            else "type missing or not a string",
        )
    try:
        event = WEBHOOK_ADAPTER.validate_python(document)
    except ValidationError as exc:
        summary = summarise_validation(exc, document)
        return Leave("still invalid", f"{event_type} does not match its schema: {summary}")
    received_us = dead.received_at_us()
    if received_us is not None:
        skew = timestamp_skew(event.timestamp, received_us, max_skew_s)
        if skew is not None:
            return Leave("still invalid", f"{event_type} {skew}")
    event_id = _webhook_event_id(dead, js)
    return Replay(
        topics.prefixed(topics.EVENT_TOPIC_BY_FAMILY[event.FAMILY], prefix),
        str(event.routing_id).encode(),
        js,
        [
            (EVENT_ID, event_id.encode()),
            (EVENT_TYPE, event_type.encode()),
            (RECEIVED_AT, dead.received_at()),
            *_signature(dead),
        ],
        event_id,
    )


def _signature(dead: DeadLetter) -> RecordHeaders:
    """The signature the ingress verified, as it wrote it (the evidence of a completion
    replayed keeps it); nothing for a webhook authenticated by a bearer token."""
    value = dead.header(SIGNATURE)
    if value is None or not _HEX64.fullmatch(value.decode("ascii", "replace")):
        return []
    return [(SIGNATURE, value)]


def _webhook_event_id(dead: DeadLetter, js: bytes) -> str:
    """The eventId the ingress gave the webhook: its ``edume-event-id``, or its key, or
    else the SHA-256 of its ``JSON.stringify`` form (how the ingress computes it)."""
    for candidate in (dead.text(EVENT_ID), (dead.key or b"").decode("ascii", "replace")):
        if candidate and _HEX64.fullmatch(candidate):
            return candidate
    return hashlib.sha256(js).hexdigest()


def decide_worker_record(dead: DeadLetter, layout: Layout, *,
                         max_skew_s: float = MAX_CLOCK_SKEW_S) -> Decision:
    """A ``streams.dlq`` record: the copy to republish to its source topic, or why it is
    left. ``layout`` names the topics (prefix) and gives the event topics' partitions."""
    place = dead.text(DLQ_SOURCE) or (dead.key or b"").decode("utf-8", "replace")
    source = parse_place(place)
    if source is None:
        return Leave("not replayable", "no edume-dlq-source naming the record's place")
    topic = source[0]
    families = {layout.name(name): family for family, name in
                topics.EVENT_TOPIC_BY_FAMILY.items()}
    family = families.get(topic)
    if family is not None:
        return _event_record(dead, place, topic, family, layout, max_skew_s)
    if topic == layout.name(topics.LINK_REQUESTS):
        return _link_request(dead, place, topic)
    if topic == layout.name(topics.TRAINING_POLICIES):
        return _policy_record(dead)
    return Leave("not replayable", f"from {topic}: only event topics and "
                 f"{topics.LINK_REQUESTS} are replayed")


def parse_place(text: str) -> tuple[str, int, int] | None:
    """``topic/partition/offset`` as its parts; None when it is not one."""
    parts = text.rsplit("/", 2)
    if len(parts) != 3 or not parts[0]:
        return None
    topic, partition, offset = parts
    if not (partition.isascii() and partition.isdigit() and offset.isascii()
            and offset.isdigit()):
        return None
    return topic, int(partition), int(offset)


def original_event_id(dead: DeadLetter, place: str, candidates: Iterable[str]) -> str | None:
    """The ``edume-event-id`` the record carried before it was dead-lettered, when one of
    ``candidates`` is it. A dead letter carries ``derived_id(original, "streams.dlq",
    place)``, or ``derived_id(sha256(place), …)`` when the record had none; None then,
    and None when no candidate gives the dead letter's id back."""
    mark = dead.text(EVENT_ID)
    for candidate in candidates:
        if derived_id(candidate, topics.STREAMS_DLQ, place) == mark:
            return candidate
    return None


def _kept_headers(dead: DeadLetter) -> RecordHeaders:
    """The record's own headers, other than those this module sets."""
    return [(k, v) for k, v in dead.headers if k not in _REPLAYED_HEADERS]


def _dead_reason(out: OutRecord) -> str:
    for k, v in out.headers:
        if k == DLQ_REASON:
            return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
    return "refused by the worker"


def _event_record(dead: DeadLetter, place: str, topic: str, family: Family,
                  layout: Layout, max_skew_s: float) -> Decision:
    value = dead.value
    if value is None:
        return Leave("still invalid", "a tombstone (no value) on an event topic")
    # The ingress's id of the value; the original for every record the ingress wrote.
    computed = event_id_of(value)
    event_id = original_event_id(dead, place, [computed]) or computed
    offset = int(place.rsplit("/", 1)[1])
    dlq = layout.name(topics.STREAMS_DLQ)
    # The worker's rules, as the worker applies them: read where the record was (its key is
    # not kept), which gives the key and partition it belongs at, then read it there.
    received = (RECEIVED_AT, dead.received_at())
    probe = InRecord(topic, -1, offset, None, value, [received], dead.timestamp_ms)
    read: Webhook | OutRecord = read_webhook(probe, family, layout, max_skew_s=max_skew_s)
    if isinstance(read, OutRecord):
        if read.topic == dlq or read.partition is None:
            return Leave("still invalid", _dead_reason(read))
        placed = InRecord(topic, read.partition, offset, read.key, value,
                          [(EVENT_ID, event_id.encode()), received], dead.timestamp_ms)
        read = read_webhook(placed, family, layout, max_skew_s=max_skew_s)
        if isinstance(read, OutRecord):
            return Leave("still invalid", _dead_reason(read))
    return Replay(
        topic,
        read.key.encode(),
        value,
        [
            (EVENT_ID, event_id.encode()),
            (EVENT_TYPE, read.event.CANONICAL_TYPE.encode()),
            (RECEIVED_AT, dead.received_at()),
            *_kept_headers(dead),
        ],
        event_id,
    )


def _link_request(dead: DeadLetter, place: str, topic: str) -> Decision:
    request = read_request(dead.value)
    if isinstance(request, tuple):
        return Leave("still invalid", request[1])
    value = dead.value or b""
    original = original_event_id(dead, place, [hashlib.sha256(value).hexdigest()])
    record_headers: RecordHeaders = []
    if original is not None:
        record_headers.append((EVENT_ID, original.encode()))
    record_headers += [(k, v) for k, v in dead.headers if k not in _DEAD_LETTER_HEADERS]
    return Replay(topic, request.externalUserId.encode(), value, record_headers,
                  request_id(value, original))


def _policy_record(dead: DeadLetter) -> Decision:
    value = dead.value
    if value is None:
        return Leave("not replayable",
                     "a policy tombstone: the dead letter does not keep its key")
    course = _course_id_of(value)
    try:
        parse_policy_record(str(course if course is not None else 0).encode(), value)
    except UnusableEvent as exc:
        return Leave("still invalid", str(exc))
    return Leave(
        "not replayable",
        f"a policy is not republished: the record is on {topics.TRAINING_POLICIES}, which "
        "every worker reads from its beginning (set it anew with `edume-streams policy set`)",
    )


def _course_id_of(value: bytes) -> int | None:
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    course = document.get("courseId") if isinstance(document, dict) else None
    return course if type(course) is int and course >= 0 else None


# ------------------------------------------------------------------------ time


def parse_time(text: str) -> int:
    """An RFC 3339 time (``2026-01-02T03:04:05Z``, fractions and offsets allowed) or a date
    (``2026-01-02``, midnight UTC) as milliseconds since the epoch. A time without an
    offset is refused: it would be read in some zone the operator did not say."""
    value = text.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        day = date.fromisoformat(value)
        return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?"
                        r"([Zz]|[+-]\d{2}:\d{2})?", value):
        raise ValueError(f"not an RFC 3339 time or a date: {text!r}")
    moment = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset: add Z or +HH:MM")
    return round(moment.timestamp() * 1000)


# ------------------------------------------------------------------------ bookkeeping


class ReplayLog:
    """What ``edume-streams.dlq.replayed`` says: the dead letters replayed (by place, with
    the dead letter's own ``edume-event-id``, so that a dead-letter topic deleted and
    created anew, whose offsets start over, is not mistaken for the old one) and the
    copies republished (topic and identity)."""

    def __init__(self) -> None:
        self.places: dict[str, str | None] = {}
        self.copies: set[tuple[str, str]] = set()

    def load(self, key: bytes | None, value: bytes | None) -> None:
        """Take one record of the topic; records that are not ours are ignored."""
        if key is None or value is None:
            return
        try:
            entry = orjson.loads(value)
        except orjson.JSONDecodeError:
            return
        if not isinstance(entry, dict):
            return
        dlq_id = entry.get("dlqEventId")
        self.places[key.decode("utf-8", "replace")] = dlq_id if isinstance(dlq_id, str) else None
        topic, replay_id = entry.get("topic"), entry.get("replayId")
        if isinstance(topic, str) and isinstance(replay_id, str):
            self.copies.add((topic, replay_id))

    def replayed(self, dead: DeadLetter) -> bool:
        return dead.place in self.places and self.places[dead.place] == dead.text(EVENT_ID)

    def has_copy(self, replay: Replay) -> bool:
        return (replay.topic, replay.replay_id) in self.copies

    def add(self, dead: DeadLetter, replay: Replay) -> None:
        self.places[dead.place] = dead.text(EVENT_ID)
        self.copies.add((replay.topic, replay.replay_id))

    @staticmethod
    def record(dead: DeadLetter, replay: Replay, replayed_at_ms: int) -> tuple[bytes, bytes]:
        """The key and value that record ``dead`` as replayed by ``replay``."""
        value = {
            "dlqRecord": dead.place,
            "dlqEventId": dead.text(EVENT_ID),
            "topic": replay.topic,
            "replayId": replay.replay_id,
            "eventId": replay.event_id,
            "replayedAt": rfc3339(replayed_at_ms),
        }
        return dead.place.encode(), orjson.dumps(value)


@dataclass
class Tally:
    """What became of one dead-letter topic's records."""

    replayed: int = 0
    still_invalid: int = 0
    replayed_before: int = 0
    not_replayable: int = 0
    before_since: int = 0
    reasons: Counter[tuple[Verdict, str]] = field(default_factory=Counter)

    def line(self, name: str, *, dry_run: bool) -> str:
        verb = "would replay" if dry_run else "replayed"
        return (f"{name}: {self.replayed} {verb}, {self.still_invalid} still invalid, "
                f"{self.replayed_before} replayed before, {self.not_replayable} not "
                f"replayable, {self.before_since} before --since")

    def __iadd__(self, other: Tally) -> Tally:
        self.replayed += other.replayed
        self.still_invalid += other.still_invalid
        self.replayed_before += other.replayed_before
        self.not_replayable += other.not_replayable
        self.before_since += other.before_since
        self.reasons.update(other.reasons)
        return self


Action = Literal["publish", "record", "none"]


class Planner:
    """Decides, dead letter by dead letter, what a replay does, and counts it.

    ``publish``: republish the copy (then record the dead letter once it is acknowledged);
    ``record``: the same copy was already republished (from another dead letter), so only
    record this one; ``none``: leave it (counted by why)."""

    def __init__(self, replay_log: ReplayLog, *, prefix: str, layout: Layout,
                 max_depth: int = DEFAULT_MAX_DEPTH, since_ms: int | None = None,
                 max_skew_s: float = MAX_CLOCK_SKEW_S) -> None:
        self.log = replay_log
        self.prefix = prefix
        self.layout = layout
        self.max_depth = max_depth
        self.max_skew_s = max_skew_s
        self.since_ms = since_ms
        self.tallies: dict[str, Tally] = {}
        self._webhooks_dlq = topics.prefixed(topics.WEBHOOKS_DLQ, prefix)

    def tally(self, topic: str) -> Tally:
        return self.tallies.setdefault(topic, Tally())

    def decide(self, dead: DeadLetter) -> Decision:
        if dead.topic == self._webhooks_dlq:
            return decide_webhook(dead, self.prefix, self.max_depth,
                                  max_skew_s=self.max_skew_s)
        return decide_worker_record(dead, self.layout, max_skew_s=self.max_skew_s)

    def consider(self, dead: DeadLetter) -> tuple[Action, Replay | None]:
        tally = self.tally(dead.topic)
        if self.since_ms is not None:
            at = dead.time_ms()
            if at is None or at < self.since_ms:
                tally.before_since += 1
                return "none", None
        if self.log.replayed(dead):
            tally.replayed_before += 1
            return "none", None
        decision = self.decide(dead)
        if isinstance(decision, Leave):
            if decision.verdict == "still invalid":
                tally.still_invalid += 1
            else:
                tally.not_replayable += 1
            tally.reasons[(decision.verdict, decision.reason)] += 1
            return "none", None
        if self.log.has_copy(decision):
            tally.replayed_before += 1
            self.log.add(dead, decision)
            return "record", decision
        tally.replayed += 1
        self.log.add(dead, decision)
        return "publish", decision

    def total(self) -> Tally:
        total = Tally()
        for tally in self.tallies.values():
            total += tally
        return total
