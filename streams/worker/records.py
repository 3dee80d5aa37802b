"""Records in and out of the workers' processors, and the topic layout they are given.

The processors see plain records, not Faust events: the Faust shell turns events into
``InRecord`` and writes ``OutRecord`` through the producer, so everything between can be
tested without a broker.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from aiokafka.partitioner import murmur2

from streams import headers, topics
from streams.clock import rfc3339
from streams.publisher import Headers
from streams.state.common import derived_id

_EVENT_ID = re.compile(rb"[0-9a-f]{64}")


class InRecord(NamedTuple):
    """A record as a worker consumed it."""

    topic: str
    """The topic's name on the broker (``TOPIC_PREFIX`` included)."""
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]
    timestamp_ms: int

    @property
    def source(self) -> str:
        """``topic/partition/offset``: where the record is, as ``streams.dlq`` names it."""
        return f"{self.topic}/{self.partition}/{self.offset}"

    def header(self, name: str) -> bytes | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def event_id(self) -> str | None:
        """The ``edume-event-id`` header when it holds an event id."""
        value = self.header(headers.EVENT_ID)
        return value.decode() if value is not None and _EVENT_ID.fullmatch(value) else None

    def received_at(self) -> bytes:
        """The ``edume-received-at`` header, or the record's own timestamp in that form: what
        a record caused by this one carries, the same however often it is written."""
        value = self.header(headers.RECEIVED_AT)
        if value is not None:
            return value
        return rfc3339(self.timestamp_ms).encode()


class OutRecord(NamedTuple):
    """A record a worker writes. ``partition`` None lets the producer's partitioner (murmur2
    of the key, as Kafka's Java client) choose."""

    topic: str
    partition: int | None
    key: bytes
    value: bytes | None
    headers: Headers


@functools.lru_cache(maxsize=1 << 17)
def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's Java client (and the ingress) puts ``key`` in. (murmur2 is
    Python here, ~5 µs a key: a learner's key comes back with every event, so it is kept.)"""
    return int((murmur2(key) & 0x7FFFFFFF) % partitions)


@dataclass(frozen=True, slots=True)
class Layout:
    """The broker's names of the topics a worker uses, and their partition counts."""

    prefix: str
    partitions: Mapping[str, int]
    """Broker topic name -> partition count, as the broker reports it."""

    def name(self, contract_name: str) -> str:
        return topics.prefixed(contract_name, self.prefix)

    def count(self, contract_name: str) -> int:
        return self.partitions[self.name(contract_name)]

    @classmethod
    def from_catalog(cls, prefix: str = "") -> Layout:
        """The layout the topic catalog creates (tests, and before the broker is asked)."""
        return cls(prefix, {topics.prefixed(s.name, prefix): s.partitions for s in topics.CATALOG})


def dead_letter(record: InRecord, reason: str, dlq_topic: str) -> OutRecord:
    """``record`` unchanged for ``streams.dlq``, keyed and headed by where it came from and why.

    Its ``edume-event-id`` is derived from the record's own (or from its place when it has
    none), so the dead letter is the same record however often it is written.
    """
    source = record.source
    cause = record.event_id() or hashlib.sha256(source.encode()).hexdigest()
    kept: Headers = [
        (k, v)
        for k, v in record.headers
        if k not in (headers.EVENT_ID, headers.DLQ_REASON, headers.DLQ_SOURCE)
    ]
    kept += [
        (headers.EVENT_ID, derived_id(cause, topics.STREAMS_DLQ, source).encode()),
        (headers.DLQ_REASON, reason[:300].encode()),
        (headers.DLQ_SOURCE, source.encode()),
    ]
    if record.header(headers.RECEIVED_AT) is None:
        kept.append((headers.RECEIVED_AT, record.received_at()))
    return OutRecord(dlq_topic, None, source.encode(), record.value, kept)
