"""``edume-streams dlq replay``: republish the dead letters that today's code accepts.

Two dead-letter topics, two ways back:

- ``edume.webhooks.dlq`` holds what the ingress refused to publish as an event: an
  authentic webhook (its signature was verified) of an unknown type or not matching its
  schema, keyed by its eventId, the raw body as value. A replay parses and validates the
  body as the ingress does today (``schemas.WEBHOOK_ADAPTER``) and, when it passes,
  publishes it as the ingress would have: to the family's event topic, keyed by its
  routing id, the value its single-line ``JSON.stringify`` form, with headers
  ``edume-event-id`` (the original eventId), ``edume-event-type`` (canonical) and
  ``edume-received-at`` (the original).
- ``streams.dlq`` holds what a worker could not use, keyed by the record's place
  (``topic/partition/offset``), the value unchanged. Records from an event topic are
  checked with the worker's own rules (``read_webhook``) and republished to that topic
  under the key the worker expects; link requests (``links.requests``) with
  ``read_request``, and republished keyed by their ``externalUserId``. A dead letter
  does not keep the record's ``edume-event-id``: it carries one derived from it, and the
  original is recovered by recomputing that derivation (an event's id is the SHA-256 of
  its ``JSON.stringify`` form, so every record the ingress wrote gets its id back; an
  event whose id cannot be recovered gets that one, as the ingress would give it). A link
  request gets back the id it had when that was its value's SHA-256, and otherwise goes
  back without one: the links agent then knows it by its value's SHA-256.
  ``training.policies`` records are never republished: every worker reads that topic
  from its beginning whenever it starts, so a record there that reads as a policy today
  is applied from the topic itself, and a second, later copy could, once the topic is
  compacted, replace a policy set after it. Dead letters from other topics are left.

Never twice: ``edume-streams.dlq.replayed`` (compacted) records every dead letter
replayed, by its place, after the republished copy was acknowledged (acks=all). A replay
reads it fully first and skips what it holds, and skips an event whose copy it already
republished from another dead letter (the same webhook refused twice). A crash between
the copy and its record republishes the copy on the next run with the same
``edume-event-id`` (a link request without one: the same value, which is its identity),
and every consumer here drops a repeat by that id.

The decisions are pure functions of a dead letter (``streams.core.dlq_plan``, tested without a
broker); ``replay`` here is the shell that reads, writes and counts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

from aiokafka import AIOKafkaConsumer

from streams.core import topics
from streams.core.dlq_plan import (
    DLQ_TOPIC,
    SOURCES,
    DeadLetter,
    Planner,
    Replay,
    ReplayLog,
    Source,
)
from streams.core.errors import EdumeStreamsError
from streams.core.records import Layout
from streams.kafka.admin import (
    admin_client,
    ensure_topics,
    partitions_of,
    read_until_idle,
    topic_consumer,
    topic_partitions,
)
from streams.kafka.publisher import SyncWriter
from streams.settings import Settings

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------ the shell


@dataclass
class Outcome:
    """What a replay did: the counts per dead-letter topic, and what went wrong, if
    anything did (some copies or records not acknowledged: what was, is recorded)."""

    planner: Planner
    dead_letter_topics: list[str]
    error: str | None = None


async def replay(
    settings: Settings,
    sources: Sequence[Source] = SOURCES,
    *,
    dry_run: bool = False,
    since_ms: int | None = None,
    idle_s: float = 1.0,
    err: TextIO | None = None,
    timeout_s: float = 30.0,
) -> Outcome:
    """Replay the dead letters of ``sources``; see the module. Progress lines on ``err``."""
    prefix = settings.topic_prefix
    bootstrap = settings.kafka_bootstrap_servers
    kafka = settings.kafka
    say: Callable[[str], None] = (lambda line: print(line, file=err)) if err else log.info
    dlq_topics = [topics.prefixed(DLQ_TOPIC[s], prefix) for s in sources]
    event_topics = [topics.prefixed(n, prefix) for n in topics.EVENT_TOPIC_BY_FAMILY.values()]
    targets = list(event_topics)
    if "streams" in sources:
        targets.append(topics.prefixed(topics.LINK_REQUESTS, prefix))
    marker_topic = topics.prefixed(topics.DLQ_REPLAYED, prefix)

    async with admin_client(kafka) as admin:
        existing = set(await admin.list_topics())
    missing = [n for n in [*dlq_topics, *targets] if n not in existing]
    if missing:
        raise EdumeStreamsError(
            f"topics missing at {bootstrap}: {', '.join(missing)}; create them with "
            "`edume-streams topics create`"
        )
    if marker_topic not in existing and not dry_run:
        await ensure_topics(kafka, prefix, [topics.BY_NAME[topics.DLQ_REPLAYED]],
                            settings.topic_replication_factor)
        existing.add(marker_topic)
    layout = Layout(prefix, await topic_partitions(kafka, event_topics))

    replay_log = ReplayLog()
    if marker_topic in existing:
        async with topic_consumer(kafka, fetch_max_wait_ms=100) as consumer:
            await _assign(consumer, [marker_topic])
            async for batch in read_until_idle(consumer, idle_s):
                for r in batch:
                    replay_log.load(r.key, r.value)
    copies_before = set(replay_log.copies)

    planner = Planner(replay_log, prefix=prefix, layout=layout,
                      max_depth=settings.max_json_depth, since_ms=since_ms,
                      max_skew_s=settings.max_clock_skew_s)
    for name in dlq_topics:
        planner.tally(name)
    writer = None if dry_run else SyncWriter(settings, client_id="edume-streams-dlq-replay",
                                             timeout_s=timeout_s)
    pending: list[tuple[DeadLetter, Replay]] = []
    async with topic_consumer(kafka, fetch_max_wait_ms=100) as consumer:
        await _assign(consumer, dlq_topics)
        async for batch in read_until_idle(consumer, idle_s):
            for r in batch:
                dead = DeadLetter(r.topic, r.partition, r.offset, r.key, r.value,
                                  list(r.headers), r.timestamp)
                action, copy = planner.consider(dead)
                if copy is None:
                    continue
                verb = "would replay" if dry_run else "replaying"
                if action == "record":
                    verb = "already replayed (same copy)"
                say(f"{dead.place}: {verb} to {copy.topic} as {copy.replay_id}")
                if action == "publish" and writer is not None:
                    writer.send(copy.topic, copy.key, copy.value, copy.headers,
                                (copy.topic, copy.replay_id))
                pending.append((dead, copy))

    outcome = Outcome(planner, dlq_topics)
    if writer is not None:
        # Every copy acknowledged first; then a record for each dead letter whose copy was
        # acknowledged now or republished by an earlier run.
        confirmed = writer.finish() | copies_before
        now_ms = int(time.time() * 1000)
        for dead, copy in pending:
            if (copy.topic, copy.replay_id) in confirmed:
                key, value = ReplayLog.record(dead, copy, now_ms)
                writer.send(marker_topic, key, value, [], dead.place)
        writer.finish()
        if writer.errors:
            outcome.error = (
                f"{len(writer.errors)} writes were not acknowledged (first: "
                f"{writer.errors[0]}); the dead letters whose copy and record were are "
                "recorded as replayed. Run again: a copy not recorded is republished with "
                "the same edume-event-id, which consumers drop as a repeat"
            )
    return outcome


async def _assign(consumer: AIOKafkaConsumer, names: Sequence[str]) -> None:
    tps = await partitions_of(consumer, names)
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)


def reason_lines(outcome: Outcome, limit: int = 10) -> list[str]:
    """The commonest reasons dead letters were left, per topic, most frequent first."""
    lines = []
    for name in outcome.dead_letter_topics:
        tally = outcome.planner.tally(name)
        ranked = tally.reasons.most_common()
        for (verdict, reason), count in ranked[:limit]:
            lines.append(f"{name}: {count} {verdict}: {reason}")
        if len(ranked) > limit:
            rest = sum(count for _, count in ranked[limit:])
            lines.append(f"{name}: {rest} more left for {len(ranked) - limit} other reasons")
    return lines


def count_lines(outcome: Outcome, *, dry_run: bool) -> list[str]:
    """One line per dead-letter topic, then the total."""
    lines = [outcome.planner.tally(n).line(n, dry_run=dry_run)
             for n in outcome.dead_letter_topics]
    lines.append(outcome.planner.total().line("total", dry_run=dry_run))
    return lines
