"""A worker's health beyond readiness: background tasks that outlive their failures, the
stall rule behind ``/healthz``, and the recent write refusals ``/readyz`` reports.

- ``supervise`` runs a piece of background work (the catalog and policy reader, an
  agent's batch) and, when it raises, logs the failure, counts it
  (``edume_worker_task_restarts_total{task}``) and runs it again after a pause that
  doubles up to a cap, until it ends without an error.
- ``StallDetector`` decides when a worker is stuck for good: unready with nothing moving,
  or input waiting and none processed, for ``WORKER_STALL_TIMEOUT``. ``/healthz`` then
  answers 503 and the orchestrator restarts the process.
- ``RecentRefusals`` keeps the records the broker refused for good (see
  ``streams.worker.sink``) for a while, so that ``/readyz`` says the worker is degraded.

Pure but for the clock and the sleep, which are injected.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field

from streams.core.clock import rfc3339

log = logging.getLogger(__name__)

Clock = Callable[[], float]


@dataclass
class Backoff:
    """A pause that doubles after each use, up to ``max_s``; ``reset`` starts again from
    ``first_s``."""

    first_s: float
    max_s: float
    _next_s: float = field(init=False)

    def __post_init__(self) -> None:
        self._next_s = self.first_s

    def next(self) -> float:
        """The pause to take now; the next one is twice as long (at most ``max_s``)."""
        pause = self._next_s
        self._next_s = min(pause * 2, self.max_s)
        return pause

    def reset(self) -> None:
        self._next_s = self.first_s


async def supervise(
    name: str,
    run: Callable[[], Awaitable[None]],
    *,
    restarted: Callable[[str], None],
    backoff: Backoff | None = None,
    healthy_after_s: float = 60.0,
    quiet: tuple[type[BaseException], ...] = (),
    clock: Clock = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Run ``run()`` until it returns or is cancelled. When it raises, log the failure (a
    warning for the ``quiet`` exception types, which are expected, such as a broker that
    does not answer; else with its traceback), call ``restarted(name)``, wait and run it
    again. The wait doubles from 1 s up to 30 s (``backoff``), and starts again from the
    first after a run that lasted ``healthy_after_s``."""
    pauses = backoff or Backoff(1.0, 30.0)
    while True:
        started = clock()
        try:
            await run()
            return
        except asyncio.CancelledError:
            raise
        except quiet as exc:
            log.warning("background task %s failed (%s)", name, type(exc).__name__)
        except Exception:
            log.exception("background task %s failed", name)
        restarted(name)
        if clock() - started >= healthy_after_s:
            pauses.reset()
        pause = pauses.next()
        log.info("background task %s: restarting in %.1fs", name, pause)
        await sleep(pause)


@dataclass
class StallDetector:
    """The liveness rule: a worker is stalled when, for ``timeout_s`` without a break,

    - it has been unready and nothing moved (no input processed, no catalog or policy
      record read while they are still being read, no changelog record recovered while
      the tables are being recovered), or
    - it has been ready with input waiting (an input partition not read to its end, or a
      batch taken and not finished) and no input was processed.

    A worker recovering large tables, or reading a long backlog, moves, and is never
    stalled however long it takes; an idle worker has no input waiting. Before its first
    look the worker counts as unready since the detector was made. ``observe`` is called
    every few seconds with what the worker shows; ``stalled`` answers why it is stalled,
    or None."""

    timeout_s: float
    clock: Clock = time.monotonic
    _activity: Hashable = None
    _processed: Hashable = None
    _activity_at: float = field(init=False)
    _processed_at: float = field(init=False)
    _unready_since: float | None = None
    _waiting_since: float | None = None

    def __post_init__(self) -> None:
        self._activity_at = self._processed_at = self._unready_since = self.clock()

    def observe(self, *, ready: bool, waiting: bool, processed: Hashable,
                activity: Hashable) -> None:
        """Take one look at the worker. ``processed`` changes whenever input is processed;
        ``activity`` whenever anything moves (input processed included)."""
        now = self.clock()
        if processed != self._processed:
            self._processed, self._processed_at = processed, now
        if activity != self._activity:
            self._activity, self._activity_at = activity, now
        if ready:
            self._unready_since = None
        elif self._unready_since is None:
            self._unready_since = now
        if not (waiting and ready):
            self._waiting_since = None
        elif self._waiting_since is None:
            self._waiting_since = now

    def stalled(self) -> str | None:
        """Why the worker is stalled, or None."""
        now, limit = self.clock(), self.timeout_s
        if self._unready_since is not None:
            quiet = now - max(self._unready_since, self._activity_at)
            if quiet >= limit:
                return f"not ready, and nothing moved for {quiet:.0f}s"
        if self._waiting_since is not None:
            quiet = now - max(self._waiting_since, self._processed_at)
            if quiet >= limit:
                return f"input waiting, and none processed for {quiet:.0f}s"
        return None


@dataclass
class RecentRefusals:
    """Records the broker refused for good (their input went to ``streams.dlq``), kept until
    ``window_s`` has passed without a new one."""

    window_s: float = 900.0
    clock: Clock = time.monotonic
    wall_ms: Callable[[], int] = field(default=lambda: time.time_ns() // 1_000_000)
    count: int = 0
    _first_ms: int = 0
    _last_at: float = 0.0
    _latest: str = ""

    def note(self, topic: str, error_name: str) -> None:
        """One record refused for good by ``topic`` with librdkafka's ``error_name``."""
        now = self.clock()
        if self.count == 0 or now - self._last_at >= self.window_s:
            self.count, self._first_ms = 0, self.wall_ms()
        self.count += 1
        self._last_at = now
        self._latest = f"{topic}: {error_name}"

    def summary(self) -> str | None:
        """What ``/readyz`` shows as ``degraded``, or None once ``window_s`` has passed
        since the last refusal."""
        if self.count == 0:
            return None
        age = self.clock() - self._last_at
        if age >= self.window_s:
            return None
        plural = "" if self.count == 1 else "s"
        return (f"{self.count} record{plural} refused for good since "
                f"{rfc3339(self._first_ms)}, the latest {age:.0f}s ago ({self._latest}); "
                "the records that caused them are in streams.dlq")
