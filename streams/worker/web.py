"""The worker's query API, on Faust's web server (``WORKER_WEB_PORT``).

A learner's progress lives on the worker that owns the learner's partition, a course's
entry on the owner of the course's partition. Any worker answers any request: it finds the
owner in the assignment Faust shares between workers (which worker holds which changelog
partition, and its URL) and forwards the request there, once. The partition is computed
here (murmur2 of the key, as the ingress writes it), not by Faust's producer, which knows
nothing of changelogs this worker writes through librdkafka.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import aiohttp
from aiohttp import web
from faust.web import Request, Response, View
from faust.web.drivers.aiohttp import Web as AiohttpWeb

from schemas.common import MAX_EXTERNAL_ID
from streams.core.records import Layout, partition_for
from streams.core.state.catalog import CatalogView
from streams.core.state.codec import decode_course, decode_learner
from streams.core.state.links import LinkState, decode_links
from streams.core.state.mandatory import gate
from streams.core.state.policies import PolicyBook
from streams.worker.openapi import (
    COURSE_PATH,
    EXTERNAL_LINKS_PATH,
    ID_DIGITS,
    LINKS_PATH,
    MANDATORY_PATH,
    PROGRESS_PATH,
    worker_openapi_document,
)
from streams.worker.tables import StateTable


class Replica(Protocol):
    @property
    def policies(self) -> PolicyBook: ...

    @property
    def catalog(self) -> CatalogView: ...


class Metrics(Protocol):
    def render(self) -> bytes: ...


class Worker(Protocol):
    """What the query API needs of a worker: its Faust app (web server, assignment, HTTP
    client), its tables, its copy of the catalog and policies, its health and metrics."""

    app: Any
    layout: Layout
    catalog: StateTable
    progress: StateTable
    links_table: StateTable

    @property
    def replica(self) -> Replica: ...

    @property
    def metrics(self) -> Metrics: ...

    @property
    def url(self) -> str: ...

    def not_ready_reason(self) -> str | None: ...

    def degraded(self) -> str | None: ...

    def stalled(self) -> str | None: ...

ROUTED_HEADER = "X-Edume-Routed-By"
"""Set on a forwarded request: the receiver answers it itself or says it cannot, never
forwards it again (ownership may be moving)."""
RETRY_AFTER_S = "2"
_ID = re.compile(ID_DIGITS)

Answer = Callable[[View, str], Awaitable[Response]]


def add_views(worker: Worker) -> None:
    """Register the query API's pages on the worker's Faust app."""
    app = worker.app
    openapi = worker_openapi_document()
    if not isinstance(app.web, AiohttpWeb):
        raise TypeError(f"the worker's pages need Faust's aiohttp driver, not {app.web!r}")
    app.web.web_app.middlewares.append(_json_errors)

    def page(path: str, handler: Callable[[View, Request, dict[str, Any]], Awaitable[Response]]
             ) -> None:
        class Page(View):
            async def get(self, request: Request, **kwargs: Any) -> Response:
                return await handler(self, request, kwargs)

        Page.__name__ = "Page" + "".join(c for c in path.title() if c.isalnum())
        app.page(path)(Page)

    def owned(table: StateTable, param: str, answer: Answer
              ) -> Callable[[View, Request, dict[str, Any]], Awaitable[Response]]:
        async def handler(view: View, request: Request, kwargs: dict[str, Any]) -> Response:
            key = kwargs[param]
            if not _ID.fullmatch(key):
                return view.json({"error": f"{param} must be a decimal id"}, status=400)
            return await route(worker, view, request, table, str(int(key)), answer)

        return handler

    async def course(view: View, key: str) -> Response:
        raw = worker.catalog.get(key)
        if raw is None:
            return view.json({"error": f"no course events for course {key}"}, status=404)
        return view.json(decode_course(raw).view())

    async def progress(view: View, key: str) -> Response:
        raw = worker.progress.get(key)
        if raw is None:
            return view.json({"error": f"no events for learner {key}"}, status=404)
        return view.json(decode_learner(raw).view())

    async def mandatory(view: View, key: str) -> Response:
        raw = worker.progress.get(key)
        if raw is None:
            return view.json({"error": f"no events for learner {key}"}, status=404)
        learner = decode_learner(raw)
        return view.json(gate(learner, worker.replica.policies, worker.replica.catalog).view())

    async def links_of(external_user_id: str, *, routed: bool = False
                       ) -> tuple[int, dict[str, Any]]:
        """The links issued to ``external_user_id``, from the owner of its links partition."""
        table = worker.links_table
        partitions = worker.layout.partitions[table.changelog_topic]
        owner = _owner(worker, table.changelog_topic,
                       partition_for(external_user_id.encode(), partitions))
        if owner == worker.url:
            raw = table.get(external_user_id)
            state = decode_links(raw) if raw else LinkState(external_user_id)
            return 200, state.view()
        if owner is None or routed:
            return 503, {"error": "the workers are rebalancing; retry"}
        try:
            async with worker.app.http_client.get(
                owner + EXTERNAL_LINKS_PATH, params={"externalUserId": external_user_id},
                headers={ROUTED_HEADER: worker.url}, timeout=aiohttp.ClientTimeout(total=5),
            ) as reply:
                return reply.status, await reply.json()
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return 503, {"error": "the worker that owns this user's links did not answer; "
                                  "retry"}

    async def learner_links(view: View, key: str) -> Response:
        raw = worker.progress.get(key)
        if raw is None:
            return view.json({"error": f"no events for learner {key}"}, status=404)
        learner = decode_learner(raw)
        ext = learner.external_user_id
        if ext is None:
            return view.json({"userId": learner.user_id, "externalUserId": None, "links": []})
        status, body = await links_of(ext)
        if status != 200:
            return view.json(body, status=status, headers={"Retry-After": RETRY_AFTER_S})
        return view.json({**body, "userId": learner.user_id})

    async def external_links(view: View, request: Request, _kw: dict[str, Any]) -> Response:
        ext = request.query.get("externalUserId", "")
        if not ext:
            return view.json({"error": "externalUserId is required"}, status=400)
        if len(ext) > MAX_EXTERNAL_ID:
            return view.json({"error": f"externalUserId is longer than {MAX_EXTERNAL_ID} "
                                       "characters"}, status=400)
        status, body = await links_of(ext, routed=bool(request.headers.get(ROUTED_HEADER)))
        headers = {"Retry-After": RETRY_AFTER_S} if status == 503 else None
        return view.json(body, status=status, headers=headers)

    async def healthz(view: View, _request: Request, _kw: dict[str, Any]) -> Response:
        stalled = worker.stalled()
        if stalled is not None:
            return view.json({"status": f"stalled: {stalled}"}, status=503)
        return view.json({"status": "ok"})

    async def readyz(view: View, _request: Request, _kw: dict[str, Any]) -> Response:
        reason = worker.not_ready_reason()
        body: dict[str, str] = {"status": "ready" if reason is None else reason}
        degraded = worker.degraded()
        if degraded is not None:
            body["degraded"] = degraded
        if reason is None:
            return view.json(body)
        return view.json(body, status=503, headers={"Retry-After": RETRY_AFTER_S})

    async def metrics(view: View, _request: Request, _kw: dict[str, Any]) -> Response:
        # aiohttp takes the charset apart from the type; the text is ASCII.
        return view.bytes(worker.metrics.render(), content_type="text/plain; version=0.0.4")

    async def document(view: View, _request: Request, _kw: dict[str, Any]) -> Response:
        return view.json(openapi)

    page(COURSE_PATH, owned(worker.catalog, "course_id", course))
    page(PROGRESS_PATH, owned(worker.progress, "user_id", progress))
    page(MANDATORY_PATH, owned(worker.progress, "user_id", mandatory))
    page(LINKS_PATH, owned(worker.progress, "user_id", learner_links))
    page(EXTERNAL_LINKS_PATH, external_links)
    page("/healthz", healthz)
    page("/readyz", readyz)
    page("/metrics", metrics)
    page("/openapi.json", document)


async def route(
    worker: Worker, view: View, request: Request, table: StateTable, key: str, answer: Answer
) -> Response:
    """Answer for ``key`` here if this worker owns it, else ask its owner."""
    partitions = worker.layout.partitions[table.changelog_topic]
    owner = _owner(worker, table.changelog_topic, partition_for(key.encode(), partitions))
    if owner == worker.url:
        return await answer(view, key)
    unavailable = {"Retry-After": RETRY_AFTER_S}
    if owner is None or request.headers.get(ROUTED_HEADER):
        return view.json({"error": "the workers are rebalancing; retry"}, status=503,
                         headers=unavailable)
    try:
        async with worker.app.http_client.get(
            owner + request.url.path,
            headers={ROUTED_HEADER: worker.url},
            timeout=aiohttp.ClientTimeout(total=5),
        ) as reply:
            body = await reply.read()
            retry = reply.headers.get("Retry-After")
            return view.bytes(body, content_type=reply.content_type, status=reply.status,
                              headers={"Retry-After": retry} if retry else None)
    except (aiohttp.ClientError, TimeoutError):
        return view.json({"error": "the worker that owns this key did not answer; retry"},
                         status=503, headers=unavailable)


def _owner(worker: Worker, changelog_topic: str, partition: int) -> str | None:
    assignor: Any = worker.app.assignor  # faust's PartitionAssignor (the type says less)
    distribution = assignor.changelog_distribution
    for url, assigned in distribution.items():
        if partition in assigned.get(changelog_topic, ()):
            return str(url).rstrip("/")
    return None


@web.middleware
async def _json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """aiohttp's own answers when no page matches, as JSON ``Error`` bodies like every other:
    404 for an unknown path, 405 with ``Allow`` for a method the page does not answer
    (Faust routes only the methods a view implements: GET, and HEAD by way of GET)."""
    try:
        return await handler(request)
    except web.HTTPMethodNotAllowed as exc:
        allow = ", ".join(sorted(exc.allowed_methods))
        return web.json_response({"error": f"use {allow}"}, status=405, headers={"Allow": allow})
    except web.HTTPNotFound:
        return web.json_response({"error": "not found"}, status=404)
