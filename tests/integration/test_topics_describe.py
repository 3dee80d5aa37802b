"""``topics describe`` as a user runs it: the CLI as a subprocess against the embedded broker,
which answers DescribeConfigs with the configs a topic was created with (and no others)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka.admin import NewTopic

from streams.core import topics
from streams.kafka.admin import admin_client
from streams.kafka.embedded import EmbeddedBroker, free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def cli(bootstrap: str, prefix: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDUME_", "KAFKA_"))}
    env.update(KAFKA_BOOTSTRAP_SERVERS=bootstrap, TOPIC_PREFIX=prefix)
    return subprocess.run([sys.executable, "-m", "streams", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def lines(out: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in out.splitlines())


async def test_describe_matches_after_create_and_reports_what_differs(
    broker: EmbeddedBroker, prefix: str
) -> None:
    names = sorted(topics.prefixed(s.name, prefix) for s in topics.CATALOG)
    assert cli(broker.bootstrap, prefix, "topics", "create").returncode == 0
    same = cli(broker.bootstrap, prefix, "topics", "describe")
    assert same.returncode == 0, same.stderr
    assert same.stdout.splitlines() == [f"{n}: ok" for n in names]
    assert f"all {len(names)} topics match the catalog" in same.stderr

    # A topic deleted: missing, exit 1; and asking about it did not create it again.
    gone = prefix + topics.LINK_ISSUED
    async with admin_client(broker.kafka) as admin:
        await admin.delete_topics([gone])
    missing = cli(broker.bootstrap, prefix, "topics", "describe")
    assert missing.returncode == 1
    assert lines(missing.stdout)[gone] == "missing"
    assert sum(v == "ok" for v in lines(missing.stdout).values()) == len(names) - 1
    assert f"{len(names)} topics: {len(names) - 1} ok, 1 missing, 0 different" in missing.stderr
    async with admin_client(broker.kafka) as admin:
        assert gone not in await admin.list_topics()

    # Another deployment whose learner topic was made by hand, before `topics create`:
    # 3 partitions, compacted, and no other config.
    other = prefix[:-1] + "b."
    learner = other + topics.LEARNER_EVENTS
    async with admin_client(broker.kafka) as admin:
        await admin.create_topics(
            [NewTopic(learner, 3, 1, topic_configs={"cleanup.policy": "compact"})])
    created = cli(broker.bootstrap, other, "topics", "create")
    assert f"{learner}: exists" in created.stdout
    wrong = cli(broker.bootstrap, other, "topics", "describe")
    assert wrong.returncode == 1, wrong.stderr
    found = lines(wrong.stdout)
    if broker.embedded:  # it reports only the configs a topic was created with
        assert found[learner] == (
            "wrong partition count 3, want 8; config cleanup.policy is compact, want delete; "
            "config retention.ms, max.message.bytes not reported by the broker")
    else:  # Apache Kafka reports every config, defaults included
        assert found[learner] == (
            "wrong partition count 3, want 8; config cleanup.policy is compact, want delete; "
            "config retention.ms is 604800000, want 2419200000; "
            "config max.message.bytes is 1048588, want 2097152")
    assert all(v == "ok" for k, v in found.items() if k != learner)
    summary = f"{len(names)} topics: {len(names) - 1} ok, 0 missing, 1 different"
    if broker.embedded:
        summary += "; 2 configs not reported by the broker (not compared)"
    assert wrong.stderr.strip().endswith(summary), wrong.stderr


def test_describe_without_a_broker_is_an_error() -> None:
    result = cli(f"127.0.0.1:{free_port()}", "x.", "topics", "describe")
    assert result.returncode == 2
    assert "cannot reach the broker" in result.stderr and result.stdout == ""
