"""The operator docs under docs/ checked against the code: the generated topic catalog is up
to date and covers every topic, the metric names are the ones the processes register, and
every setting, command and link the pages name exists."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from streams.core import headers, topics
from streams.settings import ENV_VARS, SECRET_FILE_VARS, Settings
from streams.tools import docs_gen
from streams.tools.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"



def doc_pages() -> dict[str, str]:
    pages = {path.name: path.read_text(encoding="utf-8") for path in sorted(DOCS.glob("*.md"))}
    assert {"README.md", "topics.md", "metrics.md", "operations.md"} <= pages.keys()
    return pages


# ------------------------------------------------------------------------------ topics


def test_topics_md_is_what_the_generator_writes() -> None:
    committed = (DOCS / "topics.md").read_text(encoding="utf-8")
    assert committed == docs_gen.render_topics(), (
        "docs/topics.md is out of date: run `python -m streams.tools.docs_gen`"
    )


def test_generator_check_mode_agrees(tmp_path: Path) -> None:
    stale = tmp_path / "topics.md"
    stale.write_text("old\n", encoding="utf-8")
    assert docs_gen.main(["--check", "--out", str(stale)]) == 1
    assert docs_gen.main(["--out", str(stale)]) == 0
    assert docs_gen.main(["--check", "--out", str(stale)]) == 0


def test_every_catalog_topic_has_producers_and_consumers_documented() -> None:
    catalog = {spec.name for spec in topics.CATALOG}
    missing = catalog - docs_gen.TOPIC_DOCS.keys()
    assert not missing, f"add these topics to TOPIC_DOCS in streams/tools/docs_gen.py: {missing}"
    assert docs_gen.TOPIC_DOCS.keys() <= catalog, "TOPIC_DOCS names topics not in the catalog"
    known_headers = {headers.EVENT_ID, headers.EVENT_TYPE, headers.RECEIVED_AT,
                     headers.DLQ_REASON, headers.DLQ_SOURCE}
    for name, doc in docs_gen.TOPIC_DOCS.items():
        assert doc.produced_by and doc.consumed_by and doc.ordering and doc.headers_note, name
        assert set(doc.headers) <= known_headers, name


def test_generator_refuses_an_undocumented_topic(monkeypatch: pytest.MonkeyPatch) -> None:
    extra = topics.TopicSpec("new.topic", "k", "v", partitions=1)
    monkeypatch.setattr(topics, "CATALOG", (*topics.CATALOG, extra))
    with pytest.raises(docs_gen.UndocumentedTopics, match=r"new\.topic"):
        docs_gen.render_topics()


# ----------------------------------------------------------------------------- metrics

_METRIC = re.compile(r"\bedume_(?:ingress|worker)_[a-z0-9_]*[a-z0-9]")
_HEADING = re.compile(r"^### `(edume_[a-z0-9_]+)`$", re.MULTILINE)
_HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")


def registered_metrics() -> tuple[set[str], set[str]]:
    """(every metric name as exposed, counters with ``_total``; the histograms' names), from
    the registries an ingress and a worker build. Neither needs a broker to be built: the
    ingress connects on start-up, and the worker's scrape-time collector only reads the
    worker it is given (a stand-in here) when collected."""
    from streams.ingress.app import Ingress
    from streams.worker.metrics import WorkerMetrics

    ingress = Ingress(Settings(webhook_secrets=("docs-test-secret",)))
    class Figures:  # what a worker's gauges read, as a worker holding one partition has it
        def ready(self) -> bool:
            return True

        def lag(self) -> list[tuple[str, int, int]]:
            return [("edume.learner.events", 0, 3)]

        def table_sizes(self) -> dict[str, int]:
            return {"progress": 1}

        def replica_sizes(self) -> tuple[int, int]:
            return (2, 1)

        def recovery_seconds(self) -> float:
            return 0.5

    worker = WorkerMetrics(Figures(), set())
    names: set[str] = set()
    histograms: set[str] = set()
    for registry in (ingress.metrics.registry, worker.registry):
        for family in registry.collect():
            names.add(f"{family.name}_total" if family.type == "counter" else family.name)
            if family.type == "histogram":
                histograms.add(family.name)
    return names, histograms


def _as_metric(name: str, histograms: set[str]) -> str:
    for suffix in _HISTOGRAM_SERIES:
        if name.endswith(suffix) and name.removesuffix(suffix) in histograms:
            return name.removesuffix(suffix)
    return name


def test_metrics_md_documents_exactly_the_registered_metrics() -> None:
    names, _ = registered_metrics()
    # The collector's gauges are there, as a scrape sees them.
    assert {"edume_worker_ready", "edume_worker_lag_records",
            "edume_worker_rebalance_seconds"} <= names
    documented = _HEADING.findall((DOCS / "metrics.md").read_text(encoding="utf-8"))
    assert len(documented) == len(set(documented)), "a metric is documented twice"
    assert set(documented) == names, (
        f"undocumented: {sorted(names - set(documented))}; "
        f"documented but not registered: {sorted(set(documented) - names)}"
    )


def test_every_metric_name_in_the_docs_exists() -> None:
    names, histograms = registered_metrics()
    for page, text in doc_pages().items():
        unknown = {m for m in _METRIC.findall(text) if _as_metric(m, histograms) not in names}
        assert not unknown, f"{page} names metrics the code does not register: {unknown}"


# ---------------------------------------------------------- settings, commands, links

_PREFIXES = sorted({var.split("_", 1)[0] for var in ENV_VARS})
_ENV_VAR = re.compile(rf"\b(?:{'|'.join(_PREFIXES)})_[A-Z0-9_]*[A-Z0-9]\b")


def test_every_environment_variable_named_is_a_setting() -> None:
    assert {"KAFKA", "EDUME", "WORKER", "TOPIC", "INGRESS", "REMINDER", "DEDUP"} <= set(_PREFIXES)
    seen: set[str] = set()
    for page, text in doc_pages().items():
        named = set(_ENV_VAR.findall(text))
        seen |= named
        unknown = named - ENV_VARS.keys() - SECRET_FILE_VARS.keys()
        assert not unknown, f"{page} names variables that are not settings: {unknown}"
    assert {"EDUME_WEBHOOK_SECRETS", "EDUME_LINK_SECRET", "WORKER_SESSION_TIMEOUT_S",
            "TOPIC_REPLICATION_FACTOR", "KAFKA_EMBEDDED_BROKER"} <= seen


def _code(text: str) -> list[str]:
    """The fenced blocks and inline code spans of a Markdown page."""
    fenced = re.findall(r"^```[^\n]*\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    rest = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    return fenced + re.findall(r"`([^`]+)`", rest)


def _commands() -> dict[str, set[str] | None]:
    """Each command, with the words its first argument must be one of (None: any)."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    out: dict[str, set[str] | None] = {}
    for name, command in sub.choices.items():
        words: set[str] | None = None
        for action in command._actions:
            if isinstance(action, argparse._SubParsersAction):
                words = set(action.choices)
            elif not action.option_strings and action.choices is not None:
                words = {str(c) for c in action.choices}
            if words is not None:
                break
        out[name] = words
    return out


_COMMAND = re.compile(r"\bedume-streams ([a-z][a-z-]*)(?:[ \t]+([a-z][a-z-]*))?")


def test_every_command_named_exists() -> None:
    commands = _commands()
    seen: set[tuple[str, str | None]] = set()
    for page, text in doc_pages().items():
        for snippet in _code(text):
            for command, word in _COMMAND.findall(snippet):
                word = word or None
                seen.add((command, word))
                assert command in commands, f"{page}: no command `edume-streams {command}`"
                choices = commands[command]
                if word is not None and choices is not None:
                    assert word in choices, f"{page}: no command `edume-streams {command} {word}`"
    assert {"read", "policy", "topics"} <= {command for command, _ in seen}


def _anchor(heading: str) -> str:
    text = heading.strip().lower()
    text = "".join(c for c in text if c.isalnum() or c in " -_")
    return text.replace(" ", "-")


def test_links_between_pages_resolve() -> None:
    pages = doc_pages()
    anchors = {
        page: {_anchor(h) for h in re.findall(r"^#+ (.+)$", text, re.MULTILINE)}
        for page, text in pages.items()
    }
    for page, text in pages.items():
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if target.startswith(("http://", "https://")):
                continue
            file_part, _, fragment = target.partition("#")
            file_name = file_part or page
            assert file_name in pages, f"{page} links to a missing page: {target}"
            if fragment:
                assert fragment in anchors[file_name], f"{page} links to a missing anchor: {target}"
