"""Anthropic HH-RLHF: JSON lines (``.jsonl`` or ``.jsonl.gz``) of ``{"chosen": ..., "rejected": ...}``.

Both fields are full transcripts ``"\\n\\nHuman: ...\\n\\nAssistant: ..."`` that share everything up to
the last assistant turn. The prompt is that shared prefix, up to and including the final
``"\\n\\nAssistant:"``; chosen and rejected are the two final assistant turns (whitespace-stripped), each
ending at the next ``"\\n\\nHuman:"`` turn when a transcript goes on after it.
A pair whose transcripts differ before the last assistant turn (a few rows of the hub's
harmless-base test file) is split at the longest common prefix that ends on a turn boundary (TRL's
convention) and counted (``hh_split_early`` in the load report); only transcripts without an assistant turn
or without a shared first exchange are malformed (``prefix_mismatch``). The split
(train / test) comes from the file name, as in the hub's ``helpful-base/train.jsonl.gz``. Source ``hh``.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from balpm.data.rows import BadRows, RowBuffer, RowProblem, is_text, split_from_name
from balpm.data.tabular import COLUMNS, check_text, iter_records

SOURCE = "hh"
ASSISTANT = "\n\nAssistant:"
HUMAN = "\n\nHuman:"


_MARKERS = re.compile(r"\n\n(?:Human|Assistant):")


def split_hh(chosen: str, rejected: str) -> tuple[str, str, str, bool]:
    """Split two HH transcripts into ``(prompt, chosen_answer, rejected_answer, split_early)``.

    The usual row shares everything up to its final ``"\\n\\nAssistant:"``: that is the prompt, and the two
    final assistant turns are the answers. When the transcripts differ earlier (``split_early`` True), the
    prompt is their longest common prefix that ends on a turn boundary (just after a ``"\\n\\nHuman:"`` or
    ``"\\n\\nAssistant:"`` marker, as TRL's prompt extraction splits a conversation at the last shared turn)
    and the answers are the rest of each transcript, several turns long.

    Raises ``RowProblem("prefix_mismatch")`` when a transcript has no assistant turn or the two share no turn
    marker after a shared human turn, ``RowProblem("empty_text")`` when both answers are empty (one empty answer is allowed).
    """
    cut_c, cut_r = chosen.rfind(ASSISTANT), rejected.rfind(ASSISTANT)
    if cut_c < 0 or cut_r < 0:
        which = "chosen" if cut_c < 0 else "rejected"
        raise RowProblem("prefix_mismatch", f"{which} has no {ASSISTANT!r} turn")
    prompt = chosen[: cut_c + len(ASSISTANT)]
    split_early = rejected[: cut_r + len(ASSISTANT)] != prompt
    if split_early:
        common = next((i for i, (a, b) in enumerate(zip(chosen, rejected)) if a != b), min(len(chosen), len(rejected)))
        ends = [m.end() for m in _MARKERS.finditer(chosen, 0, common)]
        if not ends or ASSISTANT not in chosen[: ends[-1]]:
            raise RowProblem("prefix_mismatch", f"the transcripts differ at character {common}, before their first "
                                                "shared assistant turn")
        prompt = chosen[: ends[-1]]
    answer_c, answer_r = chosen[len(prompt):], rejected[len(prompt):]
    if not split_early:  # an answer is one assistant turn: it ends where the next human turn starts
        answer_c, answer_r = answer_c.split(HUMAN, 1)[0], answer_r.split(HUMAN, 1)[0]
    answer_c, answer_r = answer_c.strip(), answer_r.strip()
    if not is_text(answer_c) and not is_text(answer_r):
        raise RowProblem("empty_text", "both final assistant turns")
    return prompt, answer_c, answer_r, split_early


def looks_like_hh(rec: dict) -> bool:
    """True when a record holds HH transcripts (chosen/rejected with Human and Assistant turns, no prompt)."""
    chosen = rec.get("chosen")
    return "prompt" not in rec and "rejected" in rec and isinstance(chosen, str) and HUMAN in chosen and ASSISTANT in chosen


def load_hh(path: Path, bad: BadRows) -> pd.DataFrame:
    """Stream an HH-RLHF file into a raw frame (``_hh_split_early`` marks rows split before the last turn)."""
    buf = RowBuffer(COLUMNS)
    early: list[bool] = []
    name = str(path)
    split = split_from_name(path)
    for number, unit, rec in iter_records(path, bad):
        try:
            prompt, chosen, rejected, split_early = split_hh(check_text(rec, "chosen", "chosen"),
                                                             check_text(rec, "rejected", "rejected"))
            buf.append(prompt=prompt, chosen=chosen, rejected=rejected, source=SOURCE, orig_split=split, file=name, line=number)
        except RowProblem as problem:
            bad.add(name, number, problem.reason, problem.detail, unit=unit)
            continue
        early.append(split_early)
    frame = buf.frame().drop(columns=["user_pair_id", "user_prompt_id"])
    frame["_hh_split_early"] = pd.Series(early, index=frame.index, dtype=bool)
    return frame
