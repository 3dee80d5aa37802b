"""Test helpers for the workers: a worker as a real process (started, stopped, SIGKILLed by its
pid), its query API, events generated in bulk and written as the ingress writes them, and
the oracle: the same events folded by the pure reducers."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from confluent_kafka import Producer
from multidict import CIMultiDict

from schemas import WEBHOOK_ADAPTER
from streams.core import headers, topics
from streams.core.clock import rfc3339
from streams.core.state.catalog import CourseEntry, apply_course_event
from streams.core.state.common import meta_of
from streams.core.state.progress import LearnerState, apply_learner_event
from streams.kafka.embedded import free_port
from streams.processes import stop_process

ROOT = Path(__file__).resolve().parents[1]


async def eventually(check: Callable[[], Awaitable[Any]], timeout_s: float = 30.0,
                     every_s: float = 0.2) -> Any:
    """Poll ``check`` (a worker's state is seen over HTTP: there is nothing to await) until it
    answers something truthy or ``timeout_s`` passes; its last answer."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(every_s)


LINK_SECRET = "worker-test-link-secret"
API_TOKEN = "worker-test-api-token"
"""The token ``WorkerProcess.get`` sends by default (``WORKER_API_TOKENS``): links without
their URLs."""
NEXT_API_TOKEN = "worker-test-api-token-next"
"""A second ``WORKER_API_TOKENS`` token, as during a rotation."""
LINK_TOKEN = "worker-test-link-token"
"""``WORKER_LINK_TOKENS``: links with their signed URLs."""


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def worker_env(bootstrap: str, prefix: str, port: int, *, embedded: bool = True,
               **extra: str) -> dict[str, str]:
    """A worker's environment; ``embedded``: the broker is the embedded one (its
    workarounds on), else Apache Kafka with the production settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDUME_", "KAFKA_",
                                                                      "WORKER_", "TOPIC_"))}
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        TOPIC_PREFIX=prefix,
        WORKER_WEB_PORT=str(port),
        KAFKA_EMBEDDED_BROKER="true" if embedded else "false",
        WORKER_SESSION_TIMEOUT_S="6",
        PYTHONUNBUFFERED="1",
        LOG_LEVEL="INFO",
        EDUME_LINK_SECRET=LINK_SECRET,
        WORKER_API_TOKENS=f"{API_TOKEN},{NEXT_API_TOKEN}",
        WORKER_LINK_TOKENS=LINK_TOKEN,
    )
    env.update(extra)
    return env


@dataclass
class WorkerProcess:
    """``edume-streams worker`` as a subprocess; its output goes to a log file. ``broker``:
    the embedded broker or an Apache Kafka cluster (``bootstrap``, ``embedded``)."""

    broker: Any
    prefix: str
    log_dir: Path
    port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"worker-{self.port}.log"

    def start(self) -> WorkerProcess:
        self.starts += 1
        log = open(self.log_path, "ab")
        log.write(f"\n===== start {self.starts} at {time.time():.3f}\n".encode())
        log.flush()
        # Faust's data directory in the test's own directory: a SIGKILLed worker cannot
        # remove a temporary one (WORKER_DATA_DIR="" in extra_env: the default).
        data_dir = {"WORKER_DATA_DIR": str(self.log_dir / f"data-{self.port}")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streams", "worker"],
            cwd=ROOT,
            env=worker_env(self.broker.bootstrap, self.prefix, self.port,
                           embedded=self.broker.embedded, **{**data_dir, **self.extra_env}),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown at all, as a crash or an OOM kill."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL if it lingers; the exit status."""
        return None if self.process is None else stop_process(self.process, timeout_s)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def get(self, path: str, token: str | None = API_TOKEN) -> tuple[int, Any]:
        """``GET path`` with ``Authorization: Bearer token`` (``None``: no header); the
        status and the body (parsed when JSON)."""
        status, _, body = await self.request(path, bearer(token) if token else {})
        return status, body

    async def request(self, path: str, headers: Mapping[str, str]
                      ) -> tuple[int, CIMultiDict[str], Any]:
        """``GET path`` with exactly these headers: the status, headers (any case) and body."""
        async with aiohttp.ClientSession() as http, http.get(
            self.url + path, headers=headers, timeout=aiohttp.ClientTimeout(total=10)
        ) as r:
            body = await r.read()
            answer_headers = CIMultiDict(r.headers)
            try:
                return r.status, answer_headers, json.loads(body)
            except ValueError:
                return r.status, answer_headers, body.decode(errors="replace")

    async def wait_ready(self, timeout_s: float = 60.0) -> float:
        """Seconds until /readyz answers 200."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"worker exited {self.process.returncode}:\n"
                                     + self.log_text()[-4000:])
            try:
                status, _ = await self.get("/readyz")
                if status == 200:
                    return time.monotonic() - started
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.1)
        raise AssertionError(f"worker not ready in {timeout_s}s:\n" + self.log_text()[-4000:])

    async def metric(self, name: str, where: Callable[[str], bool] | None = None) -> float:
        """The sum of a metric's samples on /metrics (0 when absent); ``where``: only the
        samples whose name and labels (``name{...}``) it accepts."""
        async with aiohttp.ClientSession() as http, http.get(self.url + "/metrics") as r:
            text = (await r.read()).decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and not line.startswith("#"):
                head, _, value = line.rpartition(" ")
                if (head == name or head.startswith(name + "{")) and (
                    where is None or where(head)
                ):
                    total += float(value)
        return total


@dataclass(frozen=True)
class Event:
    """A webhook as the ingress publishes it."""

    family: str
    key: str
    value: bytes

    @property
    def event_id(self) -> str:
        return hashlib.sha256(self.value).hexdigest()

    @property
    def topic(self) -> str:
        return topics.EVENT_TOPIC_BY_FAMILY[self.family]  # type: ignore[index]


def event(doc: dict[str, Any]) -> Event:
    value = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    model = WEBHOOK_ADAPTER.validate_json(value)
    return Event(model.FAMILY, str(model.routing_id), value)


def produce(producer: Producer, prefix: str, e: Event,
            on_delivery: Callable[[Any, Any], None]) -> None:
    """One event as the ingress writes it (its key, its headers) to its topic."""
    producer.produce(
        prefix + e.topic, e.value, e.key.encode(),
        headers=[(headers.EVENT_ID, e.event_id.encode()),
                 (headers.RECEIVED_AT, rfc3339(int(time.time() * 1000)).encode())],
        on_delivery=on_delivery,
    )


def delivered(failures: list[Any], ends: dict[tuple[str, int], int] | None = None
              ) -> Callable[[Any, Any], None]:
    """A delivery callback: errors into ``failures``; with ``ends``, each partition's offset
    after the last record written there (from the delivery reports, which are right on
    the embedded broker too, unlike its ListOffsets answer)."""
    def on_delivery(err: Any, message: Any) -> None:
        if err:
            failures.append(err)
        elif ends is not None:
            tp = (message.topic(), message.partition())
            ends[tp] = max(ends.get(tp, 0), message.offset() + 1)

    return on_delivery


def publish(bootstrap: str, prefix: str, events: Iterable[Event], *, linger_ms: float = 5,
            ends: dict[tuple[str, int], int] | None = None) -> int:
    """Write events as the ingress does (murmur2 of the key, headers, batches of several
    records) and wait for every acknowledgement; ``ends``: see ``delivered``."""
    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random",
                         "linger.ms": linger_ms, "acks": "all", "enable.idempotence": True})
    failures: list[Any] = []
    on_delivery = delivered(failures, ends)
    count = 0
    for e in events:
        produce(producer, prefix, e, on_delivery)
        count += 1
        if count % 10_000 == 0:
            producer.poll(0)
    left = producer.flush(30)
    assert not left and not failures, (left, failures[:3])
    return count


def learner_story(user: int, courses: Sequence[int], completes: Sequence[int], group: int,
                  minute: int = 0) -> list[Event]:
    """A learner added to ``courses`` who starts each, does a lesson, and finishes
    ``completes``: 2 + 2 per course + 1 per completion events."""
    user_doc = {"eId": f"ext-{user}", "userId": user, "identifiers": []}
    ts = f"2026-11-0{1 + minute % 9}T10:{minute % 60:02d}:"
    out = [event({"type": "learner.added", "timestamp": ts + "00.000Z", "payload": {
        "user": user_doc, "group": {"groupId": group},
        "courses": [{"courseId": c} for c in courses], "version": 1}})]
    out.append(event({"type": "learner.activated", "timestamp": ts + "01.000Z", "payload": {
        "user": user_doc, "group": {"groupId": group},
        "courses": [{"courseId": c} for c in courses], "version": 1}}))
    for i, course in enumerate(courses):
        base = {"user": user_doc, "group": {"groupId": group}, "course": {"courseId": course},
                "version": 1}
        out.append(event({"type": "learner.activity.started", "timestamp": f"{ts}1{i}.000Z",
                          "payload": {"type": "course", **base}}))
        out.append(event({"type": "learner.activity.finished", "timestamp": f"{ts}2{i}.000Z",
                          "payload": {"type": "lesson", **base, "module": {"moduleId": 1},
                                      "lesson": {"lessonId": 100 + i}}}))
        if course in completes:
            out.append(event({"type": "learner.activity.finished", "timestamp": f"{ts}3{i}.000Z",
                              "payload": {"type": "course", **base}}))
    return out


def course_story(course: int, teams: Sequence[int]) -> list[Event]:
    payload = {"group": {"groupId": 12779}, "teams": [{"teamId": t} for t in teams],
               "course": {"courseId": course, "courseKey": f"key-{course}"},
               "modules": [{"moduleId": 1}], "version": 1}
    return [
        event({"type": "course.added", "timestamp": "2026-10-01T00:00:00.000Z",
               "payload": payload}),
        event({"type": "course.published", "timestamp": "2026-10-01T00:01:00.000Z",
               "payload": payload}),
    ]


def fold(events: Iterable[Event], family: str) -> dict[int, Any]:
    """The oracle: each key's state from the pure reducer (order does not matter)."""
    new, apply = ((LearnerState, apply_learner_event) if family == "learner"
                  else (CourseEntry, apply_course_event))
    states: dict[int, Any] = {}
    for e in events:
        if e.family == family:
            model = WEBHOOK_ADAPTER.validate_json(e.value)
            state = states.setdefault(int(e.key), new(int(e.key)))
            apply(state, model, meta_of(e.event_id, model.timestamp))
    return states
