"""streams.core.signing: one test per verification outcome, properties, and links checked by
Node."""

from __future__ import annotations

import hashlib
import hmac
import json
import pickle
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core import errors
from streams.core.errors import (
    ConfigurationError,
    LinkError,
    MalformedBody,
    SignatureMismatch,
    SignatureMissing,
    VerificationError,
)
from streams.core.jsjson import stringify
from streams.core.signing import (
    LINK_KINDS,
    Verified,
    WebhookVerifier,
    build_link,
    sign_link,
    sign_webhook,
)
from tests.unit import node_oracle

SECRET = "s3cret-for-tests-0123"
ROTATED = "rotated-secret-abcdef"
TOKEN = "bearer-token-xyz"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"

DOC: dict[str, Any] = {
    "type": "learner.activity.finished",
    "payload": {
        "type": "lesson",
        "user": {"eId": "3497b389-7076-43ef-b53b-13bec756cae5", "userId": 10215,
                 "identifiers": [{"id": 1, "key": "k", "value": "Zoë",
                                  "createdAt": "2022-02-24T13:11:48.642Z"}]},
        "group": {"groupId": 5},
        "course": {"courseId": 9961},
        "lesson": {"lessonId": 28856},
        "module": {"moduleId": 10658},
        "score": 50.0,
        "version": 1,
    },
    "timestamp": "2022-07-21T13:01:59.636Z",
}
PRETTY = json.dumps(DOC, indent=2).encode()
JS = stringify(DOC)  # what eduMe signs: 50.0 prints as 50, é stays raw


def _sig(message: bytes, secret: str = SECRET) -> bytes:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest().encode()


@pytest.fixture
def verifier() -> WebhookVerifier:
    return WebhookVerifier([SECRET, ROTATED], [TOKEN])


# ------------------------------------------------------------------ accepted forms


def test_raw_signed_compact_body(verifier: WebhookVerifier) -> None:
    got = verifier.verify(JS, _sig(JS), None)
    assert got.method == "raw"
    assert got.document == DOC
    assert got.canonical == JS
    assert got.event_id == hashlib.sha256(JS).hexdigest()


def test_js_form_signed_pretty_body(verifier: WebhookVerifier) -> None:
    got = verifier.verify(PRETTY, _sig(JS), None)
    assert got.method == "js"
    assert got.canonical == JS
    assert got.event_id == hashlib.sha256(JS).hexdigest()  # same id however it was sent


def test_raw_signed_pretty_body(verifier: WebhookVerifier) -> None:
    got = verifier.verify(PRETTY, _sig(PRETTY), None)
    assert got.method == "raw"
    assert got.event_id == hashlib.sha256(JS).hexdigest()


def test_uppercase_hex_accepted(verifier: WebhookVerifier) -> None:
    assert verifier.verify(PRETTY, _sig(JS).upper(), None).method == "js"
    assert verifier.verify(JS, _sig(JS).upper(), None).method == "raw"


@pytest.mark.parametrize("prefix", [b"sha256=", b"SHA256=", b"Sha256="])
def test_sha256_prefix_accepted(verifier: WebhookVerifier, prefix: bytes) -> None:
    assert verifier.verify(JS, prefix + _sig(JS), None).method == "raw"
    assert verifier.verify(PRETTY, prefix + _sig(JS).upper(), None).method == "js"


def test_surrounding_whitespace_in_header_tolerated(verifier: WebhookVerifier) -> None:
    assert verifier.verify(JS, b" " + _sig(JS) + b"\t", None).method == "raw"


def test_str_headers_accepted(verifier: WebhookVerifier) -> None:
    assert verifier.verify(JS, _sig(JS).decode(), None).method == "raw"
    assert verifier.verify(JS, None, f"Bearer {TOKEN}").method == "bearer"


def test_secret_rotation_second_secret_verifies(verifier: WebhookVerifier) -> None:
    assert verifier.verify(JS, _sig(JS, ROTATED), None).method == "raw"
    assert verifier.verify(PRETTY, _sig(JS, ROTATED), None).method == "js"


def test_secrets_are_stripped_like_environment_values() -> None:
    v = WebhookVerifier([f"  {SECRET}\n"])
    assert v.verify(JS, _sig(JS), None).method == "raw"
    assert sign_webhook(f" {SECRET} ", JS) == _sig(JS).decode()


def test_sign_webhook_is_lowercase_hex_hmac() -> None:
    assert sign_webhook(SECRET, JS) == _sig(JS).decode()
    assert sign_webhook(SECRET, JS).islower()
    with pytest.raises(ConfigurationError, match="is empty"):
        sign_webhook("  ", JS)


# -------------------------------------------------------------------- bearer tokens


@pytest.mark.parametrize("header", [f"Bearer {TOKEN}", f"bearer {TOKEN}", f"BEARER  {TOKEN} "])
def test_bearer_valid(verifier: WebhookVerifier, header: str) -> None:
    got = verifier.verify(PRETTY, None, header.encode())
    assert got.method == "bearer"
    assert got.canonical == JS


def test_bearer_valid_wins_over_a_wrong_signature(verifier: WebhookVerifier) -> None:
    assert verifier.verify(PRETTY, b"0" * 64, f"Bearer {TOKEN}".encode()).method == "bearer"


@pytest.mark.parametrize("token", ["not-the-token", TOKEN + "x", TOKEN[:-1], TOKEN.upper()])
def test_bearer_invalid_token(verifier: WebhookVerifier, token: str) -> None:
    with pytest.raises(SignatureMissing, match="not an accepted bearer token"):
        verifier.verify(PRETTY, None, f"Bearer {token}".encode())


@pytest.mark.parametrize("header", [f"Basic {TOKEN}", TOKEN, f"Token {TOKEN}", "Bearer", ""])
def test_bearer_wrong_scheme(verifier: WebhookVerifier, header: str) -> None:
    with pytest.raises(SignatureMissing):
        verifier.verify(PRETTY, None, header.encode())


def test_bearer_invalid_but_signature_valid(verifier: WebhookVerifier) -> None:
    assert verifier.verify(JS, _sig(JS), b"Bearer wrong").method == "raw"


def test_bearer_non_ascii_header_is_refused_not_crashed(verifier: WebhookVerifier) -> None:
    with pytest.raises(SignatureMissing):
        verifier.verify(JS, None, "Bearer tökén".encode())


def test_tokens_only_verifier() -> None:
    v = WebhookVerifier([], [TOKEN])
    assert v.verify(JS, None, f"Bearer {TOKEN}".encode()).method == "bearer"
    with pytest.raises(SignatureMismatch):
        v.verify(JS, _sig(JS), None)


# ----------------------------------------------------------------- failure modes


def test_missing_header(verifier: WebhookVerifier) -> None:
    with pytest.raises(SignatureMissing, match="no X-Edume-Signature header") as info:
        verifier.verify(JS, None, None)
    assert info.value.http_status == 401


def test_empty_header_is_missing(verifier: WebhookVerifier) -> None:
    with pytest.raises(SignatureMissing, match="no X-Edume-Signature header"):
        verifier.verify(JS, b"  ", None)


def test_wrong_secret(verifier: WebhookVerifier) -> None:
    with pytest.raises(SignatureMismatch, match="does not match the body") as info:
        verifier.verify(JS, _sig(JS, "some-other-secret"), None)
    assert not isinstance(info.value, SignatureMissing)
    assert info.value.http_status == 401


def test_tampered_body(verifier: WebhookVerifier) -> None:
    tampered = JS.replace(b"10215", b"10216")
    with pytest.raises(SignatureMismatch, match="does not match the body"):
        verifier.verify(tampered, _sig(JS), None)


def test_mixed_case_hex_refused(verifier: WebhookVerifier) -> None:
    sig = _sig(JS)
    mixed = bytes(c - 32 if i % 2 and 97 <= c <= 102 else c for i, c in enumerate(sig))
    assert mixed != sig.upper() and mixed != sig
    with pytest.raises(SignatureMismatch, match="not a hex HMAC-SHA256"):
        verifier.verify(JS, mixed, None)


def test_non_ascii_header(verifier: WebhookVerifier) -> None:
    header = ("é" * 32).encode()  # 64 bytes, like a digest, but not hex
    with pytest.raises(SignatureMismatch, match="not a hex HMAC-SHA256"):
        verifier.verify(JS, header, None)
    with pytest.raises(SignatureMismatch, match="not a hex HMAC-SHA256"):
        verifier.verify(JS, "sha256=" + "ü" * 64, None)


def test_non_hex_header(verifier: WebhookVerifier) -> None:
    with pytest.raises(SignatureMismatch, match="not a hex HMAC-SHA256"):
        verifier.verify(JS, b"g" * 64, None)
    with pytest.raises(SignatureMismatch, match="not a hex HMAC-SHA256"):
        verifier.verify(JS, b"a b" * 21 + b"a", None)  # fromhex would skip the spaces


def test_truncated_header(verifier: WebhookVerifier) -> None:
    with pytest.raises(SignatureMismatch, match="not a hex HMAC-SHA256"):
        verifier.verify(JS, _sig(JS)[:-1], None)
    with pytest.raises(SignatureMismatch, match="not a hex HMAC-SHA256"):
        verifier.verify(JS, _sig(JS) + b"0", None)


def test_unauthentic_garbage_is_401_not_400(verifier: WebhookVerifier) -> None:
    with pytest.raises(SignatureMismatch, match="does not match the body"):
        verifier.verify(b"{not json", _sig(b"{something else"), None)


def test_authentic_body_not_json(verifier: WebhookVerifier) -> None:
    body = b'{"type": "x",}'
    with pytest.raises(MalformedBody, match="body is not valid JSON") as info:
        verifier.verify(body, _sig(body), None)
    assert info.value.http_status == 400


def test_authentic_body_not_an_object(verifier: WebhookVerifier) -> None:
    for body, kind in ((b"[1,2]", "array"), (b'"x"', "string"), (b"null", "null"),
                       (b"1.5", "number"), (b"true", "boolean")):
        with pytest.raises(MalformedBody, match=f"body is a JSON {kind}, not an object"):
            verifier.verify(body, _sig(body), None)
        with pytest.raises(MalformedBody, match="not an object"):
            verifier.verify(body, None, f"Bearer {TOKEN}".encode())


def test_authentic_body_too_deep(verifier: WebhookVerifier) -> None:
    body = b'{"a":' * 33 + b"1" + b"}" * 33
    with pytest.raises(MalformedBody, match="body is nested deeper than 32 levels"):
        verifier.verify(body, _sig(body), None)


def test_authentic_body_invalid_utf8(verifier: WebhookVerifier) -> None:
    body = b'{"a":"\xff"}'
    with pytest.raises(MalformedBody, match="invalid UTF-8"):
        verifier.verify(body, _sig(body), None)


def test_http_status_attributes() -> None:
    assert SignatureMissing.http_status == SignatureMismatch.http_status == 401
    assert MalformedBody.http_status == 400
    assert issubclass(SignatureMissing, SignatureMismatch)
    for cls in (SignatureMismatch, SignatureMissing, MalformedBody):
        assert issubclass(cls, VerificationError)
        assert issubclass(cls, errors.EdumeStreamsError)


# ------------------------------------------------------------------- construction


@pytest.mark.parametrize(
    ("secrets", "tokens", "match"),
    [
        ([SECRET, ""], (), "webhook secret #2 is empty"),
        (["   "], (), "webhook secret #1 is empty"),
        ([SECRET], [" "], "bearer token #1 is empty"),
        ([], [], "no webhook secret and no bearer token"),
        ((), (), "no webhook secret and no bearer token"),
        (SECRET, (), "not a single string"),
        ([SECRET, b"bytes"], (), "webhook secret #2 is a bytes"),
        (["\ud800"], (), "webhook secret #1 is not valid Unicode"),
    ],
)
def test_bad_configuration_refused(secrets: Any, tokens: Any, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match) as info:
        WebhookVerifier(secrets, tokens)
    assert SECRET not in str(info.value)


def test_no_secret_in_repr_str_or_any_error(verifier: WebhookVerifier) -> None:
    texts = [repr(verifier), str(verifier)]
    attempts: list[tuple[bytes, Any, Any]] = [
        (JS, None, None),
        (JS, _sig(JS, "other"), None),
        (JS, b"zz", None),
        (JS, ("é" * 32).encode(), None),
        (PRETTY, None, b"Bearer nope"),
        (b"[1]", _sig(b"[1]"), None),
        (b"{,}", _sig(b"{,}"), None),
        (b"{,}", None, f"Bearer {TOKEN}".encode()),
    ]
    for body, sig, auth in attempts:
        with pytest.raises(VerificationError) as info:
            verifier.verify(body, sig, auth)
        texts += [str(info.value), repr(info.value), repr(info.value.args)]
    for bad in ([SECRET, ""], [SECRET, "  "]):
        with pytest.raises(ConfigurationError) as cinfo:
            WebhookVerifier(bad, [TOKEN])
        texts += [str(cinfo.value), repr(cinfo.value)]
    texts.append(repr(verifier.verify(JS, _sig(JS), None)))
    for text in texts:
        for credential in (SECRET, ROTATED, TOKEN):
            assert credential not in text
    assert "2 hidden" in repr(verifier) and "1 hidden" in repr(verifier)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(verifier)


def test_verified_is_immutable(verifier: WebhookVerifier) -> None:
    got = verifier.verify(JS, _sig(JS), None)
    assert isinstance(got, Verified)
    with pytest.raises(AttributeError):
        got.method = "js"  # type: ignore[misc]
    assert "document" not in repr(got) and "Zo" not in repr(got)


# -------------------------------------------------------------------- properties

_KEYS = st.text(max_size=6) | st.integers(0, 99).map(str)
_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=3),
    max_leaves=10,
)
_OBJECTS = st.dictionaries(_KEYS, _VALUES, max_size=5)


@settings(max_examples=150, deadline=None)
@given(_OBJECTS)
def test_any_object_verifies_raw_and_pretty_when_signed_over_js_form(doc: dict[str, Any]) -> None:
    v = WebhookVerifier([SECRET])
    js = stringify(doc)
    signature = sign_webhook(SECRET, js).encode()
    for raw in (json.dumps(doc, separators=(",", ":")).encode(), json.dumps(doc).encode(),
                json.dumps(doc, indent=2, ensure_ascii=False).encode()):
        got = v.verify(raw, signature, None)
        assert got.canonical == js
        assert got.method == ("raw" if raw == js else "js")


@settings(max_examples=300, deadline=None)
@given(_OBJECTS, st.integers(min_value=0), st.integers(min_value=1, max_value=255))
def test_flipping_any_byte_of_a_raw_signed_body_fails(
    doc: dict[str, Any], index: int, xor: int
) -> None:
    """A flipped byte fails, unless the flip left the document itself unchanged (``\\u001f``
    to ``\\u001F``, say): then its JavaScript form is still what was signed."""
    v = WebhookVerifier([SECRET])
    raw = json.dumps(doc, separators=(",", ":")).encode()
    signature = sign_webhook(SECRET, raw).encode()
    flipped = bytearray(raw)
    flipped[index % len(raw)] ^= xor
    try:
        got = v.verify(bytes(flipped), signature, None)
    except VerificationError:
        return
    assert got.method == "js" and got.canonical == raw


# --------------------------------------------------------------- Node cross-check


def test_fixture_signatures_from_node_verify() -> None:
    bodies = [p.read_bytes() for p in sorted(FIXTURES.glob("*.json")) if p.name != "manifest.json"]
    assert bodies
    v = WebhookVerifier([SECRET, ROTATED])
    for body, ans in zip(bodies, node_oracle.canon(bodies, (SECRET, ROTATED)), strict=True):
        assert ans.ok and ans.js is not None
        for i in range(2):
            got = v.verify(body, ans.hmac_js[i].encode(), None)  # as eduMe sends after re-format
            assert (got.method, got.canonical) == ("js", ans.js)
            assert got.event_id == hashlib.sha256(ans.js).hexdigest()
            assert v.verify(body, ans.hmac_raw[i].encode(), None).method == "raw"
            assert v.verify(ans.js, ans.hmac_js[i].encode(), None).method == "raw"


# ------------------------------------------------------------------------- links

BASE = "https://learn.edume.com/e"
LINK_SECRET = "secret_from_edume"

# Known answers from Node: the URL built with MDN's RFC 3986 encodeURIComponent variant,
# signed with crypto.createHmac('sha256', secret).update(url).digest('hex').
LINK_VECTORS: list[tuple[str, str, int | None, list[int], str]] = [
    ("course", "abc123", 123, [5],
     "https://learn.edume.com/e/c/123?g=5&e=abc123"
     "&sig=9eb852ef2d7b79adcc61f9776b8a7880f09a2181cc84d18206fb5b9fc5186729"),
    ("module", "jane doe/ops", 10658, [5, 55526],
     "https://learn.edume.com/e/m/10658?g=5,55526&e=jane%20doe%2Fops"
     "&sig=2759b2317304c99abcbfdb8a5cff5e4da310d6eab0b66774ff3f802b1f0ce27a"),
    ("lesson", "zoë@example.com", 28856, [1, 2, 3],
     "https://learn.edume.com/e/l/28856?g=1,2,3&e=zo%C3%AB%40example.com"
     "&sig=69ed6d9914f5a8dc146901e9f5753414ab1051b841310d8d3f5b15610dc1ecc5"),
    ("survey", "a~b-c.d_e", 2159, [7],
     "https://learn.edume.com/e/s/2159?g=7&e=a~b-c.d_e"
     "&sig=db020c4ee1a81a159b6406b29b8a12c5a06e9b65a15349e7e5c44b7c5f5837fe"),
    ("guide", "!'()*", 42, [9, 10],
     "https://learn.edume.com/e/gd/42?g=9,10&e=%21%27%28%29%2A"
     "&sig=816b9003080d6995c9729fc4cc4d43462336385c885e4a7066556dd99df46027"),
    ("hub", "用户 42", None, [55526],
     "https://learn.edume.com/e/d/?g=55526&e=%E7%94%A8%E6%88%B7%2042"
     "&sig=4b160416ca7b4d46ab8adf054f1eb47f578c5e721dbfc6653914f93a7b14cadc"),
    ("knowledge-hub", "emp#1?x=y&z", 77, [],
     "https://learn.edume.com/e/kh/77?e=emp%231%3Fx%3Dy%26z"
     "&sig=f13b2d5cf6b81ed7ddda5b531188efe4808dafe1703e88047fb06cd703532f8c"),
    ("course", "😀+%", 1, [1],
     "https://learn.edume.com/e/c/1?g=1&e=%F0%9F%98%80%2B%25"
     "&sig=180422b6ee8160950982013f4cc959d31c2483a8d11971ae3aebc9c140c3e95b"),
]


@pytest.mark.parametrize(("kind", "ext", "cid", "teams", "expected"), LINK_VECTORS)
def test_link_known_answers(
    kind: str, ext: str, cid: int | None, teams: list[int], expected: str
) -> None:
    url = build_link(kind, base_url=BASE, external_user_id=ext, content_id=cid, team_ids=teams)
    assert sign_link(url, LINK_SECRET) == expected
    assert expected.startswith(url + "&sig=")


def test_link_secret_is_utf8_as_in_node() -> None:
    url = build_link("course", base_url=BASE, external_user_id="abc123", content_id=123,
                     team_ids=[5])
    assert sign_link(url, "sécret-ü") == (
        url + "&sig=ca1a847ea3efbf7dc2a2e8935cff70edab7cdaaf81e0986ed50cf116decdae38"
    )


def test_link_kinds_cover_the_contract_table() -> None:
    assert set(LINK_KINDS) == {v[0] for v in LINK_VECTORS}
    assert len(LINK_KINDS) == 7


def test_links_match_node_for_many_external_ids() -> None:
    ids = ["abc", "a b", "a/b", "~user", "-._~", "!'()*", "é", "漢字", "😀", "%", "+", "&=?#",
           "\x00\x7f", "tab\there", "a" * 200, "O'Brien (ops)*"]
    cases = [
        {"kind": kind, "base": BASE, "externalUserId": ext, "secret": LINK_SECRET,
         "contentId": None if kind == "hub" else 17167, "teamIds": [55526, 7]}
        for kind in LINK_KINDS for ext in ids
    ]
    for case, ans in zip(cases, node_oracle.links(cases), strict=True):
        url = build_link(case["kind"], base_url=BASE, external_user_id=case["externalUserId"],
                         content_id=case["contentId"], team_ids=case["teamIds"])
        assert url == ans["url"]
        assert sign_link(url, LINK_SECRET) == ans["signed"]


def test_external_id_encoding_is_rfc3986_not_encode_uri_component() -> None:
    """encodeURIComponent keeps !'()*, which RFC 3986 does not list as unreserved; the
    contract keeps only unreserved characters, so those five are percent-encoded here."""
    value = "AZaz09-._~!'()* /é"
    (plain, strict), = node_oracle.encode_uri_component([value])
    assert plain == "AZaz09-._~!'()*%20%2F%C3%A9"
    assert strict == "AZaz09-._~%21%27%28%29%2A%20%2F%C3%A9"
    url = build_link("course", base_url=BASE, external_user_id=value, content_id=1, team_ids=[1])
    assert url.endswith("&e=" + strict)
    assert quote("~", safe="") == "~"  # Python keeps ~ (unreserved) since 3.7


def test_every_ascii_character_encoded_as_rfc3986_says() -> None:
    unreserved = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
    for code in range(128):
        c = chr(code)
        url = build_link("hub", base_url=BASE, external_user_id=c, content_id=None, team_ids=[1])
        encoded = url.rsplit("&e=", 1)[1]
        assert encoded == (c if c in unreserved else f"%{code:02X}")


def test_base_url_trailing_slash_normalised() -> None:
    a = build_link("course", base_url=BASE + "/", external_user_id="u", content_id=1, team_ids=[2])
    b = build_link("course", base_url=BASE, external_user_id="u", content_id=1, team_ids=[2])
    assert a == b == f"{BASE}/c/1?g=2&e=u"


def test_content_id_as_digit_string() -> None:
    url = build_link("course", base_url=BASE, external_user_id="u", content_id="22299",
                     team_ids=[55526])
    assert url == f"{BASE}/c/22299?g=55526&e=u"


def test_knowledge_hub_ignores_team_ids() -> None:
    url = build_link("knowledge-hub", base_url=BASE, external_user_id="u", content_id=3,
                     team_ids=[1, 2])
    assert url == f"{BASE}/kh/3?e=u"


@pytest.mark.parametrize(
    ("kind", "kwargs", "match"),
    [
        ("webinar", {}, "unknown link kind 'webinar'"),
        ("course", {"content_id": None}, "a course link needs a content id"),
        ("knowledge-hub", {"content_id": None}, "a knowledge-hub link needs a content id"),
        ("hub", {"content_id": 5}, "a hub link takes no content id"),
        ("course", {"team_ids": []}, "a course link needs at least one team id"),
        ("hub", {"content_id": None, "team_ids": []}, "a hub link needs at least one team id"),
        ("course", {"team_ids": [0]}, "every team id must be a positive integer"),
        ("course", {"team_ids": [True]}, "every team id must be a positive integer"),
        ("course", {"team_ids": ["5"]}, "every team id must be a positive integer"),
        ("course", {"team_ids": "5"}, "team ids must be a sequence"),
        ("course", {"content_id": 0}, "the course id must be a positive integer"),
        ("course", {"content_id": "12a"}, "the course id must be a positive integer"),
        ("course", {"content_id": -3}, "the course id must be a positive integer"),
        ("course", {"content_id": True}, "the course id must be a positive integer"),
        ("course", {"external_user_id": ""}, "the external user id is empty"),
        ("course", {"external_user_id": "\ud800"}, "not valid Unicode"),
        ("course", {"base_url": ""}, "the link base URL is empty"),
        ("course", {"base_url": "learn.edume.com/e"}, "absolute http"),
        ("course", {"base_url": "ftp://learn.edume.com/e"}, "absolute http"),
        ("course", {"base_url": "https://learn.edume.com/e?x=1"}, "query or fragment"),
    ],
)
def test_link_input_validation(kind: str, kwargs: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = {"base_url": BASE, "external_user_id": "u", "content_id": 1,
                            "team_ids": [1]}
    args.update(kwargs)
    with pytest.raises(LinkError, match=match):
        build_link(kind, **args)


def test_sign_link_validation() -> None:
    url = build_link("course", base_url=BASE, external_user_id="u", content_id=1, team_ids=[1])
    with pytest.raises(LinkError, match="already signed"):
        sign_link(sign_link(url, LINK_SECRET), LINK_SECRET)
    with pytest.raises(LinkError, match="needs its query string"):
        sign_link(BASE + "/c/1", LINK_SECRET)
    with pytest.raises(ConfigurationError, match="link signing secret is empty") as info:
        sign_link(url, " ")
    assert LINK_SECRET not in str(info.value)
