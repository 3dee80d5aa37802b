"""JSON as JavaScript sees it: ``JSON.parse`` acceptance and byte-exact ``JSON.stringify``.

eduMe signs ``JSON.stringify(payload)``, so verifying a re-formatted body means printing
the parsed value exactly as Node would.  ``orjson.dumps`` already prints most webhook
documents identically (same string escaping, same integers, same key order); it prints
only two things differently:

* floats: JavaScript prints ``50.0`` as ``50``, ``1e21`` as ``1e+21``, ``-0.0`` as ``0``;
* objects with array-index keys (``"0"`` .. ``"4294967294"``): JavaScript enumerates
  those first, in ascending numeric order, then the other keys in insertion order.

So :func:`stringify` first prints with orjson and screens the output at C speed (one
``bytes.translate`` and two precompiled regex searches) for anything that could be a float
or an array-index key.  Nothing found (every eduMe event without a score) means orjson's
bytes are the answer; otherwise one walk over the parsed document swaps the floats for
pre-printed ``orjson.Fragment`` pieces and reorders those objects, and orjson prints again.

Integers beyond 2**53 (JavaScript rounds them to a double) and strings holding lone
surrogates (JavaScript escapes them as ``\\udxxx``; orjson refuses them) make orjson
raise under ``OPT_STRICT_INTEGER``; only then does the slow, exact serializer run.

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

__all__ = ["DEFAULT_MAX_DEPTH", "canonical", "format_number", "parse", "stringify"]

DEFAULT_MAX_DEPTH: Final = 32
"""Containers nested deeper than this are refused: eduMe's documents stay under 8."""

_MAX_SAFE_INTEGER: Final = 2**53
_MAX_ARRAY_INDEX: Final = 2**32 - 2
_DUMPS_OPTIONS: Final = (
    orjson.OPT_STRICT_INTEGER
    | orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
)
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


# ---------------------------------------------------------------------------- parse


def parse(raw: bytes | bytearray | memoryview, *, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Parse ``raw`` as JSON.parse would, fast via orjson, refusing nesting past ``max_depth``."""
    if type(raw) is not bytes:
        raw = bytes(raw)
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = _parse_fallback(raw)
    # A document with no more brackets than the limit cannot nest deeper: skip the walk.
    if raw.count(b"[") + raw.count(b"{") > max_depth:
        _check_depth(value, max_depth)
    return value


def _parse_fallback(raw: bytes) -> Any:
    """Accept what orjson refuses but JSON.parse takes: lone surrogates, infinite numbers."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as uerr:
        raise MalformedJSON(f"not valid JSON (invalid UTF-8 at byte {uerr.start})") from None
    if not text.strip(" \t\n\r"):
        raise MalformedJSON("not valid JSON (empty)") from None
    if text[0] == "\ufeff":
        raise MalformedJSON("not valid JSON (starts with a byte order mark)") from None
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
    raw: bytes | bytearray | memoryview, *, max_depth: int = DEFAULT_MAX_DEPTH
) -> tuple[Any, bytes]:
    """Parse ``raw`` and return it with its JSON.stringify form: what eduMe signs."""
    value = parse(raw, max_depth=max_depth)
    return value, stringify(value)


# ------------------------------------------------------------------------ stringify


def stringify(value: Any) -> bytes:
    """Return ``JSON.stringify(value)`` as UTF-8 bytes, byte for byte as Node prints it.

    Defined for what :func:`parse` returns: dict, list, str, int, float, bool, None.
    """
    t = type(value)
    if t is float:
        return _format_float_json(value).encode()
    try:
        out = orjson.dumps(value, default=_refuse_type, option=_DUMPS_OPTIONS)
    except _JSONEncodeError:
        # Big integers, lone surrogates or a foreign type: the walked path decides.
        return _stringify_walked(value)
    if t is dict or t is list:
        image = out.translate(_SCREEN_TABLE, _SCREEN_DELETE)
        if _maybe_float(image) is not None or _maybe_index_key(image) is not None:
            return _stringify_walked(value)
    return out


# The screen, and why it misses no float and no array-index key.  orjson's output is
# compact, so a float it prints sits between ``:`` (object member) or ``[``/``,`` (array
# element) and ``,``/``]``/``}``, and is a JSON number: digits, signs and at least one ``.``
# or ``e`` (orjson writes ``50.0``, ``1e+16``; NaN and infinities print as ``null``, as in
# JavaScript).  An array-index key is printed ``"<digits>":`` (orjson never escapes digits).
# The image deletes digits and signs, maps ``.eE`` to ``.`` and brackets to ``,``; translate
# works byte by byte, so wherever such a token sits its image is ``:.,``/``,.,`` (``..,``
# when it has both a fraction and an exponent), matched by ``_maybe_float``, or ``"":``,
# matched by ``_maybe_index_key``.  No assumption about strings is needed for that.  So a
# clean image means the walk would change nothing orjson prints differently, and orjson's
# bytes are what the walked path returns; an alarm or an orjson error runs that path itself.
# String content can only raise false alarms, which cost the walk, never a different output.
# They are rare in webhooks: timestamps and UUIDs keep letters and quotes around their dots
# (``"T::.Z"``), ``true,``/``false,`` fail the look-behind (``u.,``), and an escaped quote keeps
# text such as ``\"12\":`` from reading ``"":``.  Text such as ``a:1.5,``, ``x,e,`` or
# ``coffee,`` inside a string, an empty key, or a key of only digits and signs, raises one.
_SCREEN_TABLE: Final = bytes.maketrans(b".eE[]{}", b"...,,,,")
_SCREEN_DELETE: Final = b"0123456789+-"
_maybe_float: Final = re.compile(rb"\.,(?<=[:,.]\.,)").search
_maybe_index_key: Final = re.compile(rb'"":').search


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
