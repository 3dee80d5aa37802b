"""``catalog import`` without a broker: a file's lines read into courses, each bad line
reported by its number and why, nothing published while one is bad; the records written,
and read back by the course agent (dead letters with a reason, tombstones ignored) and
folded into the catalog."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemas.outputs import CatalogImport
from streams.core import headers, topics
from streams.core.catalog_imports import (
    FIELDS,
    BadLine,
    import_record,
    parse_line,
    parse_lines,
    read_import,
)
from streams.core.errors import EdumeStreamsError
from streams.core.records import InRecord, Layout, OutRecord, partition_for
from streams.core.state.catalog import IMPORT_RANK
from streams.core.state.codec import decode_course
from streams.core.state.common import short_id
from streams.core.webhooks import Webhook
from streams.kafka.clients import KafkaConnection
from streams.settings import Settings
from streams.tools import catalog_import
from streams.tools.cli import main
from streams.worker.processing import CourseProcessor
from streams.worker.replica import Replica

LAYOUT = Layout.from_catalog("p.")
IMPORTS = LAYOUT.name(topics.CATALOG_IMPORTS)
AT = "2026-03-01T10:00:00.000Z"


def line(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"courseId": 22299, "courseKey": "tips_for_good_mental_health7506",
                           "groupId": 12779, "teamIds": [55526], "moduleIds": [24775],
                           "published": True, "deleted": False}
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not ...}


def raw(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def reason(doc: Any) -> str:
    with pytest.raises(BadLine) as caught:
        parse_line(doc if isinstance(doc, bytes) else raw(doc), AT)
    return str(caught.value)


def test_a_line_is_a_course_stamped_with_the_commands_time() -> None:
    course = parse_line(raw(line()), AT)
    assert course == CatalogImport(
        courseId=22299, courseKey="tips_for_good_mental_health7506", groupId=12779,
        teamIds=[55526], moduleIds=[24775], published=True, deleted=False, importedAt=AT)
    assert list(CatalogImport.model_fields) == [*FIELDS, "importedAt"]
    # A key or module list the source does not give is null: the catalog keeps the events'.
    unknown = parse_line(raw(line(courseKey=None, moduleIds=None)), AT)
    assert (unknown.courseKey, unknown.moduleIds) == (None, None)


@pytest.mark.parametrize(
    ("doc", "why"),
    [
        (b"{not json", "not JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[1, 2]", "not a JSON object"),
        (line(teamId=[1]), "unknown field 'teamId' (a line has exactly courseId, courseKey"),
        (line(importedAt=AT), "importedAt is the command's to set, not the file's (see --as-of)"),
        (line(moduleIds=..., deleted=...), "missing moduleIds, deleted"),
        (line(courseId="22299"), "courseId: Input should be a valid integer"),
        (line(courseId=0), "courseId: Input should be greater than or equal to 1"),
        (line(courseId=2**53), "courseId: Input should be less than or equal to"),
        (line(groupId=1.5), "groupId: Input should be a valid integer"),
        (line(teamIds=[1, True]), "teamIds.1: Input should be a valid integer"),
        (line(teamIds=55526), "teamIds: Input should be a valid list"),
        (line(published="yes"), "published: Input should be a valid boolean"),
        (line(deleted=None), "deleted: Input should be a valid boolean"),
        (line(courseKey=7), "courseKey: Input should be a valid string"),
    ],
)
def test_a_bad_line_says_what_is_wrong_with_it(doc: Any, why: str) -> None:
    assert why in reason(doc)


def test_bad_lines_are_reported_by_number_and_the_good_ones_kept_in_order() -> None:
    lines = [
        raw(line(courseId=1)),
        b"",
        b"   ",
        raw(line(courseId="2")),
        raw(line(courseId=3)),
        raw(line(courseId=1, published=False)),  # a course twice: the second line is refused
        b"{",
    ]
    plan = parse_lines(lines, AT)
    assert [c.courseId for c in plan.courses] == [1, 3]
    assert [e.text() for e in plan.errors] == [
        "line 4: courseId: Input should be a valid integer",
        "line 6: courseId 1 is on line 1 too",
        "line 7: not JSON (unexpected end of data: line 1 column 2 (char 1))",
    ]


def test_a_byte_order_mark_and_windows_line_ends_are_read() -> None:
    data = b"\xef\xbb\xbf" + raw(line(courseId=1)) + b"\r\n" + raw(line(courseId=2)) + b"\r\n"
    plan = parse_lines(data.splitlines(), AT)
    assert [c.courseId for c in plan.courses] == [1, 2] and not plan.errors


def test_the_record_is_keyed_by_course_and_identified_by_its_value() -> None:
    course = parse_line(raw(line()), AT)
    record = import_record(course, "2026-03-02T00:00:00.000Z")
    assert record.key == b"22299"
    assert orjson.loads(record.value) == {**line(), "importedAt": AT}
    assert dict(record.headers) == {
        headers.EVENT_ID: hashlib.sha256(record.value).hexdigest().encode(),
        headers.EVENT_TYPE: b"catalog.import",
        headers.RECEIVED_AT: b"2026-03-02T00:00:00.000Z",
    }
    # the same course at the same time is the same record, whenever it is written again
    assert import_record(parse_line(raw(line()), AT), "2027-01-01T00:00:00.000Z").headers[0] \
        == record.headers[0]


def test_the_topic_is_co_partitioned_with_the_course_events_and_compacted() -> None:
    spec = topics.BY_NAME[topics.CATALOG_IMPORTS]
    assert spec.partitions == topics.BY_NAME[topics.COURSE_EVENTS].partitions == 4
    assert spec.kafka_configs()["cleanup.policy"] == "compact" and not spec.internal
    (group,) = [g for g in topics.COPARTITIONED if topics.COURSE_EVENTS in g]
    assert topics.CATALOG_IMPORTS in group


# ------------------------------------------------------------ read back by the workers


def in_record(value: bytes | None, key: bytes | None = b"22299", *,
              partition: int | None = None, offset: int = 0,
              received_at: bytes = b"2026-03-01T10:00:05.000Z",
              event_id: bytes | None = None) -> InRecord:
    if partition is None:
        partition = partition_for(key or b"", 4)
    hdrs = [(headers.RECEIVED_AT, received_at)]
    if event_id is not None:
        hdrs.append((headers.EVENT_ID, event_id))
    return InRecord(IMPORTS, partition, offset, key, value, hdrs, 1_772_359_205_000)


def value(**changes: Any) -> bytes:
    return raw({**line(), "importedAt": AT, **changes})


def test_an_import_record_reads_as_the_course_at_its_time_and_rank() -> None:
    read = read_import(in_record(value(), event_id=b"ab" * 32), LAYOUT)
    assert isinstance(read, Webhook)
    assert read.key == "22299" and read.event.published is True
    assert read.meta.event_id == "ab" * 32 and read.meta.timestamp == AT
    without_id = read_import(in_record(value()), LAYOUT)
    assert isinstance(without_id, Webhook)
    assert without_id.meta.event_id == hashlib.sha256(value()).hexdigest()
    # another writer's extra fields are ignored (a newer writer, an older worker)
    assert isinstance(read_import(in_record(value(title="x")), LAYOUT), Webhook)


def test_a_tombstone_un_imports_nothing_and_is_no_dead_letter() -> None:
    assert read_import(in_record(None), LAYOUT) is None


@pytest.mark.parametrize(
    ("record", "why"),
    [
        (in_record(b"{nope"), "not JSON"),
        (in_record(b"[]"), "not a JSON object"),
        (in_record(value(teamIds=["1"])),
         "catalog.import does not match its schema: teamIds.0: Input should be a valid integer"),
        (in_record(value(), key=b"22300", partition=partition_for(b"22299", 4)),
         "not under the key and at the partition of its courseId"),
        (in_record(value(), partition=(partition_for(b"22299", 4) + 1) % 4),
         "not under the key and at the partition of its courseId"),
        (in_record(value(importedAt="yesterday")),
         "importedAt: timestamp 'yesterday' is not an RFC 3339 time"),
        (in_record(value(), received_at=b"2026-03-01T08:00:00.000Z"),
         "an import stamped 2h after it was received (clock skew over MAX_CLOCK_SKEW, 1h)"),
    ],
)
def test_an_unusable_import_is_a_dead_letter_with_its_reason(record: InRecord, why: str) -> None:
    out = read_import(record, LAYOUT)
    assert isinstance(out, OutRecord) and out.topic == LAYOUT.name(topics.STREAMS_DLQ)
    hdrs = dict(out.headers)
    assert why in hdrs[headers.DLQ_REASON].decode()
    assert hdrs[headers.DLQ_SOURCE] == record.source.encode() and out.value == record.value


class Store(dict[str, bytes]):
    def load(self, key: str) -> bytes | None:
        return self.get(key)


def course_event(kind: str, at: str, teams: list[int]) -> bytes:
    return raw({"type": kind, "timestamp": at, "payload": {
        "group": {"groupId": 12779}, "teams": [{"teamId": t} for t in teams],
        "course": {"courseId": 22299, "courseKey": "k"}, "modules": [], "version": 1}})


def test_the_course_agent_folds_imports_with_the_events_in_any_order() -> None:
    """An import of a course nobody sent events for makes it known and published; a later
    course.unpublished wins over it, whichever the agent reads first."""
    imported = in_record(value(), offset=0)
    events_topic = LAYOUT.name(topics.COURSE_EVENTS)
    unpublished_value = course_event("course.unpublished", "2026-03-01T10:30:00.000Z", [9])
    unpublished = InRecord(events_topic, partition_for(b"22299", 4), 0, b"22299",
                           unpublished_value, [(headers.RECEIVED_AT, b"2026-03-01T10:30:00Z")],
                           0)
    proc = CourseProcessor(LAYOUT)

    store = Store()
    step = proc.process([imported], store.load)
    assert step.outputs == [] and step.applied == {"catalog.import": 1}
    partition, state = step.states["22299"]
    assert partition == partition_for(b"22299", 4)
    entry = decode_course(state)
    assert entry.is_published is True and entry.team_ids == [55526]
    assert entry.published is not None and entry.published.rank == IMPORT_RANK
    store["22299"] = state
    again = proc.process([imported, in_record(None, offset=1)], store.load)
    assert again.repeats == 1 and again.states == {} and again.outputs == []
    after = proc.process([unpublished], store.load)
    assert decode_course(after.states["22299"][1]).view()["published"] is False

    other_order = proc.process([unpublished, imported], Store().load)
    assert decode_course(other_order.states["22299"][1]).view() \
        == decode_course(after.states["22299"][1]).view()


def test_the_course_agent_sends_a_bad_import_to_the_dlq_and_goes_on() -> None:
    proc = CourseProcessor(LAYOUT)
    bad = in_record(b"{nope", offset=0)
    good = in_record(value(), offset=1)
    step = proc.process([bad, good], Store().load)
    (dead,) = step.outputs
    assert dead.topic == "p.streams.dlq" and dead.cause == 0
    assert dict(dead.headers)[headers.DLQ_REASON] == b"not JSON"
    assert step.dead == {"not_JSON": 1} and list(step.states) == ["22299"]


def test_every_workers_copy_folds_the_imports_the_course_agent_folds() -> None:
    replica = Replica(KafkaConnection("127.0.0.1:9"), LAYOUT)
    replica._apply_import(in_record(value(published=False), offset=0))
    replica._apply_import(in_record(value(), offset=1))  # the same course again, the same time
    replica._apply_import(in_record(None, offset=2))  # a tombstone un-imports nothing
    replica._apply_import(in_record(b"{nope", offset=3))  # the agent dead-letters it
    moved = (partition_for(b"22299", 4) + 1) % 4
    replica._apply_import(in_record(value(courseId=22300), key=b"22300", partition=moved))
    entry = replica.catalog[22299]
    # Two imports of one instant (not one file's: two runs): the event id orders them.
    winner = max([value(published=False), value()],
                 key=lambda v: short_id(hashlib.sha256(v).hexdigest()))
    assert entry.is_published is orjson.loads(winner)["published"]
    assert entry.applied.count == 2 and list(replica.catalog) == [22299]
    received = [(headers.RECEIVED_AT, b"2026-03-01T10:30:00.000Z")]
    replica._apply_event(course_event("course.unpublished", "2026-03-01T09:00:00.000Z", [1]),
                         received, 0)
    assert entry.team_ids == [55526]  # older than the import: it loses
    replica._apply_event(course_event("course.published", "2026-03-01T10:00:01.000Z", [1]),
                         received, 0)
    assert entry.is_published is True and entry.team_ids == [1]


# ------------------------------------------------------------------------ the command


def test_the_command_reports_every_bad_line_and_publishes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "courses.jsonl"
    path.write_bytes(b"\n".join([raw(line(courseId=1)), b"nope", raw(line(courseId=-3))]))
    out, err = io.StringIO(), io.StringIO()
    # Nothing reaches the broker (there is none at this address) when a line is bad.
    settings = Settings(kafka_bootstrap_servers="127.0.0.1:9")
    code = catalog_import.run_import(settings, str(path), as_of_ms=None, dry_run=False,
                                     out=out, err=err)
    assert code == 1
    first, second = err.getvalue().splitlines()
    assert first.startswith(f"{path}: line 2: not JSON (")
    assert second == f"{path}: line 3: courseId: Input should be greater than or equal to 1"
    assert out.getvalue() == ("0 courses published to catalog.imports, 2 lines refused: "
                              "nothing is published while a line is bad (1 good line)\n")


def test_a_dry_run_reads_standard_input_and_counts_the_courses() -> None:
    data = raw(line(courseId=1)) + b"\n" + raw(line(courseId=2)) + b"\n"
    out, err = io.StringIO(), io.StringIO()
    settings = Settings(kafka_bootstrap_servers="127.0.0.1:9", topic_prefix="acme.")
    code = catalog_import.run_import(settings, "-", as_of_ms=1_772_359_200_000, dry_run=True,
                                     out=out, err=err, stdin=io.BytesIO(data))
    assert code == 0 and err.getvalue() == ""
    assert out.getvalue() == ("2 courses would be published to acme.catalog.imports "
                              "(importedAt 2026-03-01T10:00:00.000Z), 0 lines refused; "
                              "--dry-run: nothing written\n")


def test_an_empty_file_is_no_import(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"\n\n")
    out = io.StringIO()
    code = catalog_import.run_import(Settings(), str(path), as_of_ms=None, dry_run=True,
                                     out=out, err=io.StringIO())
    assert code == 1 and "holds no course" in out.getvalue()


def test_as_of_is_the_import_time_and_may_not_be_in_the_future() -> None:
    assert catalog_import.imported_at(None, 1_772_359_200_123) == "2026-03-01T10:00:00.123Z"
    assert catalog_import.imported_at(1_772_359_200_000, 1_772_359_200_001) \
        == "2026-03-01T10:00:00.000Z"
    with pytest.raises(EdumeStreamsError, match="is in the future"):
        catalog_import.imported_at(1_772_359_200_001, 1_772_359_200_000)


def test_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "courses.jsonl"
    path.write_bytes(raw(line()) + b"\n")
    assert main(["catalog", "import", str(path), "--dry-run", "--as-of", "2026-03-01"]) == 0
    assert "1 course would be published to catalog.imports (importedAt " \
        "2026-03-01T00:00:00.000Z)" in capsys.readouterr().out
    assert main(["catalog", "import", str(path), "--as-of", "2999-01-01"]) == 2
    assert "--as-of 2999-01-01T00:00:00.000Z is in the future" in capsys.readouterr().err
    assert main(["catalog", "import", str(tmp_path / "missing.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["catalog", "import", str(path), "--as-of", "yesterday"])
    assert "--as-of takes an RFC 3339 time" in capsys.readouterr().err


def test_the_course_agent_reads_the_imports_under_the_input_guard() -> None:
    """Every input topic is under the consumer's delivery and commit guard (``INPUT_TOPICS``);
    the imports are one, co-partitioned with the course events the same agent reads."""
    from streams.worker.app import INPUT_TOPICS

    assert topics.CATALOG_IMPORTS in INPUT_TOPICS and topics.COURSE_EVENTS in INPUT_TOPICS
