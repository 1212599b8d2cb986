"""The package's shape: imports only go down the layers, no module imports another in a cycle,
nothing but the CLI imports the benchmarks, and the package root stays small.

Every ``import`` and ``from ... import`` of ``xmodal`` in every module is read with ``ast``,
including the imports inside functions (a lazy import that runs up a layer is still one).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "xmodal"
# The data flow, bottom to top: a module may import its own layer or a lower one.
LAYERS = [
    "core",
    "data",
    "encoders",
    "store",
    "align",
    "retrieval",
    "evaluate",
    "model",
    "search",
    "analysis",
    "bench",
    "serve",
    "cli",
]


def _modules() -> dict[str, Path]:
    modules = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imports() -> dict[str, set[str]]:
    """Module -> the xmodal modules it imports (``from pkg import name`` counts as importing
    ``pkg.name`` when that is a module, else ``pkg``)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.split(".")[0] == "xmodal"}
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "xmodal":
                for alias in node.names:
                    child = f"{node.module}.{alias.name}"
                    targets.add(child if child in modules else node.module)
        graph[name] = targets - {name}
    return graph


def _layer(module: str) -> int:
    """Position in LAYERS; the package itself (``xmodal``: its version) is below them all."""
    parts = module.split(".")
    return -1 if len(parts) == 1 else LAYERS.index(parts[1])


def test_every_module_belongs_to_a_layer():
    unknown = sorted(m for m in _modules() if m != "xmodal" and m.split(".")[1] not in LAYERS)
    assert not unknown, f"modules outside the layers: {unknown}"


def test_imports_only_go_down():
    upward = sorted(
        f"{source} imports {target} ({LAYERS[_layer(target)]} is above {LAYERS[_layer(source)]})"
        for source, targets in _imports().items()
        if source != "xmodal"
        for target in targets
        if _layer(target) > _layer(source)
    )
    assert not upward, "\n".join(upward)


def test_no_import_cycles():
    """Tarjan's strongly connected components of the module graph: all of size one."""
    graph = _imports()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert not cycles, f"import cycles: {cycles}"


def test_only_the_cli_imports_the_benchmarks():
    importers = sorted(
        source
        for source, targets in _imports().items()
        if any(t.startswith("xmodal.bench") for t in targets) and not source.startswith(("xmodal.bench", "xmodal.cli"))
    )
    assert not importers, f"bench imported by {importers}"


def test_the_package_root_holds_at_most_six_modules():
    root = sorted(p.name for p in SRC.glob("*.py"))
    assert len(root) <= 6, root


@pytest.mark.parametrize("heavy", ["torch", "faiss", "matplotlib", "sklearn", "ot", "pyarrow", "scipy", "numpy"])
def test_the_cli_starts_without_heavy_libraries(heavy):
    """``import xmodal.cli`` (what ``xmodal --help`` runs) loads none of them: checked in a
    fresh interpreter."""
    import subprocess
    import sys

    code = f"import sys, xmodal.cli; sys.exit(1 if {heavy!r} in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0, f"import xmodal.cli loads {heavy}"


def test_the_closed_form_aligners_load_without_torch():
    """``xmodal.align`` and its presets (what a closed-form fit or ``make bench`` imports) leave
    torch to the trained aligners, which import it when they train."""
    import subprocess
    import sys

    code = "import sys, xmodal.align, xmodal.align.presets; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0, "xmodal.align loads torch"
