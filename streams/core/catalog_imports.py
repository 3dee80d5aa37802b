"""Courses that predate the webhooks: the lines of an ``edume-streams catalog import`` file
read into ``catalog.imports`` records, and a record of that topic read back the way the
course agent and every worker's copy of the catalog fold it (``apply_course_import``).

A file is JSON lines, one course per line, with exactly the fields of ``FIELDS``. The
command checks every line before it writes anything, and writes nothing while a line is
bad: a half-imported catalog would refuse links to some courses of the file and not
others, and the operator would have to work out which. ``importedAt`` is the command's, not
the file's: the time the file describes the courses at (``--as-of``, or now).

Pure: nothing here reads a file or a topic.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, NamedTuple

import orjson
from pydantic import ValidationError

from schemas.outputs import CatalogImport
from streams.core import headers, topics
from streams.core.clock import MAX_CLOCK_SKEW_S, future_skew
from streams.core.headers import Headers
from streams.core.records import InRecord, Layout, OutRecord, dead_letter, partition_for
from streams.core.state.common import UnusableEvent, meta_of
from streams.core.validation import summarise_validation
from streams.core.webhooks import Webhook, json_object

FIELDS: Final = ("courseId", "courseKey", "groupId", "teamIds", "moduleIds", "published",
                 "deleted")
"""The fields of a line, every one required: what a course event says of a course."""

EVENT_TYPE: Final = CatalogImport.CANONICAL_TYPE
"""``edume-event-type`` of an import record."""

_BOM: Final = b"\xef\xbb\xbf"


class BadLine(ValueError):
    """A line of an import file that is not a course; the message says why, without
    echoing the line's values."""


class LineError(NamedTuple):
    """A line refused: its number (from 1) and why."""

    line: int
    reason: str

    def text(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class ImportPlan:
    """What a file comes to: its courses in file order, and the lines refused."""

    courses: list[CatalogImport] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)


def parse_line(raw: bytes, imported_at: str) -> CatalogImport:
    """One line as a course stamped ``imported_at``; ``BadLine`` saying why not."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if not _is_utf8(raw):
            raise BadLine("not UTF-8") from None
        raise BadLine(f"not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise BadLine("not a JSON object")
    if "importedAt" in doc:
        raise BadLine("importedAt is the command's to set, not the file's (see --as-of)")
    unknown = sorted(set(doc) - set(FIELDS))
    if unknown:
        shown = _names(repr(name[:40]) for name in unknown)
        raise BadLine(f"unknown {_plural(unknown, 'field')} {shown} (a line has exactly "
                      f"{_names(FIELDS)})")
    missing = [name for name in FIELDS if name not in doc]
    if missing:
        raise BadLine(f"missing {_names(missing)}")
    try:
        return CatalogImport.model_validate({**doc, "importedAt": imported_at})
    except ValidationError as exc:
        raise BadLine(summarise_validation(exc, doc)) from None


def parse_lines(lines: Iterable[bytes], imported_at: str) -> ImportPlan:
    """Every line of a file (numbered from 1; blank lines skipped), each course stamped
    ``imported_at``. A course on two lines is refused on the second: the file would say
    two things of it at one instant."""
    plan = ImportPlan()
    first_line: dict[int, int] = {}
    for number, raw in enumerate(lines, 1):
        if number == 1:
            raw = raw.removeprefix(_BOM)
        if not raw.strip():
            continue
        try:
            course = parse_line(raw, imported_at)
        except BadLine as exc:
            plan.errors.append(LineError(number, str(exc)))
            continue
        seen = first_line.setdefault(course.courseId, number)
        if seen != number:
            plan.errors.append(LineError(number, f"courseId {course.courseId} is on line "
                                                 f"{seen} too"))
            continue
        plan.courses.append(course)
    return plan


class ImportRecord(NamedTuple):
    """A course as the record ``catalog import`` writes."""

    key: bytes
    value: bytes
    headers: Headers


def import_record(course: CatalogImport, received_at: str) -> ImportRecord:
    """The record of one course: keyed by its courseId (decimal), its value the model's
    JSON, identified by the SHA-256 of that value, so that the same course imported again
    at the same ``importedAt`` is the same record, which the workers skip."""
    value = course.model_dump_json().encode()
    return ImportRecord(
        str(course.courseId).encode(),
        value,
        [
            (headers.EVENT_ID, hashlib.sha256(value).hexdigest().encode()),
            (headers.EVENT_TYPE, EVENT_TYPE.encode()),
            (headers.RECEIVED_AT, received_at.encode()),
        ],
    )


def read_import(record: InRecord, layout: Layout, *,
                max_skew_s: float = MAX_CLOCK_SKEW_S) -> Webhook | OutRecord | None:
    """A ``catalog.imports`` record as a usable import (``Webhook.event`` is the
    ``CatalogImport``), the dead letter to write instead, or None for a tombstone.

    A tombstone removes a course's record from the compacted topic and un-imports
    nothing. An import not at its courseId's key and partition (murmur2) is a dead letter:
    the topic is co-partitioned with the course events, and the course's state lives at
    that partition (re-keying it through the course events' re-keying topic would mix
    imports into a topic of webhooks). So is one stamped more than ``max_skew_s`` after it
    was received, as an event would be."""
    value = record.value
    if value is None:
        return None
    dlq = layout.name(topics.STREAMS_DLQ)
    try:
        course = CatalogImport.model_validate_json(value)
    except ValidationError as exc:
        return dead_letter(record, _why_not_an_import(exc, value), dlq)
    key = str(course.courseId)
    expected = partition_for(key.encode(), layout.partitions[record.topic])
    if record.key != key.encode() or record.partition != expected:
        return dead_letter(record, "not under the key and at the partition of its courseId "
                           "(murmur2 of the decimal courseId, as `catalog import` writes)", dlq)
    event_id = record.event_id() or hashlib.sha256(value).hexdigest()
    try:
        meta = meta_of(event_id, course.importedAt)
    except UnusableEvent as exc:
        return dead_letter(record, f"importedAt: {exc}", dlq)
    received_us = record.received_at_us()
    skew = None if received_us is None else future_skew(meta.ts, received_us, max_skew_s)
    if skew is not None:
        return dead_letter(record, f"an import {skew}", dlq)
    return Webhook(course, key, meta, record)


def _why_not_an_import(exc: ValidationError, value: bytes) -> str:
    document = json_object(value)
    if isinstance(document, str):
        return document
    return f"{EVENT_TYPE} does not match its schema: {summarise_validation(exc, document)}"


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _names(names: Iterable[str]) -> str:
    return ", ".join(names)


def _plural(items: list[str], noun: str) -> str:
    return noun if len(items) == 1 else f"{noun}s"
