"""Faust's aiokafka transport with the worker's own consumer and producer settings, and the
consumer's guard over the input topics.

Faust builds its aiokafka clients itself and exposes only some of their settings; the
worker needs two more, so its app uses this transport (a subclass of Faust's, each
override a few lines that adjust what Faust built):

- ``fetch_max_wait_ms``: Faust fixes it at 1,500 ms. On Apache Kafka that costs nothing
  (a waiting fetch is answered as soon as records arrive), but the embedded broker answers
  a fetch only when the wait runs out (measured: 615 ms median from produce to consume at
  1,500 ms, 2.6 ms at 5 ms), so every event waited up to 1.5 s. ``KAFKA_FETCH_MAX_WAIT_MS``
  sets it (500 ms, Kafka's default; ``dev`` and the tests use 10 ms on the embedded broker).
- idempotence for Faust's own producer, which Faust turns on only with exactly-once
  processing: it follows ``KAFKA_ENABLE_IDEMPOTENCE`` here, except on the embedded broker,
  where aiokafka's idempotent producer cannot start (the worker writes its own records
  through librdkafka, idempotent there too; Faust's producer sends only what Faust sends).

The guard. Faust's consumer loses input records in several places: its delivery loop
drops a record below the last offset it read (after a seek, the records fetched again),
ends a fetch round early on a rebalance or for a paused partition, and each time it
resumes flow (at the end of every recovery among others) it empties the agents' input
buffers of the records handed to them and not taken yet. It commits the first run of
acknowledged offsets whatever was lost before it. On the input topics
(``WorkerApp.every_record_topics``: the event, link and policy topics and their
re-keying topics) the consumer follows these rules instead:

1. Every record fetched is handed to the agents: no read offset to drop records below
   (``_DeliverEverything``); a record that comes twice is absorbed by the state, which
   keeps the ids of the events it applied.
2. Per input partition, a ledger (``PartitionLedger``) follows each record the fetcher
   returned: handed to an agent's buffer, taken from it by the agent's stream,
   acknowledged once its batch is written. An offset the fetcher never returned is not in
   the ledger: the holes of a compacted topic, a transaction's commit or abort marker and
   the records of an aborted transaction (read_committed) are never taken for lost
   records; the ledger judges by what was fetched, not by offset arithmetic.
3. A record fetched and not delivered is one the delivery loop did not hand out by the end
   of its fetch round, one handed to a buffer that Faust emptied, or one handed out before
   a record its stream took (a stream skips records whose generation or flow is no longer
   current, and acknowledges them unprocessed). Each is logged ("input records not
   delivered"), counted in ``edume_worker_input_redelivered_total``, and its partition,
   only that one, is sought back to the lowest such offset. Not to the committed offset:
   aiokafka's seek to the committed offsets leaves a partition without one where it is,
   so records lost before a partition's first commit were never read again (the stall a
   restarted worker showed on the embedded broker).
4. A commit never passes a record fetched and not yet acknowledged after its stream took
   it, nor a lost record until it is fetched again after the seek; with nothing pending, it
   goes up to the fetcher's position, past trailing transaction markers.
5. The lag gauge counts from that commit point: records lost and being read again count
   as not processed (``Worker.lag``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Any

import faust
from faust.sensors import Sensor
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from mode.utils.objects import cached_property
from mode.utils.queues import FlowControlEvent

from streams.settings import Settings

log = logging.getLogger(__name__)

SEEK_RETRY_S = 1.0
"""A seek back that failed while its partition is still assigned is tried again after this."""


class _FlowControl(FlowControlEvent):
    """Faust's flow control, telling listeners when resuming flow emptied the agents' input
    buffers (``FlowControlEvent.resume`` clears every queue made with ``clear_on_resume``,
    which the agents' channels are)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.on_resume: list[Callable[[], None]] = []

    def resume(self) -> None:
        super().resume()
        for listener in self.on_resume:
            listener()


class WorkerApp(faust.App):
    """A Faust app that carries the worker's settings to its transport."""

    settings: Settings
    every_record_topics: frozenset[str]
    """Topics whose every record must reach an agent (the guard: see the module)."""
    on_input_redelivered: Callable[[int], object]
    """Called with the number of input records found lost and read again."""

    def __init__(self, id: str, settings: Settings, every_record_topics: frozenset[str],
                 **options: Any) -> None:
        self.settings = settings
        self.every_record_topics = every_record_topics
        self.on_input_redelivered = lambda count: None
        super().__init__(id, **options)

    @cached_property
    def flow_control(self) -> FlowControlEvent:
        return _FlowControl(loop=self.loop)

    def _new_transport(self) -> Any:
        return Transport(self.conf.broker_consumer, self)

    def _new_producer_transport(self) -> Any:
        return Transport(self.conf.broker_producer, self)


def _every_record_topics(app: Any) -> frozenset[str]:
    topics: frozenset[str] = app.every_record_topics
    return topics


def _settings(app: Any) -> Settings:
    settings: Settings = app.settings
    return settings


def _tp(tp: Any) -> TP:
    """Faust's and aiokafka's partition tuples as one key."""
    return TP(tp.topic, tp.partition)


class _Fetch(dict[Any, list[Any]]):
    """One fetch's records by partition, and ``positions``: for each partition of the input
    topics, the fetcher's position right after it (the next offset it fetches; past the
    transaction markers and compacted holes at the end of what it returned)."""

    def __init__(self, records: Mapping[Any, list[Any]], positions: dict[TP, int]) -> None:
        super().__init__(records)
        self.positions = positions


def _positions(consumer: Any, topics: frozenset[str]) -> dict[TP, int]:
    """Where aiokafka's fetcher stands on each assigned partition of ``topics``: read in the
    consumer's thread, right after a fetch returned (aiokafka has no public synchronous
    position; Faust reads its fetcher's internals the same way)."""
    subscription = consumer._subscription.subscription
    assignment = None if subscription is None else subscription.assignment
    if assignment is None:
        return {}
    out: dict[TP, int] = {}
    for tp in assignment.tps:
        if tp.topic in topics:
            state = assignment.state_value(tp)
            if state.has_valid_position:
                out[_tp(tp)] = state.position
    return out


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Read when the consumer starts (its fetcher is made then), so setting it now holds.
        consumer._fetch_max_wait_ms = _settings(self.app).fetch_max_wait_ms
        # Records of aborted transactions (an app may write link requests or policies
        # transactionally) never reach an agent; Faust asks for read_committed only when it
        # runs transactions itself.
        consumer._isolation_level = "read_committed"
        return consumer

    async def _fetch_records(self, consumer: Any, active_partitions: Any,
                             timeout: float | None = None,  # noqa: ASYNC109 (Faust's)
                             max_records: int | None = None) -> Any:
        records = await super()._fetch_records(consumer, active_partitions, timeout=timeout,
                                               max_records=max_records)
        # Nothing awaited since the fetcher moved its positions past these records.
        return _Fetch(records, _positions(consumer, _every_record_topics(self.app)))


class _DeliverEverything(defaultdict[Any, int | None]):
    """Faust's per-partition read offsets, as its delivery loop sees them: no offset at all
    for the topics where every record must reach the agents.

    Faust's delivery loop (faust/transport/consumer.py, ``_drain_messages``) compares each
    record with the last offset it read: it drops a record below it as already delivered,
    and records a jump past it as a gap in the log, which the next commit steps over. A
    seek moves that offset back to the committed one while the loop may still be handing
    out records it had fetched before the seek: the jump past them is taken for a gap, and
    the same records fetched again after the seek are dropped. Records then reach no agent
    and are committed all the same (measured here: 4 to 7 records on every partition,
    right after the committed offset, on a restarted worker). With no offset to compare
    with, the loop delivers whatever it fetched: after a seek some records come twice,
    which the tables absorb (they keep the event ids they applied), and none is skipped.
    The real holes of these topics (compaction, transaction markers) are the ledger's
    business (``PartitionLedger``). Faust keeps the offsets for its own bookkeeping."""

    def __init__(self, topics: frozenset[str]) -> None:
        super().__init__(lambda: None)
        self.topics = topics

    def __getitem__(self, tp: Any) -> int | None:
        if tp.topic in self.topics:
            return None
        return super().__getitem__(tp)


def _add(counts: dict[int, int], offset: int) -> None:
    counts[offset] = counts.get(offset, 0) + 1


def _remove(counts: dict[int, int], offset: int) -> bool:
    """One ``offset`` less in ``counts``; False when there was none."""
    count = counts.get(offset, 0)
    if not count:
        return False
    if count == 1:
        del counts[offset]
    else:
        counts[offset] = count - 1
    return True


class PartitionLedger:
    """What became of the records the fetcher returned for one input partition, since it was
    assigned (the module's rules 2 to 4). Plain bookkeeping, no I/O: the consumer feeds it
    and performs the seeks it asks for.

    A record goes ``fetched`` (returned by a fetch) -> ``handed`` (given to an agent's input
    buffer, in fetch order) -> ``taken`` (its stream took it from the buffer; buffers are
    first in, first out) -> ``done`` (acknowledged after its batch). A record that leaves
    that path is lost: the methods that notice it return the lost offsets, and the ledger
    then wants a seek back (``start_seek``)."""

    def __init__(self) -> None:
        self._fetched: deque[int] = deque()
        """Fetched, not handed out yet: the current fetch round's rest, in fetch order."""
        self._handed: deque[int] = deque()
        """Handed to an agent's buffer, not taken yet, in the order handed."""
        self._handed_count: dict[int, int] = {}
        self._pending: dict[int, int] = {}
        """Offsets fetched and not taken (both queues), or taken and not done: how often."""
        self._working: dict[int, int] = {}
        """Taken and not done."""
        self.floor: int | None = None
        """The lowest offset lost and not fetched again since."""
        self._floor_epoch: int | None = None
        """Fetches from this epoch on are after a seek back to the floor or below it; None
        while that seek is still to be made."""
        self._epoch = 0
        """Seeks back completed."""
        self.position: int | None = None
        """The fetcher's position after the last fetch."""
        self.seeking = False
        self._seek_wanted = False

    def fetched(self, offsets: Sequence[int], position: int | None) -> None:
        """A fetch returned these records (in order), and left the fetcher at ``position``."""
        for offset in offsets:
            self._fetched.append(offset)
            _add(self._pending, offset)
        if position is not None:
            self.position = position
        floor = self.floor
        if (floor is not None and self._floor_epoch is not None
                and self._epoch >= self._floor_epoch
                and ((offsets and max(offsets) >= floor)
                     or (position is not None and position > floor))):
            # Read again past the floor since a seek back to it: every record from the floor
            # on is in the ledger again.
            self.floor = self._floor_epoch = None

    def handed(self, offset: int) -> None:
        """Faust's delivery loop handed the record at ``offset`` to an agent's buffer."""
        if self._fetched and self._fetched[0] == offset:
            self._fetched.popleft()
            self._handed.append(offset)
            _add(self._handed_count, offset)

    def taken(self, offset: int) -> list[int]:
        """A stream took the record at ``offset`` from its buffer; the offsets handed out
        before it and never taken, lost. A record the ledger does not know as handed out (a
        copy from before a seek back, already counted lost) is taken as it comes."""
        lost: list[int] = []
        if offset in self._handed_count:
            while True:
                head = self._handed.popleft()
                _remove(self._handed_count, head)
                if head == offset:
                    break
                _remove(self._pending, head)
                lost.append(head)
        else:
            _add(self._pending, offset)
        _add(self._working, offset)
        self._lose(lost)
        return lost

    def done(self, offset: int) -> None:
        """The record at ``offset``, taken, was acknowledged after its batch."""
        if _remove(self._working, offset):
            _remove(self._pending, offset)

    def round_ended(self) -> list[int]:
        """Faust's delivery loop ended a fetch round: what it did not hand out, lost."""
        lost = list(self._fetched)
        self._fetched.clear()
        for offset in lost:
            _remove(self._pending, offset)
        self._lose(lost)
        return lost

    def buffers_emptied(self) -> list[int]:
        """Faust emptied the agents' buffers: what was handed out and not taken, lost."""
        lost = list(self._handed)
        self._handed.clear()
        self._handed_count.clear()
        for offset in lost:
            _remove(self._pending, offset)
        self._lose(lost)
        return lost

    def _lose(self, lost: list[int]) -> None:
        if lost:
            low = min(lost)
            self.floor = low if self.floor is None else min(self.floor, low)
            self._floor_epoch = None
            self._seek_wanted = True

    def start_seek(self) -> int | None:
        """The offset to seek back to, if a seek is wanted and none is under way (it then is,
        until ``seek_done`` or ``seek_failed``)."""
        if self.seeking or not self._seek_wanted or self.floor is None:
            return None
        self.seeking, self._seek_wanted = True, False
        return self.floor

    def seek_done(self, target: int) -> None:
        """The fetcher now reads from ``target``. Records lost while the seek was under way
        may have been fetched after it: they want another seek (``start_seek``)."""
        self._epoch += 1
        self.seeking = False
        if self.floor is not None and target <= self.floor and not self._seek_wanted:
            self._floor_epoch = self._epoch

    def seek_failed(self) -> None:
        self.seeking = False
        self._seek_wanted = True

    def commit_offset(self) -> int | None:
        """The offset a commit may go up to: the lowest record pending (fetched and not
        done) or lost and not fetched again, else the fetcher's position."""
        low = [min(self._pending)] if self._pending else []
        if self.floor is not None:
            low.append(self.floor)
        return min(low) if low else self.position


class InputGuard:
    """The ledgers of a consumer's assigned input partitions (``topics``)."""

    def __init__(self, topics: frozenset[str]) -> None:
        self.topics = topics
        self._ledgers: dict[TP, PartitionLedger] = {}

    def ledger(self, tp: Any) -> PartitionLedger | None:
        """The partition's ledger, made on first use; None for other topics."""
        if tp.topic not in self.topics:
            return None
        key = _tp(tp)
        ledger = self._ledgers.get(key)
        if ledger is None:
            ledger = self._ledgers[key] = PartitionLedger()
        return ledger

    def current(self, tp: Any) -> PartitionLedger | None:
        """The partition's ledger if it has one (no new one made). ``tp``: Faust's or
        aiokafka's partition tuple, equal as tuples."""
        return self._ledgers.get(tp)

    def items(self) -> list[tuple[TP, PartitionLedger]]:
        return list(self._ledgers.items())

    def forget(self, tps: Iterable[Any]) -> None:
        """Partitions revoked or assigned again: fetching starts over from the committed
        offsets, and with it their ledgers."""
        for tp in tps:
            self._ledgers.pop(_tp(tp), None)


class _Taken(Sensor):
    """Tells the consumer which records the streams take from the agents' buffers (Faust
    calls ``on_message_in`` as a stream takes a record it will process)."""

    def __init__(self, consumer: _Consumer) -> None:
        super().__init__()
        self.consumer = consumer

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        self.consumer.taken(tp, offset)


class _Consumer(faust_aiokafka.Consumer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._every_record = _every_record_topics(self.app)
        self._read_offset = _DeliverEverything(self._every_record)
        self.guard = InputGuard(self._every_record)
        self._seekers: dict[TP, asyncio.Future[None]] = {}
        self.app.sensors.add(_Taken(self))
        flow = self.app.flow_control
        if isinstance(flow, _FlowControl):
            flow.on_resume.append(self._buffers_emptied)

    def _new_consumer_thread(self) -> Any:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _getmany(self, active_partitions: Any,
                       timeout: float) -> Any:  # noqa: ASYNC109 (Faust's signature)
        records = await super()._getmany(active_partitions, timeout)
        positions: dict[TP, int] = getattr(records, "positions", {})
        guard = self.guard
        tps = {_tp(tp) for tp in records} | set(positions)
        for tp in tps:
            ledger = guard.ledger(tp)
            if ledger is not None:
                ledger.fetched([r.offset for r in records.get(tp, ())], positions.get(tp))
        return records

    async def getmany(
        self, timeout: float  # noqa: ASYNC109 (Faust's signature)
    ) -> AsyncIterator[tuple[TP, Any]]:
        guard = self.guard
        async for tp, message in super().getmany(timeout):
            ledger = guard.current(tp)
            if ledger is not None:
                ledger.handed(message.offset)
            yield tp, message
        # The round is over (a round the loop abandons never gets here).
        if not self.should_stop:
            for key, ledger in guard.items():
                self._lost(key, ledger, ledger.round_ended(), "not handed out")

    def taken(self, tp: Any, offset: int) -> None:
        ledger = self.guard.current(tp)
        if ledger is not None:
            self._lost(tp, ledger, ledger.taken(offset), "skipped")

    def ack(self, message: Any) -> bool:
        first = not message.acked
        acked: bool = super().ack(message)
        if first and message.tracked:  # taken by a stream (a skipped record is not)
            ledger = self.guard.current(message.tp)
            if ledger is not None:
                ledger.done(message.offset)
        return acked

    def _buffers_emptied(self) -> None:
        for tp, ledger in self.guard.items():
            self._lost(tp, ledger, ledger.buffers_emptied(), "emptied from an agent's buffer")

    def _lost(self, tp: Any, ledger: PartitionLedger, lost: list[int], how: str) -> None:
        if not lost:
            return
        log.warning("input records not delivered on %s/%d: %d records (%s), offsets %d to "
                    "%d; reading them again from offset %s", tp.topic, tp.partition,
                    len(lost), how, min(lost), max(lost), ledger.floor)
        app: Any = self.app  # a WorkerApp
        app.on_input_redelivered(len(lost))
        key = _tp(tp)
        seeker = self._seekers.get(key)
        if seeker is None or seeker.done():
            self._seekers[key] = self.add_future(self._seek_back(key, ledger))

    async def _seek_back(self, tp: TP, ledger: PartitionLedger) -> None:
        """Seek this partition alone back to where its ledger wants, until it wants no more
        or the partition is no longer this ledger's."""
        while self.guard.current(tp) is ledger and not self.should_stop:
            target = ledger.start_seek()
            if target is None:
                return
            try:
                await self.seek_wait({tp: target})
            except Exception as exc:  # revoked meanwhile, or the consumer is stopping
                ledger.seek_failed()
                log.info("seek of %s/%d back to %d failed: %r", tp.topic, tp.partition,
                         target, exc)
                await asyncio.sleep(SEEK_RETRY_S)
                continue
            ledger.seek_done(target)

    def input_position(self, tp: Any) -> int | None:
        """The offset below which every record of an input partition was processed, as far
        as this consumer knows (the guard's commit point), else its committed offset."""
        ledger = self.guard.current(tp)
        offset = None if ledger is None else ledger.commit_offset()
        if offset is None:
            committed: int | None = self._committed_offset.get(tp)
            return committed
        return offset

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        self.guard.forget(revoked)
        await super().on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        self.guard.forget(assigned)
        await super().on_partitions_assigned(assigned, generation_id)

    def _new_offset(self, tp: Any) -> int | None:
        """The offset to commit: for the input topics the guard's commit point (rule 4);
        Faust's list of acknowledged offsets is then only trimmed."""
        if tp.topic not in self._every_record:
            offset: int | None = super()._new_offset(tp)
            return offset
        ledger = self.guard.current(tp)
        commit = None if ledger is None else ledger.commit_offset()
        acked = self._acked[tp]
        if commit is not None and acked:
            acked[:] = [o for o in acked if o >= commit]
            self._acked_index[tp].intersection_update(acked)
        return commit


class _Producer(faust_aiokafka.Producer):
    def _settings_extra(self) -> Mapping[str, Any]:
        extra = dict(super()._settings_extra())
        settings = _settings(self.app)
        if settings.kafka_enable_idempotence and not settings.kafka_embedded_broker:
            extra.update(acks="all", enable_idempotence=True)
        return extra


class Transport(faust_aiokafka.Transport):
    """Faust's aiokafka transport with the overrides above."""

    Consumer = _Consumer
    Producer = _Producer
