"""The OpenAPI 3 description of the ingress's HTTP API, served at ``/openapi.json``."""

from __future__ import annotations

from typing import Any

from streams.settings import Settings


def _error(description: str, retry: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if retry:
        response["headers"] = {
            "Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}
        }
    return response


def openapi_document(settings: Settings) -> dict[str, Any]:
    """The document for this configuration (the body limit is part of the contract)."""
    limit = settings.max_body_bytes
    accepted = {
        "description": (
            "Authentic, and acknowledged by the broker with acks=all. `topic` is the event "
            "topic, or the DLQ topic when the type is unknown or the body does not match "
            "the type's schema. `duplicate` is true when the same event id was published "
            "recently; it is then not published again."
        ),
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}},
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "edume-streams ingress",
            "version": "1",
            "description": "Receives eduMe webhooks, verifies them and publishes them to Kafka.",
        },
        "paths": {
            "/webhooks/edume": {
                "post": {
                    "summary": "Receive one eduMe webhook",
                    "parameters": [
                        {
                            "name": "X-Edume-Signature",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string"},
                            "description": (
                                "Hex HMAC-SHA256 (lower or upper case, optional `sha256=` "
                                "prefix) of the raw body or of its JavaScript JSON.stringify "
                                "form, with any configured secret."
                            ),
                        },
                        {
                            "name": "Authorization",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string"},
                            "description": "`Bearer <token>`, eduMe's second authentication mode.",
                        },
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["type", "payload", "timestamp"],
                                    "properties": {
                                        "type": {"type": "string"},
                                        "payload": {"type": "object"},
                                        "timestamp": {"type": "string"},
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "202": accepted,
                        "400": _error("The body is not a JSON object, or nests too deeply."),
                        "401": _error("Signature missing or wrong, and no valid bearer token."),
                        "408": _error("The body did not arrive within the request timeout."),
                        "413": _error(f"The body is larger than {limit} bytes."),
                        "503": _error("The broker did not acknowledge in time; retry.", True),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "200 while the process runs",
                    "responses": {"200": {"description": "alive"}},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "200 only while the broker is reachable",
                    "responses": {
                        "200": {"description": "ready"},
                        "503": {"description": "broker unreachable"},
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus text exposition",
                    "responses": {"200": {"description": "metrics", "content": {"text/plain": {}}}},
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {"200": {"description": "OpenAPI 3"}},
                }
            },
        },
        "components": {
            "schemas": {
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
            }
        },
    }
