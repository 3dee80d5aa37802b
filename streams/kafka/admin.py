"""Topics on any Kafka-protocol broker: creating the catalog's, describing what exists and
comparing it with the catalog, and a group-less consumer for the commands that read a topic
from the beginning.

Ask for a topic's partitions only once it was seen listed: a metadata request naming a
topic that does not exist creates it on a broker with automatic topic creation on (the
embedded broker always has it on, and creates 4 partitions with no configs).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from streams.core import topics
from streams.core.errors import BrokerUnavailable
from streams.kafka.clients import KafkaConnection, aio_admin, aio_consumer, connection_failure

TOPIC_EXISTS = 36
"""Kafka's TOPIC_ALREADY_EXISTS: a concurrent creator won."""


@contextlib.asynccontextmanager
async def admin_client(
    kafka: KafkaConnection, timeout_s: float = 15.0
) -> AsyncIterator[AIOKafkaAdminClient]:
    """A started admin client; a broker that cannot be reached is a ``BrokerUnavailable``,
    one that refuses the credentials or the certificates a ``ConfigurationError`` naming
    the setting (``streams.kafka.clients.connection_failure``)."""
    admin = aio_admin(kafka, request_timeout_ms=int(timeout_s * 1000))
    try:
        await admin.start()
    except (KafkaError, OSError) as exc:
        with contextlib.suppress(Exception):
            await admin.close()
        raise await connection_failure(kafka, exc) from None
    try:
        yield admin
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def topic_consumer(
    kafka: KafkaConnection, fetch_max_wait_ms: int = 500
) -> AsyncIterator[AIOKafkaConsumer]:
    """A started consumer outside any group (it commits nothing), its metadata fresh.
    ``fetch_max_wait_ms``: how long the broker may hold a fetch that finds no record."""
    consumer = aio_consumer(
        kafka,
        group_id=None,
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=fetch_max_wait_ms,
    )
    try:
        await consumer.start()
    except Exception as exc:  # aiokafka raises several unrelated types here
        await consumer.stop()
        raise await connection_failure(kafka, exc) from None
    try:
        yield consumer
    finally:
        await consumer.stop()


async def partitions_of(consumer: AIOKafkaConsumer, names: Iterable[str]) -> list[TopicPartition]:
    """Every partition of the topics ``names``; ``BrokerUnavailable`` naming a missing one.

    The topics are listed first and only listed ones asked for (see the module on automatic
    creation). The consumer's own metadata is then made to track them: a group-less consumer
    starts with the metadata of no topic on Apache Kafka (its first request names none),
    so ``partitions_for_topic`` alone would find nothing."""
    wanted = list(names)
    listed = await consumer.topics()
    for name in wanted:
        if name not in listed:
            raise BrokerUnavailable(
                f"topic {name!r} does not exist; create it with `edume-streams topics create`"
            )
    await consumer._client.set_topics(wanted)  # aiokafka: fetch these topics' metadata
    tps = []
    for name in wanted:
        numbers = consumer.partitions_for_topic(name)
        if not numbers:
            raise BrokerUnavailable(f"the broker lists topic {name!r} without partitions")
        tps += [TopicPartition(name, p) for p in sorted(numbers)]
    return tps


async def drop_reached(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> None:
    """Remove from ``ends`` the partitions whose position has reached their end offset.

    By position, not by seeing a record at end - 1: a partition emptied by retention, or
    ending in a tombstone that compaction removed or in a transaction marker, never
    delivers one."""
    for tp in list(ends):
        if await consumer.position(tp) >= ends[tp]:
            del ends[tp]


async def assign_from_beginning(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """Assign every partition of ``topic`` to ``consumer``, each at its first offset."""
    tps = await partitions_of(consumer, [topic])
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    return tps


async def ensure_topics(
    kafka: KafkaConnection,
    prefix: str = "",
    specs: Iterable[topics.TopicSpec] = topics.CATALOG,
    replication_factor: int = 1,
    timeout_s: float = 15.0,
) -> dict[str, str]:
    """Create every missing topic of the catalog; answer ``{name: "created"|"exists"}``."""
    async with admin_client(kafka, timeout_s) as admin:
        existing = set(await admin.list_topics())
        wanted = {topics.prefixed(s.name, prefix): s for s in specs}
        missing = [
            NewTopic(name, spec.partitions, replication_factor, topic_configs=spec.kafka_configs())
            for name, spec in wanted.items()
            if name not in existing
        ]
        result = {name: "exists" for name in wanted if name in existing}
        if missing:
            response = await admin.create_topics(missing)
            for name, code, message in response.topic_errors:
                if code not in (0, TOPIC_EXISTS):
                    raise BrokerUnavailable(f"creating topic {name} failed: {message or code}")
                result[name] = "created" if code == 0 else "exists"
        return result


async def topic_partitions(
    kafka: KafkaConnection, names: Iterable[str], timeout_s: float = 15.0
) -> dict[str, int]:
    """Partition counts of the topics of ``names`` that exist (missing ones left out). The
    topics are listed first and only listed ones described: describing a missing topic
    could create it with the broker's defaults (see the module on automatic creation)."""
    async with admin_client(kafka, timeout_s) as admin:
        existing = set(await admin.list_topics())
        return await _partition_counts(admin, [n for n in names if n in existing])


async def _partition_counts(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    """Partition counts of ``names`` (topics seen listed: see the module)."""
    if not names:
        return {}
    described = await admin.describe_topics(names)
    return {
        t["topic"]: len(t["partitions"])
        for t in described
        if t.get("error_code", 0) == 0 and t["partitions"]
    }


# ------------------------------------------------------------------ topics describe


@dataclass(frozen=True, slots=True)
class TopicOnBroker:
    """What the broker says of one existing topic."""

    partitions: int
    configs: Mapping[str, str | None] | None
    """The topic's configs as DescribeConfigs answered them; None when it answered an
    error for the topic. A config it does not name is one it did not report."""


@dataclass(frozen=True, slots=True)
class BrokerTopics:
    """The broker's topics that carry a prefix."""

    topics: Mapping[str, TopicOnBroker]
    """Broker name -> description, for the catalog's topics that exist."""
    others: list[str] = field(default_factory=list)
    """Topics with the prefix that the catalog does not name."""


@dataclass(frozen=True, slots=True)
class TopicCheck:
    """One catalog topic compared with the broker's."""

    name: str
    """The broker's name (``TOPIC_PREFIX`` included)."""
    missing: bool = False
    differences: tuple[str, ...] = ()
    unreported: tuple[str, ...] = ()
    """Expected configs the broker did not report (so not compared)."""

    @property
    def ok(self) -> bool:
        return not self.missing and not self.differences

    def line(self) -> str:
        """``name: ok``, ``name: missing``, or what differs, ``; ``-separated, with the
        configs the broker did not report, if any, at the end."""
        if self.missing:
            return f"{self.name}: missing"
        parts = list(self.differences) or ["ok"]
        if self.unreported:
            parts.append(
                f"config {', '.join(self.unreported)} not reported by the broker"
            )
        return f"{self.name}: {'; '.join(parts)}"


def check_topic(spec: topics.TopicSpec, name: str, found: TopicOnBroker | None) -> TopicCheck:
    """Compare one catalog topic with what the broker has under ``name`` (pure)."""
    if found is None:
        return TopicCheck(name, missing=True)
    differences: list[str] = []
    unreported: list[str] = []
    if found.partitions != spec.partitions:
        differences.append(
            f"wrong partition count {found.partitions}, want {spec.partitions}"
        )
    for key, want in spec.kafka_configs().items():
        if found.configs is None or key not in found.configs:
            unreported.append(key)
            continue
        have = found.configs[key]
        if have != want:
            differences.append(f"config {key} is {have}, want {want}")
    return TopicCheck(name, differences=tuple(differences), unreported=tuple(unreported))


def check_catalog(
    broker: BrokerTopics, prefix: str, specs: Iterable[topics.TopicSpec] = topics.CATALOG
) -> list[TopicCheck]:
    """Every catalog topic compared with the broker's, by broker name (pure)."""
    checks = []
    for spec in specs:
        name = topics.prefixed(spec.name, prefix)
        checks.append(check_topic(spec, name, broker.topics.get(name)))
    return sorted(checks, key=lambda c: c.name)


async def describe_topics(
    kafka: KafkaConnection,
    prefix: str = "",
    specs: Iterable[topics.TopicSpec] = topics.CATALOG,
    timeout_s: float = 15.0,
) -> BrokerTopics:
    """Partition counts and configs of the catalog's topics that exist, and the names of
    the other topics that carry ``prefix``."""
    async with admin_client(kafka, timeout_s) as admin:
        try:
            existing = set(await admin.list_topics())
            wanted = [topics.prefixed(s.name, prefix) for s in specs]
            present = [n for n in wanted if n in existing]
            counts = await _partition_counts(admin, present)
            configs = await _topic_configs(admin, present)
        except KafkaError as exc:
            raise BrokerUnavailable(
                f"describing the topics at {kafka.bootstrap} failed: {type(exc).__name__}"
            ) from None
    catalog = set(wanted)
    others = sorted(n for n in existing if n.startswith(prefix) and n not in catalog)
    return BrokerTopics(
        {n: TopicOnBroker(counts[n], configs.get(n)) for n in present if n in counts},
        others,
    )


async def _topic_configs(
    admin: AIOKafkaAdminClient, names: list[str]
) -> dict[str, dict[str, str | None]]:
    """Every config DescribeConfigs reports for each topic of ``names`` (topics it answered
    with an error for are left out)."""
    if not names:
        return {}
    resources = [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
    out: dict[str, dict[str, str | None]] = {}
    for response in await admin.describe_configs(resources):
        answer: dict[str, Any] = response.to_object()
        for resource in answer.get("resources", []):
            if resource.get("error_code", 0) != 0:
                continue
            out[resource["resource_name"]] = {
                entry["config_names"]: entry["config_value"]
                for entry in resource.get("config_entries", [])
            }
    return out


# ------------------------------------------------------------------ reading to the end


async def read_until_idle(
    consumer: AIOKafkaConsumer, idle_s: float
) -> AsyncIterator[list[ConsumerRecord[bytes, bytes]]]:
    """Batches of the records of the consumer's assigned partitions, until no record has
    come for ``idle_s`` seconds: the end of a topic is where fetches come back empty, not
    the end offset the broker reports (the embedded broker reports it too low after a
    batch of several records). ``idle_s`` must exceed the consumer's fetch wait."""
    last = time.monotonic()
    while time.monotonic() - last < idle_s:
        batch = await consumer.getmany(timeout_ms=100)
        records = [r for part in batch.values() for r in part]
        if records:
            last = time.monotonic()
            yield records
