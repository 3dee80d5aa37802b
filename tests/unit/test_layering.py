"""Layering rules as tests: what a process shares lives outside its shell."""

from __future__ import annotations

import ast
from pathlib import Path

import streams

PACKAGE = Path(streams.__file__).parent
COMMAND_LINE = {"cli.py", "dev.py"}  # they start the ingress


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
