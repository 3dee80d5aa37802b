"""Faults only a real cluster shows, on three Apache Kafka nodes (every topic replicated 3
times, ``min.insync.replicas`` 2), with the ingress and a worker running through them:

- the leader of the learner topic's partitions killed mid-traffic: the ingress answers 202
  again after the election, nothing it acknowledged is lost, the worker goes on;
- two of the three nodes down (below ``min.insync.replicas``): 503 with ``Retry-After``,
  then 202 again once they are back, with nothing restarted;
- a rolling restart of the three nodes under traffic: nothing lost, no output under two ids.

Traffic is posted as eduMe posts it: an answer other than 202 is retried after a pause.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from schemas.outputs import TrainingPolicy
from streams.core import headers, topics
from streams.kafka.admin import ensure_topics
from streams.tools.policy import write_policy
from tests.apache_kafka import KafkaCluster, tools_missing
from tests.support import RunningIngress, make_settings, read_topic, serve_ingress
from tests.worker_support import Event, WorkerProcess, eventually, learner_story

pytestmark = [
    pytest.mark.integration,
    pytest.mark.cluster,
    pytest.mark.skipif(bool(tools_missing()), reason="Apache Kafka needs java and mvn"),
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    with KafkaCluster(nodes=3, workdir=tmp_path_factory.mktemp("cluster")) as running:
        yield running


@pytest.fixture
async def pipeline(
    cluster: KafkaCluster, prefix: str, tmp_path: Path
) -> AsyncIterator[tuple[RunningIngress, WorkerProcess]]:
    for node in cluster.members:  # a test that failed half-way may have left one down
        cluster.start_node(node.node_id)
    await ensure_topics(cluster.kafka, prefix, replication_factor=3)
    settings = make_settings(cluster.bootstrap, prefix, publish_timeout_s=5.0,
                             topic_replication_factor=3)
    write_policy(settings, 1, TrainingPolicy(courseId=1, mandatory=True, groupIds=None))
    worker = WorkerProcess(cluster, prefix, tmp_path,
                           extra_env={"TOPIC_REPLICATION_FACTOR": "3"}).start()
    try:
        await worker.wait_ready(90)
        async with serve_ingress(settings, create_topics=False) as ingress:
            yield ingress, worker
    finally:
        worker.stop()
        for node in cluster.members:
            cluster.start_node(node.node_id)


class Sender:
    """Posts events as eduMe does: until 202, retrying a refused one after a pause."""

    def __init__(self, ingress: RunningIngress) -> None:
        self.ingress = ingress
        self.accepted: dict[str, float] = {}
        self.statuses: dict[int, int] = {}
        self.retry_after: set[str] = set()

    async def send(self, event: Event, deadline: float) -> None:
        while True:
            try:
                status, hdrs, answer = await self.ingress.post(event.value)
            except OSError:
                status, hdrs, answer = 0, {}, None
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if status == 202:
                assert answer["eventId"] == event.event_id
                self.accepted[event.event_id] = time.monotonic()
                return
            assert status in (0, 503), (status, answer)
            if status == 503:
                self.retry_after.add(hdrs.get("Retry-After", ""))
            if time.monotonic() > deadline:
                raise AssertionError(f"not accepted in time: {self.statuses}")
            await asyncio.sleep(0.5)

    async def send_all(self, events: Sequence[Event], *, concurrency: int = 8,
                       timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        queue: asyncio.Queue[Event] = asyncio.Queue()
        for e in events:
            queue.put_nowait(e)

        async def lane() -> None:
            while not queue.empty():
                await self.send(queue.get_nowait(), deadline)
                await asyncio.sleep(0.005)  # a bounded rate, not a flood

        await asyncio.gather(*(lane() for _ in range(concurrency)))


def leader_of(cluster: KafkaCluster, topic: str, partition: int = 0) -> int:
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    meta = admin.list_topics(topic, timeout=10)
    return int(meta.topics[topic].partitions[partition].leader)


def stories(first_user: int, count: int) -> tuple[list[Event], list[int]]:
    users = list(range(first_user, first_user + count))
    events = [e for u in users for e in learner_story(u, [1], [1], 5, minute=u % 50)]
    return events, users


async def check_outcome(cluster: KafkaCluster, prefix: str, worker: WorkerProcess,
                        sent: Sender, users: list[int]) -> None:
    """Every acknowledged event on the learner topic; one completion per learner under one
    id, and the worker's state of each learner complete."""
    learner_topic = prefix + topics.LEARNER_EVENTS
    records = await read_topic(cluster.bootstrap, learner_topic, len(sent.accepted),
                               timeout_s=60, grace_s=1.0)
    on_topic = {dict(r.headers)[headers.EVENT_ID].decode() for r in records}
    assert set(sent.accepted) <= on_topic, len(set(sent.accepted) - on_topic)

    async def all_complete() -> bool:
        done = await worker.metric("edume_worker_records_written_total",
                                   lambda head: topics.MANDATORY_COMPLETED in head)
        return done >= len(users)

    assert await eventually(all_complete, 90), worker.log_text()[-4000:]
    completions = await read_topic(cluster.bootstrap, prefix + topics.MANDATORY_COMPLETED,
                                   len(users), timeout_s=60, grace_s=2.0)
    by_cause: dict[tuple[int, int], set[str]] = {}
    for r in completions:
        value = json.loads(r.value)
        by_cause.setdefault((value["userId"], value["courseId"]), set()).add(
            dict(r.headers)[headers.EVENT_ID].decode())
    print(f"\n{len(sent.accepted)} events accepted; answers {sent.statuses}")
    assert sorted(u for u, _ in by_cause) == users
    assert all(len(ids) == 1 for ids in by_cause.values()), by_cause
    for user in users[:: max(1, len(users) // 10)]:
        status, view = await worker.get(f"/learners/{user}/mandatory")
        assert status == 200 and view["complete"] is True, view


async def test_the_learner_topics_leader_killed_mid_traffic(
    cluster: KafkaCluster, prefix: str, pipeline: tuple[RunningIngress, WorkerProcess]
) -> None:
    ingress, worker = pipeline
    events, users = stories(700_000, 120)
    sender = Sender(ingress)
    leader = leader_of(cluster, prefix + topics.LEARNER_EVENTS)

    async def kill_when_a_third_is_in() -> None:
        while len(sender.accepted) < len(events) // 3:  # noqa: ASYNC110 - a count, polled
            await asyncio.sleep(0.05)
        cluster.kill_node(leader)

    await asyncio.gather(sender.send_all(events), kill_when_a_third_is_in())
    assert not cluster.members[leader - 1].alive
    assert leader_of(cluster, prefix + topics.LEARNER_EVENTS) != leader
    await check_outcome(cluster, prefix, worker, sender, users)


async def test_two_of_three_down_is_503_then_202_with_nothing_restarted(
    cluster: KafkaCluster, prefix: str, pipeline: tuple[RunningIngress, WorkerProcess]
) -> None:
    ingress, worker = pipeline
    events, users = stories(710_000, 20)
    sender = Sender(ingress)
    await sender.send_all(events[:10])
    down = [n.node_id for n in cluster.members][:2]
    for node_id in down:
        cluster.kill_node(node_id)
    status, hdrs, _ = await ingress.post(events[10].value)
    assert status == 503 and hdrs.get("Retry-After"), status

    async def restart_soon() -> None:
        await asyncio.sleep(3)
        for node_id in down:
            cluster.start_node(node_id, wait=False)

    await asyncio.gather(sender.send_all(events[10:], timeout_s=150), restart_soon())
    assert sender.statuses.get(503, 0) >= 1
    await check_outcome(cluster, prefix, worker, sender, users)


async def test_a_rolling_restart_under_traffic(
    cluster: KafkaCluster, prefix: str, pipeline: tuple[RunningIngress, WorkerProcess]
) -> None:
    ingress, worker = pipeline
    events, users = stories(720_000, 150)
    sender = Sender(ingress)

    async def roll() -> None:
        for node in cluster.members:
            while len(sender.accepted) < (node.node_id * len(events)) // 4:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            await asyncio.to_thread(cluster.stop_node, node.node_id)
            await asyncio.to_thread(cluster.start_node, node.node_id)
            await asyncio.to_thread(cluster.wait_in_sync, 60)

    await asyncio.gather(sender.send_all(events, timeout_s=240), roll())
    await check_outcome(cluster, prefix, worker, sender, users)

