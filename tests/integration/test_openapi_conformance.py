"""Schemathesis against a real ingress over loopback: the document at ``/openapi.json`` says
exactly what the ingress does (status codes, bodies, headers, methods, authentication).

Schemathesis's calls are blocking, so the ingress runs on an event loop of its own in a
thread (the session loop is idle while a synchronous test runs).
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
import uuid
from collections.abc import Iterator

import hypothesis
import pytest
import schemathesis

from streams.ingress.openapi import openapi_document
from streams.kafka.embedded import EmbeddedBroker
from streams.settings import Settings
from tests.support import BEARER, RunningIngress, make_settings, serve_ingress

AUTH = {"Authorization": f"Bearer {BEARER}"}


@pytest.fixture(scope="module")
def threaded_ingress(broker: EmbeddedBroker) -> Iterator[RunningIngress]:
    settings = make_settings(broker.bootstrap, f"t{uuid.uuid4().hex[:10]}.")
    started = threading.Event()
    box: dict[str, object] = {}

    async def serve() -> None:
        stop = asyncio.Event()
        box["stop"] = (asyncio.get_running_loop(), stop)
        try:
            async with serve_ingress(settings) as running:
                box["running"] = running
                started.set()
                await stop.wait()
        finally:
            started.set()

    def run() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:  # reported by the fixture
            box["error"] = exc

    thread = threading.Thread(target=run, name="ingress", daemon=True)
    thread.start()
    assert started.wait(30), "the ingress did not start"
    if "running" not in box:
        raise RuntimeError("the ingress did not start") from box.get("error")  # type: ignore[arg-type]
    try:
        yield box["running"]  # type: ignore[misc]
    finally:
        loop, stop = box["stop"]  # type: ignore[misc]
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        assert not thread.is_alive(), "the ingress did not stop"


# Loaded at collection: schemathesis's fixture-based loader does not run on pytest 9. The
# first test checks that the ingress serves exactly this document. Schemathesis sends no
# credentials of its own (made-up ones cannot be valid; its auth check still sends
# requests without any and with invalid ones, and expects 401).
DOCUMENT = openapi_document(Settings())
schema = schemathesis.openapi.from_dict(
    DOCUMENT,
    config=schemathesis.Config.from_dict({"generation": {"with-security-parameters": False}}),
)


def test_the_ingress_serves_the_document_under_test(threaded_ingress: RunningIngress) -> None:
    with urllib.request.urlopen(threaded_ingress.url + "/openapi.json", timeout=10) as answer:
        assert json.loads(answer.read()) == json.loads(json.dumps(DOCUMENT))


@schema.parametrize()
@hypothesis.settings(max_examples=50, deadline=None)
def test_the_ingress_does_what_its_openapi_document_says(
    case: schemathesis.Case, threaded_ingress: RunningIngress
) -> None:
    """Every default check: no server error, status codes, content types, headers and
    bodies as documented, valid bodies accepted and invalid ones refused, 405 with
    ``Allow`` for a method a path does not list, authentication enforced."""
    case.call_and_validate(base_url=threaded_ingress.url, headers=AUTH)
