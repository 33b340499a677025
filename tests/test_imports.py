"""The import graph of balpm/ and dashboard/: no circles, and imports at the top.

Every module is parsed (``ast``, nothing is imported). An edge A -> B is any import of a balpm/dashboard
module B by A, at module level or inside a function (``balpm_dashboard`` is dashboard/, its installed name).
A module importing one of its own parent packages adds no edge: Python has already started importing the
parent before the child (``balpm.acquisition.registry`` finding its sibling policy modules through
``balpm.acquisition``). The graph must have no cycle; a cycle is printed as a path.

A function-level import is allowed where laziness buys something, and nowhere else:

* a third-party package of :data:`ALLOWED_LAZY` (heavy or optional; each with its reason);
* a balpm/dashboard module (with the packages above it, whose ``__init__`` runs first) whose top-level imports pull in one of the :data:`HEAVY` packages that the
  importer's top-level imports do not (``balpm run --help`` must not import torch; the config must not
  import pandas): moving it to the top would make the importer heavy;
* an import that breaks what would otherwise be a circle (moving it to the top would close a cycle).

Anything else belongs at the top. :data:`NOT_YET_MOVED` lists the function-level imports that other
rooms have not moved yet (issue 16): a new one fails the test, and the list only shrinks.
Run ``python tests/test_imports.py`` to print the cycles and the imports to move.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import networkx as nx

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("balpm", "dashboard")

#: third-party packages whose import is worth deferring (size of the import, or optional), and why
HEAVY: dict[str, str] = {
    "torch": "2 s to import; CLI start-up paths (balpm --help, config checks) must not pay it",
    "numpy": "0.2 s; balpm --help and the config import none of numpy, pandas, scipy, torch",
    "transformers": "seconds to import; only featurizing with a Hugging Face model needs it",
    "faiss": "optional kNN backend (faiss-cpu / faiss-gpu)",
    "ray": "optional distributed backend (pip install balpm[ray])",
    "umap": "optional projection of the prompt space (numba compiles on import)",
    "streamlit": "the engine never imports it; only the dashboard does",
    "bitsandbytes": "optional 4/8-bit quantisation on CUDA",
    "accelerate": "optional, with bitsandbytes",
    "scipy": "statistics only; CLI start-up must not pay it",
    "sklearn": "optional projection and k-center baselines (slow import)",
    "pandas": "CLI start-up (balpm --help, config validation) must not pay it",
    "pyarrow": "parquet only where a table is written or read",
    "plotly": "dashboard figures only",
}
#: third-party modules that may be imported inside a function: the heavy ones, and these (with reasons)
ALLOWED_LAZY: dict[str, str] = {
    **HEAVY,
    "tqdm": "progress bars only where a run shows them (tqdm.auto probes for IPython and ipywidgets)",
    "huggingface_hub": "hub downloads only (imports requests and a thread pool)",
    "datasets": "optional hub loader",
    "click": "typer's click, vendored or not: which one is in play is probed at run time",
    "typer": "as click",
    "filelock": "taken only when a run is written",
    "yaml": "safe_yaml's loader only when a file is read",
    "psutil": "optional process checks",
    "batchbald_redux": "optional reference implementation, benchmarks only",
}

#: function-level imports of balpm/dashboard modules not moved to the top yet (file, imported module), each
#: with its reason; remove an entry when its import moves (the test says which are stale)
NOT_YET_MOVED: set[tuple[str, str]] = {
    ("balpm/data/load.py", "balpm.data.synthetic"),  # tests/test_data_splits.py swaps the module in sys.modules
    # the labelling room's module this session (balpm select / balpm label): moves with their work
    ("balpm/next_batch.py", "balpm.acquisition"),
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            out[_module_name(path)] = path
    return out


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The known module ``name`` names (the longest known prefix: ``balpm.experiment.runs.open_run`` -> ``balpm.experiment.runs``).
    The dashboard is installed as ``balpm_dashboard`` (pyproject's package-dir): that name is dashboard/."""
    if name == "balpm_dashboard" or name.startswith("balpm_dashboard."):
        name = "dashboard" + name[len("balpm_dashboard"):]
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(module: str, path: Path, known: dict[str, Path]) -> list[tuple[str, str, int, bool]]:
    """``(imported, top-level name, line, at module level)`` for every import in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_pkg = path.name == "__init__.py"
    out = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    out.append((_resolve(alias.name, known) or alias.name,
                                "dashboard" if alias.name.startswith("balpm_dashboard") else alias.name.split(".")[0],
                                child.lineno, top))
            elif isinstance(child, ast.ImportFrom):
                if child.level:  # relative: from the package this module is in
                    base = module.split(".")
                    base = base if is_pkg else base[:-1]
                    base = base[: len(base) - (child.level - 1)]
                    stem = ".".join(base + ([child.module] if child.module else []))
                else:
                    stem = child.module or ""
                for alias in child.names:
                    target = _resolve(f"{stem}.{alias.name}", known) or stem  # a submodule, else the module
                    target = _lazy_exports(target, known).get(alias.name, target)
                    out.append((target, "dashboard" if stem.startswith("balpm_dashboard") else stem.split(".")[0],
                                child.lineno, top))
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                continue  # typing-only imports never run
            visit(child, inside)

    visit(tree, True)
    return out


def _lazy_exports(package: str, known: dict[str, Path]) -> dict[str, str]:
    key = (package, str(known.get(package)))
    if key not in _LAZY_EXPORTS:
        _LAZY_EXPORTS[key] = _read_lazy_exports(package, known)
    return _LAZY_EXPORTS[key]


_LAZY_EXPORTS: dict[tuple[str, str], dict[str, str]] = {}


def _read_lazy_exports(package: str, known: dict[str, Path]) -> dict[str, str]:
    """A package that hands out names on first use (PEP 562: a module-level ``__getattr__`` and a dict of
    ``name: "submodule"``, e.g. balpm/data/__init__.py): ``{name: package.submodule}``; else ``{}``."""
    path = known.get(package)
    if path is None or path.name != "__init__.py":
        return {}
    tree = ast.parse(path.read_text(encoding="utf-8"))
    if not any(isinstance(n, ast.FunctionDef) and n.name == "__getattr__" for n in tree.body):
        return {}
    out = {}
    for node in tree.body:
        value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
        if isinstance(value, ast.Dict):
            for k, v in zip(value.keys, value.values):
                if isinstance(k, ast.Constant) and isinstance(v, ast.Constant) and f"{package}.{v.value}" in known:
                    out[str(k.value)] = f"{package}.{v.value}"
    return out


def _is_type_checking(test: ast.AST) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _is_ancestor(package: str, module: str) -> bool:
    return module.startswith(package + ".")


def _scan() -> tuple[dict[str, Path], dict[str, set[str]], list[tuple[str, str, list[str], int, bool, str]]]:
    """``(modules, top-level edges, every import)``; an import is ``(module, target, the packages above the
    target that importing it runs first, line, top, top-level name)``."""
    known = _modules()
    top_edges: dict[str, set[str]] = defaultdict(set)
    imports = []
    for module, path in known.items():
        for target, top_name, line, top in _imports(module, path, known):
            if target == module or _is_ancestor(target, module):
                continue
            # importing balpm.data.worlds first runs balpm/data/__init__.py (not the importer's own packages)
            parts = target.split(".") if target in known else []
            above = [p for p in (".".join(parts[:i]) for i in range(1, len(parts)))
                     if p in known and p != module and not _is_ancestor(p, module)]
            imports.append((module, target, above, line, top, top_name))
            if top:
                top_edges[module].update(above + [target if target in known else top_name])
    return known, top_edges, imports


def _graph() -> tuple[dict[str, set[str]], list[str]]:
    """The import graph (module-level and function-level edges) and the function-level imports to move."""
    known, top_edges, imports = _scan()
    graph: dict[str, set[str]] = defaultdict(set)
    heavy_of: dict[str, set[str]] = {}

    def heavy(module: str) -> set[str]:
        """The HEAVY packages importing ``module`` imports (through its module-level imports)."""
        if module not in heavy_of:
            out, stack, seen = set(), [module], set()
            while stack:
                v = stack.pop()
                if v in seen:
                    continue
                seen.add(v)
                for t in top_edges.get(v, ()):
                    if t in known:
                        stack.append(t)
                    elif t in HEAVY:
                        out.add(t)
            heavy_of[module] = out
        return heavy_of[module]

    def reaches(start: str, goal: str) -> bool:  # through module-level imports
        stack, seen = [start], set()
        while stack:
            v = stack.pop()
            if v == goal:
                return True
            if v not in seen:
                seen.add(v)
                stack.extend(t for t in top_edges.get(v, ()) if t in known)
        return False

    lazy = []
    for module, target, above, line, top, top_name in imports:
        where = f"{known[module].relative_to(REPO)}:{line}"
        if target in known:
            graph[module].update(above + [target])
            if top:
                continue
            pulled = set().union(*(heavy(t) for t in above + [target]))
            if pulled - heavy(module) or any(reaches(t, module) for t in above + [target]):
                continue
            if (str(known[module].relative_to(REPO)), target) not in NOT_YET_MOVED:
                lazy.append(f"{where} imports {target} inside a function")
        elif not top and top_name not in ALLOWED_LAZY and top_name not in _STDLIB:
            lazy.append(f"{where} imports {top_name} inside a function (not in ALLOWED_LAZY)")
    return graph, sorted(set(lazy), key=lambda x: (x.split(":")[0], int(x.split(":")[1].split()[0])))


def _not_yet_moved_now() -> set[tuple[str, str]]:
    """The entries of NOT_YET_MOVED still found (the others are stale)."""
    saved = set(NOT_YET_MOVED)
    NOT_YET_MOVED.clear()
    try:
        _, lazy = _graph()
    finally:
        NOT_YET_MOVED.update(saved)
    found = set()
    for line in lazy:
        path, _, rest = line.partition(":")
        target = rest.split(" imports ", 1)[1].split(" ", 1)[0]
        found.add((path, target))
    return found & saved


_STDLIB = set(sys.stdlib_module_names)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One shortest cycle per strongly connected component with more than one module, as a path
    (components from networkx, a shortest cycle through the component's smallest module)."""
    g = nx.DiGraph((a, b) for a, targets in graph.items() for b in targets)
    out = []
    for comp in sorted((c for c in nx.strongly_connected_components(g) if len(c) > 1), key=min):
        start = min(comp)
        sub = g.subgraph(comp)
        back = min((nx.shortest_path(sub, w, start) for w in sorted(sub.successors(start))), key=len)
        out.append([start] + back)
    return out


def test_the_walker_sees_a_cycle_and_the_imports_to_move(tmp_path, monkeypatch):
    """The checks themselves on a planted package: a circle through a function-level import is found;
    a needless function-level import is listed, one that defers pandas is not, nor one of a parent package."""
    pkg = tmp_path / "balpm"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from balpm import b\n")
    (pkg / "b.py").write_text("def f():\n    from balpm.a import x\n")
    (pkg / "heavy.py").write_text("import pandas\n")
    (pkg / "light.py").write_text("def f():\n    from balpm import heavy\n    import json\n    import pandas\n"
                                  "    import balpm\n    import requests\n")
    (pkg / "needless.py").write_text("import pandas\n\ndef f():\n    from balpm.heavy import x\n"
                                     "    from balpm import light\n")
    (tmp_path / "dashboard").mkdir()
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    graph, lazy = _graph()
    assert _cycles(graph) == [["balpm.a", "balpm.b", "balpm.a"]]
    assert lazy == ["balpm/light.py:6 imports requests inside a function (not in ALLOWED_LAZY)",
                    "balpm/needless.py:4 imports balpm.heavy inside a function",
                    "balpm/needless.py:5 imports balpm.light inside a function"]


def test_no_import_cycles():
    graph, _ = _graph()
    cycles = _cycles(graph)
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_cli_start_up_imports_no_heavy_package():
    """``balpm --help`` (importing balpm.cli) imports none of the heavy packages but numpy.

    The CLI's flags come from the policies' knob classes, so the registry imports every policy module at
    start-up; a policy module therefore imports only numpy at its top, and pandas, scipy, faiss (through
    balpm.engine.knn / balpm.engine.entropy) where its functions run. ``balpm --help``: 0.45 s at 5af9a0c,
    1.8-2.0 s with the registry, 0.75 s after (median of 5; docs/performance.md has the command).
    """
    heavy = ("pandas", "scipy", "faiss", "pyarrow", "plotly", "torch", "transformers", "streamlit", "ray", "umap",
             "sklearn")
    code = f"import sys, balpm.cli; print(','.join(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO,
                         check=True).stdout.strip()
    assert out == "", f"importing balpm.cli imports {out} (python -X importtime -c 'import balpm.cli' says through what)"


def test_imports_are_at_the_top():
    _, lazy = _graph()
    assert not lazy, (f"{len(lazy)} function-level import(s) that nothing needs lazy: move them to the top of "
                      "their module (or, for a heavy third-party package, say why in ALLOWED_LAZY):\n"
                      + "\n".join(lazy))


def test_the_engine_imports_no_experiment_and_no_evidence():
    """The layers of docs/architecture.md: balpm.engine (numbers of one round) never imports balpm.experiment
    (runs, loop, sweeps) or balpm.evidence (metrics, statistics, reports), at the top or in a function."""
    graph, _ = _graph()
    wrong = sorted(f"{a} -> {b}" for a, targets in graph.items() if a.startswith("balpm.engine")
                   for b in targets if b.startswith(("balpm.experiment", "balpm.evidence")))
    assert not wrong, "the engine imports the layers above it:\n" + "\n".join(wrong)


if __name__ == "__main__":  # python tests/test_imports.py: the cycles, the imports to move, stale entries
    g, lz = _graph()
    for c in _cycles(g):
        print("cycle:", " -> ".join(c))
    print("\n".join(lz))
    print("stale NOT_YET_MOVED entries:", sorted(NOT_YET_MOVED - _not_yet_moved_now()))
