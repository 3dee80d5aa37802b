"""Course-level webhooks (topic ``edume.course.events``, keyed by ``payload.course.courseId``)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from schemas.common import EdumeModel, Family, Group, Id, Module, Team, Version, WebhookBase


class CourseInfo(EdumeModel):
    """Course reference of course events: courseKey is here because the catalog needs it."""

    courseId: Id
    courseKey: str


class CoursePayload(EdumeModel):
    """The one payload shape every course event shares; the catalog is rebuilt from it."""

    group: Group
    teams: list[Team]
    course: CourseInfo
    modules: list[Module]
    version: Version


class _CourseEvent(WebhookBase):
    """Routing shared by all course events: one partition per course keeps its history ordered."""

    FAMILY: ClassVar[Family] = "course"

    payload: CoursePayload

    @property
    def routing_id(self) -> int:
        """``payload.course.courseId``, the key on ``edume.course.events``."""
        return self.payload.course.courseId


class CourseAdded(_CourseEvent):
    """A new course: creates the catalog entry."""

    CANONICAL_TYPE: ClassVar[str] = "course.added"
    type: Literal["course.added"]


class CourseDeleted(_CourseEvent):
    """A deleted course: link requests for it must be rejected."""

    CANONICAL_TYPE: ClassVar[str] = "course.deleted"
    type: Literal["course.deleted"]


class CoursePublished(_CourseEvent):
    """A published course: learners can be linked to it from now on."""

    CANONICAL_TYPE: ClassVar[str] = "course.published"
    type: Literal["course.published"]


class CourseUnpublished(_CourseEvent):
    """An unpublished course: links to it stop being issued."""

    CANONICAL_TYPE: ClassVar[str] = "course.unpublished"
    type: Literal["course.unpublished"]


class TitleChangedPayload(CoursePayload):
    """course.updated for a new title: only the change time is tracked (the title is not sent)."""

    type: Literal["title.changed"]


class TeamAssignedPayload(CoursePayload):
    """course.updated because a team was assigned: new assignments trigger link issuing."""

    type: Literal["team.assigned"]


class TeamRemovedPayload(CoursePayload):
    """course.updated because a team was unassigned: the catalog's team list shrinks."""

    type: Literal["team.removed"]


CourseUpdatedPayload = Annotated[
    TitleChangedPayload | TeamAssignedPayload | TeamRemovedPayload,
    Field(discriminator="type"),
]


class CourseUpdated(_CourseEvent):
    """One top-level type with three meanings, so the payload is a second discriminated union."""

    CANONICAL_TYPE: ClassVar[str] = "course.updated"
    type: Literal["course.updated"]
    payload: CourseUpdatedPayload

