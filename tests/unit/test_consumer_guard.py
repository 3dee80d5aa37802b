"""The consumer's guard over the input topics (``streams.worker.transport``): a partition's
ledger fed by hand-built sequences of what the fetcher returned and what became of each
record, and which topics the worker guards."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from faust.types import TP

from streams.core.records import Layout
from streams.settings import Settings
from streams.worker.app import Worker
from streams.worker.transport import InputGuard, PartitionLedger


def deliver(ledger: PartitionLedger, offsets: Iterable[int]) -> list[int]:
    """Each record handed to an agent's buffer, taken by its stream and acknowledged, in
    order; the offsets found lost on the way."""
    lost: list[int] = []
    for offset in offsets:
        ledger.handed(offset)
        lost += ledger.taken(offset)
        ledger.done(offset)
    return lost


def test_the_holes_of_a_compacted_partition_are_no_lost_records() -> None:
    ledger = PartitionLedger()
    # 3, 4, 7 and 8 compacted away; the batch that held 9 ended at 10.
    ledger.fetched([0, 1, 2, 5, 6, 9], position=10)
    assert deliver(ledger, [0, 1, 2, 5, 6, 9]) == []
    assert ledger.round_ended() == []
    assert ledger.start_seek() is None
    assert ledger.commit_offset() == 10


def test_transaction_markers_and_aborted_records_are_no_lost_records() -> None:
    ledger = PartitionLedger()
    ledger.fetched([0, 1, 2], position=4)  # 3: a commit marker
    assert deliver(ledger, [0, 1, 2]) == []
    assert ledger.commit_offset() == 4  # past the marker: nothing left to read before 4
    ledger.fetched([], position=9)  # 4 to 7 aborted (read_committed), 8 the abort marker
    assert ledger.commit_offset() == 9
    ledger.fetched([9, 10], position=12)
    ledger.handed(9)
    ledger.handed(10)
    assert ledger.taken(9) == [] and ledger.taken(10) == []
    assert ledger.commit_offset() == 9  # taken, not acknowledged yet
    ledger.done(9)
    assert ledger.commit_offset() == 10
    ledger.done(10)
    assert ledger.commit_offset() == 12
    assert ledger.round_ended() == [] and ledger.start_seek() is None


def test_a_record_a_stream_skipped_is_lost_and_only_its_partition_seeks_back() -> None:
    guard = InputGuard(frozenset({"p.edume.learner.events"}))
    jumped, steady = TP("p.edume.learner.events", 3), TP("p.edume.learner.events", 4)
    a, b = guard.ledger(jumped), guard.ledger(steady)
    assert a is not None and b is not None
    assert guard.ledger(TP("p.edume-streams.progress.changelog", 3)) is None
    a.fetched(range(0, 10), position=10)
    b.fetched(range(0, 10), position=10)
    for offset in range(10):
        a.handed(offset)
    assert deliver(a, [0, 1, 2, 3]) == []
    assert a.taken(7) == [4, 5, 6]  # handed out before 7, never taken
    assert deliver(b, range(10)) == []
    assert (a.start_seek(), b.start_seek()) == (4, None)
    for offset in (8, 9):
        assert a.taken(offset) == []
    for offset in (7, 8, 9):
        a.done(offset)
    assert a.commit_offset() == 4  # not past the lost records, though 7 to 9 are done
    assert b.commit_offset() == 10
    a.seek_done(4)
    a.fetched(range(4, 10), position=10)  # read again from 4
    assert a.floor is None
    assert deliver(a, range(4, 10)) == []
    assert a.commit_offset() == 10 and a.start_seek() is None


def test_records_lost_before_a_partitions_first_commit_are_read_again_from_the_first() -> None:
    """The stall a restarted worker showed: recovery's flow resume emptied the agents'
    buffers of records 43 to 50 of a partition with no committed offset yet. Seeking to
    the committed offsets left such a partition where it was, the first commit went to
    43, and no commit ever passed the records nobody read again."""
    ledger = PartitionLedger()
    ledger.fetched(range(0, 51), position=51)
    for offset in range(51):
        ledger.handed(offset)
    for offset in range(43):
        assert ledger.taken(offset) == []
        ledger.done(offset)
    assert ledger.commit_offset() == 43
    assert ledger.buffers_emptied() == list(range(43, 51))
    assert ledger.start_seek() == 43 and ledger.start_seek() is None  # one at a time
    ledger.fetched(range(51, 60), position=60)  # fetched before the seek took effect
    assert deliver(ledger, range(51, 60)) == []
    assert ledger.commit_offset() == 43
    ledger.seek_done(43)
    ledger.fetched(range(43, 60), position=60)
    assert deliver(ledger, range(43, 60)) == []
    assert ledger.commit_offset() == 60 and ledger.start_seek() is None


def test_a_fetch_round_ended_early_loses_what_it_did_not_hand_out() -> None:
    ledger = PartitionLedger()
    ledger.fetched(range(10, 16), position=16)
    assert deliver(ledger, [10, 11, 12]) == []
    assert ledger.round_ended() == [13, 14, 15]
    assert ledger.commit_offset() == 13 and ledger.start_seek() == 13


def test_records_lost_while_a_seek_is_under_way_want_another_seek() -> None:
    ledger = PartitionLedger()
    ledger.fetched(range(0, 6), position=6)
    for offset in range(6):
        ledger.handed(offset)
    assert ledger.taken(2) == [0, 1]
    assert ledger.start_seek() == 0
    assert ledger.taken(5) == [3, 4]  # handed out before the seek, or after it took effect
    ledger.seek_done(0)
    ledger.fetched(range(0, 6), position=6)  # may not hold 3 and 4 if fetched after the seek
    assert ledger.floor == 0  # not cleared: another seek is due
    assert ledger.start_seek() == 0
    ledger.seek_done(0)
    ledger.fetched(range(0, 6), position=6)
    assert ledger.floor is None


def test_a_copy_from_before_a_seek_back_is_processed_as_it_comes() -> None:
    ledger = PartitionLedger()
    ledger.fetched([7], position=8)
    assert ledger.taken(3) == []  # not handed out as far as the ledger knows: no jump
    assert ledger.commit_offset() == 3
    ledger.done(3)
    assert ledger.commit_offset() == 7


async def test_every_topic_an_agent_reads_is_guarded(tmp_path: Path) -> None:
    """The link topics and the policies (compacted) too, not only the event topics."""
    settings = Settings(link_secret="x", worker_api_tokens=("t",))
    worker = Worker(settings, Layout.from_catalog("p."), str(tmp_path))
    read = {topic for agent in worker.app.agents.values() for topic in agent.channel.topics}
    assert {"p.links.requests", "p.links.issue", "p.edume-streams.links.rekey",
            "p.training.policies"} <= read
    assert worker.app.every_record_topics == read
