"""The ingress over real HTTP against the embedded broker: every answer of the contract, and
what lands on which topic (read back by counting records)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import UTC, datetime

import pytest

from streams.kafka.embedded import EmbeddedBroker
from tests.support import (
    BEARER,
    FIXTURES,
    SECOND_SECRET,
    RunningIngress,
    compact,
    make_settings,
    manifest,
    read_topic,
    serve_ingress,
    sign,
)

COURSE = "edume.course.events"
LEARNER = "edume.learner.events"
DLQ = "edume.webhooks.dlq"
TOPIC_OF = {"course": COURSE, "learner": LEARNER}


def headers_of(record) -> dict[str, bytes]:
    return dict(record.headers)


async def test_every_sample_lands_on_its_topic_with_key_value_and_headers(
    ingress: RunningIngress, broker: EmbeddedBroker
) -> None:
    """Each eduMe sample, sent pretty-printed and signed over its JSON.stringify form as eduMe
    signs, is published once, compact, keyed by courseId or userId, with the headers."""
    entries = manifest()
    assert len(entries) == 18  # 17 event kinds; the assessment sample exists started and finished
    expected: dict[str, dict[bytes, dict]] = {COURSE: {}, LEARNER: {}}
    before = datetime.now(UTC)
    for entry in entries:
        pretty = (FIXTURES / entry["file"]).read_bytes()
        value = compact(pretty)
        status, _, answer = await ingress.post(pretty, secret=None,
                                               headers={"X-Edume-Signature": sign(value)})
        topic = TOPIC_OF[entry["family"]]
        assert status == 202, (entry["file"], answer)
        assert answer == {"eventId": hashlib.sha256(value).hexdigest(),
                          "topic": ingress.topic(topic), "duplicate": False}
        expected[topic][value] = entry

    for topic, by_value in expected.items():
        records = await read_topic(broker.bootstrap, ingress.topic(topic), len(by_value))
        assert len(records) == len(by_value), topic
        for record in records:
            entry = by_value[record.value]
            assert record.key == entry["key"].encode()
            h = headers_of(record)
            assert h["edume-event-id"] == hashlib.sha256(record.value).hexdigest().encode()
            assert h["edume-event-type"] == entry["canonical_type"].encode()
            received = datetime.fromisoformat(h["edume-received-at"].decode())
            assert h["edume-received-at"].endswith(b"Z")
            assert before <= received <= datetime.now(UTC)


async def test_completion_is_published_under_the_canonical_type_with_its_value_untouched(
    ingress: RunningIngress, broker: EmbeddedBroker
) -> None:
    """The reading chosen: `course.complete`, `course.completed` and `learner.course.completed`
    are one event, headed `learner.course.completed`; the value keeps the type as eduMe sent
    it (it is what eduMe signed), keyed by payload.user.id."""
    doc = json.loads((FIXTURES / "course.completed.json").read_bytes())
    for spelling in ("course.complete", "course.completed", "learner.course.completed"):
        doc["type"] = spelling
        body = json.dumps(doc, separators=(",", ":")).encode()
        status, _, answer = await ingress.post(body)
        assert status == 202 and answer["topic"] == ingress.topic(LEARNER)
    records = await read_topic(broker.bootstrap, ingress.topic(LEARNER), 3)
    assert sorted(json.loads(r.value)["type"] for r in records) == [
        "course.complete", "course.completed", "learner.course.completed"]
    assert {headers_of(r)["edume-event-type"] for r in records} == {b"learner.course.completed"}
    assert {r.key for r in records} == {b"5398399"}


async def test_a_redelivery_is_flagged_duplicate_and_published_once(
    ingress: RunningIngress, broker: EmbeddedBroker
) -> None:
    """The same event raw-signed compact and JS-signed pretty-printed has one event id."""
    pretty = (FIXTURES / "learner.added.json").read_bytes()
    value = compact(pretty)
    first = await ingress.post(value)
    again = await ingress.post(pretty, secret=None, headers={"X-Edume-Signature": sign(value)})
    assert first[0] == again[0] == 202
    assert first[2]["duplicate"] is False and again[2]["duplicate"] is True
    assert first[2]["eventId"] == again[2]["eventId"]
    records = await read_topic(broker.bootstrap, ingress.topic(LEARNER), 1)
    assert len(records) == 1


async def test_concurrent_redeliveries_publish_once(
    ingress: RunningIngress, broker: EmbeddedBroker
) -> None:
    body = compact((FIXTURES / "course.published.json").read_bytes())
    answers = await asyncio.gather(*(ingress.post(body) for _ in range(20)))
    assert all(status == 202 for status, _, _ in answers)
    assert sorted(a["duplicate"] for _, _, a in answers) == [False] + [True] * 19
    assert len(await read_topic(broker.bootstrap, ingress.topic(COURSE), 1)) == 1


async def test_rotated_secret_and_bearer_token_authenticate(
    ingress: RunningIngress, broker: EmbeddedBroker
) -> None:
    a = compact((FIXTURES / "course.added.json").read_bytes())
    b = compact((FIXTURES / "course.deleted.json").read_bytes())
    c = compact((FIXTURES / "course.unpublished.json").read_bytes())
    assert (await ingress.post(a, secret=SECOND_SECRET))[0] == 202
    assert (await ingress.post(b, secret=None,
                               headers={"Authorization": f"Bearer {BEARER}"}))[0] == 202
    upper = sign(c).upper()
    assert (await ingress.post(c, secret=None,
                               headers={"X-Edume-Signature": f"sha256={upper}"}))[0] == 202
    records = await read_topic(broker.bootstrap, ingress.topic(COURSE), 3)
    assert len(records) == 3
    # How each was authenticated: the HMAC verified, lowercase hex; none for a bearer token.
    signature_of = {r.value: headers_of(r).get("edume-signature") for r in records}
    assert signature_of == {a: sign(a, SECOND_SECRET).encode(), b: None,
                            c: sign(c).encode()}


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("missing signature", 401),
        ("wrong secret", 401),
        ("tampered body", 401),
        ("wrong bearer", 401),
        ("not json", 400),
        ("json array", 400),
        ("invalid utf-8", 400),
        ("too deep", 400),
        ("oversized", 413),
    ],
)
async def test_refused_requests_publish_nothing(
    ingress: RunningIngress, broker: EmbeddedBroker, case: str, status: int
) -> None:
    good = compact((FIXTURES / "course.added.json").read_bytes())
    limit = ingress.settings.max_body_bytes
    body, headers, secret = good, {}, "test-secret-0123456789"
    if case == "missing signature":
        secret = None
    elif case == "wrong secret":
        secret = "not-the-secret"
    elif case == "tampered body":
        headers = {"X-Edume-Signature": sign(good)}
        body, secret = good.replace(b"22299", b"22290"), None
    elif case == "wrong bearer":
        secret, headers = None, {"Authorization": "Bearer nope"}
    elif case == "not json":
        body = b"type=course.added"
    elif case == "json array":
        body = b"[" + good + b"]"
    elif case == "invalid utf-8":
        body = good.replace(b"tips", b"\xff\xfe")
    elif case == "too deep":
        body = b'{"type":"course.added","payload":' + b'{"a":' * 200 + b"1" + b"}" * 201
    elif case == "oversized":
        body = good[:-1] + b',"pad":"' + b"x" * limit + b'"}'
    got, _, answer = await ingress.post(body, headers, secret=secret)
    assert got == status, answer
    assert isinstance(answer["error"], str) and answer["error"]
    # A valid event afterwards is the only record on any topic.
    assert (await ingress.post(good))[0] == 202
    assert len(await read_topic(broker.bootstrap, ingress.topic(COURSE), 1)) == 1
    assert await read_topic(broker.bootstrap, ingress.topic(DLQ), 0, grace_s=0.3) == []


async def test_oversized_chunked_body_gets_413(ingress: RunningIngress) -> None:
    limit = ingress.settings.max_body_bytes

    async def chunks():
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536

    # A well-formed signature: a malformed one is refused before the body is read (401).
    async with ingress.http.post(ingress.url + "/webhooks/edume", data=chunks(),
                                 headers={"X-Edume-Signature": sign(b"x")}) as r:
        assert r.status == 413


async def test_a_body_of_the_largest_accepted_size_is_published(
    ingress: RunningIngress, broker: EmbeddedBroker
) -> None:
    """The producer and the topics take any body the ingress accepts: exactly
    ``MAX_BODY_BYTES`` of an authentic event (an unknown field pads it) lands whole."""
    good = compact((FIXTURES / "course.added.json").read_bytes())
    limit = ingress.settings.max_body_bytes
    filler = limit - len(good) - len(b',"pad":""')
    body = good[:-1] + b',"pad":"' + b"x" * filler + b'"}'
    assert len(body) == limit
    status, _, answer = await ingress.post(body)
    assert status == 202, answer
    [record] = await read_topic(broker.bootstrap, ingress.topic(COURSE), 1)
    assert record.value == body


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"type":"course.renamed","payload":{},"timestamp":"2022-07-13T12:03:54.530Z"}',
         b"unknown type 'course.renamed'"),
        (b'{"payload":{},"timestamp":"2022-07-13T12:03:54.530Z"}', b"type missing or not a string"),
        (b'{"type":"course.added","payload":{"group":{"groupId":1}},"timestamp":"x"}',
         b"course.added does not match its schema: payload.teams: Field required; "
         b"payload.course: Field required"),
    ],
)
async def test_authentic_but_unroutable_events_go_to_the_dlq_raw(
    ingress: RunningIngress, broker: EmbeddedBroker, body: bytes, reason: bytes
) -> None:
    pretty = json.dumps(json.loads(body), indent=3).encode()  # raw bytes are kept as sent
    status, _, answer = await ingress.post(pretty)
    assert status == 202
    assert answer["topic"] == ingress.topic(DLQ) and answer["duplicate"] is False
    [record] = await read_topic(broker.bootstrap, ingress.topic(DLQ), 1)
    assert record.value == pretty
    assert record.key == answer["eventId"].encode()
    h = headers_of(record)
    assert h["edume-dlq-reason"].startswith(reason), h["edume-dlq-reason"]
    assert h["edume-event-id"] == answer["eventId"].encode()
    assert answer["eventId"] == hashlib.sha256(compact(pretty)).hexdigest()


async def test_operational_endpoints(ingress: RunningIngress) -> None:
    assert (await ingress.get("/healthz"))[0] == 200
    assert (await ingress.get("/readyz"))[0] == 200
    await ingress.post(b"{}", secret="wrong")
    status, text = await ingress.get("/metrics")
    assert status == 200
    assert b'edume_ingress_requests_total{outcome="unauthorized"} 1' in text
    assert b'edume_ingress_verification_failures_total{reason="mismatch"} 1' in text
    assert b"edume_ingress_publish_seconds_bucket" in text
    assert b"edume_ingress_broker_ready 1.0" in text
    for secret in ("test-secret-0123456789", SECOND_SECRET, BEARER):
        assert secret.encode() not in text
    status, doc = await ingress.get("/openapi.json")
    spec = json.loads(doc)
    assert status == 200 and spec["openapi"].startswith("3.")
    assert set(spec["paths"]["/webhooks/edume"]["post"]["responses"]) >= {
        "202", "400", "401", "413", "503"}
    assert (await ingress.get("/nope"))[0] == 404
    async with ingress.http.get(ingress.url + "/webhooks/edume") as r:
        assert r.status == 405 and r.headers["Allow"] == "POST"
    for method, path in (("POST", "/healthz"), ("DELETE", "/metrics"), ("PUT", "/readyz")):
        async with ingress.http.request(method, ingress.url + path) as r:
            assert r.status == 405 and r.headers["Allow"] == "GET, HEAD", (method, path)
    async with ingress.http.delete(ingress.url + "/nope") as r:
        assert r.status == 404


async def test_concurrent_distinct_events_are_batched_without_loss_or_misplacement(
    ingress: RunningIngress, broker: EmbeddedBroker
) -> None:
    """300 learner events at once share batches; each lands once, on the partition Kafka's
    default partitioner (aiokafka's implementation here, as an independent oracle) picks."""
    from aiokafka.partitioner import DefaultPartitioner

    template = json.loads((FIXTURES / "learner.activity.started.lesson.json").read_bytes())
    bodies = []
    for i in range(300):
        template["payload"]["user"]["userId"] = 50_000 + i
        bodies.append(json.dumps(template, separators=(",", ":")).encode())
    answers = await asyncio.gather(*(ingress.post(b) for b in bodies))
    assert [a[0] for a in answers] == [202] * 300
    records = await read_topic(broker.bootstrap, ingress.topic(LEARNER), 300)
    assert sorted(r.value for r in records) == sorted(bodies)
    partitions = list(range(8))
    for r in records:
        assert r.partition == DefaultPartitioner()(r.key, partitions, partitions)


async def test_a_body_not_received_in_time_gets_408(broker: EmbeddedBroker, prefix: str) -> None:
    """A sender that stops half-way through its body is answered 408 once
    ``REQUEST_TIMEOUT_S`` has passed, and nothing is published."""
    settings = make_settings(broker.bootstrap, prefix, request_timeout_s=0.3)
    async with serve_ingress(settings) as running:
        body = compact((FIXTURES / "course.added.json").read_bytes())
        reader, writer = await asyncio.open_connection(settings.ingress_host,
                                                       settings.ingress_port)
        try:
            writer.write(
                b"POST /webhooks/edume HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"X-Edume-Signature: " + sign(body).encode() + b"\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:40]
            )
            await writer.drain()
            started = asyncio.get_running_loop().time()
            status_line = await asyncio.wait_for(reader.readline(), 5)
            waited = asyncio.get_running_loop().time() - started
        finally:
            writer.close()
        assert status_line.startswith(b"HTTP/1.1 408"), status_line
        assert 0.25 <= waited < 2.0
        assert (await running.post(body))[0] == 202  # the ingress carries on
        assert len(await read_topic(broker.bootstrap, running.topic(COURSE), 1)) == 1
