"""Old module names (before balpm/ was split into engine / experiment / evidence) import as the SAME module
objects as their new homes, so old imports, ``monkeypatch.setattr("balpm.loop.x", ...)`` and plugins keep
working; and no module name of the package shadows the standard library (the Ray watchdog runs as a script
from its folder, where a module named like a stdlib one would be imported instead of it)."""
from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from balpm import _moved

REPO = Path(__file__).resolve().parents[1]
#: the files that name the old modules on purpose: the map, the package docstring that mentions it, the
#: alias table of the docs, and this test
_MAPS_OLD_NAMES = {"balpm/_moved.py", "balpm/__init__.py", "docs/architecture.md", "tests/test_moved.py"}


def test_every_old_name_is_the_new_module_in_a_fresh_interpreter():
    """Imported by its old name first (nothing else imported yet), each is the new module, named as the new one."""
    code = ("import importlib, sys\nfrom balpm._moved import MOVED\nbad = []\n"
            "for old, new in MOVED.items():\n"
            "    a = importlib.import_module(old)\n"
            "    b = importlib.import_module(new)\n"
            "    if a is not b or a.__name__ != new or a.__spec__.name != new or sys.modules[old] is not b:\n"
            "        bad.append(old)\n"
            "print(','.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO, check=True)
    assert out.stdout.strip() == "", f"old names not aliased to their new module: {out.stdout.strip()}"


@pytest.mark.parametrize("old", sorted(_moved.MOVED))
def test_old_name_and_attribute_reach_the_new_module(old):
    new = importlib.import_module(_moved.MOVED[old])
    assert importlib.import_module(old) is new
    parent, _, leaf = old.rpartition(".")
    assert getattr(importlib.import_module(parent), leaf) is new  # balpm.loop after import balpm.loop


def test_a_patch_through_the_old_name_is_seen_at_the_new_home(monkeypatch):
    import balpm.experiment.loop as loop

    marker = object()
    monkeypatch.setattr("balpm.loop.run", marker)
    assert loop.run is marker


def test_the_split_entropy_module_still_hands_out_its_knn_names():
    from balpm.engine import knn
    from balpm.entropy import build_geometry, pool_radius_entropy  # both halves, as before the split
    from balpm.engine.entropy import pool_radius_entropy as estimator

    assert build_geometry is knn.build_geometry and pool_radius_entropy is estimator
    with pytest.raises(AttributeError):
        importlib.import_module("balpm.entropy").no_such_name


def test_an_unknown_balpm_module_is_still_an_import_error():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("balpm.no_such_module")


def test_the_new_homes_do_not_import_the_old_names():
    """The package's own code uses the new paths: no file of balpm/, dashboard/, tests/, benchmarks/ or docs/
    names an old module (only balpm/_moved.py and this test, which map them)."""
    import re

    old = re.compile(r"(?<![\w./-])(" + "|".join(re.escape(o) for o in _moved.MOVED) + r")\b(?![\w])")
    old_paths = re.compile(r"(?<![\w/.-])balpm/(" + "|".join(o.split(".")[1] for o in _moved.MOVED) + r")\.py\b")
    hits = []
    for top in ("balpm", "dashboard", "tests", "benchmarks", "docs"):
        for path in sorted((REPO / top).rglob("*")):
            if path.suffix not in (".py", ".md", ".yml") or str(path.relative_to(REPO)) in _MAPS_OLD_NAMES:
                continue
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if old.search(line) or old_paths.search(line):
                    hits.append(f"{path.relative_to(REPO)}:{n}: {line.strip()[:100]}")
    for name in ("CONTRIBUTING.md", "README.md", "mkdocs.yml"):
        for n, line in enumerate((REPO / name).read_text(encoding="utf-8").splitlines(), 1):
            if old.search(line) or old_paths.search(line):
                hits.append(f"{name}:{n}: {line.strip()[:100]}")
    assert not hits, "old module names still used (use the new path):\n" + "\n".join(hits)


def test_no_module_beside_a_script_shadows_the_standard_library():
    """A script run by path puts its own folder first on sys.path (balpm/experiment/ray_watchdog.py is started
    that way): a sibling named like a stdlib module (balpm/select.py was) would replace the stdlib's there.
    Every module with a ``__main__`` block counts as such a script."""
    scripts = [p for top in ("balpm", "dashboard") for p in (REPO / top).rglob("*.py")
               if '__name__ == "__main__"' in p.read_text(encoding="utf-8")]
    assert REPO / "balpm/experiment/ray_watchdog.py" in scripts
    clashes = sorted({str(p.relative_to(REPO)) for s in scripts for p in s.parent.iterdir()
                      if (p.suffix == ".py" and p.stem in sys.stdlib_module_names)
                      or (p.is_dir() and (p / "__init__.py").exists() and p.name in sys.stdlib_module_names)})
    assert not clashes, f"modules named like standard-library modules beside a script: {clashes}"
