"""A worker on Apache Kafka that meets what used to stop it for good: records the broker
refuses for good (a topic's max.message.bytes), a catalog and policy reader fed a record it
cannot apply and partitions that end in a transaction marker, a link request stamped in
the future for an unknown course, and a batch that fails every time (its liveness check
then fails). The worker keeps its data directory out of the working directory."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import NewTopic
from confluent_kafka import Producer

from schemas.outputs import TrainingPolicy
from streams.core import headers, topics
from streams.core.records import partition_for
from streams.kafka.admin import admin_client, ensure_topics
from streams.tools.policy import write_policy
from tests.apache_kafka import KafkaCluster
from tests.integration.test_kafka_log_ends import transactional
from tests.support import make_settings, read_topic
from tests.worker_support import (
    ROOT,
    WorkerProcess,
    course_story,
    eventually,
    learner_story,
    publish,
)

pytestmark = pytest.mark.integration


async def create_topic(cluster: KafkaCluster, prefix: str, name: str,
                       configs: dict[str, str]) -> None:
    """Create one catalog topic with some configs of its own (before ``ensure_topics``,
    which leaves it as it is)."""
    spec = topics.BY_NAME[name]
    async with admin_client(cluster.kafka) as admin:
        await admin.create_topics([NewTopic(prefix + name, spec.partitions, 1,
                                            topic_configs={**spec.kafka_configs(), **configs})])


def producer(cluster: KafkaCluster) -> Producer:
    return Producer({"bootstrap.servers": cluster.bootstrap, "partitioner": "murmur2_random",
                     "linger.ms": 1, "acks": "all"})


def data_directory(worker: WorkerProcess) -> Path:
    """The worker's data directory, as its log says: not in the working directory, and no
    ``{app id}-data`` there either."""
    path = Path(worker.log_text().split("data directory ", 1)[1].split()[0])
    assert path.is_dir() and not path.is_relative_to(ROOT), path
    assert not (ROOT / f"{worker.prefix}edume-streams-data").exists()
    return path


def reason_of(record: Any) -> str:
    return bytes(dict(record.headers)[headers.DLQ_REASON]).decode()


async def test_records_refused_for_good_send_their_input_to_the_dlq_and_the_worker_goes_on(
    apache_kafka: KafkaCluster, prefix: str, tmp_path: Path
) -> None:
    cluster = apache_kafka
    # A completion (~500 bytes with its headers) is too large for this topic, and a course
    # with 400 teams too large a state for this catalog changelog; a course with one fits.
    await create_topic(cluster, prefix, topics.MANDATORY_COMPLETED,
                       {"max.message.bytes": "200"})
    await create_topic(cluster, prefix, topics.CATALOG_CHANGELOG,
                       {"max.message.bytes": "1500"})
    await ensure_topics(cluster.kafka, prefix)
    settings = make_settings(cluster.bootstrap, prefix)
    write_policy(settings, 9961, TrainingPolicy(courseId=9961, mandatory=True, groupIds=[5]))
    worker = WorkerProcess(cluster, prefix, tmp_path).start()
    dlq = prefix + topics.STREAMS_DLQ
    try:
        await worker.wait_ready(90)
        *started, completion = learner_story(10, [9961], [9961], group=5)
        publish(cluster.bootstrap, prefix, started)

        async def progress(user: int) -> Any:
            status, body = await worker.get(f"/learners/{user}/progress")
            return body if status == 200 else None

        assert await eventually(lambda: progress(10)), worker.log_text()[-3000:]
        publish(cluster.bootstrap, prefix, [completion])
        (dead,) = await read_topic(cluster.bootstrap, dlq, 1, timeout_s=30)
        assert dead.value == completion.value
        assert reason_of(dead) == (f"{prefix}training.mandatory.completed refused the record "
                                   "it caused (MSG_SIZE_TOO_LARGE)")
        source = bytes(dict(dead.headers)[headers.DLQ_SOURCE]).decode()
        assert source.startswith(f"{prefix}edume.learner.events/") and dead.key == source.encode()
        assert dict(dead.headers)[headers.EVENT_ID] != completion.event_id.encode()
        # The learner's state is the one before the completion: a replay applies it.
        (course,) = (await progress(10))["courses"]
        assert course["status"] == "in_progress" and course["completedAt"] is None

        # The worker goes on: a later learner, and a course whose state fits.
        publish(cluster.bootstrap, prefix, learner_story(11, [9961], [], group=5))
        assert await eventually(lambda: progress(11)), worker.log_text()[-3000:]
        publish(cluster.bootstrap, prefix, course_story(1, [7]))

        async def course(course_id: int) -> int:
            return (await worker.get(f"/catalog/courses/{course_id}"))[0]

        assert await eventually(lambda: _equals(course(1), 200))
        big = course_story(2, list(range(1000, 1400)))
        publish(cluster.bootstrap, prefix, big)
        records = await read_topic(cluster.bootstrap, dlq, 3, timeout_s=30)
        assert sorted(r.value for r in records[1:]) == sorted(e.value for e in big)
        for record in records[1:]:
            assert reason_of(record) == (
                f"{prefix}edume-streams.catalog.changelog refused its key's new state "
                "(MSG_SIZE_TOO_LARGE); the state was left as it was")
        assert await course(2) == 404
        # And after it, again.
        publish(cluster.bootstrap, prefix, learner_story(12, [9961], [], group=5))
        assert await eventually(lambda: progress(12)), worker.log_text()[-3000:]

        assert await worker.metric("edume_worker_write_failures_total",
                                   lambda head: 'kind="permanent"' in head) >= 2
        assert await worker.metric("edume_worker_dlq_total",
                                   lambda head: 'reason="write_refused"' in head) == 3
        status, ready = await worker.get("/readyz")
        assert status == 200 and ready["status"] == "ready"
        assert ready["degraded"].startswith("2 records refused for good since "), ready
        assert "MSG_SIZE_TOO_LARGE" in ready["degraded"]
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]


async def _equals(answer: Any, expected: Any) -> bool:
    return bool(await answer == expected)


async def test_the_catalog_reader_outlives_bad_records_and_reads_past_a_commit_marker(
    apache_kafka: KafkaCluster, prefix: str, tmp_path: Path
) -> None:
    cluster = apache_kafka
    await ensure_topics(cluster.kafka, prefix)
    # A course, its events written in a transaction: its partition ends in the commit
    # marker, past its last record.
    txn = transactional(cluster, f"{prefix}courses")
    txn.begin_transaction()
    for e in course_story(55, [7]):
        txn.produce(prefix + topics.COURSE_EVENTS, e.value, e.key.encode(),
                    headers=[(headers.EVENT_ID, e.event_id.encode())])
    txn.commit_transaction(30)
    # A policy whose key has more digits than int() converts, then a good one after it on
    # the same partition; and a catalog state this code cannot decode.
    send = producer(cluster)
    policy = {"courseId": 77, "mandatory": True, "groupIds": None}
    send.produce(prefix + topics.TRAINING_POLICIES, json.dumps(policy).encode(), b"9" * 4301,
                 partition=0)
    send.produce(prefix + topics.TRAINING_POLICIES, json.dumps(policy).encode(), b"77",
                 partition=0)
    send.produce(prefix + topics.CATALOG_CHANGELOG, b"not a state", b"56",
                 partition=partition_for(b"56", 4))
    assert send.flush(30) == 0

    worker = WorkerProcess(cluster, prefix, tmp_path).start()
    try:
        await worker.wait_ready(90)

        async def replica(name: str) -> float:
            return await worker.metric(f"edume_worker_replica_{name}")

        assert await eventually(lambda: _equals(replica("policies"), 1.0)), (
            worker.log_text()[-3000:])
        assert await replica("courses") >= 1
        assert await worker.metric("edume_worker_task_restarts_total",
                                   lambda head: 'task="replica"' in head) >= 1
        assert "background task replica failed" in worker.log_text()
        dead = await read_topic(cluster.bootstrap, prefix + topics.STREAMS_DLQ, 1)
        assert [reason_of(r) for r in dead] == ["the key is not a courseId (a decimal string)"]

        # A request an hour old for a course nobody knows: the copy of the catalog has read
        # every partition to its end, so it is refused at once rather than held 120 s.
        sent = time.time()
        send.produce(prefix + topics.LINK_REQUESTS,
                     json.dumps({"kind": "course", "externalUserId": "old", "contentId": 999,
                                 "teamIds": [7]}).encode(), b"old",
                     timestamp=int((sent - 3600) * 1000))
        send.produce(prefix + topics.LINK_REQUESTS,
                     json.dumps({"kind": "course", "externalUserId": "known",
                                 "contentId": 55}).encode(), b"known")
        assert send.flush(30) == 0
        (rejected,) = await read_topic(cluster.bootstrap, prefix + topics.LINK_REJECTED, 1,
                                       timeout_s=30)
        assert time.time() - sent < 20, "held back as if the catalog were still behind"
        assert json.loads(rejected.value)["reason"].startswith("unknown course 999")
        (issued,) = await read_topic(cluster.bootstrap, prefix + topics.LINK_ISSUED, 1)
        assert json.loads(issued.value)["courseId"] == 55
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]


async def test_a_link_request_stamped_in_the_future_holds_up_no_other_link(
    apache_kafka: KafkaCluster, prefix: str, tmp_path: Path
) -> None:
    cluster = apache_kafka
    await ensure_topics(cluster.kafka, prefix)
    # WORKER_DATA_DIR unset: a temporary data directory, removed when the worker stops.
    worker = WorkerProcess(cluster, prefix, tmp_path, extra_env={"WORKER_DATA_DIR": ""}).start()
    try:
        await worker.wait_ready(90)
        data_dir = data_directory(worker)
        send = producer(cluster)
        sent = time.time()
        # 50 minutes ahead (the broker refuses a timestamp more than an hour ahead).
        send.produce(prefix + topics.LINK_REQUESTS,
                     json.dumps({"kind": "course", "externalUserId": "later",
                                 "contentId": 999, "teamIds": [7]}).encode(), b"later",
                     timestamp=int((sent + 3000) * 1000))
        assert send.flush(30) == 0
        users = [f"user-{i}" for i in range(12)]
        for user in users:
            send.produce(prefix + topics.LINK_REQUESTS,
                         json.dumps({"kind": "hub", "externalUserId": user,
                                     "teamIds": [7]}).encode(), user.encode())
        assert send.flush(30) == 0
        issued = await read_topic(cluster.bootstrap, prefix + topics.LINK_ISSUED, len(users),
                                  timeout_s=30)
        assert sorted(json.loads(r.value)["externalUserId"] for r in issued) == sorted(users)
        assert time.time() - sent < 25, worker.log_text()[-3000:]
        (rejected,) = await read_topic(cluster.bootstrap, prefix + topics.LINK_REJECTED, 1,
                                       timeout_s=30)
        assert json.loads(rejected.value)["reason"].startswith("unknown course 999")
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]
    assert not data_dir.exists(), "a worker that stops removes its data directory"


async def test_a_worker_whose_batch_always_fails_fails_its_liveness_check(
    apache_kafka: KafkaCluster, prefix: str, tmp_path: Path
) -> None:
    cluster = apache_kafka
    await ensure_topics(cluster.kafka, prefix)
    # A learner state this code cannot decode (say, written by a newer version): every
    # batch with one of the learner's events fails.
    send = producer(cluster)
    send.produce(prefix + topics.PROGRESS_CHANGELOG, b"not a state", b"4242",
                 partition=partition_for(b"4242", 8))
    assert send.flush(30) == 0
    worker = WorkerProcess(cluster, prefix, tmp_path,
                           extra_env={"WORKER_STALL_TIMEOUT": "6s"}).start()
    try:
        await worker.wait_ready(90)
        # Idle past the timeout (from when its last event was applied): alive.
        publish(cluster.bootstrap, prefix, learner_story(7, [5], [], group=1))

        async def applied() -> bool:
            return (await worker.get("/learners/7/progress"))[0] == 200

        assert await eventually(applied), worker.log_text()[-3000:]
        await asyncio.sleep(8)
        assert await worker.get("/healthz") == (200, {"status": "ok"})

        publish(cluster.bootstrap, prefix, learner_story(4242, [5], [], group=1))

        async def restarted() -> bool:
            return await worker.metric("edume_worker_task_restarts_total",
                                       lambda head: 'task="learners"' in head) >= 1

        assert await eventually(restarted), worker.log_text()[-3000:]

        async def stalled() -> Any:
            status, body = await worker.get("/healthz")
            return body if status == 503 else None

        body = await eventually(stalled, timeout_s=30)
        assert body and body["status"].startswith("stalled: input waiting, and none "
                                                  "processed for"), worker.log_text()[-3000:]
    finally:
        worker.kill()  # its batch never ends, so neither would a clean stop

