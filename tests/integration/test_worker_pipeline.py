"""Every eduMe sample posted through the ingress, processed by a real worker process on the
embedded broker, read back from the query API and the topics."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from schemas.outputs import TrainingPolicy
from streams.core import headers
from streams.kafka.embedded import EmbeddedBroker
from streams.tools.policy import write_policy
from tests.support import FIXTURES, RunningIngress, compact, manifest, read_topic
from tests.worker_support import Event, WorkerProcess, event, eventually, fold, publish

pytestmark = pytest.mark.integration


@pytest.fixture
async def worker(broker: EmbeddedBroker, prefix: str,
                 tmp_path: Path) -> AsyncIterator[WorkerProcess]:
    """A worker process on the test's topics, ready; stopped cleanly after the test."""
    process = WorkerProcess(broker, prefix, tmp_path).start()
    try:
        await process.wait_ready(90)
        yield process
    finally:
        assert process.stop() == 0, process.log_text()[-3000:]


async def test_every_sample_reaches_the_tables_the_gate_and_the_completions(
    broker: EmbeddedBroker, prefix: str, ingress: RunningIngress, tmp_path: Path
) -> None:
    settings = ingress.settings
    write_policy(settings, 17167, TrainingPolicy(courseId=17167, mandatory=True, groupIds=None))
    write_policy(settings, 9961, TrainingPolicy(courseId=9961, mandatory=True, groupIds=[5]))
    write_policy(settings, 202, TrainingPolicy(courseId=202, mandatory=True, groupIds=[5]))
    worker = WorkerProcess(broker, prefix, tmp_path).start()
    try:
        await worker.wait_ready(90)
        samples = []
        for entry in manifest():
            body = compact((FIXTURES / entry["file"]).read_bytes())
            status, _, answer = await ingress.post(body)
            assert status == 202, answer
            samples.append(Event(entry["family"], entry["key"], body))
        learners, courses = fold(samples, "learner"), fold(samples, "course")

        async def all_applied() -> bool:  # the samples and the three policies
            applied = await worker.metric("edume_worker_events_applied_total",
                                          lambda head: 'type="links.' not in head)
            return applied == len(samples) + 3

        assert await eventually(all_applied), worker.log_text()[-3000:]
        for user, state in learners.items():
            status, view = await worker.get(f"/learners/{user}/progress")
            assert status == 200
            assert view == json.loads(json.dumps(state.view()))
        status, entry = await worker.get("/catalog/courses/22299")
        assert status == 200 and entry == courses[22299].view()
        # 10217 (group 5) was assigned 202 and has started 9961, both mandatory for group 5,
        # and has completed neither.
        assert (await worker.get("/learners/10217/mandatory"))[1] == {
            "userId": 10217, "complete": False, "completedCourseIds": [],
            "remainingCourseIds": [202, 9961]}
        assert (await worker.get("/learners/5398399/mandatory"))[1]["complete"] is True
        assert (await worker.get("/learners/1/progress"))[0] == 404
        assert (await worker.get("/learners/abc/progress"))[0] == 400

        # The two completions of mandatory courses, once each: 10218 finished 9961 (group
        # 5), 5398399 completed 17167 (mandatory for every group).
        records = await read_topic(broker.bootstrap, prefix + "training.mandatory.completed", 2)
        values = sorted((json.loads(r.value) for r in records), key=lambda v: v["userId"])
        assert [(v["userId"], v["courseId"]) for v in values] == [(10218, 9961), (5398399, 17167)]
        assert values[0]["externalUserId"] == "baa4e1be-55c3-4505-84e5-2e0d5154337b"
        assert values[1]["courseKey"] == "webhook4798" and values[1]["allMandatoryComplete"]
        for r in records:
            hdrs = dict(r.headers)
            assert hdrs[headers.EVENT_TYPE] == b"training.mandatory.completed"
            assert len(hdrs[headers.EVENT_ID]) == 64 and headers.RECEIVED_AT in hdrs

        # The samples again (eduMe's retries past the ingress's memory): nothing changes.
        publish(broker.bootstrap, prefix, samples)

        async def repeats_seen() -> bool:
            return await worker.metric("edume_worker_events_repeated_total") == len(samples)

        assert await eventually(repeats_seen)
        again = await read_topic(broker.bootstrap, prefix + "training.mandatory.completed", 2)
        assert len(again) == 2
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]


async def test_poison_goes_to_streams_dlq_and_the_worker_goes_on(
    broker: EmbeddedBroker, prefix: str, ingress: RunningIngress, worker: WorkerProcess
) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": broker.bootstrap})
    producer.produce(prefix + "edume.learner.events", b"{not json", b"1")
    producer.produce(prefix + "edume.course.events", b'{"type":"course.flew"}', b"1")
    producer.produce(prefix + "training.policies", b'{"courseId": 5}', b"5")
    assert producer.flush(10) == 0
    body = compact((FIXTURES / "learner.added.json").read_bytes())
    assert (await ingress.post(body))[0] == 202
    dead = await read_topic(broker.bootstrap, prefix + "streams.dlq", 3)
    reasons = {r.key.decode().split("/")[0]: dict(r.headers)[headers.DLQ_REASON].decode()
               for r in dead}
    assert reasons == {
        prefix + "edume.learner.events": "not JSON",
        prefix + "edume.course.events": "unknown type 'course.flew'",
        prefix + "training.policies": "the value is not a training policy (mandatory, "
                                      "groupIds)",
    }
    for r in dead:
        assert dict(r.headers)[headers.DLQ_SOURCE] == r.key

    async def applied() -> Any:
        status, _ = await worker.get("/learners/10217/progress")
        return status == 200

    assert await eventually(applied)


async def test_an_event_stamped_far_ahead_is_a_dead_letter_and_the_course_stays_published(
    broker: EmbeddedBroker, prefix: str, ingress: RunningIngress, worker: WorkerProcess
) -> None:
    for name in ("course.added.json", "course.published.json"):
        assert (await ingress.post(compact((FIXTURES / name).read_bytes())))[0] == 202
    unpublished = json.loads((FIXTURES / "course.unpublished.json").read_bytes())
    unpublished["timestamp"] = "2099-01-01T00:00:00.000Z"
    status, _, answer = await ingress.post(compact(json.dumps(unpublished).encode()))
    assert status == 202 and answer["topic"] == prefix + "edume.webhooks.dlq"
    # The same kind of event written to the course topic by another producer (or a
    # replay), which the ingress never checked: the worker refuses it.
    unpublished["timestamp"] = "2099-01-01T00:00:01.000Z"
    publish(broker.bootstrap, prefix, [event(unpublished)])
    [dead] = await read_topic(broker.bootstrap, prefix + "streams.dlq", 1)
    reason = dict(dead.headers)[headers.DLQ_REASON].decode()
    assert "clock skew over MAX_CLOCK_SKEW" in reason, reason

    async def course() -> Any:
        status, entry = await worker.get("/catalog/courses/22299")
        return status == 200 and entry["eventsApplied"] == 2 and entry

    entry = await eventually(course)
    assert entry and entry["published"] is True, entry
    assert await worker.metric("edume_worker_dlq_total",
                               lambda head: 'reason="clock_skew"' in head) == 1

    # External user ids as keys are bounded: the query API refuses a longer one.
    status, body = await worker.get("/links?externalUserId=" + "x" * 257)
    assert status == 400 and "256" in body["error"]
    assert (await worker.get("/links?externalUserId=" + "x" * 256))[0] == 200
