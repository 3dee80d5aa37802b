"""Layering rules as tests: what a process shares lives outside its shell."""

from __future__ import annotations

import ast
from pathlib import Path

import streams

PACKAGE = Path(streams.__file__).parent
COMMAND_LINE = {"tools/cli.py", "tools/dev.py"}  # they start the processes


def imported_modules(source: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_only_the_ingress_and_the_command_line_import_the_ingress() -> None:
    for source in PACKAGE.rglob("*.py"):
        relative = source.relative_to(PACKAGE)
        if relative.parts[0] == "ingress" or str(relative) in COMMAND_LINE:
            continue
        imported = imported_modules(source)
        assert not any(
            n == "streams.ingress" or n.startswith("streams.ingress.") for n in imported
        ), relative


PURE_CORE = ("core",)
"""The rules themselves (the reducers, the link signer, the JSON.stringify form, records
and their partitions, the dead-letter planner): what they compute depends on the events
alone, so none of them may reach a broker or the network."""
IO_LIBRARIES = ("aiokafka", "confluent_kafka", "faust", "mode", "aiohttp", "starlette",
                "uvicorn", "granian", "httpx", "requests", "kafka", "urllib.request",
                "socket", "asyncio", "streams.worker", "streams.ingress", "streams.kafka.publisher",
                "streams.kafka.clients", "streams.kafka.admin", "streams.kafka.embedded")


def _pure_sources() -> list[Path]:
    sources = [p for name in PURE_CORE for p in
               ((PACKAGE / name).rglob("*.py") if (PACKAGE / name).is_dir()
                else [PACKAGE / name])]
    schemas_package = PACKAGE.parent / "schemas"
    return sources + sorted(schemas_package.rglob("*.py"))


def test_the_pure_core_imports_no_kafka_faust_or_http_library() -> None:
    sources = _pure_sources()
    assert len(sources) > 10
    for source in sources:
        for name in imported_modules(source):
            assert not any(name == lib or name.startswith(lib + ".") for lib in IO_LIBRARIES), (
                f"{source.relative_to(PACKAGE.parent)} imports {name}")


def test_the_layering_check_catches_an_import(tmp_path: Path) -> None:
    source = tmp_path / "x.py"
    source.write_text("from aiokafka.partitioner import murmur2\nimport faust\n")
    assert {"aiokafka.partitioner", "faust"} <= imported_modules(source)


def test_only_the_worker_and_the_command_line_import_the_worker() -> None:
    """Operator tools (``dlq``, ``docs_gen``, ``policy``, ...) use the core: generating the
    docs or replaying a dead letter loads no Faust."""
    for source in PACKAGE.rglob("*.py"):
        relative = source.relative_to(PACKAGE)
        if relative.parts[0] == "worker" or str(relative) in COMMAND_LINE:
            continue
        imported = imported_modules(source)
        assert not any(
            n == "streams.worker" or n.startswith("streams.worker.") for n in imported
        ), relative


def test_the_worker_s_parts_do_not_import_its_shell() -> None:
    """``metrics`` and ``web`` take narrow interfaces (protocols) rather than ``Worker``: no
    import circle, not even one only the type checker follows."""
    for name in ("metrics.py", "web.py", "processing.py", "links.py", "health.py",
                 "reminders.py", "sink.py", "tables.py", "replica.py", "transport.py",
                 "writes.py", "timer.py", "positions.py"):
        imported = imported_modules(PACKAGE / "worker" / name)
        assert "streams.worker.app" not in imported, name


def test_the_dead_letter_planner_reads_and_writes_nothing() -> None:
    imported = imported_modules(PACKAGE / "core" / "dlq_plan.py")
    assert not any(n == lib or n.startswith(lib + ".")
                   for n in imported for lib in IO_LIBRARIES), imported


ROOT_MODULES = {"__init__.py", "__main__.py", "settings.py", "metrics.py", "runtime.py",
                "processes.py"}
"""What both processes and the tools share that is not a rule of events: the settings, the
metrics registries, the event-loop runner, child processes."""


def test_the_folders_show_the_architecture() -> None:
    """``core`` (pure rules) imports only itself and the settings; ``kafka`` (plumbing) only
    the core, itself and the root; neither reaches the processes or the tools."""
    assert {p.name for p in PACKAGE.glob("*.py")} == ROOT_MODULES
    allowed = {"core": ("streams.core", "streams.settings"),
               "kafka": ("streams.core", "streams.kafka", "streams.settings",
                         "streams.processes")}
    for folder, prefixes in allowed.items():
        for source in (PACKAGE / folder).rglob("*.py"):
            for name in imported_modules(source):
                if name == "streams" or not name.startswith("streams"):
                    continue
                assert name.startswith(prefixes), f"{source.relative_to(PACKAGE)} imports {name}"


def test_test_modules_have_unique_names() -> None:
    """The test folders are not packages: pytest imports each test module by its file name,
    so two of one name in different folders stop the whole run at collection."""
    tests = PACKAGE.parent / "tests"
    names = [p.name for p in tests.rglob("test_*.py")]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


def test_what_the_benchmarks_import_exists() -> None:
    """The benchmarks are not imported by the tests: their imports of the project are
    checked here, so that a module moved or renamed does not break ``make bench``."""
    import importlib

    for script in sorted((PACKAGE.parent / "bench").glob("*.py")):
        for node in ast.walk(ast.parse(script.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("streams"):
                module = importlib.import_module(str(node.module))
                for alias in node.names:
                    assert hasattr(module, alias.name) or importlib.util.find_spec(
                        f"{node.module}.{alias.name}"), f"{script.name}: {node.module}.{alias.name}"
