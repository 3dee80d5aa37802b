"""Two workers side by side: the second starts mid-stream and takes half the partitions, either
answers for any learner (routed to the owner), then the first is SIGKILLed and the second
takes everything over; nothing is lost or doubled."""

from __future__ import annotations

import asyncio
import json
import random
from collections import defaultdict
from pathlib import Path

import pytest

from schemas.outputs import TrainingPolicy
from streams.core import headers
from streams.kafka.admin import ensure_topics
from streams.kafka.embedded import EmbeddedBroker
from streams.tools.policy import write_policy
from tests.support import make_settings, read_topic
from tests.worker_support import WorkerProcess, eventually, fold, learner_story, publish

pytestmark = pytest.mark.integration

LEARNERS = 800


async def test_a_second_worker_mid_stream_then_a_kill_loses_and_doubles_nothing(
    broker: EmbeddedBroker, prefix: str, tmp_path: Path
) -> None:
    await ensure_topics(broker.kafka, prefix)
    write_policy(make_settings(broker.bootstrap, prefix), 1,
                 TrainingPolicy(courseId=1, mandatory=True, groupIds=None))
    learners = [e for i in range(LEARNERS)
                for e in learner_story(700_000 + i, [1, 2], [1] if i % 3 else [1, 2], 5, i)]
    rng = random.Random(3)
    rng.shuffle(learners)
    redelivered = rng.sample(learners, len(learners) // 10)
    stream = learners + redelivered
    slices = [stream[k::24] for k in range(24)]
    first = WorkerProcess(broker, prefix, tmp_path).start()
    second = WorkerProcess(broker, prefix, tmp_path)
    published: list[int] = []

    async def keep_publishing() -> None:
        """Events keep arriving while the second worker joins and the first dies."""
        for piece in slices:
            await asyncio.to_thread(publish, broker.bootstrap, prefix, piece)
            published.append(len(piece))
            await asyncio.sleep(1.0)

    try:
        await first.wait_ready(90)
        feeder = asyncio.create_task(keep_publishing())
        await eventually(lambda: asyncio.sleep(0, len(published) >= 3), 30)
        second.start()  # mid-stream

        async def shared() -> bool:  # both consume (each owns some learner partitions)
            try:
                return all([await w.metric("edume_worker_events_consumed_total") > 0
                            and (await w.get("/readyz"))[0] == 200 for w in (first, second)])
            except OSError:  # the second one's web server is not up yet
                return False

        assert await eventually(shared, 90, every_s=0.5), second.log_text()[-3000:]
        sample = [700_000 + i for i in range(40)]

        async def both_answer_alike() -> bool:
            for user in sample:
                a, b = await first.get(f"/learners/{user}/progress"), \
                    await second.get(f"/learners/{user}/progress")
                if a != b or a[0] != 200:
                    return False
            return True

        assert await eventually(both_answer_alike, 60)
        assert not feeder.done(), "the stream ended before the kill"
        first.kill()
        await feeder
        expected = fold(stream, "learner")
        views = {u: json.loads(json.dumps(s.view())) for u, s in expected.items()}
        differing: list[int] = []

        async def second_has_everything() -> bool:
            differing.clear()
            for user, view in views.items():
                if (await second.get(f"/learners/{user}/progress")) != (200, view):
                    differing.append(user)
            return not differing

        assert await eventually(second_has_everything, 120, every_s=1.0), (
            f"{len(differing)} learners differ, e.g. {differing[:5]}\n"
            + second.log_text()[-3000:])

        wanted = {(u, 1) for u, s in expected.items() if 1 in s.completed_course_ids()}
        records = await read_topic(broker.bootstrap, prefix + "training.mandatory.completed",
                                   len(wanted), timeout_s=60)
        ids: dict[tuple[int, int], set[bytes]] = defaultdict(set)
        for r in records:
            value = json.loads(r.value)
            ids[(value["userId"], value["courseId"])].add(dict(r.headers)[headers.EVENT_ID])
        assert set(ids) == wanted
        assert all(len(v) == 1 for v in ids.values()), "a completion announced twice"
        print(f"completions written again (same id): {len(records) - len(wanted)}")
    finally:
        first.kill()
        assert second.stop() == 0, second.log_text()[-3000:]
