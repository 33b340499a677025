"""The preference table: one row per comparison, the contract every loader returns.

Required columns (all ``str``):

* ``pair_id``   stable id of the comparison (unique after duplicate removal)
* ``prompt_id`` stable id of the prompt (a hash of source + prompt text, or the source's own id)
* ``prompt``    the prompt text (for TL;DR the post; CNN/DM the article; HH the dialogue so far)
* ``chosen``    the answer the human preferred
* ``rejected``  the other answer (one of the two may be empty text, never both)
* ``split``     ``train`` (the active-learning pool), ``valid``, ``test`` or ``ood``
* ``source``    ``tldr``, ``cnndm``, ``hh``, ``custom``, ``synthetic`` ...

Optional metadata columns kept when the source has them: ``orig_split`` (the file's own split name,
e.g. ``valid1``), ``title``, ``subreddit``, ``policy_chosen``, ``policy_rejected``, ``worker``,
``confidence``, ``batch``, ``file``, ``line``.
"""
from __future__ import annotations

import pandas as pd

from balpm.errors import DataError

REQUIRED_COLUMNS: tuple[str, ...] = (
    "pair_id", "prompt_id", "prompt", "chosen", "rejected", "split", "source",
)
SPLITS: tuple[str, ...] = ("train", "valid", "test", "ood")


def validate_table(table: pd.DataFrame, *, where: str = "preference table") -> pd.DataFrame:
    """Check the contract; return the table unchanged or raise a one-line :class:`DataError`."""
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise DataError(f"{where}: missing column(s) {missing}; every loader must return {list(REQUIRED_COLUMNS)}")
    if table["pair_id"].duplicated().any():
        dup = table.loc[table["pair_id"].duplicated(), "pair_id"].iloc[0]
        raise DataError(f"{where}: pair_id {dup!r} occurs twice; pair ids must be unique")
    # The prompt must be text; one answer may be empty (a model that generated nothing: 12 real CNN/DM
    # comparisons), but not both, and neither may be missing.
    empty = {col: table[col].isna() | (table[col].astype(str).str.strip() == "") for col in ("prompt", "chosen", "rejected")}
    missing_answer = table["chosen"].isna() | table["rejected"].isna()
    for col, bad in (("prompt", empty["prompt"]), ("chosen/rejected", missing_answer | (empty["chosen"] & empty["rejected"]))):
        if bad.any():
            raise DataError(f"{where}: empty {col} in pair {table.loc[bad, 'pair_id'].iloc[0]!r}; drop the row or pass --skip-bad")
    bad_split = ~table["split"].isin(SPLITS)
    if bad_split.any():
        raise DataError(f"{where}: split {table.loc[bad_split, 'split'].iloc[0]!r} is not one of {SPLITS}")
    leaked = table.groupby("prompt_id")["split"].nunique()
    if (leaked > 1).any():
        raise DataError(f"{where}: prompt {leaked[leaked > 1].index[0]!r} is in more than one split; splits must be prompt-grouped")
    return table
