"""The OpenAPI 3.1 description of the ingress's HTTP API, served at ``/openapi.json``.

It says what the ingress does, not what eduMe should send: the request body describes the
eduMe webhooks (from the same pydantic models the ingress validates with), but any JSON
object is accepted, and an authentic one that matches none of them is answered 202 with
the DLQ as its topic.
"""

from __future__ import annotations

from typing import Any, Final

from schemas import webhook_json_schema
from streams.core.openapi import (
    COMPONENTS,
    READ_ONLY,
    json_answer,
    json_content,
    read_only_page,
)
from streams.settings import Settings

WEBHOOK_PATH: Final = "/webhooks/edume"
GET_PATHS: Final = ("/healthz", "/readyz", "/metrics", "/openapi.json")
ALLOWED_METHODS: Final[dict[str, str]] = {
    WEBHOOK_PATH: "POST",
    **dict.fromkeys(GET_PATHS, READ_ONLY),
}
"""Path → its ``Allow`` header: any other method on a known path is answered 405."""

def _error(description: str, *, retry: bool = False) -> dict[str, Any]:
    return json_answer(description, "Error", retry=retry)


def _status(description: str, *, retry: bool = False) -> dict[str, Any]:
    return json_answer(description, "Status", retry=retry)


def _to_components(node: Any) -> Any:
    """A JSON Schema whose ``#/$defs/`` references point into ``#/components/schemas/``."""
    if isinstance(node, dict):
        return {
            key: (
                COMPONENTS + value[len("#/$defs/"):]
                if isinstance(value, str) and value.startswith("#/$defs/")
                else _to_components(value)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_to_components(item) for item in node]
    return node


def _webhook_schemas() -> dict[str, Any]:
    """The eduMe webhook union as ``EdumeWebhook`` beside its parts, as OpenAPI components."""
    schema = _to_components(webhook_json_schema())
    schema.pop("$schema", None)
    parts: dict[str, Any] = schema.pop("$defs", {})
    return {**parts, "EdumeWebhook": schema}


def _get(summary: str, responses: dict[str, Any]) -> dict[str, Any]:
    return read_only_page(summary, responses, security=[])


def openapi_document(settings: Settings) -> dict[str, Any]:
    """The document for this configuration (the body limit is part of the contract)."""
    limit = settings.max_body_bytes
    accepted = json_answer(
        "Authentic, and acknowledged by the broker with acks=all. `topic` is the event's "
        "topic; an authentic body whose `type` is unknown, that does not match its "
        "type's schema (ids are integers from 1 to 2^53 - 1), or that is stamped more than "
        "`MAX_CLOCK_SKEW` after it was received, is also answered 202, with `topic` = the "
        "DLQ topic (the raw body is published there). `duplicate` is true when the same "
        "event id was published recently; it is then not published again.",
        "Accepted",
    )
    components = _webhook_schemas()
    own = {
        "Accepted": {
            "type": "object",
            "required": ["eventId", "topic", "duplicate"],
            "properties": {
                "eventId": {
                    "type": "string",
                    "pattern": "^[0-9a-f]{64}$",
                    "description": "lowercase hex SHA-256 of the event's "
                    "single-line JSON.stringify form",
                },
                "topic": {"type": "string"},
                "duplicate": {"type": "boolean"},
            },
        },
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {"type": "string"}},
        },
        "Status": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"type": "string"}},
        },
    }
    components.update(own)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "edume-streams ingress",
            "version": "1",
            "description": (
                "Receives eduMe webhooks, verifies them and publishes them to Kafka. "
                "A method a path does not list is answered 405 with an `Allow` header; "
                "an unknown path 404."
            ),
        },
        "paths": {
            WEBHOOK_PATH: {
                "description": f"Other methods: 405 with `Allow: {ALLOWED_METHODS[WEBHOOK_PATH]}`.",
                "post": {
                    "summary": "Receive one eduMe webhook",
                    "security": [{"signature": []}, {"bearer": []}],
                    "requestBody": {
                        "required": True,
                        "description": (
                            "One eduMe webhook. Any JSON object is accepted: an authentic "
                            "one that matches none of the eduMe webhooks (unknown `type`, "
                            "or not matching its type's schema), or that is stamped more "
                            "than `MAX_CLOCK_SKEW` after it was received, is published to "
                            "the DLQ and answered 202. A body that is not a JSON object is "
                            "answered 400."
                        ),
                        "content": json_content(
                            {
                                "anyOf": [
                                    {"$ref": COMPONENTS + "EdumeWebhook"},
                                    {"type": "object"},
                                ]
                            }
                        ),
                    },
                    "responses": {
                        "202": accepted,
                        "400": _error(
                            "Authentic, but not a JSON object (or invalid UTF-8, or nested "
                            "deeper than the configured limit)."
                        ),
                        "401": _error("Signature missing or wrong, and no valid bearer token."),
                        "408": _error("The body did not arrive within the request timeout."),
                        "413": _error(f"The body is larger than {limit} bytes."),
                        "503": _error(
                            "The broker did not acknowledge in time, or the ingress is "
                            "handling as many requests as it takes at once; retry.",
                            retry=True,
                        ),
                    },
                },
            },
            "/healthz": _get("200 while the process runs", {"200": _status("alive")}),
            "/readyz": _get(
                "200 only while the broker is reachable",
                {
                    "200": _status("ready"),
                    "503": _status("broker unreachable", retry=True),
                },
            ),
            "/metrics": _get(
                "Prometheus text exposition",
                {
                    "200": {
                        "description": "metrics",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            ),
            "/openapi.json": _get(
                "This document",
                {"200": {"description": "OpenAPI 3.1",
                         "content": json_content({"type": "object"})}},
            ),
        },
        "components": {
            "schemas": components,
            "securitySchemes": {
                "signature": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-Edume-Signature",
                    "description": (
                        "Hex HMAC-SHA256 (lower or upper case, optional `sha256=` prefix) of "
                        "the raw body or of its JavaScript JSON.stringify form, with any "
                        "configured secret."
                    ),
                },
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A configured token: eduMe's second authentication mode.",
                },
            },
        },
    }
