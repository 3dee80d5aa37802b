"""Faust tables whose changelog the worker writes itself.

The tables are Faust's: Faust assigns their partitions with the input partitions, reads
their changelogs back into memory after a restart or a rebalance (recovery), and keeps
standby copies. What the worker changes is how a new value is written: a batch's values
go to the changelog through the worker's librdkafka producer, at the partition of the
events that changed them (the same number, on topics with the same partition count), and
are awaited before the batch's input is acknowledged. Faust's own ``table[key] = value``
would pick the partition of whichever event is current (wrong for a batch spanning
partitions) and send through aiokafka on the event loop.

Values are kept encoded (the changelog's bytes): a learner costs its JSON, not a tree of
Python objects. A value of ``PACK_MIN`` bytes or more is kept deflated in memory (zlib,
with a preset dictionary of the states' field names; the changelog holds the JSON): a
learner's ~1,150 bytes of JSON, a third of it in event ids repeated across its
registers, take ~300 (the benchmark's onboarding states; 15 µs to deflate, 4 µs to
inflate, measured), 80-100 MB less for 100,000 learners. Values
recovered from the changelog are deflated as they are stored. A deflated value starts
with a NUL byte, which no JSON text does; anything else is answered as it is.

A value written by a batch is kept as it is for a while first (the fresh window): the
latest ``FRESH_MAX`` keys written, each for at most ``FRESH_AGE_S``, and deflated when it
leaves the window. A learner's events come in runs (a lesson started, then finished, the
next one...), so a value still fresh is read and written again without being inflated and
deflated each time, and the one deflate it then costs is shared by the run. The window
is a hint only: a key that Faust's store dropped (its partition moved away) or that
recovery wrote again (deflated already) is passed over when it leaves. It costs at most
``FRESH_MAX`` times the difference (~850 bytes a learner: 17 MB).
"""

from __future__ import annotations

import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from streams.core.records import OutRecord
from streams.core.state.codec import encode_learner
from streams.core.state.links import LinkState, encode_links
from streams.core.state.progress import CourseProgress, LearnerState

PACK_MIN = 256
"""Values shorter than this are kept as they are: deflating saves them little."""
PACK_LEVEL = 6
PACK_WINDOW_BITS = 12
"""A 4 KiB window: as small as a state's JSON mostly is. Deflate's set-up time grows with
the window, and for values this size it is most of the cost (15 µs a learner against 21
with the default 32 KiB, the same size out; measured)."""
DEFLATED = b"\x00"
"""The first byte of a deflated value."""
FRESH_MAX = 20_000
"""How many of the latest keys written keep their values undeflated."""
FRESH_AGE_S = 60.0
"""How long, at most, a written value stays undeflated."""

PACK_DICTIONARY = (encode_links(LinkState("")) + encode_learner(LearnerState(
    1, assigned={1}, courses={1: CourseProgress()}, reminders={1: (1, "")})))
"""What deflate may refer back to before a value's first byte: the field names and the
punctuation of empty states. Kept in memory only, so it may change with the codec."""


def pack(value: bytes | None) -> bytes | None:
    """A value as the table keeps it: deflated from ``PACK_MIN`` bytes on (None stays None:
    a tombstone)."""
    if value is None or len(value) < PACK_MIN:
        return None if value is None else bytes(memoryview(value))
    return deflate(value)


def deflate(value: bytes) -> bytes:
    """A value deflated, whatever its size."""
    compressor = zlib.compressobj(PACK_LEVEL, zlib.DEFLATED, PACK_WINDOW_BITS,
                                  zdict=PACK_DICTIONARY)
    return DEFLATED + compressor.compress(value) + compressor.flush()


def unpack(kept: bytes) -> bytes:
    """A value as the table answers it: the encoded state."""
    if kept[:1] != DEFLATED:
        return kept
    inflate = zlib.decompressobj(PACK_WINDOW_BITS, zdict=PACK_DICTIONARY)
    return inflate.decompress(memoryview(kept)[1:]) + inflate.flush()


class StateTable:
    """A Faust table (memory store) of encoded states. Keys are strings here (decimal ids,
    or external user ids), and their UTF-8 bytes (the Kafka key) in the store."""

    def __init__(self, table: Any, changelog_topic: str, *, fresh_max: int = FRESH_MAX,
                 fresh_age_s: float = FRESH_AGE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.table = table
        self.changelog_topic = changelog_topic
        self.fresh_max = fresh_max
        self.fresh_age_s = fresh_age_s
        self._clock = clock
        self._fresh: OrderedDict[bytes, float] = OrderedDict()
        """Keys written lately whose values may be kept undeflated, oldest first, with the
        time each was written. An OrderedDict: its first entry is found in constant time
        however many were taken from the front (a dict's first entry is found by a scan
        past the slots its removed entries left, 3.5 % of the worker's time, profiled)."""
        store = self._store()
        recover = store.apply_changelog_batch

        def apply_changelog_batch(batch: Iterable[Any], to_key: Callable[[Any], Any],
                                  to_value: Callable[[Any], Any]) -> None:
            """Recovery (and standby replicas) through Faust's store, values packed."""
            recover(batch, to_key, lambda value: pack(to_value(value)))

        store.apply_changelog_batch = apply_changelog_batch

    @property
    def name(self) -> str:
        return str(self.table.name)

    def _store(self) -> Any:
        return self.table.data  # faust.stores.memory.Store: .data (dict), ._key_partition

    def get(self, key: str) -> bytes | None:
        kept: bytes | None = self._store().data.get(key.encode())
        return None if kept is None else unpack(kept)

    def changelog(self, key: str, partition: int, value: bytes) -> OutRecord:
        return OutRecord(self.changelog_topic, partition, key.encode(), value, [])

    def tombstone(self, key: str, partition: int) -> OutRecord:
        """The changelog record that removes ``key``."""
        return OutRecord(self.changelog_topic, partition, key.encode(), None, [])

    def delete(self, key: str) -> None:
        """Forget ``key`` (its tombstone acknowledged by the broker)."""
        store = self._store()
        raw_key = key.encode()
        store.data.pop(raw_key, None)
        store._key_partition.pop(raw_key, None)
        self._fresh.pop(raw_key, None)

    def put(self, key: str, partition: int, value: bytes) -> None:
        """Keep a value whose changelog record the broker has acknowledged."""
        store = self._store()
        raw_key = key.encode()
        # orjson's bytes keep the buffer they were written in (4-8 KB, measured, for a
        # learner's 900 bytes): the table keeps an exact copy (packed later) or, for a
        # small value, the copy for good; or 100,000 learners would hold 500 MB.
        store.data[raw_key] = bytes(memoryview(value))
        # The memory store forgets a partition's keys when the partition moves away; it
        # learns which keys are whose from this map (filled by recovery, and here).
        store._key_partition[raw_key] = partition
        now = self._clock()
        fresh = self._fresh
        if len(value) >= PACK_MIN:
            fresh[raw_key] = now
            fresh.move_to_end(raw_key)
        self._settle(store.data, now)

    def _settle(self, data: dict[bytes, bytes], now: float) -> None:
        """Deflate the values that leave the fresh window: past its size or its age."""
        fresh = self._fresh
        oldest = now - self.fresh_age_s
        while fresh:
            raw_key, written = next(iter(fresh.items()))
            if len(fresh) <= self.fresh_max and written > oldest:
                return
            fresh.popitem(last=False)
            kept = data.get(raw_key)
            if kept is not None and kept[:1] != DEFLATED:
                data[raw_key] = deflate(kept)

    def settle(self) -> int:
        """Deflate the values that have stayed fresh past ``fresh_age_s`` (the worker calls
        this now and then, so that an idle worker holds them deflated too); returns how many
        values are still fresh."""
        self._settle(self._store().data, self._clock())
        return len(self._fresh)

    def chunks(self, size: int) -> Iterator[list[tuple[str, int, bytes]]]:
        """Every key held (assigned and standby partitions) with its partition and value,
        ``size`` at a time: the keys held when the first chunk is asked for, each value as
        it is when its chunk is."""
        store = self._store()
        held = list(store.data)
        for start in range(0, len(held), size):
            chunk = []
            for raw_key in held[start:start + size]:
                kept = store.data.get(raw_key)
                partition = store._key_partition.get(raw_key)
                if kept is not None and partition is not None:
                    chunk.append((raw_key.decode("utf-8", "replace"), partition, unpack(kept)))
            yield chunk

    def __len__(self) -> int:
        return len(self._store().data)
