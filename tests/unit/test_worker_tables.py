"""The state tables keep large values deflated in memory and answer the encoded state,
whether the value was put by a batch or read back from the changelog by Faust's recovery."""

from __future__ import annotations

from types import SimpleNamespace

from streams.core.state.codec import encode_learner
from streams.core.state.common import Stamped
from streams.core.state.progress import CourseProgress, LearnerState
from streams.settings import Settings
from streams.worker import transport
from streams.worker.tables import DEFLATED, PACK_MIN, StateTable, pack, unpack


def learner(user: int) -> bytes:
    """An onboarded learner's state: registers with their event ids, three courses."""
    event = f"{user:064x}"
    state = LearnerState(user, external_id=Stamped(1, event, f"ext-{user}"),
                         group_id=Stamped(1, event, 5), assigned={7001, 7002, 7003},
                         courses={7001: CourseProgress(lessons_started={1, 2})},
                         reminders={7001: (10**15, event)})
    return encode_learner(state)


def test_a_large_value_is_kept_deflated_and_answered_as_it_was() -> None:
    value = learner(42)
    assert len(value) >= PACK_MIN
    kept = pack(value)
    assert kept is not None and len(kept) < len(value) / 2 and kept[:1] == DEFLATED
    assert unpack(kept) == value
    for small in (b'{"externalUserId":"u","applied":1}', b"1", b""):
        assert pack(small) == small and unpack(small) == small
    assert pack(None) is None


def table() -> StateTable:
    app = transport.WorkerApp("tables", Settings(), frozenset(), broker="kafka://127.0.0.1:9",
                              store="memory://", autodiscover=False, web_enabled=False)
    faust_table = app.Table("progress", key_type=bytes, value_type=bytes, partitions=8)
    return StateTable(faust_table, "p.progress-changelog")


def test_put_keeps_less_than_it_answers() -> None:
    states = table()
    value = learner(7)
    states.put("7", 3, value)
    assert states.table.data.data[b"7"] == value  # fresh: kept as written, for now
    states.fresh_age_s = -1.0
    states.settle()
    kept = states.table.data.data[b"7"]
    assert len(kept) < len(value) / 2
    states.put("9", 1, b'{"small":1}')
    assert states.get("7") == value
    assert [chunk for chunk in states.chunks(1)] == [[("7", 3, value)], [("9", 1, b'{"small":1}')]]
    assert states.get("8") is None


def change(key: bytes, value: bytes | None, partition: int) -> SimpleNamespace:
    """A changelog record as Faust's recovery hands it to the table."""
    return SimpleNamespace(key=key, value=value,
                           message=SimpleNamespace(value=value, partition=partition))


def test_recovery_stores_packed_values_and_drops_tombstones() -> None:
    states = table()
    first, second = learner(1), learner(2)
    states.table.apply_changelog_batch([change(b"1", first, 0), change(b"2", second, 5)])
    store = states.table.data
    assert len(store.data[b"1"]) < len(first) / 2
    assert store._key_partition == {b"1": 0, b"2": 5}
    assert (states.get("1"), states.get("2")) == (first, second)
    states.table.apply_changelog_batch([change(b"1", None, 0)])
    assert states.get("1") is None and states.get("2") == second


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fresh_table(fresh_max: int, age: float, clock: Clock) -> StateTable:
    app = transport.WorkerApp("fresh", Settings(), frozenset(), broker="kafka://127.0.0.1:9",
                              store="memory://", autodiscover=False, web_enabled=False)
    faust_table = app.Table("progress", key_type=bytes, value_type=bytes, partitions=8)
    return StateTable(faust_table, "f.progress-changelog", fresh_max=fresh_max,
                      fresh_age_s=age, clock=clock)


def deflated(states: StateTable, key: str) -> bool:
    return bytes(states.table.data.data[key.encode()][:1]) == DEFLATED


def test_values_written_lately_stay_undeflated_until_the_window_passes_them() -> None:
    clock = Clock()
    states = fresh_table(3, 60.0, clock)
    values = {str(user): learner(user) for user in range(1, 6)}
    for key in ("1", "2", "3"):
        states.put(key, 0, values[key])
    assert not any(deflated(states, key) for key in ("1", "2", "3"))
    states.put("1", 0, values["1"])  # written again: the newest, "2" is now the oldest
    states.put("4", 0, values["4"])
    assert deflated(states, "2") and not deflated(states, "1")
    assert not deflated(states, "3") and not deflated(states, "4")
    clock.now += 61
    assert states.settle() == 0
    assert all(deflated(states, key) for key in ("1", "2", "3", "4"))
    assert {key: states.get(key) for key in ("1", "2", "3", "4")} == {
        key: values[key] for key in ("1", "2", "3", "4")}
    states.put("5", 0, values["5"])
    assert not deflated(states, "5") and states.settle() == 1
    assert [row for chunk in states.chunks(10) for row in chunk][-1] == ("5", 0, values["5"])


def test_the_window_passes_over_keys_dropped_or_recovered_meanwhile() -> None:
    clock = Clock()
    states = fresh_table(2, 60.0, clock)
    first, second = learner(1), learner(2)
    states.put("1", 0, first)
    states.put("2", 1, second)
    store = states.table.data
    del store.data[b"1"]  # the store dropped the key (its partition moved away)
    states.table.apply_changelog_batch([change(b"2", second, 1)])  # recovered: deflated
    recovered = store.data[b"2"]
    clock.now += 61
    assert states.settle() == 0
    assert b"1" not in store.data
    assert store.data[b"2"] is recovered and states.get("2") == second


def test_small_values_never_enter_the_window() -> None:
    clock = Clock()
    states = fresh_table(1, 60.0, clock)
    states.put("1", 0, b'{"small":1}')
    assert states.settle() == 0
    assert states.get("1") == b'{"small":1}'
