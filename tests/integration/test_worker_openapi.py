"""Schemathesis against a real worker process over loopback: the document at ``/openapi.json``
says exactly what the worker's query API does (status codes, bodies, headers, methods).

One worker serves the module, on a topic prefix of its own, once every eduMe sample, a
generated course and two policies are applied: the ids the document gives as examples
exist, so schemathesis's examples phase gets 200s and checks real bodies (a deleted
course, surveys, scores, a non-empty gate) against the closed schemas, not only 404s.
The worker is a subprocess and schemathesis's calls block, so the tests are synchronous.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator
from typing import Any

import hypothesis
import pytest
import schemathesis

from schemas.outputs import TrainingPolicy
from streams.kafka.admin import ensure_topics
from streams.kafka.embedded import EmbeddedBroker
from streams.tools.policy import write_policy
from streams.worker.openapi import (
    COURSE_PATH,
    MANDATORY_PATH,
    PROGRESS_PATH,
    READ_ONLY,
    worker_openapi_document,
)
from tests.support import FIXTURES, compact, make_settings, manifest
from tests.worker_support import (
    API_TOKEN,
    Event,
    WorkerProcess,
    bearer,
    course_story,
    eventually,
    fold,
    publish,
)

pytestmark = pytest.mark.integration

POLICIES = {17167: None, 9961: [5]}
"""Mandatory courses (course -> groups; None: every group): 10217 (group 5) has 9961 left,
5398399 has completed 17167."""
EVENTS = [
    *(Event(entry["family"], entry["key"], compact((FIXTURES / entry["file"]).read_bytes()))
      for entry in manifest()),
    *course_story(22300, [1, 2]),  # a course that is not deleted
]
GATES = {
    10217: {"userId": 10217, "complete": False, "completedCourseIds": [],
            "remainingCourseIds": [9961]},
    5398399: {"userId": 5398399, "complete": True, "completedCourseIds": [17167],
              "remainingCourseIds": []},
}


@pytest.fixture(scope="module")
async def worker(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
                 ) -> AsyncIterator[WorkerProcess]:
    prefix = f"t{uuid.uuid4().hex[:10]}."
    settings = make_settings(broker.bootstrap, prefix)
    await ensure_topics(broker.kafka, prefix)
    for course, groups in POLICIES.items():
        write_policy(settings, course,
                     TrainingPolicy(courseId=course, mandatory=True, groupIds=groups))
    running = WorkerProcess(broker, prefix, tmp_path_factory.mktemp("worker")).start()
    try:
        await running.wait_ready(90)
        applied = publish(broker.bootstrap, prefix, EVENTS) + len(POLICIES)

        async def all_applied() -> bool:
            return await running.metric("edume_worker_events_applied_total") == applied

        assert await eventually(all_applied), running.log_text()[-3000:]
        yield running
    finally:
        assert running.stop() == 0, running.log_text()[-3000:]


# Loaded at collection, as in test_openapi_conformance.py: schemathesis's fixture-based
# loader does not run on pytest 9. The first test checks that the worker serves exactly it.
# The calls carry a WORKER_API_TOKENS token; schemathesis adds none of its own (made-up
# ones cannot be valid), and its auth check still sends each data request without a token
# and with a made-up one, and expects 401 with the documented answer.
DOCUMENT = worker_openapi_document()
schema = schemathesis.openapi.from_dict(
    DOCUMENT,
    config=schemathesis.Config.from_dict({"generation": {"with-security-parameters": False}}),
)
AUTH = bearer(API_TOKEN)


def _call(url: str, method: str = "GET") -> tuple[int, Any, Any]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.headers, json.loads(answer.read())
    except urllib.error.HTTPError as answer:
        return answer.code, answer.headers, json.loads(answer.read())


def test_the_worker_serves_the_document_under_test(worker: WorkerProcess) -> None:
    status, _, served = _call(worker.url + "/openapi.json")
    assert status == 200 and served == json.loads(json.dumps(DOCUMENT))


@schema.parametrize()
@hypothesis.settings(max_examples=40, deadline=None)
def test_the_worker_does_what_its_openapi_document_says(
    case: schemathesis.Case, worker: WorkerProcess
) -> None:
    """Every default check: no server error, status codes, content types, headers and bodies
    as documented, ids that break the pattern refused and ones that keep it accepted, 405
    with ``Allow`` for a method a page does not list. The examples phase asks for the
    document's example ids, which exist here. Authentication enforced: 401 without a
    token or with a wrong one on every data page, none asked on the open ones."""
    case.call_and_validate(base_url=worker.url, headers=AUTH)


def _example_ids(path: str) -> list[str]:
    (parameter,) = DOCUMENT["paths"][path]["get"]["parameters"]
    return [example["value"] for example in parameter["examples"].values()]


LEARNERS, COURSES = fold(EVENTS, "learner"), fold(EVENTS, "course")
KNOWN = [
    *((COURSE_PATH, "course_id", str(c), COURSES[c].view()) for c in sorted(COURSES)),
    *((PROGRESS_PATH, "user_id", str(u), LEARNERS[u].view()) for u in sorted(LEARNERS)),
    *((MANDATORY_PATH, "user_id", str(u), gate) for u, gate in GATES.items()),
]


@pytest.mark.parametrize(("path", "param", "key", "expected"), KNOWN,
                         ids=[f"{path}={key}" for path, _, key, _ in KNOWN])
def test_every_key_written_is_answered_as_documented(
    worker: WorkerProcess, path: str, param: str, key: str, expected: dict[str, Any]
) -> None:
    """Each learner and course the events describe, as a case of its own: 200, a body that
    matches the document, and the state the pure reducers fold from the same events."""
    case = schema[path]["GET"].Case(path_parameters={param: key})
    response = case.call_and_validate(base_url=worker.url, headers=AUTH)
    assert response.status_code == 200
    assert response.json() == json.loads(json.dumps(expected))


@pytest.mark.parametrize("path", [COURSE_PATH, PROGRESS_PATH, MANDATORY_PATH])
def test_the_documented_examples_exist(path: str) -> None:
    """What the examples phase above relies on: the document's example ids are written here."""
    written = {(p, key) for p, _, key, _ in KNOWN}
    assert {(path, key) for key in _example_ids(path)} <= written


def test_an_unknown_path_is_a_json_404(worker: WorkerProcess) -> None:
    for path in ("/nope", "/learners//progress", "/catalog/courses/22299/", "/table/progress"):
        status, _, body = _call(worker.url + path)
        assert (status, body) == (404, {"error": "not found"}), path


def test_an_unlisted_method_is_a_json_405_with_allow(worker: WorkerProcess) -> None:
    for method in ("POST", "PUT", "DELETE", "OPTIONS"):
        status, headers, body = _call(worker.url + "/learners/10217/progress", method)
        assert (status, headers["Allow"]) == (405, READ_ONLY), method
        assert body == {"error": f"use {READ_ONLY}"}
