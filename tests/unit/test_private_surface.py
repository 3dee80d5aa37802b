"""The private names of Faust, mode, aiokafka and confluent-kafka the project relies on: each
still exists, has the signature the project's code assumes, and (where cheap) behaves as
relied on, on objects built the way the worker builds them (no broker needed).

requirements.lock pins these libraries; this test is what says an upgrade keeps them
working. ``test_every_private_name_used_is_checked_here`` scans ``streams/`` (attributes
of library objects whose name starts with one underscore, ``getattr`` of such a name, and
the private methods and attributes of the project's subclasses of library classes that are
the library's own) so that a new use cannot slip in without a check here.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import inspect
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.client import AIOKafkaClient
from aiokafka.consumer.subscription_state import SubscriptionState
from aiokafka.structs import TopicPartition
from confluent_kafka import KafkaError
from faust.stores.memory import Store as MemoryStore
from faust.tables.recovery import Recovery
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

import streams
from streams.settings import Settings
from streams.worker import transport
from streams.worker.tables import StateTable

PACKAGE = Path(streams.__file__).parent
LIBRARIES = ("faust", "mode", "aiokafka", "confluent_kafka")
NAMEDTUPLE = frozenset({"_replace", "_asdict", "_make", "_fields", "_field_defaults"})
"""The standard library's public API of named tuples, not private names."""
INPUT = "p.edume.course.events"

CHECKS: dict[str, Callable[..., Any]] = {}
"""Private name -> the test that checks it."""


def relies_on(*names: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def register(test: Callable[..., Any]) -> Callable[..., Any]:
        for name in names:
            assert name not in CHECKS, name
            CHECKS[name] = test
        return test

    return register


def params(function: Any) -> list[str]:
    return list(inspect.signature(function).parameters)


def source(function: Any) -> str:
    return inspect.getsource(function)


def new_app(**settings: Any) -> transport.WorkerApp:
    """A worker's Faust app as ``Worker`` makes it, without a broker."""
    return transport.WorkerApp(
        "private-surface", Settings(**settings), frozenset({INPUT}),
        broker="kafka://127.0.0.1:9", store="memory://", autodiscover=False,
        web_enabled=False,
    )


# ------------------------------------------------------------------------------ the app


@relies_on("_new_transport", "_new_producer_transport")
def test_the_app_builds_its_transports_with_the_methods_the_worker_overrides() -> None:
    for name in ("_new_transport", "_new_producer_transport"):
        assert params(getattr(faust.App, name)) == ["self"], name
    assert "self._new_transport()" in source(faust.App.transport.fget)
    assert "self._new_producer_transport()" in source(faust.App.producer_transport.fget)
    app = new_app()
    assert type(app.transport) is transport.Transport
    assert type(app.producer_transport) is transport.Transport
    assert type(app.consumer) is transport._Consumer
    assert type(app.producer) is transport._Producer


# ---------------------------------------------------------------- the consumer thread


@relies_on("_new_consumer_thread", "_create_worker_consumer", "_fetch_max_wait_ms",
           "_isolation_level")
async def test_the_consumer_thread_builds_the_aiokafka_consumer_the_worker_adjusts() -> None:
    assert params(faust_aiokafka.Consumer._new_consumer_thread) == ["self"]
    assert "self._thread = self._new_consumer_thread()" in source(
        faust_consumer.ThreadDelegateConsumer.__init__)
    create = faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer
    assert params(create) == ["self", "transport"]
    assert "self._create_worker_consumer(transport)" in source(
        faust_aiokafka.AIOKafkaConsumerThread._create_consumer)
    # aiokafka hands both attributes to its fetcher when the consumer starts.
    start = source(AIOKafkaConsumer.start)
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in start
    assert "isolation_level=self._isolation_level" in start
    app = new_app(kafka_fetch_max_wait_ms=37)
    thread = app.consumer._thread
    assert type(thread) is transport._ConsumerThread
    consumer = thread._create_consumer(loop=asyncio.get_running_loop())
    try:
        assert isinstance(consumer, AIOKafkaConsumer)
        assert consumer._fetch_max_wait_ms == 37
        assert consumer._isolation_level == "read_committed"
    finally:
        await consumer.stop()


@relies_on("_fetch_records", "_subscription")
async def test_a_fetch_is_taken_with_the_fetchers_positions() -> None:
    fetch = faust_aiokafka.AIOKafkaConsumerThread._fetch_records
    assert params(fetch) == ["self", "consumer", "active_partitions", "timeout",
                             "max_records"]
    assert inspect.iscoroutinefunction(fetch)
    assert "self._fetch_records," in source(faust_aiokafka.AIOKafkaConsumerThread.getmany)
    # The positions are read from aiokafka's subscription state, as the fetcher keeps it.
    consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9")
    try:
        subscription = consumer._subscription
        assert isinstance(subscription, SubscriptionState)
        assert transport._positions(consumer, frozenset({INPUT})) == {}  # nothing assigned
        tp = TopicPartition(INPUT, 3)
        subscription.assign_from_user([tp, TopicPartition("other", 0)])
        assert transport._positions(consumer, frozenset({INPUT})) == {}  # no position yet
        subscription.seek(tp, 5)
        subscription.seek(TopicPartition("other", 0), 9)
        assert transport._positions(consumer, frozenset({INPUT})) == {TP(INPUT, 3): 5}
    finally:
        await consumer.stop()


# ------------------------------------------------------------------- Faust's consumer


@relies_on("_read_offset")
def test_the_delivery_loop_reads_the_read_offsets_by_item() -> None:
    # Faust's delivery loop binds the mapping's __getitem__ once and drops a record below
    # the offset it answers: the worker's mapping answers None for the input topics.
    drain = source(faust_consumer.Consumer._drain_messages)
    assert "get_read_offset = self._read_offset.__getitem__" in drain
    assert "if r_offset is None or offset >= r_offset:" in drain
    assert "self._read_offset = defaultdict(lambda: None)" in source(
        faust_consumer.Consumer.__init__)
    consumer = new_app().consumer
    offsets = consumer._read_offset
    assert isinstance(offsets, transport._DeliverEverything)
    offsets[TP(INPUT, 0)] = 7
    offsets[TP("other", 0)] = 7
    get = offsets.__getitem__
    assert (get(TP(INPUT, 0)), get(TP("other", 0)), get(TP("other", 1))) == (None, 7, None)


@relies_on("_getmany")
async def test_the_fetch_round_goes_through_getmany() -> None:
    getmany = faust_consumer.ThreadDelegateConsumer._getmany
    assert params(getmany) == ["self", "active_partitions", "timeout"]
    assert inspect.iscoroutinefunction(getmany)
    assert "await self._getmany(" in source(faust_consumer.Consumer._wait_next_records)


@relies_on("_new_offset", "_acked", "_acked_index", "_committed_offset")
def test_commits_ask_new_offset_of_the_acknowledged_offsets() -> None:
    assert params(faust_consumer.Consumer._new_offset) == ["self", "tp"]
    assert "offset = self._new_offset(tp)" in source(
        faust_consumer.Consumer._filter_committable_offsets)
    assert "self._committed_offset.update(" in source(faust_consumer.Consumer._commit_offsets)
    consumer = new_app().consumer
    other, tp = TP("other", 0), TP(INPUT, 0)
    assert consumer._committed_offset[other] is None  # a defaultdict of None
    consumer._acked[other].extend([0, 1, 2])
    consumer._acked_index[other].update([0, 1, 2])
    assert consumer._new_offset(other) == 3  # Faust's own rule, for other topics
    # An input partition with no ledger (not fetched yet): nothing to commit.
    consumer._acked[tp].extend([0, 1])
    consumer._acked_index[tp].update([0, 1])
    assert consumer._new_offset(tp) is None
    ledger = consumer.guard.ledger(tp)
    assert ledger is not None
    ledger.fetched([0, 1, 2], 3)
    for offset in (0, 1, 2):
        ledger.handed(offset)
    for offset in (0, 1):
        ledger.taken(offset)
        ledger.done(offset)
    assert consumer._new_offset(tp) == 2  # the record at 2 is not done
    assert consumer._acked_index[tp] == set()


# ---------------------------------------------------------------- Faust's producer


@relies_on("_settings_extra")
def test_the_producer_takes_its_extra_settings_last() -> None:
    assert params(faust_aiokafka.Producer._settings_extra) == ["self"]
    new = source(faust_aiokafka.Producer._new_producer)
    assert new.index("**self._settings_auth()") < new.index("**self._settings_extra()")
    assert new_app().producer._settings_extra() == {"acks": "all", "enable_idempotence": True}
    embedded = new_app(kafka_embedded_broker=True).producer._settings_extra()
    assert embedded == {}


# --------------------------------------------------------------- tables and recovery


@relies_on("_key_partition")
async def test_the_memory_store_drops_the_keys_of_partitions_it_lost_by_key_partition() -> None:
    assert "self._key_partition" in source(MemoryStore.__post_init__)
    app = new_app()
    table = app.Table("t", key_type=bytes, value_type=bytes, partitions=4)
    store = table.data
    assert isinstance(store, MemoryStore)
    state = StateTable(table, "p.t-changelog")
    state.put("kept", 1, b"1")
    state.put("lost", 2, b"2")
    assert store._key_partition == {b"kept": 1, b"lost": 2}
    await store.on_recovery_completed({TP("p.t-changelog", 1)}, set())
    assert (state.get("kept"), state.get("lost")) == (b"1", None)


@relies_on("_recovery_started_at", "_recovery_ended_at")
def test_recovery_stamps_when_it_starts_and_ends() -> None:
    assert (Recovery._recovery_started_at, Recovery._recovery_ended_at) == (None, None)
    assert "self._recovery_started_at = monotonic()" in source(
        Recovery._set_recovery_started)
    assert "self._recovery_ended_at = monotonic()" in source(Recovery._set_recovery_ended)
    from streams.worker.app import Worker

    app = new_app()
    recovery: Any = app.tables.recovery
    assert isinstance(recovery, Recovery)
    worker: Any = SimpleNamespace(app=app)
    assert Worker.recovery_seconds(worker) == 0.0
    recovery._recovery_started_at, recovery._recovery_ended_at = 10.0, 12.5
    assert Worker.recovery_seconds(worker) == 2.5


# --------------------------------------------------------------------------- aiokafka


@relies_on("_client")
async def test_a_consumers_client_tracks_the_topics_it_is_given() -> None:
    assert params(AIOKafkaClient.set_topics) == ["self", "topics"]
    consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9")
    try:
        client = consumer._client
        assert isinstance(client, AIOKafkaClient)
        update = client.set_topics(["a", "b"])
        assert isinstance(update, asyncio.Future)  # awaited by partitions_of
        assert client._topics == {"a", "b"}
        update.cancel()
    finally:
        await consumer.stop()


# ---------------------------------------------------------------------- confluent-kafka


@relies_on("_FATAL", "_ALL_BROKERS_DOWN", "_AUTHENTICATION", "_UNKNOWN_PARTITION",
           "_INVALID_ARG")
def test_librdkafkas_local_error_codes() -> None:
    codes = {name: getattr(KafkaError, name) for name in (
        "_FATAL", "_ALL_BROKERS_DOWN", "_AUTHENTICATION", "_UNKNOWN_PARTITION", "_INVALID_ARG")}
    assert all(isinstance(code, int) and code < 0 for code in codes.values()), codes
    assert len(set(codes.values())) == len(codes)
    assert KafkaError(KafkaError._FATAL).code() == KafkaError._FATAL


# ------------------------------------------------------------------ the list is complete


class _Use(ast.NodeVisitor):
    """Private names used in one module of ``streams``, sorted into what the module defines
    itself and what may be a library's."""

    def __init__(self, module: Any) -> None:
        self.module = module
        self.library_names: set[str] = set()
        """Named through ``super()``, or a library attribute in a library subclass."""
        self.foreign: set[str] = set()
        """``x._name`` (x not ``self``/``cls``) and ``getattr(x, "_name")``."""
        self.defined: set[str] = set()
        """Defined outside library subclasses (methods, ``self._name = ...``)."""
        self._library_bases: list[list[type]] = []

    def _bases(self, node: ast.ClassDef) -> list[type]:
        """The library classes among the class's ancestors."""
        found: list[type] = []
        for base in node.bases:
            value: Any = self.module
            for part in ast.unparse(base).split("."):
                value = getattr(value, part, None)
            if isinstance(value, type):
                found += [c for c in value.__mro__
                          if c.__module__.split(".")[0] in LIBRARIES]
        return found

    def visit_Module(self, node: ast.Module) -> None:
        self.defined |= _assigned(node.body)
        self.generic_visit(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._library_bases.append(self._bases(node))
        for name in _assigned(node.body):  # class attributes
            self._note_own(name)
        self.generic_visit(node)
        self._library_bases.pop()

    def _in_library_subclass(self) -> list[type]:
        return self._library_bases[-1] if self._library_bases else []

    def _library_has(self, name: str) -> bool:
        for cls in self._in_library_subclass():
            if name in vars(cls) or re.search(rf"self\.{name}\b", _class_source(cls)):
                return True
        return False

    def _note_own(self, name: str) -> None:
        if self._library_has(name):
            self.library_names.add(name)
        else:
            self.defined.add(name)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        if _private(node.name):
            self._note_own(node.name)
        self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if _private(node.attr) and node.attr not in NAMEDTUPLE:
            target = node.value
            if isinstance(target, ast.Name) and target.id in ("self", "cls"):
                if self._in_library_subclass():
                    self._note_own(node.attr)
                elif isinstance(node.ctx, ast.Store):
                    self.defined.add(node.attr)
            elif (isinstance(target, ast.Call) and isinstance(target.func, ast.Name)
                  and target.func.id == "super"):
                self.library_names.add(node.attr)
            else:
                self.foreign.add(node.attr)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        if (isinstance(node.func, ast.Name) and node.func.id in ("getattr", "setattr",
                                                                   "hasattr")
                and len(node.args) > 1 and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str) and _private(node.args[1].value)):
            self.foreign.add(node.args[1].value)
        self.generic_visit(node)


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _assigned(body: list[ast.stmt]) -> set[str]:
    """Private names a module or class body assigns."""
    names: set[str] = set()
    for statement in body:
        targets = (statement.targets if isinstance(statement, ast.Assign)
                   else [statement.target] if isinstance(statement, ast.AnnAssign) else [])
        names |= {t.id for t in targets if isinstance(t, ast.Name) and _private(t.id)}
    return names


_SOURCES: dict[type, str] = {}


def _class_source(cls: type) -> str:
    if cls not in _SOURCES:
        try:
            _SOURCES[cls] = inspect.getsource(cls)
        except (OSError, TypeError):
            _SOURCES[cls] = ""
    return _SOURCES[cls]


def _modules() -> Iterator[tuple[Path, Any]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "__main__.py":  # runs the command line when imported
            continue
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        yield path, importlib.import_module(name.removesuffix(".__init__"))


def private_library_names() -> dict[str, set[str]]:
    """Private names of the libraries that ``streams`` uses -> the files using them."""
    uses: list[tuple[Path, _Use]] = []
    for path, module in _modules():
        use = _Use(module)
        use.visit(ast.parse(path.read_text()))
        uses.append((path, use))
    defined = set().union(*(use.defined for _, use in uses))
    found: dict[str, set[str]] = {}
    for path, use in uses:
        for name in use.library_names | (use.foreign - defined):
            found.setdefault(name, set()).add(str(path.relative_to(PACKAGE.parent)))
    return found


def test_every_private_name_used_is_checked_here() -> None:
    used = private_library_names()
    unchecked = {name: sorted(files) for name, files in used.items() if name not in CHECKS}
    assert not unchecked, (
        f"private names of {', '.join(LIBRARIES)} used without a check in this file: "
        f"{unchecked}")
    stale = set(CHECKS) - set(used)
    assert not stale, f"checked here but no longer used by streams/: {sorted(stale)}"


def test_the_scan_finds_a_private_use_in_each_way_it_can_be_written() -> None:
    # Through super(), an override in a library subclass, another object, and getattr;
    # the project's own private names are not the libraries'.
    code = '''
import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

class Consumer(faust_aiokafka.Consumer):
    def _new_offset(self, tp):
        self._own = 1
        return super()._getmany(tp), self._acked

    def _own_helper(self):
        return None

class Plain:
    def __init__(self):
        self._mine = 1

def use(consumer, plain, recovery):
    return consumer._fetcher, plain._mine, getattr(recovery, "_recovery_started_at")
'''
    module = type(importlib)("probe")
    exec(compile(code, "probe", "exec"), module.__dict__)  # a fixed text
    use = _Use(module)
    use.visit(ast.parse(code))
    assert use.library_names == {"_new_offset", "_getmany", "_acked"}
    assert use.foreign - use.defined == {"_fetcher", "_recovery_started_at"}
    assert {"_own", "_own_helper", "_mine"} <= use.defined


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_each_check_names_what_it_checks(name: str) -> None:
    assert name in inspect.getsource(CHECKS[name]), name
