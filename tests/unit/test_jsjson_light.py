"""streams.core.jsjson's rewrite of numbers and its light mode: exact against Node on the
bodies that take the new paths, HeavyDocument for each kind of body the event loop must not
pay for, and the same answer without ``light``."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from streams.core import jsjson
from streams.core.errors import MalformedBody, MalformedJSON, SignatureMismatch
from streams.core.jsjson import (
    LIGHT_MAX_CONTAINERS,
    LIGHT_MAX_SLOW_BYTES,
    LIGHT_MAX_STRINGS,
    LIGHT_MAX_TOKENS,
    HeavyDocument,
    canonical,
    canonical_unchecked,
    parse,
)
from streams.core.signing import WebhookVerifier, sign_webhook
from tests.unit import node_oracle

SECRET = "light-mode-secret"


def array(items: list[str], prefix: str = '{"type":"t","n":[', suffix: str = "]}") -> bytes:
    return (prefix + ",".join(items) + suffix).encode()


# Bodies that stay light: what the event loop computes, at C speed.
LIGHT_BODIES: dict[str, bytes] = {
    "integral floats": array(["1.0", "-0.0", "50.0", "0.0", "-7.0", "123456789012345.0"] * 50),
    "exponents JavaScript writes out": array(
        ["1e16", "1.5e17", "-2.5e18", "9.999999999999999e20", "1e-6", "-3.3e-6", "7.5e-6"] * 40),
    "integers beyond 2**53": array(
        ["9007199254740993", "-9007199254740993", "18446744073709551615",
         "-9223372036854775808", "1234567890123456", "12345678901234567"] * 40),
    "look-alikes in strings": array(
        ['"x:1.0,"', '"1e+16,"', '"e-6]"', '"1234567890123456789"', '"\\"1.0,\\""',
         '"a\\\\"', "1.0", '{"k":"50.0}","v":2.0}', '"-0.0,"', "1e16"] * 30),
    "pretty-printed": json.dumps({"n": [1.0, 2.5e16, 3e-6, 2**60, "1.0,"] * 30,
                                  "s": "é"}, indent=2).encode(),
    "floats orjson prints as JavaScript": array(["66.67", "0.1", "1e-7", "1e21", "5e-324"] * 50),
}

# Bodies over the light limits, one per kind, each over LIGHT_MAX_SLOW_BYTES.
PAD = ',"pad":"' + "p" * LIGHT_MAX_SLOW_BYTES + '"}'
HEAVY_BODIES: dict[str, bytes] = {
    "brackets": array(["[1]"] * (LIGHT_MAX_CONTAINERS + 1)),
    "numbers to re-print": array(["1e16"] * (LIGHT_MAX_TOKENS + 1)),
    "strings around integral floats": array(['"s"'] * (LIGHT_MAX_STRINGS + 1) + ["1.0"]),
    "a lone surrogate": array(['"\\ud800"'], suffix="]" + PAD),
    "an infinite number": array(["1e400"], suffix="]" + PAD),
    "array-index keys": array(['{"b":1,"0":2}'], suffix="]" + PAD),
}


def test_light_bodies_match_node_with_and_without_light() -> None:
    names = list(LIGHT_BODIES)
    answers = node_oracle.canon([LIGHT_BODIES[n] for n in names])
    for name, answer in zip(names, answers, strict=True):
        body = LIGHT_BODIES[name]
        assert answer.ok, name
        assert canonical(body)[1] == answer.js, name
        assert canonical(body, light=True)[1] == answer.js, name
        assert canonical_unchecked(body, light=True)[1] == answer.js, name


@pytest.mark.parametrize("name", list(HEAVY_BODIES))
def test_each_heavy_kind_is_deferred_in_light_mode(name: str) -> None:
    body = HEAVY_BODIES[name]
    with pytest.raises(HeavyDocument):
        canonical(body, light=True)
    [answer] = node_oracle.canon([body])
    assert answer.ok
    assert canonical(body)[1] == answer.js  # the same answer, at its cost


def test_heavy_kinds_below_the_limits_stay_light() -> None:
    small = {
        "array-index keys": array(['{"b":1,"0":2}']),
        "a lone surrogate": array(['"\\ud800"', "1.0"]),
        "an infinite number": array(["1e400", "2.0"]),
        "numbers to re-print": array(["1e16"] * LIGHT_MAX_TOKENS),
    }
    answers = node_oracle.canon(list(small.values()))
    for (name, body), answer in zip(small.items(), answers, strict=True):
        assert canonical(body, light=True)[1] == answer.js, name


def _random_document(rng: random.Random) -> Any:
    numbers = [
        lambda: float(rng.randrange(-10**6, 10**6)),
        lambda: rng.uniform(-1e6, 1e6),
        lambda: rng.choice([1e16, 2.5e17, -1e20, 9.99e20, 1e21, 1e-6, -4.4e-6, 1e-7, -0.0]),
        lambda: rng.choice([2**53 + 1, -(2**53) - 3, 2**63, 2**64 - 1, 10**17, 2**53]),
        lambda: rng.randrange(-1000, 1000),
        lambda: rng.uniform(-1, 1) * 10.0 ** rng.randrange(-8, 22),
    ]
    texts = ["x:1.0,", "1e+16,", "e-6]", "1234567890123456789", '"1.0,"', "a\\", "\\\"",
             "-0.0,", ".0}", "é", "😀", "", "e+20}"]

    def value(depth: int) -> Any:
        r = rng.random()
        if depth > 0 and r < 0.15:
            return [value(depth - 1) for _ in range(rng.randrange(5))]
        if depth > 0 and r < 0.3:
            return {rng.choice([*texts, "k", "v"]) + str(i): value(depth - 1)
                    for i in range(rng.randrange(5))}
        if r < 0.7:
            return rng.choice(numbers)()
        return "".join(rng.choice(texts) for _ in range(rng.randrange(4)))

    return {"type": "t", "payload": [value(3) for _ in range(rng.randrange(1, 12))]}


def test_random_documents_of_rewritten_numbers_match_node() -> None:
    rng = random.Random(42)
    raws = []
    for _ in range(400):
        doc = _random_document(rng)
        raws.append(json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode())
        raws.append(json.dumps(doc, indent=1).encode())
    answers = node_oracle.canon(raws)
    wrong = [raw for raw, answer in zip(raws, answers, strict=True)
             if not answer.ok or canonical(raw, light=True)[1] != answer.js]
    assert wrong[:3] == []


def test_only_what_json_parse_takes_reaches_the_standard_library(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """orjson's refusal says why; a body JSON.parse refuses too is refused at once, without
    the five-times-slower parser (a forged megabyte of broken JSON stays cheap)."""
    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the standard library's parser ran")

    monkeypatch.setattr(jsjson.json, "loads", forbidden)
    for body in (b"[1,]", b'{"a":NaN}', b"[1 2]", b'{"a":01}', b"[" * 2000 + b"]" * 2000,
                 b"[1," * 300_000):
        with pytest.raises(MalformedJSON, match="not valid JSON"):
            parse(body)


def test_a_body_nested_too_deep_is_judged_by_its_signature_first() -> None:
    """A forged signature is refused without the depth check's walk; an authentic body
    nested too deep is a 400 whether signed over its raw bytes or its JavaScript form."""
    verifier = WebhookVerifier((SECRET,), max_depth=4)
    deep = b'{"a":{"b":{"c":{"d":{"e":1.0}}}}}'
    js = b'{"a":{"b":{"c":{"d":{"e":1}}}}}'
    with pytest.raises(SignatureMismatch):
        verifier.verify(deep, sign_webhook(SECRET, b"other"), light=True)
    for signed in (deep, js):
        with pytest.raises(MalformedBody, match="nested deeper than 4 levels"):
            verifier.verify(deep, sign_webhook(SECRET, signed), light=True)


def test_a_heavy_body_passes_light_verification_up_and_is_judged_without_it() -> None:
    verifier = WebhookVerifier((SECRET,))
    body = HEAVY_BODIES["numbers to re-print"]
    js = canonical(body)[1]
    with pytest.raises(HeavyDocument):
        verifier.verify(body, sign_webhook(SECRET, b"forged"), light=True)
    with pytest.raises(SignatureMismatch):
        verifier.verify(body, sign_webhook(SECRET, b"forged"))
    assert verifier.verify(body, sign_webhook(SECRET, js)).method == "js"
