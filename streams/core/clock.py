"""The receive-time stamp every produced record carries in ``edume-received-at``, and the
rule that an event may not be stamped far after it (``MAX_CLOCK_SKEW``): the ingress applies
it with its own clock, the workers and ``dlq replay`` with the stamp a record carries."""

from __future__ import annotations

import time
from typing import Final

from streams.core.state.common import UnusableEvent, parse_timestamp

MAX_CLOCK_SKEW_S: Final = 3600.0
"""``MAX_CLOCK_SKEW``'s default: how far after its receipt an event may be stamped."""


class Rfc3339Clock:
    """UTC time with milliseconds, as in ``2026-01-02T03:04:05.678Z``. Every record needs a
    stamp, so the date is formatted once per second and the whole stamp once per
    millisecond."""

    __slots__ = ("_ms", "_prefix", "_second", "_stamp")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""
        self._ms = -1
        self._stamp = b""

    def __call__(self, now: float | None = None) -> bytes:
        t = time.time() if now is None else now
        ms = int(t * 1000)
        if ms != self._ms:
            second = ms // 1000
            if second != self._second:
                self._second = second
                self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._ms = ms
            self._stamp = f"{self._prefix}.{ms % 1000:03d}Z".encode()
        return self._stamp


def rfc3339(timestamp_ms: int) -> str:
    """A time in milliseconds since the epoch as ``2026-01-02T03:04:05.678Z``."""
    seconds, millis = divmod(timestamp_ms, 1000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{millis:03d}Z"


def timestamp_skew(timestamp: str, received_us: int, max_skew_s: float) -> str | None:
    """``future_skew`` of an event's ``timestamp`` as sent. A timestamp that is not a time
    passes here: the workers refuse it, saying so."""
    try:
        stamped_us = parse_timestamp(timestamp)
    except UnusableEvent:
        return None
    return future_skew(stamped_us, received_us, max_skew_s)


def future_skew(event_us: int, received_us: int, max_skew_s: float) -> str | None:
    """Why an event stamped ``event_us`` is refused when it was received at ``received_us``
    (both microseconds since the epoch): it is stamped more than ``max_skew_s`` after its
    receipt (``MAX_CLOCK_SKEW``). None when it is not."""
    ahead_us = event_us - received_us
    if ahead_us <= max_skew_s * 1_000_000:
        return None
    return (f"stamped {_span(ahead_us / 1_000_000)} after it was received (clock skew over "
            f"MAX_CLOCK_SKEW, {_span(max_skew_s)})")


def _span(seconds: float) -> str:
    """A positive duration in its largest unit, to a tenth: ``1h``, ``1.5m``, ``27003.2d``."""
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        if seconds >= size:
            return f"{seconds / size:.1f}".removesuffix(".0") + unit
    return f"{seconds * 1000:.0f}ms"
