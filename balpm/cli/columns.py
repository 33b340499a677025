"""The column-name options shared by ``balpm data inspect`` and ``balpm featurize`` (format ``table``), and
``--subsample``. The same settings live in :class:`balpm.config.DataConfig` (``prompt_col`` ... ``source_col``,
``subsample``) for ``balpm run`` / ``sweep`` (``--set data.prompt_col=question``)."""
from __future__ import annotations

import typer

PROMPT_COL = typer.Option(None, "--prompt-col", help="column holding the prompt (format table)")
CHOSEN_COL = typer.Option(None, "--chosen-col", help="column holding the preferred answer")
REJECTED_COL = typer.Option(None, "--rejected-col", help="column holding the other answer")
SPLIT_COL = typer.Option(None, "--split-col", help="column holding the original split (optional)")
ID_COL = typer.Option(None, "--id-col", help="column holding a unique pair id (optional)")
PROMPT_ID_COL = typer.Option(None, "--prompt-id-col", help="column holding a prompt id (optional)")
SOURCE_COL = typer.Option(None, "--source-col", help="column holding the source name (optional)")
SUBSAMPLE = typer.Option(0, "--subsample", min=0, help="keep whole prompts (seeded by --seed) until this many "
                         "comparisons, before the split and before featurization (0: all)")


def column_map(prompt: str | None, chosen: str | None, rejected: str | None, split: str | None,
               pair_id: str | None, prompt_id: str | None, source: str | None) -> dict[str, str] | None:
    """The loader's ``columns`` mapping from the options given (None when none was)."""
    given = {"prompt": prompt, "chosen": chosen, "rejected": rejected, "split": split,
             "id": pair_id, "prompt_id": prompt_id, "source": source}
    return {k: v for k, v in given.items() if v} or None
