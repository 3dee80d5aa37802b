"""The query API's authentication as pure logic: bearer tokens compared in constant time,
the routing credential of a forwarded request and the signed reply, peer URLs, the
settings that hold the tokens, and what the OpenAPI document declares."""

from __future__ import annotations

import hmac
import traceback
from typing import Any

import pytest

from streams.core.errors import ConfigurationError
from streams.settings import SECRET_FILE_VARS, Settings
from streams.worker import auth as auth_module
from streams.worker.auth import FORWARD_TTL_S, Access, ApiAuth, Forward, peer_url

OLD, NEW, LINK = "api-token-old", "api-token-new", "link-token-1"
NOW = 1_760_000_000.0
REQUEST = Forward("GET", "http://10.0.0.2:6066", "/learners/10217/links", (),
                  "http://10.0.0.1:6066")
LINKS_QUERY = Forward("GET", "http://10.0.0.2:6066", "/links",
                      (("externalUserId", "alice smith/é"),), "http://10.0.0.1:6066")


def make(api: tuple[str, ...] = (OLD, NEW), link: tuple[str, ...] = (LINK,)) -> ApiAuth:
    return ApiAuth(api, link)


# ------------------------------------------------------------------------ bearer tokens


@pytest.mark.parametrize(("header", "expected"), [
    (f"Bearer {OLD}", Access(links=False)),
    (f"Bearer {NEW}", Access(links=False)),
    (f"bearer {NEW}", Access(links=False)),
    (f"BEARER   {OLD}  ", Access(links=False)),
    (f"Bearer {LINK}", Access(links=True)),
])
def test_either_api_token_is_accepted_and_a_link_token_sees_urls(
    header: str, expected: Access
) -> None:
    assert make().bearer(header) == expected


@pytest.mark.parametrize("header", [
    None, "", "Bearer", "Bearer ", OLD, f"Basic {OLD}", f"Token {OLD}", f"Bearer {OLD}x",
    f"Bearer {OLD[:-1]}", f"Bearer {OLD.upper()}", "Bearer api-token-older", f"Bearer{OLD}",
    f"Bearer {OLD} {NEW}",
])
def test_anything_else_is_refused(header: str | None) -> None:
    assert make().bearer(header) is None


def test_a_token_in_both_lists_sees_urls() -> None:
    assert ApiAuth((OLD,), (OLD,)).bearer(f"Bearer {OLD}") == Access(links=True)


def test_without_api_tokens_there_is_no_api() -> None:
    with pytest.raises(ConfigurationError, match="set WORKER_API_TOKENS"):
        ApiAuth((), (LINK,))


def test_the_checker_compares_every_token_in_constant_time_whatever_matches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each configured token is compared with ``hmac.compare_digest`` over equal-length
    digests, and all of them are, whether the first, the last or none matches: neither the
    time taken nor the lengths compared say which token, if any, was right."""
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counting(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth_module.hmac, "compare_digest", counting)
    checker = ApiAuth((OLD, NEW, "api-token-third"), (LINK,))
    for header in (f"Bearer {OLD}", f"Bearer {LINK}", "Bearer wrong", "Bearer " + "x" * 500):
        calls.clear()
        checker.bearer(header)
        assert len(calls) == 4, header
        assert {(len(a), len(b)) for a, b in calls} == {(32, 32)}, header


def test_the_checker_does_not_show_its_tokens() -> None:
    checker = make()
    assert not any(token in repr(checker) for token in (OLD, NEW, LINK))


# ------------------------------------------------------------------ forwarded requests


def test_a_credential_grants_the_access_it_was_issued_for() -> None:
    auth = make()
    for links in (False, True):
        for request in (REQUEST, LINKS_QUERY):
            credential = auth.credential(request, links=links, now_s=NOW)
            assert auth.check_credential(credential, request, now_s=NOW + 1) == Access(
                links=links, credential=credential)


@pytest.mark.parametrize("other", [
    Forward("HEAD", REQUEST.audience, REQUEST.path, REQUEST.query, REQUEST.routed_by),
    Forward("GET", "http://10.0.0.3:6066", REQUEST.path, REQUEST.query, REQUEST.routed_by),
    Forward("GET", REQUEST.audience, "/learners/10218/links", REQUEST.query,
            REQUEST.routed_by),
    Forward("GET", REQUEST.audience, REQUEST.path, (("externalUserId", "x"),),
            REQUEST.routed_by),
    Forward("GET", REQUEST.audience, REQUEST.path, REQUEST.query, "http://10.0.0.9:6066"),
], ids=["method", "audience", "path", "query", "routed-by"])
def test_a_credential_is_good_for_its_own_request_only(other: Forward) -> None:
    """Sent to a rogue URL, it opens nothing else: not another key, not another worker
    (the audience is the URL it was sent to)."""
    auth = make()
    credential = auth.credential(REQUEST, links=True, now_s=NOW)
    assert auth.check_credential(credential, other, now_s=NOW) is None


def test_a_query_value_is_bound_exactly() -> None:
    auth = make()
    credential = auth.credential(LINKS_QUERY, links=False, now_s=NOW)
    changed = Forward("GET", LINKS_QUERY.audience, "/links",
                      (("externalUserId", "alice smith/e"),), LINKS_QUERY.routed_by)
    assert auth.check_credential(credential, changed, now_s=NOW) is None


def test_a_credential_expires_either_way() -> None:
    auth = make()
    credential = auth.credential(REQUEST, links=False, now_s=NOW)
    assert auth.check_credential(credential, REQUEST, now_s=NOW + FORWARD_TTL_S) is not None
    assert auth.check_credential(credential, REQUEST, now_s=NOW - FORWARD_TTL_S) is not None
    assert auth.check_credential(credential, REQUEST, now_s=NOW + FORWARD_TTL_S + 1) is None
    assert auth.check_credential(credential, REQUEST, now_s=NOW - FORWARD_TTL_S - 1) is None


def test_the_link_visibility_cannot_be_raised() -> None:
    auth = make()
    credential = auth.credential(REQUEST, links=False, now_s=NOW)
    version, issued, links, macs = credential.split(" ")
    assert links == "0"
    raised = " ".join((version, issued, "1", macs))
    assert auth.check_credential(raised, REQUEST, now_s=NOW) is None
    later = " ".join((version, str(int(issued) + 5), links, macs))
    assert auth.check_credential(later, REQUEST, now_s=NOW) is None


def test_a_credential_does_not_carry_a_token() -> None:
    credential = make().credential(REQUEST, links=True, now_s=NOW)
    assert not any(token in credential for token in (OLD, NEW, LINK))


def test_only_a_worker_with_a_shared_api_token_can_forward() -> None:
    sender = ApiAuth(("someone-else",), ())
    credential = sender.credential(REQUEST, links=True, now_s=NOW)
    assert make().check_credential(credential, REQUEST, now_s=NOW) is None
    # A link token is no forwarding key: the keys come from WORKER_API_TOKENS alone.
    by_link = ApiAuth((LINK,), ()).credential(REQUEST, links=True, now_s=NOW)
    assert make().check_credential(by_link, REQUEST, now_s=NOW) is None


@pytest.mark.parametrize(("sender", "receiver", "understood"), [
    ((OLD,), (OLD, NEW), True),
    ((OLD, NEW), (NEW,), True),
    ((NEW, OLD), (OLD,), True),
    ((NEW,), (OLD, NEW), True),
    ((OLD,), (NEW,), False),
])
def test_workers_understand_each_other_through_a_rotation(
    sender: tuple[str, ...], receiver: tuple[str, ...], understood: bool
) -> None:
    """One MAC per token of the sender; any key of the receiver's may match: workers that
    share one token agree, in whatever order their lists are."""
    a, b = ApiAuth(sender), ApiAuth(receiver)
    credential = a.credential(REQUEST, links=False, now_s=NOW)
    assert (b.check_credential(credential, REQUEST, now_s=NOW) is not None) is understood
    body = b'{"userId":10217}'
    assert a.check_reply(credential, 200, body, b.reply_mac(credential, 200, body)) is understood


@pytest.mark.parametrize("credential", [
    None, "", "v1", "v2 1760000000 0 " + "00" * 32, "v1 x 0 " + "00" * 32,
    "v1 1760000000 2 " + "00" * 32, "v1 1760000000 0 zz", "v1 1760000000 0 " + "00" * 31,
    "v1 -1760000000 0 " + "00" * 32, "v1 1760000000 0 " + ",".join(["00" * 32] * 9),
    "v1  1760000000 0 " + "00" * 32, "v1 ١٧٦٠٠٠٠٠٠٠ 0 " + "00" * 32,
])
def test_a_malformed_credential_is_refused(credential: str | None) -> None:
    assert make().check_credential(credential, REQUEST, now_s=NOW) is None


def test_a_reply_is_signed_over_the_request_status_and_body() -> None:
    auth = make()
    credential = auth.credential(REQUEST, links=True, now_s=NOW)
    body = b'{"links":[]}'
    mac = auth.reply_mac(credential, 200, body)
    assert auth.check_reply(credential, 200, body, mac)
    assert not auth.check_reply(credential, 200, body + b" ", mac)
    assert not auth.check_reply(credential, 404, body, mac)
    other = auth.credential(LINKS_QUERY, links=True, now_s=NOW)
    assert not auth.check_reply(other, 200, body, mac)  # not replayed onto another request
    assert not auth.check_reply(credential, 200, body, None)
    assert not auth.check_reply(credential, 200, body, "not hex")
    stranger = ApiAuth(("someone-else",))
    assert not auth.check_reply(credential, 200, body, stranger.reply_mac(credential, 200, body))


# --------------------------------------------------------------------------- peer URLs


@pytest.mark.parametrize(("advertised", "used"), [
    ("http://10.0.0.2:6066", "http://10.0.0.2:6066"),
    ("http://10.0.0.2:6066/", "http://10.0.0.2:6066"),
    ("https://worker-1.workers.svc:6066", "https://worker-1.workers.svc:6066"),
    ("http://[::1]:6066", "http://[::1]:6066"),
    ("http://proxy.internal/worker-1/", "http://proxy.internal/worker-1"),
])
def test_a_plain_worker_url_is_used_as_advertised(advertised: str, used: str) -> None:
    assert peer_url(advertised) == used


@pytest.mark.parametrize("advertised", [
    "", "ftp://10.0.0.2:6066", "file:///etc/passwd", "http://", "http://:6066",
    "http://user:pass@10.0.0.2:6066", "http://evil@10.0.0.2:6066",
    "http://10.0.0.2:6066/?x=", "http://10.0.0.2:6066?x=1", "http://10.0.0.2:6066#x",
    "http://10.0.0.2:port", "http://10.0.0.2:6066 /", "10.0.0.2:6066", "//10.0.0.2:6066",
])
def test_any_other_advertised_url_gets_no_forward(advertised: str) -> None:
    assert peer_url(advertised) is None


# ----------------------------------------------------------------------------- settings


def test_the_token_settings_are_comma_separated_secrets() -> None:
    settings = Settings.from_env({"WORKER_API_TOKENS": f" {OLD}, {NEW},,",
                                  "WORKER_LINK_TOKENS": LINK})
    assert settings.worker_api_tokens == (OLD, NEW)
    assert settings.worker_link_tokens == (LINK,)
    assert Settings().worker_link_tokens == ()
    for text in (repr(settings), str(settings)):
        assert not any(token in text for token in (OLD, NEW, LINK)), text
    assert Settings.from_env(settings.to_env()) == settings
    assert {"WORKER_API_TOKENS_FILE", "WORKER_LINK_TOKENS_FILE"} <= SECRET_FILE_VARS.keys()


UNSENDABLE = "fine-token,s3cret wïth space"


@pytest.mark.parametrize("var", ["WORKER_API_TOKENS", "WORKER_LINK_TOKENS"])
def test_a_token_that_cannot_travel_in_a_header_stops_start_up_unrepeated(var: str) -> None:
    with pytest.raises(ConfigurationError, match=f"{var} entries must be visible ASCII") as info:
        Settings.from_env({var: UNSENDABLE})
    text = str(info.value) + "".join(traceback.format_exception(info.value))
    assert "s3cret" not in text and "fine-token" not in text, text


def test_the_worker_requires_api_tokens() -> None:
    with pytest.raises(ConfigurationError, match="set WORKER_API_TOKENS"):
        Settings(worker_link_tokens=(LINK,)).require_worker_api_tokens()
    Settings(worker_api_tokens=(OLD,)).require_worker_api_tokens()


# ---------------------------------------------------------------------- OpenAPI, views


def test_the_document_asks_a_bearer_token_on_the_data_pages_only() -> None:
    from streams.worker.openapi import worker_openapi_document

    doc = worker_openapi_document()
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    data = {"/catalog/courses/{course_id}", "/learners/{user_id}/progress",
            "/learners/{user_id}/mandatory", "/learners/{user_id}/links", "/links",
            "/learners/{user_id}/evidence"}
    for path, item in doc["paths"].items():
        get = item["get"]
        if path in data:
            assert get["security"] == [{"bearer": []}], path
            unauthorized = get["responses"]["401"]
            assert unauthorized["headers"]["WWW-Authenticate"]["required"] is True, path
        else:
            assert get["security"] == [] and "401" not in get["responses"], path
    assert data < doc["paths"].keys()
    link = doc["components"]["schemas"]["IssuedLink"]
    assert "url" in link["properties"] and "url" not in link["required"]


def test_links_lose_their_urls_unless_the_caller_may_see_them() -> None:
    from streams.worker.web import links_visible

    body = {"userId": 1, "externalUserId": "e", "links": [
        {"kind": "hub", "url": "https://learn.edume.com/e/d/?g=1&e=e&sig=ab", "reason": "request"},
        {"kind": "course", "url": "https://learn.edume.com/e/c/2?g=1&e=e&sig=cd",
         "reason": "assignment"}]}
    assert links_visible(body, Access(links=True)) == body
    hidden = links_visible(body, Access(links=False))
    assert hidden == {"userId": 1, "externalUserId": "e", "links": [
        {"kind": "hub", "reason": "request"}, {"kind": "course", "reason": "assignment"}]}
    assert body["links"][0]["url"]  # the original is left as it was
