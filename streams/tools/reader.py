"""``edume-streams read TOPIC``: print a topic's records from the beginning, one JSON line each.

It polls until no record has arrived for ``idle_s`` seconds (or forever with ``follow``)
instead of reading "to the end offset": the embedded broker reports end offsets wrong for
multi-record batches, and a live topic has no end anyway.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

import orjson
from aiokafka import ConsumerRecord

from streams.kafka.admin import assign_from_beginning, topic_consumer
from streams.kafka.clients import KafkaConnection


async def read_topic(
    kafka: KafkaConnection,
    topic: str,
    *,
    idle_s: float = 2.0,
    follow: bool = False,
    out: TextIO = sys.stdout,
) -> int:
    """Print every record as ``{"partition", "offset", "key", "headers", "value"}``; return
    how many were printed."""
    async with topic_consumer(kafka) as consumer:
        await assign_from_beginning(consumer, topic)
        printed = 0
        last = time.monotonic()
        while follow or time.monotonic() - last < idle_s:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for r in records:
                    out.write(_line(r) + "\n")
                    printed += 1
                last = time.monotonic()
            out.flush()
        return printed


def _line(record: ConsumerRecord[bytes, bytes]) -> str:
    value: object = None
    if record.value is not None:
        try:
            value = orjson.loads(record.value)
        except orjson.JSONDecodeError:
            value = record.value.decode(errors="replace")
    return orjson.dumps(
        {
            "partition": record.partition,
            "offset": record.offset,
            "key": record.key.decode(errors="replace") if record.key is not None else None,
            "headers": {k: v.decode(errors="replace") for k, v in record.headers},
            "value": value,
        }
    ).decode()
