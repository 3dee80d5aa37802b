"""Who may read the query API, and how one worker vouches for a request it forwards.

Pure: no Faust, no HTTP; ``streams.worker.web`` hands it header values and the clock.

**Callers** send ``Authorization: Bearer <token>`` with a token of ``WORKER_API_TOKENS`` or
``WORKER_LINK_TOKENS``; only the latter see a link's ``url`` (a signed seamless link logs
its learner in). The presented token is compared with every configured token, each
comparison by ``hmac.compare_digest`` over SHA-256 digests (equal lengths, so not even a
token's length shows), and all of them made whatever matched: the time taken says
nothing about which token, if any, was right.

**Forwarding.** A worker asked about a key another worker owns forwards the request to
the owner named by the group's assignment. Which URL that is comes from what each member
of the consumer group advertised about itself, so anyone able to join the group could
name any URL. The forwarded request therefore never carries the caller's token: it
carries a *routing credential*, an HMAC-SHA256 over the method, the receiving worker's
URL (its audience), the path, the query, the forwarding worker's URL, the time and
whether the caller may see link URLs, under keys derived from ``WORKER_API_TOKENS`` (one
per token: ``HMAC(token, FORWARD_KEY_LABEL)``). The receiver accepts a request marked as
forwarded only with a credential that is valid for itself, for that very request, and at
most ``FORWARD_TTL_S`` old (either way: the workers' clocks may differ a little). A
rogue URL thus receives a credential good for nothing but the request it was sent
(which it cannot send anywhere else: the audience is its own URL) for half a minute.

The owner signs its answer in turn (``X-Edume-Routed-Reply``: an HMAC over the request's
credential, the status and the body's digest), and the forwarding worker passes on only
an answer so signed: a member that does not know the tokens can neither read another's
data through a forward nor answer in a worker's name.

The credential and the reply carry one MAC per token the sender has, and a receiver
accepts a MAC under any of its own keys: during a rotation (``OLD,NEW`` everywhere, then
``NEW``) any two workers that share one token understand each other, in whatever order
their lists are.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from streams.core.errors import ConfigurationError

FORWARD_TTL_S: Final = 30
"""How long a routing credential is good for, either side of its time: a forward takes
at most 5 s (its timeout); the rest is room for the workers' clocks to differ."""
FORWARD_KEY_LABEL: Final = b"edume-streams/worker-forward/v1"
ROUTED_AUTH_HEADER: Final = "X-Edume-Routed-Auth"
"""The routing credential of a forwarded request."""
REPLY_AUTH_HEADER: Final = "X-Edume-Routed-Reply"
"""The owner's MACs over its answer to a forwarded request."""
_VERSION: Final = "v1"
_MAX_MACS: Final = 8
"""A credential with more MACs than this is refused before any is computed."""


@dataclass(frozen=True)
class Access:
    """What a request that passed the check may see."""

    links: bool
    """May see signed link URLs (a ``WORKER_LINK_TOKENS`` token, or a forward on behalf of
    one)."""
    credential: str | None = None
    """The routing credential of a forwarded request (its answer is signed over it);
    ``None`` for a caller's own request."""

    @property
    def forwarded(self) -> bool:
        return self.credential is not None


@dataclass(frozen=True)
class Forward:
    """A request as one worker sends it to another, and as the other checks it."""

    method: str
    audience: str
    """The receiving worker's URL, as the group's assignment names it."""
    path: str
    query: tuple[tuple[str, str], ...]
    routed_by: str
    """The forwarding worker's URL (``X-Edume-Routed-By``)."""

    def message(self, issued_s: int, links: bool) -> bytes:
        """What the credential's MACs are over: every part in one unambiguous JSON array."""
        return json.dumps(
            ["edume-streams/forward/v1", self.method.upper(), self.audience, self.path,
             sorted([k, v] for k, v in self.query), self.routed_by, issued_s, links],
            separators=(",", ":"),
        ).encode()


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "replace")).digest()


def _macs(keys: Iterable[bytes], message: bytes) -> list[bytes]:
    return [hmac.new(key, message, hashlib.sha256).digest() for key in keys]


def _any_equal(presented: Sequence[bytes], expected: Sequence[bytes]) -> bool:
    """Whether any presented value equals any expected one, comparing every pair in
    constant time and all of them (no early exit)."""
    found = False
    for mine in expected:
        for theirs in presented:
            found |= hmac.compare_digest(mine, theirs)
    return found


class ApiAuth:
    """The query API's tokens and the forwarding keys derived from them."""

    def __init__(self, api_tokens: Sequence[str], link_tokens: Sequence[str] = ()) -> None:
        if not api_tokens:
            raise ConfigurationError(
                "set WORKER_API_TOKENS (comma-separated bearer tokens for the worker's query "
                "API); the worker does not serve learners' data without one"
            )
        self._tokens: tuple[tuple[bytes, bool], ...] = (
            *((_digest(t), False) for t in api_tokens),
            *((_digest(t), True) for t in link_tokens),
        )
        self._keys: tuple[bytes, ...] = tuple(
            hmac.new(t.encode(), FORWARD_KEY_LABEL, hashlib.sha256).digest() for t in api_tokens
        )

    def __repr__(self) -> str:
        return f"ApiAuth({len(self._tokens)} tokens)"

    # ------------------------------------------------------------------- callers

    def bearer(self, authorization: str | None) -> Access | None:
        """The access an ``Authorization`` header grants, or ``None`` (no header, another
        scheme, or a token that is not configured)."""
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        presented = _digest(token)
        matched = links = False
        for digest, is_link in self._tokens:  # every token, whatever matched
            equal = hmac.compare_digest(presented, digest)
            matched |= equal
            links |= equal & is_link
        if scheme.lower() != "bearer" or not token or not matched:
            return None
        return Access(links=links)

    # ---------------------------------------------------------------- forwarding

    def credential(self, request: Forward, *, links: bool, now_s: float) -> str:
        """The routing credential for ``request``, issued now."""
        issued = math.floor(now_s)
        macs = _macs(self._keys, request.message(issued, links))
        return f"{_VERSION} {issued} {int(links)} {','.join(m.hex() for m in macs)}"

    def check_credential(self, credential: str | None, request: Forward, *, now_s: float
                         ) -> Access | None:
        """The access a forwarded request's credential grants, or ``None``: missing,
        malformed, too old or from the future, or not valid for this request here."""
        parsed = _parse_credential(credential)
        if parsed is None:
            return None
        issued, links, presented = parsed
        if abs(now_s - issued) > FORWARD_TTL_S:
            return None
        if not _any_equal(presented, _macs(self._keys, request.message(issued, links))):
            return None
        return Access(links=links, credential=credential)

    def reply_mac(self, credential: str, status: int, body: bytes) -> str:
        """``X-Edume-Routed-Reply`` for the answer to a forwarded request."""
        return ",".join(m.hex() for m in _macs(self._keys, _reply(credential, status, body)))

    def check_reply(self, credential: str, status: int, body: bytes, header: str | None
                    ) -> bool:
        """Whether an answer to the request sent with ``credential`` comes from a worker
        that knows a token of ours."""
        presented = _parse_macs(header or "")
        if presented is None:
            return False
        return _any_equal(presented, _macs(self._keys, _reply(credential, status, body)))


def _reply(credential: str, status: int, body: bytes) -> bytes:
    return json.dumps(["edume-streams/reply/v1", credential, status,
                       hashlib.sha256(body).hexdigest()], separators=(",", ":")).encode()


def _parse_macs(text: str) -> list[bytes] | None:
    parts = text.split(",")
    if not 1 <= len(parts) <= _MAX_MACS:
        return None
    try:
        macs = [bytes.fromhex(part) for part in parts]
    except ValueError:
        return None
    return macs if all(len(m) == hashlib.sha256().digest_size for m in macs) else None


def _parse_credential(text: str | None) -> tuple[int, bool, list[bytes]] | None:
    """``v1 <issued, unix seconds> <links 0|1> <hex MAC>[,<hex MAC>...]``, or ``None``."""
    parts = (text or "").split(" ")
    if len(parts) != 4 or parts[0] != _VERSION or parts[2] not in ("0", "1"):
        return None
    if not (parts[1].isascii() and parts[1].isdigit() and len(parts[1]) <= 12):
        return None
    macs = _parse_macs(parts[3])
    if macs is None:
        return None
    return int(parts[1]), parts[2] == "1", macs


def peer_url(advertised: str) -> str | None:
    """A URL a group member advertised, as a forward may use it: ``http`` or ``https``,
    with a host, without credentials, query or fragment (a path prefix is kept, for a
    worker behind a proxy); ``None`` for anything else, and no forward goes there."""
    try:
        parts = urlsplit(advertised)
        port = parts.port
    except ValueError:
        return None
    del port  # parsed only to refuse a port that is not a number
    if (parts.scheme not in ("http", "https") or not parts.hostname or parts.username
            is not None or parts.password is not None or parts.query or parts.fragment
            or "@" in parts.netloc or any(c.isspace() for c in advertised)):
        return None
    return advertised.rstrip("/")
