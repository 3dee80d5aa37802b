"""Fixtures: the brokers (one of each kind per session, on free ports), a fresh topic prefix
per test, and an in-process ingress over real loopback HTTP.

``broker`` is what the integration tier runs on: Apache Kafka (``tests/apache_kafka.py``)
when ``java`` and ``mvn`` are on PATH, else the embedded broker, and the header of the run
says which. With ``CI=true`` Apache Kafka is required: the run stops when Java or Maven is
missing. ``EDUME_TEST_BROKER=embedded`` (or ``kafka``) chooses by hand. ``embedded_broker``
is always the embedded one, for what users run on it (``dev``, the commands, a recovery
run).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from streams.kafka.embedded import EmbeddedBroker
from tests.apache_kafka import KAFKA_VERSION, KafkaCluster, tools_missing
from tests.support import RunningIngress, make_settings, serve_ingress


def broker_kind() -> str:
    """``kafka`` or ``embedded``, for this run's ``broker`` fixture."""
    forced = os.environ.get("EDUME_TEST_BROKER", "").strip().lower()
    if forced not in ("", "kafka", "embedded"):
        pytest.exit(f"EDUME_TEST_BROKER must be kafka or embedded, got {forced!r}", returncode=4)
    if forced == "embedded":
        return "embedded"
    missing = tools_missing()
    if missing:
        if os.environ.get("CI", "").lower() == "true" or forced == "kafka":
            pytest.exit(
                f"Apache Kafka is required here (CI=true or EDUME_TEST_BROKER=kafka) and "
                f"needs {' and '.join(missing)} on PATH", returncode=4,
            )
        return "embedded"
    return "kafka"


def pytest_report_header(config: pytest.Config) -> str:
    kind = broker_kind()
    if kind == "kafka":
        return (f"integration tier on Apache Kafka {KAFKA_VERSION} (KRaft, started from the "
                "Maven cache); embedded-broker tests on the embedded broker")
    why = ("EDUME_TEST_BROKER=embedded" if os.environ.get("EDUME_TEST_BROKER")
           else f"{' and '.join(tools_missing())} not on PATH")
    return f"integration tier on the EMBEDDED broker ({why}); Apache Kafka tests skipped"


@pytest.fixture(scope="session")
def embedded_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """Started once; a failed start raises with the tail of the broker's log."""
    log_path = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log_path=log_path) as running:
        yield running


@pytest.fixture(scope="session")
def apache_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """One Apache Kafka node for the session (skips where the run has none: see the module)."""
    if broker_kind() != "kafka":
        pytest.skip("Apache Kafka not available in this run (see the run's header)")
    with KafkaCluster(nodes=1, workdir=tmp_path_factory.mktemp("kafka")) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def broker(request: pytest.FixtureRequest) -> Any:
    """The integration tier's broker: Apache Kafka, or the embedded one (see the module)."""
    if broker_kind() == "kafka":
        return request.getfixturevalue("apache_kafka")
    return request.getfixturevalue("embedded_broker")


@pytest.fixture(params=["apache-kafka", "embedded"])
def each_broker(request: pytest.FixtureRequest) -> Any:
    """Both kinds, for the tests of what users run on either."""
    if request.param == "embedded":
        return request.getfixturevalue("embedded_broker")
    return request.getfixturevalue("apache_kafka")


@pytest.fixture
def prefix() -> str:
    """A fresh topic prefix per test: tests share the broker, never topics."""
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture
async def ingress(broker: Any, prefix: str) -> AsyncIterator[RunningIngress]:
    async with serve_ingress(make_settings(broker.bootstrap, prefix)) as running:
        yield running
