"""Imports in the catalog reducer: an import is a course event stamped ``importedAt`` that
lists all the course's teams, ranked before every eduMe event of its instant. Any order and
any repetition of a course's events and imports gives the entry that folding each once in
``(time, rank, id)`` order gives, and so does merging the entries of any split."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.outputs import CatalogImport
from streams.core.state.catalog import (
    IMPORT_RANK,
    RANK,
    CourseEntry,
    apply_course_event,
    apply_course_import,
    merge_courses,
)
from streams.core.state.codec import decode_course, encode_course
from streams.core.state.common import Meta, meta_of, short_id
from tests.unit.state_events import (
    COURSE_ID,
    Ev,
    arrivals,
    content,
    course_events,
    make,
    oracle_course_event,
    small_ids,
    timestamps,
)


@dataclass(frozen=True)
class Imp:
    """An import with what the reducer needs, as ``Ev`` is for an event."""

    doc: dict[str, Any]
    course: CatalogImport
    meta: Meta

    @property
    def order(self) -> tuple[int, int, str]:
        return (self.meta.ts, IMPORT_RANK, short_id(self.meta.event_id))


Item = Ev | Imp


def imp(at: str, *, teams: list[int] | None = None, published: bool = True,
        deleted: bool = False, key: str | None = "imported", group: int = 12779,
        modules: Sequence[int] | None = (1,)) -> Imp:
    doc = {"courseId": COURSE_ID, "courseKey": key, "groupId": group,
           "teamIds": [7] if teams is None else teams,
           "moduleIds": None if modules is None else list(modules),
           "published": published, "deleted": deleted, "importedAt": at}
    value = orjson.dumps(doc)
    course = CatalogImport.model_validate_json(value)
    return Imp(doc, course, meta_of(hashlib.sha256(value).hexdigest(), at))


def event(kind: str, at: str, teams: list[int], sub: str | None = None) -> Ev:
    payload: dict[str, Any] = {
        "group": {"groupId": 1}, "teams": [{"teamId": t} for t in teams],
        "course": {"courseId": COURSE_ID, "courseKey": "from-edume"},
        "modules": [{"moduleId": 9}], "version": 1,
    }
    if sub:
        payload = {"type": sub, **payload}
    return make({"type": kind, "payload": payload, "timestamp": at})


def apply(entry: CourseEntry, item: Item) -> bool:
    if isinstance(item, Imp):
        return apply_course_import(entry, item.course, item.meta)
    return apply_course_event(entry, item.event, item.meta)


def fold(items: list[Item]) -> CourseEntry:
    entry = CourseEntry(COURSE_ID)
    for item in items:
        apply(entry, item)
    return entry


T0, T1, T2 = "2026-03-01T10:00:00.000Z", "2026-03-01T11:00:00.000Z", "2026-03-01T12:00:00.000Z"


def test_an_import_alone_makes_a_known_published_course() -> None:
    entry = fold([imp(T1, teams=[8, 7, 8], modules=[3, 1])])
    assert entry.view() == {
        "courseId": COURSE_ID, "courseKey": "imported", "groupId": 12779, "teamIds": [7, 8],
        "moduleIds": [3, 1], "published": True, "deleted": False, "deletedAt": None,
        "titleChangedAt": None, "lastEventAt": T1, "eventsApplied": 1,
    }


def test_a_later_event_wins_and_an_earlier_one_loses() -> None:
    later = fold([imp(T1), event("course.unpublished", T2, [5])])
    assert later.view()["published"] is False
    assert later.team_ids == [5] and later.view()["courseKey"] == "from-edume"
    earlier = fold([imp(T1), event("course.unpublished", T0, [5])])
    assert earlier.view()["published"] is True
    assert earlier.team_ids == [7] and earlier.view()["courseKey"] == "imported"
    assert earlier.view()["lastEventAt"] == T1


def test_at_the_same_instant_every_edume_event_wins() -> None:
    assert IMPORT_RANK < min(RANK.values())
    unpublished = fold([event("course.unpublished", T1, [5]), imp(T1, published=True)])
    assert unpublished.is_published is False and unpublished.team_ids == [5]
    published = fold([imp(T1, published=False), event("course.published", T1, [5])])
    assert published.is_published is True
    # A course added at the import's instant is a draft: the event says so.
    assert fold([imp(T1), event("course.added", T1, [5])]).is_published is False


def test_a_key_or_modules_not_known_leave_what_the_events_say() -> None:
    entry = fold([event("course.added", T0, [5]), imp(T1, key=None, modules=None)])
    assert entry.view()["courseKey"] == "from-edume" and entry.view()["moduleIds"] == [9]
    assert entry.is_published is True and entry.team_ids == [7]
    alone = fold([imp(T1, key=None, modules=None)]).view()
    assert (alone["courseKey"], alone["moduleIds"], alone["published"]) == (None, [], True)


def test_teams_are_a_snapshot_that_later_assignments_change() -> None:
    entry = fold([
        imp(T1, teams=[1, 2]),
        event("course.updated", T2, [3], "team.assigned"),
        event("course.updated", T0, [4], "team.assigned"),  # older than the snapshot
        event("course.updated", T2, [1], "team.removed"),
    ])
    assert entry.team_ids == [2, 3]


def test_a_deletion_is_final_whichever_says_it() -> None:
    deleted_first = fold([event("course.deleted", T0, [5]), imp(T1, deleted=False)])
    assert deleted_first.is_deleted and deleted_first.view()["deletedAt"] == T0
    imported_deleted = fold([imp(T1, deleted=True), event("course.published", T2, [5])])
    assert imported_deleted.is_deleted and imported_deleted.view()["deletedAt"] == T1
    assert imported_deleted.is_published is True  # the register moves; deleted still wins


def test_a_repeated_import_changes_nothing_and_says_so() -> None:
    entry = CourseEntry(COURSE_ID)
    one = imp(T1)
    assert apply(entry, one) is True
    before = encode_course(entry)
    assert apply(entry, one) is False
    assert encode_course(entry) == before and entry.view()["eventsApplied"] == 1


def test_an_imported_entry_survives_its_changelog_encoding() -> None:
    entry = fold([imp(T1, teams=[4]), event("course.added", T0, [2])])
    assert entry.published is not None and entry.published.rank == IMPORT_RANK
    assert decode_course(encode_course(entry)) == entry


# ----------------------------------------------------------------------- properties


@st.composite
def imports(draw: st.DrawFn) -> Imp:
    at = draw(timestamps)
    return imp(
        at,
        teams=draw(st.lists(small_ids, max_size=3)),
        published=draw(st.booleans()),
        deleted=draw(st.booleans()),
        key=draw(st.sampled_from(["k1", "k3", None])),
        group=draw(st.sampled_from([12779, 12781])),
        modules=draw(st.one_of(st.none(), st.lists(small_ids, max_size=2))),
    )


items = st.lists(st.one_of(course_events(), imports()), min_size=1, max_size=8)


def unique_in_order(found: list[Item]) -> list[Item]:
    seen: dict[str, Item] = {i.meta.event_id: i for i in found}
    return sorted(seen.values(), key=lambda i: i.order)


def oracle(found: list[Item]) -> dict[str, Any]:
    """The entry by folding each event and import once, in (time, rank, id) order, with
    the plainest code possible."""
    view: dict[str, Any] = {"published": None, "deleted": False, "deletedAt": None,
                            "titleChangedAt": None, "teamIds": set(), "courseKey": None,
                            "moduleIds": []}
    for item in unique_in_order(found):
        if isinstance(item, Imp):
            d = item.doc
            view["teamIds"] = set(d["teamIds"])
            view["published"] = d["published"]
            if d["deleted"] and not view["deleted"]:
                view["deleted"], view["deletedAt"] = True, d["importedAt"]
            view.update(groupId=d["groupId"], lastEventAt=d["importedAt"])
            if d["courseKey"] is not None:
                view["courseKey"] = d["courseKey"]
            if d["moduleIds"] is not None:
                view["moduleIds"] = d["moduleIds"]
            continue
        oracle_course_event(view, item.doc)
    view["teamIds"] = sorted(view["teamIds"])
    return view


@settings(max_examples=400, deadline=None)
@given(items.flatmap(lambda found: st.tuples(st.just(found), arrivals(found))))
def test_any_order_and_repetition_of_events_and_imports_gives_the_ordered_fold(
    case: tuple[list[Item], list[Item]],
) -> None:
    found, arrived = case
    entry = fold(arrived)
    assert content(entry) == content(fold(unique_in_order(found)))
    view = entry.view()
    expected = oracle(found)
    assert {k: view[k] for k in expected} == expected
    assert view["eventsApplied"] == len({i.meta.event_id for i in found})
    assert decode_course(encode_course(entry)) == entry


@settings(max_examples=300, deadline=None)
@given(items, st.data())
def test_merging_the_entries_of_any_split_gives_the_whole_fold(
    found: list[Item], data: st.DataObject
) -> None:
    """As every worker's copy does: a changelog state merged with what the copy folded
    itself, imports included."""
    sides = data.draw(st.lists(st.booleans(), min_size=len(found), max_size=len(found)))
    left = fold([i for i, side in zip(found, sides, strict=True) if side])
    right = fold([i for i, side in zip(found, sides, strict=True) if not side])
    assert content(merge_courses(left, right)) == content(fold(found))
    assert content(merge_courses(right, left)) == content(fold(found))
