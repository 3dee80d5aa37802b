"""Test helpers: signed requests, an in-process ingress served over real loopback HTTP (or
called as an ASGI app with a producer that records), and a topic reader that counts records
instead of trusting end offsets."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import uvicorn

from streams.core.headers import Headers
from streams.ingress.app import Ingress
from streams.ingress.server import uvicorn_config
from streams.kafka.admin import ensure_topics, partitions_of
from streams.kafka.clients import KafkaConnection, aio_consumer
from streams.kafka.embedded import free_port
from streams.kafka.publisher import Delivery
from streams.settings import Settings

FIXTURES = Path(__file__).parent / "fixtures" / "webhooks"
SECRET = "test-secret-0123456789"
SECOND_SECRET = "rotated-secret-abcdef"
BEARER = "test-bearer-token-xyz"


def manifest() -> list[dict[str, Any]]:
    return json.loads((FIXTURES / "manifest.json").read_text())


def sign(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def compact(raw: bytes) -> bytes:
    """The single-line form, by the stdlib: an oracle independent of streams.core.jsjson (valid for
    the fixtures, which hold no floats that JavaScript and Python print differently)."""
    return json.dumps(json.loads(raw), separators=(",", ":"), ensure_ascii=False).encode()


def make_settings(bootstrap: str, prefix: str, **changes: Any) -> Settings:
    base = Settings(
        kafka_bootstrap_servers=bootstrap,
        topic_prefix=prefix,
        webhook_secrets=(SECRET, SECOND_SECRET),
        webhook_bearer_tokens=(BEARER,),
        ingress_port=free_port(),
        kafka_enable_idempotence=True,
        publish_timeout_s=2.0,
        ready_probe_interval_s=0.3,
    )
    return base.replace(**changes) if changes else base


@dataclass
class RunningIngress:
    app: Ingress
    settings: Settings
    url: str
    http: aiohttp.ClientSession

    async def post(
        self, body: bytes, headers: dict[str, str] | None = None, *, secret: str | None = SECRET
    ) -> tuple[int, dict[str, Any], Any]:
        h = {"Content-Type": "application/json"}
        if secret is not None:
            h["X-Edume-Signature"] = sign(body, secret)
        h.update(headers or {})
        async with self.http.post(self.url + "/webhooks/edume", data=body, headers=h) as r:
            text = await r.read()
            return r.status, dict(r.headers), json.loads(text) if text else None

    async def get(self, path: str) -> tuple[int, bytes]:
        async with self.http.get(self.url + path) as r:
            return r.status, await r.read()

    def topic(self, name: str) -> str:
        return self.settings.topic_prefix + name


@contextlib.asynccontextmanager
async def serve_ingress(
    settings: Settings, create_topics: bool = True
) -> AsyncIterator[RunningIngress]:
    if create_topics:
        await ensure_topics(settings.kafka, settings.topic_prefix)
    app = Ingress(settings)
    server = uvicorn.Server(uvicorn_config(app, settings))
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 15
    while not server.started:
        if task.done() or time.monotonic() > deadline:
            raise RuntimeError("ingress did not start")
        await asyncio.sleep(0.02)
    assert await app.publisher.wait_started(15), "producer did not connect"
    async with aiohttp.ClientSession() as http:
        try:
            yield RunningIngress(
                app, settings, f"http://{settings.ingress_host}:{settings.ingress_port}", http
            )
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, 30)


async def read_topic(
    kafka: str | KafkaConnection, topic: str, expected: int, *, timeout_s: float = 15.0,
    grace_s: float = 0.7,
) -> list[Any]:
    """Every record of ``topic`` from the beginning, counted: waits until ``expected`` records
    arrived, then ``grace_s`` more for any that should not be there. Never trusts end
    offsets (the embedded broker reports them wrong for multi-record batches). ``kafka``: a
    bootstrap address (plaintext) or a connection."""
    connection = KafkaConnection(kafka) if isinstance(kafka, str) else kafka
    consumer = aio_consumer(
        connection,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    try:
        tps = await partitions_of(consumer, [topic])
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        grace_until: float | None = None
        while True:
            now = time.monotonic()
            if grace_until is None and len(records) >= expected:
                grace_until = now + grace_s
            if (grace_until is not None and now >= grace_until) or now >= deadline:
                break
            batch = await consumer.getmany(timeout_ms=100)
            for recs in batch.values():
                records.extend(recs)
        return records
    finally:
        await consumer.stop()


class RecordingPublisher:
    """What the ingress hands its producer, acknowledged at once."""

    delivery_timeout_s = 10.0
    ready = True

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, bytes | None, Headers]] = []

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def mark_unreachable(self) -> None:
        return None

    def publish(self, topic: str, key: bytes, value: bytes | None, hdrs: Headers,
                delivery: Delivery, *, partition: int | None = None) -> None:
        self.records.append((topic, key, value, hdrs))
        asyncio.get_running_loop().call_soon(delivery.settle, None)


async def ingress_publishes(
    body: bytes, settings: Settings
) -> tuple[dict[str, Any], tuple[str, bytes, bytes | None, dict[str, bytes]]]:
    """POST ``body``, signed with ``SECRET``, to the ingress's ASGI app (no broker, no
    server): its 202 answer, and the one record it handed its producer."""
    publisher = RecordingPublisher()
    app = Ingress(settings, publisher=publisher)  # type: ignore[arg-type]
    lifespan: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    started = asyncio.Event()

    async def lifespan_send(message: dict[str, Any]) -> None:
        if message["type"] == "lifespan.startup.complete":
            started.set()

    await lifespan.put({"type": "lifespan.startup"})
    running = asyncio.create_task(app({"type": "lifespan"}, lifespan.get, lifespan_send))
    try:
        await asyncio.wait_for(started.wait(), 5)
        scope = {"type": "http", "path": "/webhooks/edume", "method": "POST", "headers": [
            (b"x-edume-signature", sign(body).encode()),
            (b"content-length", str(len(body)).encode()),
        ]}
        requests = [{"type": "http.request", "body": body, "more_body": False}]
        answers: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return requests.pop(0)

        async def send(message: dict[str, Any]) -> None:
            answers.append(message)

        await asyncio.wait_for(app(scope, receive, send), 5)
    finally:
        await lifespan.put({"type": "lifespan.shutdown"})
        await asyncio.wait_for(running, 5)
    assert answers[0]["status"] == 202, answers
    ((topic, key, value, hdrs),) = publisher.records
    return json.loads(answers[1]["body"]), (
        topic, key, value, {k: v for k, v in hdrs if isinstance(v, bytes)})
