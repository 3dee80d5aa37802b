"""The OpenAPI 3.1 description of the worker's query API, served at ``/openapi.json``.

The answers' bodies are typed dicts below, one per ``view()`` of ``streams.core.state``
(``CourseEntry``, ``LearnerState`` and its courses, ``Gate``), turned into JSON Schema by
pydantic beside the webhook parts they repeat (``Identifier``, ``ScoreBreakdown``). They
are closed (``additionalProperties: false``) and list every key a view always writes as
required, so a view that gains, loses or retypes a key no longer matches the document,
and the conformance test (tests/integration/test_worker_openapi.py) says so.

``streams.worker.web`` registers the keyed pages under the paths named here and checks ids
with the pattern named here, so the two cannot drift apart; the ``Allow`` header stated here
is the one aiohttp sends for Faust's views (the conformance test compares them).
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal, NotRequired

from pydantic import ConfigDict, Field, TypeAdapter, with_config
from pydantic.json_schema import GenerateJsonSchema
from typing_extensions import TypedDict  # pydantic reads typing.TypedDict only on 3.12+

from schemas.common import MAX_EXTERNAL_ID, Identifier
from schemas.completion import ScoreBreakdown
from streams.core.openapi import (
    COMPONENTS,
    READ_ONLY,
    json_answer,
    json_content,
    read_only_page,
)

COURSE_PATH: Final = "/catalog/courses/{course_id}"
PROGRESS_PATH: Final = "/learners/{user_id}/progress"
MANDATORY_PATH: Final = "/learners/{user_id}/mandatory"
LINKS_PATH: Final = "/learners/{user_id}/links"
EVIDENCE_PATH: Final = "/learners/{user_id}/evidence"
EXTERNAL_LINKS_PATH: Final = "/links"
ID_DIGITS: Final = "[0-9]{1,19}"
"""A path id: decimal ASCII digits, as many as a 64-bit id has; anything else is 400."""
"""The ``Allow`` header of every page: any other method is answered 405."""

_SENT = "as eduMe sent it"


# ---------------------------------------------------------------------------- bodies

_closed = with_config(ConfigDict(extra="forbid"))
Time = Annotated[str | None, Field(description=f"an event's timestamp, {_SENT}")]
Ids = list[int]
EventsApplied = Annotated[int, Field(description=(
    "events folded in; a repeat counts once unless it comes after 256 newer events of the "
    "same key"))]


@_closed
class Error(TypedDict):
    """Why the request was not answered."""

    error: str


@_closed
class Status(TypedDict):
    """The process's state."""

    status: str
    degraded: NotRequired[Annotated[str, Field(description=(
        "/readyz only, for 15 minutes after the broker last refused a record for good: "
        "how many, since when, the latest topic and error; the records that caused them "
        "are in streams.dlq"))]]


@_closed
class CatalogEntry(TypedDict):
    """A course as its course events describe it (``CourseEntry.view()``)."""

    courseId: int
    courseKey: str | None
    groupId: int | None
    teamIds: Annotated[Ids, Field(description="the teams the course is assigned to now")]
    moduleIds: Ids
    published: Annotated[bool | None, Field(
        description="null until a course.added, course.published or course.unpublished")]
    deleted: Annotated[bool, Field(description="final: no event undoes a deletion")]
    deletedAt: Annotated[str | None, Field(description=f"the earliest deletion, {_SENT}")]
    titleChangedAt: Time
    lastEventAt: Time
    eventsApplied: EventsApplied


@_closed
class Survey(TypedDict):
    """The latest answer to one survey."""

    surveyId: int
    type: str
    status: str
    at: Annotated[str, Field(description=f"the answer's timestamp, {_SENT}")]
    moduleId: NotRequired[Annotated[int, Field(description="in-course surveys only")]]


@_closed
class Scores(TypedDict):
    """From the latest detailed completion (``learner.course.completed``)."""

    overallAssessmentScore: float | None
    overallLessonScore: float | None
    breakdown: list[ScoreBreakdown]


@_closed
class CourseProgress(TypedDict):
    """One learner in one course."""

    courseId: int
    assigned: Annotated[bool, Field(description="listed by learner.added or .activated")]
    status: Literal["assigned", "in_progress", "completed"]
    startedAt: Annotated[str | None, Field(description=f"the earliest course start, {_SENT}")]
    lessonsStarted: Ids
    lessonsFinished: Ids
    assessmentsStarted: Ids
    assessmentsFinished: Ids
    surveys: list[Survey]
    completedAt: Annotated[str | None, Field(
        description="the detailed completion's courseCompletionDate, or the course's "
        "learner.activity.finished timestamp, whichever event is earlier")]
    completedBy: Literal["activity", "detail", None]
    scores: Scores | None
    durationSeconds: float | None


@_closed
class Progress(TypedDict):
    """A learner as their events describe them (``LearnerState.view()``)."""

    userId: int
    externalUserId: Annotated[str | None, Field(
        description="eduMe's eId; null until an event with it was seen")]
    groupId: int | None
    identifiers: list[Identifier]
    addedAt: Time
    activated: bool
    activatedAt: Time
    assignedCourseIds: Ids
    courses: Annotated[list[CourseProgress], Field(
        description="every course the learner was assigned or has progress in")]
    surveys: Annotated[list[Survey], Field(description="standalone surveys")]
    lastEventAt: Time
    eventsApplied: EventsApplied


@_closed
class Mandatory(TypedDict):
    """May this learner proceed (``Gate.view()``)."""

    userId: int
    complete: Annotated[bool, Field(description="no assigned mandatory course left")]
    completedCourseIds: Ids
    remainingCourseIds: Annotated[Ids, Field(
        description="mandatory for the learner's group, not completed, not deleted")]


@_closed
class IssuedLink(TypedDict):
    """A signed seamless link issued to the user (as on ``links.issued``)."""

    kind: Literal["course", "module", "lesson", "survey", "guide", "hub", "knowledge-hub"]
    reason: Literal["request", "assignment", "reminder"]
    url: NotRequired[Annotated[str, Field(description=(
        "the signed link (it logs the learner in): shown to WORKER_LINK_TOKENS tokens only"))]]
    issuedAt: Annotated[str, Field(description="RFC 3339 UTC")]
    courseId: int | None
    contentId: Annotated[int | None, Field(description="null for hub links")]
    teamIds: Ids
    eventId: Annotated[str, Field(description="the links.issued record's edume-event-id")]


@_closed
class Links(TypedDict):
    """The links issued to one user, oldest first (the newest 1,000)."""

    userId: Annotated[int | None, Field(description="eduMe userId, when known")]
    externalUserId: str | None
    links: list[IssuedLink]


@_closed
class Proof(TypedDict):
    """A course completion with its proof (as on ``training.evidence``)."""

    userId: int
    courseId: int
    completedAt: Annotated[str, Field(description=f"when the course was completed, {_SENT}")]
    eventId: Annotated[str, Field(description="the completing event's edume-event-id")]
    event: Annotated[str, Field(description=(
        "the completing event's exact published value: the bytes eduMe signed"))]
    signature: Annotated[str | None, Field(description=(
        "the HMAC-SHA256 the ingress verified, lowercase hex; null: a bearer token"))]
    receivedAt: str | None
    topic: str
    partition: int
    offset: int
    verdict: Annotated[
        Literal["signed by eduMe", "authenticated by bearer token, not signed",
                "signature does not verify"] | None,
        Field(description=("the signature checked again with the worker's "
                           "EDUME_WEBHOOK_SECRETS; null when the worker has none"))]


@_closed
class Evidence(TypedDict):
    """A learner's course completions with their proof, by completion time."""

    userId: int
    completions: list[Proof]


class _NoFieldTitles(GenerateJsonSchema):
    """Titles repeat the property names ("Courseid"); the models' titles stay."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def _components() -> dict[str, Any]:
    bodies = (Error, Status, CatalogEntry, Progress, Mandatory, Links, Evidence)
    _, defs = TypeAdapter.json_schemas(
        [(body.__name__, "serialization", TypeAdapter(body)) for body in bodies],
        ref_template=COMPONENTS + "{model}",
        schema_generator=_NoFieldTitles,
    )
    return dict(sorted(defs["$defs"].items()))


# ------------------------------------------------------------------------ operations

def _path_id(name: str, what: str, examples: dict[str, tuple[int, str]]) -> dict[str, Any]:
    """A path id; ``examples``: name -> (an id of eduMe's documented samples, what it is)."""
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": f"{what}, a decimal id (leading zeros are ignored)",
        "schema": {"type": "string", "pattern": f"^{ID_DIGITS}$"},
        "examples": {key: {"summary": summary, "value": str(value)}
                     for key, (value, summary) in examples.items()},
    }


_COURSE_ID = _path_id("course_id", "eduMe courseId", {
    "course": (22299, "the course of eduMe's course.* samples"),
})
_USER_ID = _path_id("user_id", "eduMe userId", {
    "added": (10217, "the learner of eduMe's learner.added sample"),
    "completed": (5398399, "the learner of eduMe's detailed completion sample"),
})


BEARER: Final[list[dict[str, list[str]]]] = [{"bearer": []}]
"""The data pages' security: a token of ``WORKER_API_TOKENS`` or ``WORKER_LINK_TOKENS``."""
_UNAUTHORIZED: Final = {
    "description": "no `Authorization: Bearer` header, or not a configured token (or a "
    "request marked `X-Edume-Routed-By` without a valid routing credential)",
    "headers": {"WWW-Authenticate": {"schema": {"type": "string", "const": "Bearer"},
                                     "required": True}},
    "content": json_content({"$ref": COMPONENTS + "Error"}),
}


def _keyed(summary: str, param: dict[str, Any], body: str, missing: str) -> dict[str, Any]:
    return read_only_page(
        summary,
        {
            "200": json_answer("found", body),
            "400": json_answer("the id is not a decimal id", "Error"),
            "401": _UNAUTHORIZED,
            "404": json_answer(missing, "Error"),
            "503": json_answer("the workers are rebalancing, or the key's owner did not "
                           "answer; retry", "Error", retry=True),
        },
        description="Answered by any worker: one that does not own the key asks the owner "
        "and returns its answer.",
        parameters=[param],
        security=BEARER,
    )


def _open(summary: str, responses: dict[str, Any]) -> dict[str, Any]:
    """A page without authentication (probes, scrapers, this document)."""
    return read_only_page(summary, responses, security=[])


def worker_openapi_document() -> dict[str, Any]:
    alive = json_answer("the process runs", "Status")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "edume-streams worker query API",
            "version": "1",
            "description": "Catalog, learner progress and the mandatory-training gate. "
            f"Every page answers GET and HEAD; another method is answered 405 with "
            f"`Allow: {READ_ONLY}`, an unknown path 404, both with an `Error` body. "
            "The data pages need `Authorization: Bearer` with a token of "
            "`WORKER_API_TOKENS` or `WORKER_LINK_TOKENS` (401 with `WWW-Authenticate: "
            "Bearer` otherwise); a link's `url` is shown to `WORKER_LINK_TOKENS` tokens "
            "only. `/healthz`, `/readyz`, `/metrics`, `/openapi.json` and `/` are open.",
        },
        "paths": {
            COURSE_PATH: _keyed("A course's catalog entry", _COURSE_ID, "CatalogEntry",
                                "no course event for this course"),
            PROGRESS_PATH: _keyed("A learner's progress in every course seen", _USER_ID,
                                  "Progress", "no event for this learner"),
            MANDATORY_PATH: _keyed("May this learner proceed: their mandatory courses",
                                   _USER_ID, "Mandatory", "no event for this learner"),
            LINKS_PATH: _keyed("The seamless links issued to this learner", _USER_ID, "Links",
                               "no event for this learner"),
            EVIDENCE_PATH: _keyed("The learner's course completions with their proof",
                                  _USER_ID, "Evidence", "no event for this learner"),
            EXTERNAL_LINKS_PATH: read_only_page(
                "The seamless links issued to an external user id (links.* keys)",
                {
                    "200": json_answer("the links (an empty list for a user never issued one)",
                                   "Links"),
                    "400": json_answer("externalUserId missing, or longer than "
                                   f"{MAX_EXTERNAL_ID} characters", "Error"),
                    "401": _UNAUTHORIZED,
                    "503": json_answer("the workers are rebalancing, or the key's owner did "
                                   "not answer; retry", "Error", retry=True),
                },
                description="Answered by any worker, like the learner pages.",
                security=BEARER,
                parameters=[{
                    "name": "externalUserId", "in": "query", "required": True,
                    "description": "your user id, as in link requests (eduMe's eId)",
                    "schema": {"type": "string", "minLength": 1,
                               "maxLength": MAX_EXTERNAL_ID},
                    "examples": {"sample": {"summary": "the eId of eduMe's samples",
                                            "value": "e8e6ed1a-b2c0-45a5-8310-5ed1d0948e30"}},
                }],
            ),
            "/healthz": _open(
                "200 while the process lives; 503 once it has stalled for "
                "WORKER_STALL_TIMEOUT (unready with nothing moving, or input waiting and "
                "none processed), so that the orchestrator restarts it",
                {"200": alive,
                 "503": json_answer("stalled: `status` says how", "Status")},
            ),
            "/readyz": _open(
                "200 once the tables are recovered and the worker consumes",
                {"200": json_answer("ready", "Status"),
                 "503": json_answer("not ready: `status` says why (recovering, rebalancing, "
                                "reading the catalog and policies)", "Status", retry=True)},
            ),
            "/metrics": _open("Prometheus text exposition", {"200": {
                "description": "metrics, text format 0.0.4",
                "content": {"text/plain": {"schema": {"type": "string"}}}}}),
            "/openapi.json": _open("This document", {"200": {
                "description": "OpenAPI 3.1",
                "content": {"application/json": {"schema": {"type": "object"}}}}}),
            "/": _open("Faust's own index: 200 while the process runs, as /healthz",
                       {"200": alive}),
        },
        "components": {
            "schemas": _components(),
            "securitySchemes": {"bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "A token of WORKER_API_TOKENS, or of WORKER_LINK_TOKENS to "
                "see signed link URLs too.",
            }},
        },
    }
