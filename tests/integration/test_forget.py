"""``edume-streams forget`` against a running worker on Apache Kafka: the learner's progress
and links are dropped, the command exits once the owners' tombstones are on the changelogs,
events stamped before the erasure are ignored when they come again, and compaction then
removes the learner's values from the changelogs (small segments, so that it runs)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition
from confluent_kafka import Producer

from streams.core import topics
from streams.kafka.admin import ensure_topics, topic_consumer
from tests.apache_kafka import KafkaCluster
from tests.integration.test_worker_hardening import create_topic
from tests.worker_support import ROOT, WorkerProcess, eventually, learner_story, publish

pytestmark = pytest.mark.integration

SMALL_SEGMENTS = {"segment.ms": "200", "min.cleanable.dirty.ratio": "0.01",
                  "min.compaction.lag.ms": "0", "delete.retention.ms": "600000"}
"""Changelogs whose segments roll every 200 ms and are compacted as soon as the cleaner
looks (every second on the test cluster); tombstones stay 10 minutes."""


def forget(cluster: KafkaCluster, prefix: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDUME_", "KAFKA_",
                                                                      "WORKER_", "TOPIC_"))}
    env.update(KAFKA_BOOTSTRAP_SERVERS=cluster.bootstrap, TOPIC_PREFIX=prefix)
    return subprocess.run([sys.executable, "-m", "streams", "forget", *args, "--timeout", "60"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
                          check=False)


async def values_of(cluster: KafkaCluster, topic: str, key: bytes) -> list[bytes | None]:
    """Every value ``key`` has on ``topic`` now, from the beginning (one partition each)."""
    async with topic_consumer(cluster.kafka, fetch_max_wait_ms=100) as consumer:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer._client.set_topics([topic])
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        found: list[bytes | None] = []
        while any([await consumer.position(tp) < ends[tp] for tp in tps]):
            batch = await consumer.getmany(timeout_ms=500)
            found += [r.value for rs in batch.values() for r in rs if r.key == key]
        return found


def roll_segments(cluster: KafkaCluster, topic: str, partitions: int) -> None:
    """A filler tombstone on every partition, past ``segment.ms``: the segment that holds
    the learner's records closes, and only closed segments are compacted."""
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all"})
    for partition in range(partitions):
        producer.produce(topic, None, b"filler", partition=partition)
    producer.flush(10)


async def test_forget_drops_a_learner_everywhere_and_compaction_removes_the_values(
    apache_kafka: KafkaCluster, prefix: str, tmp_path: Path
) -> None:
    cluster = apache_kafka
    for changelog in (topics.PROGRESS_CHANGELOG, topics.LINKS_CHANGELOG):
        await create_topic(cluster, prefix, changelog, SMALL_SEGMENTS)
    await ensure_topics(cluster.kafka, prefix)
    worker = WorkerProcess(cluster, prefix, tmp_path).start()
    try:
        await worker.wait_ready(90)
        story = learner_story(31, [9971], [9971], group=5)  # completes the course
        publish(cluster.bootstrap, prefix, [*story, *learner_story(32, [9971], [], group=5)])
        hub = json.dumps({"kind": "hub", "externalUserId": "ext-31", "teamIds": [7],
                          "reason": "onboarding"}).encode()
        producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all",
                             "partitioner": "murmur2_random"})
        producer.produce(prefix + topics.LINK_REQUESTS, hub, b"ext-31")
        producer.flush(10)

        async def status(path: str) -> int:
            return (await worker.get(path))[0]

        async def links(ext: str) -> list[Any]:
            code, body = await worker.get(f"/links?externalUserId={ext}")
            return body["links"] if code == 200 else []

        assert await eventually(lambda: _is(status("/learners/31/progress"), 200))
        assert await eventually(lambda: links("ext-31")), worker.log_text()[-3000:]

        progress_topic = prefix + topics.PROGRESS_CHANGELOG
        links_topic = prefix + topics.LINKS_CHANGELOG
        assert [v for v in await values_of(cluster, progress_topic, b"31") if v]
        assert [v for v in await values_of(cluster, links_topic, b"ext-31") if v]
        evidence_topic = prefix + topics.TRAINING_EVIDENCE
        assert await eventually(lambda: _proof_of(cluster, evidence_topic, b"31/9971"))

        result = await asyncio.to_thread(forget, cluster, prefix, "--user-id", "31")
        assert result.returncode == 0, result.stdout + result.stderr
        out = result.stdout
        assert "user/31: progress dropped, tombstone on changelog partition" in out
        assert "external/ext-31: links dropped" in out and "(derived by its owner)" in out
        assert f"{prefix}edume.learner.events: until " in out and "(retention 28d)" in out
        assert f"{prefix}links.issued: until " in out

        # Dropped at once: the owner answered before the command returned.
        assert await status("/learners/31/progress") == 404
        assert await links("ext-31") == []
        assert await status("/learners/32/progress") == 200  # the others stay

        # eduMe redelivers the learner's events (stamped before the erasure), and the
        # app asks for the link again with its old request: all ignored. A later learner's
        # events show the worker has read past them.
        publish(cluster.bootstrap, prefix, story)
        producer.produce(prefix + topics.LINK_REQUESTS, hub, b"ext-31",
                         timestamp=int(time.time() * 1000) - 3_600_000)
        producer.flush(10)
        publish(cluster.bootstrap, prefix, learner_story(33, [9971], [], group=5))
        assert await eventually(lambda: _is(status("/learners/33/progress"), 200))
        assert await eventually(lambda: _positive(worker.metric(
            "edume_worker_events_erased_total")))
        assert await status("/learners/31/progress") == 404
        assert await links("ext-31") == []

        # The changelogs: the learner's last record is a tombstone; once compacted, no
        # value of the learner is left.
        assert (await values_of(cluster, progress_topic, b"31"))[-1] is None
        assert (await values_of(cluster, links_topic, b"ext-31"))[-1] is None
        assert (await values_of(cluster, evidence_topic, b"31/9971"))[-1] is None

        async def compacted() -> bool:
            roll_segments(cluster, progress_topic, 8)
            roll_segments(cluster, links_topic, 8)
            left = [v for v in await values_of(cluster, progress_topic, b"31") if v is not None]
            left += [v for v in await values_of(cluster, links_topic, b"ext-31")
                     if v is not None]
            return not left

        assert await eventually(compacted, timeout_s=90), "the values were not compacted away"
        assert [v for v in await values_of(cluster, progress_topic, b"32") if v]  # kept
    finally:
        worker.stop()


async def test_forget_says_when_no_worker_confirms(
    apache_kafka: KafkaCluster, prefix: str
) -> None:
    await ensure_topics(apache_kafka.kafka, prefix)
    env_prefix = prefix
    started = time.monotonic()
    result = await asyncio.to_thread(
        lambda: subprocess.run(
            [sys.executable, "-m", "streams", "forget", "--external-user-id", "nobody",
             "--timeout", "3"], cwd=ROOT, capture_output=True, text=True, timeout=60,
            check=False,
            env={**{k: v for k, v in os.environ.items() if not k.startswith(
                ("EDUME_", "KAFKA_", "WORKER_", "TOPIC_"))},
                 "KAFKA_BOOTSTRAP_SERVERS": apache_kafka.bootstrap,
                 "TOPIC_PREFIX": env_prefix}))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "no worker confirmed external/nobody within 3s" in result.stderr
    assert time.monotonic() - started < 40
    recorded = await values_of(apache_kafka, prefix + topics.PRIVACY_ERASURES,
                               b"external/nobody")
    assert [json.loads(v or b"null")["externalUserId"] for v in recorded] == ["nobody"]


async def _proof_of(cluster: KafkaCluster, topic: str, key: bytes) -> bool:
    return any(await values_of(cluster, topic, key))


async def _is(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


async def _positive(value: Any) -> bool:
    return bool(await value > 0)
