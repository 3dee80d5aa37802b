"""Inputs that could corrupt state are refused where they enter: an event stamped far after
its receipt (``MAX_CLOCK_SKEW``), an id JavaScript does not hold exactly, an external user id
longer than a key may be, and keys that would grow the partition cache without bound."""

from __future__ import annotations

import json
import time
from typing import Any

import orjson
import pytest
from aiokafka.partitioner import murmur2
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas import WEBHOOK_ADAPTER, webhook_json_schema
from schemas.common import MAX_EXTERNAL_ID, MAX_ID
from schemas.outputs import LinkIssue, LinkRequest, MandatoryCompleted, TrainingPolicy
from streams.core import headers, records, topics
from streams.core.clock import MAX_CLOCK_SKEW_S, future_skew, rfc3339
from streams.core.dlq_plan import DeadLetter, Leave, Replay, decide_webhook, decide_worker_record
from streams.core.errors import ConfigurationError
from streams.core.jsjson import canonical
from streams.core.records import InRecord, Layout, OutRecord, dead_letter, partition_for
from streams.core.state.codec import decode_course
from streams.core.state.links import read_request
from streams.core.webhooks import Webhook, read_webhook
from streams.kafka.clients import KafkaConnection
from streams.settings import Settings
from streams.worker.processing import CourseProcessor
from streams.worker.replica import Replica
from tests.support import FIXTURES, SECRET, compact, ingress_publishes

PREFIX = "p."
LAYOUT = Layout.from_catalog(PREFIX)
COURSE_TOPIC = LAYOUT.name(topics.COURSE_EVENTS)
RECEIVED_MS = 1_796_083_200_000  # 2026-12-01T00:00:00Z
RECEIVED = rfc3339(RECEIVED_MS).encode()


def course_event(name: str, timestamp: str | None = None) -> bytes:
    """A course sample in its single-line form, restamped when ``timestamp`` is given."""
    doc = json.loads((FIXTURES / name).read_bytes())
    if timestamp is not None:
        doc["timestamp"] = timestamp
    return compact(json.dumps(doc).encode())


def course_record(value: bytes, offset: int = 0, *, received: bytes | None = RECEIVED,
                  timestamp_ms: int = RECEIVED_MS) -> InRecord:
    """A course event where the ingress would put it, with or without its received-at."""
    hdrs = [] if received is None else [(headers.RECEIVED_AT, received)]
    return InRecord(COURSE_TOPIC, partition_for(b"22299", 4), offset, b"22299", value, hdrs,
                    timestamp_ms)


def reason_of(out: Any) -> str:
    return str(dict(out.headers)[headers.DLQ_REASON].decode())


FAR_FUTURE = "2099-01-01T00:00:00.000Z"


# ------------------------------------------------------------------------ clock skew


def test_max_clock_skew_is_a_duration_of_one_hour_by_default() -> None:
    assert Settings.from_env({}).max_clock_skew_s == MAX_CLOCK_SKEW_S == 3600.0
    assert Settings.from_env({"MAX_CLOCK_SKEW": "30m"}).max_clock_skew_s == 1800.0
    assert Settings.from_env({"MAX_CLOCK_SKEW": "90"}).max_clock_skew_s == 90.0
    custom = Settings(max_clock_skew_s="2d")
    assert Settings.from_env(custom.to_env()) == custom
    for bad in ("0", "soon", "-1h"):
        with pytest.raises(ConfigurationError, match="MAX_CLOCK_SKEW"):
            Settings.from_env({"MAX_CLOCK_SKEW": bad})


def test_an_event_may_be_stamped_up_to_the_skew_after_its_receipt_and_no_more() -> None:
    received_us = RECEIVED_MS * 1000
    assert future_skew(received_us + 3_600_000_000, received_us, 3600) is None
    assert future_skew(received_us - 10**15, received_us, 3600) is None  # the past is fine
    reason = future_skew(received_us + 3_600_000_001, received_us, 3600)
    assert reason == "stamped 1h after it was received (clock skew over MAX_CLOCK_SKEW, 1h)"
    far = future_skew(received_us + 90 * 86_400_000_000, received_us, 1800)
    assert far == "stamped 90d after it was received (clock skew over MAX_CLOCK_SKEW, 30m)"


async def test_the_ingress_sends_an_event_stamped_past_the_skew_to_the_webhooks_dlq() -> None:
    settings = Settings(topic_prefix=PREFIX, webhook_secrets=(SECRET,),
                        max_clock_skew_s=600)
    body = course_event("course.unpublished.json", FAR_FUTURE)
    answer, (topic, key, value, hdrs) = await ingress_publishes(body, settings)
    assert topic == answer["topic"] == PREFIX + topics.WEBHOOKS_DLQ
    assert value == body and key == answer["eventId"].encode()
    reason = hdrs[headers.DLQ_REASON].decode()
    assert reason.startswith("course.unpublished stamped ") and "clock skew" in reason
    assert hdrs[headers.EVENT_TYPE] == b"course.unpublished"

    def stamped_ahead(seconds: float) -> bytes:
        return course_event("course.unpublished.json", rfc3339(int((time.time() + seconds)
                                                                     * 1000)))

    # Within the skew (a clock a few minutes ahead): published; past this ingress's
    # MAX_CLOCK_SKEW (10 minutes here): the DLQ.
    answer, (topic, *_) = await ingress_publishes(stamped_ahead(300), settings)
    assert topic == answer["topic"] == PREFIX + topics.COURSE_EVENTS
    answer, (topic, *_) = await ingress_publishes(stamped_ahead(1200), settings)
    assert topic == answer["topic"] == PREFIX + topics.WEBHOOKS_DLQ


def test_a_worker_dead_letters_an_event_stamped_past_the_skew_and_the_course_stays_published(
) -> None:
    proc = CourseProcessor(LAYOUT)
    published = course_record(course_event("course.published.json"), 0)
    future = course_record(course_event("course.unpublished.json", FAR_FUTURE), 1)
    step = proc.process([published, future], {}.get)
    [dead] = step.outputs
    assert dead.topic == LAYOUT.name(topics.STREAMS_DLQ) and dead.value == future.value
    assert dead.key == future.source.encode()
    assert reason_of(dead).startswith("stamped ") and "clock skew" in reason_of(dead)
    assert step.dead == {"clock_skew": 1} and sum(step.applied.values()) == 1
    _, state = step.states["22299"]
    assert decode_course(state).is_published is True


def test_without_a_received_at_the_record_timestamp_is_the_receipt() -> None:
    future = course_event("course.unpublished.json", FAR_FUTURE)
    read = read_webhook(course_record(future, received=None), "course", LAYOUT)
    assert isinstance(read, OutRecord) and "clock skew" in reason_of(read)
    # A received-at that is not a time counts as none.
    read = read_webhook(course_record(future, received=b"yesterday"), "course", LAYOUT)
    assert isinstance(read, OutRecord) and "clock skew" in reason_of(read)
    # Neither: nothing to judge by.
    read = read_webhook(course_record(future, received=None, timestamp_ms=-1), "course",
                        LAYOUT)
    assert isinstance(read, Webhook)


def test_the_workers_skew_is_their_setting() -> None:
    ahead = course_event("course.unpublished.json", rfc3339(RECEIVED_MS + 120_000))
    assert not CourseProcessor(LAYOUT).process([course_record(ahead)], {}.get).dead
    strict = CourseProcessor(LAYOUT, max_clock_skew_s=60)
    assert strict.process([course_record(ahead)], {}.get).dead == {"clock_skew": 1}


def test_the_catalog_copy_of_every_worker_leaves_out_an_event_stamped_past_the_skew() -> None:
    replica = Replica(KafkaConnection("127.0.0.1:9"), LAYOUT)
    received = [(headers.RECEIVED_AT, RECEIVED)]
    replica._apply_event(course_event("course.published.json"), received, RECEIVED_MS)
    replica._apply_event(course_event("course.unpublished.json", FAR_FUTURE), received,
                         RECEIVED_MS)
    assert replica.catalog[22299].is_published is True
    assert replica.catalog[22299].applied.count == 1


def test_a_replay_leaves_an_event_stamped_past_the_skew_of_its_original_receipt() -> None:
    body = course_event("course.unpublished.json", FAR_FUTURE)
    dlq_headers = [(headers.RECEIVED_AT, RECEIVED), (headers.DLQ_REASON, b"clock skew")]
    webhook = DeadLetter(PREFIX + topics.WEBHOOKS_DLQ, 0, 0, b"k", body, dlq_headers,
                         RECEIVED_MS + 1000)
    decision = decide_webhook(webhook, PREFIX)
    assert isinstance(decision, Leave) and "clock skew" in decision.reason
    assert isinstance(decide_webhook(webhook, PREFIX, max_skew_s=100 * 365 * 86_400), Replay)
    # A worker's dead letter: judged by the original record's received-at, not by when it
    # was dead-lettered.
    original = course_record(body)
    out = dead_letter(original, "refused", PREFIX + topics.STREAMS_DLQ)
    dead = DeadLetter(out.topic, 0, 0, out.key, out.value,
                      [(k, v if isinstance(v, bytes) else str(v).encode())
                       for k, v in out.headers], 4_102_444_800_000)  # dead-lettered in 2100
    decision = decide_worker_record(dead, LAYOUT)
    assert isinstance(decision, Leave) and "clock skew" in decision.reason


# ------------------------------------------------------------------------------- ids

ID_READINGS = [
    ("1", True),
    ("22299", True),
    ("9007199254740991", True),  # 2**53 - 1, Number.MAX_SAFE_INTEGER
    ("9007199254740992", False),  # 2**53: 2**53 + 1 reads as the same Number
    ("9007199254740993", False),
    ("18446744073709551616", False),  # 2**64: past orjson's integers, a float
    ("123456789012345678901234567890", False),
    ("0", False),
    ("-0", False),
    ("-1", False),
    ("1.0", False),
    ("1e3", False),
    ("1E0", False),
    ("1e400", False),  # infinity
]


def with_course_id(literal: str) -> bytes:
    body = course_event("course.published.json")
    assert body.count(b'"courseId":22299') == 1
    return body.replace(b'"courseId":22299', b'"courseId":' + literal.encode())


@pytest.mark.parametrize(("literal", "accepted"), ID_READINGS)
def test_an_id_is_read_exactly_or_refused(literal: str, accepted: bool) -> None:
    body = with_course_id(literal)
    # The ingress: JSON.parse's reading, then the schema.
    document, signed_form = canonical(body)
    # The workers: the schema straight from the bytes.
    for validate in (lambda: WEBHOOK_ADAPTER.validate_python(document),
                     lambda: WEBHOOK_ADAPTER.validate_json(body)):
        if accepted:
            event = validate()
            # Key and published value agree: the key is the digits JavaScript prints.
            assert str(event.routing_id) == literal
            assert b'"courseId":' + literal.encode() + b"," in signed_form
        else:
            with pytest.raises(ValidationError, match="courseId"):
                validate()


async def test_the_ingress_publishes_the_largest_id_under_one_key_and_dead_letters_the_next(
) -> None:
    settings = Settings(topic_prefix=PREFIX, webhook_secrets=(SECRET,))
    answer, (topic, key, value, _) = await ingress_publishes(with_course_id(str(MAX_ID)),
                                                             settings)
    assert topic == answer["topic"] == PREFIX + topics.COURSE_EVENTS
    assert key == b"9007199254740991"
    assert orjson.loads(value or b"")["payload"]["course"]["courseId"] == MAX_ID
    answer, (topic, key, value, hdrs) = await ingress_publishes(
        with_course_id(str(MAX_ID + 2)), settings)
    assert topic == answer["topic"] == PREFIX + topics.WEBHOOKS_DLQ
    assert hdrs[headers.DLQ_REASON].decode() == (
        "course.published does not match its schema: payload.course.courseId: Input should "
        "be less than or equal to 9007199254740991")


def _integer_ids(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every integer-typed schema of a property named like an id (``courseId``, ``id``,
    ``teamIds`` items), with where it is."""
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        for name, sub in (node.get("properties") or {}).items():
            if name == "id" or name.endswith(("Id", "Ids")):
                for choice in [sub, *sub.get("anyOf", [])]:
                    item = choice.get("items", choice)
                    if item.get("type") == "integer":
                        found.append((f"{path}.{name}", item))
        for key, sub in node.items():
            if key != "properties" or not isinstance(sub, dict):
                found += _integer_ids(sub, f"{path}/{key}")
            else:
                for name, prop in sub.items():
                    found += _integer_ids(prop, f"{path}.{name}")
    elif isinstance(node, list):
        for item in node:
            found += _integer_ids(item, path)
    return found


@pytest.mark.parametrize("schema", [
    webhook_json_schema(), TrainingPolicy.model_json_schema(), LinkRequest.model_json_schema(),
    LinkIssue.model_json_schema(), MandatoryCompleted.model_json_schema(),
], ids=["webhooks", "policy", "link-request", "link-issue", "mandatory-completed"])
def test_every_id_in_the_schemas_is_between_1_and_2_53_minus_1(schema: dict[str, Any]) -> None:
    ids = _integer_ids(schema)
    assert ids, "the walk found no id"
    for where, item in ids:
        assert (item.get("minimum"), item.get("maximum")) == (1, MAX_ID), where


# ---------------------------------------------------------------- external user ids


def link_request(ext: str) -> bytes:
    return orjson.dumps({"kind": "hub", "externalUserId": ext, "teamIds": [7]})


def test_an_external_user_id_has_at_most_256_characters() -> None:
    assert MAX_EXTERNAL_ID == 256
    ok = read_request(link_request("é" * 256))
    assert isinstance(ok, LinkRequest)
    refused = read_request(link_request("x" * 257))
    assert isinstance(refused, tuple) and refused[1] == (
        "malformed request: externalUserId: String should have at most 256 characters")
    doc = json.loads((FIXTURES / "learner.added.json").read_bytes())
    doc["payload"]["user"]["eId"] = "x" * 256
    WEBHOOK_ADAPTER.validate_python(doc)
    doc["payload"]["user"]["eId"] = "x" * 257
    with pytest.raises(ValidationError, match="eId"):
        WEBHOOK_ADAPTER.validate_python(doc)
    with pytest.raises(ValidationError, match="externalUserId"):
        LinkIssue(kind="hub", externalUserId="x" * 257, contentId=None, courseId=None,
                  teamIds=[7], reason="request", causeEventId="0" * 64)


def test_the_partition_cache_holds_short_keys_only() -> None:
    cache = records._cached_partition
    cache.cache_clear()
    for length in (records.CACHED_KEY_BYTES, records.CACHED_KEY_BYTES + 1, 1024):
        for i in range(50):
            key = str(i).encode().rjust(length, b"x")
            expected = (murmur2(key) & 0x7FFFFFFF) % 8
            assert partition_for(key, 8) == partition_for(key, 8) == expected
    info = cache.cache_info()
    assert (info.currsize, info.hits, info.maxsize) == (50, 50, 1 << 17)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=80))
def test_murmur2_is_kafka_s(key: bytes) -> None:
    assert records.murmur2(key) == murmur2(key) & 0xFFFFFFFF


def test_murmur2_of_known_keys() -> None:
    # Kafka's Java client: Utils.murmur2 of these keys, as signed 32-bit ints.
    known = {b"21": -973932308, b"foobar": -790332482, b"a-little-bit-long-string": -985981536,
             b"a-little-bit-longer-string": -1486304829,
             b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
             b"abc": 479470107}
    for key, signed in known.items():
        assert records.murmur2(key) == signed & 0xFFFFFFFF, key
