"""``dlq replay`` as a user runs it, against the embedded broker: dead letters from the ingress
and from the workers, a dry run that writes nothing, a replay that republishes what
validates now (once, with the original event ids), and a second replay that finds it done."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from streams.core import headers, topics
from streams.core.jsjson import canonical
from streams.core.records import InRecord, dead_letter, partition_for
from streams.kafka.embedded import EmbeddedBroker
from tests.support import FIXTURES, RunningIngress, read_topic, sign

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RECEIVED = b"2024-05-06T07:08:09.123Z"


def cli(broker: EmbeddedBroker, prefix: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDUME_", "KAFKA_"))}
    env.update(KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap, TOPIC_PREFIX=prefix)
    return subprocess.run([sys.executable, "-m", "streams", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


async def run_cli(broker: EmbeddedBroker, prefix: str, *args: str) -> list[str]:
    """The stdout lines of a run that must succeed."""
    result = await asyncio.to_thread(cli, broker, prefix, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def produce(bootstrap: str, records: list[tuple[str, bytes, bytes | None, list[Any]]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all",
                         "partitioner": "murmur2_random"})
    for topic, key, value, hdrs in records:
        producer.produce(topic, value, key, headers=hdrs)
    assert producer.flush(15) == 0


def counts(source: str, replayed: int, invalid: int, before: int, not_replayable: int,
           verb: str = "replayed") -> str:
    return (f"{source}: {replayed} {verb}, {invalid} still invalid, {before} replayed "
            f"before, {not_replayable} not replayable, 0 before --since")


async def test_dead_letters_are_replayed_once_with_their_original_ids(
    broker: EmbeddedBroker, ingress: RunningIngress, prefix: str
) -> None:
    bootstrap = broker.bootstrap
    webhooks_dlq, streams_dlq = prefix + topics.WEBHOOKS_DLQ, prefix + topics.STREAMS_DLQ
    learner_topic = prefix + topics.LEARNER_EVENTS

    # edume.webhooks.dlq: an authentic webhook of an unknown type, refused by the ingress;
    # and one the schema accepts today, as an older version refused it (the raw body as
    # eduMe sent it, pretty-printed).
    status, _, answer = await ingress.post(
        b'{"type":"learner.teleported","payload":{},"timestamp":"2024-01-01T00:00:00Z"}')
    assert status == 202 and answer["topic"] == webhooks_dlq
    raw = (FIXTURES / "learner.activity.finished.lesson.json").read_bytes()
    lesson = canonical(raw)[1]
    lesson_id = hashlib.sha256(lesson).hexdigest()
    refused = [(headers.EVENT_ID, lesson_id.encode()),
               (headers.EVENT_TYPE, b"learner.activity.finished"),
               (headers.RECEIVED_AT, RECEIVED),
               (headers.SIGNATURE, sign(raw).encode()),  # verified over the raw body
               (headers.DLQ_REASON, b"learner.activity.finished does not match its schema")]
    # streams.dlq, as a worker writes it: a learner event it could not use then, one that
    # is not JSON, and a links.issue record (not one dlq replay republishes).
    finished = canonical((FIXTURES / "learner.activity.finished.course.json").read_bytes())[1]
    finished_id = hashlib.sha256(finished).hexdigest()
    ingress_headers = [(headers.EVENT_ID, finished_id.encode()),
                       (headers.EVENT_TYPE, b"learner.activity.finished"),
                       (headers.RECEIVED_AT, RECEIVED)]
    dead = [
        dead_letter(InRecord(learner_topic, 5, 42, b"10218", finished, ingress_headers, 0),
                    "an older worker refused it", streams_dlq),
        dead_letter(InRecord(learner_topic, 0, 7, b"1", b"not json{", [], 0), "not JSON",
                    streams_dlq),
        dead_letter(InRecord(prefix + topics.LINK_ISSUE, 1, 3, b"u", b"{}", [], 0),
                    "not an issue-link event", streams_dlq),
    ]
    produce(bootstrap, [(webhooks_dlq, lesson_id.encode(), raw, refused)]
            + [(d.topic, d.key, d.value, d.headers) for d in dead])

    # A dry run writes nothing.
    dry = await run_cli(broker, prefix, "dlq", "replay", "--dry-run")
    assert dry == [counts(webhooks_dlq, 1, 1, 0, 0, "would replay"),
                   counts(streams_dlq, 1, 1, 0, 1, "would replay"),
                   counts("total", 2, 2, 0, 1, "would replay")]
    assert await read_topic(bootstrap, learner_topic, 0) == []
    assert await read_topic(bootstrap, prefix + topics.DLQ_REPLAYED, 0) == []
    early = await run_cli(broker, prefix, "dlq", "replay", "--dry-run", "--source", "webhooks",
                          "--since", "2999-01-01")
    assert early == [f"{webhooks_dlq}: 0 would replay, 0 still invalid, 0 replayed before, "
                     "0 not replayable, 2 before --since",
                     "total: 0 would replay, 0 still invalid, 0 replayed before, "
                     "0 not replayable, 2 before --since"]

    # The replay: each event that validates now, once, on its topic, as the ingress writes it.
    first = await run_cli(broker, prefix, "dlq", "replay")
    assert first == [counts(webhooks_dlq, 1, 1, 0, 0), counts(streams_dlq, 1, 1, 0, 1),
                     counts("total", 2, 2, 0, 1)]
    events = await read_topic(bootstrap, learner_topic, 2)
    by_id = {dict(r.headers)[headers.EVENT_ID].decode(): r for r in events}
    assert sorted(by_id) == sorted([lesson_id, finished_id]) and len(events) == 2
    for event_id, key, value in ((lesson_id, b"10215", lesson), (finished_id, b"10218", finished)):
        record = by_id[event_id]
        assert (record.key, record.value) == (key, value)
        assert record.partition == partition_for(key, 8)
        assert dict(record.headers)[headers.EVENT_TYPE] == b"learner.activity.finished"
        assert dict(record.headers)[headers.RECEIVED_AT] == RECEIVED
    assert await read_topic(bootstrap, prefix + topics.COURSE_EVENTS, 0) == []
    assert len(await read_topic(bootstrap, prefix + topics.DLQ_REPLAYED, 2)) == 2

    # Again: nothing new.
    second = await run_cli(broker, prefix, "dlq", "replay")
    assert second == [counts(webhooks_dlq, 0, 1, 1, 0), counts(streams_dlq, 0, 1, 1, 1),
                      counts("total", 0, 2, 2, 1)]
    assert len(await read_topic(bootstrap, learner_topic, 2)) == 2

    # The ingress, given the same webhook now, writes the very record the replay wrote.
    status, _, answer = await ingress.post(lesson)
    assert status == 202 and answer == {"eventId": lesson_id, "topic": learner_topic,
                                        "duplicate": False}
    same = [r for r in await read_topic(bootstrap, learner_topic, 3)
            if dict(r.headers)[headers.EVENT_ID] == lesson_id.encode()]
    assert len(same) == 2
    replayed, published = same
    assert (replayed.partition, replayed.key, replayed.value) == (
        published.partition, published.key, published.value)
    assert [k for k, _ in replayed.headers] == [k for k, _ in published.headers]
    # The signature the ingress verified when it first took the webhook stays with it.
    assert dict(replayed.headers)[headers.SIGNATURE] == sign(raw).encode()
    assert dict(published.headers)[headers.SIGNATURE] == sign(lesson).encode()
