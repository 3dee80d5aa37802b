"""The ingress as a raw ASGI application: verify → validate → key → publish, in one pass.

A webhook's way is a straight line over the bytes it arrived as: the raw body is checked
against the signature before anything is parsed, parsed once, validated from that parse,
and the value published is the single-line form eduMe signed (its JSON.stringify form), so
nothing is serialised twice. The answer is 202 only after the broker acknowledged the
record with acks=all; when it does not within ``publish_timeout_s`` eduMe gets 503 and
retries, so an authentic event is never acknowledged and lost.

Forged traffic must not tire it. Headers that no body could make authentic (no signature
or one that is not hex, no accepted bearer token) are answered 401 before a byte of the
body is read, and the connection is closed rather than left to drain an announced body.
At most ``ingress_max_concurrent_requests`` webhooks are handled at once; one more gets 503
and ``Retry-After`` before its body is read. A well-formed but wrong signature costs what
the body's JavaScript form costs, and on the event loop only jsjson's light path runs
(orjson and text rewrites at C speed: 7 to 35 ms for the 0.98 MB bodies of
``bench/forged_bench.py``, where the code before took 105 to 395 ms). A body whose form
needs Python work in proportion to its size (:class:`~streams.core.jsjson.HeavyDocument`;
never an eduMe webhook) goes to the heavy lane (:mod:`streams.ingress.heavy`): one thread,
one body at a time, 503 and ``Retry-After`` for another meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial
from typing import Any

import orjson
from pydantic import ValidationError

from schemas import WEBHOOK_ADAPTER, canonical_type
from streams.core import topics
from streams.core.clock import Rfc3339Clock, timestamp_skew
from streams.core.errors import BrokerUnavailable, PublishError, VerificationError
from streams.core.headers import (
    DLQ_REASON,
    EVENT_ID,
    EVENT_TYPE,
    RECEIVED_AT,
    SIGNATURE,
    Headers,
)
from streams.core.jsjson import HeavyDocument
from streams.core.signing import Credentials, Verified, WebhookVerifier
from streams.core.validation import summarise_validation
from streams.ingress.deadline import Expiry
from streams.ingress.dedup import RecentIds
from streams.ingress.heavy import HeavyLane
from streams.ingress.metrics import IngressMetrics
from streams.ingress.openapi import ALLOWED_METHODS, GET_PATHS, WEBHOOK_PATH, openapi_document
from streams.kafka.publisher import Delivery, Publisher
from streams.metrics import CONTENT_TYPE
from streams.settings import Settings

log = logging.getLogger(__name__)

Scope = dict[str, Any]
_GET_PATHS = frozenset(GET_PATHS)
_JSON = (b"content-type", b"application/json")
_TEXT = (b"content-type", CONTENT_TYPE.encode())
_CLOSE = (b"connection", b"close")


class _InFlight(Delivery):
    """A record handed to the producer and not settled yet, with the requests waiting for it
    (the first one, and any redeliveries of the same event that arrived meanwhile)."""

    __slots__ = ("digest", "ingress", "queued_at", "waiters")

    def __init__(self, ingress: Ingress, digest: bytes, queued_at: float) -> None:
        self.ingress = ingress
        self.digest = digest
        self.queued_at = queued_at
        self.waiters: list[asyncio.Future[None]] = []

    def settle(self, error: PublishError | None) -> None:
        ingress = self.ingress
        if ingress._in_flight.get(self.digest) is self:
            del ingress._in_flight[self.digest]
        if error is None:
            ingress.recent.add(self.digest)
            for waiter in self.waiters:
                if not waiter.done():
                    waiter.set_result(None)
        else:
            for waiter in self.waiters:
                if not waiter.done():
                    # One exception per waiter: each request unwinds its own traceback.
                    waiter.set_exception(type(error)(*error.args))
        self.waiters.clear()


class Ingress:
    """The ASGI callable; its lifespan owns the producer."""

    def __init__(
        self,
        settings: Settings,
        *,
        verifier: WebhookVerifier | None = None,
        publisher: Publisher | None = None,
    ) -> None:
        settings.require_webhook_auth()
        self.settings = settings
        self.verifier = verifier or WebhookVerifier(
            settings.webhook_secrets,
            settings.webhook_bearer_tokens,
            max_depth=settings.max_json_depth,
        )
        self.publisher = publisher or Publisher(settings, client_id="edume-streams-ingress")
        self._clock = Rfc3339Clock()
        self.recent = RecentIds(settings.dedup_capacity, settings.dedup_ttl_s)
        self._in_flight: dict[bytes, _InFlight] = {}
        # Set at startup; requests use it rather than asking (a system call on 3.11).
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ack_expiry: Expiry
        self._body_expiry: Expiry
        # The producer reports every record within its delivery timeout: an in-flight entry
        # much older than that will never be settled.
        self._stale_after_s = self.publisher.delivery_timeout_s + 30.0
        prefix = settings.topic_prefix
        self._event_topic = {
            family: topics.prefixed(name, prefix)
            for family, name in topics.EVENT_TOPIC_BY_FAMILY.items()
        }
        self._dlq_topic = topics.prefixed(topics.WEBHOOKS_DLQ, prefix)
        self.metrics = IngressMetrics([*self._event_topic.values(), self._dlq_topic])
        self._retry_after = str(settings.retry_after_s).encode()
        self._openapi = orjson.dumps(openapi_document(settings))
        self._active = 0  # webhook requests between admission and answer
        self._max_active = settings.ingress_max_concurrent_requests
        self._heavy = HeavyLane()
        self.metrics.gauge(
            "edume_ingress_broker_ready",
            "1 while the broker answers, else 0.",
            lambda: float(self.publisher.ready),
        )
        self.metrics.gauge(
            "edume_ingress_publishes_in_flight",
            "Records sent and not yet acknowledged.",
            lambda: float(len(self._in_flight)),
        )
        self.metrics.gauge(
            "edume_ingress_requests_in_flight",
            "Webhook requests being handled (body read, verification, publish).",
            lambda: float(self._active),
        )
        self.metrics.gauge(
            "edume_ingress_dedup_ids",
            "Event ids remembered for redelivery detection.",
            lambda: float(len(self.recent)),
        )

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "http":
            path = scope["path"]
            method = scope["method"]
            if path == WEBHOOK_PATH and method == "POST":
                await self._webhook(scope, receive, send)
            elif path in _GET_PATHS and method in ("GET", "HEAD"):
                await self._get(path, send)
            elif path in ALLOWED_METHODS:
                self.metrics.requests["method_not_allowed"].inc()
                allow = ALLOWED_METHODS[path]
                await _respond(send, 405, {"error": f"use {allow}"}, [(b"allow", allow.encode())])
            else:
                self.metrics.requests["not_found"].inc()
                await _respond(send, 404, {"error": "not found"})
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._loop = loop = asyncio.get_running_loop()
                self._ack_expiry = Expiry(loop, self.settings.publish_timeout_s)
                self._body_expiry = Expiry(loop, self.settings.request_timeout_s)
                await self.publisher.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.publisher.stop()
                self._heavy.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _get(self, path: str, send: Any) -> None:
        if path == "/healthz":
            await _respond(send, 200, {"status": "ok"})
        elif path == "/readyz":
            if self.publisher.ready:
                await _respond(send, 200, {"status": "ready"})
            else:
                await _respond(
                    send,
                    503,
                    {"status": "broker unreachable"},
                    [(b"retry-after", self._retry_after)],
                )
        elif path == "/metrics":
            await _send(send, 200, self.metrics.render(), [_TEXT])
        else:
            await _send(send, 200, self._openapi, [_JSON])

    async def _read_body(
        self, content_length: bytes | None, receive: Any, send: Any
    ) -> bytes | None:
        """The whole body, or None after answering 413/408 (or on a client disconnect)."""
        limit = self.settings.max_body_bytes
        if content_length is not None and content_length.isdigit() and int(content_length) > limit:
            await self._too_large(send, [_CLOSE])  # not read: the connection cannot go on
            return None
        task = asyncio.current_task(self._loop)
        assert task is not None
        cancelling = task.cancelling()
        deadline = self._body_expiry.watch(task)
        chunks: list[bytes] = []
        size = 0
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return None
                chunk: bytes = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    break  # answered below, once the deadline no longer applies
                if not message.get("more_body", False):
                    if not chunks:
                        return chunk
                    chunks.append(chunk)
                    return b"".join(chunks)
                chunks.append(chunk)
        except asyncio.CancelledError:
            # Our deadline, unless a cancellation from outside (shutdown) came too.
            if not self._body_expiry.expired(deadline) or task.uncancel() > cancelling:
                raise
        finally:
            self._body_expiry.done(deadline)
        if size > limit:
            await self._too_large(send)
            return None
        self.metrics.requests["timeout"].inc()
        await _respond(send, 408, {"error": "body not received in time"})
        return None

    async def _too_large(
        self, send: Any, extra: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        self.metrics.requests["too_large"].inc()
        limit = self.settings.max_body_bytes
        await _respond(send, 413, {"error": f"body larger than {limit} bytes"}, extra)

    async def _webhook(self, scope: Scope, receive: Any, send: Any) -> None:
        signature = authorization = content_length = None
        chunked = False
        for name, value in scope["headers"]:  # one pass over the headers
            if name == b"x-edume-signature":
                signature = value
            elif name == b"authorization":
                authorization = value
            elif name == b"content-length":
                content_length = value
            elif name == b"transfer-encoding":
                chunked = True
        # A body announced and not read: answered early, the connection is closed, so that
        # the server does not go on reading (and dropping) what the sender still sends.
        unread = [_CLOSE] if chunked or content_length not in (None, b"0") else None
        try:
            credentials = self.verifier.check_headers(signature, authorization)
        except VerificationError as exc:
            await self._refuse(send, exc, signature is None and authorization is None, unread)
            return
        if self._active >= self._max_active:
            await self._overloaded(send, "too many requests at once", unread)
            return
        self._active += 1
        try:
            await self._admitted(credentials, content_length, receive, send)
        finally:
            self._active -= 1

    async def _verify(self, body: bytes, credentials: Credentials, send: Any) -> Verified | None:
        """The verified webhook, or None after answering 401/400/503."""
        try:
            try:
                return self.verifier.verify_body(body, credentials, light=True)
            except HeavyDocument:
                pass
            if self._heavy.busy:
                await self._overloaded(send, "busy verifying another complex body")
                return None
            return await self._heavy.run(partial(self.verifier.verify_body, body, credentials))
        except VerificationError as exc:
            await self._refuse(send, exc, False)
            return None

    async def _refuse(
        self,
        send: Any,
        exc: VerificationError,
        missing: bool,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        status = exc.http_status or 400
        if status == 401:
            self.metrics.requests["unauthorized"].inc()
            self.metrics.verification_failures["missing" if missing else "mismatch"].inc()
        else:
            self.metrics.requests["bad_request"].inc()
        await _respond(send, status, {"error": str(exc)}, extra)

    async def _admitted(
        self, credentials: Credentials, content_length: bytes | None, receive: Any, send: Any
    ) -> None:
        """Read, verify, validate, key and publish one webhook whose headers passed."""
        body = await self._read_body(content_length, receive, send)
        if body is None:
            return
        verified = await self._verify(body, credentials, send)
        if verified is None:
            return

        now = time.time()
        document = verified.document
        received_type = document.get("type")
        event_type = canonical_type(received_type)
        dlq_kind: str | None = None
        dlq_reason = ""
        if event_type is None:
            dlq_kind = "unknown_type"
            dlq_reason = (
                f"unknown type {received_type[:100]!r}"
                if isinstance(received_type, str)
                else "type missing or not a string"
            )
        else:
            try:
                event = WEBHOOK_ADAPTER.validate_python(document)
            except ValidationError as exc:
                dlq_kind = "schema_mismatch"
                summary = summarise_validation(exc, document)
                dlq_reason = f"{event_type} does not match its schema: {summary}"
            else:
                skew = timestamp_skew(event.timestamp, int(now * 1_000_000),
                                      self.settings.max_clock_skew_s)
                if skew is not None:
                    dlq_kind = "clock_skew"
                    dlq_reason = f"{event_type} {skew}"

        event_id = verified.event_id
        id_bytes = event_id.encode()
        headers: Headers = [(EVENT_ID, id_bytes)]
        if event_type is not None:
            headers.append((EVENT_TYPE, event_type.encode()))
        headers.append((RECEIVED_AT, self._clock(now)))
        if verified.method != "bearer" and credentials.digest is not None:
            # How it was authenticated: the HMAC verified (the proof of training.evidence).
            headers.append((SIGNATURE, credentials.digest.hex().encode()))
        if dlq_kind is None:
            topic = self._event_topic[event.FAMILY]
            key = str(event.routing_id).encode()
            value = verified.canonical
        else:
            topic = self._dlq_topic
            key = id_bytes
            value = body
            headers.append((DLQ_REASON, dlq_reason.encode()))
        await self._publish_once(
            send, bytes.fromhex(event_id), event_id, topic, key, value, headers, dlq_kind
        )

    async def _publish_once(
        self,
        send: Any,
        digest: bytes,
        event_id: str,
        topic: str,
        key: bytes,
        value: bytes,
        headers: Headers,
        dlq_kind: str | None,
    ) -> None:
        """Publish unless this id was acknowledged recently or is being delivered right now.

        A delivery stays in ``_in_flight`` until the broker settles it, even after its own
        request was answered 503: eduMe's retry then waits for that same delivery instead of
        writing the event a second time, and is answered ``duplicate`` once it lands.
        """
        if digest in self.recent:
            return await self._accepted(send, event_id, topic, duplicate=True)
        assert self._loop is not None
        started = time.monotonic()
        delivery = self._in_flight.get(digest)
        if delivery is not None and started - delivery.queued_at > self._stale_after_s:
            # The producer reports every record within its message timeout; an entry much
            # older than that will never be settled (a producer dropped while holding it):
            # fail it, so that this event is publishable again.
            delivery.settle(BrokerUnavailable("the delivery was never reported"))
            delivery = None
        duplicate = delivery is not None
        if delivery is None:
            delivery = _InFlight(self, digest, started)
            self._in_flight[digest] = delivery
            # Not queued: no report will come, so settle it here, whatever went wrong.
            try:
                self.publisher.publish(topic, key, value, headers, delivery)
            except PublishError as exc:
                delivery.settle(exc)
                log.warning("publish of %s to %s failed: %s", event_id, topic, exc)
                return await self._unavailable(send, str(exc))
            except Exception as exc:
                failure = BrokerUnavailable(f"the producer failed: {type(exc).__name__}")
                delivery.settle(failure)
                log.exception("publishing %s to %s failed", event_id, topic)
                return await self._unavailable(send, str(failure))
            except BaseException:
                delivery.settle(BrokerUnavailable("interrupted"))
                raise
        waiter: asyncio.Future[None] = self._loop.create_future()
        delivery.waiters.append(waiter)
        deadline = self._ack_expiry.watch(waiter)
        try:
            await waiter
        except PublishError as exc:
            log.warning("publish of %s to %s failed: %s", event_id, topic, exc)
            return await self._unavailable(send, str(exc))
        except TimeoutError:
            if not duplicate:
                self.publisher.mark_unreachable()
            log.warning(
                "no acknowledgement for %s on %s within %.1fs",
                event_id, topic, self.settings.publish_timeout_s,
            )
            return await self._unavailable(send, "the broker did not acknowledge in time")
        finally:
            self._ack_expiry.done(deadline)
            # The failure's traceback holds this frame, which holds the waiter, which holds
            # the failure: break the cycle, so that the body is freed at once.
            del waiter
        if duplicate:
            return await self._accepted(send, event_id, topic, duplicate=True)
        m = self.metrics
        m.publish_seconds.observe(time.monotonic() - started)
        m.published[topic].inc()
        if dlq_kind is not None:
            m.dlq[dlq_kind].inc()
        await self._accepted(send, event_id, topic, duplicate=False, dlq=dlq_kind is not None)

    async def _accepted(
        self, send: Any, event_id: str, topic: str, *, duplicate: bool, dlq: bool = False
    ) -> None:
        self.metrics.requests["duplicate" if duplicate else "dlq" if dlq else "published"].inc()
        await _respond(send, 202, {"eventId": event_id, "topic": topic, "duplicate": duplicate})

    async def _unavailable(self, send: Any, reason: str) -> None:
        self.metrics.requests["unavailable"].inc()
        await _respond(send, 503, {"error": reason}, [(b"retry-after", self._retry_after)])

    async def _overloaded(
        self, send: Any, reason: str, extra: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        self.metrics.requests["overloaded"].inc()
        await _respond(
            send, 503, {"error": reason}, [(b"retry-after", self._retry_after), *(extra or ())]
        )


async def _respond(
    send: Any, status: int, payload: dict[str, Any], extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    await _send(send, status, orjson.dumps(payload), [_JSON, *(extra or ())])


async def _send(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
