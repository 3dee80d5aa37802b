"""The OpenAPI 3 description of the worker's query API, served at ``/openapi.json``."""

from __future__ import annotations

from typing import Any

_ID = {"type": "integer"}
_IDS = {"type": "array", "items": _ID}
_TIME = {"type": ["string", "null"], "description": "as eduMe sent it"}


def _path_id(name: str, what: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": f"{what}, a decimal id",
        "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
    }


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERROR = {"$ref": "#/components/schemas/Error"}
_UNAVAILABLE = {
    "description": "the workers are rebalancing, or the key's owner did not answer; retry",
    "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    "content": {"application/json": {"schema": _ERROR}},
}


def _keyed(summary: str, param: dict[str, Any], schema: str, missing: str) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "description": "Answered by any worker: one that does not own the key asks the "
            "owner and returns its answer.",
            "parameters": [param],
            "responses": {
                "200": _json({"$ref": f"#/components/schemas/{schema}"}, "found"),
                "400": _json(_ERROR, "the id is not a decimal id"),
                "404": _json(_ERROR, missing),
                "503": _UNAVAILABLE,
            },
        }
    }


def _schemas() -> dict[str, Any]:
    survey = {
        "type": "object",
        "required": ["surveyId", "type", "status", "at"],
        "properties": {"surveyId": _ID, "type": {"type": "string"},
                       "status": {"type": "string"}, "at": {"type": "string"},
                       "moduleId": _ID},
    }
    course_progress = {
        "type": "object",
        "required": ["courseId", "assigned", "status", "completedAt"],
        "properties": {
            "courseId": _ID,
            "assigned": {"type": "boolean"},
            "status": {"enum": ["assigned", "in_progress", "completed"]},
            "startedAt": _TIME,
            "lessonsStarted": _IDS,
            "lessonsFinished": _IDS,
            "assessmentsStarted": _IDS,
            "assessmentsFinished": _IDS,
            "surveys": {"type": "array", "items": survey},
            "completedAt": _TIME,
            "completedBy": {"enum": ["activity", "detail", None]},
            "scores": {"type": ["object", "null"]},
            "durationSeconds": {"type": ["number", "null"]},
        },
    }
    return {
        "Error": {"type": "object", "required": ["error"],
                  "properties": {"error": {"type": "string"}}},
        "CatalogEntry": {
            "type": "object",
            "required": ["courseId", "courseKey", "groupId", "teamIds", "moduleIds",
                         "published", "deleted", "titleChangedAt", "lastEventAt"],
            "properties": {
                "courseId": _ID,
                "courseKey": {"type": ["string", "null"]},
                "groupId": {"type": ["integer", "null"]},
                "teamIds": _IDS,
                "moduleIds": _IDS,
                "published": {"type": ["boolean", "null"],
                              "description": "null until a publish state was seen"},
                "deleted": {"type": "boolean"},
                "deletedAt": _TIME,
                "titleChangedAt": _TIME,
                "lastEventAt": _TIME,
                "eventsApplied": _ID,
            },
        },
        "Progress": {
            "type": "object",
            "required": ["userId", "externalUserId", "groupId", "courses"],
            "properties": {
                "userId": _ID,
                "externalUserId": {"type": ["string", "null"]},
                "groupId": {"type": ["integer", "null"]},
                "identifiers": {"type": "array", "items": {"type": "object"}},
                "addedAt": _TIME,
                "activated": {"type": "boolean"},
                "activatedAt": _TIME,
                "assignedCourseIds": _IDS,
                "courses": {"type": "array", "items": course_progress},
                "surveys": {"type": "array", "items": survey},
                "lastEventAt": _TIME,
                "eventsApplied": _ID,
            },
        },
        "Mandatory": {
            "type": "object",
            "required": ["userId", "complete", "completedCourseIds", "remainingCourseIds"],
            "properties": {
                "userId": _ID,
                "complete": {"type": "boolean",
                             "description": "may the learner proceed: no assigned mandatory "
                             "course left"},
                "completedCourseIds": _IDS,
                "remainingCourseIds": _IDS,
            },
        },
    }


def worker_openapi_document() -> dict[str, Any]:
    simple = {"description": "ok", "content": {"application/json": {"schema": {
        "type": "object", "properties": {"status": {"type": "string"}}}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "edume-streams worker query API", "version": "1",
                 "description": "Catalog, learner progress and the mandatory-training gate."},
        "paths": {
            "/catalog/courses/{course_id}": _keyed(
                "A course's catalog entry", _path_id("course_id", "courseId"), "CatalogEntry",
                "no course event for this course"),
            "/learners/{user_id}/progress": _keyed(
                "A learner's progress in every course seen", _path_id("user_id", "eduMe userId"),
                "Progress", "no event for this learner"),
            "/learners/{user_id}/mandatory": _keyed(
                "May this learner proceed: their assigned mandatory courses",
                _path_id("user_id", "eduMe userId"), "Mandatory", "no event for this learner"),
            "/healthz": {"get": {"summary": "200 while the process runs",
                                 "responses": {"200": simple}}},
            "/readyz": {"get": {"summary": "200 once the tables are recovered and the worker "
                                "consumes",
                                "responses": {"200": simple, "503": {
                                    "description": "not ready (recovering, rebalancing, "
                                    "reading the catalog and policies)",
                                    "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                                    "content": {"application/json": {"schema": {
                                        "type": "object"}}}}}}},
            "/metrics": {"get": {"summary": "Prometheus text exposition",
                                 "responses": {"200": {"description": "metrics",
                                                       "content": {"text/plain": {}}}}}},
            "/openapi.json": {"get": {"summary": "This document",
                                      "responses": {"200": {"description": "OpenAPI 3",
                                                            "content": {"application/json":
                                                                        {}}}}}},
        },
        "components": {"schemas": _schemas()},
    }
