"""Pydantic v2 models of eduMe's webhooks, as one nested discriminated union.

The ingress calls ``WEBHOOK_ADAPTER.validate_python(doc)`` on each parsed body:
the top-level ``type`` selects the model (an O(1) tag lookup), then ``payload.type``
selects the payload for ``course.updated`` and ``learner.activity.*``, and surveys
are split once more on the presence of ``course``/``module``.

How the source document's inconsistencies are read:

* The completion's type is spelled ``course.complete`` (its JSON schema),
  ``course.completed`` (its sample) and ``learner.course.completed`` (the event
  table). All three are accepted; the canonical name is ``learner.course.completed``
  (family prefix like every learner event) and its family is ``learner``, so it is
  keyed by ``payload.user.id`` (it has no ``userId``) on ``edume.learner.events``.
* The completion's JSON schema has no commas, ``any`` fields and a ``score?``
  optional: only ids, courseKey and courseCompletionDate are required; ``any``
  fields are tolerated unmodelled; ``score`` is optional. Its user identifiers
  have no ``id`` while the learner events' do: one Identifier shape, ``id`` optional.
* The team.removed schema says ``moduleId: 24775`` (a sample value where a type
  belongs): read as ``number`` like in every other course event.
* The assessment schema is given once for ``"learner.activity.started" |
  "learner.activity.finished"``: one payload model serves both event types.
* "Learner.activity.finished" is capitalised in a heading only; the samples use
  lowercase, which is the only spelling accepted (types are case-sensitive).
* ``version: 1`` is a literal in every schema: read as "an int, currently 1", so a
  future version 2 reaches the topic (consumers branch on it) instead of the DLQ.
* Survey ``type``/``status`` are listed as closed unions: read as today's values
  of an open set (plain strings), since they do not route anything.
* ``timestamp`` is documented as a string and kept a string (required).
* JavaScript ``number`` ids are integers (strict: ``"1"``, ``true``, ``1.5`` are
  mismatches); scores and durations are floats (ints accepted).
* Unknown extra keys are ignored everywhere: eduMe documents samples, not a closed
  schema, and the topic value is the object as received anyway.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Annotated, Any, Final, get_args

from pydantic import Field, TypeAdapter

from schemas.common import WebhookBase
from schemas.completion import LearnerCourseCompleted
from schemas.course import (
    CourseAdded,
    CourseDeleted,
    CoursePublished,
    CourseUnpublished,
    CourseUpdated,
)
from schemas.learner import (
    LearnerActivated,
    LearnerActivityFinished,
    LearnerActivityStarted,
    LearnerAdded,
)

CourseFamilyEvent = Annotated[
    CourseAdded | CourseDeleted | CoursePublished | CourseUnpublished | CourseUpdated,
    Field(discriminator="type"),
]
LearnerFamilyEvent = Annotated[
    LearnerAdded
    | LearnerActivated
    | LearnerActivityStarted
    | LearnerActivityFinished
    | LearnerCourseCompleted,
    Field(discriminator="type"),
]
WebhookEvent = Annotated[
    CourseAdded
    | CourseDeleted
    | CoursePublished
    | CourseUnpublished
    | CourseUpdated
    | LearnerAdded
    | LearnerActivated
    | LearnerActivityStarted
    | LearnerActivityFinished
    | LearnerCourseCompleted,
    Field(discriminator="type"),
]

WEBHOOK_ADAPTER: Final[TypeAdapter[WebhookEvent]] = TypeAdapter(WebhookEvent)

EVENT_MODELS: Final[tuple[type[WebhookBase], ...]] = (
    CourseAdded,
    CourseDeleted,
    CoursePublished,
    CourseUnpublished,
    CourseUpdated,
    LearnerAdded,
    LearnerActivated,
    LearnerActivityStarted,
    LearnerActivityFinished,
    LearnerCourseCompleted,
)

CANONICAL_COMPLETION_TYPE: Final = "learner.course.completed"
COMPLETION_TYPES: Final[frozenset[str]] = frozenset(
    get_args(LearnerCourseCompleted.model_fields["type"].annotation)
)

#: Received top-level type -> model class (every accepted spelling).
MODEL_BY_TYPE: Final[Mapping[str, type[WebhookBase]]] = {
    received: model
    for model in EVENT_MODELS
    for received in get_args(model.model_fields["type"].annotation)
}
_CANONICAL_BY_TYPE: Final[dict[str, str]] = {
    received: model.CANONICAL_TYPE for received, model in MODEL_BY_TYPE.items()
}
KNOWN_TYPES: Final[frozenset[str]] = frozenset(_CANONICAL_BY_TYPE)


def canonical_type(received: object) -> str | None:
    """Canonical name of a received top-level ``type``; None when unknown or not a string.

    Called on ``doc.get("type")`` before validation, so the caller can tell an
    unknown type from a schema mismatch of a known one.
    """
    if not isinstance(received, str):
        return None
    return _CANONICAL_BY_TYPE.get(received)


_DRAFT_2020_12: Final = "https://json-schema.org/draft/2020-12/schema"


def _common_suffix(names: list[str]) -> str:
    """Longest common CamelCase-word suffix: ``SurveyActivity`` of ``InCourseSurveyActivity``..."""
    if not names:
        return ""
    size = 0
    shortest = min(len(n) for n in names)
    while size < shortest and len({n[len(n) - size - 1] for n in names}) == 1:
        size += 1
    suffix = names[0][len(names[0]) - size :]
    return suffix.lstrip("abcdefghijklmnopqrstuvwxyz0123456789_")


def _hoist_inline_mappings(schema: dict[str, Any]) -> None:
    """Move inline discriminator-mapping targets into ``$defs`` (in place).

    Pydantic maps the ``survey`` tag to an inline ``oneOf`` (the callable-discriminated
    in-course/standalone split); OpenAPI/AsyncAPI require mapping values to be
    reference strings, so the inline schema becomes ``$defs/SurveyActivity``.
    """
    hoisted: dict[str, Any] = {}

    def walk(node: object) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
            return
        if not isinstance(node, dict):
            return
        discriminator = node.get("discriminator")
        mapping = discriminator.get("mapping", {}) if isinstance(discriminator, dict) else {}
        for tag, target in list(mapping.items()):
            if isinstance(target, dict):
                refs = [str(c.get("$ref", "")).rsplit("/", 1)[-1] for c in target.get("oneOf", [])]
                name = _common_suffix(refs) or tag.capitalize()
                hoisted.setdefault(name, {**target, "title": name})
                ref = f"#/$defs/{name}"
                mapping[tag] = ref
                node["oneOf"] = [
                    {"$ref": ref} if choice == target else choice
                    for choice in node.get("oneOf", [])
                ]
        for value in list(node.values()):
            walk(value)

    walk(schema)
    schema.setdefault("$defs", {}).update(hoisted)


def _with_header(schema: dict[str, Any], title: str, description: str) -> dict[str, Any]:
    """Add $schema, title and description (pydantic emits none for a union); hoist mappings."""
    _hoist_inline_mappings(schema)
    return {"$schema": _DRAFT_2020_12, "title": title, "description": description, **schema}


@cache
def _adapter(which: str) -> TypeAdapter[Any]:
    """Schema-only adapters, built on first use to keep import cheap."""
    return TypeAdapter(CourseFamilyEvent if which == "course" else LearnerFamilyEvent)


def webhook_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12, validation mode) of every accepted eduMe webhook."""
    return _with_header(
        WEBHOOK_ADAPTER.json_schema(mode="validation"),
        "EdumeWebhook",
        "An eduMe webhook as received (type, payload, timestamp); "
        "discriminated on type, then on payload.type.",
    )


def course_event_json_schema() -> dict[str, Any]:
    """JSON Schema of the value of topic ``edume.course.events``."""
    return _with_header(
        _adapter("course").json_schema(mode="validation"),
        "EdumeCourseEvent",
        "An eduMe course-level webhook as received, keyed by payload.course.courseId.",
    )


def learner_event_json_schema() -> dict[str, Any]:
    """JSON Schema of the value of topic ``edume.learner.events``."""
    return _with_header(
        _adapter("learner").json_schema(mode="validation"),
        "EdumeLearnerEvent",
        "An eduMe learner-level webhook as received (including the detailed course completion, "
        "whose type may be learner.course.completed, course.completed or course.complete), "
        "keyed by payload.user.userId, or payload.user.id for the completion.",
    )
