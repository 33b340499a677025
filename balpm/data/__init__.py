"""Preference tables: loaders per source format, duplicate removal, prompt-grouped splits, inspection.

``load_table(paths, ...)`` reads OpenAI comparison JSON lines, the Hugging Face hub's comparisons
config, CarperAI prompt/chosen/rejected data, Anthropic HH-RLHF and any CSV/JSONL/parquet with named
columns into one table (schema in :mod:`balpm.data.schema`). ``load_for_config`` does the same from a
:class:`balpm.config.DataConfig`, or returns the synthetic world when no paths are configured.
"""
from __future__ import annotations

import importlib
from typing import Any

#: where each public name lives: imported on first use (PEP 562), so that importing a light submodule
#: (``balpm.data.worlds``, which the config reads) does not import the loaders and pandas
_PUBLIC = {
    "FORMATS": "load", "LoadResult": "load", "load_for_config": "load", "load_table": "load",
    "REQUIRED_COLUMNS": "schema", "SPLITS": "schema", "validate_table": "schema",
    "assign_splits": "splits",
}


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(f"balpm.data.{_PUBLIC[name]}"), name)
    raise AttributeError(f"module 'balpm.data' has no attribute {name!r}")


__all__ = [
           "FORMATS",
           "REQUIRED_COLUMNS",
           "SPLITS",
           "LoadResult",
           "assign_splits",
           "load_for_config",
           "load_table",
           "validate_table",
]
