"""Ingress benchmark: signed 600-byte webhooks over loopback at 64 connections, broker included,
against a bare handler (reads the body, answers 202) in the same run.

    python bench/ingress_bench.py [--ingress-seconds 40] [--bare-seconds 10] [--pool 600000]
                                  [--broker {both,kafka,embedded}]

Runs on each broker of ``--broker`` in turn, in one run: Apache Kafka (one KRaft node,
``tests/apache_kafka.py``; only where ``java`` and ``mvn`` are present, else the run says so
and uses the embedded broker alone), then the embedded broker. On each, the ingress is
measured, then the bare handlers while that broker still runs (idle), so that every ratio is
to a baseline of the same run on the same broker; each figure is printed labelled with its
broker, then a side-by-side summary table.

Prints requests/s, p50/p99 latency, the ingress's peak RSS, and the ratio to the fastest bare
handler. The load generator is wrk (a C program: it disturbs the measurement far less than a
Python client); ``apt-get install wrk`` if it is missing. Every request carries a distinct
event, so none is answered from the redelivery cache. Targets: ratio >= 0.5, p99 < 25 ms,
RSS < 150 MB after 100,000 requests.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.brokers import (  # noqa: E402
    LABELS,
    add_option,
    broker_pid,
    chosen,
    fmt,
    running,
    summary,
    tag,
    wait_for_topics,
)
from bench.procstats import cpu_seconds, rss_mb, stop, wait_http  # noqa: E402
from streams.kafka.admin import ensure_topics  # noqa: E402
from streams.kafka.embedded import free_port  # noqa: E402

SECRET = "bench-secret"
CONNECTIONS = 64
THREADS = 2
LIGHT_CONNECTIONS = 4  # latency without queueing: each request mostly alone in the server
LIGHT_SECONDS = 5


def make_bodies(path: Path, count: int, first: int = 0) -> int:
    """Distinct learner events of about 600 bytes, compact, each signed over its bytes."""
    size = 0
    with path.open("w") as out:
        for i in range(first, first + count):
            doc = {
                "type": "learner.activity.finished",
                "payload": {
                    "type": "lesson",
                    "user": {
                        "eId": f"{i:08x}-b2c0-45a5-8310-5ed1d0948e30",
                        "userId": 100_000 + i,
                        "identifiers": [
                            {"id": i, "key": "fountain.applicantId",
                             "value": f"18d0f780-95b4-4ab1-a12b-{i:012x}",
                             "createdAt": "2022-02-24T13:11:48.642Z"},
                            {"id": i + 1, "key": "bamboo.employeeId", "value": f"E{i}",
                             "createdAt": "2022-02-24T13:19:20.890Z"},
                        ],
                    },
                    "group": {"groupId": 5},
                    "course": {"courseId": 9961 + i % 50},
                    "lesson": {"lessonId": 28856 + i % 500},
                    "module": {"moduleId": 10658},
                    "version": 1,
                },
                "timestamp": "2022-07-21T13:01:59.636Z",
            }
            body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
            sig = hmac.new(SECRET.encode(), body.encode(), hashlib.sha256).hexdigest()
            out.write(f"{sig}\t{body}\n")
            size += len(body.encode())
    return size // count


def run_wrk(port: int, bodies: Path, seconds: int, connections: int = CONNECTIONS,
            watch: dict[str, int] | None = None) -> dict[str, float]:
    """One wrk run; ``watch`` names processes whose CPU per request is reported too."""
    script = Path(__file__).parent / "wrk_bodies.lua"
    watch = watch or {}
    cpu_before = {name: cpu_seconds(pid) for name, pid in watch.items()}
    children_before = os.times()
    out = subprocess.run(
        ["wrk", f"-t{THREADS}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
         "-s", str(script), f"http://127.0.0.1:{port}", "--", str(bodies), str(THREADS)],
        capture_output=True, text=True, check=True, timeout=seconds + 120,
    ).stdout
    figures: dict[str, float] = {}
    for key, value in re.findall(r"(\w+)=([0-9.]+)", " ".join(
            line for line in out.splitlines() if line.startswith("BENCH"))):
        figures[key] = float(value)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    figures["non_2xx"] = float(non2xx.group(1)) if non2xx else 0.0
    figures["rps"] = figures["requests"] / figures["seconds"]
    children = os.times()
    wrk_cpu = (children.children_user + children.children_system
               - children_before.children_user - children_before.children_system)
    figures["cpu_us_wrk"] = wrk_cpu / figures["requests"] * 1e6
    for name, pid in watch.items():
        used = cpu_seconds(pid) - cpu_before[name]
        figures[f"cpu_us_{name}"] = used / figures["requests"] * 1e6
    return figures


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def bench_bare(server: str, bodies: Path, seconds: int,
               light_bodies: Path | None = None) -> dict[str, float]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).parent / "serve_bare.py"),
                             server, str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(urllib.request.Request(
                    f"http://127.0.0.1:{port}/", data=b"{}"), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        figures = run_wrk(port, bodies, seconds, watch={"server": proc.pid})
        if light_bodies is not None:
            light = run_wrk(port, light_bodies, LIGHT_SECONDS, LIGHT_CONNECTIONS)
            figures["light_p50_ms"], figures["light_p99_ms"] = light["p50_ms"], light["p99_ms"]
        return figures
    finally:
        stop(proc)


def run_on(kind: str, broker: Any, args: argparse.Namespace, bodies: Path,
           light_bodies: Path) -> dict[str, Any]:
    """The ingress on one broker, then the bare handlers while that broker runs (idle); the
    figures printed under the broker's label and answered for the summary."""
    def say(text: str) -> None:
        print(f"{tag(kind)}{text}", flush=True)

    ingress: subprocess.Popen[bytes] | None = None
    try:
        wait_for_topics(broker.bootstrap, list(asyncio.run(ensure_topics(broker.kafka, "bench."))))
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "TOPIC_"))}
        env.update({"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
                    "KAFKA_EMBEDDED_BROKER": "true" if broker.embedded else "false",
                    "TOPIC_PREFIX": "bench.", "EDUME_WEBHOOK_SECRETS": SECRET,
                    "INGRESS_PORT": str(port), "LOG_LEVEL": "WARNING",
                    **dict(item.split("=", 1) for item in args.set)})
        ingress = subprocess.Popen([sys.executable, "-m", "streams", "ingress"], cwd=ROOT,
                                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http(f"http://127.0.0.1:{port}/readyz", 30)
        rss_before, _ = rss_mb(ingress.pid)
        ours = run_wrk(port, bodies, args.ingress_seconds,
                       watch={"ingress": ingress.pid, "broker": broker_pid(broker)})
        rss_after, rss_peak = rss_mb(ingress.pid)
        light = run_wrk(port, light_bodies, LIGHT_SECONDS, LIGHT_CONNECTIONS)
        published = metric(port, 'edume_ingress_requests_total{outcome="published"}')  # both runs
        duplicates = metric(port, 'edume_ingress_requests_total{outcome="duplicate"}')
    finally:
        if ingress is not None:
            stop(ingress)

    bare = {}
    for server in [s for s in args.servers.split(",") if s]:
        try:
            bare[server] = bench_bare(server, bodies, args.bare_seconds, light_bodies)
        except (subprocess.CalledProcessError, KeyError) as exc:
            say(f"bare handler on {server}: not measured ({exc})")
    best = max(bare, key=lambda s: bare[s]["rps"])

    def line(name: str, f: dict[str, float]) -> str:
        return (f"{name:<28} {f['rps']:>9.0f} req/s  p50 {f['p50_ms']:6.2f} ms  "
                f"p99 {f['p99_ms']:6.2f} ms  requests {f['requests']:.0f}  "
                f"non-2xx {f['non_2xx']:.0f}")

    for name, f in [("ingress", ours), *bare.items()]:
        if f["distinct"] >= args.pool:
            say(f"note: the {name} run sent the whole pool before its time was up; "
                "its requests/s is a lower bound (raise --pool)")
    say(line("ingress (verify+validate+ack)", ours))
    for server, f in bare.items():
        say(line(f"bare handler on {server}", f))
    ratio = ours["rps"] / bare[best]["rps"]
    say(f"light load ({LIGHT_CONNECTIONS} connections): ingress p50 {light['p50_ms']:.2f} ms "
        f"p99 {light['p99_ms']:.2f} ms ({light['rps']:.0f} req/s); "
        + "; ".join(f"bare on {n} p50 {f['light_p50_ms']:.2f} ms p99 {f['light_p99_ms']:.2f} ms"
                    for n, f in bare.items()))
    say(f"published {published:.0f} (acks=all), answered duplicate {duplicates:.0f}")
    say(f"CPU per request (µs, all threads): ingress {ours['cpu_us_ingress']:.0f}, "
        f"broker {ours['cpu_us_broker']:.0f}, wrk {ours['cpu_us_wrk']:.0f}; "
        + "; ".join(f"bare on {n}: server {f['cpu_us_server']:.0f}, wrk {f['cpu_us_wrk']:.0f}"
                    for n, f in bare.items()))
    say(f"ingress RSS: {rss_before:.0f} MB idle, {rss_after:.0f} MB after "
        f"{ours['requests']:.0f} requests, peak {rss_peak:.0f} MB")
    say(f"ratio to the bare handler on {best}: {ratio:.2f} (target >= 0.5); "
        f"p99 {ours['p99_ms']:.1f} ms (target < 25); peak RSS {rss_peak:.0f} MB (target < 150)")
    return {"rps": ours["rps"], "bare_rps": bare[best]["rps"], "ratio": ratio,
            "p50_ms": ours["p50_ms"], "p99_ms": ours["p99_ms"],
            "light_p99_ms": light["p99_ms"], "peak_mb": rss_peak,
            "non_2xx": ours["non_2xx"], "cpu_us_broker": ours["cpu_us_broker"],
            "best": best}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ingress-seconds", type=int, default=40,
                        help="length of the ingress run (long enough for 100,000 requests)")
    parser.add_argument("--bare-seconds", type=int, default=10,
                        help="length of each bare-handler run")
    parser.add_argument("--pool", type=int, default=600_000,
                        help="distinct signed webhooks; a thread stops when its share is sent")
    parser.add_argument("--set", action="append", default=[], metavar="VAR=VALUE",
                        help="extra environment for the ingress, e.g. KAFKA_LINGER_MS=2")
    parser.add_argument("--servers", default="uvicorn,granian",
                        help="bare-handler servers to measure; the fastest is the baseline")
    add_option(parser)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    kinds = chosen(args.broker)

    work = Path(tempfile.mkdtemp(prefix="edume-bench-"))
    bodies = work / "bodies.tsv"
    avg = make_bodies(bodies, args.pool)
    light_bodies = work / "light.tsv"
    make_bodies(light_bodies, 60_000, first=args.pool)
    print(f"bodies: {args.pool} distinct signed webhooks, {avg} bytes on average; "
          f"brokers: {', '.join(LABELS[k] for k in kinds)}", flush=True)

    results: dict[str, dict[str, Any]] = {}
    try:
        for kind in kinds:
            with running(kind, work / kind) as broker:
                print(f"{tag(kind)}{LABELS[kind]} at {broker.bootstrap}", flush=True)
                results[kind] = run_on(kind, broker, args, bodies, light_bodies)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def row(name: str, key: str, spec: str) -> tuple[str, dict[str, str]]:
        return name, {k: fmt(r.get(key), spec) for k, r in results.items()}

    print()
    print(summary(f"summary ({CONNECTIONS} connections)", kinds, [
        row("ingress, req/s", "rps", ",.0f"),
        ("bare handler (fastest), req/s", {
            k: f"{r['bare_rps']:,.0f} {r['best']}" for k, r in results.items()}),
        row("ingress / bare handler (ratio)", "ratio", ".2f"),
        row("ingress p50 ms", "p50_ms", ".2f"),
        row("ingress p99 ms", "p99_ms", ".2f"),
        row(f"ingress p99 ms, {LIGHT_CONNECTIONS} connections", "light_p99_ms", ".2f"),
        row("ingress peak RSS MB", "peak_mb", ".0f"),
        row("broker CPU µs/request", "cpu_us_broker", ".0f"),
        row("non-2xx answers", "non_2xx", ".0f"),
    ]))


if __name__ == "__main__":
    main()
