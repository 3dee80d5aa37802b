"""Which event ids the ingress published recently, so that eduMe's redeliveries are not.

Two generations of sets: ids go into ``current``; when it holds ``capacity // 2`` ids or is
older than ``ttl_s / 2`` it becomes ``previous`` and the old ``previous`` is dropped whole.
Every id is therefore remembered for at least half the capacity and half the ttl, lookups
and inserts are O(1), and memory is bounded by ``capacity`` digests (about 100 bytes each)
with no per-entry timestamps or linked lists.

Only acknowledged ids are recorded: an id whose publish failed must stay publishable, or a
retry after a 503 would be answered "duplicate" and the event lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class RecentIds:
    """A bounded, time-limited memory of event ids (as 32-byte digests)."""

    __slots__ = ("_clock", "_current", "_half_capacity", "_half_ttl_s", "_previous", "_started")

    def __init__(
        self, capacity: int, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if capacity < 2 or ttl_s <= 0:
            raise ValueError("capacity must be at least 2 and ttl_s positive")
        self._half_capacity = capacity // 2
        self._half_ttl_s = ttl_s / 2
        self._clock = clock
        self._current: set[bytes] = set()
        self._previous: set[bytes] = set()
        self._started = clock()

    def __contains__(self, event_id: bytes) -> bool:
        self._maybe_rotate()
        return event_id in self._current or event_id in self._previous

    def __len__(self) -> int:
        return len(self._current) + len(self._previous)

    def add(self, event_id: bytes) -> None:
        """Remember an id whose event the broker acknowledged."""
        self._maybe_rotate()
        self._current.add(event_id)

    def _maybe_rotate(self) -> None:
        now = self._clock()
        if len(self._current) >= self._half_capacity or now - self._started >= self._half_ttl_s:
            self._previous = self._current
            self._current = set()
            self._started = now
