"""Worker benchmark: events/s through a worker against a plain aiokafka loop on the same
pre-loaded events, the worker's memory with many learners, and POST-to-completion latency.

    python bench/worker_bench.py [--events 100000] [--learners 20000] [--rss-learners 100000]
                                 [--rate 500] [--latency-seconds 20] [--set VAR=VALUE]
                                 [--link-requests 50000] [--restart-events N] [--skip PHASE]
                                 [--only PHASE] [--onboarding-learners 100000]
                                 [--history-events 100000] [--history-learners 1]
                                 [--broker {both,kafka,embedded}]

Every phase runs on each broker of ``--broker`` in turn, in one run: Apache Kafka (one KRaft
node, ``tests/apache_kafka.py``; only where ``java`` and ``mvn`` are present, else the run
says so and uses the embedded broker alone), then the embedded broker. The workers run with
``KAFKA_EMBEDDED_BROKER`` true on the embedded broker and false on Apache Kafka (its
workarounds off: changelog writes batched, idempotent producers, 500 ms fetch waits). Each
figure is printed labelled with its broker, then a side-by-side summary table; every ratio
is against the baseline measured in the same run on the same broker.

1. Throughput. ``--events`` learner events of ``--learners`` learners are written to the
   learner topic as the ingress writes them. The ceiling, a plain aiokafka loop (consume,
   update a dict per learner, produce one record per event), reads them all; then a worker
   (``edume-streams worker``, a subprocess) reads the same records from the start. Printed:
   events/s and CPU per event of each, and their ratio. Target: >= 0.15, aim 0.25.
2. Memory. A fresh worker reads ``--rss-learners`` learners (one learner.added each, with
   three identifiers) into its progress table; its peak RSS is printed. Target: < 300 MB.
3. Latency. The ingress and a worker run together; webhooks that each complete a
   mandatory course are POSTed at ``--rate`` per second for ``--latency-seconds``; the time
   from each POST to its ``training.mandatory.completed`` record being read is measured.
   Target: p99 < 100 ms at 500 webhooks/s.

4. Links. ``--link-requests`` course-link requests (10,000 users) are pre-loaded on
   ``links.requests``; a plain aiokafka loop (consume, build and sign the link, produce)
   reads them all, then a worker turns the same requests into signed links (each request
   writes its ``links.issue`` record and its signed link on ``links.issued``, and the
   issue record read back is recognised as done). Printed: requests/s, CPU per request,
   the ratio.
5. Link latency. Requests are produced at ``--rate`` per second for ``--latency-seconds``
   into a running worker; the time from each send to its link read from ``links.issued``.
   Target: p99 < 100 ms at 500 requests/s.
6. Restart. A backlog of learner events (``--restart-events``, default ``--events``) is
   pre-loaded; a worker (``WORKER_SESSION_TIMEOUT_S=10``, the default) reads it until a
   quarter is consumed, is SIGKILLed, and a new worker process with the same settings starts
   at once. Printed: the seconds from its start to its first event consumed (its
   ``edume_worker_events_consumed_total`` above 0) and to caught up (the worker group's
   committed offsets at the end of every learner partition). Once with dynamic membership (no
   ``WORKER_INSTANCE_ID``: the group waits for the killed member's session to expire), once
   with static membership (both processes ``WORKER_INSTANCE_ID=bench-worker-1``).
7. Onboarding: a customer's first day (``bench.workloads.onboarding``).
   ``--onboarding-learners`` learners added, each with 3 of 40 courses, 20 of them
   mandatory (policies written as ``edume-streams policy set`` does) and none known to the
   catalog, then half as many progress events; links on (assignment links, reminders
   scheduled). The plain loop reads the same records, then a worker until every event is
   applied and every assignment link decided. Printed: events/s, CPU per event, the
   ratio, the worker's batches, its peak RSS and the reminder timer's overlap warnings.
   Targets: >= 0.15 of the plain loop, < 300 MB for 100,000 learners.
8. Long history: ``--history-events`` events of ``--history-learners`` learners over 3
   courses of 10 lessons (``bench.workloads.long_history``); the worker's CPU per event
   over the first and the last tenth of them, and their ratio (flat: 1.0).

Everything runs on this machine's cores, broker included: compare the ratios, not the
absolute figures.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import orjson  # noqa: E402
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402
from confluent_kafka import Producer  # noqa: E402

from bench.brokers import (  # noqa: E402
    LABELS,
    add_option,
    chosen,
    fmt,
    running,
    summary,
    tag,
    wait_for_topics,
)
from bench.procstats import cpu_seconds, rss_mb, stop, wait_http  # noqa: E402
from bench.workloads import (  # noqa: E402
    ONBOARDING_MANDATORY,
    long_history,
    onboarding,
    tenths,
)
from streams.core import topics  # noqa: E402
from streams.core.clock import rfc3339  # noqa: E402
from streams.core.topics import TopicSpec  # noqa: E402
from streams.kafka.admin import ensure_topics, partitions_of  # noqa: E402
from streams.kafka.embedded import free_port  # noqa: E402

SECRET = "bench-secret"
PHASES = ["throughput", "rss", "latency", "links", "link-latency", "restart",
          "onboarding", "history"]


def learner_event(user: int, n: int) -> bytes:
    """The n-th event of a learner: added, then lesson starts and finishes."""
    who = {"eId": f"{user:08x}-b2c0-45a5-8310-5ed1d0948e30", "userId": user,
           "identifiers": [{"id": user, "key": "hr.employeeId", "value": f"E{user}",
                            "createdAt": "2022-02-24T13:11:48.642Z"}]}
    ts = f"2026-11-01T10:{n // 60 % 60:02d}:{n % 60:02d}.000Z"
    if n == 0:
        doc: dict[str, Any] = {"type": "learner.added", "timestamp": ts, "payload": {
            "user": who, "group": {"groupId": 5},
            "courses": [{"courseId": 9961}, {"courseId": 9962}], "version": 1}}
    else:
        doc = {"type": "learner.activity.started" if n % 2 else "learner.activity.finished",
               "timestamp": ts, "payload": {
                   "type": "lesson", "user": who, "group": {"groupId": 5},
                   "course": {"courseId": 9961}, "module": {"moduleId": 10658},
                   "lesson": {"lessonId": 28000 + n // 2}, "version": 1}}
    return json.dumps(doc, separators=(",", ":")).encode()


def preload(bootstrap: str, topic: str, events: int, learners: int,
            ends: dict[int, int] | None = None) -> None:
    """The throughput workload: ``events`` events of ``learners`` learners, round robin
    (``write_events``)."""
    write_events(bootstrap, topic, ((str(1_000_000 + i % learners).encode(),
                                     learner_event(1_000_000 + i % learners, i // learners))
                                    for i in range(events)), ends)


def write_events(bootstrap: str, topic: str, events: Iterable[tuple[bytes, bytes]],
                 ends: dict[int, int] | None = None) -> int:
    """Write (key, value) events as the ingress does: murmur2 of the key, headers, batched;
    answers how many. ``ends``: filled with each partition's offset after its last record
    written (from the delivery reports: the embedded broker's ListOffsets answer can be
    short)."""
    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random",
                         "linger.ms": 5, "acks": "all", "enable.idempotence": True,
                         "queue.buffering.max.messages": 1_000_000})

    def delivered(err: Any, msg: Any) -> None:
        if err is None and ends is not None:
            ends[msg.partition()] = max(ends.get(msg.partition(), 0), msg.offset() + 1)

    received_at = rfc3339(int(time.time() * 1000)).encode()  # as the ingress stamps them
    count = 0
    for count, (key, value) in enumerate(events, 1):
        producer.produce(topic, value, key, headers=[
            ("edume-event-id", hashlib.sha256(value).hexdigest().encode()),
            ("edume-received-at", received_at)],
            on_delivery=delivered if ends is not None else None)
        if count % 20_000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0
    return count


def count_learner_events() -> Callable[[Any], bytes]:
    """The plain loop's work per learner event: update a dict per learner."""
    state: dict[bytes, dict[str, Any]] = {}

    def step(r: Any) -> bytes:
        doc = orjson.loads(r.value)
        entry = state.setdefault(r.key, {"events": 0, "ids": set()})
        entry["events"] += 1
        entry["ids"].add(hashlib.sha256(r.value).hexdigest())
        entry["last"] = doc["timestamp"]
        return orjson.dumps({"n": entry["events"]})

    return step


def sign_requested_link(r: Any) -> bytes:
    """The plain loop's work per link request: build and sign the link with the same
    function the worker uses."""
    from streams.core.signing import build_link, sign_link

    doc = orjson.loads(r.value)
    url = sign_link(build_link("course", base_url="https://learn.edume.com/e",
                               external_user_id=doc["externalUserId"],
                               content_id=doc["contentId"], team_ids=[7, 8]),
                    "bench-link-secret")
    return orjson.dumps({"url": url})


async def plain_loop(bootstrap: str, topic: str, out_topic: str, events: int,
                     step: Callable[[Any], bytes]) -> dict[str, float]:
    """The ceiling: consume, ``step`` each record, produce what it answers."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                max_poll_records=1000)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await consumer.start()
    await producer.start()
    try:
        tps = await partitions_of(consumer, [topic])
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen = 0
        cpu0, t0 = time.process_time(), time.perf_counter()
        while seen < events:
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                for r in records:
                    await producer.send(out_topic, step(r), key=r.key)
                seen += len(records)
        await producer.flush()
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    finally:
        await producer.stop()
        await consumer.stop()
    return {"events": seen, "seconds": wall, "rate": seen / wall, "cpu_us": cpu / seen * 1e6}


def worker_env(bootstrap: str, prefix: str, port: int, extra: dict[str, str],
               embedded: bool) -> dict[str, str]:
    """A worker's (and the ingress's) environment; ``embedded``: the broker is the embedded
    one (its workarounds on: one-record changelog batches, no idempotent Faust producer,
    10 ms fetch waits), else Apache Kafka with the production settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("EDUME_", "KAFKA_", "WORKER_", "TOPIC_"))}
    env.update(KAFKA_BOOTSTRAP_SERVERS=bootstrap, TOPIC_PREFIX=prefix,
               WORKER_WEB_PORT=str(port),
               KAFKA_EMBEDDED_BROKER="true" if embedded else "false",
               EDUME_WEBHOOK_SECRETS=SECRET, EDUME_LINK_SECRET="bench-link-secret",
               WORKER_API_TOKENS="bench-api-token",
               LOG_LEVEL="WARNING")
    env.update(extra)
    return env


def scrape(port: int) -> str:
    """A worker's /metrics text."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return str(r.read().decode())


def metric_in(text: str, name: str | tuple[str, ...]) -> float:
    """The sum of the samples of /metrics ``text`` whose line starts with ``name`` (or with
    one of several)."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))


def metric(port: int, name: str | tuple[str, ...]) -> float:
    return metric_in(scrape(port), name)


def run_worker(bootstrap: str, prefix: str, events: int, extra: dict[str, str],
               log: Path, embedded: bool, profile: Path | None = None,
               done_metric: str = "edume_worker_events_consumed_total",
               until: Sequence[tuple[str | tuple[str, ...], float]] = (),
               poll_s: float = 0.25,
               ) -> dict[str, Any]:
    """A worker from its first record until ``done_metric`` reaches ``events`` and each
    metric of ``until`` its target (at most 10 minutes); its CPU per unit and peak RSS.
    Also answered: ``reached``, the seconds at which each metric of ``until`` got there
    (and ``done``: ``done_metric`` to ``events``), and ``series``,
    (seconds, CPU seconds, ``done_metric``) at every poll from the first record on. A
    metric is named by a prefix of the scraped lines, or a tuple of them (the matching
    values are summed): ``name{label="a`` takes every label value starting with ``a``."""
    port = free_port()
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "streams", "worker"], cwd=ROOT,
                                env=worker_env(bootstrap, prefix, port, extra, embedded),
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", 60)
        while metric(port, "edume_worker_events_consumed_total") == 0:
            time.sleep(0.01)
        cpu0, t0 = cpu_seconds(proc.pid), time.perf_counter()
        spy = None
        if profile is not None:  # py-spy (pip install py-spy): collapsed stacks, all threads
            py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
            spy = subprocess.Popen([py_spy, "record", "--pid", str(proc.pid), "--format",
                                    "raw", "--rate", "200", "--threads", "-o", str(profile)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        text = scrape(port)
        done = metric_in(text, done_metric)
        series = [(0.0, 0.0, done)]
        reached: dict[str | tuple[str, ...], float] = {}
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            for name, target in until:
                if name not in reached and metric_in(text, name) >= target:
                    reached[name] = time.perf_counter() - t0
            if done >= events and "done" not in reached:
                reached["done"] = time.perf_counter() - t0
            if len(reached) == len(until) + 1:
                break
            time.sleep(poll_s)  # each scrape costs the worker CPU: not too often
            text = scrape(port)
            done = metric_in(text, done_metric)
            series.append((time.perf_counter() - t0, cpu_seconds(proc.pid) - cpu0, done))
        wall, cpu = time.perf_counter() - t0, cpu_seconds(proc.pid) - cpu0
        if spy is not None:
            spy.send_signal(2)
            spy.wait(30)
        rss, peak = rss_mb(proc.pid)
        text = scrape(port)
        keys = metric_in(text, 'edume_worker_table_keys{table="progress"}')
        batches = metric_in(text, "edume_worker_batch_seconds_count")
        batch_s = metric_in(text, "edume_worker_batch_seconds_sum")
        consumed = metric_in(text, "edume_worker_events_consumed_total")
    finally:
        stop(proc)
    return {"events": done, "seconds": wall, "rate": done / wall, "cpu_us": cpu / done * 1e6,
            "rss_mb": rss, "peak_mb": peak, "keys": keys, "reached": reached,
            "series": series, "batches": batches, "batch_s": batch_s, "consumed": consumed}


def latency(bootstrap: str, prefix: str, rate: int, seconds: float,
            extra: dict[str, str], log: Path, embedded: bool) -> dict[str, float]:
    """The ingress and a worker; webhooks completing a mandatory course at ``rate``/s."""
    from schemas.outputs import TrainingPolicy
    from streams.settings import Settings
    from streams.tools.policy import write_policy

    settings = Settings(kafka_bootstrap_servers=bootstrap, topic_prefix=prefix,
                        kafka_embedded_broker=embedded)
    write_policy(settings, 7, TrainingPolicy(courseId=7, mandatory=True, groupIds=None))
    http_port, web_port = free_port(), free_port()
    env = worker_env(bootstrap, prefix, web_port, extra, embedded) | {
        "INGRESS_PORT": str(http_port)}
    with log.open("ab") as out:
        ingress = subprocess.Popen([sys.executable, "-m", "streams", "ingress"], cwd=ROOT,
                                   env=env, stdout=out, stderr=subprocess.STDOUT)
        worker = subprocess.Popen([sys.executable, "-m", "streams", "worker"], cwd=ROOT,
                                  env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{http_port}/readyz", 60)
        wait_http(f"http://127.0.0.1:{web_port}/readyz", 90)
        result = asyncio.run(_post_and_time(bootstrap, prefix, http_port, rate, seconds))
        batches = metric(web_port, "edume_worker_batch_seconds_count")
        result["batch_ms"] = metric(web_port, "edume_worker_batch_seconds_sum") / batches * 1000
        result["batch_events"] = metric(web_port, "edume_worker_events_consumed_total") / batches
        return result
    finally:
        stop(ingress)
        stop(worker)


async def _post_and_time(bootstrap: str, prefix: str, http_port: int, rate: int,
                         seconds: float) -> dict[str, float]:
    """POST each webhook at its time; time it until its completion record is read."""
    from streams.core.signing import sign_webhook

    consumer = AIOKafkaConsumer(prefix + "training.mandatory.completed",
                                bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="latest", fetch_max_wait_ms=5)
    sent: dict[int, float] = {}
    accepted: dict[int, float] = {}
    seen: dict[int, float] = {}
    written: dict[int, float] = {}  # the output record's timestamp (when the worker wrote it)
    total = int(rate * seconds)
    all_seen = asyncio.Event()
    try:
        await consumer.start()
        await consumer.seek_to_end()

        async def read() -> None:
            async for record in consumer:
                user = json.loads(record.value)["userId"]
                seen[user] = time.perf_counter()
                written[user] = record.timestamp / 1000 - time.time() + time.perf_counter()
                if len(seen) >= total:
                    all_seen.set()

        reader = asyncio.create_task(read())
        async with aiohttp.ClientSession() as client:

            async def post(user: int) -> None:
                body = json.dumps({"type": "learner.activity.finished",
                                   "timestamp": "2026-11-01T10:00:00.000Z", "payload": {
                                       "type": "course", "group": {"groupId": 5},
                                       "user": {"eId": f"e{user}", "userId": user,
                                                "identifiers": []},
                                       "course": {"courseId": 7}, "version": 1}},
                                  separators=(",", ":")).encode()
                sent[user] = time.perf_counter()
                async with client.post(f"http://127.0.0.1:{http_port}/webhooks/edume",
                                       data=body, headers={
                                           "X-Edume-Signature": sign_webhook(SECRET, body),
                                           "Content-Type": "application/json"}) as r:
                    assert r.status == 202, await r.text()
                    accepted[user] = time.perf_counter()

            started = time.perf_counter()
            tasks = []
            for i in range(total):  # paced: the i-th request at i / rate seconds
                delay = started + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(post(3_000_000 + i)))
            await asyncio.gather(*tasks)
            try:
                await asyncio.wait_for(all_seen.wait(), 30)
            except TimeoutError:
                pass  # reported below as received < sent
        reader.cancel()
    finally:
        await consumer.stop()
    waits = sorted((seen[u] - sent[u]) * 1000 for u in sent if u in seen)
    ingress = sorted((accepted[u] - sent[u]) * 1000 for u in accepted)
    worker = sorted((written[u] - accepted[u]) * 1000 for u in accepted if u in written)
    return {"sent": len(sent), "received": len(waits),
            "ingress_p50_ms": statistics.median(ingress), "ingress_p99_ms": _p99(ingress),
            "worker_p50_ms": statistics.median(worker), "worker_p99_ms": _p99(worker),
            "p50_ms": statistics.median(waits) if waits else float("nan"),
            "p99_ms": waits[int(len(waits) * 0.99) - 1] if waits else float("nan"),
            "max_ms": waits[-1] if waits else float("nan")}


LINK_COURSE = 501


def link_request(i: int, users: int) -> tuple[bytes, bytes]:
    ext = f"user-{i % users:06d}@example.com"
    value = json.dumps({"kind": "course", "externalUserId": ext, "contentId": LINK_COURSE,
                        "reason": f"bench {i}"}, separators=(",", ":")).encode()
    return ext.encode(), value


def preload_catalog(bootstrap: str, prefix: str) -> None:
    """A published course with two teams, as the ingress would write its events."""
    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random",
                         "acks": "all"})
    payload = {"group": {"groupId": 1}, "teams": [{"teamId": 7}, {"teamId": 8}],
               "course": {"courseId": LINK_COURSE, "courseKey": "bench"},
               "modules": [{"moduleId": 1}], "version": 1}
    for i, kind in enumerate(("course.added", "course.published")):
        value = json.dumps({"type": kind, "timestamp": f"2026-10-01T00:0{i}:00.000Z",
                            "payload": payload}, separators=(",", ":")).encode()
        producer.produce(prefix + "edume.course.events", value, str(LINK_COURSE).encode(),
                         headers=[("edume-event-id", hashlib.sha256(value).hexdigest().encode())])
    assert producer.flush(30) == 0


def preload_requests(bootstrap: str, topic: str, count: int, users: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random",
                         "linger.ms": 5, "acks": "all",
                         "queue.buffering.max.messages": 1_000_000})
    for i in range(count):
        key, value = link_request(i, users)
        producer.produce(topic, value, key)
        if i % 20_000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0


def link_latency(bootstrap: str, prefix: str, rate: int, seconds: float,
                 extra: dict[str, str], log: Path, embedded: bool) -> dict[str, float]:
    """Requests at ``rate``/s into a running worker; the time from each request's send to
    its signed link being read from ``links.issued``."""
    port = free_port()
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "streams", "worker"], cwd=ROOT,
                                env=worker_env(bootstrap, prefix, port, extra, embedded),
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", 90)
        return asyncio.run(_request_and_time(bootstrap, prefix, rate, seconds))
    finally:
        stop(proc)


async def _request_and_time(bootstrap: str, prefix: str, rate: int,
                            seconds: float) -> dict[str, float]:
    consumer = AIOKafkaConsumer(prefix + "links.issued", bootstrap_servers=bootstrap,
                                group_id=None, auto_offset_reset="latest", fetch_max_wait_ms=5)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    total = int(rate * seconds)
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    all_seen = asyncio.Event()
    await consumer.start()
    await producer.start()
    try:
        await consumer.seek_to_end()

        async def read() -> None:
            async for record in consumer:
                seen[json.loads(record.value)["externalUserId"]] = time.perf_counter()
                if len(seen) >= total:
                    all_seen.set()

        reader = asyncio.create_task(read())
        started = time.perf_counter()
        pending = []
        for i in range(total):
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            key, value = link_request(10_000_000 + i, 10**9)
            sent[key.decode()] = time.perf_counter()
            pending.append(await producer.send(prefix + "links.requests", value, key=key))
        await asyncio.gather(*pending)
        try:
            await asyncio.wait_for(all_seen.wait(), 30)
        except TimeoutError:
            pass
        reader.cancel()
    finally:
        await producer.stop()
        await consumer.stop()
    waits = sorted((seen[k] - sent[k]) * 1000 for k in sent if k in seen)
    return {"sent": len(sent), "received": len(waits),
            "p50_ms": statistics.median(waits) if waits else float("nan"),
            "p99_ms": _p99(waits), "max_ms": waits[-1] if waits else float("nan")}


def _p99(values: list[float]) -> float:
    return values[max(0, int(len(values) * 0.99) - 1)] if values else float("nan")


KILL_AT = 0.25
"""The share of the restart backlog the first worker has consumed when it is killed."""
CONSUMED = "edume_worker_events_consumed_total"


def _scrape(port: int) -> list[tuple[str, dict[str, str], float]] | None:
    """The worker's metrics as (name, labels, value); None while it does not answer."""
    try:
        text = scrape(port)
    except OSError:  # not listening yet, or not serving yet
        return None
    samples = []
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z_:][\w:]*)(?:\{(.*)\})? (\S+)$", line)
        if match and not line.startswith("#"):
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
            samples.append((match.group(1), labels, float(match.group(3))))
    return samples


def _total(samples: list[tuple[str, dict[str, str], float]], name: str) -> float:
    return sum(value for n, _, value in samples if n == name)


def _committed(consumer: Any, topic: str, partitions: int) -> dict[int, int]:
    """The worker group's committed offsets on ``topic`` (-1 where none)."""
    from confluent_kafka import KafkaException, TopicPartition

    try:
        answer = consumer.committed([TopicPartition(topic, p) for p in range(partitions)],
                                    timeout=5)
    except KafkaException:  # the coordinator is busy (a rebalance, a load): ask again
        return {}
    return {tp.partition: tp.offset for tp in answer}


def restart(broker: Any, prefix: str, events: int, learners: int, extra: dict[str, str],
            log: Path, instance_id: str | None) -> dict[str, Any]:
    """A worker reads a backlog of ``events`` learner events; at ``KILL_AT`` of it, SIGKILL;
    a new worker process with the same settings (port included) starts at once. The seconds
    from its start to its first event consumed, and to caught up: the worker group's
    committed offsets at the end of every partition (commits follow the processed records
    within ``WORKER_COMMIT_INTERVAL_S``: what a replacement worker would start from)."""
    from confluent_kafka import Consumer

    from streams.worker.app import APP_NAME

    topic = prefix + topics.LEARNER_EVENTS
    partitions = topics.BY_NAME[topics.LEARNER_EVENTS].partitions
    ends: dict[int, int] = {}
    preload(broker.bootstrap, topic, events, learners, ends)
    port = free_port()
    settings = {"WORKER_SESSION_TIMEOUT_S": "10", **extra}
    settings.pop("WORKER_INSTANCE_ID", None)
    if instance_id is not None:  # static membership: both processes under this id
        settings["WORKER_INSTANCE_ID"] = instance_id
    env = worker_env(broker.bootstrap, prefix, port, settings, broker.embedded)

    def start() -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            out.write(f"\n===== restart bench worker on {prefix} at {time.time():.3f}\n"
                      .encode())
            out.flush()
            return subprocess.Popen([sys.executable, "-m", "streams", "worker"], cwd=ROOT,
                                    env=env, stdout=out, stderr=subprocess.STDOUT)

    def alive(proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is not None:
            raise SystemExit(f"the worker on {prefix} exited ({proc.returncode}): see {log}")

    first = start()
    try:
        killed_at = 0.0
        deadline = time.monotonic() + 300
        while killed_at < events * KILL_AT:
            alive(first)
            if time.monotonic() > deadline:
                raise SystemExit(f"the worker on {prefix} did not consume {KILL_AT:.0%} of "
                                 f"its backlog in 300 s: see {log}")
            time.sleep(0.05)
            samples = _scrape(port)
            killed_at = _total(samples, CONSUMED) if samples else 0.0
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
    finally:
        stop(first)  # only if the kill was not reached
    # a group member never: it only reads the group's committed offsets
    offsets = Consumer({"bootstrap.servers": broker.bootstrap,
                        "group.id": f"{prefix}{APP_NAME}", "enable.auto.commit": False})
    committed_at_kill = _committed(offsets, topic, partitions)
    started = time.perf_counter()
    second = start()
    try:
        first_s = caught_s = float("nan")
        samples = None
        done: dict[int, int] = {}
        deadline = time.monotonic() + 120 + events / 500  # bounded: a stuck worker is reported
        while time.monotonic() < deadline:
            alive(second)
            samples = _scrape(port)
            if samples and _total(samples, CONSUMED) > 0:
                first_s = time.perf_counter() - started
                break
            time.sleep(0.05)
        while not math.isnan(first_s) and time.monotonic() < deadline:
            alive(second)
            done = _committed(offsets, topic, partitions) or done
            if done and all(done.get(p, -1) >= end for p, end in ends.items()):
                caught_s = time.perf_counter() - started
                break
            time.sleep(0.1)
        samples = _scrape(port) or samples or []
        left = sum(end - max(0, committed_at_kill.get(p, 0)) for p, end in ends.items())
        behind = {p: (done.get(p, -1), end) for p, end in sorted(ends.items())
                  if done.get(p, -1) < end}
        return {"events": events, "killed_at": killed_at, "first_s": first_s, "behind": behind,
                "caught_s": caught_s, "left": left, "consumed": _total(samples, CONSUMED),
                "redelivered": _total(samples, "edume_worker_input_redelivered_total"),
                "rebalance_s": _total(samples, "edume_worker_rebalance_seconds"),
                "recovery_s": _total(samples, "edume_worker_recovery_seconds")}
    finally:
        stop(second)
        offsets.close()


OVERLAP = re.compile(rb"Timer reminders is overlapping \(interval=\S+ runtime=([0-9.e-]+)\)")
"""mode's warning when the reminder timer's body ran longer than its interval."""


def onboarding_phase(broker: Any, prefix: str, learners: int, extra: dict[str, str],
                     log: Path, profile: Path | None) -> dict[str, Any]:
    """A customer's first day: ``learners`` learners added, each with 3 of 40 courses, 20
    of them mandatory (``training.policies``, as ``edume-streams policy set`` writes
    them) and none known to the catalog, then half as many progress events; links on
    (the worker asks for an assignment link per mandatory course, and schedules its
    reminder). The plain loop reads the same records first. Answered: both runs, the
    assignment links asked for, and the reminder timer's overlap warnings in the
    worker's log (count, longest runtime)."""
    from schemas.outputs import TrainingPolicy
    from streams.settings import Settings
    from streams.tools.policy import write_policy

    settings = Settings(kafka_bootstrap_servers=broker.bootstrap, topic_prefix=prefix,
                        kafka_embedded_broker=broker.embedded)
    for course in ONBOARDING_MANDATORY:
        write_policy(settings, course, TrainingPolicy(courseId=course, mandatory=True,
                                                      groupIds=None))
    day = onboarding(learners, learners // 2, int(time.time() * 1000))
    topic = prefix + topics.LEARNER_EVENTS
    total = write_events(broker.bootstrap, topic, day.events)
    plain = asyncio.run(plain_loop(broker.bootstrap, topic, prefix + BENCH_OUT.name, total,
                                   count_learner_events()))
    mark = log.stat().st_size if log.exists() else 0
    decided = tuple(f'edume_worker_records_written_total{{topic="{prefix}{t}"}}'
                    for t in (topics.LINK_ISSUED, topics.LINK_REJECTED))
    worker = run_worker(broker.bootstrap, prefix, total, extra, log, broker.embedded,
                        profile, done_metric='edume_worker_events_applied_total{type="learner.',
                        until=[(decided, day.assignment_links)])
    with log.open("rb") as text:
        text.seek(mark)
        runtimes = [float(m.group(1)) for m in OVERLAP.finditer(text.read())]
    return {"plain": plain, "worker": worker, "events": total, "links": day.assignment_links,
            "applied_s": worker["reached"].get("done", math.nan),
            "links_s": worker["reached"].get(decided, math.nan),
            "overlaps": len(runtimes), "overlap_max_s": max(runtimes, default=0.0)}


def history_phase(broker: Any, prefix: str, events: int, learners: int,
                  extra: dict[str, str], log: Path) -> dict[str, Any]:
    """``events`` events of ``learners`` learners over bounded content; the worker's CPU
    per event and events/s over the first and the last tenth of them."""
    start_ms = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1000)
    write_events(broker.bootstrap, prefix + topics.LEARNER_EVENTS,
                 long_history(events, learners, start_ms))
    worker = run_worker(broker.bootstrap, prefix, events, extra, log, broker.embedded,
                        poll_s=0.1)
    first, last = tenths(worker["series"], events)
    return {"worker": worker, "first": first, "last": last}


BENCH_OUT = TopicSpec("bench.out", "as the input's", "the plain loop's output", partitions=4)
"""The plain loops' output (the embedded broker would create it with 4 partitions; Apache
Kafka creates no topic by itself)."""


def run_on(kind: str, broker: Any, args: argparse.Namespace, extra: dict[str, str],
           log: Path, profile: Path | None) -> dict[str, float]:
    """Every phase not skipped on one broker; the figures printed under its label and
    answered for the summary."""
    def say(text: str) -> None:
        print(f"{tag(kind)}{text}", flush=True)

    b, embedded = broker.bootstrap, broker.embedded
    figures: dict[str, float] = {}
    names: list[str] = []
    for prefix in ("tp.", "rss.", "lat.", "lk.", "lkl.", "rdyn.", "rsta.", "ob.", "lh."):
        names += list(asyncio.run(ensure_topics(broker.kafka, prefix)))
    for prefix in ("tp.", "lk.", "ob."):
        names += list(asyncio.run(ensure_topics(broker.kafka, prefix, [BENCH_OUT])))
    wait_for_topics(b, names)
    if "throughput" not in args.skip:
        preload(b, "tp.edume.learner.events", args.events, args.learners)
        plain = asyncio.run(plain_loop(b, "tp.edume.learner.events", "tp.bench.out",
                                       args.events, count_learner_events()))
        worker = run_worker(b, "tp.", args.events, extra, log, embedded, profile)
        say(f"plain aiokafka loop: {plain['rate']:8,.0f} events/s  "
            f"{plain['cpu_us']:5.0f} µs CPU/event  ({plain['events']:,.0f} events)")
        say(f"worker             : {worker['rate']:8,.0f} events/s  "
            f"{worker['cpu_us']:5.0f} µs CPU/event  ({worker['events']:,.0f} events, "
            f"{worker['keys']:,.0f} learners, peak RSS {worker['peak_mb']:.0f} MB)")
        say(f"ratio worker/plain : {worker['rate'] / plain['rate']:.3f} "
            "(target >= 0.15, aim 0.25)")
        figures.update(plain_rate=plain["rate"], worker_rate=worker["rate"],
                       worker_ratio=worker["rate"] / plain["rate"])
    if "rss" not in args.skip:
        preload(b, "rss.edume.learner.events", args.rss_learners, args.rss_learners)
        rss = run_worker(b, "rss.", args.rss_learners, extra, log, embedded)
        say(f"memory             : {rss['keys']:,.0f} learners in the table, RSS "
            f"{rss['rss_mb']:.0f} MB, peak {rss['peak_mb']:.0f} MB (target < 300 MB)")
        figures["rss_peak_mb"] = rss["peak_mb"]
    if "latency" not in args.skip:
        lat = latency(b, "lat.", args.rate, args.latency_seconds, extra, log, embedded)
        say(f"POST to completion : {lat['received']:,.0f}/{lat['sent']:,.0f} at "
            f"{args.rate}/s: p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms, "
            f"max {lat['max_ms']:.1f} ms (target p99 < 100 ms)")
        say(f"  of which          : POST to 202 p50 {lat['ingress_p50_ms']:.1f} / p99 "
            f"{lat['ingress_p99_ms']:.1f} ms; 202 to the output written p50 "
            f"{lat['worker_p50_ms']:.1f} / p99 {lat['worker_p99_ms']:.1f} ms")
        say(f"  worker batches    : {lat['batch_events']:.1f} events each, "
            f"{lat['batch_ms']:.1f} ms from taking one to its writes acknowledged")
        figures.update(post_p50_ms=lat["p50_ms"], post_p99_ms=lat["p99_ms"],
                       post_received=lat["received"], post_sent=lat["sent"])
    if "links" not in args.skip:
        preload_catalog(b, "lk.")
        preload_requests(b, "lk.links.requests", args.link_requests, 10_000)
        plain = asyncio.run(plain_loop(b, "lk.links.requests", "lk.bench.out",
                                       args.link_requests, sign_requested_link))
        # a request's signed link is what counts (its issue-link event goes out too)
        links = run_worker(b, "lk.", args.link_requests, extra, log, embedded,
                           done_metric='edume_worker_records_written_total'
                                       '{topic="lk.links.issued"}')
        say(f"plain link loop    : {plain['rate']:8,.0f} requests/s "
            f"{plain['cpu_us']:5.0f} µs CPU/request")
        say(f"link agent         : {links['rate']:8,.0f} requests/s "
            f"{links['cpu_us']:5.0f} µs CPU/request  ({links['events']:,.0f} links; "
            "request in; issue-link event and signed link out)")
        say(f"ratio agent/plain  : {links['rate'] / plain['rate']:.3f}")
        figures.update(links_rate=links["rate"], links_ratio=links["rate"] / plain["rate"])
    if "link-latency" not in args.skip:
        preload_catalog(b, "lkl.")
        ll = link_latency(b, "lkl.", args.rate, args.latency_seconds, extra, log, embedded)
        say(f"request to link    : {ll['received']:,.0f}/{ll['sent']:,.0f} at "
            f"{args.rate}/s: p50 {ll['p50_ms']:.1f} ms, p99 {ll['p99_ms']:.1f} ms, "
            f"max {ll['max_ms']:.1f} ms (target p99 < 100 ms)")
        figures.update(link_p99_ms=ll["p99_ms"], link_received=ll["received"],
                       link_sent=ll["sent"])
    if "restart" not in args.skip:
        events = args.restart_events or args.events
        for mode, prefix, instance in (("dynamic", "rdyn.", None),
                                       ("static", "rsta.", "bench-worker-1")):
            r = restart(broker, prefix, events, args.learners, extra, log, instance)
            member = f"WORKER_INSTANCE_ID={instance}" if instance else "no WORKER_INSTANCE_ID"
            say(f"restart, {mode:<7}   : SIGKILL at {r['killed_at']:,.0f}/{r['events']:,.0f} "
                f"events consumed ({member}); the new process's first event after "
                f"{r['first_s']:.2f} s, caught up (all committed) after {r['caught_s']:.2f} s")
            say(f"  new process       : took {r['consumed']:,.0f} records for the "
                f"{r['left']:,.0f} past the offsets committed at the kill "
                f"({r['redelivered']:,.0f} counted redelivered); last rebalance "
                f"{r['rebalance_s']:.2f} s, table recovery {r['recovery_s']:.2f} s")
            if r["behind"]:
                say("  NOT CAUGHT UP     : committed/end offset of the partitions behind: "
                    + ", ".join(f"{p}: {c}/{e}" for p, (c, e) in r["behind"].items())
                    + f" (the new process stopped when the wait ran out; see {log})")
            figures.update({f"restart_{mode}_first_s": r["first_s"],
                            f"restart_{mode}_caught_s": r["caught_s"]})
    if "onboarding" not in args.skip:
        ob_profile = None if profile is None else profile.with_name(
            f"{profile.stem}-onboarding{profile.suffix}")
        ob = onboarding_phase(broker, "ob.", args.onboarding_learners, extra, log, ob_profile)
        plain, w, n = ob["plain"], ob["worker"], ob["events"]
        applied_rate, all_rate = n / ob["applied_s"], n / max(ob["applied_s"], ob["links_s"])
        say(f"onboarding         : {args.onboarding_learners:,} learners added (3 of 40 "
            f"courses, 20 mandatory, none in the catalog), then {n - args.onboarding_learners:,}"
            f" progress events; {ob['links']:,} assignment links asked for")
        say(f"  plain loop        : {plain['rate']:8,.0f} events/s  "
            f"{plain['cpu_us']:5.0f} µs CPU/event")
        say(f"  worker            : {applied_rate:8,.0f} events/s  "
            f"{w['cpu_us']:5.0f} µs CPU/event; every "
            f"event applied after {ob['applied_s']:.1f} s, every link decided after "
            f"{ob['links_s']:.1f} s ({all_rate:,.0f} events/s to both)")
        say(f"  ratio worker/plain: {applied_rate / plain['rate']:.3f} (events applied; "
            f"{all_rate / plain['rate']:.3f} to the links decided too; target >= 0.15)")
        say(f"  batches           : {w['batches']:,.0f} of {w['consumed'] / w['batches']:.0f} "
            f"records on average, {w['batch_s'] / w['batches'] * 1000:.0f} ms each from taking "
            f"one to its writes acknowledged ({w['batch_s']:.0f} s in all, both agents)")
        say(f"  memory            : peak RSS {w['peak_mb']:.0f} MB ({w['rss_mb']:.0f} MB at the "
            f"end), {w['keys']:,.0f} learners (target < 300 MB for 100,000)")
        say(f"  reminder timer    : {ob['overlaps']} 'Timer reminders is overlapping' "
            f"warnings, longest runtime {ob['overlap_max_s']:.2f} s")
        figures.update(onboarding_ratio=applied_rate / plain["rate"],
                       onboarding_all_ratio=all_rate / plain["rate"],
                       onboarding_rate=applied_rate, onboarding_peak_mb=w["peak_mb"],
                       onboarding_overlaps=ob["overlaps"])
    if "history" not in args.skip:
        h = history_phase(broker, "lh.", args.history_events, args.history_learners, extra,
                          log)
        (first_s, first_cpu, first_n), (last_s, last_cpu, last_n) = h["first"], h["last"]
        first_us, last_us = first_cpu / first_n * 1e6, last_cpu / last_n * 1e6
        say(f"long history       : {args.history_events:,} events of "
            f"{args.history_learners} learner(s), 3 courses of 10 lessons")
        say(f"  first tenth       : {first_n / first_s:8,.0f} events/s  {first_us:5.0f} µs "
            f"CPU/event ({first_n:,.0f} events)")
        say(f"  last tenth        : {last_n / last_s:8,.0f} events/s  {last_us:5.0f} µs "
            f"CPU/event ({last_n:,.0f} events)")
        say(f"  last / first      : {last_us / first_us:.2f} (CPU per event; flat is 1.0)")
        figures.update(history_first_us=first_us, history_last_us=last_us,
                       history_ratio=last_us / first_us)
    return figures


def summary_rows(results: dict[str, dict[str, float]],
                 args: argparse.Namespace) -> list[tuple[str, dict[str, str]]]:
    rate = args.rate

    def row(name: str, key: str, spec: str) -> tuple[str, dict[str, str]]:
        return name, {kind: fmt(r.get(key), spec) for kind, r in results.items()}

    def received(name: str, key: str) -> tuple[str, dict[str, str]]:
        return name, {kind: f"{r[key + '_received']:,.0f}/{r[key + '_sent']:,.0f}"
                      for kind, r in results.items() if key + "_sent" in r}

    return [
        row("worker, events/s", "worker_rate", ",.0f"),
        row("worker / plain loop (events/s ratio)", "worker_ratio", ".3f"),
        row(f"memory: peak RSS MB, {args.rss_learners:,} learners", "rss_peak_mb", ".0f"),
        row("link agent, requests/s", "links_rate", ",.0f"),
        row("link agent / plain loop (ratio)", "links_ratio", ".3f"),
        row(f"POST to mandatory.completed p50 ms at {rate}/s", "post_p50_ms", ".1f"),
        row(f"POST to mandatory.completed p99 ms at {rate}/s", "post_p99_ms", ".1f"),
        received("  completions received/sent", "post"),
        row(f"request to link p99 ms at {rate}/s", "link_p99_ms", ".1f"),
        received("  links received/sent", "link"),
        row("SIGKILL restart to first event s, dynamic", "restart_dynamic_first_s", ".2f"),
        row("SIGKILL restart to first event s, static", "restart_static_first_s", ".2f"),
        row("SIGKILL restart to caught up s, dynamic", "restart_dynamic_caught_s", ".2f"),
        row("SIGKILL restart to caught up s, static", "restart_static_caught_s", ".2f"),
        row(f"onboarding {args.onboarding_learners:,} learners, events/s", "onboarding_rate",
            ",.0f"),
        row("onboarding / plain loop (ratio)", "onboarding_ratio", ".3f"),
        row("  with its links decided (ratio)", "onboarding_all_ratio", ".3f"),
        row("onboarding peak RSS MB", "onboarding_peak_mb", ".0f"),
        row("onboarding reminder timer overlaps", "onboarding_overlaps", ".0f"),
        row("long history CPU µs/event, first tenth", "history_first_us", ".0f"),
        row("long history CPU µs/event, last tenth", "history_last_us", ".0f"),
        row("long history last / first", "history_ratio", ".2f"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--learners", type=int, default=20_000)
    parser.add_argument("--rss-learners", type=int, default=100_000)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--latency-seconds", type=float, default=20)
    parser.add_argument("--set", action="append", default=[], metavar="VAR=VALUE",
                        help="a setting for the worker (e.g. WORKER_BATCH_MAX=500)")
    parser.add_argument("--profile", type=Path, help="write the worker's py-spy profile here "
                        "(on both brokers: NAME-kafka.EXT and NAME-embedded.EXT)")
    parser.add_argument("--link-requests", type=int, default=50_000)
    parser.add_argument("--restart-events", type=int, default=0,
                        help="the restart phase's backlog (default: --events)")
    parser.add_argument("--onboarding-learners", type=int, default=100_000,
                        help="the onboarding phase's learners (half as many progress "
                             "events follow)")
    parser.add_argument("--history-events", type=int, default=100_000)
    parser.add_argument("--history-learners", type=int, default=1)
    parser.add_argument("--skip", action="append", default=[], choices=PHASES)
    parser.add_argument("--only", action="append", default=[], choices=PHASES,
                        help="run only these phases (the others are skipped)")
    add_option(parser)
    args = parser.parse_args()
    if args.only:
        args.skip = [p for p in PHASES if p not in args.only]
    extra = dict(item.split("=", 1) for item in args.set)
    kinds = chosen(args.broker)
    logs = Path(tempfile.mkdtemp(prefix="worker-bench-"))
    print(f"logs: {logs}; brokers: {', '.join(LABELS[k] for k in kinds)}", flush=True)
    results: dict[str, dict[str, float]] = {}
    for kind in kinds:
        profile = args.profile
        if profile is not None and len(kinds) > 1:
            profile = profile.with_name(f"{profile.stem}-{kind}{profile.suffix}")
        with running(kind, logs / kind) as broker:
            print(f"{tag(kind)}{LABELS[kind]} at {broker.bootstrap}", flush=True)
            results[kind] = run_on(kind, broker, args, extra,
                                   logs / f"processes-{kind}.log", profile)
    print()
    print(summary(f"summary ({args.events:,} events, {args.learners:,} learners)", kinds,
                  summary_rows(results, args)))


if __name__ == "__main__":
    main()
