"""Seamless links: link requests, issue-link events, reminders and the signed links.

Three causes ask for a link, each turned into one ``links.issue`` record:
- a ``links.requests`` record (a downstream app asks): ``issue_for_request``;
- a learner assigned a course mandatory for their group and not completed
  (``learner.added`` / ``learner.activated``): ``assignment_links``, once per course;
- a reminder: a mandatory course assigned or started and not completed ``REMINDER_AFTER``
  after the event that made it so (by the event's timestamp): ``schedule_reminders`` keeps
  the timer in the learner's state, ``due_reminders`` fires it once, a completion cancels it.

The link agent turns each ``links.issue`` record into a signed link on ``links.issued``, or
a ``links.rejected`` record with a reason a person can act on: ``decide_link``. Every output
id is ``derived_id`` of its cause, so anything written again after a crash has the same id.

Readings, each pinned by a test:
- A request is identified by its ``edume-event-id`` header when it has one, otherwise by
  the SHA-256 of its value: the same request published twice gives one link.
- ``courseId`` is an alias of ``contentId`` for course links; both given and different is a
  malformed request. ``teamIds`` and ``teamId`` together name the union of both.
- A hub link (the Knowledge Hub dashboard) takes no content id; one given is ignored.
- Course links are checked against the catalog (known, not deleted, published, the teams
  assigned to it); the other kinds name content the catalog does not hold, and are issued
  as requested (they still need a team, except ``knowledge-hub`` which takes none).
- ``issuedAt`` is the time of the ``links.issue`` record, so a link issued again after a
  crash is the same record byte for byte.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import ValidationError

from schemas.outputs import LinkIssue, LinkIssued, LinkRejected, LinkRequest
from streams.core import topics
from streams.core.errors import LinkError
from streams.core.signing import LINK_KINDS, build_link, sign_link
from streams.core.state.catalog import CatalogView
from streams.core.state.codec import decode_applied, encode_applied
from streams.core.state.common import Applied, Meta, Output, derived_id
from streams.core.state.policies import PolicyBook
from streams.core.state.progress import LearnerState
from streams.core.validation import summarise_validation

MAX_LINKS_KEPT = 100
"""Links the query API lists per user (the newest)."""


@dataclass(slots=True)
class LinkState:
    """What one external user was issued: the links table's value."""

    external_user_id: str
    user_id: int | None = None
    applied: Applied = field(default_factory=Applied)
    """The requests and issue-link records applied: a repeat among the latest
    ``RECENT_IDS`` is skipped (see ``Applied``); an older one is decided again, giving the
    same records with the same ids, and is listed again."""
    links: list[dict[str, Any]] = field(default_factory=list)
    """Issued links, oldest first: kind, reason, url, issuedAt, courseId, contentId,
    teamIds, eventId."""
    rejected: int = 0

    def view(self) -> dict[str, Any]:
        return {
            "externalUserId": self.external_user_id,
            "userId": self.user_id,
            "links": [
                {k: link[k] for k in ("kind", "reason", "url", "issuedAt", "courseId",
                                      "contentId", "teamIds", "eventId")}
                for link in self.links
            ],
        }


def encode_links(state: LinkState) -> bytes:
    return orjson.dumps({
        "externalUserId": state.external_user_id,
        "userId": state.user_id,
        **encode_applied(state.applied),
        "links": state.links,
        "rejected": state.rejected,
    })


def decode_links(data: bytes) -> LinkState:
    """A links state of any codec version (version 1 kept every id in ``seen``)."""
    raw = orjson.loads(data)
    return LinkState(raw["externalUserId"], raw["userId"], decode_applied(raw, "seen"),
                     raw["links"][-MAX_LINKS_KEPT:], raw["rejected"])


# ------------------------------------------------------------------------------ requests


def request_id(value: bytes | None, header_id: str | None) -> str:
    """A request's identity: its ``edume-event-id``, or the SHA-256 of its value."""
    if header_id:
        return header_id
    return hashlib.sha256(value or b"").hexdigest()


def read_request(value: bytes | None) -> LinkRequest | tuple[dict[str, Any], str]:
    """The request, or (what can be shown of it, why it is malformed)."""
    if value is None:
        return {}, "malformed request: a tombstone (no value)"
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError:
        return {"raw": value[:1000].decode("utf-8", "replace")}, "malformed request: not JSON"
    if not isinstance(document, dict):
        return {"raw": document}, "malformed request: not a JSON object"
    try:
        return LinkRequest.model_validate(document)
    except ValidationError as exc:
        return document, f"malformed request: {summarise_validation(exc, document)}"


def issue_for_request(request: LinkRequest, cause_id: str) -> LinkIssue | str:
    """The issue-link event a request asks for, or why it cannot be honoured."""
    kind = request.kind
    if kind not in LINK_KINDS:
        return f"unknown kind {kind[:40]!r}: expected one of {', '.join(LINK_KINDS)}"
    content = request.contentId
    if kind == "course" and request.courseId is not None:
        if content is not None and content != request.courseId:
            return (f"malformed request: contentId {content} and courseId "
                    f"{request.courseId} differ (courseId is an alias of contentId)")
        content = request.courseId
    if kind == "hub":
        content = None
    elif content is None:
        return f"missing content id: a {kind} link needs contentId" + (
            " (or courseId)" if kind == "course" else "")
    teams: list[int] | None = None
    if request.teamIds is not None or request.teamId is not None:
        teams = list(dict.fromkeys([*(request.teamIds or []),
                                    *([request.teamId] if request.teamId else [])]))
    return LinkIssue(
        kind=kind,  # type: ignore[arg-type]  # checked against LINK_KINDS above
        externalUserId=request.externalUserId,
        userId=None,
        contentId=content,
        courseId=content if kind == "course" else None,
        teamIds=teams,
        reason="request",
        causeEventId=cause_id,
    )


def issue_output(issue: LinkIssue, subject: str) -> Output:
    kind = topics.LINK_ISSUE
    return Output(kind, issue.externalUserId, issue,
                  derived_id(issue.causeEventId, kind, subject), kind)


def rejection(key: str, request: dict[str, Any], reason: str, cause_id: str) -> Output:
    kind = topics.LINK_REJECTED
    return Output(kind, key, LinkRejected(request=request, reason=reason),
                  derived_id(cause_id, kind, "rejected"), kind)


# ------------------------------------------------------------------- the link agent


def decide_link(
    issue: LinkIssue,
    cause_id: str,
    catalog: CatalogView,
    *,
    base_url: str,
    secret: str,
    issued_at: str,
    note: str | None = None,
) -> Output:
    """A signed link on ``links.issued``, or a ``links.rejected`` record saying why not.
    A request's link names the request (``requestId``: its id, the issue-link event's
    cause) and carries its ``note`` (the request's own reason text)."""
    teams = list(issue.teamIds) if issue.teamIds else []
    if issue.kind == "course":
        course_id = issue.courseId if issue.courseId is not None else issue.contentId
        entry = catalog.get(course_id) if course_id is not None else None
        why = None
        if entry is None:
            why = f"unknown course {course_id}: no course events seen for it"
        elif entry.is_deleted:
            why = f"course {course_id} is deleted"
        elif entry.is_published is not True:
            why = f"course {course_id} is not published"
        else:
            assigned = entry.team_ids
            if not teams:
                teams = assigned
                if not teams:
                    why = f"no team: course {course_id} is assigned to no team"
                elif len(teams) > 1 and issue.reason != "request":
                    # eduMe's g is the team the learner joins by clicking: an assignment
                    # or reminder link must name one, not every team of the course.
                    named = ", ".join(map(str, teams))
                    article = "an" if issue.reason == "assignment" else "a"
                    why = (f"course {course_id} has several teams ({named}) and its policy "
                           f"names none: {article} {issue.reason} link puts the learner in one "
                           f"team. Name it: `edume-streams policy set {course_id} "
                           f"--team-id T` with T one of {named}")
            else:
                missing = [t for t in teams if t not in assigned]
                if missing:
                    why = (f"team {', '.join(map(str, missing))} is not assigned to course "
                           f"{course_id} (assigned: {', '.join(map(str, assigned)) or 'none'})")
        if why:
            return _reject(issue, cause_id, why)
    elif issue.kind != "knowledge-hub" and not teams:
        return _reject(issue, cause_id, f"no team: a {issue.kind} link needs teamIds")
    try:
        url = sign_link(
            build_link(issue.kind, base_url=base_url, external_user_id=issue.externalUserId,
                       content_id=issue.contentId, team_ids=teams),
            secret,
        )
    except LinkError as exc:
        return _reject(issue, cause_id, str(exc))
    kind = topics.LINK_ISSUED
    issued = LinkIssued(
        kind=issue.kind,
        url=url,
        externalUserId=issue.externalUserId,
        courseId=issue.courseId,
        teamId=teams[0] if teams and issue.kind != "knowledge-hub" else None,
        teamIds=teams if issue.kind != "knowledge-hub" else [],
        reason=issue.reason,
        issuedAt=issued_at,
        requestId=issue.causeEventId if issue.reason == "request" else None,
        note=note if issue.reason == "request" else None,
    )
    return Output(kind, issue.externalUserId, issued, derived_id(cause_id, kind, "issued"), kind)


def _reject(issue: LinkIssue, cause_id: str, reason: str) -> Output:
    return rejection(issue.externalUserId, issue.model_dump(mode="json"), reason, cause_id)


def record_issued(state: LinkState, output: Output, event_id: str) -> None:
    """Keep an issued link in the user's state (the query API lists them)."""
    value = output.value
    if isinstance(value, LinkIssued):
        state.links.append({
            "kind": value.kind, "reason": value.reason, "url": value.url,
            "issuedAt": value.issuedAt, "courseId": value.courseId,
            "contentId": _content_of(value.url, value.kind), "teamIds": value.teamIds,
            "eventId": event_id,
        })
        del state.links[:-MAX_LINKS_KEPT]
    else:
        state.rejected += 1


def _content_of(url: str, kind: str) -> int | None:
    if kind == "hub":
        return None
    path = url.split("?", 1)[0].rstrip("/")
    tail = path.rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else None


# ---------------------------------------------------- assignments and reminders


def _issue(learner: LearnerState, course_id: int, reason: str, cause_id: str,
           policies: PolicyBook) -> LinkIssue:
    """An assignment or reminder link: to the team the course's policy names, or (None)
    to the course's only team, which the link agent finds in the catalog."""
    policy = policies.get(course_id)
    team = None if policy is None else policy.team_id
    return LinkIssue(
        kind="course",
        externalUserId=str(learner.external_user_id),
        userId=learner.user_id,
        contentId=course_id,
        courseId=course_id,
        teamIds=None if team is None else [team],
        reason=reason,  # type: ignore[arg-type]
        causeEventId=cause_id,
    )


def _open_mandatory(
    learner: LearnerState, course_id: int, policies: PolicyBook, catalog: CatalogView
) -> bool:
    """Mandatory for the learner's group, not completed, and not a deleted course."""
    progress = learner.courses.get(course_id)
    if progress is not None and progress.completed is not None:
        return False
    if not policies.mandatory_for(course_id, learner.group):
        return False
    entry = catalog.get(course_id)
    return entry is None or not entry.is_deleted


def assignment_links(
    learner: LearnerState,
    assigned: Sequence[int],
    meta: Meta,
    policies: PolicyBook,
    catalog: CatalogView,
) -> list[Output]:
    """An issue-link event per course of ``assigned`` (an assignment event's courses) that is
    open and mandatory for the learner, once per course."""
    if learner.external_user_id is None:
        return []
    outputs = []
    for course_id in sorted(set(assigned)):
        if course_id in learner.linked or not _open_mandatory(learner, course_id, policies,
                                                              catalog):
            continue
        learner.linked.add(course_id)
        outputs.append(issue_output(
            _issue(learner, course_id, "assignment", meta.event_id, policies),
            f"assignment|{course_id}"))
    return outputs


def schedule_reminders(
    learner: LearnerState,
    meta: Meta,
    policies: PolicyBook,
    catalog: CatalogView,
    after_us: int,
) -> None:
    """Start a timer for every open mandatory course the learner is assigned or has started
    that has none yet (due ``after_us`` after this event's time), and cancel those whose
    course is completed."""
    for course_id in [c for c in learner.reminders if c in learner.completed_course_ids()]:
        del learner.reminders[course_id]
        learner.reminded.add(course_id)
    for course_id in sorted(learner.known_course_ids()):
        if course_id in learner.reminders or course_id in learner.reminded:
            continue
        if _open_mandatory(learner, course_id, policies, catalog):
            learner.reminders[course_id] = (meta.ts + after_us, meta.event_id)


def next_due(learner: LearnerState) -> int | None:
    """When the learner's next reminder is due (microseconds since the epoch), if any."""
    return min((due for due, _ in learner.reminders.values()), default=None)


def due_reminders(
    learner: LearnerState, now_us: int, policies: PolicyBook, catalog: CatalogView
) -> list[Output]:
    """Fire every reminder due by ``now_us``: an issue-link event for each course still open
    and mandatory (none for one completed, no longer mandatory or deleted meanwhile)."""
    outputs = []
    for course_id, (due, cause) in sorted(learner.reminders.items()):
        if due > now_us:
            continue
        del learner.reminders[course_id]
        learner.reminded.add(course_id)
        if learner.external_user_id is None or not _open_mandatory(
            learner, course_id, policies, catalog
        ):
            continue
        outputs.append(issue_output(_issue(learner, course_id, "reminder", cause, policies),
                                    f"reminder|{course_id}"))
    return outputs
