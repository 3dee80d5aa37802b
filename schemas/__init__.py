"""eduMe webhook schemas (pydantic v2); imports nothing from ``streams``."""

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
from schemas.webhooks import (
    CANONICAL_COMPLETION_TYPE,
    COMPLETION_TYPES,
    EVENT_MODELS,
    KNOWN_TYPES,
    MODEL_BY_TYPE,
    WEBHOOK_ADAPTER,
    WebhookEvent,
    canonical_type,
    course_event_json_schema,
    learner_event_json_schema,
    webhook_json_schema,
)

__all__ = [
    "CANONICAL_COMPLETION_TYPE",
    "COMPLETION_TYPES",
    "EVENT_MODELS",
    "KNOWN_TYPES",
    "MODEL_BY_TYPE",
    "WEBHOOK_ADAPTER",
    "CourseAdded",
    "CourseDeleted",
    "CoursePublished",
    "CourseUnpublished",
    "CourseUpdated",
    "LearnerActivated",
    "LearnerActivityFinished",
    "LearnerActivityStarted",
    "LearnerAdded",
    "LearnerCourseCompleted",
    "WebhookBase",
    "WebhookEvent",
    "canonical_type",
    "course_event_json_schema",
    "learner_event_json_schema",
    "webhook_json_schema",
]
