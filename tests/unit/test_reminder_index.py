"""The reminder timer's index against a plain dict, and the pending reminders read from an
encoded learner state without decoding it."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.records import partition_for
from streams.core.state.codec import encode_learner, next_reminder_due
from streams.core.state.common import Stamped
from streams.core.state.links import next_due
from streams.core.state.progress import LearnerState
from streams.worker.reminders import COMPACT_MIN, ReminderIndex

PARTITIONS = 8
keys = st.sampled_from([str(k) for k in range(1, 40)])
times = st.integers(0, 50)
operations = st.lists(st.one_of(
    st.tuples(st.just("set"), keys, times),
    st.tuples(st.just("del"), keys, times),
    st.tuples(st.just("due"), st.integers(0, PARTITIONS - 1), times, st.integers(1, 5)),
), max_size=80)


def expected_due(model: dict[str, int], partition: int, now: int, limit: int) -> list[str]:
    """What the index must answer: the partition's keys due by ``now``, earliest first."""
    due = sorted((at, key) for key, at in model.items()
                 if at <= now and partition_for(key.encode(), PARTITIONS) == partition)
    return [key for _, key in due[:limit]]


@given(operations)
@settings(max_examples=300)
def test_the_index_answers_what_a_dict_scanned_whole_would(ops: list[tuple]) -> None:
    index = ReminderIndex(PARTITIONS)
    model: dict[str, int] = {}
    for op in ops:
        if op[0] == "set":
            index[op[1]] = model[op[1]] = op[2]
        elif op[0] == "del":
            index.pop(op[1], None)
            model.pop(op[1], None)
        else:
            _, partition, now, limit = op
            assert index.due(partition, now, limit) == expected_due(model, partition, now, limit)
            mine = [at for key, at in model.items()
                    if partition_for(key.encode(), PARTITIONS) == partition]
            assert index.next_due(partition) == min(mine, default=None)
        assert dict(index) == model


def test_keys_due_stay_until_set_and_a_tick_sees_only_its_partition() -> None:
    index = ReminderIndex(PARTITIONS)
    for n in range(1, 200):
        index[str(n)] = 1_000 + n
    key = "7"
    partition = partition_for(key.encode(), PARTITIONS)
    index[key] = 5
    assert index.due(partition, 10, 10) == [key]
    assert index.due(partition, 10, 10) == [key]  # not fired yet: answered again
    others = {p: index.due(p, 10, 10) for p in range(PARTITIONS) if p != partition}
    assert others == {p: [] for p in others}
    index[key] = 2_000  # fired: the next reminder is later
    assert index.due(partition, 10, 10) == []
    index[key] = 5
    index[key] = 2_000
    index[key] = 5  # back to an earlier time before a tick: answered once
    assert index.due(partition, 10, 10) == [key]
    index[key] = 2_000
    assert index.next_due(partition) == min(
        at for k, at in index.items() if partition_for(k.encode(), PARTITIONS) == partition)


def test_stale_entries_are_dropped_so_memory_follows_the_live_keys() -> None:
    index = ReminderIndex(PARTITIONS)
    for n in range(10 * COMPACT_MIN):  # one learner's timer moved again and again
        index["42"] = n
    assert len(index) == 1
    assert index._entries <= 2 * len(index) + COMPACT_MIN
    assert sum(len(h) for h in index._heaps.values()) == index._entries
    assert index.due(partition_for(b"42", PARTITIONS), 10**9, 5) == ["42"]


def test_a_reload_reads_each_stored_states_earliest_reminder() -> None:
    pending = LearnerState(1, reminders={7001: (300, "a" * 64), 7002: (200, "b" * 64)})
    none = LearnerState(2, reminded={7001})
    index = ReminderIndex(PARTITIONS)
    index["3"] = 5  # from before the rebalance: gone after it
    index.clear()
    index.load([("1", 1, encode_learner(pending)), ("2", 2, encode_learner(none))])
    assert dict(index) == {"1": 200}
    assert index.due(1, 250, 5) == ["1"] and index.next_due(1) == 200
    assert index.due(0, 250, 5) == []  # indexed under the partition the table gave


text = st.text(st.sampled_from('"{}[]:,\\ reminders'), max_size=30)
states = st.builds(
    LearnerState,
    st.integers(1, 10**6),
    identifiers=st.dictionaries(st.one_of(text, st.just("reminders")),
                                st.builds(Stamped, st.integers(0, 10**12), st.just("e" * 64),
                                          text, st.just(0)), max_size=3),
    reminders=st.dictionaries(st.integers(1, 10**6),
                              st.tuples(st.integers(0, 2**62), text),
                              max_size=4),
    reminded=st.sets(st.integers(1, 10**6), max_size=3),
)


@given(states)
@settings(max_examples=300)
def test_the_pending_reminders_read_from_the_bytes_are_the_decoded_states(
        state: LearnerState) -> None:
    assert next_reminder_due(encode_learner(state)) == next_due(state)


def test_a_state_without_the_reminders_field_is_read_whole() -> None:
    """A state of a version before reminders, whose identifier is named ``reminders``."""
    raw = orjson.loads(encode_learner(LearnerState(9)))
    del raw["reminders"], raw["reminded"]
    raw["identifiers"] = {"reminders": [1, "e" * 64, '{"7":[1,"x"]},"reminded":']}
    assert next_reminder_due(orjson.dumps(raw)) is None
    raw["identifiers"] = {"reminders": {"7": [1, "x"]}}  # not a register: still not a timer
    assert next_reminder_due(orjson.dumps(raw)) is None
