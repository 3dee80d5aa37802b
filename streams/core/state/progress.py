"""Learner progress: one state per eduMe user, folded from ``edume.learner.events``.

Per learner: the external id eduMe calls ``eId``, identifiers, group, activation, the
courses they were assigned (``learner.added`` / ``learner.activated`` list them), and per
course what they started and finished, their survey answers, the detailed completion's
scores and when the course was completed.

A course is completed by ``learner.activity.finished`` with ``payload.type = "course"`` or by
the detailed completion (``learner.course.completed`` and its two other spellings),
whichever is earlier in timestamp order: ``completed`` keeps the earliest completion
event. Its ``completedAt`` is the detailed completion's ``courseCompletionDate``, or the
activity event's ``timestamp``. Scores and duration come from the latest detailed
completion.

Readings of eduMe's document, each pinned by a test:
- Assigned courses accumulate: no event unassigns a course, and a ``learner.activated``
  listing fewer courses than ``learner.added`` did is not read as a removal.
- The learner's group is the latest learner event's ``group.groupId``. The detailed
  completion has no learner group, only ``parentGroup`` (the group the course sits in);
  it is kept apart and used only while no learner event has said the group.
- Identifiers merge by ``key`` (the latest event's value per key); an event that lists
  none removes none.
- The detailed completion carries no ``eId``: the external id comes from the other events.
- Events of one timestamp are ordered by their meaning (``RANK``): added, activated,
  started, finished, the detailed completion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from schemas import (
    LearnerActivated,
    LearnerActivityFinished,
    LearnerActivityStarted,
    LearnerAdded,
    LearnerCourseCompleted,
)
from schemas.learner import (
    AssessmentActivity,
    CourseActivity,
    InCourseSurveyActivity,
    LessonActivity,
    StandaloneSurveyActivity,
)
from streams.core.state.common import Applied, Meta, Stamped, earlier, later, stamp

LearnerEvent = (
    LearnerAdded
    | LearnerActivated
    | LearnerActivityStarted
    | LearnerActivityFinished
    | LearnerCourseCompleted
)

RANK: dict[type[Any], int] = {
    LearnerAdded: 0,
    LearnerActivated: 1,
    LearnerActivityStarted: 2,
    LearnerActivityFinished: 3,
    LearnerCourseCompleted: 4,
}
"""The order of a learner's events of one timestamp: the order of a learner's progress."""

ASSIGNED, IN_PROGRESS, COMPLETED = "assigned", "in_progress", "completed"


@dataclass(slots=True)
class CourseProgress:
    """One learner in one course."""

    started: Stamped | None = None
    """The earliest course start (value: its timestamp as sent)."""
    lessons_started: set[int] = field(default_factory=set)
    lessons_finished: set[int] = field(default_factory=set)
    assessments_started: set[int] = field(default_factory=set)
    assessments_finished: set[int] = field(default_factory=set)
    surveys: dict[int, Stamped] = field(default_factory=dict)
    """surveyId -> the latest answer ({"type", "status", "moduleId", "at"})."""
    completed: Stamped | None = None
    """The earliest completion event (value: {"at", "via": "activity" | "detail"})."""
    detail: Stamped | None = None
    """The latest detailed completion's figures (scores, duration, start date, courseKey)."""

    @property
    def status(self) -> str:
        if self.completed is not None:
            return COMPLETED
        if (
            self.started is not None
            or self.lessons_started
            or self.lessons_finished
            or self.assessments_started
            or self.assessments_finished
            or self.surveys
            or self.detail is not None
        ):
            return IN_PROGRESS
        return ASSIGNED

    @property
    def completed_at(self) -> str | None:
        return None if self.completed is None else str(self.completed.value["at"])

    def view(self, course_id: int, assigned: bool) -> dict[str, Any]:
        detail = self.detail.value if self.detail else {}
        return {
            "courseId": course_id,
            "assigned": assigned,
            "status": self.status,
            "startedAt": self.started.value if self.started else None,
            "lessonsStarted": sorted(self.lessons_started),
            "lessonsFinished": sorted(self.lessons_finished),
            "assessmentsStarted": sorted(self.assessments_started),
            "assessmentsFinished": sorted(self.assessments_finished),
            "surveys": _surveys_view(self.surveys),
            "completedAt": self.completed_at,
            "completedBy": self.completed.value["via"] if self.completed else None,
            "scores": detail.get("scores"),
            "durationSeconds": detail.get("durationSeconds"),
        }


_EMPTY_COURSE = CourseProgress()


@dataclass(slots=True)
class LearnerState:
    """One learner as their events describe them."""

    user_id: int
    external_id: Stamped | None = None
    identifiers: dict[str, Stamped] = field(default_factory=dict)
    group_id: Stamped | None = None
    course_group_id: Stamped | None = None
    """parentGroup.id of the latest detailed completion: the group only while no learner
    event has said it."""
    added: Stamped | None = None
    activated: Stamped | None = None
    assigned: set[int] = field(default_factory=set)
    courses: dict[int, CourseProgress] = field(default_factory=dict)
    surveys: dict[int, Stamped] = field(default_factory=dict)
    """Standalone surveys (outside any course): surveyId -> the latest answer."""
    last_event: Stamped | None = None
    applied: Applied = field(default_factory=Applied)
    emitted: set[int] = field(default_factory=set)
    """Courses whose mandatory completion was emitted. Not a function of the learner's
    events alone (it depends on the policies when the completion was applied), so it is
    kept apart from everything above."""
    linked: set[int] = field(default_factory=set)
    """Mandatory courses an assignment link was asked for (once per course)."""
    reminders: dict[int, tuple[int, str]] = field(default_factory=dict)
    """Pending reminders: courseId -> (due, in microseconds since the epoch; the id of the
    event that started the timer). Like ``emitted``, these depend on the policies."""
    reminded: set[int] = field(default_factory=set)
    """Courses whose reminder fired (or was cancelled): never scheduled again."""

    @property
    def group(self) -> int | None:
        register = self.group_id or self.course_group_id
        return None if register is None else int(register.value)

    @property
    def external_user_id(self) -> str | None:
        return None if self.external_id is None else str(self.external_id.value)

    def course(self, course_id: int) -> CourseProgress:
        progress = self.courses.get(course_id)
        if progress is None:
            progress = self.courses[course_id] = CourseProgress()
        return progress

    def completed_course_ids(self) -> set[int]:
        return {c for c, p in self.courses.items() if p.completed is not None}

    def known_course_ids(self) -> set[int]:
        """Courses the learner was assigned or has any progress in."""
        return self.assigned | self.courses.keys()

    def view(self) -> dict[str, Any]:
        """The learner as the query API answers it."""
        return {
            "userId": self.user_id,
            "externalUserId": self.external_user_id,
            "groupId": self.group,
            "identifiers": [self.identifiers[k].value for k in sorted(self.identifiers)],
            "addedAt": self.added.value if self.added else None,
            "activated": self.activated is not None,
            "activatedAt": self.activated.value if self.activated else None,
            "assignedCourseIds": sorted(self.assigned),
            "courses": [
                self.courses.get(c, _EMPTY_COURSE).view(c, c in self.assigned)
                for c in sorted(self.known_course_ids())
            ],
            "surveys": _surveys_view(self.surveys),
            "lastEventAt": self.last_event.value if self.last_event else None,
            "eventsApplied": self.applied.count,
        }


def _surveys_view(surveys: dict[int, Stamped]) -> list[dict[str, Any]]:
    return [{"surveyId": s, **surveys[s].value} for s in sorted(surveys)]


def completed_course_of(event: LearnerEvent) -> int | None:
    """The course an event can complete (a detailed completion, or a course's activity
    finished), or None."""
    if isinstance(event, LearnerCourseCompleted):
        return event.payload.course.id
    if isinstance(event, LearnerActivityFinished) and isinstance(event.payload, CourseActivity):
        return event.payload.course.courseId
    return None


def apply_learner_event(state: LearnerState, event: LearnerEvent, meta: Meta) -> bool:
    """Fold one learner event into ``state``; False (and nothing changes) for a repeat."""
    if state.applied.seen(meta.event_id, meta.short):
        return False
    meta = meta.versioned(RANK[type(event)])
    state.applied.note(meta.event_id, meta.short)
    state.last_event = later(state.last_event, stamp(meta, meta.timestamp))
    if isinstance(event, LearnerCourseCompleted):
        _apply_completion(state, event, meta)
        return True
    payload = event.payload
    user = payload.user
    state.external_id = later(state.external_id, stamp(meta, user.eId))
    state.group_id = later(state.group_id, stamp(meta, payload.group.groupId))
    _merge_identifiers(state, [i.model_dump(exclude_none=True) for i in user.identifiers], meta)
    if isinstance(event, LearnerAdded | LearnerActivated):
        state.assigned.update(c.courseId for c in event.payload.courses)
        if isinstance(event, LearnerAdded):
            state.added = earlier(state.added, stamp(meta, meta.timestamp))
        else:
            state.activated = earlier(state.activated, stamp(meta, meta.timestamp))
        return True
    started = isinstance(event, LearnerActivityStarted)
    activity = event.payload
    if isinstance(activity, StandaloneSurveyActivity):
        _answer(state.surveys, activity, None, meta)
        return True
    progress = state.course(activity.course.courseId)
    if isinstance(activity, CourseActivity):
        if started:
            progress.started = earlier(progress.started, stamp(meta, meta.timestamp))
        else:
            completion = stamp(meta, {"at": meta.timestamp, "via": "activity"})
            progress.completed = earlier(progress.completed, completion)
    elif isinstance(activity, LessonActivity):
        lessons = progress.lessons_started if started else progress.lessons_finished
        lessons.add(activity.lesson.lessonId)
    elif isinstance(activity, AssessmentActivity):
        done = progress.assessments_started if started else progress.assessments_finished
        done.add(activity.assessment.assessmentId)
    elif isinstance(activity, InCourseSurveyActivity):
        _answer(progress.surveys, activity, activity.module.moduleId, meta)
    return True


def _apply_completion(state: LearnerState, event: LearnerCourseCompleted, meta: Meta) -> None:
    payload = event.payload
    if payload.user.identifiers:
        identifiers = [i.model_dump(exclude_none=True) for i in payload.user.identifiers]
        _merge_identifiers(state, identifiers, meta)
    if payload.parentGroup is not None:
        state.course_group_id = later(state.course_group_id, stamp(meta, payload.parentGroup.id))
    progress = state.course(payload.course.id)
    done = payload.completion
    at = done.courseCompletionDate
    progress.completed = earlier(progress.completed, stamp(meta, {"at": at, "via": "detail"}))
    scores = {
        "overallAssessmentScore": done.overallAssessmentScore,
        "overallLessonScore": done.overallLessonScore,
        "breakdown": [s.model_dump(exclude_none=True) for s in done.scoresBreakdown or ()],
    }
    figures = {
        "courseKey": payload.course.courseKey,
        "scores": scores,
        "durationSeconds": done.courseCompletionDurationInSeconds,
        "courseStartDate": done.courseStartDate,
    }
    progress.detail = later(progress.detail, stamp(meta, figures))


def _merge_identifiers(state: LearnerState, identifiers: list[dict[str, Any]], meta: Meta) -> None:
    for identifier in identifiers:
        key = identifier["key"]
        state.identifiers[key] = later(state.identifiers.get(key), stamp(meta, identifier))


def _answer(
    surveys: dict[int, Stamped],
    activity: InCourseSurveyActivity | StandaloneSurveyActivity,
    module_id: int | None,
    meta: Meta,
) -> None:
    survey = activity.survey
    answer: dict[str, Any] = {"type": survey.type, "status": survey.status, "at": meta.timestamp}
    if module_id is not None:
        answer["moduleId"] = module_id
    surveys[survey.surveyId] = later(surveys.get(survey.surveyId), stamp(meta, answer))
