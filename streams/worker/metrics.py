"""The worker's Prometheus metrics: events applied by type, repeats, dead letters, records
written, batch time, consumer lag, rebalance and recovery time, readiness."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

from faust.sensors import Sensor
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from streams import metrics
from streams.core.records import OutRecord
from streams.worker.processing import Step


class Figures(Protocol):
    """What the worker's live gauges read when scraped."""

    def ready(self) -> bool: ...

    def lag(self) -> list[tuple[str, int, int]]:
        """(topic, partition, records behind) per assigned input partition."""
        ...

    def table_sizes(self) -> dict[str, int]:
        """Keys held in memory, by table name."""
        ...

    def replica_sizes(self) -> tuple[int, int]:
        """Courses and policies in the worker's copy."""
        ...

    def recovery_seconds(self) -> float: ...

TASKS = ("replica", "reminders", "stall-check", "courses", "learners", "policies", "links")
"""What ``edume_worker_task_restarts_total`` counts, each shown from the start (at 0)."""

BATCH_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class _Rebalances(Sensor):
    """Times each rebalance, recovery included (Faust calls these from its consumer)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.last_s = 0.0
        self.count = 0

    def on_rebalance_start(self, app: Any) -> dict[str, float]:
        return {"started": time.monotonic()}

    def on_rebalance_end(self, app: Any, state: dict[str, float]) -> None:
        started = state.get("started") if isinstance(state, dict) else None
        if started is not None:
            self.last_s = time.monotonic() - started
            self.count += 1


class _Live(Collector):
    """Figures read when scraped: lag per input partition, table sizes, readiness."""

    def __init__(self, figures: Figures, rebalances: _Rebalances) -> None:
        self.figures = figures
        self.rebalances = rebalances

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """The families' names only: asked at registration, before the worker runs."""
        return iter(())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        w = self.figures
        ready = GaugeMetricFamily("edume_worker_ready", "1 when /readyz answers 200.")
        ready.add_metric([], 1.0 if w.ready() else 0.0)
        yield ready
        lag = GaugeMetricFamily(
            "edume_worker_lag_records",
            "Records on an assigned input partition not processed yet (the high watermark "
            "of the last fetch minus the offset below which every record was processed; "
            "records fetched and not delivered count until they are read again).",
            labels=["topic", "partition"],
        )
        for topic, partition, behind in w.lag():
            lag.add_metric([topic, str(partition)], float(behind))
        yield lag
        size = GaugeMetricFamily("edume_worker_table_keys", "Keys held in memory, by table.",
                                 labels=["table"])
        for name, keys in w.table_sizes().items():
            size.add_metric([name], float(keys))
        yield size
        held_courses, held_policies = w.replica_sizes()
        courses = GaugeMetricFamily("edume_worker_replica_courses",
                                    "Courses in this worker's copy of the catalog.")
        courses.add_metric([], float(held_courses))
        yield courses
        policies = GaugeMetricFamily("edume_worker_replica_policies",
                                     "Training policies in this worker's copy.")
        policies.add_metric([], float(held_policies))
        yield policies
        recovery = GaugeMetricFamily(
            "edume_worker_recovery_seconds",
            "How long the last table recovery took (changelogs read back into memory).",
        )
        recovery.add_metric([], w.recovery_seconds())
        yield recovery
        rebalance = GaugeMetricFamily(
            "edume_worker_rebalance_seconds",
            "How long the last rebalance took, from revocation to consuming again.",
        )
        rebalance.add_metric([], self.rebalances.last_s)
        yield rebalance


class WorkerMetrics:
    """One worker's registry; counters bound once, updated once per batch."""

    def __init__(self, figures: Figures, sensors: Any) -> None:
        """``figures``: read when scraped; ``sensors``: the Faust app's sensor set, which
        times the rebalances."""
        self.registry = registry = metrics.new_registry()
        self.applied = Counter("edume_worker_events_applied_total",
                               "Events applied to a table, by canonical type.",
                               ["type"], registry=registry)
        self.repeats = Counter("edume_worker_events_repeated_total",
                               "Events already applied (redeliveries, replays): no effect.",
                               registry=registry)
        self.erased = Counter("edume_worker_events_erased_total",
                              "Input records ignored: of a learner erased after they were "
                              "stamped (privacy.erasures).", registry=registry)
        self.dead = Counter("edume_worker_dlq_total",
                            "Records sent to streams.dlq, by kind of reason.",
                            ["reason"], registry=registry)
        self.skipped = Counter("edume_worker_input_redelivered_total",
                               "Input records Faust's consumer fetched and did not deliver, "
                               "read again (their partition sought back to the first of "
                               "them).", registry=registry)
        self.rekeyed = Counter("edume_worker_rekeyed_total",
                               "Records that came under another key or partition, re-keyed.",
                               registry=registry)
        self.written = Counter("edume_worker_records_written_total",
                               "Records the worker wrote (outputs, dead letters, re-keyed), "
                               "by topic.", ["topic"], registry=registry)
        self.reminders = Counter("edume_worker_reminders_fired_total",
                                 "Reminder links asked for (links.issue, reason reminder).",
                                 registry=registry)
        self.batch_seconds = Histogram("edume_worker_batch_seconds",
                                       "Time to process and write one batch.",
                                       buckets=BATCH_BUCKETS_S, registry=registry)
        self.batch_events = Counter("edume_worker_events_consumed_total",
                                    "Records taken from input topics.", registry=registry)
        self.write_failures = Counter(
            "edume_worker_write_failures_total",
            "Records the broker did not take, by kind: transient (sent again after a pause) "
            "or permanent (refused for good; their cause went to streams.dlq).",
            ["kind"], registry=registry)
        self.task_restarts = Counter(
            "edume_worker_task_restarts_total",
            "Background work that failed and was started again after a pause, by task: "
            "replica (the catalog and policy reader), reminders, stall-check, and the "
            "agents (courses, learners, policies, links: a batch handled again).",
            ["task"], registry=registry)
        for kind in ("transient", "permanent"):
            self.write_failures.labels(kind)
        for task in TASKS:
            self.task_restarts.labels(task)
        self.rebalances = _Rebalances()
        sensors.add(self.rebalances)
        registry.register(_Live(figures, self.rebalances))

    def dead_letters(self, reason: str, count: int) -> None:
        self.dead.labels(reason).inc(count)

    def task_restarted(self, task: str) -> None:
        self.task_restarts.labels(task).inc()

    def wrote(self, records: Iterable[OutRecord]) -> None:
        """Count records the broker acknowledged, by topic."""
        for record in records:
            self.written.labels(record.topic).inc()

    def batch_done(self, step: Step, events: int, seconds: float) -> None:
        for kind, n in step.applied.items():
            self.applied.labels(kind).inc(n)
        for reason, n in step.dead.items():
            self.dead.labels(reason).inc(n)
        if step.repeats:
            self.repeats.inc(step.repeats)
        if step.rekeyed:
            self.rekeyed.inc(step.rekeyed)
        if step.erased:
            self.erased.inc(step.erased)
        if step.reminders:
            self.reminders.inc(step.reminders)
        self.batch_events.inc(events)
        if seconds:
            self.batch_seconds.observe(seconds)

    def render(self) -> bytes:
        return metrics.render(self.registry)
