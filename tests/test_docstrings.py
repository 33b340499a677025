"""Every public object of the engine has a docstring (baal's documentation test)."""
from __future__ import annotations

import importlib
import inspect
import pkgutil

import balpm


def _public_objects():
    for info in pkgutil.walk_packages(balpm.__path__, prefix="balpm."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        yield info.name, module
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(obj) or inspect.isclass(obj):
                yield f"{info.name}.{name}", obj


def test_every_public_object_has_a_docstring():
    missing = [name for name, obj in _public_objects() if not (inspect.getdoc(obj) or "").strip()]
    assert not missing, f"public objects without a docstring: {missing}"


def test_engine_never_imports_streamlit():
    offenders = []
    for info in pkgutil.walk_packages(balpm.__path__, prefix="balpm."):
        spec = importlib.util.find_spec(info.name)
        if spec and spec.origin and spec.origin.endswith(".py"):
            src = open(spec.origin, encoding="utf-8").read()
            if "import streamlit" in src or "from streamlit" in src:
                offenders.append(info.name)
    assert not offenders, f"engine modules importing streamlit: {offenders}"
