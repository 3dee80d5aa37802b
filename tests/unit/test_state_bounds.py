"""States bounded by their content: what a state keeps of the events applied, the codec's
versions, the merge of two catalog entries, and the order of events of one timestamp."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.outputs import LinkIssued
from streams.core import topics
from streams.core.state import common
from streams.core.state.catalog import CourseEntry, apply_course_event, merge_courses
from streams.core.state.codec import decode_course, decode_learner, encode_course, encode_learner
from streams.core.state.common import RECENT_IDS, Applied, Meta, Output, meta_of
from streams.core.state.links import (
    MAX_LINKS_KEPT,
    LinkState,
    decode_links,
    encode_links,
    record_issued,
)
from streams.core.state.progress import LearnerState, apply_learner_event
from tests.unit.state_events import (
    COURSE_ID,
    USER_ID,
    Ev,
    arrivals,
    content,
    course_events,
    learner_events,
    make,
    unique_in_order,
)


def _id(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def _learner_event(kind: str, what: str, course: int, lesson: int) -> Ev:
    payload = {"type": what, "user": {"eId": "e@example.com", "userId": USER_ID,
                                      "identifiers": []},
               "group": {"groupId": 5}, "course": {"courseId": course}, "version": 1}
    if what == "lesson":
        payload |= {"module": {"moduleId": 7}, "lesson": {"lessonId": lesson}}
    return make({"type": f"learner.activity.{kind}", "payload": payload,
                 "timestamp": "2022-07-21T14:00:00Z"})


def test_a_learner_with_100000_events_keeps_a_state_under_64_kb() -> None:
    # 5 courses of 20 lessons, each lesson started and finished again and again: the
    # content stays the same size, the history grows.
    models = [_learner_event(kind, "lesson", course, lesson).event
              for course in range(1, 6) for lesson in range(1, 21)
              for kind in ("started", "finished")]
    state = LearnerState(USER_ID)
    sizes = []
    base = 1_658_412_000_000_000
    for n, event in zip(range(100_000), itertools.cycle(models), strict=False):
        meta = Meta(_id(n), base + n * 1000, f"t{n}")
        assert apply_learner_event(state, event, meta)
        if n % 25_000 == 24_999:
            sizes.append(len(encode_learner(state)))
    assert state.applied.count == 100_000
    assert max(sizes) < 64 * 1024, sizes
    assert sizes[-1] <= sizes[0] * 1.05, f"the state grows with the history: {sizes}"


def test_a_course_keeps_a_state_bounded_whatever_its_history() -> None:
    entry = CourseEntry(COURSE_ID)
    added = _course("course.added", [1], "01").event
    for n in range(20_000):
        apply_course_event(entry, added, Meta(_id(n), n, f"t{n}"))
    assert entry.applied.count == 20_000
    assert len(encode_course(entry)) < 8 * 1024


def test_a_repeat_among_the_latest_ids_is_skipped_and_an_older_one_changes_nothing() -> None:
    first = _learner_event("finished", "lesson", 1, 1)
    state = LearnerState(USER_ID)
    assert apply_learner_event(state, first.event, first.meta)
    assert not apply_learner_event(state, first.event, first.meta)  # skipped: seen
    other = _learner_event("started", "lesson", 1, 2).event
    for n in range(RECENT_IDS):
        apply_learner_event(state, other, Meta(_id(n), first.meta.ts + n, "t"))
    before = content(state)
    # Out of the window now: applied again, and nothing but the count changes.
    assert apply_learner_event(state, first.event, first.meta)
    assert content(state) == before
    assert state.applied.count == RECENT_IDS + 2


@settings(max_examples=200, deadline=None)
@given(st.lists(learner_events(), min_size=1, max_size=10).flatmap(
    lambda evs: st.tuples(st.just(evs), arrivals(evs))))
def test_repeats_older_than_the_window_leave_the_content_exact(
    case: tuple[list[Ev], list[Ev]],
) -> None:
    events, arrived = case
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(common, "RECENT_IDS", 1)
        state = LearnerState(USER_ID)
        for e in arrived:
            apply_learner_event(state, e.event, e.meta)
    expected = LearnerState(USER_ID)
    for e in unique_in_order(events):
        apply_learner_event(expected, e.event, e.meta)
    assert content(state) == content(expected)
    assert state.applied.count >= len({e.meta.event_id for e in events})


@settings(max_examples=300, deadline=None)
@given(st.lists(course_events(), min_size=1, max_size=8), st.data())
def test_merging_two_entries_gives_the_entry_of_both_histories(
    events: list[Ev], data: st.DataObject,
) -> None:
    left = data.draw(st.lists(st.sampled_from(events)))
    right = data.draw(st.lists(st.sampled_from(events)))

    def fold(part: list[Ev]) -> CourseEntry:
        entry = CourseEntry(COURSE_ID)
        for e in part:
            apply_course_event(entry, e.event, e.meta)
        return entry

    merged = merge_courses(fold(left), fold(right))
    both = fold(unique_in_order(left + right))
    assert content(merged) == content(both)
    assert merge_courses(fold(right), fold(left)).view() == merged.view()


# ------------------------------------------------------------------ codec versions


def test_a_version_1_learner_state_still_loads() -> None:
    ids = [_id(n) for n in range(3)]
    v1 = orjson.dumps({
        "userId": USER_ID, "externalId": [1, ids[0], "e@example.com"], "identifiers": {},
        "groupId": [1, ids[0], 5], "courseGroupId": None, "added": [1, ids[0], "t"],
        "activated": None, "assigned": [9961],
        "courses": {"9961": {"started": None, "lessonsStarted": [1], "lessonsFinished": [],
                             "assessmentsStarted": [], "assessmentsFinished": [],
                             "surveys": {}, "completed": [3, ids[2], {"at": "t3",
                                                                      "via": "activity"}],
                             "detail": None}},
        "surveys": {}, "lastEvent": [3, ids[2], "t3"], "eventIds": sorted(ids),
        "emitted": [9961],
    })
    state = decode_learner(v1)
    assert state.applied.count == 3
    assert all(state.applied.seen(i) for i in ids)
    assert state.completed_course_ids() == {9961}
    assert state.view()["eventsApplied"] == 3
    again = orjson.loads(encode_learner(state))
    assert again["v"] == 2 and "eventIds" not in again
    assert decode_learner(encode_learner(state)) == state


def test_a_version_1_course_entry_still_loads() -> None:
    ids = [_id(n) for n in range(2)]
    v1 = orjson.dumps({
        "courseId": COURSE_ID, "courseKey": [1, ids[0], "k"], "groupId": [1, ids[0], 1],
        "moduleIds": [1, ids[0], [9]], "teamSnapshot": [1, ids[0], [1, 2]],
        "teamChanges": {"3": [2, ids[1], True]}, "published": [2, ids[1], True],
        "deleted": None, "titleChanged": None, "lastEvent": [2, ids[1], "t2"],
        "eventIds": ids,
    })
    entry = decode_course(v1)
    assert entry.team_ids == [1, 2, 3] and entry.is_published is True
    assert entry.applied.count == 2 and entry.applied.seen(ids[1])
    assert decode_course(encode_course(entry)) == entry


def test_a_version_1_links_state_still_loads() -> None:
    v1 = orjson.dumps({"externalUserId": "e", "userId": 1, "seen": [_id(1), _id(2)],
                       "links": [{"kind": "hub"}], "rejected": 4})
    state = decode_links(v1)
    assert state.applied.seen(_id(2)) and state.applied.count == 2
    assert state.rejected == 4
    assert decode_links(encode_links(state)) == state


def test_a_links_state_keeps_the_newest_links_only() -> None:
    state = LinkState("someone@example.com", 1)
    for n in range(1, MAX_LINKS_KEPT * 3 + 1):
        issued = LinkIssued(kind="course", url=f"https://x.example/c/{n}?s=" + "a" * 250,
                            externalUserId=state.external_user_id, courseId=n, teamId=1,
                            teamIds=[1], reason="request", issuedAt="2026-01-01T00:00:00Z",
                            requestId=_id(n), note=None)
        state.applied.note(_id(n))
        record_issued(state, Output(topics.LINK_ISSUED, "k", issued, _id(n), "t"), _id(n))
    assert len(state.links) == MAX_LINKS_KEPT
    assert state.links[-1]["courseId"] == MAX_LINKS_KEPT * 3
    assert len(encode_links(state)) < 64 * 1024


# --------------------------------------------------- events of one timestamp


def _course(kind: str, teams: list[int], ts: str, key: str = "k") -> Ev:
    payload = {"group": {"groupId": 1}, "teams": [{"teamId": t} for t in teams],
               "course": {"courseId": COURSE_ID, "courseKey": key},
               "modules": [{"moduleId": 9}], "version": 1}
    return make({"type": kind, "payload": payload, "timestamp": f"2022-07-13T12:00:{ts}Z"})


def _id_order_reversed(pair: Callable[[int], tuple[Ev, Ev]]) -> tuple[Ev, Ev]:
    """A pair of events (first, second in meaning) whose ids are in the other order: ordered
    by id alone, the first would win."""
    for n in range(100):
        first, second = pair(n)
        if second.meta.event_id < first.meta.event_id:
            return first, second
    raise AssertionError("no such pair among 100")


def test_a_course_added_and_published_in_the_same_millisecond_ends_published() -> None:
    added, published = _id_order_reversed(
        lambda n: (_course("course.added", [1], "00", key=f"k{n}"),
                   _course("course.published", [1], "00", key=f"k{n}")))
    for order in ([added, published], [published, added]):
        entry = CourseEntry(COURSE_ID)
        for e in order:
            apply_course_event(entry, e.event, e.meta)
        assert entry.is_published is True


def test_a_learner_added_and_activated_in_the_same_millisecond_takes_the_activation() -> None:
    def event(kind: str, group: int, n: int) -> Ev:
        payload = {"user": {"eId": f"e{n}", "userId": USER_ID, "identifiers": []},
                   "group": {"groupId": group}, "courses": [], "version": 1}
        return make({"type": kind, "payload": payload, "timestamp": "2022-07-13T12:00:00Z"})

    added, activated = _id_order_reversed(
        lambda n: (event("learner.added", 5, n), event("learner.activated", 6, n)))
    for order in ([added, activated], [activated, added]):
        state = LearnerState(USER_ID)
        for e in order:
            apply_learner_event(state, e.event, e.meta)
        assert state.group == 6
        assert state.external_user_id == activated.doc["payload"]["user"]["eId"]


def test_ranks_survive_the_codec() -> None:
    published = _course("course.published", [1], "00")
    entry = CourseEntry(COURSE_ID)
    apply_course_event(entry, published.event, published.meta)
    assert entry.published is not None and entry.published.rank == 2
    assert decode_course(encode_course(entry)).published == entry.published
    assert meta_of(_id(0), "2022-07-13T12:00:00Z").rank == 0


def test_ids_that_differ_only_at_the_end_are_told_apart() -> None:
    # Ids from other producers need not be random (a link request's edume-event-id).
    applied = Applied()
    applied.note("req-2026-12-06-000001")
    assert not applied.seen("req-2026-12-06-000002")
    assert applied.seen("req-2026-12-06-000001")
    padded = Applied()
    padded.note("0" * 63 + "1")
    assert not padded.seen("0" * 63 + "2")
