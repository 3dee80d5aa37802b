"""Writing a worker's records: handed to librdkafka, awaited until the broker has them all.

The workers write through the same librdkafka publisher as the ingress, not through
Faust's producer: per record the event loop only hands it over (a few µs) and runs its
delivery report, where Faust's send path and aiokafka's sender cost hundreds of µs of the
loop's time per record (measured in the benchmark; see the README).

A batch's records are acknowledged (acks=all) before anything that depends on them
happens: the records a batch causes before its states are written, its states before its
input is acknowledged. Failures are of two kinds (``streams.kafka.publisher.record_error``):

- transient (a broker down, a leader moving, a timeout): the record is sent again, with
  the same bytes (so its ``edume-event-id`` is the same), after a pause that doubles from
  ``retry_first_s`` up to ``retry_max_s``, until the broker takes it or the worker stops.
  A worker that cannot write never acknowledges its input, and nothing is lost;
- permanent (a record larger than the topic or the producer allows, an invalid record, a
  topic the credentials may not write): sending it again would fail the same way, so
  ``write`` answers it to its caller instead (``Refusal``), which sends the input record
  that caused it to ``streams.dlq`` (see ``streams.worker.app``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import NamedTuple

from streams.core.errors import PublishError
from streams.core.records import OutRecord
from streams.kafka.publisher import Delivery, Publisher
from streams.worker.health import Backoff

log = logging.getLogger(__name__)


class Refusal(NamedTuple):
    """A record the broker refused for good: its place in the records written, and why."""

    position: int
    error: PublishError

    @property
    def error_name(self) -> str:
        """librdkafka's name of the error, or the error's class."""
        return self.error.error_name or type(self.error).__name__


class _Outcome(Delivery):
    """One record's report: counts down its batch, which is done when all have reported."""

    __slots__ = ("batch", "index")

    def __init__(self, batch: _Batch, index: int) -> None:
        self.batch = batch
        self.index = index

    def settle(self, error: PublishError | None) -> None:
        self.batch.report(self.index, error)


class _Batch:
    """The records of one round of a ``write``: a single future, set when the last one
    reports."""

    __slots__ = ("done", "failed", "left")

    def __init__(self, size: int, done: asyncio.Future[None]) -> None:
        self.left = size
        self.failed: dict[int, PublishError] = {}
        self.done = done

    def report(self, index: int, error: PublishError | None) -> None:
        if error is not None:
            self.failed[index] = error
        self.left -= 1
        if self.left == 0 and not self.done.done():
            self.done.set_result(None)


class Sink:
    """Writes batches of records and returns once the broker acknowledged every one, or
    refused it for good. ``failed(kind, count)`` is told of every failed attempt, by kind
    (``transient`` or ``permanent``)."""

    def __init__(self, publisher: Publisher, *, retry_first_s: float = 0.5,
                 retry_max_s: float = 10.0,
                 failed: Callable[[str, int], None] | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.publisher = publisher
        self.retry_first_s = retry_first_s
        self.retry_max_s = retry_max_s
        self.failed = failed or (lambda _kind, _count: None)
        self._sleep = sleep

    async def write(self, records: Sequence[OutRecord]) -> list[Refusal]:
        """Write ``records``; answer those refused for good, by index, in order."""
        pending = list(range(len(records)))
        refused: list[Refusal] = []
        loop = asyncio.get_running_loop()
        publish = self.publisher.publish
        pauses = Backoff(self.retry_first_s, self.retry_max_s)
        while pending:
            batch = _Batch(len(pending), loop.create_future())
            for slot, index in enumerate(pending):
                record = records[index]
                try:
                    publish(record.topic, record.key, record.value, record.headers,
                            _Outcome(batch, slot), partition=record.partition)
                except PublishError as exc:
                    batch.report(slot, exc)
            await batch.done
            again: list[int] = []
            transient: PublishError | None = None
            for slot, error in sorted(batch.failed.items()):
                if error.permanent:
                    refused.append(Refusal(pending[slot], error))
                else:
                    again.append(pending[slot])
                    transient = transient or error
            gave_up = len(batch.failed) - len(again)
            if gave_up:
                self.failed("permanent", gave_up)
            if again:
                self.failed("transient", len(again))
                pause = pauses.next()
                log.warning("%d of %d records not written (%s); sending them again in %.1fs",
                            len(again), len(pending), transient, pause)
                await self._sleep(pause)
            pending = again
        refused.sort(key=lambda r: r.position)
        return refused
