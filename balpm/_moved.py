"""Old module names of balpm, before the package was split into engine / experiment / evidence.

``import balpm.loop`` (or ``from balpm.runs import open_run``, or ``monkeypatch.setattr("balpm.loop.x", ...)``)
still works: a finder on :data:`sys.meta_path`, installed by ``balpm/__init__.py``, answers each old
name of :data:`MOVED` with the module object at its new home itself (not a copy), imported on first
use, so the old name and the new one are the same module, patched or read through either. The
table is in docs/architecture.md; the package's own code, tests and docs use the new names.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

#: old name -> new home (``balpm.entropy`` was split: its estimators are ``balpm.engine.entropy``, which
#: hands out the kNN names of ``balpm.engine.knn`` too, for old imports)
MOVED: dict[str, str] = {
    "balpm.model": "balpm.engine.model",
    "balpm.uncertainty": "balpm.engine.uncertainty",
    "balpm.diagnostics": "balpm.engine.diagnostics",
    "balpm.entropy": "balpm.engine.entropy",
    "balpm.loop": "balpm.experiment.loop",
    "balpm.sweep": "balpm.experiment.sweep",
    "balpm.runs": "balpm.experiment.runs",
    "balpm.snapshot": "balpm.experiment.snapshot",
    "balpm.presets": "balpm.experiment.presets",
    "balpm.ablations": "balpm.experiment.ablations",
    "balpm.projection": "balpm.experiment.projection",
    "balpm.parent_death": "balpm.experiment.parent_death",
    "balpm.ray_watchdog": "balpm.experiment.ray_watchdog",
    "balpm.metrics": "balpm.evidence.metrics",
    "balpm.stats": "balpm.evidence.stats",
    "balpm.report": "balpm.evidence.report",
    "balpm.worlds_report": "balpm.evidence.worlds_report",
    "balpm.story": "balpm.evidence.story",
    "balpm.lesson": "balpm.evidence.lesson",
    "balpm.colors": "balpm.evidence.colors",
}


class _Alias(importlib.abc.Loader):
    """Loads an old name as the module at its new home (the same object)."""

    def __init__(self, new: str) -> None:
        self.new = new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(self.new)

    def exec_module(self, module: ModuleType) -> None:
        # the import system has just set the module's __spec__ to the alias spec: give it back its own
        module.__spec__ = _real_specs[self.new]


_real_specs: dict[str, importlib.machinery.ModuleSpec] = {}


class _OldNames(importlib.abc.MetaPathFinder):
    """Finds the old names of :data:`MOVED` (and nothing else)."""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        new = MOVED.get(fullname)
        if new is None:
            return None
        module = importlib.import_module(new)
        _real_specs[new] = module.__spec__
        return importlib.machinery.ModuleSpec(fullname, _Alias(new), is_package=hasattr(module, "__path__"))


def install() -> None:
    """Put the finder on :data:`sys.meta_path` once (balpm/__init__.py calls this)."""
    if not any(isinstance(f, _OldNames) for f in sys.meta_path):
        sys.meta_path.append(_OldNames())
