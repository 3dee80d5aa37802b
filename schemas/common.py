"""Building blocks shared by the course, learner and completion webhook models.

Every model here is strict (a JSON string ``"22299"``, a bool or a float is not an
id) and ignores unknown keys (eduMe adds fields without notice; the published value
is the object as received, so nothing is lost by not modelling a field).
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

Family = Literal["course", "learner"]

MAX_ID: Final = 2**53 - 1
"""The largest id JavaScript holds exactly (``Number.MAX_SAFE_INTEGER``). A larger one would be
rounded in a record's JSON.stringify value but not in its key, so two learners or courses
could become one."""

#: eduMe ids: JSON integers from 1 to ``MAX_ID`` ("1", true, 1.5, 0 and 2**53 are mismatches,
#: even outside a strict model).
Id = Annotated[StrictInt, Field(ge=1, le=MAX_ID)]

MAX_EXTERNAL_ID: Final = 256
"""Characters at most of an external user id (eduMe's ``eId``, a link request's
``externalUserId``): a UUID has 36, an e-mail address at most 254. It is a Kafka key and a
table key, so its length is bounded."""

#: An external user id as a key: at most ``MAX_EXTERNAL_ID`` characters.
ExternalId = Annotated[str, Field(max_length=MAX_EXTERNAL_ID)]

#: ``version`` is an int, not ``Literal[1]``: a future version 2 must reach the topic
#: (consumers branch on it) instead of being dead-lettered as a mismatch.
Version = Annotated[
    StrictInt, Field(ge=1, description="eduMe payload version; 1 in the documentation")
]


class EdumeModel(BaseModel):
    """Base of every part: strict so ids never coerce, extras ignored so eduMe can add fields."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class WebhookBase(EdumeModel):
    """Base of the top-level envelopes; the ClassVars let the ingress route without isinstance."""

    FAMILY: ClassVar[Family]
    CANONICAL_TYPE: ClassVar[str]

    #: Narrowed to a ``Literal`` by every concrete event: the union's discriminator.
    type: str
    payload: EdumeModel
    #: Kept a string (as received): the ingress stamps its own receive time, and
    #: parsing here would only add a failure mode for an informational field.
    timestamp: str

    @property
    def routing_id(self) -> int:
        """The Kafka key of the event (subclasses say which id)."""
        raise NotImplementedError


class Group(EdumeModel):
    """The eduMe group an event happened in; groupId scopes courses and learners."""

    groupId: Id


class Team(EdumeModel):
    """A team reference; course events list the teams a course is assigned to."""

    teamId: Id


class Module(EdumeModel):
    """A module reference; needed to build module seamless links and track progress."""

    moduleId: Id


class CourseRef(EdumeModel):
    """Course reference in learner events, which carry no courseKey."""

    courseId: Id


class Identifier(EdumeModel):
    """An external identifier of a learner (e.g. from an HRIS).

    Only ``key`` and ``value`` are required: the learner events document ``id`` too
    but the completion's identifiers have no ``id``, so the two are read as one
    shape whose ``id``/``createdAt`` may be missing.
    """

    key: str
    value: str
    id: Id | None = None
    createdAt: str | None = None
