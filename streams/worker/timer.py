"""The reminder timer: fires the reminders due on the learner partitions a worker owns.

The timers themselves are in the learners' states; ``ReminderIndex`` says when each is
due. Faust runs ``ReminderTimer.fire`` on every worker at an interval.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Protocol

from faust.types import TP

from streams.core import topics
from streams.core.records import InRecord, Layout
from streams.worker.processing import LearnerProcessor, Step
from streams.worker.tables import StateTable

REMINDER_RETRY_S = 60.0
"""A reminder whose record the broker refused for good is tried again this much later."""
REINDEX_CHUNK = 5_000
"""Stored learner states indexed between two turns of the event loop when the reminder
index is rebuilt after a rebalance (a few milliseconds each)."""




class Commit(Protocol):
    async def __call__(self, step: Step, causes: tuple[InRecord, ...],
                       table: StateTable | None = None) -> set[str]: ...


class ReminderTimer:
    """What a tick of the reminder timer needs of its worker, and the tick itself."""

    def __init__(self, app: Any, layout: Layout, learners: LearnerProcessor,
                 table: StateTable, lock: asyncio.Lock, commit: Commit,
                 done_offset: dict[tuple[str, int], int], *, batch_max: int,
                 ready: Callable[[], bool], batch_done: Callable[[Step, int, float], None]
                 ) -> None:
        self.app = app
        """The Faust app: its consumer (assignment, positions) and rebalance count."""
        self.layout = layout
        self.learners = learners
        self.table = table
        self.lock = lock
        """The progress table's lock: a batch and a reminder firing never change a key's
        state at once."""
        self.commit = commit
        self.done_offset = done_offset
        """Per input partition, the offset after the last record processed and written."""
        self.batch_max = batch_max
        self.ready = ready
        self.batch_done = batch_done
        self._generation = -1

    async def fire(self) -> None:
        """Fire the reminders due on this worker's learner partitions (Faust runs this on
        every worker, every ``interval``). The timers are in the learners' states, so they
        survive restarts and move with their partition; the index of when each is due
        (``ReminderIndex``) is rebuilt from the table after every rebalance, and a tick
        touches only the learners due, in steps of at most ``WORKER_BATCH_MAX`` (the
        table's lock is let go between steps, so batches of events go on meanwhile). A
        reminder whose record the broker refuses for good is not marked fired and is tried
        again ``REMINDER_RETRY_S`` later."""
        if not self.ready():
            return
        table, learners = self.table, self.learners
        if self._generation != self.app.rebalancing_count:
            self._generation = self.app.rebalancing_count
            async with self.lock:  # no batch changes a state meanwhile
                learners.due.clear()
                for states in table.chunks(REINDEX_CHUNK):
                    learners.index_reminders(states)
                    await asyncio.sleep(0)  # the loop serves the rest between chunks
        tried: set[str] = set()
        while True:  # a step of at most WORKER_BATCH_MAX learners at a time
            now_us = time.time_ns() // 1000
            due = [key for key in self._due(now_us) if key not in tried]
            if not due:
                return
            tried.update(due)
            async with self.lock:
                step = learners.fire_reminders(due, table.get, now_us)
                dropped = await self.commit(step, (), table)
                retry_at = now_us + int(REMINDER_RETRY_S * 1_000_000)
                for key in dropped:
                    learners.restore_due(key, table.get(key))
                    if key in learners.due:
                        learners.due[key] = max(learners.due[key], retry_at)
            self.batch_done(step, 0, 0.0)

    def _due(self, now_us: int) -> list[str]:
        """Up to ``WORKER_BATCH_MAX`` learners whose reminder is due by ``now_us`` on the
        learner partitions this worker owns and has caught up with; the index finds them
        in time proportional to their number."""
        index, limit = self.learners.due, self.batch_max
        due: list[str] = []
        for partition in self._active_partitions(self.layout.name(topics.LEARNER_EVENTS)):
            at = index.next_due(partition)
            if at is not None and at <= now_us and self._caught_up(partition):
                due += index.due(partition, now_us, limit - len(due))
                if len(due) >= limit:
                    break
        return due

    def _caught_up(self, partition: int) -> bool:
        """Whether this worker has applied everything its learner partition held when last
        fetched: a reminder fires only then, so a completion already on the topic (sent
        while the worker was down, say) cancels it rather than arriving after it. Judged by
        the high watermark of the fetch responses (right on the embedded broker too, unlike
        its ListOffsets answer) against the offsets processed or committed."""
        consumer: Any = self.app.consumer  # _committed_offset: faust keeps no public one
        for name in (topics.LEARNER_EVENTS, topics.LEARNER_REKEY):
            tp = TP(self.layout.name(name), partition)
            try:
                highwater = consumer.highwater(tp)
            except Exception:  # not assigned (any more), or the consumer is stopping
                return False
            if highwater is None:
                return False
            done = max(self.done_offset.get((tp.topic, partition), 0),
                       consumer._committed_offset.get(tp) or 0)
            if done < highwater:
                return False
        return True

    def _active_partitions(self, topic: str) -> set[int]:
        return {tp.partition for tp in self.app.consumer.assignment() if tp.topic == topic}

