"""Reminders are durable: a worker SIGKILLed while reminders are pending fires every due one
once after its restart, and none for a course completed meanwhile."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from schemas.outputs import TrainingPolicy
from streams.core import headers, topics
from streams.kafka.admin import ensure_topics
from streams.kafka.embedded import EmbeddedBroker
from streams.settings import Settings
from streams.tools.policy import write_policy
from tests.support import read_topic
from tests.worker_support import WorkerProcess, course_story, event, eventually, publish

pytestmark = pytest.mark.integration

AFTER_S = 8
COURSE = 601


def stamp(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def added(user: int, t: float):
    return event({"type": "learner.added", "timestamp": stamp(t), "payload": {
        "user": {"eId": f"ext-{user}", "userId": user, "identifiers": []},
        "group": {"groupId": 5}, "courses": [{"courseId": COURSE}], "version": 1}})


def completed(user: int, t: float):
    return event({"type": "learner.activity.finished", "timestamp": stamp(t), "payload": {
        "type": "course", "user": {"eId": f"ext-{user}", "userId": user, "identifiers": []},
        "group": {"groupId": 5}, "course": {"courseId": COURSE}, "version": 1}})


def backlog(count: int, t: float):
    """Lesson starts of learners in a course no policy names (no reminder, no link)."""
    for i in range(count):
        user = 100_000 + i % 2_000
        yield event({"type": "learner.activity.started", "timestamp": stamp(t), "payload": {
            "type": "lesson", "user": {"eId": f"ext-{user}", "userId": user, "identifiers": []},
            "group": {"groupId": 5}, "course": {"courseId": 999}, "module": {"moduleId": 1},
            "lesson": {"lessonId": i + 1}, "version": 1}})


def by_id(records: list[Any]) -> dict[bytes, Any]:
    """Records by ``edume-event-id``. A worker killed between writing a batch's records and
    its state writes them again when it replays the batch: the same id, the same bytes.
    Anything else under one id (or one cause under two ids) is a defect."""
    out: dict[bytes, bytes] = {}
    for record in records:
        event_id = dict(record.headers)[headers.EVENT_ID]
        assert out.setdefault(event_id, record.value) == record.value, "one id, two records"
    return {event_id: json.loads(value) for event_id, value in out.items()}


async def test_pending_reminders_survive_a_sigkill_fire_once_and_not_after_completion(
    broker: EmbeddedBroker, prefix: str, tmp_path: Path
) -> None:
    await ensure_topics(broker.kafka, prefix)
    settings = Settings(kafka_bootstrap_servers=broker.bootstrap, topic_prefix=prefix)
    publish(broker.bootstrap, prefix, course_story(COURSE, [7]))
    write_policy(settings, COURSE, TrainingPolicy(courseId=COURSE, mandatory=True,
                                                  groupIds=None))
    worker = WorkerProcess(broker, prefix, tmp_path,
                           extra_env={"REMINDER_AFTER": f"{AFTER_S}s"}).start()
    users = list(range(7000, 7030))
    done_before, done_meanwhile = users[:10], users[10:20]
    open_ones = users[20:]
    try:
        await worker.wait_ready(90)
        t0 = time.time()
        publish(broker.bootstrap, prefix,
                [added(u, t0) for u in users] + [completed(u, t0 + 1) for u in done_before])

        async def applied() -> bool:
            return await worker.metric(
                "edume_worker_events_applied_total",
                lambda head: 'type="learner.' in head) == len(users) + len(done_before)

        assert await eventually(applied, 30), worker.log_text()[-3000:]
        assert time.time() < t0 + AFTER_S, "too slow to kill before the reminders are due"
        assert await worker.metric("edume_worker_reminders_fired_total") == 0
        worker.kill()  # reminders pending for 20 learners
        # While it is down: a backlog of other learners' events, then the completions. The
        # restarted worker has reminders due from its first moment and the completions
        # still to read behind the backlog: a reminder must wait for them.
        publish(broker.bootstrap, prefix, [*backlog(20_000, time.time()),
                                           *(completed(u, time.time()) for u in done_meanwhile)])
        worker.start()
        await worker.wait_ready(90)
        await asyncio.sleep(max(0.0, t0 + AFTER_S - time.time()))

        async def fired() -> bool:
            return await worker.metric("edume_worker_reminders_fired_total") >= len(open_ones)

        assert await eventually(fired, 30), worker.log_text()[-3000:]
        issue = by_id(await read_topic(broker.bootstrap, prefix + topics.LINK_ISSUE,
                                       len(users) + len(open_ones), timeout_s=20, grace_s=3.0))
        by_reason = Counter(value["reason"] for value in issue.values())
        assert by_reason == {"assignment": len(users), "reminder": len(open_ones)}
        reminded = sorted(v["userId"] for v in issue.values() if v["reason"] == "reminder")
        assert reminded == open_ones
        issued = by_id(await read_topic(broker.bootstrap, prefix + topics.LINK_ISSUED,
                                        len(users) + len(open_ones), timeout_s=30,
                                        grace_s=1.0))
        assert Counter(value["reason"] for value in issued.values()) == by_reason

        # Killed again with nothing due: the fired reminders stay fired.
        worker.kill()
        worker.start()
        await worker.wait_ready(90)
        await asyncio.sleep(3)
        assert await worker.metric("edume_worker_reminders_fired_total") == 0
        assert by_id(await read_topic(broker.bootstrap, prefix + topics.LINK_ISSUE,
                                      len(issue), grace_s=1.0)) == issue
        status, gate = await worker.get(f"/learners/{open_ones[0]}/mandatory")
        assert status == 200 and gate["remainingCourseIds"] == [COURSE]
    finally:
        assert worker.stop() in (0, None), worker.log_text()[-3000:]
