"""The worker's query API, on Faust's web server (``WORKER_WEB_PORT``).

A learner's progress lives on the worker that owns the learner's partition, a course's
entry on the owner of the course's partition. Any worker answers any request: it finds the
owner in the assignment Faust shares between workers (which worker holds which changelog
partition, and its URL) and forwards the request there, once. The partition is computed
here (murmur2 of the key, as the ingress writes it), not by Faust's producer, which knows
nothing of changelogs this worker writes through librdkafka.

Every data page needs a bearer token (``streams.worker.auth``); a forwarded request carries
a routing credential instead of the caller's token, and goes only to a URL the group's
assignment names as the one active owner of the key's partition. ``/healthz``,
``/readyz``, ``/metrics`` and ``/openapi.json`` are open: probes and scrapers hold no token.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import aiohttp
from aiohttp import web
from aiokafka.errors import KafkaError
from faust.web import Request, Response, View
from faust.web.drivers.aiohttp import Web as AiohttpWeb

from schemas.common import MAX_EXTERNAL_ID
from streams.core.errors import EdumeStreamsError
from streams.core.evidence import check
from streams.core.records import Layout, partition_for
from streams.core.state.catalog import CatalogView
from streams.core.state.codec import decode_course, decode_learner
from streams.core.state.links import LinkState, decode_links
from streams.core.state.mandatory import gate
from streams.core.state.policies import PolicyBook
from streams.kafka.evidence import read_evidence
from streams.settings import Settings
from streams.worker.auth import (
    REPLY_AUTH_HEADER,
    ROUTED_AUTH_HEADER,
    Access,
    ApiAuth,
    Forward,
    peer_url,
)
from streams.worker.openapi import (
    COURSE_PATH,
    EVIDENCE_PATH,
    EXTERNAL_LINKS_PATH,
    ID_DIGITS,
    LINKS_PATH,
    MANDATORY_PATH,
    PROGRESS_PATH,
    worker_openapi_document,
)
from streams.worker.tables import StateTable

log = logging.getLogger(__name__)


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
    settings: Settings
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
"""Set on a forwarded request, with a routing credential (``ROUTED_AUTH_HEADER``) without
which it is refused: the receiver answers it itself or says it cannot, never forwards it
again (ownership may be moving)."""
RETRY_AFTER_S = "2"
FORWARD_TIMEOUT_S = 5.0
EVIDENCE_READ_TIMEOUT_S = 4.0
"""How long the owner reads a learner's evidence partition before answering 503 (less
than a forward waits for it)."""
BEARER_CHALLENGE = {"WWW-Authenticate": "Bearer"}
_ID = re.compile(ID_DIGITS)

Answer = Callable[[View, str, Access], Awaitable[Response]]
Handler = Callable[[View, Request, dict[str, Any], Access], Awaitable[Response]]
OpenHandler = Callable[[View, Request, dict[str, Any]], Awaitable[Response]]


def add_views(worker: Worker) -> None:
    """Register the query API's pages on the worker's Faust app."""
    app = worker.app
    auth = ApiAuth(worker.settings.worker_api_tokens, worker.settings.worker_link_tokens)
    openapi = worker_openapi_document()
    if not isinstance(app.web, AiohttpWeb):
        raise TypeError(f"the worker's pages need Faust's aiohttp driver, not {app.web!r}")
    app.web.web_app.middlewares.append(_json_errors)

    def register(path: str, get: Callable[[View, Request, dict[str, Any]], Awaitable[Response]]
                 ) -> None:
        class Page(View):
            async def get(self, request: Request, **kwargs: Any) -> Response:
                return await get(self, request, kwargs)

        Page.__name__ = "Page" + "".join(c for c in path.title() if c.isalnum())
        app.page(path)(Page)

    def page(path: str, handler: Handler) -> None:
        """A data page: a bearer token, or a forward's routing credential, or 401."""
        async def get(view: View, request: Request, kwargs: dict[str, Any]) -> Response:
            access = admit(auth, worker.url, request)
            if access is None:
                response = view.json({"error": _refusal(request)}, status=401,
                                     headers=BEARER_CHALLENGE)
                # Signed too, so that a worker sharing a token with this one can tell a
                # credential refused here (clocks apart) from a peer that is no worker.
                credential = request.headers.get(ROUTED_AUTH_HEADER)
            else:
                response = await handler(view, request, kwargs, access)
                credential = access.credential
            if credential is not None and request.headers.get(ROUTED_HEADER) is not None:
                body = response.body
                response.headers[REPLY_AUTH_HEADER] = auth.reply_mac(
                    credential, response.status, body if isinstance(body, bytes) else b"")
            return response

        register(path, get)

    def open_page(path: str, handler: OpenHandler) -> None:
        """A page anyone may read: probes and scrapers hold no token."""
        register(path, handler)

    def owned(table: StateTable, param: str, answer: Answer) -> Handler:
        async def handler(view: View, request: Request, kwargs: dict[str, Any], access: Access
                          ) -> Response:
            key = kwargs[param]
            if not _ID.fullmatch(key):
                return view.json({"error": f"{param} must be a decimal id"}, status=400)
            return await route(worker, auth, view, request, table, str(int(key)), answer,
                               access)

        return handler

    async def course(view: View, key: str, _access: Access) -> Response:
        raw = worker.catalog.get(key)
        if raw is None:
            return view.json({"error": f"no course events for course {key}"}, status=404)
        return view.json(decode_course(raw).view())

    async def progress(view: View, key: str, _access: Access) -> Response:
        raw = worker.progress.get(key)
        if raw is None:
            return view.json({"error": f"no events for learner {key}"}, status=404)
        return view.json(decode_learner(raw).view())

    async def mandatory(view: View, key: str, _access: Access) -> Response:
        raw = worker.progress.get(key)
        if raw is None:
            return view.json({"error": f"no events for learner {key}"}, status=404)
        learner = decode_learner(raw)
        return view.json(gate(learner, worker.replica.policies, worker.replica.catalog).view())

    async def evidence(view: View, key: str, _access: Access) -> Response:
        """The learner's proofs, read from their partition of ``training.evidence``; each
        checked again with this worker's webhook secrets, if it has any."""
        if worker.progress.get(key) is None:
            return view.json({"error": f"no events for learner {key}"}, status=404)
        settings = worker.settings
        try:
            found = await asyncio.wait_for(
                read_evidence(settings.kafka, settings.topic_prefix, int(key)),
                EVIDENCE_READ_TIMEOUT_S)
        except (KafkaError, OSError, TimeoutError, EdumeStreamsError):
            return view.json({"error": "the evidence topic could not be read; retry"},
                             status=503, headers={"Retry-After": RETRY_AFTER_S})
        secrets = list(settings.webhook_secrets)
        return view.json({"userId": int(key), "completions": [
            {**e.model_dump(mode="json"), "verdict": check(e, secrets) if secrets else None}
            for e in found]})

    async def links_of(external_user_id: str, access: Access, *, may_forward: bool
                       ) -> tuple[int, dict[str, Any]]:
        """The links issued to ``external_user_id``, from the owner of its links partition,
        with their URLs only if ``access`` may see them. ``may_forward``: False for a
        ``/links`` request that was itself forwarded (a learner's links are found in two
        hops: the learner's owner, then the links' owner)."""
        table = worker.links_table
        partitions = worker.layout.partitions[table.changelog_topic]
        owner = _owner(worker, table.changelog_topic,
                       partition_for(external_user_id.encode(), partitions))
        if owner == worker.url:
            raw = table.get(external_user_id)
            state = decode_links(raw) if raw else LinkState(external_user_id)
            return 200, links_visible(state.view(), access)
        if owner is None or not may_forward:
            return 503, {"error": "the workers are rebalancing; retry"}
        answer = await forward(worker, auth, owner, EXTERNAL_LINKS_PATH,
                               (("externalUserId", external_user_id),), access)
        if answer is None:
            return 503, {"error": "the worker that owns this user's links did not answer; "
                                  "retry"}
        status, body, _ = answer
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            return 503, {"error": "the worker that owns this user's links did not answer; "
                                  "retry"}
        return status, links_visible(parsed, access) if status == 200 else parsed

    async def learner_links(view: View, key: str, access: Access) -> Response:
        raw = worker.progress.get(key)
        if raw is None:
            return view.json({"error": f"no events for learner {key}"}, status=404)
        learner = decode_learner(raw)
        ext = learner.external_user_id
        if ext is None:
            return view.json({"userId": learner.user_id, "externalUserId": None, "links": []})
        status, body = await links_of(ext, access, may_forward=True)
        if status != 200:
            return view.json(body, status=status, headers={"Retry-After": RETRY_AFTER_S})
        return view.json({**body, "userId": learner.user_id})

    async def external_links(view: View, request: Request, _kw: dict[str, Any],
                             access: Access) -> Response:
        ext = request.query.get("externalUserId", "")
        if not ext:
            return view.json({"error": "externalUserId is required"}, status=400)
        if len(ext) > MAX_EXTERNAL_ID:
            return view.json({"error": f"externalUserId is longer than {MAX_EXTERNAL_ID} "
                                       "characters"}, status=400)
        status, body = await links_of(ext, access, may_forward=not access.forwarded)
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
    page(EVIDENCE_PATH, owned(worker.progress, "user_id", evidence))
    page(EXTERNAL_LINKS_PATH, external_links)
    open_page("/healthz", healthz)
    open_page("/readyz", readyz)
    open_page("/metrics", metrics)
    open_page("/openapi.json", document)


def admit(auth: ApiAuth, own_url: str, request: Request) -> Access | None:
    """What a request to a data page may see, or ``None`` (401). A request marked as
    forwarded (``X-Edume-Routed-By``) is judged by its routing credential alone, which
    must be valid for this worker and this very request; any other by its bearer token."""
    routed_by = request.headers.get(ROUTED_HEADER)
    if routed_by is None:
        return auth.bearer(request.headers.get("Authorization"))
    query = tuple((k, v) for k, v in request.query.items())
    forwarded = Forward(request.method, own_url, request.url.path, query, routed_by)
    return auth.check_credential(request.headers.get(ROUTED_AUTH_HEADER), forwarded,
                                 now_s=time.time())


def _refusal(request: Request) -> str:
    if request.headers.get(ROUTED_HEADER) is not None:
        return "a forwarded request needs a valid routing credential"
    return ("send Authorization: Bearer with a token from WORKER_API_TOKENS or "
            "WORKER_LINK_TOKENS")


def links_visible(body: dict[str, Any], access: Access) -> dict[str, Any]:
    """A links answer as ``access`` may see it: without the signed URLs unless it may."""
    if access.links:
        return body
    links = body.get("links")
    if not isinstance(links, list):
        return body
    return {**body, "links": [{k: v for k, v in link.items() if k != "url"}
                              if isinstance(link, dict) else link for link in links]}


async def forward(worker: Worker, auth: ApiAuth, owner: str, path: str,
                  query: tuple[tuple[str, str], ...], access: Access
                  ) -> tuple[int, bytes, str | None] | None:
    """Ask ``owner`` (a URL the assignment names) for ``path``, on behalf of a caller with
    ``access``: the status, body and ``Retry-After`` of its answer, or ``None`` when it did
    not answer, or not as a worker that knows our tokens would."""
    request = Forward("GET", owner, path, query, worker.url)
    credential = auth.credential(request, links=access.links, now_s=time.time())
    try:
        async with worker.app.http_client.get(
            owner + path,
            params=list(query),
            headers={ROUTED_HEADER: worker.url, ROUTED_AUTH_HEADER: credential},
            timeout=aiohttp.ClientTimeout(total=FORWARD_TIMEOUT_S),
            allow_redirects=False,  # only where the assignment said, nowhere it points
        ) as reply:
            body = await reply.read()
            status = reply.status
            retry = reply.headers.get("Retry-After")
            signed = reply.headers.get(REPLY_AUTH_HEADER)
    except (aiohttp.ClientError, TimeoutError):
        return None
    if not auth.check_reply(credential, status, body, signed):
        log.warning("the worker at %s answered a forwarded request %d without a valid reply "
                    "signature: does it share a WORKER_API_TOKENS token with this one?",
                    owner, status)
        return None
    if status == 401:
        log.warning("the worker at %s refused this worker's routing credential: do the "
                    "workers share a WORKER_API_TOKENS token, and are their clocks within "
                    "30 s?", owner)
        return None
    return status, body, retry


async def route(
    worker: Worker, auth: ApiAuth, view: View, request: Request, table: StateTable, key: str,
    answer: Answer, access: Access,
) -> Response:
    """Answer for ``key`` here if this worker owns it, else ask its owner."""
    partitions = worker.layout.partitions[table.changelog_topic]
    owner = _owner(worker, table.changelog_topic, partition_for(key.encode(), partitions))
    if owner == worker.url:
        return await answer(view, key, access)
    unavailable = {"Retry-After": RETRY_AFTER_S}
    if owner is None or access.forwarded:
        return view.json({"error": "the workers are rebalancing; retry"}, status=503,
                         headers=unavailable)
    answered = await forward(worker, auth, owner, request.url.path, (), access)
    if answered is None:
        return view.json({"error": "the worker that owns this key did not answer; retry"},
                         status=503, headers=unavailable)
    status, body, retry = answered
    return view.bytes(body, content_type="application/json", status=status,
                      headers={"Retry-After": retry} if retry else None)


def _owner(worker: Worker, changelog_topic: str, partition: int) -> str | None:
    """The URL of the one member the group's assignment names as the active owner of
    ``partition`` (Faust's ``changelog_distribution``: URL -> the changelog partitions
    that member holds active, as the group leader computed it from the members' own
    advertised URLs and every member received it with its assignment). ``None`` while
    no member, or more than one, holds it, or when the URL named is not one a forward may
    go to (``peer_url``)."""
    assignor: Any = worker.app.assignor  # faust's PartitionAssignor (the type says less)
    distribution = assignor.changelog_distribution
    claims = [str(url) for url, assigned in distribution.items()
              if partition in assigned.get(changelog_topic, ())]
    if len(claims) != 1:
        return None
    owner = peer_url(claims[0])
    if owner is None:
        log.warning("the assignment names a worker URL no forward goes to: %.200r", claims[0])
    return owner


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
