"""The processors without a broker: every eduMe sample applied, repeats absorbed, poison to the
DLQ with a reason, misplaced records re-keyed to their partition."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import orjson
import pytest

from streams.core import headers, topics
from streams.core.erasures import ErasureBook
from streams.core.records import InRecord, Layout, partition_for
from streams.core.state.catalog import CourseEntry
from streams.core.state.codec import decode_course, decode_learner
from streams.core.state.policies import Policy, PolicyBook
from streams.worker.links import LinkProcessor
from streams.worker.processing import (
    CourseProcessor,
    LearnerProcessor,
    check_policies,
)
from tests.support import FIXTURES, compact, manifest

LAYOUT = Layout.from_catalog("p.")


class Replica:
    def __init__(self) -> None:
        self.policies = PolicyBook()
        self.catalog: dict[int, CourseEntry] = {}
        self.erasures = ErasureBook()


def record(
    value: bytes | None, key: str | None, topic: str, partition: int | None = None,
    offset: int = 0, extra: list[tuple[str, bytes]] | None = None,
) -> InRecord:
    count = LAYOUT.partitions[LAYOUT.name(topic)]
    if partition is None:
        partition = partition_for(key.encode(), count) if key is not None else 0
    hdrs = [(headers.RECEIVED_AT, b"2026-01-01T00:00:00.000Z")]
    if value is not None:
        hdrs.append((headers.EVENT_ID, hashlib.sha256(value).hexdigest().encode()))
    return InRecord(LAYOUT.name(topic), partition, offset, key.encode() if key else None, value,
                    hdrs + (extra or []), 1_700_000_000_000)


def samples(family: str) -> list[tuple[dict[str, Any], bytes]]:
    out = []
    for entry in manifest():
        if entry["family"] == family:
            out.append((entry, compact((FIXTURES / entry["file"]).read_bytes())))
    return out


class Store(dict[str, bytes]):
    def load(self, key: str) -> bytes | None:
        return self.get(key)

    def keep(self, states: dict[str, tuple[int, bytes]]) -> None:
        self.update({k: v for k, (_, v) in states.items()})


def test_every_course_sample_reaches_the_catalog_once() -> None:
    store = Store()
    proc = CourseProcessor(LAYOUT)
    recs = [record(v, e["key"], topics.COURSE_EVENTS, offset=i)
            for i, (e, v) in enumerate(samples("course"))]
    step = proc.process(recs + recs, store.load)
    assert step.outputs == [] and step.repeats == len(recs)
    assert sum(step.applied.values()) == len(recs)
    store.keep(step.states)
    entry = decode_course(store["22299"])
    assert entry.view()["courseKey"] == "tips_for_good_mental_health7506"
    partition, _ = step.states["22299"]
    assert partition == partition_for(b"22299", 4)
    again = proc.process(recs, store.load)
    assert again.states == {} and again.repeats == len(recs)


def test_every_learner_sample_applies_and_a_mandatory_completion_is_announced() -> None:
    replica = Replica()
    replica.policies.apply(17167, Policy(17167, True, None), (0, 0, 0))
    proc = LearnerProcessor(LAYOUT, replica)
    store = Store()
    recs = [record(v, e["key"], topics.LEARNER_EVENTS, offset=i)
            for i, (e, v) in enumerate(samples("learner"))]
    step = proc.process(recs, store.load)
    assert sum(step.applied.values()) == len(recs)
    [out] = [o for o in step.outputs if o.topic == "p.training.mandatory.completed"]
    assert out.key == b"5398399"
    # The evidence of every course completion: the completing event as published.
    evidence = [json.loads(o.value) for o in step.outputs if o.topic == "p.training.evidence"]
    assert evidence and len(evidence) == len(step.outputs) - 1
    by_place = {(r.partition, r.offset): r for r in recs}
    for proof in evidence:
        source = by_place[(proof["partition"], proof["offset"])]
        assert proof["event"].encode() == source.value and proof["topic"] == source.topic
        assert proof["eventId"] == source.event_id() and proof["signature"] is None
        assert proof["receivedAt"] == "2026-01-01T00:00:00.000Z"
    assert {(p["userId"], p["courseId"]) for p in evidence} >= {(5398399, 17167)}
    value = json.loads(out.value)
    assert value["courseId"] == 17167 and value["completedAt"] == "2021-05-18T10:39:02.187Z"
    hdrs = dict(out.headers)
    assert hdrs[headers.EVENT_TYPE] == b"training.mandatory.completed"
    assert hdrs[headers.RECEIVED_AT] == b"2026-01-01T00:00:00.000Z"
    store.keep(step.states)
    assert proc.process(recs, store.load).outputs == []  # redelivered: nothing again
    assert decode_learner(store["10217"]).assigned == {202, 2045, 2099}


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"not json", "not JSON"),
        (b"[1]", "not a JSON object"),
        (b'{"type": "learner.flew", "payload": {}, "timestamp": "x"}', "unknown type"),
        (b'{"type": "learner.added", "payload": {}, "timestamp": "x"}', "does not match"),
        (None, "tombstone"),
    ],
)
def test_poison_goes_to_the_dlq_with_its_reason_and_source(
    value: bytes | None, reason: str
) -> None:
    proc = LearnerProcessor(LAYOUT, Replica())
    poison = record(value, "10217", topics.LEARNER_EVENTS, offset=42)
    step = proc.process([poison], Store().load)
    [dead] = step.outputs
    hdrs = dict(dead.headers)
    assert dead.topic == "p.streams.dlq" and dead.value == value
    assert dead.key == f"p.edume.learner.events/{poison.partition}/42".encode()
    assert hdrs[headers.DLQ_SOURCE] == dead.key
    assert reason in hdrs[headers.DLQ_REASON].decode()
    assert step.states == {} and sum(step.dead.values()) == 1


def test_a_bad_timestamp_and_a_course_event_on_the_learner_topic_are_dead_letters() -> None:
    proc = LearnerProcessor(LAYOUT, Replica())
    (_, learner), (_, course) = samples("learner")[0], samples("course")[0]
    bad_time = orjson.dumps({**orjson.loads(learner), "timestamp": "yesterday"})
    step = proc.process([record(bad_time, "10217", topics.LEARNER_EVENTS),
                         record(course, "22299", topics.LEARNER_EVENTS)], Store().load)
    reasons = [dict(o.headers)[headers.DLQ_REASON].decode() for o in step.outputs]
    assert "not an RFC 3339 time" in reasons[0]
    assert "a course event on the learner family topic" in reasons[1]


def test_a_record_under_another_key_or_partition_is_rekeyed_and_then_applied() -> None:
    proc = LearnerProcessor(LAYOUT, Replica())
    (entry, value) = samples("learner")[0]
    right = partition_for(entry["key"].encode(), 8)
    wrong_partition = record(value, entry["key"], topics.LEARNER_EVENTS, (right + 1) % 8)
    wrong_key = record(value, "some-other-key", topics.LEARNER_EVENTS, right)
    step = proc.process([wrong_partition, wrong_key], Store().load)
    assert step.rekeyed == 2 and step.states == {}
    for out in step.outputs:
        assert out.topic == "p.edume-streams.learner.rekey"
        assert (out.partition, out.key, out.value) == (right, entry["key"].encode(), value)
    back = InRecord(out.topic, right, 0, out.key, out.value, out.headers, 0)
    assert sum(proc.process([back], Store().load).applied.values()) == 1


def test_unreadable_policies_are_dead_letters_and_readable_ones_are_not() -> None:
    good = orjson.dumps({"courseId": 1, "mandatory": True, "groupIds": None})
    step = check_policies([record(good, "1", topics.TRAINING_POLICIES),
                           record(None, "1", topics.TRAINING_POLICIES),
                           record(b"{}", "1", topics.TRAINING_POLICIES)], LAYOUT)
    [dead] = step.outputs
    assert "not a training policy" in dict(dead.headers)[headers.DLQ_REASON].decode()


# ------------------------------------------------------------------------------ links

LINK_SECRET = "unit-link-secret"


def link_processor(replica: Replica) -> LinkProcessor:
    return LinkProcessor(LAYOUT, replica, base_url="https://learn.edume.com/e",
                         secret=LINK_SECRET)


def published_course(course_id: int, teams: list[int]) -> CourseEntry:
    from streams.core.state.catalog import apply_course_event
    from tests.unit.state_events import make

    entry = CourseEntry(course_id)
    payload = {"group": {"groupId": 1}, "teams": [{"teamId": t} for t in teams],
               "course": {"courseId": course_id, "courseKey": "k"}, "modules": [],
               "version": 1}
    for i, kind in enumerate(("course.added", "course.published")):
        ev = make({"type": kind, "timestamp": f"2026-01-01T00:0{i}:00.000Z", "payload": payload})
        apply_course_event(entry, ev.event, ev.meta)
    return entry


def link_request(ext: str, **fields: Any) -> bytes:
    return json.dumps({"externalUserId": ext, **fields}).encode()


def test_a_request_becomes_one_issue_link_event_however_often_it_comes() -> None:
    store, proc = Store(), link_processor(Replica())
    value = link_request("u 1", kind="course", contentId=5)
    recs = [record(value, "u 1", topics.LINK_REQUESTS, offset=i) for i in range(3)]
    step = proc.process(recs, store.load)
    # the issue-link event, and its answer decided at once (course 5 is unknown here)
    assert [o.topic for o in step.outputs] == [LAYOUT.name(topics.LINK_ISSUE),
                                               LAYOUT.name(topics.LINK_REJECTED)]
    assert step.repeats == 2
    store.keep(step.states)
    again = proc.process(recs[:1], store.load)
    assert again.outputs == [] and again.repeats == 1
    issue_record = step.outputs[0]
    issue = orjson.loads(issue_record.value)
    assert (issue["reason"], issue["contentId"], issue["teamIds"]) == ("request", 5, None)
    # the issue-link event back from links.issue: already decided
    back = InRecord(issue_record.topic, partition_for(b"u 1", 8), 0, issue_record.key,
                    issue_record.value, issue_record.headers, 1_700_000_000_000)
    assert proc.process([back], store.load).repeats == 1


def test_a_request_under_another_partitioner_goes_round_the_rekey_topic() -> None:
    store, proc = Store(), link_processor(Replica())
    value = link_request("u 1", kind="hub", teamIds=[3])
    right = partition_for(b"u 1", 8)
    wrong = record(value, "u 1", topics.LINK_REQUESTS, partition=(right + 1) % 8)
    step = proc.process([wrong], store.load)
    (out,) = step.outputs
    assert (out.topic, out.partition, out.key, out.value) == (
        LAYOUT.name(topics.LINK_REKEY), right, b"u 1", value)
    assert step.rekeyed == 1 and step.states == {}
    back = proc.process([record(value, "u 1", topics.LINK_REKEY)], store.load)
    assert [o.topic for o in back.outputs] == [LAYOUT.name(topics.LINK_ISSUE),
                                               LAYOUT.name(topics.LINK_ISSUED)]
    bad = proc.process([record(value, "u 1", topics.LINK_REKEY, partition=(right + 1) % 8)],
                       store.load)
    assert [o.topic for o in bad.outputs] == [LAYOUT.name(topics.STREAMS_DLQ)]


def test_a_malformed_request_is_rejected_and_dead_lettered() -> None:
    step = link_processor(Replica()).process(
        [record(b"{oops", "u", topics.LINK_REQUESTS, offset=7)], Store().load)
    rejected, dead = step.outputs
    assert rejected.topic == LAYOUT.name(topics.LINK_REJECTED) and rejected.key == b"u"
    assert orjson.loads(rejected.value)["reason"] == "malformed request: not JSON"
    assert dead.topic == LAYOUT.name(topics.STREAMS_DLQ) and dead.value == b"{oops"


def test_an_issue_link_event_is_signed_once_and_kept_for_the_query() -> None:
    replica = Replica()
    replica.catalog[5] = published_course(5, [3])
    store, proc = Store(), link_processor(replica)
    issue = json.dumps({"kind": "course", "externalUserId": "u 1", "userId": 77,
                        "contentId": 5, "courseId": 5, "teamIds": None,
                        "reason": "assignment", "causeEventId": "a" * 64}).encode()
    rec = record(issue, "u 1", topics.LINK_ISSUE)
    step = proc.process([rec, rec], store.load)
    (out,) = step.outputs
    value = orjson.loads(out.value)
    assert out.topic == LAYOUT.name(topics.LINK_ISSUED)
    assert value["url"].startswith("https://learn.edume.com/e/c/5?g=3&e=u%201&sig=")
    assert value["issuedAt"] == "2023-11-14T22:13:20.000Z"  # the issue record's time
    store.keep(step.states)
    from streams.core.state.links import decode_links

    kept = decode_links(store["u 1"])
    assert kept.user_id == 77 and [x["url"] for x in kept.links] == [value["url"]]


def test_a_young_course_link_waits_for_the_catalog_an_old_one_does_not() -> None:
    replica = Replica()
    proc = link_processor(replica)
    issue = json.dumps({"kind": "course", "externalUserId": "u", "contentId": 5,
                        "courseId": 5, "teamIds": [4], "reason": "request",
                        "causeEventId": "a" * 64}).encode()
    rec = record(issue, "u", topics.LINK_ISSUE)
    now = rec.timestamp_ms + 1000
    assert proc.waiting_on_catalog([rec], now)  # unknown course
    replica.catalog[5] = published_course(5, [3])
    assert proc.waiting_on_catalog([rec], now)  # team 4 not (yet) on the course
    replica.catalog[5] = published_course(5, [3, 4])
    assert not proc.waiting_on_catalog([rec], now)
    del replica.catalog[5]
    assert not proc.waiting_on_catalog([rec], now + 60_000)  # past the grace: decide
    assert proc.waiting_on_catalog([rec], now + 60_000, any_age=True)  # copy behind
    asked = record(link_request("u", kind="course", contentId=5), "u", topics.LINK_REQUESTS)
    assert proc.waiting_on_catalog([asked], now)  # a request is decided at once: it waits too
    other = record(link_request("u", kind="lesson", contentId=5, teamIds=[1]), "u",
                   topics.LINK_REQUESTS)
    assert not proc.waiting_on_catalog([other], now)


def test_due_reminders_fire_once_from_the_stored_state() -> None:
    replica = Replica()
    replica.policies.apply(5, Policy(5, True, None), (0, 0, 0))
    store = Store()
    proc = LearnerProcessor(LAYOUT, replica, reminder_after_s=60)
    added = json.dumps({"type": "learner.added", "timestamp": "2026-01-01T00:00:00.000Z",
                        "payload": {"user": {"eId": "ext", "userId": 42, "identifiers": []},
                                    "group": {"groupId": 1}, "courses": [{"courseId": 5}],
                                    "version": 1}}).encode()
    step = proc.process([record(added, "42", topics.LEARNER_EVENTS)], store.load)
    store.keep(step.states)
    assert [orjson.loads(o.value)["reason"] for o in step.outputs] == ["assignment"]
    due = proc.due["42"]
    proc.due.clear()
    proc.index_reminders([(k, partition_for(k.encode(), 8), v)  # as after a recovery
                          for k, v in store.items()])
    assert proc.due == {"42": due}
    assert proc.fire_reminders(["42"], store.load, due - 1).outputs == []
    fired = proc.fire_reminders(["42"], store.load, due)
    assert [orjson.loads(o.value)["reason"] for o in fired.outputs] == ["reminder"]
    assert fired.reminders == 1 and "42" not in proc.due
    store.keep(fired.states)
    assert proc.fire_reminders(["42"], store.load, due + 10**9).outputs == []
