"""Pure verification of eduMe webhooks and signing of seamless links, both over bytes.

eduMe signs ``JSON.stringify(payload)`` with ``crypto.createHmac('sha256', secret)``; the
body on the wire is usually that very string, so the raw-body HMAC is tried first and the
JavaScript form (see :mod:`streams.core.jsjson`) only when the raw bytes do not match.  Secrets
never appear in a message, ``repr`` or ``str``.

Verification comes in two steps so that an HTTP edge can refuse early:
:meth:`WebhookVerifier.check_headers` needs the headers alone (no signature and no accepted
bearer token: 401 before a byte of the body is read), :meth:`WebhookVerifier.verify_body`
the body too.  ``light=True`` passes :class:`~streams.core.jsjson.HeavyDocument` up
instead of computing an expensive JavaScript form (see :func:`streams.core.jsjson.canonical`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Any, Final, Literal, NamedTuple
from urllib.parse import quote, urlsplit

from streams.core.errors import (
    ConfigurationError,
    LinkError,
    MalformedBody,
    MalformedJSON,
    SignatureMismatch,
    SignatureMissing,
)
from streams.core.jsjson import DEFAULT_MAX_DEPTH, canonical, canonical_unchecked, check_depth

__all__ = [
    "LINK_KINDS",
    "Credentials",
    "Verified",
    "WebhookVerifier",
    "build_link",
    "sign_link",
    "sign_webhook",
]

Method = Literal["raw", "js", "bearer"]

_SHA256_PREFIX: Final = b"sha256="
_HEX_DIGITS: Final = b"0123456789abcdefABCDEF"
_MISMATCH: Final = "X-Edume-Signature does not match the body for any configured secret"


class Verified(NamedTuple):
    """An authentic webhook: the parsed object, its JavaScript form and the id derived from it.

    A NamedTuple (immutable, and three times cheaper to build than a frozen dataclass on
    the hot path); its repr leaves out the document, which may hold personal data.
    """

    document: dict[str, Any]
    canonical: bytes
    event_id: str
    method: Method

    def __repr__(self) -> str:
        """Name the event and how it was authenticated, not what it says."""
        return f"Verified(event_id={self.event_id!r}, method={self.method!r})"


class Credentials(NamedTuple):
    """What a request's headers offer, checked before its body is read: an accepted bearer
    token, and the digest its ``X-Edume-Signature`` carries (None: none usable)."""

    bearer: bool
    digest: bytes | None

    def __repr__(self) -> str:
        """The digest is public (it travels in the header), but nothing needs to print it."""
        return f"Credentials(bearer={self.bearer!r}, signed={self.digest is not None!r})"


class WebhookVerifier:
    """Checks eduMe webhooks against every configured secret and bearer token (rotation).

    Keyed HMAC states are built once and ``copy()``-ed per message, which is cheaper than
    re-keying; the verifier is immutable and safe to share between requests.
    """

    __slots__ = ("_macs", "_max_depth", "_tokens")

    def __init__(
        self,
        secrets: Sequence[str],
        bearer_tokens: Sequence[str] = (),
        *,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        """Normalise and check secrets once, so a bad configuration stops start-up."""
        keys = _normalise("webhook secret", secrets)
        tokens = _normalise("bearer token", bearer_tokens)
        if not keys and not tokens:
            raise ConfigurationError(
                "no webhook secret and no bearer token configured: nothing can verify a webhook"
            )
        self._macs: tuple[Any, ...] = tuple(hmac.new(key, digestmod=hashlib.sha256) for key in keys)
        self._tokens: tuple[bytes, ...] = tokens
        self._max_depth = max_depth

    def __repr__(self) -> str:
        """Say how many credentials there are, never what they are."""
        return (
            f"WebhookVerifier(secrets=<{len(self._macs)} hidden>, "
            f"bearer_tokens=<{len(self._tokens)} hidden>)"
        )

    __str__ = __repr__

    def __reduce__(self) -> Any:
        """Refuse pickling: a pickle would carry the keyed HMAC states out of the process."""
        raise TypeError("WebhookVerifier holds secrets and cannot be pickled")

    def verify(
        self,
        body: bytes,
        signature: bytes | str | None,
        authorization: bytes | str | None = None,
        *,
        light: bool = False,
    ) -> Verified:
        """Return the verified webhook, or raise a VerificationError saying 401 or 400.

        Cheapest first: a bearer token or the raw-body HMAC; only when neither matches is the
        body parsed and its JavaScript ``JSON.stringify`` form checked.
        """
        return self.verify_body(body, self.check_headers(signature, authorization), light=light)

    def check_headers(
        self, signature: bytes | str | None, authorization: bytes | str | None = None
    ) -> Credentials:
        """What the headers offer, or SignatureMissing / SignatureMismatch (401) when no body
        could make this request authentic: no accepted bearer token, and no signature header
        or one that is not a hex HMAC-SHA256. The bearer token is compared in constant time
        with every configured one."""
        bearer = False
        if authorization and self._tokens:
            bearer = self._bearer_ok(_as_bytes(authorization))
        header = _as_bytes(signature).strip() if signature is not None else b""
        digest = _parse_signature(header) if header else None
        if bearer or digest is not None:
            return Credentials(bearer, digest)
        if not header:
            if authorization:
                raise SignatureMissing(
                    "no X-Edume-Signature header, and the Authorization header is not an "
                    "accepted bearer token"
                )
            raise SignatureMissing("no X-Edume-Signature header and no bearer token")
        raise SignatureMismatch(
            "X-Edume-Signature is not a hex HMAC-SHA256 (64 hex digits, "
            "optionally prefixed with sha256=)"
        )

    def verify_body(
        self, body: bytes, credentials: Credentials, *, light: bool = False
    ) -> Verified:
        """The body's half of :meth:`verify`, for credentials from :meth:`check_headers`.

        ``light``: raise :class:`~streams.core.jsjson.HeavyDocument` rather than compute a
        JavaScript form that costs Python work in proportion to the body; the same call
        without it gives the answer. A forged signature is refused without the depth check
        (a walk over the document): only an authentic document needs it.
        """
        max_depth = self._max_depth
        method: Method | None = None
        if credentials.bearer:
            method = "bearer"
        elif credentials.digest is not None and self._matches(body, credentials.digest):
            method = "raw"
        if method is not None:
            try:
                document, js = canonical(body, max_depth=max_depth, light=light)
            except MalformedJSON as exc:
                raise MalformedBody(f"body is {exc}") from None
            return _verified(document, js, method)

        expected = credentials.digest
        if expected is None:  # credentials not from check_headers: nothing vouches for it
            raise SignatureMissing("no X-Edume-Signature header and no bearer token")
        try:
            document, js = canonical_unchecked(body, max_depth=max_depth, light=light)
        except MalformedJSON:
            raise SignatureMismatch(_MISMATCH) from None  # nothing authentic is known of it
        if js == body or not self._matches(js, expected):
            raise SignatureMismatch(_MISMATCH)
        try:
            check_depth(body, document, max_depth)
        except MalformedJSON as exc:
            raise MalformedBody(f"body is {exc}") from None
        return _verified(document, js, "js")

    def _matches(self, message: bytes, expected: bytes) -> bool:
        """Whether HMAC-SHA256(secret, message) equals ``expected`` for some secret."""
        for base in self._macs:
            mac = base.copy()
            mac.update(message)
            if hmac.compare_digest(mac.digest(), expected):
                return True
        return False

    def _bearer_ok(self, authorization: bytes) -> bool:
        """Whether ``Authorization: Bearer <token>`` names a configured token (any case scheme)."""
        parts = authorization.split(None, 1)
        if len(parts) != 2 or parts[0].lower() != b"bearer":
            return False
        presented = parts[1].strip()
        ok = False
        for token in self._tokens:  # every token compared: no early exit
            ok |= hmac.compare_digest(presented, token)
        return ok


def _verified(document: Any, js: bytes, method: Method) -> Verified:
    """Wrap an authentic document, refusing anything but a JSON object (400)."""
    if type(document) is not dict:
        raise MalformedBody(f"body is a JSON {_json_kind(document)}, not an object")
    return Verified(document, js, hashlib.sha256(js).hexdigest(), method)


def _json_kind(value: Any) -> str:
    """Name a parsed JSON value's kind for an error message, without echoing it."""
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return "number"


def _parse_signature(header: bytes) -> bytes | None:
    """The 32-byte digest a header carries, or None when it is not lower/upper-case hex."""
    if len(header) != 64:
        if header[:7].lower() != _SHA256_PREFIX:
            return None
        header = header[7:]
        if len(header) != 64:
            return None
    if header.translate(None, _HEX_DIGITS):  # anything left is not a hex digit
        return None
    if not (header.islower() or header.isupper() or header.isdigit()):
        return None  # the contract accepts lowercase or uppercase hex, not a mix
    return bytes.fromhex(header.decode("ascii"))


def _as_bytes(value: bytes | str) -> bytes:
    """Headers arrive as bytes from ASGI; accept str too without ever raising on odd text."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace")
    return bytes(value)


def _normalise(what: str, values: Sequence[str]) -> tuple[bytes, ...]:
    """Strip each credential and encode it as Node would (UTF-8); refuse empty ones by index."""
    if isinstance(values, str | bytes):
        raise ConfigurationError(f"{what}s must be a sequence of strings, not a single string")
    out: list[bytes] = []
    for i, value in enumerate(values, start=1):
        if not isinstance(value, str):
            raise ConfigurationError(f"{what} #{i} is a {type(value).__name__}, not a string")
        value = value.strip()
        if not value:
            raise ConfigurationError(f"{what} #{i} is empty")
        try:
            out.append(value.encode("utf-8"))
        except UnicodeEncodeError:
            raise ConfigurationError(f"{what} #{i} is not valid Unicode text") from None
    return tuple(out)


def sign_webhook(secret: str, message: bytes) -> str:
    """Sign as eduMe does: lowercase hex HMAC-SHA256 of ``message`` under ``secret``."""
    (key,) = _normalise("webhook secret", (secret,))
    return hmac.new(key, message, hashlib.sha256).hexdigest()


# ---------------------------------------------------------------------------- links

LINK_KINDS: Final = ("course", "module", "lesson", "survey", "guide", "hub", "knowledge-hub")
"""Seamless link kinds, as CONTRACT.md's Links table names them."""

_LINK_PATHS: Final[dict[str, str]] = {
    "course": "c",
    "module": "m",
    "lesson": "l",
    "survey": "s",
    "guide": "gd",
    "hub": "d",
    "knowledge-hub": "kh",
}


def build_link(
    kind: str,
    *,
    base_url: str,
    external_user_id: str,
    content_id: int | str | None,
    team_ids: Sequence[int],
) -> str:
    """Build the unsigned seamless-link URL for ``kind``, exactly as eduMe will re-sign it.

    ``hub`` takes no content id; ``knowledge-hub`` carries no team ids (any given are
    ignored, so one request shape serves every kind).
    """
    if kind not in _LINK_PATHS:
        raise LinkError(f"unknown link kind {kind!r}; expected one of {', '.join(LINK_KINDS)}")
    base = _link_base(base_url)
    e = _encode_external_id(external_user_id)
    path = _LINK_PATHS[kind]
    if kind == "hub":
        if content_id is not None:
            raise LinkError("a hub link takes no content id")
        return f"{base}/{path}/?g={_team_param(kind, team_ids)}&e={e}"
    cid = _content_id(kind, content_id)
    if kind == "knowledge-hub":
        return f"{base}/{path}/{cid}?e={e}"
    return f"{base}/{path}/{cid}?g={_team_param(kind, team_ids)}&e={e}"


def sign_link(url: str, secret: str) -> str:
    """Append ``&sig=`` and the hex HMAC-SHA256 of everything before it, as eduMe checks."""
    if not isinstance(url, str) or "?" not in url:
        raise LinkError("a seamless link URL needs its query string; build it with build_link")
    if "&sig=" in url or "?sig=" in url:
        raise LinkError("the URL is already signed")
    if not isinstance(secret, str) or not secret.strip():
        raise ConfigurationError("the link signing secret is empty")
    key = secret.strip().encode("utf-8")
    sig = hmac.new(key, url.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"{url}&sig={sig}"


def _link_base(base_url: str) -> str:
    """Check the base is an absolute http(s) URL with no query, and drop trailing slashes."""
    if not isinstance(base_url, str) or not base_url.strip():
        raise LinkError("the link base URL is empty")
    base = base_url.strip().rstrip("/")
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise LinkError("the link base URL must be an absolute http(s) URL")
    if parts.query or parts.fragment or "?" in base or "#" in base:
        raise LinkError("the link base URL must not carry a query or fragment")
    return base


def _encode_external_id(external_user_id: str) -> str:
    """Percent-encode UTF-8, keeping only RFC 3986 unreserved characters (A-Z a-z 0-9 -._~)."""
    if not isinstance(external_user_id, str) or not external_user_id:
        raise LinkError("the external user id is empty")
    try:
        return quote(external_user_id, safe="")
    except UnicodeEncodeError:
        raise LinkError("the external user id is not valid Unicode text") from None


def _content_id(kind: str, content_id: int | str | None) -> int:
    """A positive integer content id (courseId, moduleId, ...), from an int or digit string."""
    if content_id is None:
        raise LinkError(f"a {kind} link needs a content id")
    if isinstance(content_id, bool):
        raise LinkError(f"the {kind} id must be a positive integer")
    if isinstance(content_id, str):
        text = content_id.strip()
        if not (text.isascii() and text.isdigit()):
            raise LinkError(f"the {kind} id must be a positive integer")
        content_id = int(text)
    if not isinstance(content_id, int) or content_id <= 0:
        raise LinkError(f"the {kind} id must be a positive integer")
    return content_id


def _team_param(kind: str, team_ids: Sequence[int]) -> str:
    """The ``g`` parameter: one or several positive team ids, comma-joined."""
    if isinstance(team_ids, str | bytes) or not isinstance(team_ids, Sequence):
        raise LinkError("team ids must be a sequence of integers")
    if not team_ids:
        raise LinkError(f"a {kind} link needs at least one team id")
    for team in team_ids:
        if isinstance(team, bool) or not isinstance(team, int) or team <= 0:
            raise LinkError("every team id must be a positive integer")
    return ",".join(str(int(t)) for t in team_ids)
