"""Pure parts of the ingress shell: settings, the redelivery memory, metrics, the catalog."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from aiokafka.partitioner import murmur2
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from schemas import WEBHOOK_ADAPTER
from streams.core import topics
from streams.core.clock import Rfc3339Clock
from streams.core.errors import ConfigurationError
from streams.core.validation import summarise_validation
from streams.ingress.dedup import RecentIds
from streams.ingress.metrics import IngressMetrics
from streams.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_settings_defaults_follow_the_contract() -> None:
    s = Settings.from_env({})
    assert (s.kafka_bootstrap_servers, s.topic_prefix, s.ingress_host, s.ingress_port) == (
        "127.0.0.1:9092", "", "127.0.0.1", 8080)
    assert (s.worker_web_port, s.max_body_bytes, s.link_base_url) == (
        6066, 1_048_576, "https://learn.edume.com/e")
    assert s.kafka_enable_idempotence is True


def test_settings_read_lists_and_hide_secrets() -> None:
    s = Settings.from_env({"EDUME_WEBHOOK_SECRETS": " one, two ,,", "EDUME_LINK_SECRET": "ls",
                           "EDUME_WEBHOOK_BEARER_TOKENS": "tok", "INGRESS_PORT": "9000",
                           "KAFKA_ENABLE_IDEMPOTENCE": "false", "PUBLISH_TIMEOUT_S": "1.5"})
    assert s.webhook_secrets == ("one", "two") and s.webhook_bearer_tokens == ("tok",)
    assert s.ingress_port == 9000 and isinstance(s.ingress_port, int)
    assert s.kafka_enable_idempotence is False and s.publish_timeout_s == 1.5
    for secret in ("one", "two", "tok", "ls"):
        assert f"'{secret}'" not in repr(s)


@pytest.mark.parametrize(("var", "value", "message"), [
    ("INGRESS_PORT", "eighty", "INGRESS_PORT must be an integer"),
    ("MAX_BODY_BYTES", "0", "MAX_BODY_BYTES must be at least 1"),
    ("KAFKA_ENABLE_IDEMPOTENCE", "maybe", "must be true or false"),
])
def test_bad_settings_stop_start_up(var: str, value: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Settings.from_env({var: value})


def test_ingress_needs_a_secret_or_a_token() -> None:
    with pytest.raises(ConfigurationError, match="EDUME_WEBHOOK_SECRETS"):
        Settings.from_env({}).require_webhook_auth()
    Settings.from_env({"EDUME_WEBHOOK_BEARER_TOKENS": "t"}).require_webhook_auth()


def test_recent_ids_remember_at_least_half_the_capacity() -> None:
    recent = RecentIds(capacity=10, ttl_s=1000, clock=Clock())
    ids = [bytes([i]) * 32 for i in range(30)]
    for i, event_id in enumerate(ids):
        recent.add(event_id)
        assert all(old in recent for old in ids[max(0, i - 4): i + 1])
    assert ids[0] not in recent
    assert len(recent) <= 10


def test_recent_ids_forget_after_the_ttl() -> None:
    clock = Clock()
    recent = RecentIds(capacity=1000, ttl_s=10, clock=clock)
    recent.add(b"a" * 32)
    clock.now = 4.9
    assert b"a" * 32 in recent
    clock.now = 5.0  # rotation: still remembered in the previous generation
    assert b"a" * 32 in recent
    clock.now = 10.0  # second rotation: gone
    assert b"a" * 32 not in recent


@given(st.lists(st.binary(min_size=32, max_size=32), max_size=300), st.integers(2, 64))
@settings(max_examples=60, deadline=None)
def test_recent_ids_never_exceed_capacity_and_keep_the_latest(ids: list[bytes], cap: int) -> None:
    recent = RecentIds(capacity=cap, ttl_s=1e9, clock=Clock())
    for event_id in ids:
        recent.add(event_id)
        assert len(recent) <= cap
    assert all(event_id in recent for event_id in ids[-(cap // 2):])


def test_histogram_is_cumulative() -> None:
    m = IngressMetrics(["t"])
    for v in (0.0005, 0.001, 0.004, 3.0):
        m.publish_seconds.observe(v)
    lines = m.render().decode().splitlines()
    for line in ('edume_ingress_publish_seconds_bucket{le="0.001"} 2.0',
                 'edume_ingress_publish_seconds_bucket{le="0.005"} 3.0',
                 'edume_ingress_publish_seconds_bucket{le="2.5"} 3.0',
                 'edume_ingress_publish_seconds_bucket{le="+Inf"} 4.0',
                 "edume_ingress_publish_seconds_count 4.0",
                 "edume_ingress_publish_seconds_sum 3.0055"):
        assert line in lines


def test_metrics_render_prometheus_text() -> None:
    m = IngressMetrics(["edume.course.events"])
    m.requests["published"].inc(2)
    m.published["edume.course.events"].inc()
    m.gauge("edume_ingress_broker_ready", "ready", lambda: 1.0)
    text = m.render().decode()
    assert 'edume_ingress_requests_total{outcome="published"} 2.0' in text
    assert 'edume_ingress_published_total{topic="edume.course.events"} 1.0' in text
    assert 'edume_ingress_dlq_total{reason="schema_mismatch"} 0.0' in text
    assert 'edume_ingress_verification_failures_total{reason="missing"} 0.0' in text
    assert "# TYPE edume_ingress_publish_seconds histogram" in text
    assert text.endswith("edume_ingress_broker_ready 1.0\n")
    assert "_created" not in text
    sample = re.compile(r'^[a-z_]+(\{[a-z_]+="[^"]*"\})? [0-9.e+-]+$')
    assert all(line.startswith("#") or sample.match(line) for line in text.splitlines())
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["edume_ingress_requests"].type == "counter"


def test_each_ingress_counts_in_its_own_registry() -> None:
    a, b = IngressMetrics(["t"]), IngressMetrics(["t"])
    a.requests["dlq"].inc()
    assert b'edume_ingress_requests_total{outcome="dlq"} 1.0' in a.render()
    assert b'edume_ingress_requests_total{outcome="dlq"} 0.0' in b.render()


def test_catalog_holds_the_contract_topics() -> None:
    assert [s.name for s in topics.CATALOG if not s.internal] == [
        "edume.course.events", "edume.learner.events", "edume.webhooks.dlq",
        "training.policies", "catalog.imports", "training.mandatory.completed",
        "links.requests", "links.issue", "links.issued", "links.rejected", "streams.dlq",
        "training.evidence", "privacy.erasures"]
    for spec in topics.CATALOG:
        if spec.internal:  # the workers' own: table changelogs (compacted) and re-keying,
            # and `dlq replay`'s record of what it replayed (compacted)
            assert spec.name.startswith("edume-streams.")
            assert spec.compacted == (spec.name.endswith(".changelog")
                                      or spec.name == topics.DLQ_REPLAYED)
    assert topics.BY_NAME["edume.course.events"].partitions >= 4
    assert topics.BY_NAME["edume.learner.events"].partitions >= 4
    assert topics.BY_NAME["training.policies"].kafka_configs()["cleanup.policy"] == "compact"
    assert topics.prefixed("links.issue", "acme.") == "acme.links.issue"


def test_received_at_is_rfc3339_utc_with_milliseconds() -> None:
    clock = Rfc3339Clock()
    assert clock(1_700_000_000.25) == b"2023-11-14T22:13:20.250Z"
    assert clock(1_700_000_000.999) == b"2023-11-14T22:13:20.999Z"
    assert clock(1_700_000_061.0) == b"2023-11-14T22:14:21.000Z"
    parsed = datetime.fromisoformat(clock().decode())
    assert abs((datetime.now(UTC) - parsed).total_seconds()) < 5


def test_schema_mismatch_reason_names_document_paths_and_never_values() -> None:
    doc = {"type": "learner.activity.started",
           "payload": {"type": "lesson", "user": {"eId": "SECRET-PII", "userId": "10215"},
                       "group": {"groupId": 5}, "course": {"courseId": 9961},
                       "module": {"moduleId": 1}, "version": 1},
           "timestamp": "2022-07-21T13:01:59.636Z"}
    with pytest.raises(ValidationError) as info:
        WEBHOOK_ADAPTER.validate_python(doc)
    reason = summarise_validation(info.value, doc)
    assert "payload.user.userId" in reason and "payload.lesson" in reason
    assert "SECRET-PII" not in reason and "10215" not in reason


@pytest.mark.parametrize(("key", "java_murmur2"), [
    (b"21", -973932308), (b"foobar", -790332482), (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829), (b"abc", 479470107),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
])
def test_the_partition_oracle_agrees_with_the_java_client(key: bytes, java_murmur2: int) -> None:
    """Known murmur2 values of Kafka's own test suite. The integration tests check where the
    ingress's records land against aiokafka's murmur2; this pins that oracle to Java's."""
    for partitions in (1, 4, 8, 12):
        expected = (java_murmur2 & 0x7FFFFFFF) % partitions
        assert (murmur2(key) & 0x7FFFFFFF) % partitions == expected


def test_event_topics_take_the_largest_body_the_ingress_accepts() -> None:
    limit = Settings().max_body_bytes
    for name in ("edume.course.events", "edume.learner.events", "edume.webhooks.dlq"):
        configured = int(topics.BY_NAME[name].kafka_configs()["max.message.bytes"])
        assert configured >= limit + 64 * 1024


@pytest.mark.parametrize("servers", ["localhost:notaport", "[::1", "host:0", ":9092", ","])
def test_a_malformed_bootstrap_address_stops_start_up(servers: str) -> None:
    with pytest.raises(ConfigurationError, match="KAFKA_BOOTSTRAP_SERVERS"):
        Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": servers})


def test_bootstrap_addresses_parse_with_default_port_and_ipv6() -> None:
    from streams.settings import parse_bootstrap

    assert parse_bootstrap("a:1, b ,[::1]:9093") == [("a", 1), ("b", 9092), ("::1", 9093)]
