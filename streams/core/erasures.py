"""Erasing a learner: the records of ``privacy.erasures`` and what the workers make of them.

``edume-streams forget`` writes one record, keyed ``user/{userId}`` or
``external/{externalUserId}``, whose value says when the erasure was asked for. Every
worker reads the whole topic (it is compacted and small: a record per learner erased) into
an ``ErasureBook``, and from then on:

- ignores the learner's events stamped before ``requestedAt`` (eduMe redelivering them, a
  replay or ``dlq replay`` putting them back, a record re-keyed): ``erased_before``;
- the worker that owns the learner's progress, or the external user's links, drops the
  state and writes a tombstone to the changelog. What each owner knows of the other name
  (a learner's external user id, a links state's userId) it writes back to the topic as a
  derived erasure with the same ``requestedAt``, so that the other owner erases too.

A learner may come back: events stamped after the erasure build a new state.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal, TypeVar

import orjson
from pydantic import ValidationError

from schemas.common import MAX_EXTERNAL_ID, MAX_ID
from schemas.outputs import Erasure as ErasureValue
from streams.core.clock import rfc3339
from streams.core.state.common import UnusableEvent, parse_timestamp
from streams.core.state.links import LinkState
from streams.core.state.progress import LearnerState

Kind = Literal["user", "external"]
USER: Kind = "user"
EXTERNAL: Kind = "external"
K = TypeVar("K", int, str)


@dataclass(frozen=True, slots=True)
class Erasure:
    """One learner to erase, named by ``kind`` (``user``: the eduMe userId, as a decimal
    string; ``external``: the external user id), and when the erasure was asked for."""

    kind: Kind
    subject: str
    requested_at_us: int

    @property
    def key(self) -> bytes:
        return f"{self.kind}/{self.subject}".encode()

    @property
    def requested_at(self) -> str:
        return rfc3339(self.requested_at_us // 1000)

    def value(self) -> bytes:
        """The record's value, as the contract gives it."""
        name = "userId" if self.kind == USER else "externalUserId"
        subject: int | str = int(self.subject) if self.kind == USER else self.subject
        return orjson.dumps({name: subject, "requestedAt": self.requested_at})

    def derived(self, kind: Kind, subject: str) -> Erasure:
        """The same erasure of the learner by its other name."""
        return Erasure(kind, subject, self.requested_at_us)


def erasure_of(kind: Kind, subject: str | int, requested_at_ms: int) -> Erasure:
    """An erasure as ``forget`` asks for it; ``ValueError`` for a subject no learner has."""
    text = str(subject)
    if kind == USER:
        if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_ID:
            raise ValueError(f"a userId is a decimal integer from 1 to {MAX_ID}")
        text = str(int(text))
    elif not text or len(text) > MAX_EXTERNAL_ID:
        raise ValueError(f"an externalUserId has 1 to {MAX_EXTERNAL_ID} characters")
    return Erasure(kind, text, requested_at_ms * 1000)


def parse_erasure_record(key: bytes | None, value: bytes | None) -> Erasure | None:
    """A ``privacy.erasures`` record as an ``Erasure`` (None for a tombstone: an erasure
    withdrawn from the topic, which un-erases nothing). ``UnusableEvent`` for a record no
    erasure can be read from: a key of neither form, a value that is not an erasure, or one
    that names another learner than its key."""
    text = (key or b"").decode("utf-8", errors="replace")
    kind, _, subject = text.partition("/")
    if kind not in (USER, EXTERNAL) or not subject:
        raise UnusableEvent("the key is neither user/{userId} nor external/{externalUserId}")
    if value is None:
        return None
    try:
        parsed = ErasureValue.model_validate_json(value)
        requested_at_us = parse_timestamp(parsed.requestedAt)
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False)
        where = ", ".join(".".join(str(p) for p in e["loc"]) or "(root)" for e in errors[:3])
        raise UnusableEvent(f"the value is not an erasure ({where})") from None
    named = (USER, str(parsed.userId)) if parsed.userId is not None else (
        EXTERNAL, parsed.externalUserId)
    if named != (kind, subject):
        raise UnusableEvent(f"the value names {named[0]}/{named[1]}, not its key {text}")
    return Erasure(kind, subject, requested_at_us)


def _later(book: dict[K, int], subject: K, requested_at_us: int) -> bool:
    known = book.get(subject)
    if known is not None and known >= requested_at_us:
        return False
    book[subject] = requested_at_us
    return True


class ErasureBook:
    """Every learner erased, and since when: the latest request per learner (a second
    ``forget`` of the same learner moves the time on)."""

    __slots__ = ("_externals", "_users")

    def __init__(self) -> None:
        self._users: dict[int, int] = {}
        self._externals: dict[str, int] = {}

    def apply(self, erasure: Erasure) -> bool:
        """Take an erasure; False when it tells nothing new (the learner is erased since
        then or later already)."""
        if erasure.kind == USER:
            return _later(self._users, int(erasure.subject), erasure.requested_at_us)
        return _later(self._externals, erasure.subject, erasure.requested_at_us)

    def user(self, user_id: int) -> int | None:
        """When ``user_id`` was erased (microseconds since the epoch), or None."""
        return self._users.get(user_id)

    def external(self, external_user_id: str) -> int | None:
        return self._externals.get(external_user_id)

    def erased_before(self, stamped_us: int, user_id: int | None = None,
                      external_user_id: str | None = None) -> bool:
        """Whether something of the learner stamped ``stamped_us`` predates its erasure."""
        since = None if user_id is None else self._users.get(user_id)
        if since is not None and stamped_us < since:
            return True
        since = None if external_user_id is None else self._externals.get(external_user_id)
        return since is not None and stamped_us < since

    def erasures(self) -> list[Erasure]:
        """Every erasure known, users first."""
        return ([Erasure(USER, str(u), t) for u, t in sorted(self._users.items())]
                + [Erasure(EXTERNAL, x, t) for x, t in sorted(self._externals.items())])

    def __len__(self) -> int:
        return len(self._users) + len(self._externals)

    def __bool__(self) -> bool:
        return bool(self._users or self._externals)


def learner_predates(state: LearnerState, book: ErasureBook) -> bool:
    """Whether a learner's state holds only what predates the learner's erasure (by userId
    or by its external user id): every event it applied was stamped before."""
    if state.last_event is None:
        return False
    since = book.user(state.user_id) or 0
    external = state.external_user_id
    if external is not None:
        since = max(since, book.external(external) or 0)
    return since > 0 and state.last_event.ts < since


def links_after_erasure(state: LinkState, book: ErasureBook) -> LinkState:
    """A links state less the links issued before its learner's erasure (by external user
    id, or by the userId it knows): all of it when none is left."""
    since = book.external(state.external_user_id) or 0
    if state.user_id is not None:
        since = max(since, book.user(state.user_id) or 0)
    if not since:
        return state
    kept = [link for link in state.links if _issued_us(link) >= since]
    if len(kept) == len(state.links):
        return state
    if not kept:
        return LinkState(state.external_user_id)
    return replace(state, links=kept)


def _issued_us(link: dict[str, Any]) -> int:
    try:
        return parse_timestamp(str(link.get("issuedAt")))
    except UnusableEvent:
        return 0  # not a time: older than any erasure
