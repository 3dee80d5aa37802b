"""What the project installs: every module ``streams`` and ``schemas`` import is declared in
pyproject.toml (not left to arrive with another package), and requirements.lock pins every
distribution an install needs, at versions pyproject.toml allows, as this environment has
them (the Makefile and deploy/Dockerfile install with the lock as constraints)."""

from __future__ import annotations

import ast
import sys
import tomllib
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
OWN = canonicalize_name(PROJECT["name"])
PACKAGES = ("streams", "schemas")


def lock() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep and version.strip(), f"requirements.lock: {line!r} is not name==version"
            pins[canonicalize_name(name)] = Version(version.strip())
    return pins


def requirements(extras: tuple[str, ...]) -> list[Requirement]:
    """The project's requirements with ``extras`` (an extra naming the project itself, as
    ``dev`` names ``embedded``, is followed), those whose markers hold here."""
    texts = list(PROJECT["dependencies"])
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra not in seen:
            seen.add(extra)
            texts += PROJECT["optional-dependencies"][extra]
            todo += [e for text in PROJECT["optional-dependencies"][extra]
                     if canonicalize_name(Requirement(text).name) == OWN
                     for e in Requirement(text).extras]
    reqs = [Requirement(text) for text in texts]
    return [r for r in reqs if canonicalize_name(r.name) != OWN
            and (r.marker is None or r.marker.evaluate())]


ALL_EXTRAS = tuple(PROJECT["optional-dependencies"])


def closure(reqs: list[Requirement]) -> dict[str, set[str]]:
    """Every distribution an install of ``reqs`` brings, with the extras asked of it."""
    found: dict[str, set[str]] = {}
    pending = [(canonicalize_name(r.name), set(r.extras)) for r in reqs]
    while pending:
        name, extras = pending.pop()
        known = found.get(name)
        if known is not None and extras <= known:
            continue
        found[name] = (known or set()) | extras
        for text in metadata.requires(name) or ():
            req = Requirement(text)
            if req.marker is None or any(req.marker.evaluate({"extra": e})
                                         for e in ("", *found[name])):
                pending.append((canonicalize_name(req.name), set(req.extras)))
    return found


def _imports(tree: ast.AST, lazy: bool = False) -> Iterator[tuple[str, bool]]:
    """(top-level module, imported inside a function) for every absolute import."""
    for node in ast.iter_child_nodes(tree):
        inner = lazy or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        if isinstance(node, ast.Import):
            yield from ((a.name.split(".")[0], lazy) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module.split(".")[0], lazy
        yield from _imports(node, inner)


def imported_modules() -> dict[str, bool]:
    """Third-party top-level modules the packages import -> whether only inside functions."""
    found: dict[str, bool] = {}
    for package in PACKAGES:
        for source in (ROOT / package).rglob("*.py"):
            for module, lazy in _imports(ast.parse(source.read_text())):
                if module in sys.stdlib_module_names or module in PACKAGES:
                    continue
                found[module] = found.get(module, True) and lazy
    return found


def test_every_module_the_code_imports_is_declared() -> None:
    runtime = {canonicalize_name(r.name) for r in requirements(())}
    anywhere = {canonicalize_name(r.name) for r in requirements(ALL_EXTRAS)}
    providers = metadata.packages_distributions()
    modules = imported_modules()
    assert {"faust", "mode", "aiokafka", "aiohttp"} <= modules.keys()
    for module, lazy in modules.items():
        dists = {canonicalize_name(d) for d in providers.get(module, ())}
        assert dists, f"{module} is imported and no installed distribution provides it"
        # An extra's module only where it is needed (inside a function), so that an
        # install without the extra still imports every module.
        declared = anywhere if lazy else runtime
        assert dists & declared, (
            f"{module} (from {', '.join(sorted(dists))}) is imported but not declared in "
            f"pyproject.toml{' (its dependencies or an extra)' if lazy else ' dependencies'}")


def test_every_requirement_is_pinned_at_a_version_it_allows() -> None:
    pins = lock()
    for req in requirements(ALL_EXTRAS):
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not pinned in requirements.lock (make lock)"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock pins {name}=={pins[name]}, which pyproject.toml's {req} "
            "does not allow (make lock)")


def test_the_lock_pins_everything_an_install_brings_as_installed_here() -> None:
    pins = lock()
    needed = closure(requirements(("dev",)))  # what `make test` installs
    assert {"faust-streaming", "mode-streaming", "aiokafka", "yarl"} <= needed.keys()
    for name in needed:
        assert name in pins, f"{name} is installed by the project and not pinned (make lock)"
        assert Version(metadata.version(name)) == pins[name], (
            f"{name} {metadata.version(name)} is installed, requirements.lock pins "
            f"{pins[name]}: reinstall (make test does) or refresh the lock (make lock)")
    assert "pip" in pins, "the Makefile and the image install pip at its pinned version"
