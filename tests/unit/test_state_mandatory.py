"""Policies, the may-proceed gate and mandatory completions: once per learner and course,
whatever order or repetition the events come in."""

from __future__ import annotations

from collections import Counter

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.outputs import MandatoryCompleted
from streams.core.state.catalog import CourseEntry
from streams.core.state.common import Stamped, UnusableEvent, derived_id
from streams.core.state.mandatory import gate, learner_step
from streams.core.state.policies import Policy, PolicyBook, parse_policy_record
from streams.core.state.progress import LearnerState
from tests.unit.state_events import USER_ID, Ev, arrivals, learner_events, make


class Catalog(dict[int, CourseEntry]):
    pass


def book(*policies: Policy) -> PolicyBook:
    b = PolicyBook()
    for i, p in enumerate(policies):
        b.apply(p.course_id, p, (0, 0, i))
    return b


def run(events: list[Ev], policies: PolicyBook, catalog: Catalog | None = None):
    state = LearnerState(USER_ID)
    outputs = []
    for e in events:
        outputs.extend(learner_step(state, e.event, e.meta, policies, catalog or Catalog()))
    return state, outputs


def added(courses: list[int], ts: str = "00", group: int = 5) -> Ev:
    return make({"type": "learner.added", "timestamp": f"2022-07-21T13:00:{ts}Z", "payload": {
        "user": {"eId": "ext-1", "userId": USER_ID, "identifiers": []},
        "group": {"groupId": group}, "courses": [{"courseId": c} for c in courses],
        "version": 1}})


def finished(course: int, ts: str) -> Ev:
    return make({"type": "learner.activity.finished", "timestamp": f"2022-07-21T14:00:{ts}Z",
                 "payload": {"type": "course", "user": {"eId": "ext-1", "userId": USER_ID,
                                                        "identifiers": []},
                             "group": {"groupId": 5}, "course": {"courseId": course},
                             "version": 1}})


def detailed(course: int, ts: str, parent_group: int | None = None) -> Ev:
    payload = {"user": {"id": USER_ID}, "course": {"id": course, "courseKey": f"key{course}"},
               "completion": {"courseCompletionDate": f"2022-07-21T13:59:{ts}Z"}}
    if parent_group is not None:
        payload["parentGroup"] = {"id": parent_group}
    return make({"type": "course.completed", "timestamp": f"2022-07-21T14:00:{ts}Z",
                 "payload": payload})


def test_the_gate_counts_assigned_mandatory_courses_of_the_learners_group() -> None:
    policies = book(Policy(1, True, None), Policy(2, True, frozenset({5})),
                    Policy(3, True, frozenset({6})), Policy(4, False, None))
    state, _ = run([added([1, 2, 3, 4, 9]), finished(2, "01")], policies)
    g = gate(state, policies, Catalog())
    assert g.view() == {"userId": USER_ID, "complete": False, "completedCourseIds": [2],
                        "remainingCourseIds": [1]}


def test_a_deleted_course_no_longer_blocks_the_gate() -> None:
    policies = book(Policy(1, True, None))
    state, _ = run([added([1])], policies)
    deleted = CourseEntry(1, deleted=Stamped(0, "x", "2022-01-01T00:00:00Z"))
    assert gate(state, policies, Catalog({1: deleted})).complete is True


def test_completing_a_mandatory_course_announces_it_once_with_what_remains() -> None:
    policies = book(Policy(1, True, None), Policy(2, True, None))
    done = finished(1, "05")
    _, outputs = run([added([1, 2]), done, detailed(1, "09"), done], policies)
    assert len(outputs) == 1
    out = outputs[0]
    assert out.topic == out.event_type == "training.mandatory.completed"
    assert out.key == str(USER_ID)
    assert out.event_id == derived_id(done.meta.event_id, out.topic, "1")
    assert out.value == MandatoryCompleted(
        userId=USER_ID, externalUserId="ext-1", groupId=5, courseId=1, courseKey=None,
        completedAt="2022-07-21T14:00:05Z", allMandatoryComplete=False, remainingCourseIds=[2])
    # The courseKey comes from the detailed completion when it is the first, else the catalog.
    _, from_detail = run([added([1, 2]), detailed(1, "01")], policies)
    assert from_detail[0].value.courseKey == "key1"
    catalog = Catalog({1: CourseEntry(1, course_key=Stamped(0, "x", "catalog-key"))})
    _, from_catalog = run([added([1, 2]), done], policies, catalog)
    assert from_catalog[0].value.courseKey == "catalog-key"
    _, last = run([added([1, 2]), done, finished(2, "07")], policies)
    assert [o.value.allMandatoryComplete for o in last] == [False, True]


def test_a_course_that_is_not_mandatory_is_not_announced() -> None:
    policies = book(Policy(1, True, frozenset({6})))
    assert run([added([1]), finished(1, "01")], policies)[1] == []


def test_a_completion_before_the_group_is_known_is_announced_when_it_becomes_known() -> None:
    policies = book(Policy(1, True, frozenset({5})))
    _, first = run([detailed(1, "01", parent_group=8884)], policies)
    assert first == []
    later = run([detailed(1, "01", parent_group=8884), added([1], "30")], policies)[1]
    assert [o.value.courseId for o in later] == [1]


@settings(max_examples=300, deadline=None)
@given(st.lists(learner_events(groups=(5,)), min_size=1, max_size=10).flatmap(
    lambda evs: st.tuples(st.just(evs), arrivals(evs))))
def test_each_completed_mandatory_course_is_announced_exactly_once_in_any_order(
    case: tuple[list[Ev], list[Ev]],
) -> None:
    _, arrived = case
    policies = book(Policy(202, True, None), Policy(2045, True, frozenset({5})))
    state, outputs = run(arrived, policies)
    announced = Counter(o.value.courseId for o in outputs)
    assert set(announced.values()) <= {1}
    completed = {c for c, p in state.courses.items() if p.completed is not None}
    # Only group-5 learner events here; a completion seen before any of them waits for one.
    if state.group_id is not None:
        assert set(announced) == completed & {202, 2045}
    assert set(announced) == state.emitted


def test_policy_records_are_read_strictly_and_ordered_by_version() -> None:
    key = b"22299"
    value = orjson.dumps({"courseId": 22299, "mandatory": True, "groupIds": [5, 6]})
    course, policy = parse_policy_record(key, value)
    assert policy == Policy(22299, True, frozenset({5, 6}))
    assert parse_policy_record(key, None) == (22299, None)
    b = PolicyBook()
    assert b.apply(course, policy, (10, 0, 3))
    assert not b.apply(course, None, (10, 0, 2))  # older: ignored
    assert b.mandatory_for(22299, 5) and not b.mandatory_for(22299, 7)
    assert b.apply(course, None, (11, 1, 0))  # a tombstone removes it
    assert b.get(22299) is None and len(b) == 0


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (b"abc", b"{}", "key is not a courseId"),
        (b"1", b"not json", "not a training policy"),
        (b"1", b'{"courseId": "1", "mandatory": true, "groupIds": null}', "courseId"),
        (b"1", b'{"courseId": 2, "mandatory": true, "groupIds": null}', "is not the key"),
        (b"1", b'{"courseId": 1, "groupIds": null}', "mandatory"),
    ],
)
def test_unreadable_policy_records_say_why(key: bytes, value: bytes, reason: str) -> None:
    with pytest.raises(UnusableEvent, match=reason):
        parse_policy_record(key, value)
