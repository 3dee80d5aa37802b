"""The ingress's Prometheus metrics: label children bound at construction, gauges read at
scrape time (see :mod:`streams.metrics`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final

from prometheus_client import Counter, Histogram

from streams.metrics import gauge, new_registry, render

OUTCOMES: Final = (
    "published",
    "duplicate",
    "dlq",
    "unauthorized",
    "bad_request",
    "too_large",
    "timeout",
    "unavailable",
    "overloaded",
    "not_found",
    "method_not_allowed",
)
VERIFICATION_FAILURES: Final = ("missing", "mismatch")
DLQ_REASONS: Final = ("unknown_type", "schema_mismatch", "clock_skew")
PUBLISH_BUCKETS_S: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)


class IngressMetrics:
    """One ingress's counters, by label value, in a registry of its own."""

    def __init__(self, topics: Iterable[str]) -> None:
        self.registry = registry = new_registry()
        self.requests = _children(
            Counter("edume_ingress_requests", "Webhook requests by outcome.", ["outcome"],
                    registry=registry),
            OUTCOMES,
        )
        self.verification_failures = _children(
            Counter("edume_ingress_verification_failures",
                    "Requests refused with 401, by reason.", ["reason"], registry=registry),
            VERIFICATION_FAILURES,
        )
        self.published = _children(
            Counter("edume_ingress_published", "Messages acknowledged by the broker, by topic.",
                    ["topic"], registry=registry),
            topics,
        )
        self.dlq = _children(
            Counter("edume_ingress_dlq", "Authentic events sent to the DLQ, by reason.",
                    ["reason"], registry=registry),
            DLQ_REASONS,
        )
        self.publish_seconds = Histogram(
            "edume_ingress_publish_seconds",
            "Time from send to broker acknowledgement (acks=all).",
            buckets=PUBLISH_BUCKETS_S,
            registry=registry,
        )

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """Register a gauge read when scraped (readiness, cache size, in-flight sends)."""
        gauge(self.registry, name, help_text, read)

    def render(self) -> bytes:
        return render(self.registry)


def _children(counter: Counter, values: Iterable[str]) -> dict[str, Counter]:
    return {value: counter.labels(value) for value in values}
