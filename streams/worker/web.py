"""The worker's query API, on Faust's web server (``WORKER_WEB_PORT``).

A learner's progress lives on the worker that owns the learner's partition, a course's
entry on the owner of the course's partition. Any worker answers any request: it finds the
owner in the assignment Faust shares between workers (which worker holds which changelog
partition, and its URL) and forwards the request there, once. The partition is computed
here (murmur2 of the key, as the ingress writes it), not by Faust's producer, which knows
nothing of changelogs this worker writes through librdkafka.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import aiohttp
from faust.web import Request, Response, View

from streams.state.codec import decode_course, decode_learner
from streams.state.mandatory import gate
from streams.worker.openapi import worker_openapi_document
from streams.worker.records import partition_for
from streams.worker.tables import StateTable

if TYPE_CHECKING:
    from streams.worker.app import Worker

ROUTED_HEADER = "X-Edume-Routed-By"
"""Set on a forwarded request: the receiver answers it itself or says it cannot, never
forwards it again (ownership may be moving)."""
RETRY_AFTER_S = "2"

Answer = Callable[[View, str], Awaitable[Response]]


def add_views(worker: Worker) -> None:
    """Register the query API's pages on the worker's Faust app."""
    app = worker.app
    openapi = worker_openapi_document()

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
            if not (key.isascii() and key.isdigit()) or len(key) > 19:
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

    async def healthz(view: View, _request: Request, _kw: dict[str, Any]) -> Response:
        return view.json({"status": "ok"})

    async def readyz(view: View, _request: Request, _kw: dict[str, Any]) -> Response:
        if worker.ready():
            return view.json({"status": "ready"})
        return view.json({"status": worker.not_ready_reason()}, status=503,
                         headers={"Retry-After": RETRY_AFTER_S})

    async def metrics(view: View, _request: Request, _kw: dict[str, Any]) -> Response:
        # aiohttp takes the charset apart from the type; the text is ASCII.
        return view.bytes(worker.metrics.render(), content_type="text/plain; version=0.0.4")

    async def document(view: View, _request: Request, _kw: dict[str, Any]) -> Response:
        return view.json(openapi)

    page("/catalog/courses/{course_id}", owned(worker.catalog, "course_id", course))
    page("/learners/{user_id}/progress", owned(worker.progress, "user_id", progress))
    page("/learners/{user_id}/mandatory", owned(worker.progress, "user_id", mandatory))
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
            return view.bytes(body, content_type=reply.content_type, status=reply.status)
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
