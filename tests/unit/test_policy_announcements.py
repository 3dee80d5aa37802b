"""A policy change reaches learners who already finished: the completions a policy calls
for are announced from the policy, once, with ids derived from the policy record."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from streams.core import topics
from streams.core.state.codec import decode_learner, encode_learner
from streams.core.state.mandatory import (
    announce_for_policies,
    learner_step,
    pending_announcements,
    policy_cause_id,
)
from streams.core.state.policies import Policy, PolicyBook
from streams.core.state.progress import LearnerState
from streams.worker.processing import LearnerProcessor
from tests.unit.state_events import make
from tests.unit.test_worker_processing import LAYOUT, Replica, Store

USER = {"eId": "ext-7", "userId": 7, "identifiers": []}


def finished(course: int, ts: str, group: int = 5) -> Any:
    return make({"type": "learner.activity.finished", "timestamp": ts, "payload": {
        "type": "course", "user": USER, "group": {"groupId": group},
        "course": {"courseId": course}, "version": 1}})


def finished_courses(*courses: int, group: int = 5) -> LearnerState:
    """A learner of ``group`` who finished ``courses`` while no policy existed."""
    learner = LearnerState(7)
    for n, course in enumerate(courses):
        ev = finished(course, f"2026-01-01T00:00:0{n}.000Z", group)
        assert learner_step(learner, ev.event, ev.meta, PolicyBook(), {}) == []
    return learner


def test_a_policy_set_after_the_completion_announces_it_once() -> None:
    learner = finished_courses(202, 303)
    book = PolicyBook()
    assert announce_for_policies(learner, book, {}) == []
    book.apply(202, Policy(202, True, frozenset({5})), (1000, 2, 17))
    (out,) = announce_for_policies(learner, book, {})
    assert out.topic == topics.MANDATORY_COMPLETED and out.key == "7"
    value = orjson.loads(out.value.model_dump_json())  # type: ignore[union-attr]
    assert (value["courseId"], value["groupId"], value["allMandatoryComplete"],
            value["remainingCourseIds"]) == (202, 5, True, [])
    assert value["completedAt"] == "2026-01-01T00:00:00.000Z"
    assert announce_for_policies(learner, book, {}) == []  # once
    assert learner.emitted == {202}
    # Survives the state's round trip (what a restart reads back).
    assert announce_for_policies(decode_learner(encode_learner(learner)), book, {}) == []


def test_the_id_derives_from_the_policy_record() -> None:
    book = PolicyBook()
    book.apply(202, Policy(202, True, None), (1000, 2, 17))
    first = announce_for_policies(finished_courses(202), book, {})
    again = announce_for_policies(finished_courses(202), book, {})
    assert [o.event_id for o in first] == [o.event_id for o in again]  # any worker, any run
    other = PolicyBook()
    other.apply(202, Policy(202, True, None), (1000, 2, 18))
    assert announce_for_policies(finished_courses(202), other, {})[0].event_id != \
        first[0].event_id
    assert policy_cause_id(202, (1000, 2, 17)) != policy_cause_id(203, (1000, 2, 17))


def test_other_groups_removed_policies_and_other_courses_announce_nothing() -> None:
    learner = finished_courses(202, 303, group=6)
    book = PolicyBook()
    book.apply(202, Policy(202, True, frozenset({5})), (1, 0, 0))
    assert announce_for_policies(learner, book, {}) == []  # not the learner's group
    book.apply(202, Policy(202, True, frozenset({5, 6})), (2, 0, 1))  # widened
    book.apply(303, Policy(303, True, None), (3, 0, 2))
    assert pending_announcements(learner, book) == {202, 303}
    (only,) = announce_for_policies(learner, book, {}, courses=[303])
    assert orjson.loads(only.value.model_dump_json())["remainingCourseIds"] == []  # type: ignore[union-attr]
    book.apply(202, None, (4, 0, 3))  # removed before it was looked at
    assert announce_for_policies(learner, book, {}) == []
    book.apply(404, Policy(404, False, None), (5, 0, 4))
    assert announce_for_policies(learner, book, {}) == []


def test_remaining_follows_the_policies_in_force() -> None:
    learner = finished_courses(202)
    learner.assigned |= {202, 303}
    book = PolicyBook()
    book.apply(202, Policy(202, True, None), (1, 0, 0))
    book.apply(303, Policy(303, True, None), (1, 0, 1))
    (out,) = announce_for_policies(learner, book, {})
    value = orjson.loads(out.value.model_dump_json())  # type: ignore[union-attr]
    assert (value["allMandatoryComplete"], value["remainingCourseIds"]) == (False, [303])


@given(st.permutations([202, 303, 404]), st.sets(st.sampled_from([202, 303, 404])))
def test_every_pending_course_is_announced_once_whatever_the_order(
        order: list[int], mandatory: set[int]) -> None:
    learner = finished_courses(*order)
    book = PolicyBook()
    announced: list[int] = []
    for n, course in enumerate(sorted(mandatory)):
        book.apply(course, Policy(course, True, None), (n, 0, n))
        announced += [orjson.loads(o.value.model_dump_json())["courseId"]  # type: ignore[union-attr]
                      for o in announce_for_policies(learner, book, {}, courses=[course])]
    announced += [orjson.loads(o.value.model_dump_json())["courseId"]  # type: ignore[union-attr]
                  for o in announce_for_policies(learner, book, {})]
    assert sorted(announced) == sorted(mandatory)


def test_the_processor_announces_and_marks_the_states() -> None:
    replica, store = Replica(), Store()
    for user in (7, 8):
        state = finished_courses(202)
        state.user_id = user
        store[str(user)] = encode_learner(state)
    replica.policies.apply(202, Policy(202, True, None), (1, 0, 0))
    processor = LearnerProcessor(LAYOUT, replica)
    step = processor.announce(["7", "8", "9"], store.load, 1_800_000_000_000_000)
    assert step.announced == 2 and sorted(step.states) == ["7", "8"]
    assert {o.cause for o in step.outputs} == {0, 1} and step.key_of == {0: "7", 1: "8"}
    for key, (_p, value) in step.states.items():
        store[key] = value
    assert processor.announce(["7", "8"], store.load, 1_800_000_000_000_000).outputs == []
