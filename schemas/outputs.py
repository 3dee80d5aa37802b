"""Values of the topics edume-streams produces (besides the webhooks it forwards as received).

Each model is the contract of one topic's value: the workers build their records from
these models, and ``edume-streams schemas`` writes their JSON Schemas for platform teams.
Unlike the webhook models, these are closed where edume-streams writes them (a producer's
bug is a test failure, not a silent extra field) and strict (ids are JSON integers).
``training.policies`` and ``links.requests`` are written by people and other programs:
their models ignore unknown fields so that a newer writer does not break an older worker.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

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


class LinkRejected(_Produced):
    """``links.rejected``, keyed by externalUserId: a request that cannot be honoured."""

    request: dict[str, object] = Field(description="the request as it was received")
    reason: str = Field(description="why, in words a person can act on")
