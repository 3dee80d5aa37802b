"""Verification the event loop must not pay for: one thread, one body at a time.

A body whose JavaScript form needs Python work in proportion to its size
(:class:`streams.core.jsjson.HeavyDocument`) is verified here rather than on the loop.
One thread, because the work holds the interpreter lock: a second thread would not go
faster, only take a larger share from the loop. The loop gets the lock back every 5 ms
(``sys.getswitchinterval``) while the thread works, so it keeps serving light requests;
a second heavy body that arrives meanwhile is refused (the caller answers 503 and
``Retry-After``) rather than queued, so forged heavy bodies cannot pile up in memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class HeavyLane:
    """Runs one call at a time on its own thread; a call while one runs is refused."""

    __slots__ = ("_busy", "_pool")

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="edume-heavy-verify")
        self._busy = False

    @property
    def busy(self) -> bool:
        return self._busy

    async def run(self, call: Callable[[], T]) -> T:
        """``call()`` on the lane's thread; its exceptions are raised here. Check ``busy``
        first: a call while another runs raises RuntimeError."""
        if self._busy:
            raise RuntimeError("the heavy lane is busy")
        self._busy = True
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, call)
        finally:
            # Also when the request is cancelled (shutdown): the thread finishes its call,
            # and a later one waits for it in the pool rather than running beside it.
            self._busy = False

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
