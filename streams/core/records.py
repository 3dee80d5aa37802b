"""Records in and out of the workers' processors, and the topic layout they are given.

The processors see plain records, not Faust events: the Faust shell turns events into
``InRecord`` and writes ``OutRecord`` through the producer, so everything between can be
tested without a broker.
"""

from __future__ import annotations

import functools
import hashlib
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from streams.core import headers, topics
from streams.core.clock import rfc3339
from streams.core.headers import Headers
from streams.core.state.common import UnusableEvent, derived_id, parse_timestamp

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

    def received_at_us(self) -> int | None:
        """When the record was received (``received_at_us``)."""
        return received_at_us(self.headers, self.timestamp_ms)


def received_at_us(record_headers: Sequence[tuple[str, bytes]], timestamp_ms: int) -> int | None:
    """When a record was received, in microseconds since the epoch: its
    ``edume-received-at`` when that is a time, or else the record's own timestamp; None when
    it has neither."""
    for name, value in record_headers:
        if name == headers.RECEIVED_AT:
            try:
                return parse_timestamp(value.decode("ascii"))
            except (UnicodeDecodeError, UnusableEvent):
                break
    return timestamp_ms * 1000 if timestamp_ms > 0 else None


class OutRecord(NamedTuple):
    """A record a worker writes. ``partition`` None lets the producer's partitioner (murmur2
    of the key, as Kafka's Java client) choose."""

    topic: str
    partition: int | None
    key: bytes
    value: bytes | None
    headers: Headers
    cause: int | None = None
    """Which of its batch's causes (an input record's index in the batch, or a due
    reminder's) this record comes from: a record the broker refuses for good sends that
    input to ``streams.dlq`` (see ``Worker``). None: no single cause."""


CACHED_KEY_BYTES = 64
"""Keys up to this long have their partition cached: decimal ids and UUIDs (36 bytes)."""
_CACHED_KEYS = 1 << 17


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's Java client (and the ingress) puts ``key`` in.

    murmur2 is Python here (~2 µs for an 8-byte key, ~5 µs for a UUID): a
    learner's key comes back with every event, so the partitions of short keys are cached.
    Longer keys are computed every time, so the cache holds at most ``_CACHED_KEYS`` keys of
    at most ``CACHED_KEY_BYTES`` bytes (about 40 MB), whatever the keys that come."""
    if len(key) <= CACHED_KEY_BYTES:
        return _cached_partition(key, partitions)
    return _partition(key, partitions)


_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """MurmurHash2 of ``data`` as Kafka's default partitioner computes it (seed 0x9747b28c),
    as an unsigned 32-bit integer."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    whole = length - length % 4
    for (k,) in struct.iter_unpack("<I", data[:whole]):
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = length - whole
    if tail:
        if tail == 3:
            h ^= data[whole + 2] << 16
        if tail >= 2:
            h ^= data[whole + 1] << 8
        h ^= data[whole]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def _partition(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions


_cached_partition = functools.lru_cache(maxsize=_CACHED_KEYS)(_partition)


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
