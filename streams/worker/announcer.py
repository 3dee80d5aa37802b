"""Completions a policy calls for: announced when the policy arrives, not at the learner's
next event (see ``streams.core.state.mandatory.announce_for_policies``).

When a policy makes a course mandatory (new, or widened to more groups), every worker looks
through the learners it owns for those who completed the course, are in a group the policy
names, and have no announcement for it yet, and announces each once: the record first, then
the learner's state with the course marked announced, as a batch of events does. After
every rebalance it looks through all of its learners again, for every course: what a
worker killed in the middle of announcing left undone is done by the next owner, with the
same ids (they derive from the policy record). Removing a policy announces nothing.

The table's lock is taken a chunk of learners at a time, so batches of events go on in
between; a learner's state is read again under the lock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from streams.core.records import InRecord
from streams.core.state.policies import Policy
from streams.worker.processing import LearnerProcessor, Step
from streams.worker.tables import StateTable

log = logging.getLogger(__name__)

CHUNK = 500
"""Learners looked at under one hold of the table's lock."""
COMPLETED = b'"completed":['
"""What an encoded learner state holds when some course of it is completed (a completion
register); a state without it has nothing to announce and is not decoded."""

Commit = Callable[[Step, Sequence[InRecord], StateTable], Awaitable[set[str]]]


class Announcer:
    """Announces the completions policies call for, on the learners this worker owns."""

    def __init__(self, learners: LearnerProcessor, table: StateTable, lock: asyncio.Lock,
                 commit: Commit, owned: Callable[[int], bool],
                 batch_done: Callable[[Step, int, float], None]) -> None:
        self.learners = learners
        self.table = table
        self.lock = lock
        self.commit = commit
        self.owned = owned
        self.batch_done = batch_done
        self._everything = True
        """Whether every course is to be looked at (after a start or a rebalance)."""
        self._courses: set[int] = set()
        """Courses whose policy made them mandatory for more learners since the last look."""

    def policy_changed(self, course_id: int, policy: Policy | None) -> None:
        """A policy record read while the worker runs (removing one announces nothing)."""
        if policy is not None and policy.mandatory:
            self._courses.add(course_id)

    def rebalanced(self) -> None:
        self._everything = True

    @property
    def pending(self) -> bool:
        return self._everything or bool(self._courses)

    async def run(self) -> int:
        """Look through the learners owned for what is pending; the completions announced."""
        if not self.pending:
            return 0
        courses = None if self._everything else set(self._courses)
        self._everything, self._courses = False, set()
        try:
            announced = await self._look(courses)
        except BaseException:
            # Not done: look again next time (what was announced is marked announced).
            if courses is None:
                self._everything = True
            else:
                self._courses |= courses
            raise
        if announced:
            log.info("announced %d completion(s) that policies call for", announced)
        return announced

    async def _look(self, courses: set[int] | None) -> int:
        announced = 0
        for chunk in self.table.chunks(CHUNK):
            keys = [key for key, partition, raw in chunk
                    if COMPLETED in raw and self.owned(partition)]
            if keys:
                async with self.lock:
                    step = self.learners.announce(keys, self.table.get, time.time_ns() // 1000,
                                                  courses)
                    if step.outputs:
                        await self.commit(step, (), self.table)
                        announced += step.announced
                        self.batch_done(step, 0, 0.0)
            await asyncio.sleep(0)  # batches of events run between chunks
        return announced
