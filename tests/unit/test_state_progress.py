"""The progress reducer: any order and any repetition of a learner's events gives the state
that folding each event once in timestamp order gives."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.state.codec import decode_learner, encode_learner
from streams.core.state.progress import LearnerState, apply_learner_event
from tests.unit.state_events import (
    USER_ID,
    Ev,
    arrivals,
    content,
    learner_events,
    make,
    oracle_learner,
    unique_in_order,
)


def fold(events: list[Ev]) -> LearnerState:
    state = LearnerState(USER_ID)
    for e in events:
        apply_learner_event(state, e.event, e.meta)
    return state


def observed(state: LearnerState) -> dict[str, Any]:
    """The reducer's state in the oracle's terms."""
    view = state.view()
    courses = {}
    for c in view["courses"]:
        if c["courseId"] not in state.courses:
            continue
        p = state.courses[c["courseId"]]
        courses[c["courseId"]] = {
            "startedAt": c["startedAt"],
            "ls": set(c["lessonsStarted"]), "lf": set(c["lessonsFinished"]),
            "as": set(c["assessmentsStarted"]), "af": set(c["assessmentsFinished"]),
            "surveys": {s["surveyId"]: s["status"] for s in c["surveys"]},
            "completedAt": c["completedAt"], "completedBy": c["completedBy"],
            "detail": (c["scores"] or {}).get("overallAssessmentScore") if p.detail else None,
        }
    return {
        "externalUserId": view["externalUserId"],
        "groupId": state.group_id.value if state.group_id else None,
        "courseGroup": state.course_group_id.value if state.course_group_id else None,
        "assigned": set(view["assignedCourseIds"]),
        "identifiers": {i["key"]: i for i in view["identifiers"]},
        "courses": courses,
        "surveys": {s["surveyId"]: s["status"] for s in view["surveys"]},
        "addedAt": view["addedAt"],
        "activatedAt": view["activatedAt"],
    }


@settings(max_examples=400, deadline=None)
@given(st.lists(learner_events(), min_size=1, max_size=10).flatmap(
    lambda evs: st.tuples(st.just(evs), arrivals(evs))))
def test_any_order_and_repetition_gives_the_timestamp_order_fold(
    case: tuple[list[Ev], list[Ev]],
) -> None:
    events, arrived = case
    state = fold(arrived)
    assert content(state) == content(fold(unique_in_order(events)))
    assert observed(state) == oracle_learner(events)
    assert state.applied.count == len({e.meta.event_id for e in events})
    assert decode_learner(encode_learner(state)) == state


def _activity(kind: str, what: str, ts: str, **extra: Any) -> Ev:
    payload = {"type": what, "user": {"eId": "e", "userId": USER_ID, "identifiers": []},
               "group": {"groupId": 5}, "course": {"courseId": 9961}, "version": 1, **extra}
    return make({"type": f"learner.activity.{kind}", "payload": payload,
                 "timestamp": f"2022-07-21T14:00:{ts}Z"})


def _detailed(ts: str, spelling: str = "course.completed") -> Ev:
    payload = {"user": {"id": USER_ID}, "course": {"id": 9961, "courseKey": "ck"},
               "completion": {"courseCompletionDate": f"2022-07-21T13:59:{ts}Z",
                              "overallLessonScore": 50}}
    return make({"type": spelling, "payload": payload, "timestamp": f"2022-07-21T14:00:{ts}Z"})


def test_a_repeat_hours_later_is_a_no_op() -> None:
    finished = _activity("finished", "course", "10")
    state = fold([finished, _activity("started", "course", "01")])
    before = copy.deepcopy(state)
    assert apply_learner_event(state, finished.event, finished.meta) is False
    assert state == before


def test_the_earlier_completion_event_completes_the_course_once() -> None:
    """Reading chosen: the activity completion and the detailed completion both complete a
    course; the one earlier in timestamp order gives completedAt and completedBy."""
    state = fold([_detailed("20"), _activity("finished", "course", "05")])
    view = state.view()["courses"][0]
    assert view["status"] == "completed"
    assert (view["completedAt"], view["completedBy"]) == ("2022-07-21T14:00:05Z", "activity")
    assert view["scores"]["overallLessonScore"] == 50
    first_detail = fold([_detailed("01"), _activity("finished", "course", "05")])
    assert first_detail.view()["courses"][0]["completedAt"] == "2022-07-21T13:59:01Z"


def test_all_three_completion_spellings_complete_the_course() -> None:
    for spelling in ("course.complete", "course.completed", "learner.course.completed"):
        assert fold([_detailed("01", spelling)]).courses[9961].status == "completed"


def test_status_goes_assigned_then_in_progress_then_completed() -> None:
    added = make({"type": "learner.added", "timestamp": "2022-07-21T13:00:00Z", "payload": {
        "user": {"eId": "e", "userId": USER_ID, "identifiers": []}, "group": {"groupId": 5},
        "courses": [{"courseId": 9961}], "version": 1}})
    state = fold([added])
    assert state.view()["courses"][0]["status"] == "assigned"
    lesson = _activity("started", "lesson", "01", module={"moduleId": 1}, lesson={"lessonId": 3})
    apply_learner_event(state, lesson.event, lesson.meta)
    assert state.view()["courses"][0]["status"] == "in_progress"
    done = _activity("finished", "course", "09")
    apply_learner_event(state, done.event, done.meta)
    assert state.view()["courses"][0]["status"] == "completed"


def test_the_completion_group_is_used_only_while_no_learner_event_said_the_group() -> None:
    """Reading chosen: the detailed completion's parentGroup is the course's group, a stand-in
    for the learner's group until a learner event names it."""
    completion = make({"type": "course.completed", "timestamp": "2022-07-21T14:00:00Z",
                       "payload": {"user": {"id": USER_ID},
                                   "course": {"id": 1, "courseKey": "k"},
                                   "parentGroup": {"id": 8884},
                                   "completion": {"courseCompletionDate": "x"}}})
    state = fold([completion])
    assert state.group == 8884
    later = _activity("started", "course", "30")
    apply_learner_event(state, later.event, later.meta)
    assert state.group == 5


def test_assigned_courses_accumulate() -> None:
    """Reading chosen: no event unassigns a course."""
    def listed(kind: str, courses: list[int], ts: str) -> Ev:
        return make({"type": kind, "timestamp": f"2022-07-21T13:00:{ts}Z", "payload": {
            "user": {"eId": "e", "userId": USER_ID, "identifiers": []}, "group": {"groupId": 5},
            "courses": [{"courseId": c} for c in courses], "version": 1}})

    state = fold([listed("learner.added", [1, 2], "01"), listed("learner.activated", [2], "02")])
    assert state.assigned == {1, 2}
