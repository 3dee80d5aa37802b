"""The receive-time stamp every produced record carries in ``edume-received-at``."""

from __future__ import annotations

import time


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
