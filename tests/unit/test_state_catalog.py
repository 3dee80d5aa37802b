"""The catalog reducer: any order and any repetition of a course's events gives the entry that
folding each event once in timestamp order gives."""

from __future__ import annotations

import copy

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.state.catalog import CourseEntry, apply_course_event
from streams.core.state.codec import decode_course, encode_course
from tests.unit.state_events import (
    COURSE_ID,
    Ev,
    arrivals,
    content,
    course_events,
    make,
    oracle_course,
    unique_in_order,
)


def fold(events: list[Ev]) -> CourseEntry:
    entry = CourseEntry(COURSE_ID)
    for e in events:
        apply_course_event(entry, e.event, e.meta)
    return entry


def _doc(kind: str, teams: list[int], ts: str, sub: str | None = None) -> Ev:
    payload = {
        "group": {"groupId": 1},
        "teams": [{"teamId": t} for t in teams],
        "course": {"courseId": COURSE_ID, "courseKey": "k"},
        "modules": [{"moduleId": 9}],
        "version": 1,
    }
    if sub:
        payload = {"type": sub, **payload}
    return make({"type": kind, "payload": payload, "timestamp": f"2022-07-13T12:00:{ts}Z"})


@settings(max_examples=400, deadline=None)
@given(st.lists(course_events(), min_size=1, max_size=8).flatmap(
    lambda evs: st.tuples(st.just(evs), arrivals(evs))))
def test_any_order_and_repetition_gives_the_timestamp_order_fold(
    case: tuple[list[Ev], list[Ev]],
) -> None:
    events, arrived = case
    entry = fold(arrived)
    assert content(entry) == content(fold(unique_in_order(events)))
    view = entry.view()
    expected = oracle_course(events)
    assert {k: view[k] for k in expected} == expected
    assert view["eventsApplied"] == len({e.meta.event_id for e in events})
    assert decode_course(encode_course(entry)) == entry


def test_a_repeat_changes_nothing_and_says_so() -> None:
    added = _doc("course.added", [1], "01")
    entry = fold([added])
    before = copy.deepcopy(entry)
    assert apply_course_event(entry, added.event, added.meta) is False
    assert entry == before


def test_team_assigned_adds_and_team_removed_removes_the_payload_teams() -> None:
    entry = fold([
        _doc("course.added", [1], "01"),
        _doc("course.updated", [2, 3], "02", "team.assigned"),
        _doc("course.updated", [1, 3], "03", "team.removed"),
    ])
    assert entry.team_ids == [2]


def test_other_course_events_list_all_the_teams_and_replace_them() -> None:
    """Reading chosen: every course event but team.assigned/removed carries the course's
    whole team list at that moment, so it replaces what was known."""
    entry = fold([
        _doc("course.updated", [7], "01", "team.assigned"),
        _doc("course.published", [1, 2], "02"),
    ])
    assert entry.team_ids == [1, 2]
    late_assignment_before_snapshot = _doc("course.updated", [9], "00", "team.assigned")
    apply_course_event(entry, late_assignment_before_snapshot.event,
                       late_assignment_before_snapshot.meta)
    assert entry.team_ids == [1, 2]


def test_published_follows_the_latest_publish_state_and_added_is_a_draft() -> None:
    assert fold([_doc("course.added", [], "01")]).is_published is False
    assert fold([_doc("course.updated", [], "01", "title.changed")]).is_published is None
    entry = fold([_doc("course.published", [], "05"), _doc("course.unpublished", [], "03")])
    assert entry.is_published is True


def test_deleted_is_final_and_the_entry_is_kept() -> None:
    entry = fold([_doc("course.deleted", [1], "01"), _doc("course.published", [1], "05")])
    view = entry.view()
    assert view["deleted"] is True and view["deletedAt"] == "2022-07-13T12:00:01Z"
    assert view["published"] is True and view["courseKey"] == "k"


def test_title_change_and_last_event_times_are_the_latest() -> None:
    entry = fold([
        _doc("course.updated", [], "09", "title.changed"),
        _doc("course.updated", [], "04", "title.changed"),
        _doc("course.added", [], "11"),
    ])
    assert entry.view()["titleChangedAt"] == "2022-07-13T12:00:09Z"
    assert entry.view()["lastEventAt"] == "2022-07-13T12:00:11Z"
