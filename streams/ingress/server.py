"""Serving the ingress: uvicorn (httptools, uvloop) in this process, stopped by signal."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

import uvicorn

from streams.core.errors import ConfigurationError
from streams.ingress.app import Ingress
from streams.runtime import tune_gc
from streams.settings import Settings

log = logging.getLogger(__name__)

STARTUP_REFUSAL_S = 25.0
"""How long after start-up a refusal of the Kafka credentials or certificates stops the
ingress (a refusal comes within a second or two of connecting)."""


def uvicorn_config(app: Ingress, settings: Settings) -> uvicorn.Config:
    """The server settings the benchmark measured: httptools parser, uvloop, no access log."""
    return uvicorn.Config(
        app,
        host=settings.ingress_host,
        port=settings.ingress_port,
        loop="none",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        proxy_headers=False,
        date_header=False,
        timeout_keep_alive=30,
        # Long enough for a request that has just begun: body read, then publish.
        timeout_graceful_shutdown=int(settings.request_timeout_s + settings.publish_timeout_s) + 1,
        backlog=2048,
    )


async def serve(
    app: Ingress, settings: Settings, after_start: Callable[[], Awaitable[None]] | None = None
) -> None:
    """Run until SIGINT/SIGTERM; in-flight requests finish before the producer flushes."""
    server = uvicorn.Server(uvicorn_config(app, settings))
    tune_gc()
    stop_requested: list[int] = []

    def note(sig: int, _frame: object) -> None:
        # uvicorn hands captured signals back to the previous handler after its graceful
        # shutdown; recording them here (instead of the default action) lets callers
        # such as ``dev`` run their own cleanup afterwards.
        stop_requested.append(sig)
        server.should_exit = True

    previous = {s: signal.signal(s, note) for s in (signal.SIGINT, signal.SIGTERM)}
    refused: list[str] = []

    async def refusal_watch() -> None:
        """A broker that refuses the credentials or certificates before it ever answered
        stops start-up: the settings are wrong, and saying so beats a pod that is never
        ready. (Once it has answered, a refusal only makes /readyz 503.)"""
        publisher = app.publisher
        deadline = asyncio.get_running_loop().time() + STARTUP_REFUSAL_S
        while asyncio.get_running_loop().time() < deadline:
            if publisher.ready:
                return
            reason = publisher.credentials_refused
            if reason is not None:
                refused.append(reason)
                server.should_exit = True
                return
            await asyncio.sleep(0.1)

    watch: asyncio.Task[None] | None = None
    try:
        task = asyncio.create_task(server.serve())
        watch = asyncio.create_task(refusal_watch())
        if after_start is not None:
            while not server.started and not task.done():  # noqa: ASYNC110 - no event to await
                await asyncio.sleep(0.02)
            if server.started:
                await after_start()
        await task
    finally:
        if watch is not None:
            watch.cancel()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if refused:
        raise ConfigurationError(refused[0])
    if stop_requested:
        log.info("stopped by signal %d", stop_requested[-1])
