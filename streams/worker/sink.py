"""Writing a worker's records: handed to librdkafka, awaited until the broker has them all.

The workers write through the same librdkafka publisher as the ingress, not through
Faust's producer: per record the event loop only hands it over (a few µs) and runs its
delivery report, where Faust's send path and aiokafka's sender cost hundreds of µs of the
loop's time per record (measured in the benchmark; see the README).

A batch's records are acknowledged (acks=all) before anything that depends on them
happens: the records a batch causes before its states are written, its states before its
input is acknowledged. A record the broker refused is sent again (with the same bytes, so
its ``edume-event-id`` is the same) until the broker takes it or the worker stops; a
worker that cannot write never acknowledges its input, and nothing is lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from streams.errors import PublishError
from streams.publisher import Delivery, Publisher
from streams.worker.records import OutRecord

log = logging.getLogger(__name__)


class _Outcome(Delivery):
    """One record's report: counts down its batch, which is done when all have reported."""

    __slots__ = ("batch", "index")

    def __init__(self, batch: _Batch, index: int) -> None:
        self.batch = batch
        self.index = index

    def settle(self, error: PublishError | None) -> None:
        self.batch.report(self.index, error)


class _Batch:
    """The records of one ``write``: a single future, set when the last one reports."""

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
    """Writes batches of records and returns once the broker acknowledged every one."""

    def __init__(self, publisher: Publisher, *, retry_backoff_s: float = 0.5) -> None:
        self.publisher = publisher
        self.retry_backoff_s = retry_backoff_s
        self.retries = 0

    async def write(self, records: Sequence[OutRecord]) -> None:
        pending = list(records)
        loop = asyncio.get_running_loop()
        publish = self.publisher.publish
        while pending:
            batch = _Batch(len(pending), loop.create_future())
            for index, record in enumerate(pending):
                try:
                    publish(record.topic, record.key, record.value, record.headers,
                            _Outcome(batch, index), partition=record.partition)
                except PublishError as exc:
                    batch.report(index, exc)
            await batch.done
            if batch.failed:
                first = next(iter(batch.failed.values()))
                self.retries += len(batch.failed)
                log.warning("%d of %d records not written (%s); sending them again",
                            len(batch.failed), len(pending), first)
                await asyncio.sleep(self.retry_backoff_s)
            pending = [pending[i] for i in sorted(batch.failed)]
