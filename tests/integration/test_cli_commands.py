"""``topics create``, ``policy`` and ``request-link`` as a user runs them: the CLI as a
subprocess against the embedded broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streams.core import headers, topics
from streams.kafka.embedded import EmbeddedBroker
from tests.support import read_topic

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def cli(broker: EmbeddedBroker, prefix: str, *args: str,
        **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDUME_", "KAFKA_"))}
    env.update(KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap, TOPIC_PREFIX=prefix, **extra_env)
    return subprocess.run([sys.executable, "-m", "streams", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


async def test_topics_policies_and_a_link_request_from_the_command_line(
    each_broker: EmbeddedBroker, prefix: str
) -> None:
    broker = each_broker
    first = cli(broker, prefix, "topics", "create")
    assert first.returncode == 0, first.stderr
    assert f"{prefix}{topics.LINK_REQUESTS}: created" in first.stdout
    assert f"created {len(topics.CATALOG)} of {len(topics.CATALOG)} topics" in first.stderr
    second = cli(broker, prefix, "topics", "create")
    assert second.returncode == 0
    assert "nothing changed" in second.stderr and ": created" not in second.stdout

    assert cli(broker, prefix, "policy", "set", "9961", "--groups", "5,6").returncode == 0
    named = cli(broker, prefix, "policy", "set", "17167", "--team-id", "55526")
    assert named.returncode == 0, named.stderr
    assert "links put learners in team 55526" in named.stdout
    listed = cli(broker, prefix, "policy", "list")
    assert sorted((json.loads(line) for line in listed.stdout.splitlines()), key=str) == sorted([
        {"courseId": 9961, "mandatory": True, "groupIds": [5, 6], "teamId": None},
        {"courseId": 17167, "mandatory": True, "groupIds": None, "teamId": 55526},
    ], key=str)
    assert cli(broker, prefix, "policy", "unset", "9961").returncode == 0
    after = cli(broker, prefix, "policy", "list")
    assert [json.loads(line)["courseId"] for line in after.stdout.splitlines()] == [17167]
    bad = cli(broker, prefix, "policy", "set", "12x")
    assert bad.returncode == 2 and "COURSE_ID must be a decimal id" in bad.stderr

    asked = cli(broker, prefix, "request-link", "course", "22299", "--user", "jane doe/+&",
                "--team-id", "55526,7")
    assert asked.returncode == 0, asked.stderr
    (record,) = await read_topic(broker.bootstrap, prefix + topics.LINK_REQUESTS, 1)
    value = json.loads(record.value)
    assert record.key == b"jane doe/+&"
    assert {k: value[k] for k in ("kind", "externalUserId", "contentId", "teamIds")} == {
        "kind": "course", "externalUserId": "jane doe/+&", "contentId": 22299,
        "teamIds": [55526, 7]}
    assert headers.RECEIVED_AT in dict(record.headers)
    refused = cli(broker, prefix, "request-link", "course", "abc", "--user", "u")
    assert refused.returncode == 2 and "CONTENT_ID must be a decimal id" in refused.stderr


async def test_a_worker_without_its_topics_says_so_and_creates_none(
    each_broker: EmbeddedBroker, prefix: str
) -> None:
    from streams.kafka.admin import admin_client

    broker = each_broker
    result = cli(broker, prefix, "worker", EDUME_LINK_SECRET="s", WORKER_API_TOKENS="t",
                 KAFKA_EMBEDDED_BROKER="true" if broker.embedded else "false")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "create them with `edume-streams topics create`" in result.stderr
    assert f"{prefix}{topics.LEARNER_EVENTS}" in result.stderr
    async with admin_client(broker.kafka, 15.0) as admin:
        names = set(await admin.list_topics())
    assert f"{prefix}{topics.LEARNER_EVENTS}" not in names  # asking did not create it
