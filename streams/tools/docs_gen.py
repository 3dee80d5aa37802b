"""``python -m streams.tools.docs_gen``: write ``docs/topics.md``, the topic catalog for
platform teams.

The page is generated from the topic catalog (:mod:`streams.core.topics`), the co-partitioned
groups the workers check (:data:`streams.core.topics.COPARTITIONED`), the value schemas
``edume-streams schemas`` writes (:mod:`streams.tools.schema_export`) and the table below, which
says who writes and who reads each topic. A topic added to the catalog without an entry
here stops the generator (and the docs test), so it cannot go undocumented.

``--check`` writes nothing and exits 1 when the file differs from what would be written.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streams.core import headers, topics
from streams.core.topics import COPARTITIONED
from streams.tools.schema_export import topic_value_schemas

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "docs" / "topics.md"


@dataclass(frozen=True, slots=True)
class TopicDoc:
    """What the code does not say about a topic in one place: who writes it, who reads it,
    which headers its records carry and what order they come in."""

    produced_by: tuple[str, ...]
    consumed_by: tuple[str, ...]
    headers: tuple[str, ...]
    """Header names (from :mod:`streams.core.headers`) the project's producers write."""
    headers_note: str
    ordering: str


_STANDARD = (headers.EVENT_ID, headers.EVENT_TYPE, headers.RECEIVED_AT)

_INGRESS_ORDER = (
    "Per key. The ingress partitions by murmur2 of the key (as the Java client's default "
    "partitioner), so every record of one key is on one partition. It writes with acks=all "
    "and an idempotent producer (`KAFKA_ENABLE_IDEMPOTENCE`, default true; when false, one "
    "request in flight), so the records one ingress process writes to a partition stay in "
    "the order it wrote them, through retries. Several ingress replicas, and eduMe's own "
    "retries, give no order between them: a partition holds arrival order, not event order. "
    "Order by the value's `timestamp` (the workers' reducers do not depend on arrival order)."
)
_WORKER_ORDER = (
    "Per key. Workers partition by murmur2 of the key (librdkafka, acks=all, idempotent as "
    "`KAFKA_ENABLE_IDEMPOTENCE` says). A batch's records are handed to the producer in order; "
    "a record the broker did not take is sent again after the rest of its batch was reported, "
    "so two records of one key from one batch can change places after a failed write. A "
    "record written again after a crash carries the same `edume-event-id`."
)
_DLQ_ORDER = (
    "One partition: records are in the order they were written. The key identifies the "
    "record; it does not order anything."
)
_CHANGELOG_ORDER = (
    "Written by the worker that owns the partition, at the partition of the events that "
    "changed the state (murmur2 of the key modulo the partition count); a batch's states are "
    "written after its outputs and before its input offsets are committed. Compaction keeps "
    "the latest state per key."
)
_REKEY_ORDER = (
    "Written by a worker at the partition murmur2 of the key gives on the topic this one "
    "stands beside (same partition count), and read back by the same agent."
)

_INGRESS_HEADERS_NOTE = (
    "The ingress writes all three. A record another producer writes may lack them: the "
    "workers then take the SHA-256 of the value's `JSON.stringify` form as its id (what the "
    "ingress would have given it)."
)
_REKEY_HEADERS_NOTE = (
    "The original record's headers, unchanged (a record the ingress wrote carries "
    "`edume-event-id`, `edume-event-type` and `edume-received-at`)."
)
_WORKER_HEADERS_NOTE = (
    "`edume-event-id` is derived from the cause: SHA-256 of `<cause id>|<output kind>|"
    "<subject>`. `edume-event-type` is this topic's contract name. `edume-received-at` is "
    "copied from the record that caused this one (a reminder: the time it fired)."
)

TOPIC_DOCS: dict[str, TopicDoc] = {
    topics.COURSE_EVENTS: TopicDoc(
        produced_by=("ingress: authentic course webhooks that match their schema",),
        consumed_by=(
            "workers: `courses` agent (into the catalog table)",
            "platform teams",
        ),
        headers=_STANDARD,
        headers_note=_INGRESS_HEADERS_NOTE,
        ordering=_INGRESS_ORDER,
    ),
    topics.LEARNER_EVENTS: TopicDoc(
        produced_by=("ingress: authentic learner webhooks that match their schema",),
        consumed_by=(
            "workers: `learners` agent (into the progress table; decides completions, "
            "assignment links and reminders)",
            "platform teams",
        ),
        headers=_STANDARD,
        headers_note=_INGRESS_HEADERS_NOTE,
        ordering=_INGRESS_ORDER,
    ),
    topics.WEBHOOKS_DLQ: TopicDoc(
        produced_by=(
            "ingress: authentic webhooks with an unknown `type`, not matching their type's "
            "schema, or stamped more than `MAX_CLOCK_SKEW` after they were received, as the "
            "raw body",
        ),
        consumed_by=(
            "operators: `edume-streams read edume.webhooks.dlq`; `edume-streams dlq replay` (see "
            "operations.md)",
        ),
        headers=(*_STANDARD, headers.DLQ_REASON),
        headers_note=(
            "`edume-event-type` is absent when the type is unknown. `edume-dlq-reason` says "
            "why: `unknown type '…'`, `type missing or not a string`, `<type> does not "
            "match its schema: …`, or `<type> stamped … after it was received (clock skew "
            "over MAX_CLOCK_SKEW, …)`."
        ),
        ordering=_DLQ_ORDER,
    ),
    topics.TRAINING_POLICIES: TopicDoc(
        produced_by=(
            "`edume-streams policy set` / `policy unset` (a null value removes a policy)",
            "any client writing the same value",
        ),
        consumed_by=(
            "every worker, outside the consumer group, from the beginning (its copy of "
            "every policy)",
            "workers: `policies` agent (sends unreadable records to `streams.dlq`)",
            "`edume-streams policy list`",
        ),
        headers=(headers.EVENT_TYPE, headers.RECEIVED_AT),
        headers_note=(
            "The `policy` command writes `edume-event-type` (`policy.set` or `policy.unset`) "
            "and `edume-received-at`; readers need no header."
        ),
        ordering=(
            "The `policy` command partitions by murmur2 of the courseId; other writers may "
            "partition differently. Readers read every partition and keep, per course, the "
            "record with the latest timestamp (then partition, then offset), so where a "
            "record lands does not matter."
        ),
    ),
    topics.CATALOG_IMPORTS: TopicDoc(
        produced_by=(
            "`edume-streams catalog import FILE` (courses that predate the webhooks, all of "
            "a file's courses or none)",
            "any client writing the same value under the same key and partition",
        ),
        consumed_by=(
            "workers: `courses` agent (into the catalog table, folded as a course event "
            "stamped `importedAt`; sends unusable records to `streams.dlq`)",
            "every worker, outside the consumer group, from the beginning (its copy of the "
            "whole catalog)",
        ),
        headers=_STANDARD,
        headers_note=(
            "`catalog import` writes `edume-event-id` (SHA-256 of the value: the same course "
            "imported again at the same `importedAt` is the same record, applied once), "
            "`edume-event-type` (`catalog.import`) and `edume-received-at`. Without an id, "
            "the workers take the SHA-256 of the value."
        ),
        ordering=(
            "Per key: `catalog import` partitions by murmur2 of the courseId, and the topic "
            "is co-partitioned with `edume.course.events`; the `courses` agent sends a record "
            "under another key or at another partition to `streams.dlq` instead of using it. "
            "Order does not matter: an import counts as an event stamped `importedAt`, so "
            "eduMe events stamped later win, earlier ones lose, and at the same instant "
            "every eduMe event wins. A null value (tombstone) removes a course's record from "
            "the topic and un-imports nothing."
        ),
    ),
    topics.TRAINING_EVIDENCE: TopicDoc(
        produced_by=(
            "workers: `learners` agent, with each course completion (one record per learner "
            "and course; an earlier-stamped completion that arrives later replaces it)",
            "workers: a tombstone per completed course when the learner is erased "
            "(`edume-streams forget`)",
        ),
        consumed_by=(
            "workers: the query API's `GET /learners/{userId}/evidence` (the learner's "
            "partition)",
            "`edume-streams evidence`",
            "auditors' tools: the `event` field is the exact published value, the bytes "
            "eduMe signed; check `signature` with HMAC-SHA256 and the webhook secret",
        ),
        headers=_STANDARD,
        headers_note=_WORKER_HEADERS_NOTE,
        ordering=(
            "Per key. Compacted: the latest record per `{userId}/{courseId}` is the proof "
            "of that completion."
        ),
    ),
    topics.PRIVACY_ERASURES: TopicDoc(
        produced_by=(
            "`edume-streams forget --user-id N` / `--external-user-id X`",
            "workers: the owner of an erased learner's state writes the learner's other name "
            "(its external user id, or the userId its links name) as a derived erasure with "
            "the same `requestedAt`",
        ),
        consumed_by=(
            "every worker, outside the consumer group, from the beginning (its list of "
            "learners erased: their events stamped before `requestedAt` are ignored; the "
            "owners drop the learner's progress and links and write changelog tombstones)",
            "`edume-streams forget`, waiting for the derived erasures",
        ),
        headers=(headers.EVENT_TYPE, headers.RECEIVED_AT),
        headers_note=(
            "The `forget` command writes `edume-event-type` (`privacy.erasure`) and "
            "`edume-received-at`; readers need no header."
        ),
        ordering=(
            "One partition. Readers keep, per learner, the latest `requestedAt`; a null "
            "value (tombstone) withdraws the record from the topic and un-erases nothing."
        ),
    ),
    topics.MANDATORY_COMPLETED: TopicDoc(
        produced_by=(
            "workers: `learners` agent, once per learner and mandatory course completed",
        ),
        consumed_by=("downstream apps",),
        headers=_STANDARD,
        headers_note=_WORKER_HEADERS_NOTE,
        ordering=_WORKER_ORDER,
    ),
    topics.LINK_REQUESTS: TopicDoc(
        produced_by=("downstream apps", "`edume-streams request-link`"),
        consumed_by=("workers: `links` agent",),
        headers=(headers.EVENT_ID, headers.RECEIVED_AT),
        headers_note=(
            "Optional. A request's id is its `edume-event-id` (64 lowercase hex digits) when "
            "it has one, else the SHA-256 of its value: the same id is answered once. "
            "`request-link` writes `edume-received-at` only."
        ),
        ordering=(
            "Any partitioner. The `links` agent forwards a request that is not on the "
            "partition murmur2 gives its externalUserId to `edume-streams.links.rekey` and "
            "handles it from there. Requests are decided one by one, each once."
        ),
    ),
    topics.LINK_ISSUE: TopicDoc(
        produced_by=(
            "workers: `learners` agent (reasons `assignment` and `reminder`)",
            "workers: `links` agent (reason `request`)",
        ),
        consumed_by=("workers: `links` agent (signs the link)", "downstream apps"),
        headers=_STANDARD,
        headers_note=_WORKER_HEADERS_NOTE,
        ordering=(
            _WORKER_ORDER + " Co-partitioned with `links.requests`: the `links` agent sends a "
            "record that is not on the partition murmur2 gives its externalUserId to "
            "`streams.dlq` instead of using it."
        ),
    ),
    topics.LINK_ISSUED: TopicDoc(
        produced_by=("workers: `links` agent",),
        consumed_by=("downstream apps",),
        headers=_STANDARD,
        headers_note=_WORKER_HEADERS_NOTE,
        ordering=_WORKER_ORDER,
    ),
    topics.LINK_REJECTED: TopicDoc(
        produced_by=("workers: `links` agent",),
        consumed_by=("downstream apps (the requesters)", "operators (the reason says what to fix)"),
        headers=_STANDARD,
        headers_note=_WORKER_HEADERS_NOTE,
        ordering=_WORKER_ORDER,
    ),
    topics.STREAMS_DLQ: TopicDoc(
        produced_by=(
            "workers: every agent (`courses`, `learners`, `policies`, `links`), for a record "
            "it cannot use, or one whose output or new state the broker refused for good "
            "(the reason names the topic and the error)",
        ),
        consumed_by=(
            "operators: `edume-streams read streams.dlq`; `edume-streams dlq replay` (see "
            "operations.md)",
        ),
        headers=(*_STANDARD, headers.DLQ_REASON, headers.DLQ_SOURCE),
        headers_note=(
            "The record's own headers are kept, except that `edume-event-id` is replaced by "
            "one derived from the record's id (or from its place when it had none), and "
            "`edume-dlq-reason` (why) and `edume-dlq-source` (`topic/partition/offset`, the "
            "broker's topic name) are added; `edume-received-at` is added from the record's "
            "timestamp when it had none. `edume-event-type` is there only if the record had it."
        ),
        ordering=_DLQ_ORDER,
    ),
    topics.CATALOG_CHANGELOG: TopicDoc(
        produced_by=("workers: `courses` agent (the owner of the course's partition)",),
        consumed_by=(
            "workers: table recovery and standby copies (Faust)",
            "every worker, outside the consumer group, from the beginning (its copy of the "
            "whole catalog)",
        ),
        headers=(),
        headers_note="None.",
        ordering=_CHANGELOG_ORDER,
    ),
    topics.PROGRESS_CHANGELOG: TopicDoc(
        produced_by=("workers: `learners` agent and the reminders timer",),
        consumed_by=("workers: table recovery and standby copies (Faust)",),
        headers=(),
        headers_note="None.",
        ordering=_CHANGELOG_ORDER,
    ),
    topics.LINKS_CHANGELOG: TopicDoc(
        produced_by=("workers: `links` agent",),
        consumed_by=("workers: table recovery and standby copies (Faust)",),
        headers=(),
        headers_note="None.",
        ordering=_CHANGELOG_ORDER,
    ),
    topics.COURSE_REKEY: TopicDoc(
        produced_by=(
            "workers: `courses` agent, for a course event under another key or partition "
            "than murmur2 of its courseId gives",
        ),
        consumed_by=("workers: `courses` agent",),
        headers=(),
        headers_note=_REKEY_HEADERS_NOTE,
        ordering=_REKEY_ORDER,
    ),
    topics.LEARNER_REKEY: TopicDoc(
        produced_by=(
            "workers: `learners` agent, for a learner event under another key or partition "
            "than murmur2 of its userId gives",
        ),
        consumed_by=("workers: `learners` agent",),
        headers=(),
        headers_note=_REKEY_HEADERS_NOTE,
        ordering=_REKEY_ORDER,
    ),
    topics.LINK_REKEY: TopicDoc(
        produced_by=(
            "workers: `links` agent, for a link request under another key or partition "
            "than murmur2 of its externalUserId gives",
        ),
        consumed_by=("workers: `links` agent",),
        headers=(),
        headers_note="The original request's headers, unchanged.",
        ordering=_REKEY_ORDER,
    ),
    topics.DLQ_REPLAYED: TopicDoc(
        produced_by=(
            "`edume-streams dlq replay`: one record per dead letter replayed, written after "
            "the republished copy was acknowledged",
        ),
        consumed_by=(
            "`edume-streams dlq replay`: reads it all before replaying and skips the dead "
            "letters it names",
        ),
        headers=(),
        headers_note="None.",
        ordering="One partition. Compaction keeps the latest record per dead letter.",
    ),
}
"""Contract topic name (a :mod:`streams.core.topics` constant) → its producers, consumers,
headers and ordering."""


class UndocumentedTopics(Exception):
    """Catalog topics without a ``TOPIC_DOCS`` entry, or entries for no catalog topic."""


def check_coverage() -> None:
    """Every catalog topic has an entry, and every entry is a catalog topic."""
    names = {spec.name for spec in topics.CATALOG}
    missing = sorted(names - TOPIC_DOCS.keys())
    extra = sorted(TOPIC_DOCS.keys() - names)
    if missing or extra:
        raise UndocumentedTopics(
            "streams/tools/docs_gen.py TOPIC_DOCS must cover exactly the topic catalog: "
            f"missing {missing}, not in the catalog {extra}"
        )


def _duration(ms: int) -> str:
    days, rest = divmod(ms, 24 * 3600 * 1000)
    return f"{days} days" if not rest else f"{ms} ms"


def _retention(spec: topics.TopicSpec) -> str:
    if spec.compacted:
        return "compacted (`cleanup.policy=compact`): the latest record per key is kept, " \
            "with no time limit"
    return f"deleted after {_duration(spec.retention_ms)} (`cleanup.policy=delete`)"


def _fields(schema: dict[str, Any]) -> str:
    required = set(schema.get("required", ()))
    shown = [f"`{name}`" + ("" if name in required else " (optional)")
             for name in schema.get("properties", {})]
    return ", ".join(shown)


def _schema_line(name: str, schemas: dict[str, dict[str, Any]]) -> str:
    schema = schemas.get(name)
    if schema is None:
        return "none (internal topic: not part of the contract)"
    file_name = f"`{name}.schema.json`"
    mapping = schema.get("discriminator", {}).get("mapping")
    if mapping:
        types = ", ".join(f"`{t}`" for t in sorted(mapping))
        return f"{file_name}: one of the webhooks, by `type`: {types}"
    if "properties" in schema:
        return f"{file_name} (`{schema['title']}`): {_fields(schema)}"
    return f"{file_name}: no constraints, the schema only describes the value"


def _group_of(name: str) -> tuple[str, ...] | None:
    for group in COPARTITIONED:
        if name in group:
            return group
    return None


def _entry(spec: topics.TopicSpec, schemas: dict[str, dict[str, Any]]) -> list[str]:
    doc = TOPIC_DOCS[spec.name]
    kind = "Internal topic, not part of the contract" if spec.internal else "Contract topic"
    group = _group_of(spec.name)
    partitions = str(spec.partitions)
    if group is not None:
        others = ", ".join(f"`{n}`" for n in group if n != spec.name)
        partitions += f"; co-partitioned with {others} (their counts change together)"
    configs = ", ".join(f"`{k}={v}`" for k, v in spec.kafka_configs().items())
    header_names = ", ".join(f"`{h}`" for h in doc.headers)
    header_line = f"{header_names}. {doc.headers_note}" if header_names else doc.headers_note
    return [
        f"## `{spec.name}`",
        "",
        f"{kind}.",
        "",
        f"- **Key:** {spec.key}.",
        f"- **Value:** {spec.value}.",
        f"- **JSON Schema:** {_schema_line(spec.name, schemas)}.",
        f"- **Headers:** {header_line}",
        f"- **Ordering:** {doc.ordering}",
        f"- **Partitions:** {partitions}.",
        f"- **Retention:** {_retention(spec)}.",
        f"- **Configs at creation:** {configs}.",
        f"- **Produced by:** {'; '.join(doc.produced_by)}.",
        f"- **Consumed by:** {'; '.join(doc.consumed_by)}.",
        "",
    ]


_HEADER_MEANINGS = (
    (headers.EVENT_ID, "lowercase hex SHA-256: of a webhook's single-line `JSON.stringify` "
     "form, or, for a record a worker writes, of its cause's id, the output kind and its "
     "subject. Consumers drop a repeat by it"),
    (headers.EVENT_TYPE, "the canonical event type; on a worker's output, the topic's "
     "contract name; from `policy`, `policy.set` or `policy.unset`"),
    (headers.RECEIVED_AT, "when the ingress received the webhook, RFC 3339 UTC"),
    (headers.DLQ_REASON, "dead letters only: why the record is there"),
    (headers.DLQ_SOURCE, "`streams.dlq` only: where the record was, `topic/partition/offset`"),
)

_INTRO = """\
# Topic catalog

Generated by `python -m streams.tools.docs_gen` from `streams/core/topics.py` (with its
co-partitioned groups), `streams/tools/docs_gen.py` and the value models. Do not edit by
hand: change the code and run the generator (`tests/unit/test_docs.py` fails while this file
differs from what it writes).

Names are the contract names: on the broker every topic is `TOPIC_PREFIX` followed by the
name. `edume-streams topics create` creates them all with the partitions and configs below
and `TOPIC_REPLICATION_FACTOR` replicas; it leaves existing topics as they are. The workers
create missing internal topics themselves and refuse to start while a contract topic is
missing or a co-partitioned group has different partition counts.

`edume-streams schemas OUT_DIR` writes one JSON Schema per contract topic value, named
`<topic>.schema.json` (the contract name, without `TOPIC_PREFIX`), and `asyncapi.json`.
Internal topics have none.

Headers (UTF-8 strings):

{headers_table}

Partitioning: every producer in this project (the ingress, the workers, `policy`,
`request-link`, `catalog import`) partitions by murmur2 of the key, as Kafka's Java client
does by default. librdkafka's default partitioner (kcat, confluent-kafka) is a different one
(CRC32-based): set `partitioner=murmur2_random` on such clients when writing
`links.requests` or the event topics, or the workers forward each misplaced record through a
re-keying topic before using it; a misplaced `catalog.imports` record goes to `streams.dlq`.
Where a record lands on `training.policies` does not matter (its readers read every
partition).

| topic | partitions | key | retention |
|---|---|---|---|
"""


def render_topics() -> str:
    """The whole of ``docs/topics.md``."""
    check_coverage()
    schemas = topic_value_schemas()
    table = ["| header | meaning |", "|---|---|"]
    table += [f"| `{name}` | {meaning} |" for name, meaning in _HEADER_MEANINGS]
    lines = [_INTRO.format(headers_table="\n".join(table)).rstrip("\n")]
    for spec in topics.CATALOG:
        retention = "compacted" if spec.compacted else _duration(spec.retention_ms)
        internal = " (internal)" if spec.internal else ""
        lines.append(
            f"| [`{spec.name}`](#{_anchor(spec.name)}){internal} | {spec.partitions} "
            f"| {spec.key} | {retention} |"
        )
    lines.append("")
    for spec in topics.CATALOG:
        lines += _entry(spec, schemas)
    return "\n".join(lines).rstrip("\n") + "\n"


def _anchor(name: str) -> str:
    """GitHub's heading anchor for ``## `name` ``: lowercase, punctuation but ``-`` dropped."""
    return "".join(c for c in name.lower() if c.isalnum() or c in "-_")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m streams.tools.docs_gen", description="write docs/topics.md from the code"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="default: docs/topics.md")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 when the file is not up to date")
    args = parser.parse_args(argv)
    text = render_topics()
    out: Path = args.out
    if args.check:
        current = out.read_text(encoding="utf-8") if out.exists() else None
        if current != text:
            print(f"{out} is not up to date: run python -m streams.tools.docs_gen", file=sys.stderr)
            return 1
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
