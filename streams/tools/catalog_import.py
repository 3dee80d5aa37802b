"""``edume-streams catalog import FILE``: courses that predate the webhooks onto
``catalog.imports``.

All or nothing: every line is checked first (``streams.core.catalog_imports``), each bad
one reported by its number, and nothing is written while one is bad. The courses are then
written keyed by courseId (murmur2, as every producer here) and acknowledged by the broker
(acks=all). Kafka gives no atomicity across records without a transactional producer
(and a ``TransactionalId`` ACL for the operator), so a broker failure half-way can leave
some courses written: the command says how many, and running it again with the same
``--as-of`` writes the same records again, which the workers skip.

Every course is stamped ``importedAt``: ``--as-of`` (the time of the export the file was
made from), or else now. The catalog folds an import as a course event of that time, so
the earlier the stamp, the fewer eduMe events it can override; a stamp in the future is
refused, since it would override events that have not happened yet.
"""

from __future__ import annotations

import sys
import time
from typing import BinaryIO, TextIO

from streams.core import topics
from streams.core.catalog_imports import ImportPlan, import_record, parse_lines
from streams.core.clock import rfc3339
from streams.core.errors import BrokerUnavailable, EdumeStreamsError
from streams.kafka.publisher import SyncWriter
from streams.settings import Settings

CLIENT_ID = "edume-streams-catalog-import"


def read_file(name: str, stdin: BinaryIO | None = None) -> bytes:
    """The file's bytes; ``-``: standard input."""
    if name == "-":
        return (stdin or sys.stdin.buffer).read()
    try:
        with open(name, "rb") as f:
            return f.read()
    except OSError as exc:
        raise EdumeStreamsError(f"cannot read {name}: {exc.strerror or exc}") from None


def imported_at(as_of_ms: int | None, now_ms: int) -> str:
    """``importedAt`` for ``--as-of`` (milliseconds since the epoch, or None: now)."""
    if as_of_ms is None:
        return rfc3339(now_ms)
    if as_of_ms > now_ms:
        raise EdumeStreamsError(
            f"--as-of {rfc3339(as_of_ms)} is in the future: an import stamped then would win "
            "over eduMe events that have not happened yet")
    return rfc3339(as_of_ms)


def publish(settings: Settings, plan: ImportPlan, *, timeout_s: float = 30.0) -> int:
    """Write every course of ``plan`` and wait for the broker's acknowledgements; the count
    written. ``BrokerUnavailable`` when some were not acknowledged, saying how many were."""
    topic = topics.prefixed(topics.CATALOG_IMPORTS, settings.topic_prefix)
    writer = SyncWriter(settings, client_id=CLIENT_ID, timeout_s=timeout_s)
    received_at = rfc3339(int(time.time() * 1000))
    for course in plan.courses:
        record = import_record(course, received_at)
        writer.send(topic, record.key, record.value, record.headers, tag=course.courseId,
                    what=f"course {course.courseId}")
    done = writer.finish()
    total = len(plan.courses)
    if len(done) < total:
        reason = writer.errors[0] if writer.errors else "no acknowledgement in time"
        as_of = plan.courses[0].importedAt if plan.courses else ""
        raise BrokerUnavailable(
            f"{len(done)} of {total} courses written to {topic} on "
            f"{settings.kafka_bootstrap_servers}: {reason}. Run the same command again with "
            f"--as-of {as_of}: the courses written already are then the same records, which "
            "the workers skip (`edume-streams topics create` creates the topic if it is "
            "missing)")
    return total


def run_import(settings: Settings, name: str, *, as_of_ms: int | None, dry_run: bool,
               out: TextIO, err: TextIO, stdin: BinaryIO | None = None) -> int:
    """The command: 0 when every course was written (or, ``dry_run``, would be), 1 when a
    line was refused or the file holds no course (nothing written); broker and file
    errors raise."""
    stamp = imported_at(as_of_ms, int(time.time() * 1000))
    shown = "standard input" if name == "-" else name
    plan = parse_lines(read_file(name, stdin).splitlines(), stamp)
    for error in plan.errors:
        print(f"{shown}: {error.text()}", file=err)
    topic = topics.prefixed(topics.CATALOG_IMPORTS, settings.topic_prefix)
    refused = len(plan.errors)
    if refused:
        print(f"0 courses published to {topic}, {refused} {_lines(refused)} refused: nothing "
              f"is published while a line is bad ({len(plan.courses)} good "
              f"{_lines(len(plan.courses))})", file=out)
        return 1
    if not plan.courses:
        print(f"0 courses published to {topic}: {shown} holds no course", file=out)
        return 1
    count = len(plan.courses)
    if dry_run:
        print(f"{count} {_courses(count)} would be published to {topic} (importedAt {stamp}), "
              "0 lines refused; --dry-run: nothing written", file=out)
        return 0
    publish(settings, plan)
    print(f"{count} {_courses(count)} published to {topic} (importedAt {stamp}), "
          "0 lines refused", file=out)
    return 0


def _lines(n: int) -> str:
    return "line" if n == 1 else "lines"


def _courses(n: int) -> str:
    return "course" if n == 1 else "courses"
