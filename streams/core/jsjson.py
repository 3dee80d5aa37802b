"""JSON as JavaScript sees it: ``JSON.parse`` acceptance and byte-exact ``JSON.stringify``.

eduMe signs ``JSON.stringify(payload)``, so verifying a re-formatted body means printing
the parsed value exactly as Node would.  ``orjson.dumps`` already prints most webhook
documents identically (same string escaping, same integers, same key order); it prints
only these differently:

* floats: JavaScript prints ``50.0`` as ``50``, ``1e16`` as ``10000000000000000``, ``-0.0``
  as ``0``;
* integers beyond 2**53, which JavaScript rounds to the nearest double;
* objects with array-index keys (``"0"`` .. ``"4294967294"``): JavaScript enumerates
  those first, in ascending numeric order, then the other keys in insertion order.

So :func:`stringify` prints with orjson and then rewrites, as text, only what orjson prints
unlike JavaScript.  For floats that is a short list, known from orjson's format (both print
the shortest round-trip digits; they differ only in where the digits go): an integral float
below 1e16 (``50.0`` for ``50``), one from 1e16 to 1e21 (``1e+16`` for ``10000000000000000``)
and one from 1e-6 to 1e-5 (``1e-6`` for ``0.000001``); every other float orjson prints as
JavaScript does.  Integers beyond 2**53 (JavaScript rounds them to a double) are the one
integer case.  The rewrite runs on the text outside string literals only (found with one
``split`` on quotes), with ``str.replace`` for the integral floats and one re-print per
other token, so its cost follows the number of such tokens, not the size of the document.
Objects with array-index keys (``"0"`` .. ``"4294967294"``: JavaScript enumerates those
first, ascending) and strings with lone surrogates (JavaScript escapes them as
``\\udxxx``; orjson refuses them) take a walk over the parsed document instead, and only
a document that holds them pays for it.

**Light mode** (``canonical(raw, light=True)``) is for the ingress's event loop, where a
forged body must stay cheap whatever it holds. It raises :class:`HeavyDocument` instead of
doing work that grows with the document in Python or in object count: parsing more than
``LIGHT_MAX_CONTAINERS`` brackets (orjson builds each container, the garbage collector then
looks at it), re-printing more than ``LIGHT_MAX_TOKENS`` numbers one by one, rewriting
numbers among more than ``LIGHT_MAX_STRINGS`` strings, or, for a body over
``LIGHT_MAX_SLOW_BYTES``, the walk, the exact serializer or the standard library's parser.
What stays is orjson's parse and print and the C-speed probes and rewrites: 7 to 35 ms for
0.98 MB bodies of numbers in every form (``bench/forged_bench.py``).  The same call without
``light`` gives the same answer, at its cost, wherever the caller chooses to pay it (the
ingress: one thread, one body at a time).  :func:`canonical_unchecked` leaves out the depth
check, a walk over every value, for a caller that needs the document only once the form
proved authentic.

Accepted input, by experiment against Node 20 (``JSON.parse(buffer.toString("utf8"))``):
a leading UTF-8 byte order mark is refused (Node keeps U+FEFF, which is not JSON
whitespace); ``NaN``/``Infinity`` literals, trailing commas and empty bodies are refused;
``1e400`` parses to infinity and prints as ``null``.  One deliberate difference: invalid
UTF-8 is refused here, where Node would silently substitute U+FFFD.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

import orjson

from streams.core.errors import MalformedJSON

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "LIGHT_MAX_CONTAINERS",
    "LIGHT_MAX_SLOW_BYTES",
    "LIGHT_MAX_STRINGS",
    "LIGHT_MAX_TOKENS",
    "HeavyDocument",
    "canonical",
    "canonical_unchecked",
    "check_depth",
    "format_number",
    "parse",
    "stringify",
]

DEFAULT_MAX_DEPTH: Final = 32
"""Containers nested deeper than this are refused: eduMe's documents stay under 8."""

LIGHT_MAX_SLOW_BYTES: Final = 16_384
"""Light mode: the largest body whose JS form may take the slow paths (the walk, the exact
serializer, the standard library's parser), each a few microseconds per value in Python:
about 10 ms at this size, against 0.3 to 0.7 s for a body of 1 MiB. eduMe's webhooks weigh
under 4 KB."""

LIGHT_MAX_TOKENS: Final = 2_048
"""Light mode: the most numbers re-printed one by one (about 2 µs each) for one body."""

LIGHT_MAX_CONTAINERS: Final = 16_384
"""Light mode: the most brackets a body may hold. orjson builds a list or a dict in about
0.1 µs, the garbage collector then looks at each; 300,000 empty lists in 1 MiB take 25 to
45 ms to parse alone. eduMe's webhooks hold under 100."""

LIGHT_MAX_STRINGS: Final = 32_768
"""Light mode: the most string literals around the text a rewrite of numbers works on
(finding that text costs about 0.1 µs per string)."""

_MAX_SAFE_INTEGER: Final = 2**53
_MAX_ARRAY_INDEX: Final = 2**32 - 2
_DUMPS_OPTIONS: Final = (
    orjson.OPT_STRICT_INTEGER
    | orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
)
# Integers up to 64 bits printed as they are: the rewrite fixes those beyond 2**53.
_CONTAINER_OPTIONS: Final = _DUMPS_OPTIONS & ~orjson.OPT_STRICT_INTEGER
_Fragment: Final = orjson.Fragment
_JSONEncodeError: Final = orjson.JSONEncodeError

_JS_ESCAPES: Final[dict[str, str]] = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}
_JS_ESCAPE_RE: Final = re.compile('[\x00-\x1f"\\\\\ud800-\udfff]')


class HeavyDocument(Exception):
    """Light mode only: this body's JS form needs Python work in proportion to its size.

    Not an error of the body: the same call without ``light`` answers, at that cost."""


# ---------------------------------------------------------------------------- parse


def parse(
    raw: bytes | bytearray | memoryview,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    light: bool = False,
) -> Any:
    """Parse ``raw`` as JSON.parse would, fast via orjson, refusing nesting past ``max_depth``.

    ``light``: raise :class:`HeavyDocument` rather than parse a body with more than
    ``LIGHT_MAX_CONTAINERS`` brackets, or run the standard library's parser (lone
    surrogates, numbers beyond the double range) on one over ``LIGHT_MAX_SLOW_BYTES``.
    """
    raw = _as_bytes(raw)
    value = _parse_unchecked(raw, light)
    check_depth(raw, value, max_depth)
    return value


def check_depth(raw: bytes, value: Any, max_depth: int = DEFAULT_MAX_DEPTH) -> None:
    """Raise MalformedJSON when ``value`` (parsed from ``raw``) nests deeper than ``max_depth``.

    A document with no more brackets than the limit cannot nest deeper; for the others the
    check visits every value in Python (about 20 ms for 1 MiB of numbers in one array)."""
    if raw.count(b"[") + raw.count(b"{") > max_depth:
        _check_depth(value, max_depth)


def _as_bytes(raw: bytes | bytearray | memoryview) -> bytes:
    return raw if type(raw) is bytes else bytes(raw)


def _parse_unchecked(raw: bytes, light: bool) -> Any:
    """orjson's parse, or the standard library's for the two things only it takes."""
    if light:
        brackets = raw.count(b"[") + raw.count(b"{")
        if brackets > LIGHT_MAX_CONTAINERS:
            raise HeavyDocument(f"{brackets} brackets")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return _parse_fallback(raw, exc.msg, exc.lineno, exc.colno, light)


def _parse_fallback(raw: bytes, reason: str, line: int, column: int, light: bool) -> Any:
    """Accept what orjson refuses but JSON.parse takes: lone surrogates, infinite numbers.

    orjson's ``reason`` says which: anything else JSON.parse refuses too, so the standard
    library's parser (five times slower than orjson) runs only for those two."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as uerr:
        raise MalformedJSON(f"not valid JSON (invalid UTF-8 at byte {uerr.start})") from None
    if not text.strip(" \t\n\r"):
        raise MalformedJSON("not valid JSON (empty)") from None
    if text[0] == "\ufeff":
        raise MalformedJSON("not valid JSON (starts with a byte order mark)") from None
    if "surrogate" not in reason and "infinity" not in reason:
        if "depth" in reason:
            raise MalformedJSON("not valid JSON (nested too deeply)") from None
        raise MalformedJSON(f"not valid JSON (line {line}, column {column})") from None
    if light and len(raw) > LIGHT_MAX_SLOW_BYTES:
        raise HeavyDocument("the standard library's parser is needed")
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_int=_parse_int)
    except json.JSONDecodeError as jerr:
        raise MalformedJSON(f"not valid JSON (line {jerr.lineno}, column {jerr.colno})") from None
    except RecursionError:
        raise MalformedJSON("not valid JSON (nested too deeply)") from None


def _refuse_constant(name: str) -> Any:
    """Refuse NaN and Infinity, which Python's json takes and JSON.parse does not."""
    raise MalformedJSON(f"not valid JSON ({name} is not a JSON value)")


def _parse_int(text: str) -> int | float:
    """Give integers the types orjson gives: int inside 64 bits, else the nearest double."""
    if len(text) <= 20:
        value = int(text)
        if -(2**63) <= value < 2**64:
            return value
    return float(text)


def _check_depth(value: Any, budget: int) -> None:
    """Raise MalformedJSON when containers in ``value`` nest deeper than ``budget`` levels."""
    if _depth_exceeds(value, budget):
        raise MalformedJSON(f"nested deeper than {budget} levels")


def _depth_exceeds(value: Any, budget: int) -> bool:
    """Whether containers nest deeper than ``budget``; recursion never goes past the limit."""
    t = type(value)
    if t is dict:
        children = value.values()
    elif t is list:
        children = value
    else:
        return False
    if budget <= 0:
        return True
    for child in children:
        ct = type(child)
        if (ct is dict or ct is list) and _depth_exceeds(child, budget - 1):
            return True
    return False


def canonical(
    raw: bytes | bytearray | memoryview,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    light: bool = False,
) -> tuple[Any, bytes]:
    """Parse ``raw`` and return it with its JSON.stringify form: what eduMe signs.

    ``light``: raise :class:`HeavyDocument` instead of doing work that grows with the
    document in Python (see the module's docstring); without it, the same answer always.
    """
    raw = _as_bytes(raw)
    value, js = canonical_unchecked(raw, max_depth=max_depth, light=light)
    check_depth(raw, value, max_depth)
    return value, js


def canonical_unchecked(
    raw: bytes | bytearray | memoryview,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    light: bool = False,
) -> tuple[Any, bytes]:
    """:func:`canonical` without its last step, the depth check: for a caller that needs
    the form first and the document only once the form proved authentic, so that a forged
    body does not make it pay the check. Call :func:`check_depth` before using the value.
    (``max_depth`` still guards the slow paths, which recurse.)"""
    raw = _as_bytes(raw)
    value = _parse_unchecked(raw, light)
    return value, _stringify(value, len(raw) if light else None, max_depth)


# ------------------------------------------------------------------------ stringify


def stringify(value: Any) -> bytes:
    """Return ``JSON.stringify(value)`` as UTF-8 bytes, byte for byte as Node prints it.

    Defined for what :func:`parse` returns: dict, list, str, int, float, bool, None.
    """
    return _stringify(value, None, None)


def _stringify(value: Any, light_size: int | None, max_depth: int | None) -> bytes:
    """:func:`stringify`; ``light_size`` (the body's size, in light mode) bounds the slow
    paths as :func:`canonical` says, and ``max_depth`` is checked before they recurse."""
    t = type(value)
    if t is float:
        return _format_float_json(value).encode()
    if t is not dict and t is not list:
        try:
            return orjson.dumps(value, default=_refuse_type, option=_DUMPS_OPTIONS)
        except _JSONEncodeError:
            return _stringify_walked(value)  # a big integer, a lone surrogate, a foreign type
    try:
        out = orjson.dumps(value, default=_refuse_type, option=_CONTAINER_OPTIONS)
    except _JSONEncodeError:
        # Lone surrogates, integers beyond 64 bits, nesting past orjson's limit (254) or a
        # foreign type: the walk decides.
        _before_walk(value, light_size, max_depth)
        return _stringify_walked(value)
    if _maybe_index_key(out.translate(_SCREEN_TABLE, _SCREEN_DELETE)) is not None:
        _before_walk(value, light_size, max_depth)
        return _stringify_walked(value)
    return _rewrite_numbers(out, light_size)


def _before_walk(value: Any, light_size: int | None, max_depth: int | None) -> None:
    """In light mode, refuse the walk for a body over ``LIGHT_MAX_SLOW_BYTES``; refuse a
    document nested past ``max_depth`` before the walk recurses into it."""
    if light_size is not None and light_size > LIGHT_MAX_SLOW_BYTES:
        raise HeavyDocument("the document needs the walk")
    if max_depth is not None:
        _check_depth(value, max_depth)


# The index-key screen, and why it misses none.  orjson's output is compact, and an
# array-index key is printed ``"<digits>":`` (orjson never escapes digits).  The image
# deletes digits and signs, so such a key's image is ``"":``.  String content can only
# raise false alarms (an empty key, a key of digits and signs), which cost the walk, never
# a different output; an escaped quote keeps text such as ``\"12\":`` from reading ``"":``.
_SCREEN_TABLE: Final = bytes.maketrans(b".eE[]{}", b"...,,,,")
_SCREEN_DELETE: Final = b"0123456789+-"
_maybe_index_key: Final = re.compile(rb'"":').search

# What orjson prints unlike JavaScript, as orjson prints it (see the module's docstring):
# an integral float below 1e16 ends in ``.0`` before a delimiter; floats from 1e16 to 1e21
# have the exponents ``e+16`` .. ``e+20``, from 1e-6 to 1e-5 ``e-6``; an integer beyond
# 2**53 has 16 digits or more.  Anything else orjson prints is JavaScript's text already.
# One regular-expression search each (about 0.6 ms a megabyte, the literal prefix found at
# C speed): three substring searches would scan three times.
_integral_probe: Final = re.compile(rb"\.0[,\]}]").search
_exponent_probe: Final = re.compile(rb"e(?:\+1|\+20|-6)").search
_EXPONENTS: Final = ("e+16", "e+17", "e+18", "e+19", "e+20", "e-6")
_LONG_RUN: Final = b"0" * 16
_DIGIT_IMAGE: Final = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_EXPONENT_TOKEN: Final = re.compile(r"e(?:\+(?:1[6-9]|20)|-6)(?=[,\]}])")
_BEFORE_NUMBER: Final = (",", ":", "[")
_AFTER_NUMBER: Final = (",", "]", "}")


def _rewrite_numbers(out: bytes, light_size: int | None) -> bytes:
    """Rewrite, outside string literals, the numbers orjson prints unlike JavaScript.

    C-speed probes first: most documents (no float, or floats orjson already prints as
    JavaScript) leave here untouched.  A probe that fires on string content costs the
    split, never a different output: the rewrite only sees the text between strings.
    """
    integral, tokens = _number_probes(out)
    if not (integral or tokens):
        return out
    if light_size is not None and out.count(b'"') > 2 * LIGHT_MAX_STRINGS:
        raise HeavyDocument("too many strings around the numbers to rewrite")
    text = out.decode("utf-8")
    # orjson escapes every quote and backslash inside a string as \" and \\; masked with
    # NUL and SOH (which it always escapes, so never prints raw), every quote left delimits
    # a string, and the even pieces of a split on quotes are the text between strings.
    escaped = "\\" in text
    if escaped:
        text = text.replace("\\\\", "\0\0").replace('\\"', "\1\1")
    pieces = text.split('"')
    between = '"'.join(pieces[0::2])
    rewritten = between
    if integral:
        rewritten = _rewrite_integral_floats(rewritten)
    if tokens:
        rewritten = _rewrite_tokens(rewritten, light_size)
    if rewritten == between:
        return out  # the probes fired on string content only
    pieces[0::2] = rewritten.split('"')
    text = '"'.join(pieces)
    if escaped:
        text = text.replace("\0\0", "\\\\").replace("\1\1", '\\"')
    return text.encode("utf-8")


def _number_probes(out: bytes) -> tuple[bool, bool]:
    """Whether orjson's ``out`` may hold an integral float, and a number to re-print; a
    ``(False, False)`` means every number in it is JavaScript's text already."""
    integral = _integral_probe(out) is not None
    tokens = _exponent_probe(out) is not None or _LONG_RUN in out.translate(_DIGIT_IMAGE)
    return integral, tokens


def _rewrite_integral_floats(between: str) -> str:
    """``50.0`` → ``50`` and ``-0.0`` → ``0``, by plain replacement: between strings, ``.0``
    before a delimiter ends nothing but an integral float (orjson writes no other zero
    fraction), and ``-0.0`` is that float's only negative zero."""
    for end in ",]}":
        between = between.replace("-0.0" + end, "0" + end).replace(".0" + end, end)
    return between


def _rewrite_tokens(between: str, light_size: int | None) -> str:
    """Re-print, one by one, the floats with the exponents JavaScript writes out in full and
    the integers beyond 2**53; other text is copied by slices."""
    ascii_between = between.encode("ascii")  # between strings, JSON text is ASCII
    image = ascii_between.translate(_DIGIT_IMAGE)
    if light_size is not None:
        count = image.count(_LONG_RUN) + sum(between.count(e) for e in _EXPONENTS)
        if count > LIGHT_MAX_TOKENS:
            raise HeavyDocument(f"{count} numbers to re-print")
    spans: list[tuple[int, int]] = []
    for match in _EXPONENT_TOKEN.finditer(between):
        at = match.start()
        start = max(between.rfind(d, max(at - 32, 0), at) for d in _BEFORE_NUMBER) + 1
        spans.append((start, match.end()))
    at = image.find(_LONG_RUN)
    while at >= 0:
        end = image.find(b" ", at)
        end = len(image) if end < 0 else end
        start = at - 1 if ascii_between[at - 1 : at] == b"-" else at
        # An integer token: a delimiter before it (or its sign) and one after; digits
        # that belong to a float (``.`` or ``e`` next to them) are left alone.
        if between[start - 1 : start] in _BEFORE_NUMBER and between[end : end + 1] in _AFTER_NUMBER:
            spans.append((start, end))
        at = image.find(_LONG_RUN, end)
    if not spans:
        return between
    spans.sort()
    printed: dict[str, str] = {}
    pieces: list[str] = []
    done = 0
    for start, end in spans:
        token = between[start:end]
        js = printed.get(token)
        if js is None:
            js = printed[token] = _format_float_json(float(token))
        pieces.append(between[done:start])
        pieces.append(js)
        done = end
    pieces.append(between[done:])
    return "".join(pieces)


def _stringify_walked(value: Any) -> bytes:
    """Walk ``value``, fix floats and key order for orjson, print; exact path if orjson fails."""
    t = type(value)
    if t is dict:
        prepared = _prep_dict(value)
    elif t is list:
        prepared = _prep_list(value)
    else:
        prepared = value
    try:
        return orjson.dumps(prepared, default=_refuse_type, option=_DUMPS_OPTIONS)
    except _JSONEncodeError:
        # Big integers, lone surrogates or a foreign type: the exact path decides.
        return _stringify_exact(value)


def _prep_dict(d: dict[str, Any]) -> Any:
    """Return ``d`` itself when orjson prints it as JavaScript would, else a fixed copy."""
    new: dict[str, Any] | None = None
    index_keys = False
    for k, v in d.items():
        if k < ":" and _is_array_index(k):
            index_keys = True
        t = type(v)
        if t is dict:
            nv = _prep_dict(v)
        elif t is list:
            nv = _prep_list(v)
        elif t is float:
            nv = _Fragment(_format_float_json(v))
        else:
            continue
        if nv is not v:
            if new is None:
                new = dict(d)
            new[k] = nv
    if index_keys:
        return _js_order(d if new is None else new)
    return d if new is None else new


def _prep_list(a: list[Any]) -> list[Any]:
    """Return ``a`` itself when orjson prints it as JavaScript would, else a fixed copy."""
    new: list[Any] | None = None
    for i, v in enumerate(a):
        t = type(v)
        if t is dict:
            nv = _prep_dict(v)
        elif t is list:
            nv = _prep_list(v)
        elif t is float:
            nv = _Fragment(_format_float_json(v))
        else:
            continue
        if nv is not v:
            if new is None:
                new = a.copy()
            new[i] = nv
    return a if new is None else new


def _refuse_type(obj: Any) -> Any:
    """orjson's ``default`` hook: anything outside JSON's data model goes to the exact path."""
    raise TypeError(f"{type(obj).__name__} is not a JSON value")


def _is_array_index(key: str) -> bool:
    """Whether JavaScript treats ``key`` as an array index and so enumerates it first."""
    return (
        key.isdigit()
        and key.isascii()
        and (key[0] != "0" or key == "0")
        and len(key) <= 10
        and int(key) <= _MAX_ARRAY_INDEX
    )


def _js_order(d: dict[str, Any]) -> dict[str, Any]:
    """Reorder keys as JavaScript enumerates them: array indices ascending, then the rest."""
    index = sorted((k for k in d if _is_array_index(k)), key=int)
    ordered = {k: d[k] for k in index}
    for k, v in d.items():
        if k not in ordered:
            ordered[k] = v
    return ordered


def _stringify_exact(value: Any) -> bytes:
    """Slow reference serializer: every JavaScript rule spelled out, for rare documents."""
    out: list[str] = []
    _emit(value, out)
    return "".join(out).encode("utf-8")


def _emit(value: Any, out: list[str]) -> None:
    """Append the JavaScript text of ``value`` to ``out``."""
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    else:
        t = type(value)
        if t is str:
            out.append(_js_string(value))
        elif t is int:
            text = format_number(value)
            out.append(text if text[-1] != "y" else "null")  # ±Infinity prints as null
        elif t is float:
            out.append(_format_float_json(value))
        elif t is dict:
            items = _js_order(value).items()
            out.append("{")
            first = True
            for k, v in items:
                if type(k) is not str:
                    raise TypeError(f"object key of type {type(k).__name__} is not a string")
                if not first:
                    out.append(",")
                first = False
                out.append(_js_string(k))
                out.append(":")
                _emit(v, out)
            out.append("}")
        elif t is list or t is tuple:
            out.append("[")
            for i, v in enumerate(value):
                if i:
                    out.append(",")
                _emit(v, out)
            out.append("]")
        else:
            raise TypeError(f"{t.__name__} is not a JSON value")


def _js_string(s: str) -> str:
    """Quote ``s`` as JSON.stringify does, treating the str as JavaScript's UTF-16 would."""
    if not s.isascii():
        # Adjacent high+low surrogate code points form one character in JavaScript.
        s = s.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    return '"' + _JS_ESCAPE_RE.sub(_js_escape_char, s) + '"'


def _js_escape_char(match: re.Match[str]) -> str:
    """Escape one character as JavaScript's QuoteJSONString does."""
    c = match.group()
    short = _JS_ESCAPES.get(c)
    return short if short is not None else f"\\u{ord(c):04x}"


# -------------------------------------------------------------------------- numbers


def format_number(x: int | float) -> str:
    """Return ``String(x)`` as JavaScript prints the Number ``x`` (Number::toString, radix 10).

    Integers are first rounded to the nearest double, as JavaScript's parser does.
    """
    if isinstance(x, bool) or not isinstance(x, int | float):
        raise TypeError(f"{type(x).__name__} is not a number")
    if isinstance(x, int):
        if -_MAX_SAFE_INTEGER <= x <= _MAX_SAFE_INTEGER:
            return str(int(x))
        try:
            x = float(x)
        except OverflowError:
            return "Infinity" if x > 0 else "-Infinity"
    x = float(x)
    if x != x:
        return "NaN"
    if x in (_INF, _NEG_INF):
        return "Infinity" if x > 0 else "-Infinity"
    return _format_float_json(x)


_INF: Final = float("inf")
_NEG_INF: Final = float("-inf")


def _format_float_json(x: float) -> str:
    """JSON.stringify of a float: JavaScript's digits, ``null`` for NaN and infinities."""
    if x.is_integer():
        if -_MAX_SAFE_INTEGER <= x <= _MAX_SAFE_INTEGER:
            return str(int(x))  # covers -0.0 -> "0"
    elif x != x:
        return "null"
    if x in (_INF, _NEG_INF):
        return "null"
    return _format_finite(x)


def _format_finite(x: float) -> str:
    """Place Python's shortest round-trip digits by ECMA-262 Number::toString's rules."""
    r = repr(x)
    sign = ""
    if r[0] == "-":
        sign = "-"
        r = r[1:]
    mantissa, _, exp = r.partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = whole + frac
    n = len(whole) + (int(exp) if exp else 0)  # value = 0.DIGITS * 10**n
    stripped = digits.lstrip("0")
    n -= len(digits) - len(stripped)
    digits = stripped.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        body = digits + "0" * (n - k)
    elif 0 < n <= 21:
        body = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        body = "0." + "0" * -n + digits
    else:
        e = n - 1
        mantissa = digits[0] + "." + digits[1:] if k > 1 else digits
        body = mantissa + ("e+" if e >= 0 else "e-") + str(abs(e))
    return sign + body
