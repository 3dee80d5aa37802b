"""The commands as a newcomer runs them: ``dev`` brings up the embedded broker, the topics and
the ingress; ``send`` posts the samples; SIGTERM stops everything, leaving no process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from streams.kafka.embedded import answers, free_port
from tests.support import FIXTURES, read_topic

ROOT = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("EDUME_", "KAFKA_", "WORKER_"))}
    env.update(extra)
    return env


def _authorized(url: str, token: str | None) -> urllib.request.Request:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return urllib.request.Request(url, headers=headers)


def _wait_http(url: str, timeout_s: float, proc: subprocess.Popen[bytes],
               token: str | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"dev exited early: {proc.stdout.read().decode()}")  # type: ignore[union-attr]
        try:
            with urllib.request.urlopen(_authorized(url, token), timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} not ready within {timeout_s}s")


async def _wait_ready(url: str, timeout_s: float) -> None:
    import aiohttp

    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(url) as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{url} not ready within {timeout_s}s")


def _tansu_pids_on(port: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"tansu" in cmd and f"127.0.0.1:{port}".encode() in cmd:
                pids.append(int(entry.name))
    return pids


def test_dev_runs_the_pipeline_and_stops_cleanly_on_sigterm() -> None:
    kafka_port, http_port, worker_port = free_port(), free_port(), free_port()
    env = _env(
        KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{kafka_port}",
        INGRESS_PORT=str(http_port),
        WORKER_WEB_PORT=str(worker_port),
        EDUME_WEBHOOK_SECRETS="demo-secret",
        EDUME_LINK_SECRET="demo-link-secret",
        WORKER_API_TOKENS="demo-api-token",
        WORKER_LINK_TOKENS="demo-link-token",
        TOPIC_PREFIX="dev.",
        PYTHONUNBUFFERED="1",
    )
    proc = subprocess.Popen([sys.executable, "-m", "streams", "dev"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_http(f"http://127.0.0.1:{http_port}/readyz", 30, proc)
        assert _tansu_pids_on(kafka_port), "dev did not start the embedded broker"
        files = [str(FIXTURES / "course.added.json"), str(FIXTURES / "learner.added.json")]
        sent = subprocess.run([sys.executable, "-m", "streams", "send", *files], cwd=ROOT,
                              env=env, capture_output=True, timeout=60, check=False)
        assert sent.returncode == 0, sent.stderr.decode()
        lines = sent.stdout.decode().splitlines()
        assert len(lines) == 2 and all(": 202 " in line for line in lines), lines
        answer = json.loads(lines[0].split(": 202 ", 1)[1])
        assert answer["topic"] == "dev.edume.course.events"
        records = asyncio.run(read_topic(f"127.0.0.1:{kafka_port}", "dev.edume.course.events", 1))
        assert len(records) == 1 and records[0].key == b"22299"
        shown = subprocess.run([sys.executable, "-m", "streams", "read", "edume.learner.events",
                                "--idle-s", "1"], cwd=ROOT, env=env, capture_output=True,
                               timeout=60, check=True)
        [line] = shown.stdout.decode().splitlines()
        record = json.loads(line)
        assert record["key"] == "10217"
        assert record["headers"]["edume-event-type"] == "learner.added"
        assert record["value"]["payload"]["user"]["userId"] == 10217
        # The worker dev started has the learner in its table, for a caller with a token.
        progress = f"http://127.0.0.1:{worker_port}/learners/10217/progress"
        _wait_http(progress, 60, proc, token="demo-api-token")
        with urllib.request.urlopen(_authorized(progress, "demo-api-token"), timeout=5) as r:
            assert json.loads(r.read())["assignedCourseIds"] == [202, 2045, 2099]
        try:
            urllib.request.urlopen(progress, timeout=5)
            raise AssertionError("the query API answered without a token")
        except urllib.error.HTTPError as refused:
            assert (refused.code, refused.headers["WWW-Authenticate"]) == (401, "Bearer")
    finally:
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        try:
            output = proc.communicate(timeout=30)[0].decode()
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, output
    # Prompt: the producer's connections are closed before the broker is asked to stop (a
    # client still connected made the broker linger until it was killed, 5 s later).
    assert time.monotonic() - signalled < 4.0, output
    assert "demo-secret" not in output
    assert "demo-link-secret" not in output
    assert "demo-api-token" not in output and "demo-link-token" not in output
    assert not _tansu_pids_on(kafka_port), "the embedded broker outlived dev"
    for port in (kafka_port, http_port, worker_port):
        assert not answers("127.0.0.1", port), f"something still listens on {port}"


def test_ingress_refuses_to_start_without_secrets() -> None:
    result = subprocess.run([sys.executable, "-m", "streams", "ingress"], cwd=ROOT, env=_env(),
                            capture_output=True, timeout=60, check=False)
    assert result.returncode == 2
    assert b"EDUME_WEBHOOK_SECRETS" in result.stderr


def test_worker_refuses_to_start_without_the_link_secret() -> None:
    result = subprocess.run([sys.executable, "-m", "streams", "worker"], cwd=ROOT,
                            env=_env(KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}"),
                            capture_output=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert b"EDUME_LINK_SECRET" in result.stderr


@pytest.mark.parametrize("command", ["worker", "dev"])
def test_worker_and_dev_refuse_to_start_without_api_tokens(command: str) -> None:
    """Before any broker is looked for: the query API never runs open."""
    kafka_port = free_port()
    result = subprocess.run(
        [sys.executable, "-m", "streams", command], cwd=ROOT,
        env=_env(KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{kafka_port}",
                 EDUME_LINK_SECRET="demo-link-secret", EDUME_WEBHOOK_SECRETS="demo-secret",
                 WORKER_LINK_TOKENS="demo-link-token"),
        capture_output=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert b"set WORKER_API_TOKENS" in result.stderr, result.stderr
    assert b"demo-link-token" not in result.stderr + result.stdout
    assert not answers("127.0.0.1", kafka_port), "it started a broker before refusing"


async def test_every_202_is_on_the_topic_when_sigterm_lands_mid_flood(broker, prefix) -> None:
    """The main guarantee under shutdown: SIGTERM while 400 webhooks are arriving. Requests
    already taken finish (202 after the acknowledgement, or 503), the process exits 0, and
    every event answered 202 is on its topic."""
    import aiohttp

    from streams.kafka.admin import ensure_topics
    from tests.support import SECRET, sign

    await ensure_topics(broker.kafka, prefix)
    port = free_port()
    env = _env(KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap, TOPIC_PREFIX=prefix,
               INGRESS_PORT=str(port), EDUME_WEBHOOK_SECRETS=SECRET)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streams", "ingress", cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        await _wait_ready(f"http://127.0.0.1:{port}/readyz", 30)
        template = json.loads((FIXTURES / "learner.activity.started.lesson.json").read_bytes())
        bodies = []
        for i in range(400):
            template["payload"]["user"]["userId"] = 70_000 + i
            bodies.append(json.dumps(template, separators=(",", ":")).encode())
        answered: dict[bytes, int] = {}
        queue = list(reversed(bodies))
        a_quarter_answered = asyncio.Event()

        async def client(http: aiohttp.ClientSession) -> None:
            while queue:
                body = queue.pop()
                try:
                    async with http.post(
                        f"http://127.0.0.1:{port}/webhooks/edume", data=body,
                        headers={"X-Edume-Signature": sign(body)},
                    ) as r:
                        await r.read()
                        answered[body] = r.status
                except aiohttp.ClientError:
                    answered[body] = 0  # connection closed by the shutdown: eduMe retries
                if len(answered) >= 100:
                    a_quarter_answered.set()

        async with aiohttp.ClientSession() as http:
            clients = [asyncio.create_task(client(http)) for _ in range(32)]
            await asyncio.wait_for(a_quarter_answered.wait(), 60)
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(asyncio.gather(*clients), 60)
        output = (await asyncio.wait_for(proc.communicate(), 30))[0].decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, output
    accepted = {body for body, status in answered.items() if status == 202}
    assert len(accepted) >= 100
    assert set(answered.values()) <= {0, 202, 503}, answered.values()
    records = await read_topic(broker.bootstrap, prefix + "edume.learner.events", len(accepted))
    assert accepted <= {r.value for r in records}
