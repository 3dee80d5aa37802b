"""The ingress under forged traffic over real loopback HTTP, against the broker: refusals
before the body is read, the bound on concurrent requests, forged and heavy bodies. (No
figure is asserted here: the cost of a forged body is bench/forged_bench.py's.)"""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from streams.core.jsjson import LIGHT_MAX_CONTAINERS
from streams.kafka.embedded import EmbeddedBroker
from tests.support import (
    FIXTURES,
    RunningIngress,
    compact,
    make_settings,
    read_topic,
    serve_ingress,
    sign,
)

COURSE = "edume.course.events"


async def raw_request(host: str, port: int, head: bytes) -> tuple[asyncio.StreamReader,
                                                                 asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(head)
    await writer.drain()
    return reader, writer


def request_head(length: int, *extra: bytes) -> bytes:
    return (b"POST /webhooks/edume HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + b"".join(h + b"\r\n" for h in extra)
            + b"Content-Length: " + str(length).encode() + b"\r\n\r\n")


async def in_flight(running: RunningIngress) -> float:
    _, text = await running.get("/metrics")
    for line in text.decode().splitlines():
        if line.startswith("edume_ingress_requests_in_flight "):
            return float(line.split()[1])
    raise AssertionError("no in-flight gauge")


@pytest.mark.parametrize(
    "credentials",
    [(), (b"Authorization: Bearer not-one-of-ours",), (b"X-Edume-Signature: 1234",)],
    ids=["no credentials", "wrong bearer token", "malformed signature"],
)
async def test_a_megabyte_announced_and_never_sent_is_refused_at_once(
    broker: EmbeddedBroker, prefix: str, credentials: tuple[bytes, ...]
) -> None:
    """Headers alone decide: 401 at once, not after the body timeout, and the connection is
    closed rather than left waiting for the megabyte."""
    settings = make_settings(broker.bootstrap, prefix, request_timeout_s=6.0)
    async with serve_ingress(settings) as running:
        loop = asyncio.get_running_loop()
        started = loop.time()
        reader, writer = await raw_request(settings.ingress_host, settings.ingress_port,
                                           request_head(1_000_000, *credentials))
        try:
            response = await asyncio.wait_for(reader.read(), 5)  # to the server's close
        finally:
            writer.close()
        waited = loop.time() - started
        assert response.startswith(b"HTTP/1.1 401"), response[:60]
        assert b"connection: close" in response.lower()
        assert waited < 2.0  # the body timeout is 6 s
        body = compact((FIXTURES / "course.added.json").read_bytes())
        assert (await running.post(body))[0] == 202  # the ingress carries on


async def test_one_request_over_the_limit_gets_503_and_retry_after(
    broker: EmbeddedBroker, prefix: str
) -> None:
    settings = make_settings(broker.bootstrap, prefix, ingress_max_concurrent_requests=2,
                             retry_after_s=4)
    template = json.loads((FIXTURES / "course.added.json").read_bytes())
    bodies = []
    for course_id in (901, 902, 903, 904):
        template["payload"]["course"]["courseId"] = course_id
        bodies.append(json.dumps(template, separators=(",", ":")).encode())
    async with serve_ingress(settings) as running:
        slow = []
        for body in bodies[:2]:  # two senders stop half-way through their bodies
            head = request_head(len(body), b"X-Edume-Signature: " + sign(body).encode())
            slow.append(await raw_request(settings.ingress_host, settings.ingress_port,
                                          head + body[:50]))
        for _ in range(100):
            if await in_flight(running) == 2:
                break
            await asyncio.sleep(0.05)
        assert await in_flight(running) == 2
        status, headers, answer = await running.post(bodies[2])
        assert status == 503, answer
        assert {k.lower(): v for k, v in headers.items()}["retry-after"] == "4"
        for (reader, writer), body in zip(slow, bodies[:2], strict=True):
            writer.write(body[50:])
            await writer.drain()
            status_line = await asyncio.wait_for(reader.readline(), 10)
            writer.close()
            assert status_line.startswith(b"HTTP/1.1 202"), status_line
        assert (await running.post(bodies[3]))[0] == 202
        _, text = await running.get("/metrics")
        assert b'edume_ingress_requests_total{outcome="overloaded"} 1' in text
        records = await read_topic(broker.bootstrap, running.topic(COURSE), 3)
        assert sorted(r.value for r in records) == sorted([bodies[0], bodies[1], bodies[3]])


async def test_a_forged_megabyte_of_numbers_is_refused(ingress: RunningIngress) -> None:
    rng = random.Random(3)
    numbers = ",".join(f"{rng.randrange(1, 10**6) / 100}" for _ in range(120_000))
    body = ('{"type":"course.added","payload":{"scores":[' + numbers + "]}}").encode()
    assert 900_000 < len(body) < ingress.settings.max_body_bytes
    status, _, answer = await ingress.post(body, secret="not-the-secret")
    assert status == 401 and "does not match" in answer["error"]
    good = compact((FIXTURES / "course.published.json").read_bytes())
    assert (await ingress.post(good))[0] == 202


async def test_a_heavy_body_signed_over_its_javascript_form_is_published(
    ingress: RunningIngress, broker: EmbeddedBroker
) -> None:
    """A body too heavy for the event loop (more brackets than the light path parses) is
    verified on the heavy-verification thread: forged, 401; signed over its JavaScript
    form and sent pretty-printed, published as that form."""
    doc = json.loads((FIXTURES / "course.added.json").read_bytes())
    doc["payload"]["extra"] = [[1.0, "2"]] * (LIGHT_MAX_CONTAINERS + 10)
    pretty = json.dumps(doc, indent=1).encode()
    value = json.dumps(doc, separators=(",", ":")).replace("1.0,", "1,").encode()
    forged = await ingress.post(pretty, secret="not-the-secret")
    assert forged[0] == 401
    status, _, answer = await ingress.post(pretty, secret=None,
                                           headers={"X-Edume-Signature": sign(value)})
    assert status == 202 and answer["topic"] == ingress.topic(COURSE), answer
    [record] = await read_topic(broker.bootstrap, ingress.topic(COURSE), 1)
    assert record.value == value
