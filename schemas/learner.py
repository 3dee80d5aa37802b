"""Learner-level webhooks (topic ``edume.learner.events``, keyed by ``payload.user.userId``).

The in-course and standalone surveys share ``payload.type == "survey"``; the doc
says standalone ones are "identical ... except for the missing course and module
properties". They are split by a callable discriminator on key presence: any of
``course``/``module`` present means in-course, which then requires both, so a
survey with only one of them is a schema mismatch rather than a silent standalone.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import ConfigDict, Discriminator, Field, Tag

from schemas.common import (
    CourseRef,
    EdumeModel,
    ExternalId,
    Family,
    Group,
    Id,
    Identifier,
    Module,
    Version,
    WebhookBase,
)


class LearnerUser(EdumeModel):
    """The learner as learner events send it: userId is the partition key, eId eduMe's own UUID."""

    eId: ExternalId
    userId: Id
    identifiers: list[Identifier]


class LessonRef(EdumeModel):
    """Lesson reference; lesson progress is counted per lessonId."""

    lessonId: Id


class AssessmentRef(EdumeModel):
    """Assessment reference; assessment progress is counted per assessmentId."""

    assessmentId: Id


class Survey(EdumeModel):
    """A survey result.

    ``type`` and ``status`` are plain strings, not Literals: the documented values
    (enpsScore/freeText/multipleChoice, dismissed/completed) are eduMe's current set,
    and a new question type or status would otherwise dead-letter the learner's
    progress event even though nothing downstream routes on these values.
    """

    surveyId: Id
    type: str = Field(examples=["enpsScore", "freeText", "multipleChoice"])
    status: str = Field(examples=["dismissed", "completed"])


class _UserPayload(EdumeModel):
    """Any learner-event payload: all of them carry the user the event is keyed by."""

    user: LearnerUser


class LearnerPayload(_UserPayload):
    """learner.added/activated payload: the courses list is what the learner is enrolled in."""

    group: Group
    courses: list[CourseRef]
    version: Version


class _ActivityPayload(_UserPayload):
    """What every activity payload has; subclasses add the activity they are about."""

    type: str
    group: Group
    version: Version


class CourseActivity(_ActivityPayload):
    """Course started/finished: high-level course progress (details come with the completion)."""

    type: Literal["course"]
    course: CourseRef


class LessonActivity(_ActivityPayload):
    """Lesson started/finished inside a course module."""

    type: Literal["lesson"]
    course: CourseRef
    module: Module
    lesson: LessonRef


class AssessmentActivity(_ActivityPayload):
    """Assessment started/finished; the doc gives one schema for both event types."""

    type: Literal["assessment"]
    course: CourseRef
    module: Module
    assessment: AssessmentRef


class InCourseSurveyActivity(_ActivityPayload):
    """Survey finished inside a course: both course and module are required."""

    type: Literal["survey"]
    course: CourseRef
    module: Module
    survey: Survey


class StandaloneSurveyActivity(_ActivityPayload):
    """Survey finished outside any course: no course, no module."""

    # Validation never sees course/module here (the discriminator routes those to
    # the in-course model); the JSON Schema needs the exclusion spelt out so that
    # its oneOf has exactly one match for an in-course survey.
    model_config = ConfigDict(
        json_schema_extra={"not": {"anyOf": [{"required": ["course"]}, {"required": ["module"]}]}},
    )

    type: Literal["survey"]
    survey: Survey


def _survey_kind(value: Any) -> str | None:
    """Tag a survey payload: ``in-course`` if it has a course or module key, else ``standalone``."""
    if isinstance(value, dict):
        return "in-course" if "course" in value or "module" in value else "standalone"
    if isinstance(value, InCourseSurveyActivity):
        return "in-course"
    if isinstance(value, StandaloneSurveyActivity):
        return "standalone"
    return None


SurveyActivity = Annotated[
    Annotated[InCourseSurveyActivity, Tag("in-course")]
    | Annotated[StandaloneSurveyActivity, Tag("standalone")],
    Discriminator(_survey_kind),
]

StartedPayload = Annotated[
    CourseActivity | LessonActivity | AssessmentActivity,
    Field(discriminator="type"),
]
FinishedPayload = Annotated[
    CourseActivity | LessonActivity | AssessmentActivity | SurveyActivity,
    Field(discriminator="type"),
]


class _LearnerEvent(WebhookBase):
    """Routing shared by learner events: one partition per learner keeps their progress ordered."""

    FAMILY: ClassVar[Family] = "learner"

    payload: _UserPayload

    @property
    def routing_id(self) -> int:
        """``payload.user.userId``, the key on ``edume.learner.events``."""
        return self.payload.user.userId


class LearnerAdded(_LearnerEvent):
    """A learner added to courses: starts their progress record."""

    CANONICAL_TYPE: ClassVar[str] = "learner.added"
    type: Literal["learner.added"]
    payload: LearnerPayload


class LearnerActivated(_LearnerEvent):
    """A learner activated their account: recorded, not acted on."""

    CANONICAL_TYPE: ClassVar[str] = "learner.activated"
    type: Literal["learner.activated"]
    payload: LearnerPayload


class LearnerActivityStarted(_LearnerEvent):
    """Activity started; discriminated on payload.type (no surveys: they only finish)."""

    CANONICAL_TYPE: ClassVar[str] = "learner.activity.started"
    type: Literal["learner.activity.started"]
    payload: StartedPayload


class LearnerActivityFinished(_LearnerEvent):
    """Activity finished; payload.type picks the branch, surveys split again on course/module."""

    CANONICAL_TYPE: ClassVar[str] = "learner.activity.finished"
    type: Literal["learner.activity.finished"]
    payload: FinishedPayload
