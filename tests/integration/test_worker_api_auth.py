"""The query API's authentication between two real workers over loopback: a bearer token on
every data page (either of two rotated tokens), the open pages open, link URLs for link
tokens only, also through a forward to the worker that owns the key, and a request marked
as forwarded refused without a routing credential valid for that worker and that request."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from confluent_kafka import Producer

from streams.core import topics
from streams.core.signing import build_link, sign_link
from streams.kafka.admin import ensure_topics
from streams.worker.auth import (
    REPLY_AUTH_HEADER,
    ROUTED_AUTH_HEADER,
    ApiAuth,
    Forward,
)
from streams.worker.web import ROUTED_HEADER
from tests.support import read_topic
from tests.worker_support import (
    API_TOKEN,
    LINK_SECRET,
    LINK_TOKEN,
    NEXT_API_TOKEN,
    WorkerProcess,
    bearer,
    eventually,
    learner_story,
    publish,
)

pytestmark = pytest.mark.integration

USERS = list(range(9100, 9112))
TOKENS = (API_TOKEN, NEXT_API_TOKEN, LINK_TOKEN)
AUTH = ApiAuth((API_TOKEN, NEXT_API_TOKEN), (LINK_TOKEN,))
"""What the workers hold (tests/worker_support.py gives them these tokens)."""


def ext(user: int) -> str:
    return f"ext-{user}"  # the eId learner_story gives


def hub_link(user: int) -> str:
    return sign_link(build_link("hub", base_url="https://learn.edume.com/e",
                                external_user_id=ext(user), content_id=None, team_ids=[7]),
                     LINK_SECRET)


def request_hub_links(bootstrap: str, topic: str) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random",
                         "acks": "all"})
    failures: list[Any] = []
    for user in USERS:
        value = json.dumps({"kind": "hub", "externalUserId": ext(user), "teamIds": [7]})
        producer.produce(topic, value.encode(), ext(user).encode(),
                         on_delivery=lambda err, _m: failures.append(err) if err else None)
    assert producer.flush(30) == 0 and not failures


def links_path(user: int) -> str:
    return "/links?externalUserId=" + quote(ext(user), safe="")


async def forwarded(to: WorkerProcess, by: WorkerProcess, path: str,
                    query: tuple[tuple[str, str], ...] = (), *, links: bool,
                    auth: ApiAuth = AUTH, issued_s: float | None = None,
                    audience: str | None = None) -> tuple[int, Any, Any]:
    """A request as worker ``by`` forwards it to ``to``, with a credential made here; every
    answer, a refusal too, must carry the receiver's signature over it, valid for the
    workers' tokens."""
    request = Forward("GET", audience or to.url, path, query, by.url)
    credential = auth.credential(request, links=links,
                                 now_s=time.time() if issued_s is None else issued_s)
    async with aiohttp.ClientSession() as http, http.get(
        to.url + path, params=list(query),
        headers={ROUTED_HEADER: by.url, ROUTED_AUTH_HEADER: credential},
        timeout=aiohttp.ClientTimeout(total=10),
    ) as reply:
        raw = await reply.read()
        status, headers = reply.status, reply.headers.copy()
    assert AUTH.check_reply(credential, status, raw, headers.get(REPLY_AUTH_HEADER)), (
        status, raw)
    return status, headers, json.loads(raw)


async def test_tokens_link_urls_and_forwards_between_two_workers(
    broker: Any, prefix: str, tmp_path: Path
) -> None:
    await ensure_topics(broker.kafka, prefix)
    publish(broker.bootstrap, prefix,
            [e for u in USERS for e in learner_story(u, [1], [], 5)])
    request_hub_links(broker.bootstrap, prefix + topics.LINK_REQUESTS)
    first = WorkerProcess(broker, prefix, tmp_path).start()
    second = WorkerProcess(broker, prefix, tmp_path)
    try:
        await first.wait_ready(90)
        issued = await read_topic(broker.bootstrap, prefix + topics.LINK_ISSUED, len(USERS),
                                  timeout_s=60)
        assert sorted(json.loads(r.value)["url"] for r in issued) == sorted(
            hub_link(u) for u in USERS)
        second.start()

        async def shared() -> bool:  # both ready, each the owner of some keys
            try:
                if not all([(await w.get("/readyz", None))[0] == 200
                            for w in (first, second)]):
                    return False
                owners = await links_owners(first, second)
            except OSError:  # the second one's web server is not up yet
                return False
            return len(set(owners.values())) == 2

        assert await eventually(shared, 90, every_s=0.5), second.log_text()[-3000:]
        for worker in (first, second):
            await check_tokens(worker)
        await check_forwards(first, second)
        await check_forged_forwards(first, second)
        for worker in (first, second):
            _, metrics = await worker.get("/metrics", None)
            assert not any(token in metrics for token in TOKENS)
    finally:
        first_status, second_status = first.stop(), second.stop()
    assert (first_status, second_status) == (0, 0), second.log_text()[-3000:]
    for worker in (first, second):
        log = worker.log_text()
        assert not any(token in log for token in TOKENS), "a token in the worker's log"


async def links_owners(first: WorkerProcess, second: WorkerProcess) -> dict[int, str]:
    """Which worker owns each user's links: a forwarded request is answered by the owner
    (200) and refused by the other (503: it never forwards again)."""
    owners: dict[int, str] = {}
    for user in USERS:
        answers = {}
        for to, by in ((first, second), (second, first)):
            status, _, _ = await forwarded(to, by, "/links", (("externalUserId", ext(user)),),
                                           links=False)
            answers[to.url] = status
        assert sorted(answers.values()) in ([200, 503], [503, 503]), answers
        owner = [url for url, status in answers.items() if status == 200]
        if owner:
            owners[user] = owner[0]
    return owners


async def check_tokens(worker: WorkerProcess) -> None:
    user = USERS[0]
    data = ["/catalog/courses/1", f"/learners/{user}/progress", f"/learners/{user}/mandatory",
            f"/learners/{user}/links", links_path(user)]
    for path in data:
        for headers in ({}, bearer("not-a-token"), bearer(LINK_SECRET),
                        {"Authorization": f"Basic {API_TOKEN}"}, {"Authorization": API_TOKEN}):
            status, answer_headers, body = await worker.request(path, headers)
            assert status == 401, (path, headers, status)
            assert answer_headers["WWW-Authenticate"] == "Bearer", path
            assert set(body) == {"error"} and "WORKER_API_TOKENS" in body["error"]
        answers = [await worker.get(path, token) for token in TOKENS]
        assert {status for status, _ in answers} <= {200, 404}, (path, answers)
        assert answers[0] == answers[1], path  # either token of a rotation
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert (await worker.get(path, None))[0] == 200, path
        assert (await worker.get(path, "not-a-token"))[0] == 200, path


async def check_forwards(first: WorkerProcess, second: WorkerProcess) -> None:
    """Asked of either worker, so that one of the two answers forwards the request to the
    other: URLs for a link token only, the same answer otherwise."""
    for user in USERS:
        for worker in (first, second):
            for path in (links_path(user), f"/learners/{user}/links"):
                status, shown = await worker.get(path, LINK_TOKEN)
                assert status == 200, (worker.url, path, shown)
                assert [link["url"] for link in shown["links"]] == [hub_link(user)]
                for token in (API_TOKEN, NEXT_API_TOKEN):
                    status, hidden = await worker.get(path, token)
                    assert status == 200, (worker.url, path, hidden)
                    assert hidden["links"] == [{k: v for k, v in link.items() if k != "url"}
                                               for link in shown["links"]]
            status, progress = await worker.get(f"/learners/{user}/progress")
            assert status == 200 and progress["externalUserId"] == ext(user)


async def check_forged_forwards(first: WorkerProcess, second: WorkerProcess) -> None:
    owners = await links_owners(first, second)
    user, owner_url = next(iter(owners.items()))
    owner, other = (first, second) if owner_url == first.url else (second, first)
    query = (("externalUserId", ext(user)),)
    # A valid credential: the owner answers, with URLs only if the credential says so.
    status, _, hidden = await forwarded(owner, other, "/links", query, links=False)
    assert status == 200 and hidden["links"] and "url" not in hidden["links"][0]
    status, _, shown = await forwarded(owner, other, "/links", query, links=True)
    assert status == 200 and shown["links"][0]["url"] == hub_link(user)
    # X-Edume-Routed-By without a credential, even beside a good bearer token.
    for headers in ({ROUTED_HEADER: other.url},
                    {ROUTED_HEADER: other.url, **bearer(LINK_TOKEN)},
                    {ROUTED_HEADER: other.url, ROUTED_AUTH_HEADER: LINK_TOKEN}):
        status, answer_headers, body = await owner.request(links_path(user), headers)
        assert status == 401 and answer_headers["WWW-Authenticate"] == "Bearer", headers
        assert body == {"error": "a forwarded request needs a valid routing credential"}
    refused = [
        # issued for the other worker (what a rogue URL would receive), replayed here
        await forwarded(owner, other, "/links", query, links=True, audience=other.url),
        # too old, or keyed by tokens these workers do not have
        await forwarded(owner, other, "/links", query, links=True,
                        issued_s=time.time() - 120),
        await forwarded(owner, other, "/links", query, links=True,
                        auth=ApiAuth(("someone-else",), ())),
    ]
    assert [status for status, _, _ in refused] == [401, 401, 401]
    # A credential for one key does not open another.
    credential = AUTH.credential(Forward("GET", owner.url, "/links", query, other.url),
                                 links=True, now_s=time.time())
    status, _, _ = await owner.request(
        links_path(USERS[-1] if USERS[-1] != user else USERS[0]),
        {ROUTED_HEADER: other.url, ROUTED_AUTH_HEADER: credential})
    assert status == 401
