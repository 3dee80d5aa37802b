"""What every reducer shares: event identity, time and last-writer-wins registers.

State here is a pure function of the set of events applied, never of the order they came
in. Every field is one of a few merge rules that are commutative, associative and
idempotent, so applying any permutation of any duplication of a key's events gives the
state that applying each once in timestamp order gives:

- a register that keeps the value of the latest event (``later``);
- a register that keeps the value of the earliest event (``earlier``);
- a set that only grows (union).

Events are ordered by ``(timestamp, event id)``: the timestamp eduMe sent, then the event
id, so that two events of the same millisecond still have one order everywhere.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any, NamedTuple

from pydantic import BaseModel

from streams.errors import EdumeStreamsError


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


class Stamped(NamedTuple):
    """A value with the version of the event that set it: ``(ts, event_id)``."""

    ts: int
    event_id: str
    value: Any


def stamp(meta: Meta, value: Any) -> Stamped:
    """``value`` versioned by the event ``meta`` describes."""
    return Stamped(meta.ts, meta.event_id, value)


def later(current: Stamped | None, candidate: Stamped) -> Stamped:
    """The register of the latest event: ``candidate`` if it is newer than ``current``."""
    if current is None or (candidate.ts, candidate.event_id) > (current.ts, current.event_id):
        return candidate
    return current


def earlier(current: Stamped | None, candidate: Stamped) -> Stamped:
    """The register of the earliest event: ``candidate`` if it is older than ``current``."""
    if current is None or (candidate.ts, candidate.event_id) < (current.ts, current.event_id):
        return candidate
    return current


def is_newer(candidate: Stamped, than: Stamped | None) -> bool:
    """Whether ``candidate`` comes after ``than`` (anything comes after nothing)."""
    return than is None or (candidate.ts, candidate.event_id) > (than.ts, than.event_id)


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
    """The reducers' view of an event: its id and its parsed time."""
    return Meta(event_id, parse_timestamp(timestamp), timestamp)


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
