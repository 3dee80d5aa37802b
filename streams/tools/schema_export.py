"""``edume-streams schemas OUT_DIR``: a JSON Schema per topic value and one AsyncAPI document.

Both are generated from the models and the topic catalog, so they cannot drift from what
the ingress and the workers validate and write. Every contract topic has one; the workers'
internal topics (table changelogs, re-keying) are not part of the contract and have none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel

from schemas import course_event_json_schema, learner_event_json_schema
from schemas.outputs import (
    CatalogImport,
    Erasure,
    LinkIssue,
    LinkIssued,
    LinkRejected,
    LinkRequest,
    MandatoryCompleted,
    TrainingEvidence,
    TrainingPolicy,
)
from streams.core import headers, topics

HEADERS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        headers.EVENT_ID: {
            "type": "string",
            "pattern": "^[0-9a-f]{64}$",
            "description": (
                "lowercase hex SHA-256: of a webhook's single-line JSON.stringify form, or, "
                "for a record a worker produces, of its cause's id, the output kind and its "
                "subject (the same however often the record is written)"
            ),
        },
        headers.EVENT_TYPE: {"type": "string", "description": "canonical event type"},
        headers.RECEIVED_AT: {
            "type": "string",
            "format": "date-time",
            "description": "when the ingress received it (RFC 3339, UTC)",
        },
        headers.DLQ_REASON: {"type": "string", "description": "DLQ only: why it is there"},
        headers.DLQ_SOURCE: {
            "type": "string",
            "description": "streams.dlq only: the record's topic/partition/offset",
        },
    },
    "required": [headers.EVENT_ID, headers.RECEIVED_AT],
}

DLQ_VALUE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "edume.webhooks.dlq value",
    "description": (
        "The raw request body exactly as received: an authentic webhook whose type is "
        "unknown or whose body does not match its type's schema. Usually a JSON object; "
        "read the edume-dlq-reason header for why it is here."
    ),
}


STREAMS_DLQ_VALUE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "streams.dlq value",
    "description": (
        "A record a worker could not use (not JSON, not the shape of its topic, an unknown "
        "type), unchanged; its key and the edume-dlq-source header say where it was, the "
        "edume-dlq-reason header why it is here."
    ),
}

_MODELS: dict[str, type[BaseModel]] = {
    topics.TRAINING_POLICIES: TrainingPolicy,
    topics.CATALOG_IMPORTS: CatalogImport,
    topics.PRIVACY_ERASURES: Erasure,
    topics.TRAINING_EVIDENCE: TrainingEvidence,
    topics.MANDATORY_COMPLETED: MandatoryCompleted,
    topics.LINK_REQUESTS: LinkRequest,
    topics.LINK_ISSUE: LinkIssue,
    topics.LINK_ISSUED: LinkIssued,
    topics.LINK_REJECTED: LinkRejected,
}


def _model_schema(name: str, model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(mode="validation")
    if name == topics.TRAINING_POLICIES:
        schema["description"] += " A null record value (tombstone) removes the policy."
    if name == topics.CATALOG_IMPORTS:
        schema["description"] += (" A null record value (tombstone) removes the course's "
                                  "record from the topic and un-imports nothing.")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def topic_value_schemas() -> dict[str, dict[str, Any]]:
    """Contract topic name → JSON Schema of its value, for every contract topic."""
    schemas: dict[str, dict[str, Any]] = {
        topics.COURSE_EVENTS: course_event_json_schema(),
        topics.LEARNER_EVENTS: learner_event_json_schema(),
        topics.WEBHOOKS_DLQ: DLQ_VALUE_SCHEMA,
        topics.STREAMS_DLQ: STREAMS_DLQ_VALUE_SCHEMA,
    }
    schemas.update({name: _model_schema(name, m) for name, m in _MODELS.items()})
    return {s.name: schemas[s.name] for s in topics.CATALOG if not s.internal}


def asyncapi_document(schemas: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """An AsyncAPI 3 document naming each topic's key, headers and value schema."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for name in schemas:  # the schemas themselves are written beside the document
        spec = topics.BY_NAME[name]
        ident = name.replace(".", "_")
        messages[ident] = {
            "name": name,
            "contentType": "application/json",
            "headers": HEADERS_SCHEMA,
            "payload": {"$ref": f"./{name}.schema.json"},
            "bindings": {"kafka": {"key": {"type": "string", "description": spec.key}}},
            "description": spec.value,
        }
        channels[ident] = {
            "address": name,
            "messages": {ident: {"$ref": f"#/components/messages/{ident}"}},
            "bindings": {
                "kafka": {
                    "partitions": spec.partitions,
                    "topicConfiguration": {
                        "cleanup.policy": [spec.kafka_configs()["cleanup.policy"]]
                    },
                }
            },
        }
        operations[f"receive_{ident}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{ident}"},
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "edume-streams topics",
            "version": "1",
            "description": "Topics edume-streams produces and reads. Names take TOPIC_PREFIX.",
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def write_schemas(out_dir: Path) -> list[Path]:
    """Write ``<topic>.schema.json`` per topic and ``asyncapi.json``; return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    schemas = topic_value_schemas()
    written = []
    for name, schema in schemas.items():
        path = out_dir / f"{name}.schema.json"
        path.write_bytes(orjson.dumps(schema, option=orjson.OPT_INDENT_2) + b"\n")
        written.append(path)
    path = out_dir / "asyncapi.json"
    path.write_bytes(orjson.dumps(asyncapi_document(schemas), option=orjson.OPT_INDENT_2) + b"\n")
    written.append(path)
    return written
