"""Values of the topics edume-streams produces (besides the webhooks it forwards as received).

Each model is the contract of one topic's value: the workers build their records from
these models, and ``edume-streams schemas`` writes their JSON Schemas for platform teams.
Unlike the webhook models, these are closed where edume-streams writes them (a producer's
bug is a test failure, not a silent extra field) and strict (ids are JSON integers).
``training.policies``, ``catalog.imports`` and ``links.requests`` are written by people and
other programs: their models ignore unknown fields so that a newer writer does not break an
older worker.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from schemas.common import MAX_EXTERNAL_ID, ExternalId, Id


class _Produced(BaseModel):
    """A value edume-streams writes: strict, closed, immutable."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class _Accepted(BaseModel):
    """A value others write and edume-streams reads: strict ids, unknown fields ignored."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class TrainingPolicy(_Accepted):
    """``training.policies``, keyed by courseId: whether a course is mandatory, and for whom.

    A null record value (a tombstone) removes the course's policy; the topic is compacted,
    so the latest value per course is the policy.
    """

    courseId: Id
    mandatory: StrictBool
    groupIds: list[Id] | None = Field(
        description="the groups the course is mandatory for; null means every group"
    )
    teamId: Id | None = Field(
        default=None,
        description="the team assignment and reminder links put the learner in (eduMe's "
                    "g: the team the learner joins by clicking); null: the course's only "
                    "team")


class CatalogImport(_Accepted):
    """``catalog.imports`` (compacted), keyed by courseId: a course that existed before the
    webhooks were turned on, as ``edume-streams catalog import`` read it from a file. The
    catalog folds it as a course event stamped ``importedAt`` that lists all the course's
    teams: a later eduMe event wins over it, an earlier one loses, and at the same instant
    every eduMe event wins."""

    CANONICAL_TYPE: ClassVar[str] = "catalog.import"

    courseId: Id
    courseKey: str | None = Field(
        description="eduMe's key of the course, as course webhooks carry it; null: not known "
                    "(the catalog keeps what the course's events say)")
    groupId: Id = Field(description="the group the course is in")
    teamIds: list[Id] = Field(description="every team the course is assigned to")
    moduleIds: list[Id] | None = Field(
        description="the course's modules, in order; null: not known (the catalog keeps what "
                    "the course's events say)")
    published: StrictBool
    deleted: StrictBool = Field(description="true: the course is deleted, for good")
    importedAt: str = Field(
        description="the time the file describes the courses at (RFC 3339 UTC): the import's "
                    "place among the course's eduMe events")


class Erasure(_Accepted):
    """``privacy.erasures`` (compacted), keyed ``user/{userId}`` or
    ``external/{externalUserId}``: a learner to erase. The workers drop what they keep about
    the learner and ignore the learner's events stamped before ``requestedAt``."""

    userId: Id | None = Field(default=None, description="the learner's eduMe userId")
    externalUserId: ExternalId | None = Field(
        default=None, description="the learner's external user id (eduMe's eId)")
    requestedAt: str = Field(description="when the erasure was asked for (RFC 3339 UTC)")

    @model_validator(mode="after")
    def _one_subject(self) -> Erasure:
        if (self.userId is None) == (self.externalUserId is None):
            raise ValueError("name the learner by exactly one of userId and externalUserId")
        return self


class TrainingEvidence(_Produced):
    """``training.evidence`` (compacted), keyed ``{userId}/{courseId}``: the proof of a course
    completion, the eduMe event that completed the course exactly as it was published."""

    userId: Id
    courseId: Id
    completedAt: str = Field(description="when the course was completed, as eduMe sent it")
    eventId: str = Field(pattern="^[0-9a-f]{64}$",
                         description="the completing event's edume-event-id")
    event: str = Field(description="the completing event's exact published value (its "
                                   "JSON.stringify form, the bytes eduMe signed)")
    signature: str | None = Field(
        pattern="^[0-9a-f]{64}$",
        description="the HMAC-SHA256 the ingress verified, lowercase hex; null: the event was "
                    "authenticated by a bearer token, not signed")
    receivedAt: str | None = Field(description="when the ingress received it (RFC 3339 UTC)")
    topic: str = Field(description="where the event is: topic, partition, offset")
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)


class MandatoryCompleted(_Produced):
    """``training.mandatory.completed``, keyed by userId: a learner completed a course that is
    mandatory for their group. One per learner and course."""

    userId: Id = Field(description="eduMe userId")
    externalUserId: ExternalId | None = Field(
        description="eduMe's eId for the learner; null if no event with it was seen yet"
    )
    groupId: Id | None = Field(description="the learner's group")
    courseId: Id
    courseKey: str | None = Field(description="from the detailed completion or the catalog")
    completedAt: str = Field(description="when the course was completed, as eduMe sent it")
    allMandatoryComplete: StrictBool = Field(
        description="true when no assigned mandatory course is left for this learner"
    )
    remainingCourseIds: list[Id] = Field(
        description="the learner's assigned mandatory courses not completed yet (ascending)"
    )


LinkKind = Literal["course", "module", "lesson", "survey", "guide", "hub", "knowledge-hub"]
LinkReason = Literal["request", "assignment", "reminder"]


class LinkRequest(_Accepted):
    """``links.requests``, keyed by externalUserId: a downstream app asks for a link.

    ``kind`` is a string, not the closed list of kinds: an unknown kind is answered on
    ``links.rejected`` with a reason, not dropped as unreadable.
    """

    kind: str
    externalUserId: str = Field(
        min_length=1, max_length=MAX_EXTERNAL_ID,
        description=f"the learner's id in the downstream app, at most {MAX_EXTERNAL_ID} "
                    "characters",
    )
    contentId: Id | None = None
    courseId: Id | None = Field(default=None, description="course links: alias of contentId")
    teamIds: list[Id] | None = None
    teamId: Id | None = None
    reason: str | None = None


class LinkIssue(_Produced):
    """``links.issue``, keyed by externalUserId: a link the link agent is to sign and issue."""

    kind: LinkKind
    externalUserId: ExternalId
    userId: Id | None = Field(default=None, description="eduMe userId, when known")
    contentId: Id | None
    courseId: Id | None
    teamIds: list[Id] | None = Field(description="null: course links take the catalog's teams")
    reason: LinkReason
    causeEventId: str = Field(pattern="^[0-9a-f]{64}$")


class LinkIssued(_Produced):
    """``links.issued``, keyed by externalUserId: a signed eduMe seamless link."""

    kind: LinkKind
    url: str = Field(description="the seamless link, signed (ends with &sig=<hex HMAC>)")
    externalUserId: ExternalId
    courseId: Id | None
    teamId: Id | None = Field(description="the link's team; the first one when it has several")
    teamIds: list[Id] = Field(description="every team the link names (its g parameter)")
    reason: LinkReason
    issuedAt: str = Field(description="RFC 3339 UTC")
    requestId: str | None = Field(
        description="for a link a request asked for: the request's edume-event-id (or the "
                    "SHA-256 of its value when it had none); null for assignment and "
                    "reminder links")
    note: str | None = Field(
        description="the request's own reason text, as it was sent; null when it had none")


class LinkRejected(_Produced):
    """``links.rejected``, keyed by externalUserId: a request that cannot be honoured."""

    request: dict[str, object] = Field(description="the request as it was received")
    reason: str = Field(description="why, in words a person can act on")
