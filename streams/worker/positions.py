"""Where a worker stands on its inputs, read from its consumer: records not processed yet
(lag), whether input waits, and how long the last recovery of the tables took. The
consumer is the worker's (``streams.worker.transport._Consumer``), the tables Faust's
``TableManager``: typed ``Any`` here, their types say less than what is used."""

from __future__ import annotations

import logging
from collections.abc import Container
from typing import Any

log = logging.getLogger(__name__)


async def input_waiting(consumer: Any, input_topics: Container[str], *,
                        batches_running: int) -> bool:
    """Whether input waits to be processed: a batch is being handled, or an assigned
    input partition's position is short of its end offset (asked of the broker, so
    right even while fetching is paused; by position, so a partition ending in a
    transaction marker is read to its end)."""
    if batches_running:
        return True
    tps = [tp for tp in consumer.assignment() if tp.topic in input_topics]
    if not tps:
        return False
    ends = await consumer.highwaters(*tps)
    for tp in tps:
        end = ends.get(tp)
        try:
            position = await consumer.position(tp)
        except Exception as exc:  # revoked meanwhile, or the consumer is stopping
            log.debug("no position for %s: %r", tp, exc)
            continue
        if end is not None and position is not None and position < end:
            return True
    return False


def recovery_seconds(tables: Any) -> float:
    """How long the last recovery of the tables took (0 before one finished)."""
    recovery = tables.recovery
    started = getattr(recovery, "_recovery_started_at", None)
    ended = getattr(recovery, "_recovery_ended_at", None)
    return float(ended - started) if started and ended and ended >= started else 0.0


def lag(consumer: Any, input_topics: Container[str]) -> list[tuple[str, int, int]]:
    """(topic, partition, records not processed yet) per assigned input partition: the
    high watermark of the last fetch minus the offset below which every record was
    processed (the guard's commit point, ``transport._Consumer.input_position``).
    Records fetched and not delivered, and records read again after a seek back,
    count until they are processed; a partition not fetched yet counts from its
    committed offset."""
    inputs = input_topics
    out = []
    for tp in consumer.assignment():
        if tp.topic not in inputs:
            continue
        try:
            highwater = consumer.highwater(tp)
        except Exception as exc:  # the consumer is starting or stopping
            log.debug("no high watermark for %s: %r", tp, exc)
            continue
        if highwater is not None:
            done = consumer.input_position(tp) or 0
            out.append((tp.topic, tp.partition, max(0, highwater - done)))
    return out
