"""An event-topic record read as an eduMe webhook, the way every worker and ``dlq replay``
read one: its model, its key, its id and time, or the dead letter or re-keyed record to
write instead. Pure: nothing here reads or writes a topic."""

from __future__ import annotations

import hashlib
from typing import Any, NamedTuple

import orjson
from pydantic import ValidationError

from schemas import WEBHOOK_ADAPTER, canonical_type
from schemas.common import Family
from streams.core import topics
from streams.core.clock import MAX_CLOCK_SKEW_S, future_skew
from streams.core.errors import EdumeStreamsError
from streams.core.jsjson import canonical
from streams.core.records import InRecord, Layout, OutRecord, dead_letter, partition_for
from streams.core.state.common import Meta, UnusableEvent, meta_of
from streams.core.validation import summarise_validation


class Webhook(NamedTuple):
    """A usable event: its model, its key and what the reducers need to know of it."""

    event: Any
    key: str
    meta: Meta
    record: InRecord


def reason_kind(reason: str) -> str:
    """A short label for metrics: the reason's first words, never data from the record."""
    for kind in ("not JSON", "unknown type", "does not match", "clock skew", "timestamp",
                 "tombstone", "family", "key", "value"):
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


def read_webhook(record: InRecord, family: Family, layout: Layout, *,
                 max_skew_s: float = MAX_CLOCK_SKEW_S) -> Webhook | OutRecord:
    """The record as a usable event of ``family``, or what to write instead of applying it
    (a dead letter, or the record re-keyed). An event stamped more than ``max_skew_s``
    after its receipt (``InRecord.received_at_us``) is a dead letter, as at the ingress:
    records written by other producers or replayed pass here without the ingress's check."""
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
    received_us = record.received_at_us()
    skew = None if received_us is None else future_skew(meta.ts, received_us, max_skew_s)
    if skew is not None:
        return dead_letter(record, skew, dlq)
    return Webhook(event, key, meta, record)


REKEY_TOPIC: dict[Family, str] = {"course": topics.COURSE_REKEY, "learner": topics.LEARNER_REKEY}


def json_object(value: bytes) -> dict[str, Any] | str:
    """A record value that failed its model, parsed again for the reason: the object, or
    why it is none ("not JSON", "not a JSON object")."""
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError:
        return "not JSON"
    if not isinstance(document, dict):
        return "not a JSON object"
    return document


def _why_not_a_webhook(exc: ValidationError, value: bytes) -> str:
    document = json_object(value)
    if isinstance(document, str):
        return document
    received = document.get("type")
    canonical_name = canonical_type(received)
    if canonical_name is None:
        shown = received[:100] if isinstance(received, str) else "missing or not a string"
        return f"unknown type {shown!r}"
    return f"{canonical_name} does not match its schema: {summarise_validation(exc, document)}"
