"""The brokers the benchmarks run on, chosen with ``--broker {both,kafka,embedded}``: Apache
Kafka (one KRaft node from ``tests/apache_kafka.py``; needs ``java`` and ``mvn``) and the
embedded broker. Both listen on 127.0.0.1 only and are stopped by their process ids. Also
the side-by-side summary table the benchmarks end with."""

from __future__ import annotations

import contextlib
import math
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

KINDS = ("kafka", "embedded")
LABELS = {"kafka": "Apache Kafka", "embedded": "embedded"}


def add_option(parser: Any) -> None:
    parser.add_argument("--broker", choices=["both", *KINDS], default="both",
                        help="run on Apache Kafka, the embedded broker, or both one after the "
                             "other (default; Apache Kafka only where java and mvn are present)")


def chosen(choice: str) -> list[str]:
    """The kinds to run, in order; ``both`` falls back to the embedded broker alone, saying
    so, where Apache Kafka's tools are missing."""
    if choice == "embedded":
        return ["embedded"]
    from tests.apache_kafka import tools_missing

    missing = tools_missing()
    if missing:
        why = f"Apache Kafka needs {' and '.join(missing)} on PATH"
        if choice == "kafka":
            raise SystemExit(why)
        print(f"{why}: running on the embedded broker only", flush=True)
        return ["embedded"]
    return ["kafka", "embedded"] if choice == "both" else ["kafka"]


@contextlib.contextmanager
def running(kind: str, workdir: Path) -> Iterator[Any]:
    """A started broker of ``kind`` (``.bootstrap``, ``.kafka``, ``.embedded``); its logs
    under ``workdir`` (Apache Kafka's data too, removed once it stopped)."""
    workdir.mkdir(parents=True, exist_ok=True)
    if kind == "kafka":
        from tests.apache_kafka import KafkaCluster

        cluster = KafkaCluster(nodes=1, workdir=workdir)
        try:
            with cluster:
                yield cluster
        finally:
            for node in cluster.members:
                shutil.rmtree(node.dir / "data", ignore_errors=True)
    else:
        from streams.kafka.embedded import EmbeddedBroker

        with EmbeddedBroker(log_path=workdir / "broker.log") as broker:
            yield broker


def broker_pid(broker: Any) -> int:
    """The broker's process id (Apache Kafka: its one node's JVM)."""
    if broker.embedded:
        return int(broker.process.pid)
    return int(broker.members[0].process.pid)


def tag(kind: str) -> str:
    """The label every printed figure of a broker's run starts with."""
    return f"[{LABELS[kind]}]".ljust(max(len(v) for v in LABELS.values()) + 3)


def fmt(value: float | None, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def summary(title: str, kinds: Sequence[str],
            rows: Sequence[tuple[str, dict[str, str]]]) -> str:
    """A table: one row per figure, one column per broker ("-" where not measured)."""
    width = max(len(name) for name, _ in rows)
    cols = [max(14, len(LABELS[k])) for k in kinds]
    head = f"{title:<{width}}  " + "  ".join(f"{LABELS[k]:>{c}}" for k, c in zip(kinds, cols,
                                                                              strict=True))
    lines = [head, "-" * len(head)]
    for name, values in rows:
        lines.append(f"{name:<{width}}  " + "  ".join(
            f"{values.get(k, '-'):>{c}}" for k, c in zip(kinds, cols, strict=True)))
    return "\n".join(lines)


def wait_for_topics(bootstrap: str, names: Sequence[str], timeout_s: float = 30.0) -> None:
    """Until the broker's metadata lists every topic of ``names`` with a leader on each
    partition (Apache Kafka publishes a created topic to its brokers' metadata a moment
    later; a client asking before is told the topic does not exist). The whole list is
    asked for, never a topic by name (see ``streams.kafka.admin`` on automatic creation)."""
    import time

    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout_s
    missing = list(names)
    while time.monotonic() < deadline:
        listed = admin.list_topics(timeout=5).topics
        missing = [n for n in names if n not in listed or not listed[n].partitions
                   or any(p.leader < 0 for p in listed[n].partitions.values())]
        if not missing:
            return
        time.sleep(0.1)
    raise SystemExit(f"topics not in the broker's metadata after {timeout_s:.0f} s: "
                     f"{missing[:5]}")
