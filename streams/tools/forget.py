"""``edume-streams forget``: erase a learner, and wait until the workers that own it have.

The command writes the erasure to ``privacy.erasures`` and watches the table changelogs
for the owners' tombstones (see ``streams.worker.erasing``): the learner's progress
(``user/N``) or the external user's links (``external/X``), and those of the derived
erasures the owners write back (the learner's other name). Every tombstone seen, it
prints what is left of the learner on the topics that are not compacted, and until when
their retention keeps it.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.core import headers, topics
from streams.core.erasures import EXTERNAL, USER, Erasure, parse_erasure_record
from streams.core.records import partition_for
from streams.core.state.common import UnusableEvent
from streams.kafka.admin import describe_topics, partitions_of, topic_consumer
from streams.settings import Settings
from streams.tools.policy import write_one

HOLDING_LEARNERS = (
    topics.LEARNER_EVENTS, topics.LEARNER_REKEY, topics.WEBHOOKS_DLQ, topics.STREAMS_DLQ,
    topics.MANDATORY_COMPLETED, topics.LINK_REQUESTS, topics.LINK_REKEY, topics.LINK_ISSUE,
    topics.LINK_ISSUED, topics.LINK_REJECTED,
)
"""The topics that are not compacted and may hold a learner's events or records about
them: what retention alone removes."""
CHANGELOG_OF = {USER: topics.PROGRESS_CHANGELOG, EXTERNAL: topics.LINKS_CHANGELOG}
"""Whose tombstone says an erasure was applied: the table keyed by the erasure's subject."""
_DEFAULT_SEGMENT_MS = 7 * 24 * 3600 * 1000
"""Kafka's ``log.roll.ms`` default, for a broker that does not report ``segment.ms``."""


@dataclass
class Outcome:
    """What ``forget`` saw: the erasures applied (with the changelog partition of each
    tombstone), and those still awaited when it stopped waiting."""

    erasure: Erasure
    applied: dict[Erasure, int] = field(default_factory=dict)
    awaited: set[Erasure] = field(default_factory=set)


async def forget(settings: Settings, erasure: Erasure, timeout_s: float) -> Outcome:
    """Record ``erasure`` and wait (at most ``timeout_s``) for the owners' tombstones."""
    prefix = settings.topic_prefix
    erasure_topic = topics.prefixed(topics.PRIVACY_ERASURES, prefix)
    changelogs = {kind: topics.prefixed(t, prefix) for kind, t in CHANGELOG_OF.items()}
    outcome = Outcome(erasure, awaited={erasure})
    async with topic_consumer(settings.kafka, fetch_max_wait_ms=200) as consumer:
        tps = await partitions_of(consumer, [erasure_topic, *changelogs.values()])
        counts = Counter(tp.topic for tp in tps)
        consumer.assign(tps)
        for tp, end in (await consumer.end_offsets(tps)).items():
            consumer.seek(tp, end)
        await asyncio.to_thread(
            write_one, settings, erasure_topic, erasure.key, erasure.value(),
            [(headers.EVENT_TYPE, b"privacy.erasure")], what="the erasure",
            client_id="edume-streams-forget")
        deadline = time.monotonic() + timeout_s
        seen_tombstones: set[tuple[str, bytes]] = set()
        while outcome.awaited and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for tp, records in batch.items():
                for record in records:
                    if tp.topic == erasure_topic:
                        _derived(outcome, record.key, record.value)
                    elif record.value is None and record.key is not None:
                        seen_tombstones.add((tp.topic, record.key))
            for awaited in list(outcome.awaited):
                topic = changelogs[awaited.kind]
                if (topic, awaited.subject.encode()) in seen_tombstones:
                    outcome.awaited.discard(awaited)
                    outcome.applied[awaited] = partition_for(awaited.subject.encode(),
                                                             counts[topic])
            if not outcome.awaited:
                # The owners write a derived erasure before their tombstone: read the
                # erasures topic to its end before calling the erasure done.
                await _read_erasures_to_end(consumer, erasure_topic, outcome)
    return outcome


def _derived(outcome: Outcome, key: bytes | None, value: bytes | None) -> None:
    """Await the tombstone of an erasure an owner derived from ours (same time, other
    name)."""
    try:
        found = parse_erasure_record(key, value)
    except UnusableEvent:
        return
    ours = outcome.erasure
    if (found is not None and found.requested_at_us == ours.requested_at_us
            and found != ours and found not in outcome.applied):
        outcome.awaited.add(found)


async def _read_erasures_to_end(consumer: AIOKafkaConsumer, topic: str,
                                outcome: Outcome) -> None:
    tp = TopicPartition(topic, 0)
    end = (await consumer.end_offsets([tp]))[tp]
    while await consumer.position(tp) < end:
        batch = await consumer.getmany(tp, timeout_ms=200)
        for record in batch.get(tp, ()):
            _derived(outcome, record.key, record.value)


@dataclass(frozen=True)
class Remains:
    """A topic that may still hold records of the learner, and until when at the latest."""

    topic: str
    retention_ms: int | None
    """None: kept for ever (``retention.ms`` -1)."""
    until_ms: int | None


async def remains(settings: Settings, now_ms: int) -> list[Remains]:
    """The non-compacted topics that may hold the learner's records, with their retention
    as the broker reports it: a record written now is deleted once its segment is closed
    (``segment.ms``) and older than ``retention.ms``: until now + both at the latest."""
    prefix = settings.topic_prefix
    specs = [topics.BY_NAME[t] for t in HOLDING_LEARNERS]
    found = await describe_topics(settings.kafka, prefix, specs)
    out = []
    for spec in specs:
        name = topics.prefixed(spec.name, prefix)
        on_broker = found.topics.get(name)
        if on_broker is None:
            continue
        configs = on_broker.configs or {}
        retention = _ms(configs.get("retention.ms"), spec.retention_ms)
        segment = _ms(configs.get("segment.ms"), _DEFAULT_SEGMENT_MS)
        if retention is None or retention < 0:
            out.append(Remains(name, None, None))
        else:
            out.append(Remains(name, retention, now_ms + retention + (segment or 0)))
    return out


def _ms(text: str | None, default: int) -> int | None:
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        return default
