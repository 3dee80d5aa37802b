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
    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[PublishError | None]) -> None:
        self.future = future

    def settle(self, error: PublishError | None) -> None:
        if not self.future.done():
            self.future.set_result(error)


class Sink:
    """Writes batches of records and returns once the broker acknowledged every one."""

    def __init__(self, publisher: Publisher, *, retry_backoff_s: float = 0.5) -> None:
        self.publisher = publisher
        self.retry_backoff_s = retry_backoff_s
        self.retries = 0

    async def write(self, records: Sequence[OutRecord]) -> None:
        pending = list(records)
        loop = asyncio.get_running_loop()
        while pending:
            outcomes: list[asyncio.Future[PublishError | None]] = []
            for record in pending:
                future: asyncio.Future[PublishError | None] = loop.create_future()
                try:
                    self.publisher.publish(
                        record.topic, record.key, record.value, record.headers,
                        _Outcome(future), partition=record.partition,
                    )
                except PublishError as exc:
                    future.set_result(exc)
                outcomes.append(future)
            errors = await asyncio.gather(*outcomes)
            failed = [r for r, e in zip(pending, errors, strict=True) if e is not None]
            if failed:
                first = next(e for e in errors if e is not None)
                self.retries += len(failed)
                log.warning("%d of %d records not written (%s); sending them again",
                            len(failed), len(pending), first)
                await asyncio.sleep(self.retry_backoff_s)
            pending = failed
