"""Seamless links through a real worker on the embedded broker: link requests from another
client (librdkafka's default CRC32 partitioner), assignment links, rejections, the query
API, and one link per request whatever is redelivered or reprocessed after a SIGKILL."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from schemas.outputs import TrainingPolicy
from streams.core import headers, topics
from streams.core.signing import build_link, sign_link
from streams.kafka.admin import ensure_topics
from streams.kafka.embedded import EmbeddedBroker
from streams.settings import Settings
from streams.tools.policy import write_policy
from tests.support import read_topic
from tests.worker_support import (
    LINK_SECRET,
    LINK_TOKEN,
    WorkerProcess,
    course_story,
    event,
    eventually,
    publish,
)

pytestmark = pytest.mark.integration

BASE = "https://learn.edume.com/e"


def now_stamp(offset_s: float = 0.0) -> str:
    t = time.time() + offset_s
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def publish_requests(bootstrap: str, topic: str, requests: list[tuple[str, bytes, str | None]],
                     partitioner: str = "consistent_random") -> None:
    """As a downstream app might: librdkafka's default partitioner (CRC32, not murmur2) or
    murmur2, some records with an ``edume-event-id``, some without. Stamped a minute ago:
    a worker that starts with them waiting must not refuse them while its catalog is still
    behind the course topics, however old they are."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all",
                         "partitioner": partitioner})
    failures: list[Any] = []
    minute_ago_ms = int((time.time() - 60) * 1000)
    for key, value, event_id in requests:
        hdrs = [(headers.EVENT_ID, event_id.encode())] if event_id else None
        producer.produce(topic, value, key.encode(), headers=hdrs, timestamp=minute_ago_ms,
                         on_delivery=lambda err, _m: failures.append(err) if err else None)
    assert producer.flush(30) == 0 and not failures


def request(ext: str, **fields: Any) -> tuple[str, bytes, str | None]:
    return ext, json.dumps({"externalUserId": ext, **fields}).encode(), None


def signed(kind: str, ext: str, content: int | None, teams: list[int]) -> str:
    return sign_link(build_link(kind, base_url=BASE, external_user_id=ext, content_id=content,
                                team_ids=teams), LINK_SECRET)


async def test_requests_and_assignments_give_one_signed_link_each(
    broker: EmbeddedBroker, prefix: str, tmp_path: Path
) -> None:
    await ensure_topics(broker.kafka, prefix)
    settings = Settings(kafka_bootstrap_servers=broker.bootstrap, topic_prefix=prefix)
    # Other courses first: the worker starts with a backlog of course events ahead of the
    # ones its link requests need, and must not refuse a request meanwhile.
    publish(broker.bootstrap, prefix, [
        *(e for c in range(10_000, 14_000) for e in course_story(c, [1])),
        *course_story(501, [7, 8]), *course_story(503, [7]), *course_story(504, []),
        course_story(502, [7])[0],  # added, never published
        event({"type": "course.deleted", "timestamp": "2026-10-02T00:00:00.000Z", "payload": {
            "group": {"groupId": 12779}, "teams": [{"teamId": 7}],
            "course": {"courseId": 503, "courseKey": "key-503"}, "modules": [], "version": 1}}),
    ])
    # Course 501 has two teams: the policy names the one an assignment link puts the
    # learner in (eduMe's g is the team the learner joins by clicking).
    write_policy(settings, 501, TrainingPolicy(courseId=501, mandatory=True, groupIds=[5],
                                               teamId=8))
    learner_ext = "ext 9001/+&=%é"
    publish(broker.bootstrap, prefix, [event({
        "type": "learner.added", "timestamp": now_stamp(), "payload": {
            "user": {"eId": learner_ext, "userId": 9001, "identifiers": []},
            "group": {"groupId": 5}, "courses": [{"courseId": 501}], "version": 1}})])

    header_id = "ab" * 32
    r1 = request("alice smith", kind="course", contentId=501)
    r2 = ("bob/+&=", json.dumps({"kind": "course", "courseId": 501, "teamIds": [8],
                                  "externalUserId": "bob/+&="}).encode(), header_id)
    r2_again = ("bob/+&=", json.dumps({"externalUserId": "bob/+&=", "kind": "course",
                                        "courseId": 501, "teamId": 8}).encode(), header_id)
    valid = [
        r1, r2,
        request("zoë", kind="module", contentId=10658, teamId=7, reason="onboarding, week 1"),
        request("alice smith", kind="hub", teamIds=[7]),
        request("carol", kind="knowledge-hub", contentId=3),
    ]
    refused = [
        (request("erin", kind="course", contentId=502), "course 502 is not published"),
        (request("erin", kind="course", contentId=503), "course 503 is deleted"),
        (request("erin", kind="course", contentId=999),
         "unknown course 999: no course events seen for it"),
        (request("erin", kind="course", contentId=501, teamIds=[9]),
         "team 9 is not assigned to course 501 (assigned: 7, 8)"),
        (request("erin", kind="course", contentId=504),
         "no team: course 504 is assigned to no team"),
        (request("erin", kind="podcast", contentId=1), "unknown kind 'podcast'"),
        (request("erin", kind="lesson", teamIds=[7]), "missing content id"),
        (("dave", b"{not json", None), "malformed request: not JSON"),
    ]
    requests_topic = prefix + topics.LINK_REQUESTS
    # The valid ones from a client that partitions as the ingress does (murmur2: read at
    # once), the refused ones from one with librdkafka's default (CRC32: re-keyed first).
    publish_requests(broker.bootstrap, requests_topic, [*valid, r1, r2_again],
                     partitioner="murmur2_random")
    publish_requests(broker.bootstrap, requests_topic, [r for r, _ in refused])

    worker = WorkerProcess(broker, prefix, tmp_path).start()
    try:
        await worker.wait_ready(90)
        issued = await read_topic(broker.bootstrap, prefix + topics.LINK_ISSUED, 6,
                                  timeout_s=40, grace_s=1.5)
        # (a re-keyed request is young again: one the catalog refuses waits out the grace)
        rejected = await read_topic(broker.bootstrap, prefix + topics.LINK_REJECTED,
                                    len(refused), timeout_s=40, grace_s=1.0)
        urls = sorted(json.loads(r.value)["url"] for r in issued)
        assert urls == sorted([
            signed("course", "alice smith", 501, [7, 8]),
            signed("course", "bob/+&=", 501, [8]),
            signed("module", "zoë", 10658, [7]),
            signed("hub", "alice smith", None, [7]),
            signed("knowledge-hub", "carol", 3, []),
            signed("course", learner_ext, 501, [8]),
        ])
        for record in issued:
            value = json.loads(record.value)
            assert record.key.decode() == value["externalUserId"]
            assert dict(record.headers)[headers.EVENT_TYPE] == topics.LINK_ISSUED.encode()
        reasons = {json.loads(r.value)["reason"] for r in issued}
        assert reasons == {"request", "assignment"}
        # Each link names what asked for it: a request's id (its edume-event-id, or the
        # SHA-256 of its value when it came without one) and its own reason text.
        named = {json.loads(r.value)["url"]: json.loads(r.value) for r in issued}
        bob = named[signed("course", "bob/+&=", 501, [8])]
        assert (bob["requestId"], bob["note"]) == (header_id, None)
        zoe = named[signed("module", "zoë", 10658, [7])]
        assert zoe["note"] == "onboarding, week 1"
        assert zoe["requestId"] == hashlib.sha256(valid[2][1]).hexdigest()
        assigned = named[signed("course", learner_ext, 501, [8])]
        assert (assigned["requestId"], assigned["note"]) == (None, None)
        said = [json.loads(r.value)["reason"] for r in rejected]
        for _, reason in refused:
            assert len([s for s in said if s.startswith(reason)]) == 1, (reason, said)
        assert len({dict(r.headers)[headers.EVENT_ID] for r in issued + rejected}) == 14
        dlq = await read_topic(broker.bootstrap, prefix + topics.STREAMS_DLQ, 1)
        assert dlq[0].value == b"{not json"
        assert await worker.metric("edume_worker_rekeyed_total") > 0  # CRC32 placed some

        status, mine = await worker.get("/learners/9001/links", LINK_TOKEN)
        assert status == 200, mine
        assert mine["userId"] == 9001 and mine["externalUserId"] == learner_ext
        assert [(x["kind"], x["reason"], x["courseId"]) for x in mine["links"]] == [
            ("course", "assignment", 501)]
        assert mine["links"][0]["url"] == signed("course", learner_ext, 501, [8])
        # A WORKER_API_TOKENS token sees the same links without their signed URLs.
        status, hidden = await worker.get("/learners/9001/links")
        assert status == 200
        assert hidden["links"] == [{k: v for k, v in link.items() if k != "url"}
                                   for link in mine["links"]]
        status, alice = await worker.get("/links?externalUserId=alice%20smith", LINK_TOKEN)
        assert status == 200
        assert sorted(x["kind"] for x in alice["links"]) == ["course", "hub"]
        assert all(x["url"].startswith(BASE) for x in alice["links"])
        status, alice_hidden = await worker.get("/links?externalUserId=alice%20smith")
        assert status == 200 and len(alice_hidden["links"]) == 2
        assert not any("url" in x for x in alice_hidden["links"])
        assert (await worker.get("/learners/424242/links"))[0] == 404

        # SIGKILL, the same requests again (and an assignment redelivered), restart:
        # nothing new is issued, and nothing is issued twice.
        worker.kill()
        publish_requests(broker.bootstrap, requests_topic, [*valid, r2_again])
        worker.start()
        await worker.wait_ready(90)

        async def reprocessed() -> bool:
            return await worker.metric("edume_worker_events_repeated_total") >= len(valid) + 1

        assert await eventually(reprocessed, 40), worker.log_text()[-3000:]
        again = await read_topic(broker.bootstrap, prefix + topics.LINK_ISSUED, 6,
                                 timeout_s=20, grace_s=2.0)
        # A batch written just before the kill may be written again: the same records,
        # byte for byte. A new link (another id) would be a second link for one cause.
        assert {(dict(r.headers)[headers.EVENT_ID], r.value) for r in again} == {
            (dict(r.headers)[headers.EVENT_ID], r.value) for r in issued}
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]
