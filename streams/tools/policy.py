"""``edume-streams policy``: write, remove and list training policies on ``training.policies``.

A policy is one record keyed by the courseId (murmur2, as every producer here), so a
course's policies stay on one partition and compaction keeps the latest; removing one
writes a tombstone (a null value).
"""

from __future__ import annotations

import time

from schemas.outputs import TrainingPolicy
from streams.core import headers, topics
from streams.core.errors import BrokerUnavailable
from streams.core.state.common import UnusableEvent
from streams.core.state.policies import Policy, PolicyBook, parse_policy_record
from streams.kafka.admin import assign_from_beginning, drop_reached, topic_consumer
from streams.kafka.publisher import SyncWriter
from streams.settings import Settings


def _topic(settings: Settings) -> str:
    return topics.prefixed(topics.TRAINING_POLICIES, settings.topic_prefix)


def write_policy(settings: Settings, course_id: int, policy: TrainingPolicy | None,
                 timeout_s: float = 15.0) -> None:
    """Write one policy (or a tombstone) and wait for the broker's acknowledgement."""
    value = None if policy is None else policy.model_dump_json().encode()
    kind = "policy.unset" if policy is None else "policy.set"
    write_one(settings, _topic(settings), str(course_id).encode(), value,
              [(headers.EVENT_TYPE, kind.encode())], what="the policy",
              client_id="edume-streams-policy", timeout_s=timeout_s)


def write_one(settings: Settings, topic: str, key: bytes, value: bytes | None,
              record_headers: list[tuple[str, bytes]], *, what: str, client_id: str,
              timeout_s: float = 15.0) -> None:
    """Write one record (murmur2 of its key, ``edume-received-at`` added) and wait for the
    broker's acknowledgement (acks=all); ``BrokerUnavailable`` naming ``what`` if none."""
    writer = SyncWriter(settings, client_id=client_id, timeout_s=timeout_s)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    writer.send(topic, key, value, [*record_headers, (headers.RECEIVED_AT, stamp.encode())],
                tag=key, what=what)
    if not writer.finish():
        errors = writer.errors
        reason = errors[0] if errors else "no acknowledgement in time"
        raise BrokerUnavailable(
            f"{what} was not written to {settings.kafka_bootstrap_servers}: {reason}"
        )


async def read_policies(settings: Settings, idle_s: float = 0.3) -> PolicyBook:
    """Every course's current policy, read from the whole topic."""
    topic = _topic(settings)
    book = PolicyBook()
    async with topic_consumer(settings.kafka) as consumer:
        tps = await assign_from_beginning(consumer, topic)
        # Read to the ends known now, then until a fetch brings nothing more (an end
        # offset the embedded broker reports too low must not cut the list short).
        targets = {tp: end for tp, end in (await consumer.end_offsets(tps)).items() if end}
        while True:
            batch = await consumer.getmany(timeout_ms=int(idle_s * 1000))
            for tp, records in batch.items():
                for r in records:
                    try:
                        course_id, policy = parse_policy_record(r.key, r.value)
                    except UnusableEvent:
                        continue
                    book.apply(course_id, policy, (r.timestamp, tp.partition, r.offset))
            await drop_reached(consumer, targets)
            if not targets and not batch:
                return book


def describe(policy: Policy) -> str:
    if not policy.mandatory:
        return f"course {policy.course_id}: not mandatory"
    team = ("" if policy.team_id is None
            else f"; assignment and reminder links put learners in team {policy.team_id}")
    if policy.group_ids is None:
        return f"course {policy.course_id}: mandatory for every group{team}"
    groups = ", ".join(str(g) for g in sorted(policy.group_ids))
    return f"course {policy.course_id}: mandatory for groups {groups}{team}"


def parse_groups(text: str | None) -> list[int] | None:
    """``--groups 5,6`` as ``[5, 6]``; no flag means every group (None)."""
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or not all(p.isascii() and p.isdigit() for p in parts):
        raise ValueError(f"--groups takes group ids (integers, comma-separated), got {text!r}")
    return sorted({int(p) for p in parts})

