"""Prometheus text metrics for the ingress, kept to plain integer and float updates.

A dependency-free registry: the hot path does one dict lookup and an add per counter, and
the histogram a bisect; rendering happens only when ``/metrics`` is scraped. Label values
are fixed strings from this codebase, never request data, so nothing secret or personal can
reach a scrape.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable

OUTCOMES = (
    "published",
    "duplicate",
    "dlq",
    "unauthorized",
    "bad_request",
    "too_large",
    "timeout",
    "unavailable",
    "not_found",
    "method_not_allowed",
)
PUBLISH_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Histogram:
    """A cumulative Prometheus histogram over fixed buckets."""

    __slots__ = ("buckets", "count", "counts", "sum")

    def __init__(self, buckets: Iterable[float]) -> None:
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def render(self, name: str) -> list[str]:
        lines = []
        running = 0
        for bound, n in zip(self.buckets, self.counts, strict=False):
            running += n
            lines.append(f'{name}_bucket{{le="{bound}"}} {running}')
        lines.append(f'{name}_bucket{{le="+Inf"}} {self.count}')
        lines.append(f"{name}_sum {self.sum:.6f}")
        lines.append(f"{name}_count {self.count}")
        return lines


class IngressMetrics:
    """The ingress's counters; gauges are read through callables at scrape time."""

    def __init__(self) -> None:
        self.requests = dict.fromkeys(OUTCOMES, 0)
        self.verification_failures = {"missing": 0, "mismatch": 0}
        self.published_by_topic: dict[str, int] = {}
        self.dlq_by_reason: dict[str, int] = {}
        self.publish_seconds = Histogram(PUBLISH_BUCKETS_S)
        self.gauges: dict[str, tuple[str, Callable[[], float]]] = {}

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """Register a gauge read when scraped (readiness, cache size, in-flight sends)."""
        self.gauges[name] = (help_text, read)

    def render(self) -> bytes:
        out: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")

        family("edume_ingress_requests_total", "counter", "Webhook requests by outcome.")
        out.extend(
            f'edume_ingress_requests_total{{outcome="{k}"}} {v}' for k, v in self.requests.items()
        )
        family(
            "edume_ingress_verification_failures_total",
            "counter",
            "Requests refused with 401, by reason.",
        )
        out.extend(
            f'edume_ingress_verification_failures_total{{reason="{k}"}} {v}'
            for k, v in self.verification_failures.items()
        )
        family(
            "edume_ingress_published_total",
            "counter",
            "Messages acknowledged by the broker, by topic.",
        )
        out.extend(
            f'edume_ingress_published_total{{topic="{k}"}} {v}'
            for k, v in sorted(self.published_by_topic.items())
        )
        family("edume_ingress_dlq_total", "counter", "Authentic events sent to the DLQ, by reason.")
        out.extend(
            f'edume_ingress_dlq_total{{reason="{k}"}} {v}'
            for k, v in sorted(self.dlq_by_reason.items())
        )
        family(
            "edume_ingress_publish_seconds",
            "histogram",
            "Time from send to broker acknowledgement (acks=all).",
        )
        out.extend(self.publish_seconds.render("edume_ingress_publish_seconds"))
        for name, (help_text, read) in self.gauges.items():
            family(name, "gauge", help_text)
            out.append(f"{name} {read()}")
        return ("\n".join(out) + "\n").encode()
