"""Courses that predate the webhooks, end to end on the embedded broker and on Apache Kafka:
``edume-streams catalog import`` as a user runs it (a subprocess), a real worker folding
the imports, a link request for an imported course issued, an earlier eduMe event losing
to the import and a later one winning over it, and a bad import record dead-lettered."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from streams.core import headers, topics
from streams.core.clock import rfc3339
from streams.kafka.admin import ensure_topics
from tests.support import read_topic
from tests.worker_support import ROOT, WorkerProcess, event, eventually, publish

pytestmark = pytest.mark.integration

IMPORTED = 70001
"""Imported published; no eduMe event until the test unpublishes it."""
OLDER_EVENT = 70002
"""Imported published; eduMe's only event (unpublished) is older than the import."""
IMPORTED_DRAFT = 70003
"""Imported unpublished: a link to it is refused."""
TEAM = 55526


def cli(broker: Any, prefix: str, *args: str, stdin: bytes | None = None
        ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDUME_", "KAFKA_"))}
    env.update(KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap, TOPIC_PREFIX=prefix)
    return subprocess.run([sys.executable, "-m", "streams", *args], cwd=ROOT, env=env,
                          input=None if stdin is None else stdin.decode(),
                          capture_output=True, text=True, timeout=120, check=False)


def course_line(course_id: int, *, published: bool) -> dict[str, Any]:
    return {"courseId": course_id, "courseKey": f"pre-webhooks-{course_id}",
            "groupId": 12779, "teamIds": [TEAM], "moduleIds": [24775],
            "published": published, "deleted": False}


def course_event(kind: str, course_id: int, at_ms: int) -> Any:
    return event({"type": kind, "timestamp": rfc3339(at_ms), "payload": {
        "group": {"groupId": 12779}, "teams": [{"teamId": TEAM}],
        "course": {"courseId": course_id, "courseKey": f"pre-webhooks-{course_id}"},
        "modules": [{"moduleId": 24775}], "version": 1}})


def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]],
            age_s: float = 0.0) -> None:
    """As another client might: murmur2, as the contract asks of every producer; stamped
    ``age_s`` ago (a link request older than the catalog's grace is decided at once, not
    held for a course event that might still come)."""
    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random",
                         "acks": "all"})
    failures: list[Any] = []
    stamp = int((time.time() - age_s) * 1000)
    for key, value in records:
        producer.produce(topic, value, key, timestamp=stamp,
                         on_delivery=lambda err, _m: failures.append(err) if err else None)
    assert producer.flush(30) == 0 and not failures


def link_request(ext: str, course_id: int) -> tuple[bytes, bytes]:
    return ext.encode(), json.dumps({"kind": "course", "externalUserId": ext,
                                     "contentId": course_id}).encode()


async def test_an_imported_course_is_linked_until_a_later_event_unpublishes_it(
    each_broker: Any, prefix: str, tmp_path: Path
) -> None:
    broker = each_broker
    await ensure_topics(broker.kafka, prefix)
    now_ms = int(time.time() * 1000)
    as_of_ms = now_ms - 600_000  # the export was taken ten minutes ago
    # eduMe's only word on OLDER_EVENT came before the export: the import wins over it.
    publish(broker.bootstrap, prefix,
            [course_event("course.unpublished", OLDER_EVENT, as_of_ms - 60_000)])

    path = tmp_path / "courses.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in [
        course_line(IMPORTED, published=True),
        course_line(OLDER_EVENT, published=True),
        course_line(IMPORTED_DRAFT, published=False),
    ]) + "\n")
    # All or nothing: a file with a bad line publishes none of its good ones.
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(course_line(70009, published=True)) + "\n{\"courseId\": 1}\n")
    refused = cli(broker, prefix, "catalog", "import", str(bad))
    assert refused.returncode == 1, refused.stderr
    assert f"{bad}: line 2: missing courseKey" in refused.stderr
    assert "0 courses published to" in refused.stdout and "1 line refused" in refused.stdout

    as_of = rfc3339(as_of_ms)
    done = cli(broker, prefix, "catalog", "import", str(path), "--as-of", as_of)
    assert done.returncode == 0, done.stderr
    assert done.stdout == (f"3 courses published to {prefix}{topics.CATALOG_IMPORTS} "
                           f"(importedAt {as_of}), 0 lines refused\n")
    records = await read_topic(broker.bootstrap, prefix + topics.CATALOG_IMPORTS, 3)
    assert sorted(r.key for r in records) == [b"70001", b"70002", b"70003"]
    for record in records:
        value = json.loads(record.value)
        assert value["importedAt"] == as_of and str(value["courseId"]).encode() == record.key
        assert dict(record.headers)[headers.EVENT_TYPE] == b"catalog.import"
    # A record the workers cannot use goes to streams.dlq, with the reason.
    produce(broker.bootstrap, prefix + topics.CATALOG_IMPORTS, [(b"70004", b"{not json")])

    worker = WorkerProcess(broker, prefix, tmp_path).start()
    try:
        await worker.wait_ready(90)

        async def entry(course_id: int) -> Any:
            status, body = await worker.get(f"/catalog/courses/{course_id}")
            return body if status == 200 else None

        imported = await eventually(lambda: entry(IMPORTED), 30)
        assert imported, worker.log_text()[-3000:]
        assert {k: imported[k] for k in ("courseKey", "groupId", "teamIds", "moduleIds",
                                         "published", "deleted", "lastEventAt")} == {
            "courseKey": "pre-webhooks-70001", "groupId": 12779, "teamIds": [TEAM],
            "moduleIds": [24775], "published": True, "deleted": False, "lastEventAt": as_of}

        async def older_folded() -> Any:
            body = await entry(OLDER_EVENT)
            return body if body and body["eventsApplied"] == 2 else None

        older = await eventually(older_folded, 30)
        assert older and older["published"] is True, older  # the older event lost

        requests = prefix + topics.LINK_REQUESTS
        produce(broker.bootstrap, requests, [link_request("ann", IMPORTED),
                                             link_request("ben", OLDER_EVENT),
                                             link_request("cy", IMPORTED_DRAFT)],
                age_s=60)
        issued = await read_topic(broker.bootstrap, prefix + topics.LINK_ISSUED, 2,
                                  timeout_s=40)
        assert sorted((json.loads(r.value)["externalUserId"], json.loads(r.value)["courseId"],
                       json.loads(r.value)["teamIds"]) for r in issued) == [
            ("ann", IMPORTED, [TEAM]), ("ben", OLDER_EVENT, [TEAM])]
        (draft,) = await read_topic(broker.bootstrap, prefix + topics.LINK_REJECTED, 1,
                                    timeout_s=40)
        assert json.loads(draft.value)["reason"] == f"course {IMPORTED_DRAFT} is not published"

        # eduMe speaks of the course at last, after the export: its event wins.
        publish(broker.bootstrap, prefix, [course_event("course.unpublished", IMPORTED,
                                                        int(time.time() * 1000))])

        async def unpublished() -> bool:
            body = await entry(IMPORTED)
            return bool(body) and body["published"] is False

        assert await eventually(unpublished, 30), worker.log_text()[-3000:]
        produce(broker.bootstrap, requests, [link_request("dee", IMPORTED)], age_s=60)
        rejected = await read_topic(broker.bootstrap, prefix + topics.LINK_REJECTED, 2,
                                    timeout_s=40)
        reasons = sorted(json.loads(r.value)["reason"] for r in rejected)
        assert reasons == [f"course {IMPORTED} is not published",
                           f"course {IMPORTED_DRAFT} is not published"]
        assert len(await read_topic(broker.bootstrap, prefix + topics.LINK_ISSUED, 2)) == 2

        (dead,) = await read_topic(broker.bootstrap, prefix + topics.STREAMS_DLQ, 1)
        assert dead.value == b"{not json"
        dead_headers = dict(dead.headers)
        assert dead_headers[headers.DLQ_REASON] == b"not JSON"
        assert dead_headers[headers.DLQ_SOURCE].startswith(
            f"{prefix}{topics.CATALOG_IMPORTS}/".encode())
        assert await worker.metric(
            "edume_worker_events_applied_total", lambda s: 'type="catalog.import"' in s) == 3
    finally:
        worker.stop()
