"""streams.jsjson against Node itself: JSON.parse acceptance and byte-exact JSON.stringify."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import random
import struct
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams import jsjson
from streams.errors import MalformedBody, MalformedJSON
from streams.jsjson import canonical, format_number, parse, stringify
from streams.signing import WebhookVerifier
from tests.unit import node_oracle

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
SECRETS = ("s3cret-for-tests", "zweites-Geheimnis-é")  # a non-ASCII key: UTF-8, as Node


# ------------------------------------------------------------------ hand-picked bodies

ALL_CONTROLS_ESCAPED = "".join(f"\\u{i:04x}" for i in range(0x20))
ALL_CONTROLS_UPPER = "".join(f"\\u{i:04X}" for i in range(0x20))

TRICKY_BODIES: list[bytes] = [
    # non-ASCII, raw and escaped; astral plane raw and as an escaped surrogate pair
    '{"name":"é 漢字","city":"Zürich"}'.encode(),
    b'{"name":"\\u00e9 \\u6f22\\u5b57"}',
    '{"emoji":"😀 🏳️‍🌈"}'.encode(),
    b'{"emoji":"\\ud83d\\ude00","upper":"\\uD83D\\uDE00"}',
    # quotes, backslashes, solidus, every short escape
    b'{"q":"say \\"hi\\" \\\\ back\\\\slash \\/ slash","s":"\\b\\f\\n\\r\\t"}',
    # every control character, escaped lower- and uppercase; DEL raw and escaped
    ('{"c":"' + ALL_CONTROLS_ESCAPED + '","C":"' + ALL_CONTROLS_UPPER + '"}').encode(),
    b'{"del":"\x7f","delEscaped":"\\u007f"}',
    # U+2028/U+2029 raw and escaped, BOM and non-characters inside strings
    '{"ls":"\u2028\u2029","lsEscaped":"\\u2028\\u2029","bom":"\ufeff\ufffe\uffff"}'.encode(),
    # lone surrogates: high, low, reversed pair, high before a letter, in a key
    b'{"hi":"\\ud800","lo":"\\udfff","rev":"\\ude00\\ud83d","x":"\\ud83dA","\\udbff":1}',
    b'["\\ud800\\ud800\\udc00"]',
    # floats that JavaScript prints differently from Python
    b'{"a":50.0,"b":66.67,"c":0.30000000000000004,"d":1e21,"e":1e-7,"f":123e-20}',
    b'{"negzero":-0.0,"negzeroint":-0,"tiny":5e-324,"max":1.7976931348623157e308}',
    b'{"inf":1e400,"ninf":-1e400,"under":1.5e-400,"E":1E2,"x":100.0e-2,"y":0.000001}',
    b'[1e20,1e21,123456789012345680000,1.5,-2.5e-7,0.1,1e-6,1e-7,1.0000000000000002]',
    # integers beyond 2**53 and beyond 64 bits; one past Python's int-parsing digit limit
    b'{"a":9007199254740993,"b":123456789012345678901234567890,"c":-9223372036854775809}',
    b'[18446744073709551615,18446744073709551616,9007199254740992,-9007199254740993]',
    b"[" + b"1" * 400 + b",-" + b"9" * 5000 + b"]",
    # array-index keys go first, ascending; "01" and 2**32-1 are ordinary keys
    b'{"b":1,"2":2,"1":3,"01":4,"4294967295":5,"4294967294":6}',
    b'{"z":{"10":1,"9":2,"a":3,"0":4},"list":[{"1":1,"x":2,"0":3}],"-1":0,"1.5":1}',
    b'{"\\u0031":"escaped one","b":2,"0":3}',
    # duplicate keys: last value wins, at the first key's position
    b'{"a":1,"b":2,"a":3}',
    b'{"1":1,"a":2,"1":3,"a":4}',
    b'{"__proto__":{"x":1},"constructor":2}',
    # containers, empty and nested; top-level non-objects
    b'{"a":[],"b":{},"c":[[],[{}],[[[]]]],"d":[null,true,false,"",0]}',
    b"[1,2,3]",
    b'"just a string"',
    b"1.0",
    b"null",
    # whitespace everywhere JSON allows it
    b' \t\n\r{ "a" :\t1 ,\n"b" : [ 1 , 2 ] }\r\n ',
    b'{\n  "type": "learner.added",\n  "payload": {"score": 50.0, "ratio": 0.5}\n}\n',
]

FIXTURE_BODIES: list[bytes] = [
    p.read_bytes() for p in sorted(FIXTURES.glob("*.json")) if p.name != "manifest.json"
]

REJECTED_BODIES: list[bytes] = [
    b"",
    b"   ",
    b"\xef\xbb\xbf{}",  # Buffer.toString keeps the BOM; JSON.parse refuses U+FEFF
    b"NaN",
    b'{"a":NaN}',
    b'{"a":Infinity}',
    b"[-Infinity]",
    b"[1,]",
    b'{"a":1,}',
    b"{'a':1}",
    b'{"a":01}',
    b'{"a":1.}',
    b'{"a":.5}',
    b'{"a":+1}',
    b'{"a":"\\x41"}',
    b'{"a":"tab\there"}',
    b'{"a":"\\u12"}',
    b'{"a":1}x',
    b'{"a":1} {"b":2}',
    b"\xc2\xa0{}",  # NBSP is not JSON whitespace
    b"\x0c{}",
    b"{} \x00",
    b'{"a" 1}',
    b"[1 2]",
    b'{"a":tru}',
    b"//c\n{}",
]


def _hmac(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


# ------------------------------------------------------------------------ numbers


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (50.0, "50"),
        (66.67, "66.67"),
        (0.1 + 0.2, "0.30000000000000004"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (1e-7, "1e-7"),
        (1e-6, "0.000001"),
        (123e-20, "1.23e-18"),
        (-0.0, "0"),
        (0, "0"),
        (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (-1.5e-7, "-1.5e-7"),
        (2.0**60, "1152921504606847000"),
        (1e16, "10000000000000000"),
        (123456.789, "123456.789"),
        (9007199254740993, "9007199254740992"),
        (123456789012345678901234567890, "1.2345678901234568e+29"),
        (10**400, "Infinity"),
        (-(10**400), "-Infinity"),
        (math.inf, "Infinity"),
        (-math.inf, "-Infinity"),
        (math.nan, "NaN"),
    ],
)
def test_format_number_known_values(value: float, expected: str) -> None:
    assert format_number(value) == expected


def test_format_number_refuses_non_numbers() -> None:
    with pytest.raises(TypeError):
        format_number(True)
    with pytest.raises(TypeError):
        format_number("1")  # type: ignore[arg-type]


def _random_doubles(rng: random.Random, count: int) -> list[float]:
    """Finite doubles from uniformly random bit patterns: every exponent, subnormals too."""
    out: list[float] = []
    while len(out) < count:
        (x,) = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))
        if math.isfinite(x):
            out.append(x)
    return out


def test_format_number_matches_node_on_thousands_of_doubles() -> None:
    rng = random.Random(20240521)
    floats = _random_doubles(rng, 4000)
    floats += [s * 10.0**e for e in range(-325, 309) for s in (1.0, -7.0)]
    floats += [float(2**k) for k in range(-1074, 1024, 7)]
    floats += [rng.uniform(0, 1000) for _ in range(500)]  # short decimals, like scores
    floats += [round(rng.uniform(0, 100), 2) for _ in range(500)]
    floats = [f for f in floats if math.isfinite(f)]
    ints = [rng.randrange(-(2**k), 2**k) for k in range(1, 400, 3) for _ in range(3)]
    ints += [2**53 + d for d in range(-3, 4)] + [-(2**53) + d for d in range(-3, 4)]
    texts = [repr(f) for f in floats] + [str(i) for i in ints]
    expected = node_oracle.number_to_string(texts)
    mine = [format_number(f) for f in floats] + [format_number(i) for i in ints]
    wrong = [(t, m, e) for t, m, e in zip(texts, mine, expected, strict=True) if m != e]
    assert wrong == []


@settings(max_examples=3, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=300, max_size=300))
def test_format_number_matches_node_on_hypothesis_floats(floats: list[float]) -> None:
    expected = node_oracle.number_to_string([repr(f) for f in floats])
    assert [format_number(f) for f in floats] == expected


# ------------------------------------------------------------- orjson's escaping claim


def test_orjson_escapes_strings_exactly_as_node() -> None:
    """The fast path rests on this: orjson.dumps(str) == JSON.stringify(str), for every
    ASCII and Latin-1 character, the line separators, BOM, non-characters and astral."""
    chars = [chr(i) for i in range(0x100)] + [
        "\u2028", "\u2029", "\ufeff", "\ufffe", "\uffff", "\U0001f600", "\U0010ffff", "\u0600",
    ]
    bodies = [orjson.dumps([c, f"a{c}b", {c: c}]) for c in chars]
    # Node re-stringifies what it parsed; orjson's output must be a fixed point of that.
    answers = node_oracle.canon(bodies)
    for body, ans in zip(bodies, answers, strict=True):
        assert ans.ok, ans.error
        assert ans.js == body
        assert stringify(parse(body)) == body


# ------------------------------------------------------------ the Node cross-check


def test_tricky_bodies_match_node_bytes_digests_and_verify() -> None:
    bodies = TRICKY_BODIES + FIXTURE_BODIES
    answers = node_oracle.canon(bodies, SECRETS)
    verifier = WebhookVerifier(SECRETS)
    for body, ans in zip(bodies, answers, strict=True):
        assert ans.ok, (body[:80], ans.error)
        value, js = canonical(body)
        assert js == ans.js, body[:80]
        assert stringify(value) == ans.js
        for i, secret in enumerate(SECRETS):
            assert _hmac(secret, js) == ans.hmac_js[i]
            assert _hmac(secret, body) == ans.hmac_raw[i]
            for signature, method in ((ans.hmac_raw[i], "raw"), (ans.hmac_js[i], "js")):
                if not isinstance(value, dict):
                    with pytest.raises(MalformedBody, match="not an object"):
                        verifier.verify(body, signature.encode(), None)
                    continue
                verified = verifier.verify(body, signature.encode(), None)
                assert verified.canonical == ans.js
                assert verified.event_id == hashlib.sha256(ans.js).hexdigest()
                assert verified.method == ("raw" if body == js else method)


def test_bodies_node_rejects_are_rejected() -> None:
    answers = node_oracle.canon(REJECTED_BODIES)
    for body, ans in zip(REJECTED_BODIES, answers, strict=True):
        assert not ans.ok, body
        with pytest.raises(MalformedJSON, match="not valid JSON"):
            parse(body)


def test_leading_bom_is_refused_with_a_clear_message() -> None:
    with pytest.raises(MalformedJSON, match="starts with a byte order mark"):
        parse(b'\xef\xbb\xbf{"a":1}')


def test_invalid_utf8_is_refused_although_node_would_substitute() -> None:
    """Deliberate difference: Node's Buffer.toString('utf8') turns bad bytes into U+FFFD and
    JSON.parse then accepts; eduMe sends JSON.stringify output, which is always valid UTF-8."""
    bodies = [b'{"a":"\xff"}', b'{"a":"\xed\xa0\x80"}', b'{"a":"\xc3"}', b'{"\xe9":1}']
    for body, ans in zip(bodies, node_oracle.canon(bodies), strict=True):
        assert ans.ok and "\ufffd".encode() in (ans.js or b"")
        with pytest.raises(MalformedJSON, match="invalid UTF-8"):
            parse(body)


# -------------------------------------------------------------- hypothesis vs Node

_SPECIAL_CHARS = st.sampled_from(
    ["\x00", "\x1f", "\x7f", "\u2028", "\u2029", '"', "\\", "/", "\ufeff", "😀", "é", "漢"]
)
_CHARS = st.one_of(
    st.characters(exclude_categories=()),
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),  # lone surrogates
    _SPECIAL_CHARS,
)
_TEXT = st.text(_CHARS, max_size=12)
_KEYS = st.one_of(
    _TEXT,
    st.integers(0, 2**32 + 3).map(str),
    st.sampled_from(["0", "01", "-1", "1.5", " 1", "\u0661", "4294967294", "4294967295", "1e3"]),
)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.integers(-(2**53) - 4, -(2**53) + 4) | st.integers(2**53 - 4, 2**53 + 4),
    st.floats(allow_nan=False, allow_infinity=False),
    _TEXT,
)
JSON_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=5),
    max_leaves=12,
)
JSON_OBJECTS = st.dictionaries(_KEYS, JSON_VALUES, max_size=6)


def serialisations(doc: Any) -> list[bytes]:
    """The same document as different senders would put it on the wire."""
    out = [
        json.dumps(doc, separators=(",", ":")).encode(),
        json.dumps(doc).encode(),
        json.dumps(doc, indent=2).encode(),
    ]
    try:
        out.append((json.dumps(doc, indent="\t", ensure_ascii=False) + "\n").encode())
    except UnicodeEncodeError:  # lone surrogates cannot be raw UTF-8
        out.append(json.dumps(doc, indent=1, separators=(" ,", " : ")).encode())
    return out


def test_hypothesis_documents_match_node() -> None:
    """Hypothesis draws the documents; Node judges all of them in one process at the end
    (drawing one big list per example is far slower than drawing many small examples)."""
    docs: list[dict[str, Any]] = []

    @settings(max_examples=150, deadline=None, database=None)
    @given(JSON_OBJECTS)
    def collect(doc: dict[str, Any]) -> None:
        docs.append(doc)

    collect()
    raws = [raw for doc in docs for raw in serialisations(doc)]
    answers = node_oracle.canon(raws)
    wrong = []
    for raw, ans in zip(raws, answers, strict=True):
        assert ans.ok, (raw[:200], ans.error)
        if canonical(raw)[1] != ans.js:
            wrong.append(raw)
    for doc, ans in zip(docs, answers[::4], strict=True):
        if stringify(doc) != ans.js:  # straight from the Python value, too
            wrong.append(json.dumps(doc).encode())
    assert sorted(wrong, key=len)[:3] == []


# ---------------------------------------------------------- pure-Python properties


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_fast_path_equals_exact_serializer(value: Any) -> None:
    assert stringify(value) == jsjson._stringify_exact(value)


@settings(max_examples=150, deadline=None)
@given(JSON_OBJECTS)
def test_js_form_is_a_fixed_point(doc: dict[str, Any]) -> None:
    js = stringify(doc)
    assert canonical(js)[1] == js
    for raw in serialisations(doc):
        assert canonical(raw)[1] == js


def test_fixtures_take_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """eduMe's documents never need the slow exact serializer (that is the speed claim)."""

    def forbidden(value: Any) -> bytes:
        raise AssertionError("exact path taken")

    monkeypatch.setattr(jsjson, "_stringify_exact", forbidden)
    for body in FIXTURE_BODIES:
        value = parse(body)
        js = stringify(value)
        if not any(isinstance(leaf, float) for leaf in _leaves(value)):
            assert js == orjson.dumps(value)  # orjson alone is already JavaScript's form


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]


# ------------------------------------------------------------------- parse details


def test_parse_types_follow_orjson_on_both_paths() -> None:
    """Fallback parsing (lone surrogate present) gives the same number types as orjson."""
    numbers = b"[1, 18446744073709551615, 18446744073709551616, -9223372036854775809, 1.0]"
    fast = parse(numbers)
    slow = parse(numbers[:-1] + b', "\\ud800"]')[:-1]
    assert [type(v) for v in fast] == [type(v) for v in slow] == [int, int, float, float, float]
    assert fast == slow


def test_parse_accepts_any_bytes_like() -> None:
    body = b'{"a":[1,2.5]}'
    assert parse(bytearray(body)) == parse(memoryview(body)) == {"a": [1, 2.5]}
    assert canonical(memoryview(body))[1] == b'{"a":[1,2.5]}'


def test_duplicate_keys_last_value_first_position() -> None:
    assert list(parse(b'{"a":1,"b":2,"a":3}').items()) == [("a", 3), ("b", 2)]
    assert stringify(parse(b'{"a":1,"b":2,"a":3}')) == b'{"a":3,"b":2}'


def _nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def test_depth_limit_is_exact() -> None:
    assert parse(_nested(32)) is not None
    with pytest.raises(MalformedJSON, match="nested deeper than 32 levels"):
        parse(_nested(33))
    assert parse(b"[" * 5 + b"]" * 5, max_depth=5) == [[[[[]]]]]
    with pytest.raises(MalformedJSON, match="nested deeper than 4 levels"):
        parse(b"[" * 5 + b"]" * 5, max_depth=4)
    # brackets inside strings do not count as nesting
    assert parse(b'{"a":"' + b"[{" * 100 + b'"}') == {"a": "[{" * 100}


@pytest.mark.parametrize("depth", [1100, 200_000])
def test_absurd_nesting_is_malformed_not_a_crash(depth: int) -> None:
    with pytest.raises(MalformedJSON):
        parse(b"[" * depth + b"]" * depth)
    with pytest.raises(MalformedJSON):
        parse(b'["\\ud800",' + b"[" * depth + b"]" * depth + b"]")


def test_error_messages_never_echo_the_body() -> None:
    secret_looking = b"TOPSECRET-VALUE"
    for body in (
        b'{"k":"' + secret_looking + b'",}',
        b'{"k":"' + secret_looking + b'\xff"}',
        b'{"' + secret_looking + b'":NaN}',
        b'{"k":"' + secret_looking + b'" "\\ud800"}',
    ):
        with pytest.raises(MalformedJSON) as info:
            parse(body)
        assert "TOPSECRET" not in str(info.value)
        assert info.value.__cause__ is None
        assert info.value.http_status == 400


def test_canonical_is_parse_then_stringify() -> None:
    raw = b'{"b": 1.0, "1": [2.50, "\\ud800"]}'
    value, js = canonical(raw)
    assert value == parse(raw)
    assert js == stringify(value) == b'{"1":[2.5,"\\ud800"],"b":1}'


def test_stringify_scalars_and_foreign_types() -> None:
    assert stringify(None) == b"null"
    assert stringify(True) == b"true"
    assert stringify(-0.0) == b"0"
    assert stringify(math.inf) == b"null"
    assert stringify(math.nan) == b"null"
    assert stringify("\ud83d\ude00") == '"😀"'.encode()  # adjacent surrogates pair up, as in JS
    assert stringify(2**53 + 1) == b"9007199254740992"
    assert stringify([10**400]) == b"[null]"
    for foreign in ({1: 2}, {"a": {1, 2}}, [b"bytes"], object()):
        with pytest.raises(TypeError):
            stringify(foreign)
