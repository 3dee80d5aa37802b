"""The detailed course completion (``learner.course.completed``), on ``edume.learner.events``.

eduMe spells its type three ways (``course.complete`` in the JSON schema,
``course.completed`` in the sample, ``learner.course.completed`` in the event
table); all three are accepted and the canonical name is the table's, because it
is the one that follows the family prefix of every other learner event.

Only what downstream needs is required: ``payload.user.id`` (the key; this payload
has ``id``, not ``userId``), ``payload.course.id`` and ``courseKey`` and
``payload.completion.courseCompletionDate``. A few more fields that consumers use
(external ids, group, scores, start date) are optional and typed when present;
the rest of this ~80-field object (profile flags, names, e-mail, and every field
the document types as ``any``) is not modelled, so it is tolerated with any value
and costs nothing to validate (each modelled field costs time on every request).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from schemas.common import EdumeModel, Family, Id, Identifier, WebhookBase

CompletionType = Literal["learner.course.completed", "course.completed", "course.complete"]


class CompletionUser(EdumeModel):
    """eduMe's user record: ``id`` is the number learner events call ``userId``."""

    id: Id
    employeeId: str | None = None
    identifiers: list[Identifier] | None = None


class CompletionCourse(EdumeModel):
    """The course record; ``id`` is the courseId used by every other event."""

    id: Id
    courseKey: str
    title: str | None = None


class CompletionParentGroup(EdumeModel):
    """The course's group: optional, as dead-lettering a completion would block its learner."""

    id: Id


class ScoreBreakdown(EdumeModel):
    """Per-activity score; ``score`` is absent for activities without a quiz (doc: ``score?``)."""

    id: Id
    activityKey: str
    type: str
    score: float | None = None


class Completion(EdumeModel):
    """The completion; only its date is required: it is mandatory training's completedAt."""

    courseCompletionDate: str
    courseStartDate: str | None = None
    overallAssessmentScore: float | None = None
    overallLessonScore: float | None = None
    scoresBreakdown: list[ScoreBreakdown] | None = None
    courseCompletionDurationInSeconds: float | None = None


class CompletionPayload(EdumeModel):
    """Completion payload: unlike other learner events it has no ``version`` and no ``type``."""

    user: CompletionUser
    course: CompletionCourse
    parentGroup: CompletionParentGroup | None = None
    completion: Completion


class LearnerCourseCompleted(WebhookBase):
    """Detailed course completion: drives mandatory-training tracking, so it is read tolerantly."""

    FAMILY: ClassVar[Family] = "learner"
    CANONICAL_TYPE: ClassVar[str] = "learner.course.completed"

    type: CompletionType
    payload: CompletionPayload

    @property
    def routing_id(self) -> int:
        """``payload.user.id``, the key on ``edume.learner.events``."""
        return self.payload.user.id
