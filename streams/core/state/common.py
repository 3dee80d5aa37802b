"""What every reducer shares: event identity, time and last-writer-wins registers.

State here is a pure function of the set of events applied, never of the order they came
in. Every field is one of a few merge rules that are commutative, associative and
idempotent, so applying any permutation of any duplication of a key's events gives the
state that applying each once in timestamp order gives:

- a register that keeps the value of the latest event (``later``);
- a register that keeps the value of the earliest event (``earlier``);
- a set that only grows (union).

Events are ordered by ``(timestamp, rank, event id)``: the timestamp eduMe sent, then the
event's rank in its subject's life (a course is added before it is published, a learner
added before they start a lesson: each reducer ranks its event types), then the event id,
so that two events of the same millisecond still have one order everywhere, and the one
their meaning gives where there is one. eduMe's own samples stamp every event of a course
with the same millisecond.

What a state remembers of the events applied to it is bounded by its content, not by its
history (``Applied``): how many were applied and the ids of the latest ``RECENT_IDS``. The
merge rules above make the content exact whatever repeats (applying an event twice
changes nothing), so the ids serve only to skip a repeat cheaply and to count each event
once; see ``Applied`` for which repeats that covers.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any, NamedTuple

from pydantic import BaseModel

from streams.core.errors import EdumeStreamsError


class UnusableEvent(EdumeStreamsError, ValueError):
    """An event that passed its schema but cannot be applied (say, a timestamp that is not a
    time); a worker sends it to the DLQ with this message as the reason."""


class Meta(NamedTuple):
    """What a reducer needs besides the event itself: its id and its time."""

    event_id: str
    """Lowercase hex SHA-256 of the event's JSON.stringify form (the ingress's event id)."""
    ts: int
    """The event's ``timestamp`` in microseconds since the epoch (UTC)."""
    timestamp: str
    """The event's ``timestamp`` as eduMe sent it."""
    rank: int = 0
    """The event's place among events of the same timestamp (set by its reducer)."""
    short: str = ""
    """``short_id(event_id)`` (``meta_of`` computes it once per event)."""

    def versioned(self, rank: int) -> Meta:
        """This event's meta with its rank and short id: what its registers are stamped
        with."""
        return self._replace(rank=rank, short=self.short or short_id(self.event_id))


class Stamped(NamedTuple):
    """A value with the version of the event that set it: ``(ts, rank, event_id)``."""

    ts: int
    event_id: str
    """The event's short id (``short_id``): it only breaks ties, so 64 bits are enough
    (states written before version 2 hold whole ids, which order as well)."""
    value: Any
    rank: int = 0

    @property
    def order(self) -> tuple[int, int, str]:
        """The version: registers keep the value of the latest or the earliest."""
        return (self.ts, self.rank, self.event_id)


def stamp(meta: Meta, value: Any) -> Stamped:
    """``value`` versioned by the event ``meta`` describes."""
    return Stamped(meta.ts, meta.short or short_id(meta.event_id), value, meta.rank)


def later(current: Stamped | None, candidate: Stamped) -> Stamped:
    """The register of the latest event: ``candidate`` if it is newer than ``current``."""
    if current is None or candidate.order > current.order:
        return candidate
    return current


def earlier(current: Stamped | None, candidate: Stamped) -> Stamped:
    """The register of the earliest event: ``candidate`` if it is older than ``current``."""
    if current is None or candidate.order < current.order:
        return candidate
    return current


def latest(a: Stamped | None, b: Stamped | None) -> Stamped | None:
    """Two registers of the latest event merged."""
    return a if b is None else later(a, b)


def earliest(a: Stamped | None, b: Stamped | None) -> Stamped | None:
    """Two registers of the earliest event merged."""
    return a if b is None else earlier(a, b)


def is_newer(candidate: Stamped, than: Stamped | None) -> bool:
    """Whether ``candidate`` comes after ``than`` (anything comes after nothing)."""
    return than is None or candidate.order > than.order


RECENT_IDS = 256
"""Event ids a state remembers (the latest applied)."""
def short_id(event_id: str) -> str:
    """What a state keeps of an event id: 64 bits of its BLAKE2b hash, in hex. Hashed rather
    than cut, since ids given by other producers (a link request's ``edume-event-id``, say)
    need not be random: ``req-000001`` and ``req-000002`` share every prefix but the last.
    Two different ids among a state's ``RECENT_IDS`` share a short id with odds of about
    2^-48."""
    return hashlib.blake2b(event_id.encode(), digest_size=8).hexdigest()


class Applied:
    """What a state remembers of the events applied to it: how many, and the short ids
    (``short_id``) of the latest ``RECENT_IDS``, oldest first.

    Guarantees, given that every reducer's merge rules are idempotent:
    - the state's content is exact whatever repeats, however late (a batch redelivered
      after a crash, the same event published by two ingress replicas, a replay, a
      redelivery from eduMe days later): a repeat applied again changes nothing;
    - a repeat arriving while its id is among the latest ``RECENT_IDS`` ids applied to the
      same key is skipped and not counted: ``count`` is the number of distinct events for
      every history whose repeats come within that window (a batch redelivered after a
      crash or a repeat by two ingress replicas, unless the key had more than
      ``RECENT_IDS`` events in between);
    - an older repeat is applied again (changing nothing) and counted again.
    """

    __slots__ = ("_index", "count", "recent")

    def __init__(self, count: int = 0, recent: list[str] | None = None) -> None:
        self.count = count
        self.recent: list[str] = list(recent or ())[-RECENT_IDS:]
        self._index: set[str] | None = None

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Applied) and self.count == other.count
                and self.recent == other.recent)

    def __repr__(self) -> str:
        return f"Applied(count={self.count}, recent={len(self.recent)} ids)"

    def seen(self, event_id: str, short: str = "") -> bool:
        """Whether ``event_id`` is among the latest ids applied; ``short``: its short id,
        if known."""
        index = self._index
        if index is None:
            index = self._index = set(self.recent)
        return (short or short_id(event_id)) in index

    def note(self, event_id: str, short: str = "") -> None:
        """Count an event applied and remember its id (forgetting the oldest); ``short``:
        its short id, if known."""
        short = short or short_id(event_id)
        self.count += 1
        self.recent.append(short)
        index = self._index
        if index is not None:
            index.add(short)
        if len(self.recent) > RECENT_IDS:
            dropped = self.recent.pop(0)
            if index is not None and dropped not in self.recent:
                index.discard(dropped)

    def merged(self, other: Applied) -> Applied:
        """Both histories in one (the larger count; the ids of both, the latest kept)."""
        recent = list(dict.fromkeys([*self.recent, *other.recent]))
        return Applied(max(self.count, other.count), recent)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_timestamp(text: str) -> int:
    """An RFC 3339 / ISO 8601 time as microseconds since the epoch; no zone means UTC.

    eduMe sends ``2022-07-13T12:03:54.530Z``; other offsets and precisions are accepted.
    """
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UnusableEvent(f"timestamp {text[:40]!r} is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def meta_of(event_id: str, timestamp: str) -> Meta:
    """The reducers' view of an event: its id, its short id and its parsed time."""
    return Meta(event_id, parse_timestamp(timestamp), timestamp, short=short_id(event_id))


def derived_id(cause_id: str, kind: str, subject: str) -> str:
    """The ``edume-event-id`` of a record a worker produces: lowercase hex SHA-256 of the
    causing event's id, the output kind and what the output is about, joined by ``|``.

    Processing the same cause again (after a crash, a redelivery, a replay) gives the same
    id, so a record written twice is recognisably the same record.
    """
    return hashlib.sha256(f"{cause_id}|{kind}|{subject}".encode()).hexdigest()


class Output(NamedTuple):
    """A record a reducer decided to produce; the shell adds the prefix, headers and time."""

    topic: str
    """Contract name of the topic (``TOPIC_PREFIX`` not applied)."""
    key: str
    value: BaseModel
    event_id: str
    """``edume-event-id``: derived from the cause (``derived_id``)."""
    event_type: str
    """``edume-event-type``."""
    partition_key: str | None = None
    """What the record is partitioned by (murmur2) when it is not its key: a learner's
    evidence goes by the userId, so one partition holds all of a learner's proofs."""
