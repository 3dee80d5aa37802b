"""A policy change reaches learners who already finished: 10,000 learners finish a course
no policy names; then a policy makes it mandatory for their group. The worker announces
each completion from the policy, once, and is SIGKILLed in the middle of it; the next
worker announces the rest with the same ids, and a third start (the policy topic read
again from the beginning) announces nothing more."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from schemas.outputs import TrainingPolicy
from streams.core import headers, topics
from streams.kafka.admin import ensure_topics, partitions_of
from streams.kafka.clients import KafkaConnection, aio_consumer
from streams.tools.policy import write_policy
from tests.support import make_settings, read_topic
from tests.worker_support import WorkerProcess, event, eventually, publish

pytestmark = pytest.mark.integration

LEARNERS = 10_000
COURSE = 8001


def finished(user: int) -> Any:
    return event({"type": "learner.activity.finished", "timestamp": "2026-11-02T10:00:00.000Z",
                  "payload": {"type": "course",
                              "user": {"eId": f"ext-{user}", "userId": user, "identifiers": []},
                              "group": {"groupId": 5 if user % 10 else 6},
                              "course": {"courseId": COURSE}, "version": 1}})


async def first_record(bootstrap: str, topic: str, timeout_s: float) -> None:
    """Return as soon as ``topic`` holds a record."""
    consumer = aio_consumer(KafkaConnection(bootstrap), group_id=None,
                            auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        tps = await partitions_of(consumer, [topic])
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        async with asyncio.timeout(timeout_s):
            while not await consumer.getmany(timeout_ms=50, max_records=1):
                pass
    finally:
        await consumer.stop()


async def test_a_policy_announces_the_completions_before_it_once_across_a_sigkill(
    each_broker: Any, prefix: str, tmp_path: Path
) -> None:
    broker = each_broker
    await ensure_topics(broker.kafka, prefix)
    settings = make_settings(broker.bootstrap, prefix)
    in_group = [u for u in range(1, LEARNERS + 1) if u % 10]  # group 6: every tenth
    publish(broker.bootstrap, prefix, [finished(u) for u in range(1, LEARNERS + 1)])
    worker = WorkerProcess(broker, prefix, tmp_path).start()
    completed_topic = prefix + topics.MANDATORY_COMPLETED
    try:
        await worker.wait_ready(90)

        async def applied() -> bool:
            return await worker.metric("edume_worker_events_applied_total") >= LEARNERS

        assert await eventually(applied, timeout_s=120), worker.log_text()[-3000:]
        assert (await worker.get("/learners/1/mandatory"))[1]["complete"] is True  # no policy

        write_policy(settings, COURSE, TrainingPolicy(courseId=COURSE, mandatory=True,
                                                      groupIds=[5]))
        await first_record(broker.bootstrap, completed_topic, 60)
        worker.kill()  # in the middle of the announcements
        at_kill = len(await read_topic(broker.bootstrap, completed_topic, 0, timeout_s=5,
                                       grace_s=1.0))
        worker.start()
        await worker.wait_ready(90)
        records = await read_topic(broker.bootstrap, completed_topic, len(in_group),
                                   timeout_s=120, grace_s=2.0)
        by_user: dict[int, set[bytes]] = defaultdict(set)
        for record in records:
            value = json.loads(record.value)
            assert value["courseId"] == COURSE and value["groupId"] == 5
            assert value["completedAt"] == "2026-11-02T10:00:00.000Z"
            assert value["allMandatoryComplete"] is True
            by_user[value["userId"]].add(bytes(dict(record.headers)[headers.EVENT_ID]))
        assert sorted(by_user) == in_group  # every learner of the group, no one else
        assert all(len(ids) == 1 for ids in by_user.values())  # a repeat has the same id
        assert 0 < at_kill < len(in_group), at_kill  # the kill came in the middle
        status, gate = await worker.get("/learners/10/mandatory")  # group 6
        assert status == 200 and gate["complete"] is True

        # Started again: the policy topic is read from the beginning; nothing more.
        worker.stop()
        worker.start()
        await worker.wait_ready(90)
        await asyncio.sleep(3)
        again = await read_topic(broker.bootstrap, completed_topic, len(records),
                                 timeout_s=30, grace_s=2.0)
        assert len(again) == len(records)
        # Removing the policy announces nothing either.
        write_policy(settings, COURSE, None)
        await asyncio.sleep(2)
        assert len(await read_topic(broker.bootstrap, completed_topic, len(records),
                                    timeout_s=30, grace_s=1.0)) == len(records)
    finally:
        worker.stop()
