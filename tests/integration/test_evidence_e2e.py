"""Signed evidence of every completion, end to end on each broker: eduMe's events through the
ingress (one signed, one with a bearer token), the worker writes each completion's proof to
``training.evidence``, and ``edume-streams evidence`` and the query API show each with its
signature checked again; ``forget`` removes them."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import hmac
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from streams.core import topics
from tests.support import BEARER, SECRET, make_settings, read_topic, serve_ingress
from tests.worker_support import ROOT, WorkerProcess, eventually

pytestmark = pytest.mark.integration

USER = 7301


def finished(course: int, minute: int) -> bytes:
    doc = {"type": "learner.activity.finished",
           "timestamp": f"2026-11-03T10:{minute:02d}:00.000Z",
           "payload": {"type": "course", "user": {"eId": "ext-7301", "userId": USER,
                                                  "identifiers": []},
                       "group": {"groupId": 5}, "course": {"courseId": course}, "version": 1}}
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def cli(broker: Any, prefix: str, *args: str, secrets: str = SECRET
        ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDUME_", "KAFKA_",
                                                                      "WORKER_", "TOPIC_"))}
    env.update(KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap, TOPIC_PREFIX=prefix,
               KAFKA_EMBEDDED_BROKER="true" if broker.embedded else "false",
               EDUME_WEBHOOK_SECRETS=secrets)
    return subprocess.run([sys.executable, "-m", "streams", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


async def test_each_completion_keeps_its_signed_proof(
    each_broker: Any, prefix: str, tmp_path: Path
) -> None:
    broker = each_broker
    signed, by_token = finished(9101, 1), finished(9102, 2)
    async with serve_ingress(make_settings(broker.bootstrap, prefix)) as ingress:
        assert (await ingress.post(signed))[0] == 202
        assert (await ingress.post(by_token, secret=None,
                                   headers={"Authorization": f"Bearer {BEARER}"}))[0] == 202
    worker = WorkerProcess(broker, prefix, tmp_path,
                           extra_env={"EDUME_WEBHOOK_SECRETS": SECRET}).start()
    try:
        await worker.wait_ready(90)
        proofs = await read_topic(broker.bootstrap, prefix + topics.TRAINING_EVIDENCE, 2,
                                  timeout_s=60)
        values = {json.loads(r.value)["courseId"]: json.loads(r.value) for r in proofs}
        assert {r.key for r in proofs} == {b"7301/9101", b"7301/9102"}
        assert len({r.partition for r in proofs}) == 1  # one partition per learner
        first = values[9101]
        assert first["event"].encode() == signed  # the exact published bytes
        assert first["eventId"] == hashlib.sha256(signed).hexdigest()
        assert first["signature"] == hmac.new(SECRET.encode(), signed,
                                              hashlib.sha256).hexdigest()
        assert first["topic"] == prefix + topics.LEARNER_EVENTS and first["offset"] >= 0
        assert first["completedAt"] == "2026-11-03T10:01:00.000Z" and first["receivedAt"]
        assert values[9102]["signature"] is None

        csv_path = tmp_path / "proof.csv"
        shown = await asyncio.to_thread(cli, broker, prefix, "evidence", "--user-id",
                                        str(USER), "--csv", str(csv_path))
        assert shown.returncode == 0, shown.stderr
        lines = shown.stdout.splitlines()
        assert len(lines) == 2
        assert lines[0].startswith("course 9101 completed at 2026-11-03T10:01:00.000Z: "
                                   "signed by eduMe")
        assert "course 9102" in lines[1] and "bearer token, not signed" in lines[1]
        rows = list(csv.DictReader(csv_path.open(encoding="utf-8")))
        assert [row["event"].encode() for row in rows] == [signed, by_token]
        rotated = await asyncio.to_thread(cli, broker, prefix, "evidence", "--user-id",
                                          str(USER), "--course-id", "9101",
                                          secrets="another-secret")
        assert rotated.stdout.count("\n") == 1 and "signature does not verify" in rotated.stdout

        status, body = await worker.get(f"/learners/{USER}/evidence")
        assert status == 200, body
        assert [(c["courseId"], c["verdict"]) for c in body["completions"]] == [
            (9101, "signed by eduMe"), (9102, "authenticated by bearer token, not signed")]
        assert (await worker.get(f"/learners/{USER}/evidence", token=None))[0] == 401
        assert (await worker.get("/learners/999999/evidence"))[0] == 404

        forgotten = await asyncio.to_thread(cli, broker, prefix, "forget", "--user-id",
                                            str(USER), "--timeout", "60")
        assert forgotten.returncode == 0, forgotten.stdout + forgotten.stderr
        after = await asyncio.to_thread(cli, broker, prefix, "evidence", "--user-id", str(USER))
        assert after.returncode == 0 and after.stdout == ""
        assert "0 completion(s)" in after.stderr

        async def gone() -> bool:
            return (await worker.get(f"/learners/{USER}/evidence"))[0] == 404

        assert await eventually(gone)
    finally:
        worker.stop()
