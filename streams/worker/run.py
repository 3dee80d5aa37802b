"""``edume-streams worker``: check the topics, then run one Faust worker until stopped.

Several workers share the partitions (one consumer group per ``TOPIC_PREFIX``); SIGINT or
SIGTERM stops one cleanly (its batch finishes, offsets are committed, it leaves the group).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import faust
from mode import Service

from streams.core import topics
from streams.core.errors import ConfigurationError
from streams.core.records import Layout
from streams.kafka.admin import ensure_topics, topic_partitions
from streams.runtime import run, tune_gc
from streams.settings import Settings

log = logging.getLogger(__name__)

async def prepare_layout(settings: Settings) -> Layout:
    """Create the workers' internal topics if missing, and read every partition count.

    The contract's topics must exist already (``edume-streams topics create``); a worker
    does not guess their layout. Topics that must be co-partitioned are checked to be.
    """
    prefix = settings.topic_prefix
    bootstrap = settings.kafka_bootstrap_servers
    kafka = settings.kafka
    internal = [s for s in topics.CATALOG if s.internal]
    await ensure_topics(kafka, prefix, internal, settings.topic_replication_factor)
    names = [topics.prefixed(s.name, prefix) for s in topics.CATALOG]
    counts = await topic_partitions(kafka, names)
    missing = [n for n in names if n not in counts]
    if missing:
        raise ConfigurationError(
            f"topics missing at {bootstrap}: {', '.join(missing)}; "
            "create them with `edume-streams topics create`"
        )
    layout = Layout(prefix, counts)
    for group in topics.COPARTITIONED:
        found = {layout.name(name): layout.count(name) for name in group}
        if len(set(found.values())) != 1:
            shown = ", ".join(f"{n} has {c}" for n, c in found.items())
            raise ConfigurationError(
                f"these topics must have as many partitions as each other: {shown}"
            )
    return layout


class _WorkerIO(Service):
    """Starts the producer and the catalog/policy reader before the app, stops them after."""

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        self.worker = worker
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        await self.worker.start_io()

    async def on_stop(self) -> None:
        await self.worker.stop_io()


def run_worker(settings: Settings) -> int:
    """Run until stopped; returns the exit status."""
    from streams.worker.app import Worker

    settings.require_link_secret()
    settings.require_worker_api_tokens()
    layout = run(prepare_layout(settings))
    loop = _new_loop()
    asyncio.set_event_loop(loop)
    with data_directory(settings) as data_dir:
        worker = Worker(settings, layout, data_dir)
        faust_worker = faust.Worker(
            worker.app,
            _WorkerIO(worker, loop=loop),
            loglevel=settings.log_level,
            quiet=True,
            redirect_stdouts=False,
            loop=loop,
        )
        # Faust's start-up spinner turns the root logger to DEBUG (13 % of the CPU,
        # measured).
        faust_worker.spinner = None
        tune_gc()
        log.info("worker %s: query API on %s, data directory %s", worker.app.conf.id,
                 worker.url, data_dir)
        try:
            faust_worker.execute_from_commandline()
        except SystemExit as exc:
            return int(exc.code or 0)
    return 0


@contextlib.contextmanager
def data_directory(settings: Settings) -> Iterator[str]:
    """Faust's data directory: ``WORKER_DATA_DIR`` (created if missing, and kept), or else a
    new temporary directory, removed when the worker exits. Faust leaves it empty (the
    tables are in memory), but creates it at start; without this it would be
    ``{app id}-data`` in the working directory."""
    if settings.worker_data_dir is not None:
        os.makedirs(settings.worker_data_dir, exist_ok=True)
        yield settings.worker_data_dir
        return
    path = tempfile.mkdtemp(prefix="edume-streams-worker-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - a dependency on Linux
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop
