"""Faust tables whose changelog the worker writes itself.

The tables are Faust's: Faust assigns their partitions with the input partitions, reads
their changelogs back into memory after a restart or a rebalance (recovery), and keeps
standby copies. What the worker changes is how a new value is written: a batch's values
go to the changelog through the worker's librdkafka producer, at the partition of the
events that changed them (the same number, on topics with the same partition count), and
are awaited before the batch's input is acknowledged. Faust's own ``table[key] = value``
would pick the partition of whichever event is current (wrong for a batch spanning
partitions) and send through aiokafka on the event loop.

Values are kept encoded (the changelog's bytes): a learner costs its JSON (~1 KB), not a
tree of Python objects, and recovery stores what it reads without decoding it.
"""

from __future__ import annotations

from typing import Any

from streams.worker.records import OutRecord


class StateTable:
    """A Faust table (memory store) of encoded states. Keys are strings here (decimal ids,
    or external user ids), and their UTF-8 bytes (the Kafka key) in the store."""

    def __init__(self, table: Any, changelog_topic: str) -> None:
        self.table = table
        self.changelog_topic = changelog_topic

    @property
    def name(self) -> str:
        return str(self.table.name)

    def _store(self) -> Any:
        return self.table.data  # faust.stores.memory.Store: .data (dict), ._key_partition

    def get(self, key: str) -> bytes | None:
        value: bytes | None = self._store().data.get(key.encode())
        return value

    def changelog(self, key: str, partition: int, value: bytes) -> OutRecord:
        return OutRecord(self.changelog_topic, partition, key.encode(), value, [])

    def put(self, key: str, partition: int, value: bytes) -> None:
        """Keep a value whose changelog record the broker has acknowledged."""
        store = self._store()
        raw_key = key.encode()
        # orjson's bytes keep the buffer they were written in (4-8 KB, measured, for a
        # learner's 900 bytes): the table keeps an exact copy, or 100,000 learners would
        # hold 500 MB.
        store.data[raw_key] = bytes(memoryview(value))
        # The memory store forgets a partition's keys when the partition moves away; it
        # learns which keys are whose from this map (filled by recovery, and here).
        store._key_partition[raw_key] = partition

    def items(self) -> list[tuple[str, bytes]]:
        """Every key and value held (assigned and standby partitions), as a list taken now."""
        return [(k.decode("utf-8", "replace"), v) for k, v in self._store().data.items()]

    def __len__(self) -> int:
        return len(self._store().data)
