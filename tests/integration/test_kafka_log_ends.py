"""Partitions whose end offset has no record before it, as only Apache Kafka makes them:
records deleted by retention (``DeleteRecords``), and transaction markers (an app that
writes policies and link requests transactionally, some transactions aborted).

A reader that waits for a record at end offset - 1 never finishes on such a partition: a
worker then never becomes ready. Committed records are processed once, aborted ones never,
and nothing after a marker is skipped.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from streams.core import headers, topics
from streams.kafka.admin import ensure_topics
from tests.apache_kafka import KafkaCluster
from tests.support import read_topic
from tests.worker_support import WorkerProcess, course_story, publish

pytestmark = pytest.mark.integration


def transactional(cluster: KafkaCluster, name: str) -> Producer:
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "transactional.id": name,
                         "partitioner": "murmur2_random", "linger.ms": 1})
    producer.init_transactions(30)
    return producer


def in_transaction(producer: Producer, records: list[tuple[str, bytes, bytes | None]], *,
                   commit: bool) -> None:
    producer.begin_transaction()
    for topic, key, value in records:
        producer.produce(topic, value, key,
                         headers=[(headers.EVENT_ID, (b"%064x" % abs(hash((key, value)))))])
    if commit:
        producer.commit_transaction(30)
    else:
        producer.flush(30)
        producer.abort_transaction(30)


async def test_a_worker_is_ready_on_partitions_emptied_by_retention_or_ending_in_a_marker(
    apache_kafka: KafkaCluster, prefix: str, tmp_path: Path
) -> None:
    cluster = apache_kafka
    await ensure_topics(cluster.kafka, prefix)
    course_topic = prefix + topics.COURSE_EVENTS
    publish(cluster.bootstrap, prefix, [e for c in range(1, 40) for e in course_story(c, [7])])
    # Every course event deleted by retention: each partition's end offset is past records
    # that no fetch will ever return.
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    metadata = admin.list_topics(course_topic, timeout=10).topics[course_topic]
    ends = [TopicPartition(course_topic, p, -1) for p in metadata.partitions]  # -1: the end
    for future in admin.delete_records(ends).values():
        assert future.result(30).low_watermark > 0
    # A policy written and committed in a transaction: the partition ends with its marker.
    producer = transactional(cluster, f"{prefix}policies")
    value = json.dumps({"courseId": 1, "mandatory": True, "groupIds": None}).encode()
    in_transaction(producer, [(prefix + topics.TRAINING_POLICIES, b"1", value)], commit=True)

    worker = WorkerProcess(cluster, prefix, tmp_path).start()
    try:
        await worker.wait_ready(60)
        status, body = await worker.get("/catalog/courses/1")
        assert status == 404, body  # deleted by retention: never seen
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]


async def test_link_requests_in_transactions_committed_once_aborted_never(
    apache_kafka: KafkaCluster, prefix: str, tmp_path: Path
) -> None:
    cluster = apache_kafka
    await ensure_topics(cluster.kafka, prefix)
    requests = prefix + topics.LINK_REQUESTS

    def hub(user: str) -> tuple[str, bytes, bytes]:
        return (requests, user.encode(), json.dumps(
            {"kind": "hub", "externalUserId": user, "teamIds": [7]}).encode())

    producer = transactional(cluster, f"{prefix}app")
    in_transaction(producer, [hub("u1"), hub("u2")], commit=True)
    in_transaction(producer, [hub("x1"), hub("x2")], commit=False)
    in_transaction(producer, [hub("u3")], commit=True)
    worker = WorkerProcess(cluster, prefix, tmp_path).start()
    try:
        await worker.wait_ready(60)
        # After the worker started, one more of each: markers in the middle of a stream.
        in_transaction(producer, [hub("x3")], commit=False)
        in_transaction(producer, [hub("u4"), hub("u5")], commit=True)
        issued = await read_topic(cluster.bootstrap, prefix + topics.LINK_ISSUED, 5,
                                  timeout_s=40, grace_s=2.0)
        users = sorted(json.loads(r.value)["externalUserId"] for r in issued)
        assert users == ["u1", "u2", "u3", "u4", "u5"], worker.log_text()[-3000:]

        assert await read_topic(cluster.bootstrap, prefix + topics.LINK_REJECTED, 0,
                                grace_s=0.5) == []
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]
