"""Topics on any Kafka-protocol broker: creating the catalog's, reading what exists, and a
group-less consumer for the commands that read a topic from the beginning."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from streams import topics
from streams.errors import BrokerUnavailable

TOPIC_EXISTS = 36
"""Kafka's TOPIC_ALREADY_EXISTS: a concurrent creator won."""


@contextlib.asynccontextmanager
async def admin_client(
    bootstrap: str, timeout_s: float = 15.0
) -> AsyncIterator[AIOKafkaAdminClient]:
    """A started admin client; a broker that cannot be reached is a ``BrokerUnavailable``."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000)
    )
    try:
        await admin.start()
    except (KafkaError, OSError) as exc:
        with contextlib.suppress(Exception):
            await admin.close()
        raise BrokerUnavailable(
            f"cannot reach the broker at {bootstrap}: {type(exc).__name__}"
        ) from None
    try:
        yield admin
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def topic_consumer(bootstrap: str) -> AsyncIterator[AIOKafkaConsumer]:
    """A started consumer outside any group (it commits nothing), its metadata fresh."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        await consumer.start()
        await consumer.topics()  # refreshes the consumer's metadata
    except Exception as exc:  # aiokafka raises several unrelated types here
        await consumer.stop()
        raise BrokerUnavailable(f"cannot reach the broker at {bootstrap}: {exc}") from None
    try:
        yield consumer
    finally:
        await consumer.stop()


async def assign_from_beginning(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """Assign every partition of ``topic`` to ``consumer``, each at its first offset."""
    numbers = consumer.partitions_for_topic(topic)
    if not numbers:
        raise BrokerUnavailable(
            f"topic {topic!r} does not exist; create it with `edume-streams topics create`"
        )
    tps = [TopicPartition(topic, p) for p in sorted(numbers)]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    return tps


async def ensure_topics(
    bootstrap: str,
    prefix: str = "",
    specs: Iterable[topics.TopicSpec] = topics.CATALOG,
    replication_factor: int = 1,
    timeout_s: float = 15.0,
) -> dict[str, str]:
    """Create every missing topic of the catalog; answer ``{name: "created"|"exists"}``."""
    async with admin_client(bootstrap, timeout_s) as admin:
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
    bootstrap: str, names: Iterable[str], timeout_s: float = 15.0
) -> dict[str, int]:
    """Partition counts of the topics of ``names`` that exist (missing ones left out)."""
    async with admin_client(bootstrap, timeout_s) as admin:
        described = await admin.describe_topics(list(names))
        return {
            t["topic"]: len(t["partitions"])
            for t in described
            if t.get("error_code", 0) == 0 and t["partitions"]
        }
