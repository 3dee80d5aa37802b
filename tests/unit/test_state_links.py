"""Links: requests into issue-link events, issue-link events into signed links or
rejections, assignment links and durable reminders (the pure part; the worker writes)."""

from __future__ import annotations

import hashlib

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.outputs import LinkIssue, LinkIssued, LinkRejected, LinkRequest
from streams.core import topics
from streams.core.signing import build_link, sign_link
from streams.core.state.catalog import CourseEntry, apply_course_event
from streams.core.state.common import derived_id
from streams.core.state.links import (
    LinkState,
    decide_link,
    decode_links,
    due_reminders,
    encode_links,
    issue_for_request,
    next_due,
    read_request,
    record_issued,
    request_id,
)
from streams.core.state.mandatory import learner_step
from streams.core.state.policies import Policy, PolicyBook
from streams.core.state.progress import LearnerState
from tests.unit import node_oracle
from tests.unit.state_events import USER_ID, Ev, make

BASE = "https://learn.edume.com/e"
SECRET = "secret_from_edume"
CAUSE = "c" * 64
HOUR_US = 3600 * 1_000_000


class Catalog(dict[int, CourseEntry]):
    pass


def course(course_id: int, teams: list[int], *, published: bool | None = True,
           deleted: bool = False) -> CourseEntry:
    entry = CourseEntry(course_id)
    payload = {"group": {"groupId": 12779}, "teams": [{"teamId": t} for t in teams],
               "course": {"courseId": course_id, "courseKey": f"key{course_id}"},
               "modules": [{"moduleId": 1}], "version": 1}
    kinds = ["course.added"]
    if published is True:
        kinds.append("course.published")
    if deleted:
        kinds.append("course.deleted")
    for i, kind in enumerate(kinds):
        ev = make({"type": kind, "timestamp": f"2026-10-01T00:0{i}:00.000Z", "payload": payload})
        apply_course_event(entry, ev.event, ev.meta)
    return entry


CATALOG = Catalog({
    501: course(501, [7, 8]),
    502: course(502, [7], published=False),
    503: course(503, [7], deleted=True),
    504: course(504, []),
})


def book(*policies: Policy) -> PolicyBook:
    b = PolicyBook()
    for i, p in enumerate(policies):
        b.apply(p.course_id, p, (0, 0, i))
    return b


MANDATORY = book(Policy(501, True, frozenset({5})), Policy(503, True, None),
                 Policy(505, True, None))


def request(**fields: object) -> LinkRequest:
    return LinkRequest.model_validate({"externalUserId": "u-1", **fields})


def decide(issue: LinkIssue, catalog: Catalog = CATALOG):
    return decide_link(issue, CAUSE, catalog, base_url=BASE, secret=SECRET,
                       issued_at="2026-12-03T10:00:00.000Z")


def issue(**fields: object) -> LinkIssue:
    request_fields = {"kind": "course", "contentId": 501, **fields}
    answer = issue_for_request(request(**request_fields), CAUSE)
    assert isinstance(answer, LinkIssue), answer
    return answer


# ------------------------------------------------------------------------------ requests


@pytest.mark.parametrize(("value", "reason"), [
    (b"{not json", "malformed request: not JSON"),
    (b"[1,2]", "malformed request: not a JSON object"),
    (b'{"kind":"course"}', "malformed request: externalUserId"),
    (b'{"kind":"course","externalUserId":""}', "malformed request: externalUserId"),
    (b'{"kind":"course","externalUserId":"u","contentId":"501"}', "malformed request: contentId"),
    (b'{"kind":"course","externalUserId":"u","teamIds":[true]}', "malformed request: teamIds"),
    (None, "malformed request: a tombstone"),
])
def test_malformed_requests_say_what_is_wrong(value: bytes | None, reason: str) -> None:
    read = read_request(value)
    assert isinstance(read, tuple)
    assert read[1].startswith(reason)


@pytest.mark.parametrize(("fields", "reason"), [
    ({"kind": "podcast", "contentId": 1}, "unknown kind 'podcast'"),
    ({"kind": "module"}, "missing content id: a module link needs contentId"),
    ({"kind": "course"}, "missing content id: a course link needs contentId (or courseId)"),
    ({"kind": "course", "contentId": 1, "courseId": 2}, "malformed request: contentId 1 and"),
])
def test_requests_that_cannot_become_an_issue_link_event(fields: dict, reason: str) -> None:
    answer = issue_for_request(request(**fields), CAUSE)
    assert isinstance(answer, str) and answer.startswith(reason)


def test_course_id_is_an_alias_of_content_id_for_course_links() -> None:
    a = issue_for_request(request(kind="course", courseId=501), CAUSE)
    b = issue_for_request(request(kind="course", contentId=501, courseId=501), CAUSE)
    assert isinstance(a, LinkIssue) and a.contentId == a.courseId == 501
    assert a == b


def test_team_id_and_team_ids_name_their_union_in_order() -> None:
    answer = issue(teamIds=[8, 7], teamId=7)
    assert answer.teamIds == [8, 7]
    assert issue(teamId=9).teamIds == [9]
    assert issue().teamIds is None  # course links: the catalog's teams


def test_a_hub_link_ignores_a_content_id() -> None:
    answer = issue_for_request(request(kind="hub", contentId=5, teamIds=[7]), CAUSE)
    assert isinstance(answer, LinkIssue) and answer.contentId is None


def test_request_identity_is_the_header_id_or_the_value_digest() -> None:
    value = b'{"kind":"hub","externalUserId":"u","teamIds":[7]}'
    assert request_id(value, None) == hashlib.sha256(value).hexdigest()
    assert request_id(value, "a" * 64) == "a" * 64


# ------------------------------------------------------------------- the link agent


def test_a_course_link_takes_every_team_of_the_course_comma_joined() -> None:
    out = decide(issue())
    assert out.topic == topics.LINK_ISSUED
    value = out.value
    assert isinstance(value, LinkIssued)
    unsigned = f"{BASE}/c/501?g=7,8&e=u-1"
    assert value.url == sign_link(unsigned, SECRET)
    assert (value.teamId, value.teamIds, value.reason) == (7, [7, 8], "request")
    assert value.issuedAt == "2026-12-03T10:00:00.000Z"
    assert out.event_id == derived_id(CAUSE, topics.LINK_ISSUED, "issued")


def test_a_course_link_names_only_the_requested_teams() -> None:
    value = decide(issue(teamIds=[8])).value
    assert isinstance(value, LinkIssued)
    assert "?g=8&e=" in value.url and value.teamIds == [8]


@pytest.mark.parametrize(("fields", "reason"), [
    ({"contentId": 999}, "unknown course 999: no course events seen for it"),
    ({"contentId": 503}, "course 503 is deleted"),
    ({"contentId": 502}, "course 502 is not published"),
    ({"contentId": 504}, "no team: course 504 is assigned to no team"),
    ({"contentId": 501, "teamIds": [8, 9]},
     "team 9 is not assigned to course 501 (assigned: 7, 8)"),
    ({"kind": "lesson", "contentId": 3}, "no team: a lesson link needs teamIds"),
    ({"kind": "hub"}, "no team: a hub link needs teamIds"),
])
def test_rejections_say_what_a_person_can_fix(fields: dict, reason: str) -> None:
    rejected = issue(**fields)
    out = decide(rejected)
    assert out.topic == topics.LINK_REJECTED
    assert isinstance(out.value, LinkRejected)
    assert out.value.reason == reason
    assert out.value.request["kind"] == rejected.kind
    assert out.event_id == derived_id(CAUSE, topics.LINK_REJECTED, "rejected")


def test_a_knowledge_hub_link_takes_no_team() -> None:
    value = decide(issue(kind="knowledge-hub", contentId=12)).value
    assert isinstance(value, LinkIssued)
    assert value.url == sign_link(f"{BASE}/kh/12?e=u-1", SECRET)
    assert value.teamIds == [] and value.teamId is None


def test_every_kind_signs_as_edume_documents() -> None:
    for kind in ("module", "lesson", "survey", "guide"):
        value = decide(issue(kind=kind, contentId=42, teamIds=[7])).value
        assert isinstance(value, LinkIssued)
        unsigned = build_link(kind, base_url=BASE, external_user_id="u-1", content_id=42,
                              team_ids=[7])
        assert value.url == sign_link(unsigned, SECRET)


EXTERNAL_IDS = ["abc123", "jane doe", "a/b/c", "x+y", "a&b=c", "100%", "zoë", "用户",
                "😀 +&=%/", "O'Brien (ops)*"]


def test_issued_links_match_nodes_hmac_over_edumes_template() -> None:
    """The link agent's URL, byte for byte, against eduMe's Node snippet: the URL template
    with the id percent-encoded, signed with crypto.createHmac('sha256', secret)."""
    cases = []
    for ext in EXTERNAL_IDS:
        for kind, content, teams in (("course", 501, [7, 8]), ("hub", None, [7, 8, 55526]),
                                     ("module", 10658, [7])):
            cases.append({"kind": kind, "base": BASE, "externalUserId": ext, "secret": SECRET,
                          "contentId": content, "teamIds": teams})
    answers = node_oracle.links(cases)
    for case, answer in zip(cases, answers, strict=True):
        fields = {"kind": case["kind"], "externalUserId": case["externalUserId"]}
        if case["contentId"] is not None:
            fields["contentId"] = case["contentId"]
        if case["kind"] != "course":
            fields["teamIds"] = case["teamIds"]
        made = issue_for_request(LinkRequest.model_validate(fields), CAUSE)
        assert isinstance(made, LinkIssue)
        value = decide(made).value
        assert isinstance(value, LinkIssued)
        assert value.url == answer["signed"], case


def test_link_state_keeps_issued_links_and_round_trips() -> None:
    state = LinkState("u-1", 9)
    out = decide(issue())
    record_issued(state, out, out.event_id)
    record_issued(state, decide(issue(contentId=999)), "x")
    assert state.rejected == 1 and len(state.links) == 1
    assert state.links[0]["contentId"] == 501 and state.links[0]["eventId"] == out.event_id
    again = decode_links(encode_links(state))
    assert again == state
    assert again.view()["links"][0]["url"] == out.value.url  # type: ignore[attr-defined]


# ---------------------------------------------------- assignments and reminders


def added(courses: list[int], ts: str = "2026-12-01T10:00:00.000Z", kind: str = "learner.added",
          group: int = 5, ext: str | None = "ext-1") -> Ev:
    user: dict[str, object] = {"userId": USER_ID, "identifiers": []}
    if ext is not None:
        user["eId"] = ext
    return make({"type": kind, "timestamp": ts, "payload": {
        "user": user, "group": {"groupId": group},
        "courses": [{"courseId": c} for c in courses], "version": 1}})


def finished(course_id: int, ts: str = "2026-12-01T11:00:00.000Z") -> Ev:
    return make({"type": "learner.activity.finished", "timestamp": ts, "payload": {
        "type": "course", "user": {"eId": "ext-1", "userId": USER_ID, "identifiers": []},
        "group": {"groupId": 5}, "course": {"courseId": course_id}, "version": 1}})


def step(state: LearnerState, ev: Ev, policies: PolicyBook = MANDATORY):
    return learner_step(state, ev.event, ev.meta, policies, CATALOG, links=True,
                        reminder_after_us=HOUR_US)


def issues_of(outputs) -> list[LinkIssue]:
    return [o.value for o in outputs if o.topic == topics.LINK_ISSUE]


def test_an_assignment_asks_for_a_link_per_open_mandatory_course_once() -> None:
    state = LearnerState(USER_ID)
    first = issues_of(step(state, added([501, 502, 503, 505, 600])))
    # 501: mandatory for group 5; 503 deleted; 502, 600 not mandatory; 505 mandatory for
    # all (not in the catalog yet: the link agent decides, and rejects it if still unknown)
    assert [(i.courseId, i.reason, i.userId, i.externalUserId) for i in first] == [
        (501, "assignment", USER_ID, "ext-1"), (505, "assignment", USER_ID, "ext-1")]
    assert all(i.teamIds is None for i in first)
    again = issues_of(step(state, added([501, 505], kind="learner.activated",
                                       ts="2026-12-01T10:05:00.000Z")))
    assert again == []


def test_no_assignment_link_for_a_completed_course_or_another_group() -> None:
    state = LearnerState(USER_ID)
    step(state, finished(501, ts="2026-12-01T09:00:00.000Z"))
    assert issues_of(step(state, added([501]))) == []
    other = LearnerState(USER_ID)
    assert issues_of(step(other, added([501], group=6))) == []


def test_the_assignment_link_id_is_derived_from_its_cause() -> None:
    ev = added([501])
    (output,) = [o for o in step(LearnerState(USER_ID), ev) if o.topic == topics.LINK_ISSUE]
    assert output.event_id == derived_id(ev.meta.event_id, topics.LINK_ISSUE, "assignment|501")
    assert output.value.causeEventId == ev.meta.event_id


def test_a_reminder_is_due_after_the_assigning_events_time_and_fires_once() -> None:
    state = LearnerState(USER_ID)
    ev = added([501])
    step(state, ev)
    due = ev.meta.ts + HOUR_US
    assert state.reminders == {501: (due, ev.meta.event_id)} and next_due(state) == due
    assert due_reminders(state, due - 1, MANDATORY, CATALOG) == []
    (fired,) = due_reminders(state, due, MANDATORY, CATALOG)
    assert fired.value.reason == "reminder" and fired.value.courseId == 501
    assert fired.event_id == derived_id(ev.meta.event_id, topics.LINK_ISSUE, "reminder|501")
    assert due_reminders(state, due + HOUR_US, MANDATORY, CATALOG) == []
    assert next_due(state) is None
    step(state, make({"type": "learner.activity.started", "timestamp":
                      "2026-12-01T12:00:00.000Z", "payload": {
                          "type": "course", "user": {"eId": "ext-1", "userId": USER_ID,
                                                     "identifiers": []},
                          "group": {"groupId": 5}, "course": {"courseId": 501},
                          "version": 1}}))
    assert state.reminders == {}  # never scheduled twice


def test_a_completion_cancels_the_reminder() -> None:
    state = LearnerState(USER_ID)
    step(state, added([501]))
    step(state, finished(501))
    assert state.reminders == {} and 501 in state.reminded
    assert due_reminders(state, 2**62, MANDATORY, CATALOG) == []


def test_a_reminder_due_for_a_course_no_longer_mandatory_fires_nothing() -> None:
    state = LearnerState(USER_ID)
    step(state, added([501]))
    assert due_reminders(state, 2**62, book(), CATALOG) == []
    assert state.reminders == {}


def test_no_link_or_reminder_without_links_on() -> None:
    state = LearnerState(USER_ID)
    ev = added([501])
    outputs = learner_step(state, ev.event, ev.meta, MANDATORY, CATALOG)
    assert issues_of(outputs) == [] and state.reminders == {}


@settings(max_examples=100, deadline=None)
@given(st.permutations(["added", "activated", "finished"]), st.integers(0, 3),
       st.lists(st.booleans(), min_size=6, max_size=6))
def test_links_and_reminders_once_whatever_the_order_repeats_and_clock(
    order: list[str], repeats: int, late: list[bool]
) -> None:
    """Any arrival order, any repetition, the clock past the due time or not between
    events: at most one assignment link and one reminder, a reminder only while the course
    is open, and nothing pending once it is completed."""
    events = {"added": added([501]),
              "activated": added([501], kind="learner.activated",
                                 ts="2026-12-01T10:01:00.000Z"),
              "finished": finished(501)}
    state = LearnerState(USER_ID)
    links = []
    completed = False
    for name, past_due in zip(order + order[:repeats], late, strict=False):
        links += issues_of(step(state, events[name]))
        completed = completed or name == "finished"
        fired = issues_of(due_reminders(state, 2**62 if past_due else 0, MANDATORY, CATALOG))
        assert not (fired and completed)
        links += fired
    assert len([i for i in links if i.reason == "assignment"]) <= 1
    assert len([i for i in links if i.reason == "reminder"]) <= 1
    assert state.reminders == {}
    if order[0] == "finished":
        assert links == []


def test_learner_state_round_trips_its_timers() -> None:
    from streams.core.state.codec import decode_learner, encode_learner

    state = LearnerState(USER_ID)
    step(state, added([501, 505]))
    state.reminded.add(9)
    again = decode_learner(encode_learner(state))
    assert (again.linked, again.reminders, again.reminded) == (
        state.linked, state.reminders, state.reminded)
    # a state written before links existed reads as having none
    raw = orjson.loads(encode_learner(LearnerState(USER_ID)))
    for name in ("linked", "reminders", "reminded"):
        del raw[name]
    old = decode_learner(orjson.dumps(raw))
    assert (old.linked, old.reminders, old.reminded) == (set(), {}, set())
