"""Small parts of the worker shell: the changelog split for the embedded broker, and the
read offsets Faust's delivery loop is shown."""

from __future__ import annotations

from faust.types import TP

from streams.core.records import OutRecord
from streams.worker.transport import _DeliverEverything
from streams.worker.writes import last_per_partition


def _out(partition: int, key: bytes) -> OutRecord:
    return OutRecord("t.changelog", partition, key, b"v", [])


def test_each_partitions_last_record_is_split_off_in_order() -> None:
    records = [_out(0, b"a"), _out(1, b"b"), _out(0, b"c"), _out(2, b"d"), _out(1, b"e")]
    body, tails = last_per_partition(records)
    assert [r.key for r in body] == [b"a", b"b"]
    assert [r.key for r in tails] == [b"c", b"d", b"e"]
    assert last_per_partition([]) == ([], [])


def test_the_event_topics_show_faust_no_read_offset_and_others_keep_theirs() -> None:
    offsets = _DeliverEverything(frozenset({"p.edume.learner.events"}))
    events, policies = TP("p.edume.learner.events", 3), TP("p.training.policies", 0)
    offsets[events] = 41
    offsets[policies] = 7
    assert offsets[events] is None  # nothing for the delivery loop to drop or call a gap
    assert offsets.get(events) == 41  # kept for Faust's own bookkeeping
    assert offsets[policies] == 7
    assert offsets[TP("p.training.policies", 1)] is None  # unknown: Faust's default
