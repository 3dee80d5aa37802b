"""The topic catalog: every topic's name, key, partitions and configs, in one place.

The CLI (``dev``, topic creation), the schema export and the docs read this table; the
ingress and the workers ask it for names so that ``TOPIC_PREFIX`` applies everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Family = Literal["course", "learner"]

COURSE_EVENTS = "edume.course.events"
LEARNER_EVENTS = "edume.learner.events"
WEBHOOKS_DLQ = "edume.webhooks.dlq"
TRAINING_POLICIES = "training.policies"
CATALOG_IMPORTS = "catalog.imports"
MANDATORY_COMPLETED = "training.mandatory.completed"
LINK_REQUESTS = "links.requests"
LINK_ISSUE = "links.issue"
LINK_ISSUED = "links.issued"
LINK_REJECTED = "links.rejected"
STREAMS_DLQ = "streams.dlq"
PRIVACY_ERASURES = "privacy.erasures"
TRAINING_EVIDENCE = "training.evidence"
# Internal: the workers' table changelogs and the topics they re-key misplaced records to.
CATALOG_CHANGELOG = "edume-streams.catalog.changelog"
PROGRESS_CHANGELOG = "edume-streams.progress.changelog"
COURSE_REKEY = "edume-streams.course.rekey"
LEARNER_REKEY = "edume-streams.learner.rekey"
LINKS_CHANGELOG = "edume-streams.links.changelog"
LINK_REKEY = "edume-streams.links.rekey"
# Internal: which dead letters ``edume-streams dlq replay`` has republished.
DLQ_REPLAYED = "edume-streams.dlq.replayed"

_WEEK_MS = 7 * 24 * 3600 * 1000
# Room for a webhook of MAX_BODY_BYTES (1 MiB by default) plus headers and batch overhead;
# Kafka's broker default (1 MB + 12 bytes) would refuse the largest bodies the ingress
# accepts, and eduMe would retry them for ever.
WEBHOOK_MAX_MESSAGE_BYTES = str(2 * 1024 * 1024)
STATE_MAX_MESSAGE_BYTES = WEBHOOK_MAX_MESSAGE_BYTES
"""The table changelogs' limit: a key's whole state is one record. The workers' producer
takes records up to this size too (``streams.worker.app.WORKER_PRODUCER_CONFIG``), so a
state it takes the broker takes; a larger one is refused by the producer, for good, and
its key's input goes to ``streams.dlq`` (see ``streams.worker.writes``). Set explicitly: the
broker's default (1 MB + 12 bytes) is below what the producer takes."""


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One contract topic: what its key and value are, and how it is laid out."""

    name: str
    key: str
    value: str
    partitions: int
    compacted: bool = False
    retention_ms: int = _WEEK_MS
    configs: dict[str, str] = field(default_factory=dict)
    internal: bool = False
    """The workers' own topics (table changelogs, re-keying): not part of the contract."""

    def kafka_configs(self) -> dict[str, str]:
        """Topic-level configs as a broker takes them at creation."""
        out = {"cleanup.policy": "compact" if self.compacted else "delete"}
        if not self.compacted:
            out["retention.ms"] = str(self.retention_ms)
        out.update(self.configs)
        return out


def _ingress_topic(
    name: str, key: str, value: str, partitions: int, *, internal: bool = False
) -> TopicSpec:
    """A topic of webhooks as received: four weeks kept, room for the largest body."""
    return TopicSpec(
        name,
        key,
        value,
        partitions,
        retention_ms=4 * _WEEK_MS,
        configs={"max.message.bytes": WEBHOOK_MAX_MESSAGE_BYTES},
        internal=internal,
    )


CATALOG: tuple[TopicSpec, ...] = (
    _ingress_topic(
        COURSE_EVENTS,
        "courseId, decimal string",
        "the webhook object as received, compact JSON",
        partitions=4,
    ),
    _ingress_topic(
        LEARNER_EVENTS,
        "eduMe userId, decimal string",
        "the webhook object as received, compact JSON",
        partitions=8,
    ),
    _ingress_topic(WEBHOOKS_DLQ, "eventId", "the raw body", partitions=1),
    TopicSpec(
        TRAINING_POLICIES,
        "courseId, decimal string",
        "training policy; a null value deletes it",
        partitions=4,
        compacted=True,
    ),
    # Courses that predate the webhooks (`edume-streams catalog import`), folded by the
    # course agent: co-partitioned with the course events (see COPARTITIONED). Compacted, as
    # a record is a course's state rather than an event: the latest per course is all that
    # matters, the topic stays a record per course, and a catalog rebuilt from its topics
    # (changelogs deleted) still finds the courses no eduMe event will ever bring back, long
    # after the course events' retention has passed.
    TopicSpec(
        CATALOG_IMPORTS,
        "courseId, decimal string",
        "a course that predates the webhooks, folded as an event stamped importedAt",
        partitions=4,
        compacted=True,
    ),
    TopicSpec(
        MANDATORY_COMPLETED,
        "eduMe userId",
        "one event per learner per mandatory course completed",
        partitions=8,
    ),
    TopicSpec(LINK_REQUESTS, "externalUserId", "a link request", partitions=8),
    TopicSpec(LINK_ISSUE, "externalUserId", "an issue-link event", partitions=8),
    TopicSpec(LINK_ISSUED, "externalUserId", "a signed seamless link", partitions=8),
    TopicSpec(LINK_REJECTED, "externalUserId", "a request that cannot be honoured", partitions=8),
    TopicSpec(
        STREAMS_DLQ,
        "source topic, partition and offset as topic/partition/offset",
        "a record a worker could not use, unchanged",
        partitions=1,
        retention_ms=4 * _WEEK_MS,
        configs={"max.message.bytes": WEBHOOK_MAX_MESSAGE_BYTES},
    ),
    TopicSpec(
        TRAINING_EVIDENCE,
        "{userId}/{courseId}",
        "the proof of a course completion: the completing event as published, its "
        "signature and place",
        partitions=8,
        compacted=True,
        configs={"max.message.bytes": WEBHOOK_MAX_MESSAGE_BYTES},
    ),
    TopicSpec(
        PRIVACY_ERASURES,
        "user/{userId} or external/{externalUserId}",
        "a learner erased, and when the erasure was asked for",
        partitions=1,
        compacted=True,
    ),
    # A changelog has the partitions of the topic its table is keyed like (co-partitioning:
    # a table's partition p lives with the events of partition p), and is compacted.
    TopicSpec(
        CATALOG_CHANGELOG, "courseId", "catalog entry (internal)", partitions=4,
        compacted=True, internal=True,
        configs={"max.message.bytes": STATE_MAX_MESSAGE_BYTES},
    ),
    TopicSpec(
        PROGRESS_CHANGELOG, "eduMe userId", "learner progress (internal)", partitions=8,
        compacted=True, internal=True,
        configs={"max.message.bytes": STATE_MAX_MESSAGE_BYTES},
    ),
    # Re-keying topics take records that arrived under another key or partitioner; they are
    # co-partitioned with the topic they stand beside.
    _ingress_topic(
        COURSE_REKEY, "courseId", "course event, re-keyed (internal)", 4, internal=True
    ),
    _ingress_topic(
        LEARNER_REKEY, "eduMe userId", "learner event, re-keyed (internal)", 8, internal=True
    ),
    TopicSpec(
        LINKS_CHANGELOG, "externalUserId", "links issued to a user (internal)", partitions=8,
        compacted=True, internal=True,
        configs={"max.message.bytes": STATE_MAX_MESSAGE_BYTES},
    ),
    TopicSpec(
        LINK_REKEY, "externalUserId", "link request, re-keyed (internal)", partitions=8,
        internal=True,
    ),
    # One record per dead letter `dlq replay` republished, written after the republished
    # copy was acknowledged; compacted, so it keeps one record per dead letter.
    TopicSpec(
        DLQ_REPLAYED, "the dead letter's place, topic/partition/offset",
        "a dead letter's replay (internal)", partitions=1, compacted=True, internal=True,
    ),
)

BY_NAME: dict[str, TopicSpec] = {spec.name: spec for spec in CATALOG}
EVENT_TOPIC_BY_FAMILY: dict[Family, str] = {"course": COURSE_EVENTS, "learner": LEARNER_EVENTS}


def prefixed(name: str, prefix: str) -> str:
    """The topic's name on the broker: ``TOPIC_PREFIX`` + the contract name."""
    return f"{prefix}{name}"


COPARTITIONED = (
    (COURSE_EVENTS, COURSE_REKEY, CATALOG_IMPORTS, CATALOG_CHANGELOG),
    (LEARNER_EVENTS, LEARNER_REKEY, PROGRESS_CHANGELOG),
    (LINK_REQUESTS, LINK_ISSUE, LINK_REKEY, LINKS_CHANGELOG),
)
"""Topics whose partition p must live together: a key's events and its table partition."""
