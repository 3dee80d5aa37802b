"""Hypothesis strategies for eduMe events of one course or one learner, and the oracle: the
events folded once each in ``(timestamp, rank, short event id)`` order by the plainest code
possible (the rank: an event type's place among events of one timestamp)."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from hypothesis import strategies as st

from schemas import WEBHOOK_ADAPTER
from streams.core.state import catalog, progress
from streams.core.state.common import Applied, Meta, meta_of, short_id

COURSE_ID = 22299
USER_ID = 10217
BASE = "2022-07-21T13:29:"
S = TypeVar("S")


@dataclass(frozen=True)
class Ev:
    """A validated event with what the reducers need."""

    doc: dict[str, Any]
    event: Any
    meta: Meta

    @property
    def order(self) -> tuple[int, int, str]:
        rank = {**catalog.RANK, **progress.RANK}[type(self.event)]
        return (self.meta.ts, rank, short_id(self.meta.event_id))


def make(doc: dict[str, Any]) -> Ev:
    body = orjson.dumps(doc)
    event = WEBHOOK_ADAPTER.validate_json(body)
    return Ev(doc, event, meta_of(hashlib.sha256(body).hexdigest(), doc["timestamp"]))


# Few distinct instants, so that ties (broken by event id) are common; two spellings of
# some instants, so that equal times written differently order as equal.
timestamps = st.sampled_from(
    [
        f"{BASE}30.000Z",
        f"{BASE}30.000+00:00",
        f"{BASE}31.500Z",
        f"{BASE}32.000Z",
        "2022-07-21T15:29:32.000+02:00",  # the same instant as 13:29:32.000Z
        f"{BASE}59.999Z",
    ]
)
small_ids = st.integers(1, 5)

COURSE_KINDS = [
    ("course.added", None),
    ("course.deleted", None),
    ("course.published", None),
    ("course.unpublished", None),
    ("course.updated", "title.changed"),
    ("course.updated", "team.assigned"),
    ("course.updated", "team.removed"),
]


@st.composite
def course_events(draw: st.DrawFn) -> Ev:
    kind, sub = draw(st.sampled_from(COURSE_KINDS))
    payload: dict[str, Any] = {
        "group": {"groupId": draw(st.sampled_from([12779, 12780]))},
        "teams": [{"teamId": t} for t in draw(st.lists(small_ids, max_size=3))],
        "course": {"courseId": COURSE_ID, "courseKey": draw(st.sampled_from(["k1", "k2"]))},
        "modules": [{"moduleId": m} for m in draw(st.lists(small_ids, max_size=2))],
        "version": 1,
    }
    if sub is not None:
        payload = {"type": sub, **payload}
    return make({"type": kind, "payload": payload, "timestamp": draw(timestamps)})


def _user(draw: st.DrawFn) -> dict[str, Any]:
    identifiers = draw(st.lists(st.sampled_from(["hr.id", "crm.id"]), max_size=2, unique=True))
    return {
        "eId": draw(st.sampled_from(["e-1", "e-2"])),
        "userId": USER_ID,
        "identifiers": [
            {"id": 1, "key": k, "value": draw(st.sampled_from(["a", "b"])), "createdAt": "x"}
            for k in identifiers
        ],
    }


@st.composite
def learner_events(draw: st.DrawFn, groups: tuple[int, ...] = (5, 6)) -> Ev:
    kind = draw(
        st.sampled_from(
            ["added", "activated", "started", "finished", "finished", "survey", "completed"]
        )
    )
    ts = draw(timestamps)
    group = {"groupId": draw(st.sampled_from(groups))}
    course = draw(st.sampled_from([202, 2045]))
    if kind in ("added", "activated"):
        courses = draw(st.lists(st.sampled_from([202, 2045, 2099]), max_size=3))
        payload = {"user": _user(draw), "group": group,
                   "courses": [{"courseId": c} for c in courses], "version": 1}
        return make({"type": f"learner.{kind}", "payload": payload, "timestamp": ts})
    if kind == "completed":
        payload = {
            "user": {"id": USER_ID, "identifiers": [{"key": "hr.id", "value": "c"}]},
            "course": {"id": course, "courseKey": draw(st.sampled_from(["k202", "kx"]))},
            "parentGroup": {"id": 8884},
            "completion": {
                "courseCompletionDate": draw(timestamps),
                "overallAssessmentScore": draw(st.sampled_from([50, 66.67])),
                "courseCompletionDurationInSeconds": 54,
            },
        }
        spelling = draw(st.sampled_from(["course.completed", "course.complete",
                                          "learner.course.completed"]))
        return make({"type": spelling, "payload": payload, "timestamp": ts})
    base = {"user": _user(draw), "group": group, "version": 1}
    if kind == "survey":
        survey = {"surveyId": draw(small_ids), "type": "freeText",
                  "status": draw(st.sampled_from(["completed", "dismissed"]))}
        if draw(st.booleans()):
            base |= {"course": {"courseId": course}, "module": {"moduleId": 7}}
        payload = {"type": "survey", **base, "survey": survey}
        return make({"type": "learner.activity.finished", "payload": payload, "timestamp": ts})
    what = draw(st.sampled_from(["course", "lesson", "assessment"]))
    payload = {"type": what, **base, "course": {"courseId": course}}
    if what == "lesson":
        payload |= {"module": {"moduleId": 7}, "lesson": {"lessonId": draw(small_ids)}}
    elif what == "assessment":
        payload |= {"module": {"moduleId": 7}, "assessment": {"assessmentId": draw(small_ids)}}
    return make({"type": f"learner.activity.{kind}", "payload": payload, "timestamp": ts})


@st.composite
def arrivals(draw: st.DrawFn, events: list[Ev]) -> list[Ev]:
    """The events in any order, some of them more than once (redeliveries)."""
    repeats = draw(st.lists(st.sampled_from(events), max_size=len(events))) if events else []
    return draw(st.permutations(events + repeats))


def content(state: S) -> S:
    """A state less what it remembers of the events applied (their count and latest ids,
    which follow the arrival order)."""
    return dataclasses.replace(state, applied=Applied())  # type: ignore[type-var]


def unique_in_order(events: list[Ev]) -> list[Ev]:
    seen: dict[str, Ev] = {e.meta.event_id: e for e in events}
    return sorted(seen.values(), key=lambda e: e.order)


def oracle_course(events: list[Ev]) -> dict[str, Any]:
    """The catalog entry by folding each event once, in timestamp order."""
    view: dict[str, Any] = {"published": None, "deleted": False, "deletedAt": None,
                            "titleChangedAt": None, "teamIds": set()}
    for e in unique_in_order(events):
        oracle_course_event(view, e.doc)
    view["teamIds"] = sorted(view["teamIds"])
    return view


def oracle_course_event(view: dict[str, Any], d: dict[str, Any]) -> None:
    """One course event into the oracle's view (``teamIds`` a set until the end)."""
    p = d["payload"]
    teams = {t["teamId"] for t in p["teams"]}
    sub = p.get("type")
    if sub == "team.assigned":
        view["teamIds"] |= teams
    elif sub == "team.removed":
        view["teamIds"] -= teams
    else:
        view["teamIds"] = teams
    if sub == "title.changed":
        view["titleChangedAt"] = d["timestamp"]
    if d["type"] in ("course.added", "course.unpublished"):
        view["published"] = False
    elif d["type"] == "course.published":
        view["published"] = True
    elif d["type"] == "course.deleted" and not view["deleted"]:
        view["deleted"], view["deletedAt"] = True, d["timestamp"]
    view["courseKey"] = p["course"]["courseKey"]
    view["groupId"] = p["group"]["groupId"]
    view["moduleIds"] = [m["moduleId"] for m in p["modules"]]
    view["lastEventAt"] = d["timestamp"]


def oracle_learner(events: list[Ev]) -> dict[str, Any]:
    """The learner's state by folding each event once, in timestamp order."""
    out: dict[str, Any] = {"externalUserId": None, "groupId": None, "courseGroup": None,
                           "assigned": set(), "identifiers": {}, "courses": {}, "surveys": {},
                           "addedAt": None, "activatedAt": None}

    def course(cid: int) -> dict[str, Any]:
        return out["courses"].setdefault(cid, {
            "startedAt": None, "ls": set(), "lf": set(), "as": set(), "af": set(),
            "surveys": {}, "completedAt": None, "completedBy": None, "detail": None})

    for e in unique_in_order(events):
        d, p = e.doc, e.doc["payload"]
        if d["type"] in ("course.completed", "course.complete", "learner.course.completed"):
            for i in p["user"].get("identifiers", []):
                out["identifiers"][i["key"]] = i
            out["courseGroup"] = p["parentGroup"]["id"]
            c = course(p["course"]["id"])
            if c["completedAt"] is None:
                c["completedAt"] = p["completion"]["courseCompletionDate"]
                c["completedBy"] = "detail"
            c["detail"] = p["completion"]["overallAssessmentScore"]
            continue
        out["externalUserId"] = p["user"]["eId"]
        out["groupId"] = p["group"]["groupId"]
        for i in p["user"]["identifiers"]:
            out["identifiers"][i["key"]] = i
        if d["type"] in ("learner.added", "learner.activated"):
            out["assigned"] |= {c["courseId"] for c in p["courses"]}
            field = "addedAt" if d["type"] == "learner.added" else "activatedAt"
            out[field] = out[field] or d["timestamp"]
            continue
        started = d["type"] == "learner.activity.started"
        if p["type"] == "survey" and "course" not in p:
            out["surveys"][p["survey"]["surveyId"]] = p["survey"]["status"]
            continue
        c = course(p["course"]["courseId"])
        if p["type"] == "course":
            if started:
                c["startedAt"] = c["startedAt"] or d["timestamp"]
            elif c["completedAt"] is None:
                c["completedAt"], c["completedBy"] = d["timestamp"], "activity"
        elif p["type"] == "lesson":
            c["ls" if started else "lf"].add(p["lesson"]["lessonId"])
        elif p["type"] == "assessment":
            c["as" if started else "af"].add(p["assessment"]["assessmentId"])
        else:
            c["surveys"][p["survey"]["surveyId"]] = p["survey"]["status"]
    return out
