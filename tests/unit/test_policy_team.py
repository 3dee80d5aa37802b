"""The one team a learner joins: eduMe's course-link document says ``g`` is the team "that
the learner will be assigned to once they click". Assignment and reminder links name the
team the course's policy names, else the course's only team; a course with several teams
and no team named gets a rejection that says how to fix it. Requests name their own."""

from __future__ import annotations

import json

import orjson
import pytest

from schemas.outputs import TrainingPolicy
from streams.core import topics
from streams.core.state.links import decide_link
from streams.core.state.policies import Policy, PolicyBook, parse_policy_record
from streams.tools.cli import build_parser
from streams.tools.policy import describe
from tests.unit.test_worker_processing import (
    LAYOUT,
    Replica,
    Store,
    link_processor,
    published_course,
    record,
)


def issue(reason: str, teams: list[int] | None) -> bytes:
    return json.dumps({"kind": "course", "externalUserId": "u", "userId": 7, "contentId": 5,
                       "courseId": 5, "teamIds": teams, "reason": reason,
                       "causeEventId": "c" * 64}).encode()


def decided(replica: Replica, value: bytes) -> tuple[str, dict[str, object]]:
    (out,) = link_processor(replica).process([record(value, "u", topics.LINK_ISSUE)],
                                             Store().load).outputs
    return out.topic, orjson.loads(out.value or b"{}")


@pytest.mark.parametrize("reason", ["assignment", "reminder"])
def test_a_course_with_several_teams_and_no_team_named_is_refused_with_the_fix(
        reason: str) -> None:
    replica = Replica()
    replica.catalog[5] = published_course(5, [3, 4])
    topic, value = decided(replica, issue(reason, None))
    assert topic == LAYOUT.name(topics.LINK_REJECTED)
    article = "an" if reason == "assignment" else "a"
    assert value["reason"] == (
        f"course 5 has several teams (3, 4) and its policy names none: {article} {reason} "
        "link puts the learner in one team. Name it: `edume-streams policy set 5 --team-id "
        "T` with T one of 3, 4")


def test_the_named_team_or_the_only_team_goes_in_the_link() -> None:
    replica = Replica()
    replica.catalog[5] = published_course(5, [3, 4])
    topic, value = decided(replica, issue("assignment", [4]))
    assert topic == LAYOUT.name(topics.LINK_ISSUED)
    assert "?g=4&" in str(value["url"]) and value["teamIds"] == [4]
    replica.catalog[5] = published_course(5, [3])
    topic, value = decided(replica, issue("reminder", None))
    assert "?g=3&" in str(value["url"])
    topic, value = decided(replica, issue("assignment", [9]))  # not a team of the course
    assert topic == LAYOUT.name(topics.LINK_REJECTED)
    assert value["reason"] == "team 9 is not assigned to course 5 (assigned: 3)"


def test_a_request_without_teams_still_takes_every_team_of_the_course() -> None:
    replica = Replica()
    replica.catalog[5] = published_course(5, [3, 4])
    topic, value = decided(replica, issue("request", None))
    assert topic == LAYOUT.name(topics.LINK_ISSUED) and "?g=3,4&" in str(value["url"])


def test_the_policy_names_the_team_of_assignment_links() -> None:
    from streams.core.state.links import assignment_links
    from streams.core.state.progress import LearnerState
    from tests.unit.state_events import make

    book = PolicyBook()
    book.apply(5, Policy(5, True, None, team_id=4), (1, 0, 0))
    learner = LearnerState(7, assigned={5})
    ev = make({"type": "learner.added", "timestamp": "2026-01-01T00:00:00.000Z", "payload": {
        "user": {"eId": "u", "userId": 7, "identifiers": []}, "group": {"groupId": 1},
        "courses": [{"courseId": 5}], "version": 1}})
    from streams.core.state.common import Stamped

    learner.external_id = Stamped(1, "x", "u")
    (out,) = assignment_links(learner, [5], ev.meta, book, {})
    assert out.value.teamIds == [4]  # type: ignore[union-attr]
    book.apply(5, Policy(5, True, None), (2, 0, 0))
    learner.linked.clear()
    (out,) = assignment_links(learner, [5], ev.meta, book, {})
    assert out.value.teamIds is None  # type: ignore[union-attr]  # the course's only team


def test_a_policy_record_carries_its_team_and_older_records_have_none() -> None:
    value = TrainingPolicy(courseId=5, mandatory=True, groupIds=[1], teamId=4)
    assert orjson.loads(value.model_dump_json()) == {"courseId": 5, "mandatory": True,
                                                     "groupIds": [1], "teamId": 4}
    assert parse_policy_record(b"5", value.model_dump_json().encode())[1] == Policy(
        5, True, frozenset({1}), 4)
    old = b'{"courseId":5,"mandatory":true,"groupIds":null}'
    assert parse_policy_record(b"5", old)[1] == Policy(5, True, None, None)
    assert describe(Policy(5, True, None, 4)) == (
        "course 5: mandatory for every group; assignment and reminder links put learners "
        "in team 4")


def test_policy_set_takes_one_team_id() -> None:
    args = build_parser().parse_args(["policy", "set", "5", "--team-id", "4"])
    assert args.team_id == 4
    for bad in ("0", "4,5", "x", str(2**53)):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["policy", "set", "5", "--team-id", bad])


def test_decide_link_is_what_the_agent_uses() -> None:
    # The pure decision, without the agent: a reminder to a two-team course, no team named.
    from schemas.outputs import LinkIssue

    replica = Replica()
    replica.catalog[5] = published_course(5, [3, 4])
    out = decide_link(LinkIssue.model_validate_json(issue("reminder", None)), "c" * 64,
                      replica.catalog, base_url="https://learn.edume.com/e", secret="s",
                      issued_at="2026-01-01T00:00:00.000Z")
    assert out.topic == topics.LINK_REJECTED
