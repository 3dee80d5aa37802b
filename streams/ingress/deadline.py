"""Request deadlines for the ingress: one timer sweeps them all.

Every webhook has two deadlines (its body read, its broker acknowledgement), and all
requests share the same two lengths, so the deadlines of each kind expire in the order
they were set. ``Expiry`` keeps them in a FIFO of ``(due, number)`` pairs and one loop
timer, running only while deadlines are queued, pops those that are due. Per request that
is a pair appended and a dict entry set and cleared, instead of a timer handle created and
cancelled (``asyncio.timeout`` also adds a context object and a rescheduling step: about
10 µs per use on 3.11). The pairs hold only numbers, so the garbage collector stops
tracking them the first time it looks, and never walks the thousands waiting in the FIFO.
A deadline fires up to ``period_s`` late.

A watched future that is still pending when due gets ``TimeoutError``. A watched task is
cancelled instead; ``Expiry.expired`` tells that cancellation from a cancellation from
outside (shutdown), which must pass through.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any


class Expiry:
    """Deadlines of one fixed length for futures and tasks, swept by one timer."""

    __slots__ = ("_active", "_armed", "_expired", "_fifo", "_loop", "_next", "_period_s",
                 "_seconds")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, seconds: float, period_s: float = 0.05
    ) -> None:
        self._loop = loop
        self._seconds = seconds
        self._period_s = period_s
        self._fifo: deque[tuple[float, int]] = deque()
        self._active: dict[int, asyncio.Future[Any]] = {}
        self._expired: set[int] = set()
        self._next = 0
        self._armed = False

    def __len__(self) -> int:
        """Deadlines still running."""
        return len(self._active)

    def watch(self, target: asyncio.Future[Any]) -> int:
        """Start the deadline of ``target`` (a future, or a task to cancel); returns its
        number, to pass to ``done`` once the deadline no longer matters."""
        number = self._next
        self._next = number + 1
        self._active[number] = target
        self._fifo.append((self._loop.time() + self._seconds, number))
        if not self._armed:
            self._armed = True
            self._loop.call_later(min(self._seconds, self._period_s), self._sweep)
        return number

    def done(self, number: int) -> None:
        self._active.pop(number, None)
        if self._expired:
            self._expired.discard(number)

    def expired(self, number: int) -> bool:
        """Whether this deadline fired (and so caused its task's cancellation)."""
        return number in self._expired

    def _sweep(self) -> None:
        fifo, active = self._fifo, self._active
        now = self._loop.time()
        while fifo and fifo[0][0] <= now:
            number = fifo.popleft()[1]
            target = active.pop(number, None)
            if target is None or target.done():
                continue
            if isinstance(target, asyncio.Task):
                # Remembered until done(): the task's handler asks expired() as it unwinds.
                self._expired.add(number)
                target.cancel()
            else:
                target.set_exception(TimeoutError())
        if fifo:
            self._loop.call_later(self._period_s, self._sweep)
        else:
            self._armed = False
