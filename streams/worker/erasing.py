"""Erasing learners on the worker that owns them (see ``streams.core.erasures``).

Every worker reads ``privacy.erasures`` (the replica). What it does with an erasure:

- **as it arrives** (read while the worker runs): the owner of the learner's progress
  partition (``user/N``), or of the external user's links partition (``external/X``),
  drops the state, whatever it holds, and writes a tombstone to the table's changelog.
  Before that, it writes what the state knew of the learner's other name as a derived
  erasure (a learner's external user id, a links state's userId), so that the other
  owner erases too; and the owner of an ``external/X`` erasure's links is not the only
  one to look: every worker drops the learners it owns whose external user id is X. The
  tombstone is written even when the owner holds nothing: ``edume-streams forget`` waits
  for it as the sign that the owner has applied the erasure.
- **after its tables are recovered** (every rebalance), for every erasure known: a state
  that holds only what predates its learner's erasure is dropped the same way (an
  erasure that arrived while no worker owned the partition); a state with later events
  is the learner's return, and stays (its links issued before the erasure go).

A batch and an erasure never change a key at once: both hold the table's lock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson

from streams.core import topics
from streams.core.erasures import (
    EXTERNAL,
    USER,
    Erasure,
    ErasureBook,
    learner_predates,
    links_after_erasure,
)
from streams.core.evidence import evidence_key, evidence_partition
from streams.core.records import Layout, OutRecord, partition_for
from streams.core.state.codec import decode_learner
from streams.core.state.links import decode_links, encode_links
from streams.worker.sink import Sink
from streams.worker.tables import StateTable

log = logging.getLogger(__name__)

SCAN_CHUNK = 2000
"""Learners looked at per pause when searching the owned ones by external user id."""


@dataclass
class Owned:
    """Which table partitions this worker owns now (not as a standby)."""

    progress: Callable[[int], bool]
    links: Callable[[int], bool]


class Eraser:
    """Applies erasures to the tables this worker owns."""

    def __init__(self, layout: Layout, book: ErasureBook, progress: StateTable,
                 links: StateTable, locks: Callable[[StateTable], asyncio.Lock], sink: Sink,
                 owned: Owned, forget_due: Callable[[str], None]) -> None:
        self.layout = layout
        self.book = book
        self.progress = progress
        self.links = links
        self._lock = locks
        self.sink = sink
        self.owned = owned
        self._forget_due = forget_due
        self._topic = layout.name(topics.PRIVACY_ERASURES)
        self._evidence_topic = layout.name(topics.TRAINING_EVIDENCE)
        self._evidence_partitions = layout.count(topics.TRAINING_EVIDENCE)
        self._progress_partitions = layout.count(topics.PROGRESS_CHANGELOG)
        self._links_partitions = layout.count(topics.LINKS_CHANGELOG)

    async def arrived(self, erasure: Erasure) -> None:
        """An erasure read while the worker runs: the owners drop the learner's state."""
        if erasure.kind == USER:
            await self._erase_learner(erasure.subject, erasure, live=True)
        else:
            await self._erase_links(erasure.subject, erasure, live=True)
            await self._erase_learners_named(erasure)

    async def sweep(self) -> None:
        """Every erasure known, against the states this worker owns after a rebalance: those
        that hold only what predates their learner's erasure are dropped."""
        for erasure in self.book.erasures():
            if erasure.kind == USER:
                await self._erase_learner(erasure.subject, erasure, live=False)
            else:
                await self._erase_links(erasure.subject, erasure, live=False)

    async def _erase_learner(self, key: str, erasure: Erasure, *, live: bool) -> None:
        partition = partition_for(key.encode(), self._progress_partitions)
        if not self.owned.progress(partition):
            return
        async with self._lock(self.progress):
            raw = self.progress.get(key)
            state = decode_learner(raw) if raw else None
            if not live and (state is None or not learner_predates(state, self.book)):
                return
            derived = []
            external = None if state is None else state.external_user_id
            if external is not None and not self._known(EXTERNAL, external, erasure):
                derived.append(erasure.derived(EXTERNAL, external))
            evidence = [] if state is None else [
                OutRecord(self._evidence_topic,
                          evidence_partition(state.user_id, self._evidence_partitions),
                          evidence_key(state.user_id, course).encode(), None, [])
                for course in sorted(state.completed_course_ids())]
            await self._write(derived, self.progress.tombstone(key, partition), evidence)
            self.progress.delete(key)
            self._forget_due(key)
            if raw:
                log.info("erased learner %s (asked for at %s)", key, erasure.requested_at)

    async def _erase_links(self, key: str, erasure: Erasure, *, live: bool) -> None:
        partition = partition_for(key.encode(), self._links_partitions)
        if not self.owned.links(partition):
            return
        async with self._lock(self.links):
            raw = self.links.get(key)
            state = decode_links(raw) if raw else None
            if not live:
                if state is None:
                    return
                left = links_after_erasure(state, self.book)
                if left is state:
                    return
                if left.links:  # the learner came back: only the links of before go
                    value = encode_links(left)
                    await self._write([], self.links.changelog(key, partition, value))
                    self.links.put(key, partition, value)
                    return
            derived = []
            if state is not None and state.user_id is not None and not self._known(
                    USER, str(state.user_id), erasure):
                derived.append(erasure.derived(USER, str(state.user_id)))
            await self._write(derived, self.links.tombstone(key, partition))
            self.links.delete(key)
            if raw:
                log.info("erased the links of an external user (asked for at %s)",
                         erasure.requested_at)

    async def _erase_learners_named(self, erasure: Erasure) -> None:
        """Drop the owned learners whose external user id is the erasure's."""
        needle = orjson.dumps(erasure.subject)
        for chunk in self.progress.chunks(SCAN_CHUNK):
            for key, partition, raw in chunk:
                if needle in raw and self.owned.progress(partition):
                    state = decode_learner(raw)
                    if state.external_user_id == erasure.subject:
                        await self._erase_learner(key, erasure, live=True)
            await asyncio.sleep(0)  # let batches run between chunks

    def _known(self, kind: str, subject: str, erasure: Erasure) -> bool:
        """Whether the book already has this learner erased since ``erasure`` or later."""
        since = (self.book.user(int(subject)) if kind == USER
                 else self.book.external(subject))
        return since is not None and since >= erasure.requested_at_us

    async def _write(self, derived: Sequence[Erasure], change: OutRecord,
                     evidence: Sequence[OutRecord] = ()) -> None:
        """The derived erasures and the evidence tombstones, then the changelog change,
        each acknowledged before the next: whoever sees the changelog's tombstone finds the
        derived erasures on their topic and the evidence gone."""
        if evidence:
            for refusal in await self.sink.write(evidence):
                log.error("%s refused an evidence tombstone for good (%s)",
                          self._evidence_topic, refusal.error_name)
        if derived:
            records = [OutRecord(self._topic, None, e.key, e.value(), []) for e in derived]
            for refusal in await self.sink.write(records):
                log.error("%s refused a derived erasure for good (%s)", self._topic,
                          refusal.error_name)
        for refusal in await self.sink.write([change]):
            log.error("%s refused an erasure's change for good (%s)", change.topic,
                      refusal.error_name)
