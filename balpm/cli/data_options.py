"""The data options shared by ``balpm featurize`` and ``balpm data inspect``, generated from
:class:`balpm.config.DataConfig`'s fields (the same knobs ``balpm run`` takes as ``--set data.<field>=...``)."""
from __future__ import annotations

from dataclasses import fields

from balpm.config import DataConfig

#: python parameter name -> (DataConfig key, flag): the loader, the OOD files, bad rows, subsample and seed
DATA_KEYS: dict[str, tuple[str, ...]] = {
    "format": ("data.format", "--format"),
    "ood": ("data.ood_paths", "--ood"),
    "skip_bad": ("data.skip_bad", "--skip-bad"),
    # the column names of a table (format table): --prompt-col, --chosen-col, ... --source-col
    **{f.name: (f"data.{f.name}", "--" + f.name.replace("_", "-")) for f in fields(DataConfig) if f.name.endswith("_col")},
    "subsample": ("data.subsample", "--subsample"),
    "seed": ("data.split_seed", "--seed"),
}
