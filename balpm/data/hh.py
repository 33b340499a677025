"""Anthropic HH-RLHF: JSON lines (``.jsonl`` or ``.jsonl.gz``) of ``{"chosen": ..., "rejected": ...}``.

Both fields are full transcripts ``"\\n\\nHuman: ...\\n\\nAssistant: ..."`` that share everything up to
the last assistant turn. The prompt is that shared prefix, up to and including the final
``"\\n\\nAssistant:"``; chosen and rejected are the two final assistant turns (whitespace-stripped).
A row whose transcripts do not share the prefix is malformed (``prefix_mismatch``). The split
(train / test) comes from the file name, as in the hub's ``helpful-base/train.jsonl.gz``. Source ``hh``.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from balpm.data.rows import BadRows, RowBuffer, RowProblem, is_text, split_from_name
from balpm.data.tabular import COLUMNS, check_text, iter_records

SOURCE = "hh"
ASSISTANT = "\n\nAssistant:"
HUMAN = "\n\nHuman:"


def split_hh(chosen: str, rejected: str) -> tuple[str, str, str]:
    """Split two HH transcripts into ``(prompt, chosen_answer, rejected_answer)``.

    Raises ``RowProblem("prefix_mismatch")`` when there is no assistant turn or the prompts differ,
    ``RowProblem("empty_text")`` when both final answers are empty (one empty answer is allowed).
    """
    cut_c, cut_r = chosen.rfind(ASSISTANT), rejected.rfind(ASSISTANT)
    if cut_c < 0 or cut_r < 0:
        which = "chosen" if cut_c < 0 else "rejected"
        raise RowProblem("prefix_mismatch", f"{which} has no {ASSISTANT!r} turn")
    prompt = chosen[: cut_c + len(ASSISTANT)]
    if rejected[: cut_r + len(ASSISTANT)] != prompt:
        at = next((i for i, (a, b) in enumerate(zip(chosen, rejected)) if a != b), min(len(chosen), len(rejected)))
        raise RowProblem("prefix_mismatch", f"the transcripts differ at character {at}, before the last assistant turn")
    answer_c, answer_r = chosen[len(prompt):].strip(), rejected[len(prompt):].strip()
    if not is_text(answer_c) and not is_text(answer_r):
        raise RowProblem("empty_text", "both final assistant turns")
    return prompt, answer_c, answer_r


def looks_like_hh(rec: dict) -> bool:
    """True when a record holds HH transcripts (chosen/rejected with Human and Assistant turns, no prompt)."""
    chosen = rec.get("chosen")
    return "prompt" not in rec and "rejected" in rec and isinstance(chosen, str) and HUMAN in chosen and ASSISTANT in chosen


def load_hh(path: Path, bad: BadRows) -> pd.DataFrame:
    """Stream an HH-RLHF file into a raw frame."""
    buf = RowBuffer(COLUMNS)
    name = str(path)
    split = split_from_name(path)
    for number, unit, rec in iter_records(path, bad):
        try:
            prompt, chosen, rejected = split_hh(check_text(rec, "chosen", "chosen"), check_text(rec, "rejected", "rejected"))
        except RowProblem as problem:
            bad.add(name, number, problem.reason, problem.detail, unit=unit)
            continue
        buf.append(prompt=prompt, chosen=chosen, rejected=rejected, source=SOURCE, orig_split=split, file=name, line=number)
    return buf.frame().drop(columns=["user_pair_id", "user_prompt_id"])
