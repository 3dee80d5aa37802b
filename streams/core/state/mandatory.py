"""Mandatory training: the may-proceed gate and the ``training.mandatory.completed`` events.

A learner's mandatory courses are the courses they were assigned (or have progress in)
that a policy makes mandatory for their group, leaving out courses the catalog says are
deleted (nobody can complete those any more). The gate is computed when asked, from the
current policies, so a policy change applies to every learner at once.

A completion event is decided when a learner's completions or group change: each
completed course not yet announced that is mandatory for the learner's group then is
announced once, and remembered in ``LearnerState.emitted``. A policy made mandatory after
a learner completed the course shows in the gate at once, and its event follows from the
policy (``announce_for_policies``): the workers look through the learners they own when
the policy arrives, and again after every rebalance, for completed courses that are
mandatory now and not announced yet. Such an event's id derives from the policy record
(course, timestamp, partition, offset), the same on every worker and every reading.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from schemas.outputs import MandatoryCompleted
from streams.core import topics
from streams.core.state.catalog import CatalogView, CourseEntry
from streams.core.state.common import Meta, Output, derived_id
from streams.core.state.links import assignment_links, schedule_reminders
from streams.core.state.policies import PolicyBook, RecordVersion
from streams.core.state.progress import LearnerEvent, LearnerState, apply_learner_event


@dataclass(frozen=True, slots=True)
class Gate:
    """May this learner proceed: every assigned mandatory course completed."""

    user_id: int
    completed_course_ids: list[int]
    remaining_course_ids: list[int]

    @property
    def complete(self) -> bool:
        return not self.remaining_course_ids

    def view(self) -> dict[str, Any]:
        return {
            "userId": self.user_id,
            "complete": self.complete,
            "completedCourseIds": self.completed_course_ids,
            "remainingCourseIds": self.remaining_course_ids,
        }


def gate(learner: LearnerState, policies: PolicyBook, catalog: CatalogView) -> Gate:
    """The learner's mandatory courses, completed and remaining, as of now."""
    mandatory = policies.mandatory_among(learner.known_course_ids(), learner.group)
    completed = mandatory & learner.completed_course_ids()
    remaining = {c for c in mandatory - completed if not _deleted(catalog, c)}
    return Gate(learner.user_id, sorted(completed), sorted(remaining))


def _deleted(catalog: CatalogView, course_id: int) -> bool:
    entry = catalog.get(course_id)
    return entry is not None and entry.is_deleted


def learner_step(
    learner: LearnerState,
    event: LearnerEvent,
    meta: Meta,
    policies: PolicyBook,
    catalog: CatalogView,
    *,
    links: bool = False,
    reminder_after_us: int = 72 * 3600 * 1_000_000,
) -> list[Output]:
    """Apply one learner event and decide the records it causes (none for a repeat): the
    mandatory completions and, with ``links``, the assignment links and reminder timers."""
    completed_before = learner.completed_course_ids()
    group_before = learner.group
    if not apply_learner_event(learner, event, meta):
        return []
    outputs: list[Output] = []
    completed = learner.completed_course_ids()
    if completed != completed_before or learner.group != group_before:
        outputs += announce_completions(learner, completed - learner.emitted, policies,
                                        catalog, meta.event_id)
    if links:
        assigned = getattr(event.payload, "courses", None)
        if assigned is not None:  # learner.added / learner.activated
            outputs += assignment_links(learner, [c.courseId for c in assigned], meta,
                                        policies, catalog)
        schedule_reminders(learner, meta, policies, catalog, reminder_after_us)
    return outputs


def announce_completions(
    learner: LearnerState,
    candidates: Iterable[int],
    policies: PolicyBook,
    catalog: CatalogView,
    cause_id: str,
) -> list[Output]:
    """One ``training.mandatory.completed`` per candidate course that is completed and
    mandatory for the learner's group and not announced before; marks them announced.
    ``cause_id``: the id of what caused them (an event's, or a policy record's)."""
    outputs: list[Output] = []
    group = learner.group
    for course_id in sorted(candidates):
        progress = learner.courses.get(course_id)
        if course_id in learner.emitted or progress is None or progress.completed is None:
            continue
        if not policies.mandatory_for(course_id, group):
            continue
        learner.emitted.add(course_id)
        remaining = gate(learner, policies, catalog).remaining_course_ids
        value = MandatoryCompleted(
            userId=learner.user_id,
            externalUserId=learner.external_user_id,
            groupId=group,
            courseId=course_id,
            courseKey=_course_key(progress.detail.value if progress.detail else None,
                                  catalog.get(course_id)),
            completedAt=str(progress.completed.value["at"]),
            allMandatoryComplete=not remaining,
            remainingCourseIds=remaining,
        )
        kind = topics.MANDATORY_COMPLETED
        outputs.append(
            Output(
                kind,
                str(learner.user_id),
                value,
                derived_id(cause_id, kind, str(course_id)),
                kind,
            )
        )
    return outputs


def policy_cause_id(course_id: int, version: RecordVersion) -> str:
    """The id of the policy record in force for a course (its place on
    ``training.policies``): the cause of the completions it announces."""
    timestamp_ms, partition, offset = version
    text = f"{topics.TRAINING_POLICIES}|{course_id}|{timestamp_ms}|{partition}|{offset}"
    return hashlib.sha256(text.encode()).hexdigest()


def pending_announcements(learner: LearnerState, policies: PolicyBook) -> set[int]:
    """The courses the learner completed that are mandatory for their group now and have
    not been announced."""
    candidates = learner.completed_course_ids() - learner.emitted
    return {c for c in candidates if policies.mandatory_for(c, learner.group)}


def announce_for_policies(
    learner: LearnerState,
    policies: PolicyBook,
    catalog: CatalogView,
    courses: Iterable[int] | None = None,
) -> list[Output]:
    """The completions the policies in force call for and no event announced (a policy made
    mandatory, or widened to the learner's group, after the learner completed the course),
    each caused by its course's policy record; ``courses``: only these."""
    pending = pending_announcements(learner, policies)
    if courses is not None:
        pending &= set(courses)
    outputs: list[Output] = []
    for course_id in sorted(pending):
        version = policies.version(course_id)
        if version is not None:
            outputs += announce_completions(learner, [course_id], policies, catalog,
                                            policy_cause_id(course_id, version))
    return outputs


def _course_key(detail: dict[str, Any] | None, entry: CourseEntry | None) -> str | None:
    if detail is not None and detail.get("courseKey"):
        return str(detail["courseKey"])
    if entry is not None and entry.course_key is not None:
        return str(entry.course_key.value)
    return None
