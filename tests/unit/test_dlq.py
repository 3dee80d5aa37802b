"""``dlq replay`` without a broker: what each dead letter becomes (a copy to republish, or a
reason to leave it), the ingress itself as the oracle for republished webhooks, the worker's
rules for worker dead letters, the replay log, ``--since`` and the counts."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from streams.core import headers, topics
from streams.core.dlq_plan import (
    DeadLetter,
    Leave,
    Planner,
    Replay,
    ReplayLog,
    Tally,
    decide_webhook,
    decide_worker_record,
    original_event_id,
    parse_place,
    parse_time,
)
from streams.core.jsjson import canonical
from streams.core.records import InRecord, Layout, dead_letter, partition_for
from streams.core.webhooks import Webhook, read_webhook
from streams.settings import Settings
from tests.support import FIXTURES, SECRET, ingress_publishes, manifest, sign

PREFIX = "p."
LAYOUT = Layout.from_catalog(PREFIX)
WEBHOOKS_DLQ = PREFIX + topics.WEBHOOKS_DLQ
STREAMS_DLQ = PREFIX + topics.STREAMS_DLQ
LEARNER_TOPIC = PREFIX + topics.LEARNER_EVENTS
RECEIVED = b"2024-05-06T07:08:09.123Z"
SETTINGS = Settings(topic_prefix=PREFIX, webhook_secrets=(SECRET,))
LESSON = (FIXTURES / "learner.activity.finished.lesson.json").read_bytes()  # pretty-printed


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def webhook_dead_letter(body: bytes, offset: int = 0, *, event_type: bytes | None = None,
                        timestamp_ms: int = 1_714_979_289_123,
                        signed: bool = True) -> DeadLetter:
    """An ``edume.webhooks.dlq`` record as the ingress writes it (``signed``: verified by
    its signature over ``body``, not by a bearer token)."""
    event_id = sha(canonical(body)[1]).encode() if _is_json(body) else sha(body).encode()
    hdrs = [(headers.EVENT_ID, event_id)]
    if event_type is not None:
        hdrs.append((headers.EVENT_TYPE, event_type))
    hdrs.append((headers.RECEIVED_AT, RECEIVED))
    if signed:
        hdrs.append((headers.SIGNATURE, sign(body).encode()))
    hdrs.append((headers.DLQ_REASON, b"unknown type 'x'"))
    return DeadLetter(WEBHOOKS_DLQ, 0, offset, event_id, body, hdrs, timestamp_ms)


def _is_json(body: bytes) -> bool:
    try:
        canonical(body)
    except Exception:
        return False
    return True


def worker_dead_letter(record: InRecord, reason: str = "refused", offset: int = 0) -> DeadLetter:
    """A ``streams.dlq`` record as a worker writes it (``records.dead_letter``)."""
    out = dead_letter(record, reason, STREAMS_DLQ)
    assert out.value is not None or record.value is None
    hdrs = [(k, v if isinstance(v, bytes) else str(v).encode()) for k, v in out.headers]
    return DeadLetter(out.topic, 0, offset, out.key, out.value, hdrs, 1_714_979_300_000)


def source_record(value: bytes | None, topic: str = topics.LEARNER_EVENTS, *,
                  key: bytes | None = b"10215", partition: int = 3, offset: int = 17,
                  event_id: str | None = None) -> InRecord:
    hdrs: list[tuple[str, bytes]] = []
    if event_id is not None:
        hdrs.append((headers.EVENT_ID, event_id.encode()))
    hdrs += [(headers.EVENT_TYPE, b"learner.activity.finished"), (headers.RECEIVED_AT, RECEIVED),
             ("x-trace", b"abc")]
    return InRecord(PREFIX + topic, partition, offset, key, value, hdrs, 1_714_979_290_000)


# ------------------------------------------------------------ the ingress as the oracle


@pytest.mark.parametrize("entry", manifest(), ids=lambda e: e["file"])
async def test_a_webhook_valid_now_is_republished_as_the_ingress_publishes_it(
    entry: dict[str, Any]
) -> None:
    raw = (FIXTURES / entry["file"]).read_bytes()  # pretty-printed: not what eduMe signs
    body = canonical(raw)[1]
    for sent in (raw, body):
        decision = decide_webhook(webhook_dead_letter(sent), PREFIX)
        assert isinstance(decision, Replay)
        _, (topic, key, value, hdrs) = await ingress_publishes(sent, SETTINGS)
        assert (decision.topic, decision.key, decision.value) == (topic, key, value)
        assert decision.topic == PREFIX + topics.EVENT_TOPIC_BY_FAMILY[entry["family"]]
        assert decision.key == entry["key"].encode()
        assert [k for k, _ in decision.headers] == [k for k in hdrs]
        mine = dict(decision.headers)
        assert mine[headers.SIGNATURE] == hdrs[headers.SIGNATURE] == sign(sent).encode()
        assert mine[headers.EVENT_ID] == hdrs[headers.EVENT_ID] == sha(body).encode()
        assert mine[headers.EVENT_TYPE] == hdrs[headers.EVENT_TYPE]
        assert mine[headers.EVENT_TYPE] == entry["canonical_type"].encode()
        assert mine[headers.RECEIVED_AT] == RECEIVED  # the original, not the replay's time
        assert decision.replay_id == sha(body)


def test_a_webhook_keeps_the_event_id_the_ingress_gave_it() -> None:
    dead = webhook_dead_letter(LESSON)
    other = "ab" * 32
    hdrs = [(k, other.encode() if k == headers.EVENT_ID else v) for k, v in dead.headers]
    moved = DeadLetter(dead.topic, 0, 0, dead.key, dead.value, hdrs, 0)
    decision = decide_webhook(moved, PREFIX)
    assert isinstance(decision, Replay) and decision.replay_id == other
    # No header: the key; neither: the id computed as the ingress computes it.
    keyed = DeadLetter(dead.topic, 0, 0, other.encode(), dead.value, [], 0)
    assert isinstance(r := decide_webhook(keyed, PREFIX), Replay) and r.replay_id == other
    bare = DeadLetter(dead.topic, 0, 0, b"junk", dead.value, [], 1_714_979_289_123)
    assert isinstance(r := decide_webhook(bare, PREFIX), Replay)
    assert r.replay_id == sha(canonical(LESSON)[1])
    assert dict(r.headers)[headers.RECEIVED_AT] == b"2024-05-06T07:08:09.123Z"


@pytest.mark.parametrize(("body", "reason"), [
    (b'{"type":"learner.teleported","payload":{},"timestamp":"2024-01-01T00:00:00Z"}',
     "unknown type 'learner.teleported'"),
    (b'{"payload":{},"timestamp":"2024-01-01T00:00:00Z"}', "type missing or not a string"),
    (LESSON.replace(b'"userId": 10215', b'"userId": "10215"'),
     "learner.activity.finished does not match its schema: "),
    (b"[1, 2]", "body is not a JSON object"),
    (b"{not json", "body is"),
])
def test_a_webhook_that_still_fails_is_left_with_the_ingress_reason(
    body: bytes, reason: str
) -> None:
    decision = decide_webhook(webhook_dead_letter(body), PREFIX)
    assert isinstance(decision, Leave) and decision.verdict == "still invalid"
    assert decision.reason.startswith(reason), decision.reason


def test_a_webhook_nested_deeper_than_the_limit_is_left() -> None:
    deep = b'{"type":"learner.added","payload":' + b'{"a":' * 10 + b"1" + b"}" * 11
    decision = decide_webhook(webhook_dead_letter(deep), PREFIX, max_depth=5)
    assert isinstance(decision, Leave) and decision.verdict == "still invalid"


# ------------------------------------------------------------ worker dead letters


def test_a_learner_event_goes_back_to_its_topic_with_its_original_event_id() -> None:
    value = canonical(LESSON)[1]
    event_id = sha(value)  # the ingress's id
    dead = worker_dead_letter(source_record(value, event_id=event_id, key=b"wrong"))
    assert dead.text(headers.EVENT_ID) != event_id  # the dead letter carries a derived one
    decision = decide_worker_record(dead, LAYOUT)
    assert isinstance(decision, Replay)
    assert (decision.topic, decision.key, decision.value) == (LEARNER_TOPIC, b"10215", value)
    assert decision.headers == [
        (headers.EVENT_ID, event_id.encode()),
        (headers.EVENT_TYPE, b"learner.activity.finished"),
        (headers.RECEIVED_AT, RECEIVED),
        ("x-trace", b"abc"),
    ]
    assert decision.replay_id == event_id
    # Where the producer will put it (murmur2 of the key), the worker applies it.
    partition = partition_for(decision.key, LAYOUT.count(topics.LEARNER_EVENTS))
    back = InRecord(LEARNER_TOPIC, partition, 99, decision.key, decision.value,
                    decision.headers, 0)
    read = read_webhook(back, "learner", LAYOUT)
    assert isinstance(read, Webhook) and read.meta.event_id == event_id


def test_a_course_event_goes_back_to_the_course_topic() -> None:
    value = canonical((FIXTURES / "course.added.json").read_bytes())[1]
    dead = worker_dead_letter(source_record(value, topics.COURSE_EVENTS, event_id=sha(value)))
    decision = decide_worker_record(dead, LAYOUT)
    assert isinstance(decision, Replay)
    assert (decision.topic, decision.key) == (PREFIX + topics.COURSE_EVENTS, b"22299")
    assert dict(decision.headers)[headers.EVENT_TYPE] == b"course.added"


def test_an_event_that_had_no_id_or_another_one_gets_the_ingress_id() -> None:
    value = canonical(LESSON)[1]
    for original in (None, "cd" * 32):
        dead = worker_dead_letter(source_record(value, event_id=original))
        decision = decide_worker_record(dead, LAYOUT)
        assert isinstance(decision, Replay) and decision.replay_id == sha(value)
        assert dict(decision.headers)[headers.EVENT_ID] == sha(value).encode()


@pytest.mark.parametrize(("value", "topic", "reason"), [
    (b"not json{", topics.LEARNER_EVENTS, "not JSON"),
    (b'{"type":"nope","payload":{},"timestamp":"2024-01-01T00:00:00Z"}',
     topics.LEARNER_EVENTS, "unknown type 'nope'"),
    (canonical((FIXTURES / "course.added.json").read_bytes())[1], topics.LEARNER_EVENTS,
     "a course event on the learner family topic"),
    (None, topics.LEARNER_EVENTS, "a tombstone"),
    (canonical(LESSON.replace(b"2022-07-21T13:01:59.636Z", b"2022-13-45T99:01:59Z"))[1],
     topics.LEARNER_EVENTS, "timestamp '2022-13-45T99:01:59Z' is not an RFC 3339 time"),
])
def test_an_event_the_worker_still_refuses_is_left(
    value: bytes | None, topic: str, reason: str
) -> None:
    decision = decide_worker_record(worker_dead_letter(source_record(value, topic)), LAYOUT)
    assert isinstance(decision, Leave) and decision.verdict == "still invalid", decision
    assert decision.reason.startswith(reason), decision.reason


def test_a_link_request_goes_back_keyed_by_its_external_user() -> None:
    value = b'{"kind":"hub","externalUserId":"jane doe","teamIds":[5]}'
    # Sent without an id: the links agent knows it by its value's SHA-256, with and after.
    dead = worker_dead_letter(source_record(value, topics.LINK_REQUESTS, key=b"x"))
    decision = decide_worker_record(dead, LAYOUT)
    assert isinstance(decision, Replay)
    assert (decision.topic, decision.key, decision.value) == (
        PREFIX + topics.LINK_REQUESTS, b"jane doe", value)
    assert headers.EVENT_ID not in dict(decision.headers)
    assert decision.replay_id == sha(value)
    assert dict(decision.headers)[headers.RECEIVED_AT] == RECEIVED
    # Sent with its value's SHA-256 as its id: recovered, and kept.
    dead = worker_dead_letter(source_record(value, topics.LINK_REQUESTS, event_id=sha(value)))
    decision = decide_worker_record(dead, LAYOUT)
    assert isinstance(decision, Replay)
    assert dict(decision.headers)[headers.EVENT_ID] == sha(value).encode()


def test_a_malformed_link_request_is_left() -> None:
    dead = worker_dead_letter(source_record(b'{"kind":"hub"}', topics.LINK_REQUESTS))
    decision = decide_worker_record(dead, LAYOUT)
    assert isinstance(decision, Leave) and decision.verdict == "still invalid"
    assert decision.reason.startswith("malformed request")


def test_policies_are_never_republished() -> None:
    good = b'{"courseId":9961,"mandatory":true,"groupIds":[5]}'
    decision = decide_worker_record(
        worker_dead_letter(source_record(good, topics.TRAINING_POLICIES, key=b"abc")), LAYOUT)
    assert isinstance(decision, Leave) and decision.verdict == "not replayable"
    assert "policy set" in decision.reason
    bad = b'{"courseId":9961,"mandatory":"sometimes"}'
    decision = decide_worker_record(
        worker_dead_letter(source_record(bad, topics.TRAINING_POLICIES)), LAYOUT)
    assert isinstance(decision, Leave) and decision.verdict == "still invalid"
    assert decision.reason.startswith("the value is not a training policy")
    tombstone = worker_dead_letter(source_record(None, topics.TRAINING_POLICIES))
    assert isinstance(d := decide_worker_record(tombstone, LAYOUT), Leave)
    assert d.verdict == "not replayable"


@pytest.mark.parametrize("topic", [topics.LINK_ISSUE, topics.LEARNER_REKEY, "other.topic"])
def test_records_from_other_topics_are_not_replayable(topic: str) -> None:
    dead = worker_dead_letter(source_record(canonical(LESSON)[1], topic))
    decision = decide_worker_record(dead, LAYOUT)
    assert isinstance(decision, Leave) and decision.verdict == "not replayable"
    # An event topic of another prefix is another deployment's.
    unprefixed = source_record(canonical(LESSON)[1])._replace(topic=topics.LEARNER_EVENTS)
    decision = decide_worker_record(worker_dead_letter(unprefixed), LAYOUT)
    assert isinstance(decision, Leave) and decision.verdict == "not replayable"


def test_a_dead_letter_without_a_source_uses_its_key_or_is_left() -> None:
    value = canonical(LESSON)[1]
    dead = worker_dead_letter(source_record(value, event_id=sha(value)))
    no_header = [(k, v) for k, v in dead.headers if k != headers.DLQ_SOURCE]
    keyed = DeadLetter(dead.topic, 0, 0, dead.key, value, no_header, 0)
    assert isinstance(decide_worker_record(keyed, LAYOUT), Replay)
    lost = DeadLetter(dead.topic, 0, 0, b"what", value, no_header, 0)
    decision = decide_worker_record(lost, LAYOUT)
    assert isinstance(decision, Leave) and decision.verdict == "not replayable"


def test_places_and_original_ids() -> None:
    assert parse_place("p.edume.learner.events/3/17") == ("p.edume.learner.events", 3, 17)
    for bad in ("", "a/b/c", "/1/2", "topic/1", "t/-1/2", "t/1/2x"):
        assert parse_place(bad) is None, bad
    value = canonical(LESSON)[1]
    dead = worker_dead_letter(source_record(value, event_id="ef" * 32))
    place = f"{LEARNER_TOPIC}/3/17"
    assert original_event_id(dead, place, ["00" * 32, "ef" * 32]) == "ef" * 32
    assert original_event_id(dead, place, ["00" * 32]) is None


# ------------------------------------------------------------ time


@pytest.mark.parametrize(("text", "ms"), [
    ("2024-05-06", 1_714_953_600_000),
    ("2024-05-06T07:08:09Z", 1_714_979_289_000),
    ("2024-05-06t07:08:09.123z", 1_714_979_289_123),
    ("2024-05-06T09:08:09.5+02:00", 1_714_979_289_500),
    ("2024-05-06 07:08:09Z", 1_714_979_289_000),
])
def test_since_takes_rfc3339_times_and_dates(text: str, ms: int) -> None:
    assert parse_time(text) == ms


@pytest.mark.parametrize("text", [
    "2024-05-06T07:08:09", "yesterday", "2024-13-01", "2024-05-06T25:00:00Z", "1714979289", ""])
def test_since_refuses_anything_else(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time(text)


def test_a_dead_letter_time_is_its_timestamp_or_its_received_at() -> None:
    dead = webhook_dead_letter(LESSON, timestamp_ms=42)
    assert dead.time_ms() == 42
    untimed = DeadLetter(dead.topic, 0, 0, None, None, dead.headers, -1)
    assert untimed.time_ms() == parse_time(RECEIVED.decode())
    assert DeadLetter(dead.topic, 0, 0, None, None, [], -1).time_ms() is None


# ------------------------------------------------------------ the log, the plan, the counts


def test_the_replay_log_reads_back_what_it_records() -> None:
    dead = webhook_dead_letter(LESSON, offset=4)
    copy = decide_webhook(dead, PREFIX)
    assert isinstance(copy, Replay)
    key, value = ReplayLog.record(dead, copy, 1_714_979_289_123)
    assert key == f"{WEBHOOKS_DLQ}/0/4".encode()
    assert json.loads(value) == {
        "dlqRecord": f"{WEBHOOKS_DLQ}/0/4", "dlqEventId": copy.replay_id,
        "topic": LEARNER_TOPIC, "replayId": copy.replay_id, "eventId": copy.replay_id,
        "replayedAt": "2024-05-06T07:08:09.123Z"}
    log = ReplayLog()
    log.load(key, value)
    log.load(b"junk", b"not json")
    log.load(None, None)
    assert log.replayed(dead) and log.has_copy(copy)
    # The same place with another record (the DLQ topic created anew): not replayed.
    other = webhook_dead_letter((FIXTURES / "learner.added.json").read_bytes(), offset=4)
    assert other.place == dead.place and not log.replayed(other)


def test_the_planner_replays_each_copy_once_and_counts() -> None:
    valid = webhook_dead_letter(LESSON, 0)
    again = webhook_dead_letter(canonical(LESSON)[1], 1)  # the same event refused twice
    invalid = webhook_dead_letter(b'{"type":"x","payload":{},"timestamp":"t"}', 2)
    done = webhook_dead_letter((FIXTURES / "learner.added.json").read_bytes(), 3)
    old = webhook_dead_letter((FIXTURES / "course.added.json").read_bytes(), 4, timestamp_ms=1)
    learner_value = canonical((FIXTURES / "learner.activated.json").read_bytes())[1]
    worker = worker_dead_letter(source_record(learner_value, event_id=sha(learner_value)))
    issue = worker_dead_letter(source_record(learner_value, topics.LINK_ISSUE), offset=1)
    issue = DeadLetter(issue.topic, 0, 1, issue.key, issue.value, issue.headers, 10**13)

    log = ReplayLog()
    done_copy = decide_webhook(done, PREFIX)
    assert isinstance(done_copy, Replay)
    log.load(*ReplayLog.record(done, done_copy, 0))
    planner = Planner(log, prefix=PREFIX, layout=LAYOUT, since_ms=1000)
    actions = [planner.consider(d)[0]
               for d in (valid, again, invalid, done, old, worker, issue)]
    assert actions == ["publish", "record", "none", "none", "none", "publish", "none"]
    webhooks, streams = planner.tally(WEBHOOKS_DLQ), planner.tally(STREAMS_DLQ)
    assert (webhooks.replayed, webhooks.still_invalid, webhooks.replayed_before,
            webhooks.not_replayable, webhooks.before_since) == (1, 1, 2, 0, 1)
    assert (streams.replayed, streams.not_replayable) == (1, 1)
    assert webhooks.reasons == {("still invalid", "unknown type 'x'"): 1}
    assert planner.total().line("total", dry_run=False) == (
        "total: 2 replayed, 1 still invalid, 2 replayed before, 1 not replayable, "
        "1 before --since")
    # A second plan over the same log: everything replayed is known by its place.
    second = Planner(log, prefix=PREFIX, layout=LAYOUT)
    assert [second.consider(d)[0] for d in (valid, again, worker)] == ["none"] * 3
    assert second.total().replayed_before == 3


def test_count_lines_read_as_documented() -> None:
    tally = Tally(replayed=3, still_invalid=2, replayed_before=1)
    assert tally.line("edume.webhooks.dlq", dry_run=False) == (
        "edume.webhooks.dlq: 3 replayed, 2 still invalid, 1 replayed before, "
        "0 not replayable, 0 before --since")
    assert tally.line("streams.dlq", dry_run=True).startswith("streams.dlq: 3 would replay, ")


def test_a_webhook_authenticated_by_a_bearer_token_is_replayed_without_a_signature() -> None:
    body = canonical((FIXTURES / "learner.added.json").read_bytes())[1]
    decision = decide_webhook(webhook_dead_letter(body, signed=False), PREFIX)
    assert isinstance(decision, Replay)
    assert headers.SIGNATURE not in dict(decision.headers)
    signed = decide_webhook(webhook_dead_letter(body), PREFIX)
    assert isinstance(signed, Replay)
    assert dict(signed.headers)[headers.SIGNATURE] == sign(body).encode()
