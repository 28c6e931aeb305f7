"""The package's floors, checked from the source: imports point down only, no module imports itself in a circle,
``import adaptertune`` stays light, and notebooks only read the run store.

``python tests/test_architecture.py --write`` regenerates the import graph in docs/architecture.md.
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "adaptertune"
DOC = ROOT / "docs" / "architecture.md"
BEGIN, END = "<!-- import-graph:begin -->", "<!-- import-graph:end -->"
# bottom to top; a module may import its own floor and the floors below it
FLOORS = ("library", "store", "training", "paper", "entry")
ENTRY = {"adaptertune.__main__", "adaptertune.cli"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def floor(module: str) -> str:
    if module in ENTRY:
        return "entry"
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ("store", "training", "paper") else "library"


def internal_imports(path: Path) -> set[str]:
    """Every adaptertune module ``path`` imports, at module level or inside a function."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [f"{target}.{a.name}" for a in node.names]
            candidates = [n for n in names if _is_module(n)] or [target]
        elif isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        else:
            continue
        found |= {c for c in candidates if c.split(".")[0] == "adaptertune" and _is_module(c)}
    found.discard(module)
    return found


def _is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return (ROOT / rel).with_suffix(".py").is_file() or (ROOT / rel / "__init__.py").is_file()


def import_graph() -> dict[str, set[str]]:
    return {module_name(p): internal_imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def render(graph: dict[str, set[str]]) -> str:
    """The graph as Markdown: one row per module, bottom floor first, with the package modules it imports."""
    short = lambda m: m.removeprefix("adaptertune.") or "adaptertune"  # noqa: E731
    lines = [BEGIN, "", "| floor | module | imports (package modules) |", "| --- | --- | --- |"]
    for module in sorted(graph, key=lambda m: (FLOORS.index(floor(m)), m)):
        deps = ", ".join(sorted(short(d) for d in graph[module])) or "—"
        lines.append(f"| {floor(module)} | `{short(module)}` | {deps} |")
    return "\n".join(lines + ["", END])


def test_imports_point_down_only():
    graph = import_graph()
    upward = [(m, d) for m, deps in graph.items() for d in deps if FLOORS.index(floor(d)) > FLOORS.index(floor(m))]
    assert not upward, f"imports that climb a floor: {upward}"


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_architecture_doc_shows_the_current_graph():
    text = DOC.read_text()
    assert render(import_graph()) in text, "docs/architecture.md is stale: run `python tests/test_architecture.py --write`"


def test_import_adaptertune_loads_the_library_only():
    code = ("import sys, adaptertune as at; heavy = [m for m in ('pandas', 'papermill', 'seaborn', 'matplotlib', "
            "'adaptertune.training', 'adaptertune.store', 'adaptertune.paper') if m in sys.modules]; print(heavy); "
            "at.add_adapters, at.RunConfig; print(at.run.__module__, at.load_results.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0] == "[]"
    assert out[1] == "adaptertune.training.run adaptertune.store.table"


def _code_cells(notebook: Path) -> list[tuple[list[str], str]]:
    cells = json.loads(notebook.read_text())["cells"]
    return [(c.get("metadata", {}).get("tags", []), "".join(c["source"])) for c in cells if c["cell_type"] == "code"]


NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_notebooks_only_read_and_stay_thin():
    assert NOTEBOOKS
    for nb in NOTEBOOKS:
        cells = _code_cells(nb)
        params = [src for tags, src in cells if "parameters" in tags]
        assert len(params) == 1, f"{nb.name}: exactly one parameters cell"
        for stmt in ast.parse(params[0]).body:  # literals only
            assert isinstance(stmt, ast.AnnAssign) and isinstance(stmt.value, ast.Constant), f"{nb.name}: {ast.dump(stmt)}"
        for _, src in cells:
            for banned in ("sweep(", "at.run(", "pretrain_mini", "ensure_backbones", "run_missing", "../", "\ndef ", "lambda"):
                assert banned not in "\n" + src, f"{nb.name} has {banned!r} in a cell:\n{src}"
            assert len(src.splitlines()) <= 8, f"{nb.name}: a cell of {len(src.splitlines())} lines is not thin:\n{src}"


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    text = DOC.read_text()
    head, rest = text.split(BEGIN, 1)
    DOC.write_text(head + render(import_graph()) + rest.split(END, 1)[1])
    print(f"wrote the import graph into {DOC}")
