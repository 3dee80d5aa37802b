"""The reminder timer's index: when each learner's next reminder is due, by partition.

The timers themselves live in the learners' states (the progress table and its
changelog); this index only says which states to look at, so that a tick of the timer
costs what is due on the partitions it may fire on, not a pass over every learner. Per
learner partition it keeps a min-heap of ``(due, key)``; a key's current due time is in
one dict, and a heap entry that no longer matches it (the key's reminder fired, was
cancelled or moved) is dropped when it reaches the top. The heaps are rebuilt from the
dict once stale entries outnumber the live ones, so memory stays proportional to the
learners with a reminder pending.

The index is a mapping ``key -> due`` (microseconds since the epoch): whoever changes a
state's timers sets or deletes its key. After a rebalance it is cleared and ``load``-ed
from the stored states, of which it reads only the pending reminders
(``streams.core.state.codec.next_reminder_due``), with the partitions the table knows them by.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, MutableMapping

from streams.core.records import partition_for
from streams.core.state.codec import next_reminder_due

COMPACT_MIN = 4096
"""Stale heap entries tolerated whatever the index's size, before a rebuild of the heaps."""


class ReminderIndex(MutableMapping[str, int]):
    """When each learner's next reminder is due (microseconds since the epoch), with the
    keys due by a time found per partition in time proportional to their number."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        """The learner topic's partition count: a key's partition is murmur2 of it."""
        self._due: dict[str, int] = {}
        self._heaps: dict[int, list[tuple[int, str]]] = {}
        self._entries = 0
        """Heap entries, live and stale."""

    def partition_of(self, key: str) -> int:
        return partition_for(key.encode(), self.partitions)

    def __getitem__(self, key: str) -> int:
        return self._due[key]

    def __setitem__(self, key: str, due: int) -> None:
        if self._due.get(key) == due:
            return
        self._due[key] = due
        heapq.heappush(self._heaps.setdefault(self.partition_of(key), []), (due, key))
        self._entries += 1
        if self._entries > 2 * len(self._due) + COMPACT_MIN:
            self._compact()

    def __delitem__(self, key: str) -> None:
        del self._due[key]  # its heap entry is stale from now on

    def __iter__(self) -> Iterator[str]:
        return iter(self._due)

    def __len__(self) -> int:
        return len(self._due)

    def clear(self) -> None:
        self._due.clear()
        self._heaps.clear()
        self._entries = 0

    def load(self, states: Iterable[tuple[str, int, bytes]]) -> None:
        """Index stored learner states (key, partition, encoded state), as after a
        rebalance: each key with a reminder pending, at its earliest."""
        due, heaps = self._due, self._heaps
        for key, partition, raw in states:
            at = next_reminder_due(raw)
            if at is not None:
                due[key] = at
                heapq.heappush(heaps.setdefault(partition, []), (at, key))
                self._entries += 1

    def next_due(self, partition: int) -> int | None:
        """When the earliest reminder of ``partition`` is due, if one is pending."""
        heap = self._drop_stale(partition)
        return heap[0][0] if heap else None

    def due(self, partition: int, now_us: int, limit: int) -> list[str]:
        """Up to ``limit`` keys of ``partition`` whose reminder is due by ``now_us``,
        earliest first. They stay in the index until their key is set or deleted (when
        their reminder fires, or not: a key nobody updates is answered again)."""
        heap = self._drop_stale(partition)
        if not heap or heap[0][0] > now_us:
            return []
        taken: list[tuple[int, str]] = []
        keys: set[str] = set()
        current = self._due
        while heap and heap[0][0] <= now_us and len(taken) < limit:
            entry = heapq.heappop(heap)
            if current.get(entry[1]) == entry[0] and entry[1] not in keys:
                taken.append(entry)
                keys.add(entry[1])
            else:  # stale, or a second entry of a key set back to an earlier time
                self._entries -= 1
        for entry in taken:
            heapq.heappush(heap, entry)
        return [key for _, key in taken]

    def _drop_stale(self, partition: int) -> list[tuple[int, str]]:
        """The partition's heap, with stale entries popped off its top."""
        heap = self._heaps.get(partition)
        if heap is None:
            return []
        current = self._due
        while heap and current.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
            self._entries -= 1
        return heap

    def _compact(self) -> None:
        """Heaps of the live entries only."""
        heaps: dict[int, list[tuple[int, str]]] = {}
        for key, due in self._due.items():
            heaps.setdefault(self.partition_of(key), []).append((due, key))
        for heap in heaps.values():
            heapq.heapify(heap)
        self._heaps = heaps
        self._entries = len(self._due)
