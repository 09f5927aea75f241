"""The package's shape: imports between fmw's modules form no cycle and point down the data flow
(layers and sites at the bottom, the command line on top), and no fmw module loads streamlit or a
browser library."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import fmw

PACKAGE = Path(fmw.__file__).resolve().parent

# Bottom to top; a module may import from its own level or any level below, never above.
LEVELS: tuple[tuple[str, ...], ...] = (
    ("fmw._version", "fmw.errors", "fmw.settings", "fmw.device", "fmw.memory"),
    ("fmw.layers",),
    ("fmw.sites",),
    ("fmw.models",),
    ("fmw.io",),
    ("fmw.analysis",),
    ("fmw.figures",),
    ("fmw.export",),
    ("fmw.notebook",),
    ("fmw.training",),
    ("fmw.cli",),
    ("fmw", "fmw.__main__"),
)


def module_names() -> dict[str, Path]:
    names = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ("fmw", *path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The fmw modules ``path`` imports, at module level or inside functions (a lazy import is
    still a dependency). ``from fmw.x import y`` counts as fmw.x.y when y is a module."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "fmw"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "fmw":
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in known else node.module)
    return found & known


def level_of(module: str) -> int:
    best, best_length = -1, -1
    for index, prefixes in enumerate(LEVELS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_length:
                best, best_length = index, len(prefix)
    assert best >= 0, f"{module} belongs to no level: add its package to LEVELS (and to the README's layout)"
    return best


def graph() -> dict[str, set[str]]:
    names = module_names()
    return {module: imported_modules(path, set(names)) - {module} for module, path in names.items()}


def test_every_module_has_a_level_and_imports_only_downwards() -> None:
    upward = [
        f"{module} (level {level_of(module)}) imports {target} (level {level_of(target)})"
        for module, targets in graph().items()
        for target in targets
        if level_of(target) > level_of(module)
    ]
    assert upward == []


def test_no_import_cycles() -> None:
    edges = graph()
    cycles: list[list[str]] = []
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(edges[module]):
            if state.get(target) == "open":
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(cycle) for cycle in cycles)


def test_the_layout_checks_see_real_edges() -> None:
    edges = graph()
    assert "fmw.layers.registry" in edges["fmw.models.fmwnet"] or "fmw.layers" in edges["fmw.models.fmwnet"]
    assert any(target.startswith("fmw.sites") for target in edges["fmw.analysis.images"])
    assert level_of("fmw.cli.stats") > level_of("fmw.analysis.stats") > level_of("fmw.sites.probe")


def test_importing_every_fmw_module_loads_no_dashboard_or_browser_library() -> None:
    modules = sorted(name for name in module_names() if name != "fmw.__main__")
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'streamlit', 'playwright', 'selenium'}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert result.stdout.strip() == "[]", result.stdout
    assert len(modules) > 40
