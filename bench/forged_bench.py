"""Forged-signature cost: what a request with a wrong ``X-Edume-Signature`` and a body of
about 0.98 MB costs the ingress's event loop, beside a genuine request with the same body.

    python bench/forged_bench.py [--requests 25] [--before REV] [--http]

Phase 1 (always) drives the ingress's ASGI app in this process, with a producer that
acknowledges at once, and times each request on the loop's thread (``time.thread_time``:
CPU of that thread alone, so a body verified on the heavy-verification thread shows what
it leaves on the loop). One row per body family, forged median and max, and the genuine
request with the same body (signed over its raw bytes) as the baseline. ``--before REV``
adds the verifier of that git revision (``git show REV:streams/core/...``) on the same
bodies, called the way it was then (synchronously, on the loop), as the before figure.

Phase 2 (``--http``) starts the embedded broker and ``edume-streams ingress`` and sends the
headline body over loopback HTTP, one request at a time: the ingress process's CPU per
request (all threads, from /proc) and the latency seen by the client, forged and genuine.

Target: forged under 50 ms on the loop for every family. Every loop is bounded by
``--requests``; the servers listen on 127.0.0.1 and are stopped by their process ids.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import http.client
import importlib.util
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.procstats import cpu_seconds, stop, wait_http  # noqa: E402
from streams.core.errors import VerificationError  # noqa: E402
from streams.ingress.app import Ingress  # noqa: E402
from streams.kafka.publisher import Delivery  # noqa: E402
from streams.runtime import tune_gc  # noqa: E402
from streams.settings import Settings  # noqa: E402

SECRET = "bench-secret"
TARGET_BYTES = 980_000
HEADLINE = "floats 123.45"
EVENT_HEAD = '{"type":"learner.activity.finished","payload":{"scores":['
EVENT_TAIL = '],"user":{"userId":1}},"timestamp":"2022-07-21T13:01:59.636Z"}'


def numbers_body(item: Callable[[int], str]) -> bytes:
    """A webhook whose payload is one array of numbers, filled to about 0.98 MB."""
    parts = [EVENT_HEAD]
    size = len(EVENT_HEAD) + len(EVENT_TAIL)
    i = 0
    while size < TARGET_BYTES:
        text = item(i)
        parts.append(text if i == 0 else "," + text)
        size += len(text) + 1
        i += 1
    parts.append(EVENT_TAIL)
    return "".join(parts).encode()


def families() -> dict[str, bytes]:
    """The headline body (decimals, as scores are) and the other shapes of numbers, then
    the shapes that take the heavy-verification thread."""
    rng = random.Random(17)
    return {
        HEADLINE: numbers_body(lambda i: f"{rng.randrange(1, 10**6) / 100}"),
        "integers": numbers_body(lambda i: str(rng.randrange(10**9))),
        "integral floats 1.0": numbers_body(lambda i: "1.0"),
        "floats 1.5 (shortest)": numbers_body(lambda i: "1.5"),
        "1e16..1e21, 1 in 200": numbers_body(
            lambda i: f"{rng.randrange(10, 99)}e{rng.randrange(15, 20)}" if i % 200 == 0
            else "2.5"),
        "integers > 2**53, 1 in 400": numbers_body(
            lambda i: str(2**53 + rng.randrange(1, 10**15)) if i % 400 == 0 else "7"),
        "pretty-printed decimals": numbers_body(lambda i: f"\n    {rng.randrange(10**4)}.5"),
        "heavy: 1e16..1e21 each": numbers_body(
            lambda i: f"{rng.randrange(10, 99) / 10}e{rng.randrange(16, 21)}"),
        "heavy: [1] arrays": numbers_body(lambda i: "[1]"),
        "heavy: a lone surrogate": numbers_body(lambda i: '"\\ud800"' if i == 0 else "1"),
    }


def sign(body: bytes) -> str:
    return hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def variant(body: bytes, i: int) -> bytes:
    """The same body with another timestamp: another event, so that no genuine request of
    the run is answered as a redelivery (its publish skipped)."""
    return body.replace(b'59.636Z"}', f'59.{i:03d}Z"}}'.encode())


def forged_signature(rng: random.Random) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(64))


class AckingPublisher:
    """A producer that acknowledges every record at once (no broker in phase 1)."""

    delivery_timeout_s = 10.0
    ready = True

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def mark_unreachable(self) -> None:
        return None

    def publish(self, topic: str, key: bytes, value: bytes | None, headers: Any,
                delivery: Delivery, *, partition: int | None = None) -> None:
        asyncio.get_running_loop().call_soon(delivery.settle, None)


async def one_request(app: Ingress, body: bytes, signature: str) -> tuple[int, float, float]:
    """Status, loop-thread CPU seconds and wall seconds of one request through the app."""
    scope = {"type": "http", "path": "/webhooks/edume", "method": "POST", "headers": [
        (b"x-edume-signature", signature.encode()),
        (b"content-length", str(len(body)).encode()),
    ]}
    # The body arrives as uvicorn hands it over: 64 KiB pieces.
    pieces = [body[i:i + 65536] for i in range(0, len(body), 65536)]
    messages = [{"type": "http.request", "body": piece, "more_body": i < len(pieces) - 1}
                for i, piece in enumerate(pieces)]
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    cpu, wall = time.thread_time(), time.perf_counter()
    await app(scope, receive, send)
    return status[0], time.thread_time() - cpu, time.perf_counter() - wall


async def phase_app(bodies: dict[str, bytes], requests: int) -> dict[str, dict[str, float]]:
    settings = Settings(webhook_secrets=(SECRET,), topic_prefix="bench.")
    app = Ingress(settings, publisher=AckingPublisher())  # type: ignore[arg-type]
    lifespan: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    started = asyncio.Event()

    async def lifespan_send(message: dict[str, Any]) -> None:
        if message["type"] == "lifespan.startup.complete":
            started.set()

    await lifespan.put({"type": "lifespan.startup"})
    running = asyncio.create_task(app({"type": "lifespan"}, lifespan.get, lifespan_send))
    await started.wait()
    tune_gc()  # as `edume-streams ingress` does once the app is built
    rng = random.Random(5)
    results: dict[str, dict[str, float]] = {}
    try:
        for name, body in bodies.items():
            genuine = []
            for i in range(3):
                distinct = variant(body, i)
                status, cpu, _ = await one_request(app, distinct, sign(distinct))
                assert status == 202, (name, status)
                genuine.append(cpu)
            forged, walls = [], []
            for _ in range(requests):
                status, cpu, wall = await one_request(app, body, forged_signature(rng))
                assert status in (401, 503), (name, status)
                forged.append(cpu)
                walls.append(wall)
            results[name] = {"size": len(body), "median": statistics.median(forged),
                             "max": max(forged), "wall_median": statistics.median(walls),
                             "genuine": statistics.median(genuine)}
    finally:
        await lifespan.put({"type": "lifespan.shutdown"})
        await running
    return results


def load_before(rev: str) -> Any:
    """The ``WebhookVerifier`` of git revision ``rev``, with that revision's jsjson."""
    def source(path: str) -> str:
        return subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout

    jsjson = types.ModuleType("before_jsjson")
    exec(compile(source("streams/core/jsjson.py"), "before_jsjson", "exec"), jsjson.__dict__)
    sys.modules["before_jsjson"] = jsjson
    signing_src = source("streams/core/signing.py").replace(
        "from streams.core.jsjson import", "from before_jsjson import")
    spec = importlib.util.spec_from_loader("before_signing", loader=None)
    assert spec is not None
    signing = importlib.util.module_from_spec(spec)
    exec(compile(signing_src, "before_signing", "exec"), signing.__dict__)
    return signing.WebhookVerifier((SECRET,))


def phase_before(rev: str, bodies: dict[str, bytes], requests: int) -> dict[str, dict[str, float]]:
    verifier = load_before(rev)
    rng = random.Random(5)
    out = {}
    for name, body in bodies.items():
        times = []
        for _ in range(max(3, requests // 3)):
            cpu = time.thread_time()
            try:
                verifier.verify(body, forged_signature(rng))
            except VerificationError:
                pass
            times.append(time.thread_time() - cpu)
        out[name] = {"median": statistics.median(times), "max": max(times)}
    return out


def phase_http(body: bytes, requests: int) -> dict[str, float]:
    from streams.kafka.embedded import EmbeddedBroker, free_port

    work = Path(tempfile.mkdtemp(prefix="edume-forged-"))
    try:
        return _http_run(body, requests, work, EmbeddedBroker, free_port)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _http_run(body: bytes, requests: int, work: Path, broker_type: Any,
              free_port: Callable[[], int]) -> dict[str, float]:
    with broker_type(log_path=work / "broker.log") as broker:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "TOPIC_"))}
        env.update({"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "KAFKA_EMBEDDED_BROKER": "true",
                    "TOPIC_PREFIX": "bench.", "EDUME_WEBHOOK_SECRETS": SECRET,
                    "INGRESS_PORT": str(port), "LOG_LEVEL": "WARNING"})
        subprocess.run([sys.executable, "-m", "streams", "topics", "create"], cwd=ROOT, env=env,
                       check=True, capture_output=True, timeout=120)
        ingress = subprocess.Popen([sys.executable, "-m", "streams", "ingress"], cwd=ROOT,
                                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_http(f"http://127.0.0.1:{port}/readyz", 30)
            rng = random.Random(9)

            def run(genuine: bool, count: int, expect: int) -> tuple[float, float]:
                """CPU per request (the mean: /proc counts in 10 ms ticks) and median latency."""
                walls = []
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                time.sleep(0.2)
                before, started_all = cpu_seconds(ingress.pid), time.perf_counter()
                for i in range(count):
                    sent = variant(body, i) if genuine else body
                    signature = sign(sent) if genuine else forged_signature(rng)
                    started = time.perf_counter()
                    conn.request("POST", "/webhooks/edume", body=sent, headers={
                        "Content-Type": "application/json", "X-Edume-Signature": signature})
                    response = conn.getresponse()
                    response.read()
                    walls.append(time.perf_counter() - started)
                    assert response.status == expect, response.status
                conn.close()
                time.sleep(0.2)  # the producer's threads finish their part
                idle = (time.perf_counter() - started_all) * idle_per_s
                return (cpu_seconds(ingress.pid) - before - idle) / count, statistics.median(walls)

            # The ingress's CPU per second with no request (librdkafka's polls, the probe).
            start = cpu_seconds(ingress.pid)
            time.sleep(2.0)
            idle_per_s = (cpu_seconds(ingress.pid) - start) / 2.0
            genuine_cpu, genuine_wall = run(True, max(3, requests // 3), 202)
            forged_cpu, forged_wall = run(False, requests, 401)
            return {"forged_cpu": forged_cpu, "forged_wall": forged_wall,
                    "genuine_cpu": genuine_cpu, "genuine_wall": genuine_wall}
        finally:
            stop(ingress)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=25, help="forged requests per body")
    parser.add_argument("--before", metavar="REV", help="also time this git revision's verifier")
    parser.add_argument("--http", action="store_true",
                        help="also over loopback HTTP against `edume-streams ingress`")
    args = parser.parse_args()
    bodies = families()
    print(f"bodies of {min(map(len, bodies.values())):,}-{max(map(len, bodies.values())):,} "
          f"bytes; {args.requests} forged requests each; times on the loop's thread (CPU)")
    before = phase_before(args.before, bodies, args.requests) if args.before else {}
    results = asyncio.run(phase_app(bodies, args.requests))
    ms = 1000.0
    head = f"{'body':<30} {'forged median':>13} {'max':>7} {'genuine':>8}"
    if before:
        head += f"  {'before: median':>14} {'max':>7}"
    print(head)
    for name, r in results.items():
        line = (f"{name:<30} {r['median'] * ms:10.1f} ms {r['max'] * ms:7.1f} "
                f"{r['genuine'] * ms:8.1f}")
        if name in before:
            line += f"  {before[name]['median'] * ms:11.1f} ms {before[name]['max'] * ms:7.1f}"
        print(line)
    worst = max(r["max"] for r in results.values())
    print(f"worst forged request on the loop: {worst * ms:.1f} ms (target < 50)")
    if args.http:
        h = phase_http(bodies[HEADLINE], args.requests)
        print(f"over HTTP ({HEADLINE}, {len(bodies[HEADLINE]):,} bytes): ingress CPU per request "
              f"(mean, all threads, idle CPU taken off) forged {h['forged_cpu'] * ms:.1f} ms, "
              f"genuine {h['genuine_cpu'] * ms:.1f} ms; client latency (median) forged "
              f"{h['forged_wall'] * ms:.1f} ms, genuine {h['genuine_wall'] * ms:.1f} ms")


if __name__ == "__main__":
    main()
