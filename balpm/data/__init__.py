"""Preference tables: loaders per source format, duplicate removal, prompt-grouped splits, inspection.

``load_table(paths, ...)`` reads OpenAI comparison JSON lines, the Hugging Face hub's comparisons
config, CarperAI prompt/chosen/rejected data, Anthropic HH-RLHF and any CSV/JSONL/parquet with named
columns into one table (schema in :mod:`balpm.data.schema`). ``load_for_config`` does the same from a
:class:`balpm.config.DataConfig`, or returns the synthetic world when no paths are configured.
"""
from balpm.data.load import FORMATS, LoadResult, load_for_config, load_table
from balpm.data.schema import REQUIRED_COLUMNS, SPLITS, validate_table
from balpm.data.splits import assign_splits

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
