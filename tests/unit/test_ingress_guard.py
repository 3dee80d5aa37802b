"""The ingress under forged traffic, driven as an ASGI app (no server, no broker): refusals
before the body is read, the bound on concurrent requests, and the heavy-verification
thread. Over real HTTP: tests/integration/test_ingress_guard_http.py."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from streams.core.jsjson import LIGHT_MAX_CONTAINERS
from streams.core.signing import Credentials, Verified, WebhookVerifier
from streams.ingress.app import Ingress
from streams.settings import Settings
from tests.support import BEARER, FIXTURES, SECRET, RecordingPublisher, compact, sign

GOOD = compact((FIXTURES / "course.added.json").read_bytes())
# Forged and heavy: more brackets than the light path parses on the event loop.
HEAVY = (b'{"type":"course.added","payload":['
         + b",".join([b"[1]"] * (LIGHT_MAX_CONTAINERS + 1)) + b"]}")


def settings(**changes: Any) -> Settings:
    return Settings(webhook_secrets=(SECRET,), webhook_bearer_tokens=(BEARER,), **changes)


class Request:
    """One request to the app: its body handed over when ``release`` is set (so that a test
    can hold it half-way), and what the app answered."""

    def __init__(self, headers: dict[str, str], body: bytes = b"", *, held: bool = False,
                 announce: int | None = None) -> None:
        length = len(body) if announce is None else announce
        self.scope = {"type": "http", "path": "/webhooks/edume", "method": "POST", "headers": [
            (b"content-length", str(length).encode()),
            *((k.lower().encode(), v.encode()) for k, v in headers.items()),
        ]}
        self.body = body
        self.release = asyncio.Event()
        if not held:
            self.release.set()
        self.reads = 0
        self.started = asyncio.Event()  # set when the app first asks for the body
        self.messages: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        self.reads += 1
        self.started.set()
        await self.release.wait()
        return {"type": "http.request", "body": self.body, "more_body": False}

    async def send(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int:
        return int(self.messages[0]["status"])

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.messages[0]["headers"])

    @property
    def answer(self) -> Any:
        return orjson.loads(self.messages[1]["body"])


@contextlib.asynccontextmanager
async def running(app: Ingress) -> AsyncIterator[Ingress]:
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    started = asyncio.Event()

    async def lifespan_send(message: dict[str, Any]) -> None:
        if message["type"] == "lifespan.startup.complete":
            started.set()

    await queue.put({"type": "lifespan.startup"})
    task = asyncio.create_task(app({"type": "lifespan"}, queue.get, lifespan_send))
    await asyncio.wait_for(started.wait(), 5)
    try:
        yield app
    finally:
        await queue.put({"type": "lifespan.shutdown"})
        await asyncio.wait_for(task, 5)


async def call(app: Ingress, request: Request) -> Request:
    await asyncio.wait_for(app(request.scope, request.receive, request.send), 10)
    return request


def metric(app: Ingress, text: str) -> bool:
    return text.encode() in app.metrics.render()


# ------------------------------------------------------------- refused before the body


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing"),
        ({"Authorization": "Bearer not-a-configured-token"}, "mismatch"),
        ({"Authorization": f"Basic {BEARER}"}, "mismatch"),
        ({"X-Edume-Signature": "not-hex"}, "mismatch"),
        ({"X-Edume-Signature": "00" * 31}, "mismatch"),
    ],
)
async def test_headers_no_body_can_vouch_for_are_refused_before_the_body(
    headers: dict[str, str], reason: str
) -> None:
    """The contract's "answered before its body is read", for a missing signature and for
    any header no body could make authentic; the connection is closed, as the announced
    megabyte was never read."""
    async with running(Ingress(settings(), publisher=RecordingPublisher())) as app:  # type: ignore[arg-type]
        request = await call(app, Request(headers, held=True, announce=1_000_000))
        assert request.reads == 0
        assert request.status == 401
        assert request.headers[b"connection"] == b"close"
        assert "error" in request.answer
        assert metric(app, f'edume_ingress_verification_failures_total{{reason="{reason}"}} 1.0')


async def test_a_refusal_without_a_body_keeps_the_connection() -> None:
    async with running(Ingress(settings(), publisher=RecordingPublisher())) as app:  # type: ignore[arg-type]
        request = await call(app, Request({}, b""))
        assert request.status == 401 and b"connection" not in request.headers


async def test_a_wrong_signature_is_still_judged_on_its_body() -> None:
    """A well-formed signature may match the body's JavaScript form: the body is read."""
    publisher = RecordingPublisher()
    async with running(Ingress(settings(), publisher=publisher)) as app:  # type: ignore[arg-type]
        forged = await call(app, Request({"X-Edume-Signature": sign(b"other")}, GOOD))
        assert forged.reads == 1 and forged.status == 401
        pretty = orjson.dumps(orjson.loads(GOOD), option=orjson.OPT_INDENT_2)
        genuine = await call(app, Request({"X-Edume-Signature": sign(GOOD)}, pretty))
        assert genuine.status == 202, genuine.answer
        bearer = await call(app, Request({"Authorization": f"Bearer {BEARER}"}, GOOD))
        assert bearer.status == 202 and bearer.answer["duplicate"] is True
    assert [r[2] for r in publisher.records] == [GOOD]


# ------------------------------------------------------------------- concurrency bound


async def test_one_request_over_the_limit_gets_503_before_its_body() -> None:
    publisher = RecordingPublisher()
    app = Ingress(settings(ingress_max_concurrent_requests=2, retry_after_s=7),
                  publisher=publisher)  # type: ignore[arg-type]
    async with running(app):
        held = [Request({"X-Edume-Signature": sign(GOOD)}, GOOD, held=True) for _ in range(2)]
        tasks = [asyncio.create_task(call(app, r)) for r in held]
        await asyncio.wait_for(asyncio.gather(*(r.started.wait() for r in held)), 5)
        assert metric(app, "edume_ingress_requests_in_flight 2.0")
        over = await call(app, Request({"X-Edume-Signature": sign(GOOD)}, GOOD, held=True))
        assert over.reads == 0
        assert over.status == 503
        assert over.headers[b"retry-after"] == b"7" and over.headers[b"connection"] == b"close"
        assert metric(app, 'edume_ingress_requests_total{outcome="overloaded"} 1.0')
        for r in held:
            r.release.set()
        answers = await asyncio.gather(*tasks)
        assert sorted(r.status for r in answers) == [202, 202]
        assert metric(app, "edume_ingress_requests_in_flight 0.0")
        again = await call(app, Request({"X-Edume-Signature": sign(GOOD)}, GOOD))
        assert again.status == 202


async def test_refusals_before_the_body_do_not_count_against_the_limit() -> None:
    app = Ingress(settings(ingress_max_concurrent_requests=1),
                  publisher=RecordingPublisher())  # type: ignore[arg-type]
    async with running(app):
        held = Request({"X-Edume-Signature": sign(GOOD)}, GOOD, held=True)
        task = asyncio.create_task(call(app, held))
        await asyncio.wait_for(held.started.wait(), 5)
        unsigned = await call(app, Request({}, GOOD))
        assert unsigned.status == 401  # not 503: it never took a place
        held.release.set()
        assert (await task).status == 202


# ------------------------------------------------------------ heavy bodies, off the loop


class RecordingVerifier(WebhookVerifier):
    """The real verifier, noting on which thread each full (not light) verification ran
    and, when ``gate`` is given, holding it there until the test opens the gate."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        super().__init__((SECRET,), (BEARER,))
        self.full_on: list[int] = []
        self.gate = gate
        self.entered = threading.Event()

    def verify_body(self, body: bytes, credentials: Credentials, *,
                    light: bool = False) -> Verified:
        if not light:
            self.full_on.append(threading.get_ident())
            self.entered.set()
            if self.gate is not None:
                assert self.gate.wait(10)
        return super().verify_body(body, credentials, light=light)


async def test_a_heavy_body_is_verified_off_the_event_loop() -> None:
    verifier = RecordingVerifier()
    publisher = RecordingPublisher()
    app = Ingress(settings(), verifier=verifier, publisher=publisher)  # type: ignore[arg-type]
    async with running(app):
        forged = await call(app, Request({"X-Edume-Signature": sign(b"x")}, HEAVY))
        assert forged.status == 401
        genuine = await call(app, Request({"X-Edume-Signature": sign(HEAVY)}, HEAVY))
        assert genuine.status == 202  # authentic, schema mismatch: the DLQ, raw
    loop_thread = threading.get_ident()
    assert len(verifier.full_on) == 2 and loop_thread not in verifier.full_on
    assert publisher.records[0][2] == HEAVY


async def test_a_second_heavy_body_waits_for_none_it_gets_503() -> None:
    gate = threading.Event()
    verifier = RecordingVerifier(gate)
    app = Ingress(settings(retry_after_s=3), verifier=verifier,
                  publisher=RecordingPublisher())  # type: ignore[arg-type]
    async with running(app):
        first = asyncio.create_task(
            call(app, Request({"X-Edume-Signature": sign(b"x")}, HEAVY)))
        await asyncio.to_thread(verifier.entered.wait, 5)
        second = await call(app, Request({"X-Edume-Signature": sign(b"y")}, HEAVY))
        assert second.status == 503 and second.headers[b"retry-after"] == b"3"
        assert "busy" in second.answer["error"]
        # a light body is not held up by the busy thread
        light = await call(app, Request({"X-Edume-Signature": sign(GOOD)}, GOOD))
        assert light.status == 202
        gate.set()
        assert (await first).status == 401
        third = await call(app, Request({"X-Edume-Signature": sign(b"z")}, HEAVY))
        assert third.status == 401
    assert metric(app, 'edume_ingress_requests_total{outcome="overloaded"} 1.0')
