"""Which module may import which: the layers CONTRIBUTING.md draws ("Where things live"), enforced.

The imports are read from the source with ``ast`` (nothing is imported or run), every one of
them: at the top of a module, inside a function, under ``TYPE_CHECKING``, and a literal
``importlib.import_module("…")``. Module names follow the build's own folder mapping
(``[tool.setuptools.package-dir]`` in pyproject.toml), so ``daemon/executor.py`` is
``recruitmail.daemon.executor`` here as it is once installed.

The rules, each failure naming the import that broke it:

1. ``recruitmail.contracts`` imports nothing of recruitmail but itself;
2. a connector imports the contracts and ``recruitmail.connectors`` (its own package, the shared
   ``tls``), never the core;
3. the core imports only downwards through ``CORE_LAYERS``; modules of one layer do not import
   each other, and every core module has a layer;
4. only the composition root (``runtime``, ``cli``) reaches the connectors, and only through the
   registry ``recruitmail.connectors``;
5. no circles anywhere.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

CORE = "recruitmail.daemon"
CONTRACTS = "recruitmail.contracts"
CONNECTORS = "recruitmail.connectors"

# The core from the top down. A module imports modules of lower layers (and the contracts) only.
CORE_LAYERS: tuple[tuple[str, ...], ...] = (
    ("demo",),  # drives the command line over a generated calendar
    ("cli",),  # composition root: parses the command, opens what it needs
    ("scheduler", "gallery"),  # the daemon; the template gallery server
    ("preview",),  # what would be drafted, without writing
    ("runtime",),  # composition root: settings + state + connectors → one runner per mailbox
    ("executor", "fleet"),  # one pass for one mailbox; leases shared by several instances
    ("compose", "state", "render"),  # template variables, the SQLite state, Jinja2
    ("planner", "sandbox"),  # pure: what is due; the Jinja2 sandbox, loaded at the first template
    ("interviews", "workdays", "language", "service", "samples", "faults", "bounds"),  # leaves
    ("settings",),
)
COMPOSITION_ROOT = frozenset({f"{CORE}.runtime", f"{CORE}.cli"})
PICTURE = " → ".join(" | ".join(layer) for layer in CORE_LAYERS) + " → contracts"


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    where: str  # path:line, for the message

    def __str__(self) -> str:
        return f"{self.where}: {self.importer} imports {self.imported}"


def package_folders() -> dict[str, Path]:
    """Import name → folder, as the build maps them."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    mapping = config["tool"]["setuptools"]["package-dir"]
    return {name: ROOT / folder for name, folder in mapping.items()}


def modules(folders: Mapping[str, Path]) -> dict[str, Path]:
    """Every module of the mapped packages: dotted name → file."""
    found: dict[str, Path] = {}
    for package, folder in folders.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    if level == 0:
        return target or ""
    base = module.split(".")
    base = base[: len(base) - level + (1 if is_package else 0)]
    return ".".join([*base, target] if target else base)


def imports_of(name: str, source: str, where: str, known: Iterable[str] = ()) -> list[Import]:
    """Every recruitmail import in ``source`` (module ``name``), names resolved to modules."""
    known = set(known)
    is_package = where.endswith("__init__.py")
    found: list[Import] = []
    for node in ast.walk(ast.parse(source)):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(name, is_package, node.level, node.module)
            # ``from recruitmail.daemon import compose`` imports the module compose.
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            targets = [node.args[0].value]
        for target in targets:
            if target.split(".")[0] == "recruitmail" and target != name:
                found.append(Import(name, target, f"{where}:{getattr(node, 'lineno', 0)}"))
    return found


def all_imports(found: Mapping[str, Path]) -> list[Import]:
    return [
        imp
        for name, path in found.items()
        for imp in imports_of(name, path.read_text(encoding="utf-8"), _shown(path), found)
    ]


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _layer_of(name: str) -> int | None:
    short = name.removeprefix(CORE + ".")
    return next((n for n, layer in enumerate(CORE_LAYERS) if short in layer), None)


def broken_rules(imports: Iterable[Import], names: Iterable[str]) -> list[str]:
    """What breaks the layers, one line per import (or module) that breaks a rule."""
    problems: list[str] = []
    for imp in imports:
        src, dst = imp.importer, imp.imported
        if _within(src, CONTRACTS) and not _within(dst, CONTRACTS):
            problems.append(
                f"{imp}: the contracts import nothing of recruitmail but themselves "
                "(the core and the connectors both depend on them)"
            )
        elif src == "recruitmail" and dst != "recruitmail":
            problems.append(f"{imp}: the top package imports nothing (it only names the project)")
        elif _within(src, CONNECTORS) and not (_within(dst, CONTRACTS) or _within(dst, CONNECTORS)):
            problems.append(
                f"{imp}: a connector imports only recruitmail.contracts and "
                "recruitmail.connectors, never the core"
            )
        elif _within(src, CORE) and _within(dst, CONNECTORS):
            if src not in COMPOSITION_ROOT or dst != CONNECTORS:
                problems.append(
                    f"{imp}: only the composition root ({', '.join(sorted(COMPOSITION_ROOT))}) "
                    f"opens connectors, and only through the registry {CONNECTORS}"
                )
        elif _within(src, CORE) and _within(dst, CORE) and src != CORE and dst != CORE:
            mine, theirs = _layer_of(src), _layer_of(dst)
            if mine is None or theirs is None:
                continue  # reported below as a module without a layer
            if theirs == mine:
                problems.append(
                    f"{imp}: both are in the layer {' | '.join(CORE_LAYERS[mine])}, whose modules "
                    f"do not import each other (the core: {PICTURE})"
                )
            elif theirs < mine:
                problems.append(
                    f"{imp}: {dst.rsplit('.', 1)[1]} is above {src.rsplit('.', 1)[1]}; the core "
                    f"imports only downwards ({PICTURE})"
                )
        elif _within(src, CORE) and not (_within(dst, CORE) or _within(dst, CONTRACTS)):
            problems.append(f"{imp}: the core imports itself, the contracts and the registry only")
    for name in names:
        if _within(name, CORE) and name != CORE and _layer_of(name) is None:
            problems.append(
                f"{name} has no layer: add it to CORE_LAYERS in tests/test_layers.py and to the "
                "picture in CONTRIBUTING.md"
            )
    return problems


def circles(imports: Iterable[Import]) -> list[list[str]]:
    """Import circles between modules (each once, as the path that closes it)."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        graph.setdefault(imp.importer, set()).add(imp.imported)
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


# -- the project as it is ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def project() -> tuple[dict[str, Path], list[Import]]:
    found = modules(package_folders())
    return found, all_imports(found)


def test_the_mapping_finds_the_core_the_contracts_and_the_connectors(
    project: tuple[dict[str, Path], list[Import]],
) -> None:
    found, imports = project
    for name in (f"{CORE}.executor", f"{CONTRACTS}.models", f"{CONNECTORS}.google.mail"):
        assert name in found
    assert any(imp.imported == f"{CONTRACTS}.models" for imp in imports)


def test_the_layers_hold(project: tuple[dict[str, Path], list[Import]]) -> None:
    found, imports = project
    problems = broken_rules(imports, found)
    assert not problems, "\n".join(problems)


def test_there_are_no_import_circles(project: tuple[dict[str, Path], list[Import]]) -> None:
    _, imports = project
    found = [" → ".join(circle) for circle in circles(imports)]
    assert not found, "import circles:\n" + "\n".join(found)


# -- each rule catches what it is there for -------------------------------------------------------


def _problems_of(name: str, source: str, others: Iterable[str] = ()) -> list[str]:
    names = {name, *others, CONNECTORS, f"{CORE}.executor", f"{CORE}.runtime", f"{CORE}.planner"}
    return broken_rules(imports_of(name, source, "x.py", names), names)


@pytest.mark.parametrize(
    ("name", "source", "rule"),
    [
        (f"{CONTRACTS}.models", f"from {CORE}.settings import Settings", "the contracts import"),
        (f"{CONTRACTS}.mime", "from recruitmail.connectors import tls", "the contracts import"),
        (f"{CONNECTORS}.ics", f"from {CORE}.state import State", "a connector imports only"),
        (f"{CONNECTORS}.google.mail", "import recruitmail.daemon", "a connector imports only"),
        (f"{CORE}.executor", f"from {CORE}.runtime import open_runner", "imports only downwards"),
        (f"{CORE}.planner", "def f():\n    from recruitmail.daemon import executor", "downwards"),
        (f"{CORE}.compose", f"from {CORE}.state import State", "do not import each other"),
        (f"{CORE}.executor", f"from {CONNECTORS}.google import open_sink", "composition root"),
        (f"{CORE}.runtime", f"from {CONNECTORS}.ics import open_source", "the registry"),
        (f"{CORE}.runtime", f"importlib.import_module('{CONNECTORS}.imap')", "the registry"),
        (f"{CORE}.newcomer", "import json", "has no layer"),
    ],
)
def test_a_broken_rule_names_the_import_that_broke_it(name: str, source: str, rule: str) -> None:
    others = {f"{CORE}.state", f"{CORE}.compose", f"{CORE}.settings"}
    problems = _problems_of(name, source, others)
    assert len(problems) == 1, problems
    assert rule in problems[0]
    if "has no layer" not in rule:
        assert problems[0].startswith("x.py:") and f"{name} imports recruitmail" in problems[0]


def test_what_the_rules_allow_passes() -> None:
    allowed = [
        (f"{CORE}.runtime", f"from recruitmail import connectors\nfrom {CORE}.executor import X"),
        (f"{CORE}.executor", f"from {CONTRACTS}.models import Event\nfrom {CORE} import planner"),
        (
            f"{CONNECTORS}.caldav",
            f"from {CONNECTORS}.ics import parse\nfrom {CONTRACTS} import limits",
        ),
        (f"{CONTRACTS}.mime", f"from {CONTRACTS}.models import DraftMessage\nfrom . import errors"),
    ]
    for name, source in allowed:
        assert _problems_of(name, source) == [], source


def test_a_circle_is_found() -> None:
    imports = [Import("a", "b", "a.py:1"), Import("b", "c", "b.py:1"), Import("c", "a", "c.py:1")]
    assert circles(imports) == [["a", "b", "c", "a"]]
