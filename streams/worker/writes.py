"""How a worker writes a step, and what it does with records the broker refuses for good.

A step's records go first, then the new states (changelog, then the table's memory), then
the dead letters of what could not be written. A write the broker fails for now is made
again until it succeeds (``streams.worker.sink``). A record it refuses for good (too
large, not allowed) would stall the partition for ever on every worker that takes it over,
so the input record that caused it goes to ``streams.dlq`` instead, with the other input
records of its key in the batch, and that key's new state is not kept (``Writer.commit``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from streams.core.records import InRecord, OutRecord, dead_letter
from streams.worker.health import RecentRefusals
from streams.worker.processing import Step
from streams.worker.sink import Refusal, Sink
from streams.worker.tables import StateTable

log = logging.getLogger(__name__)


class Counts(Protocol):
    """What the writer counts: dead letters by reason, records written by topic."""

    def dead_letters(self, reason: str, count: int) -> None: ...

    def wrote(self, records: Iterable[OutRecord]) -> None: ...


def last_per_partition(records: Sequence[OutRecord]) -> tuple[list[OutRecord], list[OutRecord]]:
    """``records`` split into each partition's last record and all the others, in order."""
    last: dict[int | None, int] = {r.partition: i for i, r in enumerate(records)}
    tails = set(last.values())
    return ([r for i, r in enumerate(records) if i not in tails],
            [r for i, r in enumerate(records) if i in tails])


WRITE_REFUSED = "write_refused"
"""``edume_worker_dlq_total``'s reason label for the dead letters of ``Losses``."""
SAME_KEY = ("a record of the same key in its batch could not be written; the key's state "
            "was left as it was")


@dataclass
class Losses:
    """What a step loses to records the broker refused for good (see ``Writer.commit``):
    the causes that go to ``streams.dlq`` and the keys whose new state is not kept."""

    step: Step
    dlq: str
    """The broker's name of ``streams.dlq``."""
    causes: dict[int, str] = field(default_factory=dict)
    """Cause (``OutRecord.cause``) -> why it goes to ``streams.dlq``."""
    keys: dict[str, str] = field(default_factory=dict)
    """Key whose new state is not kept -> why the key's other causes go too."""

    def output_refused(self, record: OutRecord, error: str) -> None:
        """One of the step's records was refused: its cause is lost, and its key's new
        state with it. A refused dead letter, or a record of no single cause, loses
        nothing more (the caller logs it)."""
        if record.cause is None or record.topic == self.dlq:
            return
        self.causes.setdefault(record.cause,
                               f"{record.topic} refused the record it caused ({error})")
        key = self.step.key_of.get(record.cause)
        if key is not None:
            self.keys.setdefault(key, SAME_KEY)

    def state_refused(self, record: OutRecord, error: str) -> None:
        """A key's new state (changelog ``record``) was refused: it is not kept."""
        self.keys[record.key.decode()] = (f"{record.topic} refused its key's new state "
                                          f"({error}); the state was left as it was")

    def kept_states(self) -> dict[str, tuple[int, bytes]]:
        """The step's new states that are not lost (yet)."""
        return {k: v for k, v in self.step.states.items() if k not in self.keys}

    def dead_letters(self, records: Sequence[InRecord],
                     written: Iterable[OutRecord]) -> list[OutRecord]:
        """A dead letter for each lost cause that is one of the input ``records`` (a due
        reminder is not: it stays due), every cause of a lost key included, except those
        the step already sent to ``streams.dlq`` (``written``)."""
        causes = dict(self.causes)
        for cause, key in self.step.key_of.items():
            if key in self.keys:
                causes.setdefault(cause, self.keys[key])
        dead = {r.cause for r in written if r.topic == self.dlq}
        return [dead_letter(records[c], reason, self.dlq)._replace(cause=c)
                for c, reason in sorted(causes.items()) if c < len(records) and c not in dead]


class Writer:
    """Writes a worker's steps (see the module's docstring)."""

    def __init__(self, sink: Sink, dlq: str, refusals: RecentRefusals, counts: Counts, *,
                 embedded_broker: bool) -> None:
        self.sink = sink
        self.dlq = dlq
        """The broker's name of ``streams.dlq``."""
        self.refusals = refusals
        self.counts = counts
        self.embedded_broker = embedded_broker

    async def commit(self, step: Step, causes: Sequence[InRecord],
                     table: StateTable | None = None) -> set[str]:
        """Write a step: its records, then the new states (changelog, then memory), then the
        dead letters of what could not be written; answer the keys whose new state was not
        kept.

        ``causes`` are the batch's input records (``OutRecord.cause`` and ``Step.key_of``
        index them). A record the broker refuses for good (``streams.worker.sink``) cannot
        be written by trying again, and the worker must not stall on it, so:

        - a refused record's cause goes to ``streams.dlq`` with a reason naming the topic
          and librdkafka's error;
        - so does every input record whose effect is in the same key's new state, and that
          state is not kept (the table and its changelog keep the state before the batch),
          so that a replay of the dead letters applies them again;
        - a new state the changelog refuses (too large) is not kept either, and the input
          records of its key go to ``streams.dlq`` the same way.

        Records the batch wrote for a cause before it failed stay written (a replay writes
        them again, with the same ``edume-event-id``). A refused dead letter is logged and
        dropped: its record stays at its place in its topic, which the log names."""
        losses = Losses(step, self.dlq)
        refusals = await self.sink.write(step.outputs)
        gone = {refusal.position for refusal in refusals}
        written = [r for i, r in enumerate(step.outputs) if i not in gone]
        for refusal in refusals:
            record = step.outputs[refusal.position]
            self._refused(record, refusal)
            losses.output_refused(record, refusal.error_name)
        if table is not None:
            kept = losses.kept_states()
            changelog = [table.changelog(k, p, v) for k, (p, v) in kept.items()]
            for record, refusal in await self._write_changelog(changelog):
                self._refused(record, refusal)
                losses.state_refused(record, refusal.error_name)
            for key, (partition, value) in kept.items():
                if key not in losses.keys:
                    table.put(key, partition, value)
        letters = losses.dead_letters(causes, written)
        if letters:
            log.warning("%d input records go to %s: %s", len(letters), losses.dlq,
                        "; ".join(sorted({*losses.causes.values(), *losses.keys.values()})))
            refusals = await self.sink.write(letters)
            for refusal in refusals:
                record = letters[refusal.position]
                self._refused(record, refusal)
                log.error("the dead letter of %s was refused too (%s): that record stays only "
                          "at its place", record.key.decode(), refusal.error_name)
            gone = {refusal.position for refusal in refusals}
            written += [r for i, r in enumerate(letters) if i not in gone]
            self.counts.dead_letters(WRITE_REFUSED, len(letters) - len(gone))
        self.counts.wrote(written)
        return set(losses.keys)

    async def _write_changelog(self, changelog: list[OutRecord]
                               ) -> list[tuple[OutRecord, Refusal]]:
        """Write changelog records; answer those refused for good."""
        if not changelog:
            return []
        writes = [changelog]
        if self.embedded_broker:
            # The embedded broker answers a partition's end offset with the start of its
            # last batch plus one, and Faust's recovery reads a changelog up to that
            # offset. Each partition's last record goes alone, once the others are
            # written: the last batch of every changelog partition holds one record, and
            # recovery reads it all. A kill between the two writes leaves an end offset
            # short of the batch's tail, but the batch is not yet acknowledged: its input
            # comes again and writes the same states again.
            writes = list(last_per_partition(changelog))
        refused = []
        for records in writes:
            refused += [(records[r.position], r) for r in await self.sink.write(records)]
        return refused

    def _refused(self, record: OutRecord, refusal: Refusal) -> None:
        """Note a record refused for good: logged, and shown by ``/readyz`` for a while."""
        self.refusals.note(record.topic, refusal.error_name)
        log.error("%s refused a record for good (%s)", record.topic, refusal.error)
