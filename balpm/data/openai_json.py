"""OpenAI "summarize from feedback" comparisons (JSON lines, one comparison per line).

A row looks like ``{"info": {id, post, title, subreddit} | {id, article, title, site}, "split": ...,
"summaries": [{text, policy, note}, {..}], "choice": 0|1, "worker", "batch", "extra": {"confidence"}}``.
``info.post`` rows are Reddit TL;DR (source ``tldr``), ``info.article`` rows CNN/DailyMail (``cnndm``).
The prompt is the post (or article); chosen = ``summaries[choice].text``, rejected = the other one. One summary may be empty (a model that generated
nothing: 12 comparisons in ``batch0_cnndm.json``); an empty prompt or two empty summaries make a bad row.
``info.id`` is kept as ``source_id`` (the edit file has none; ids are content hashes, see load.py).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from balpm.data.rows import (
    BadRows,
    RowBuffer,
    RowProblem,
    as_confidence,
    is_text,
    iter_json_lines,
    norm_split,
    short,
)

#: columns of the raw frame this loader returns
COLUMNS: tuple[str, ...] = (
    "prompt", "chosen", "rejected", "source", "source_id", "orig_split", "title", "subreddit", "site",
    "policy_chosen", "policy_rejected", "worker", "batch", "confidence", "choice", "_notes", "file", "line",
)
#: the fields :func:`parse_comparison` returns, in order (``COLUMNS`` less file and line)
FIELDS: tuple[str, ...] = COLUMNS[:-2]


def _opt_str(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise RowProblem("bad_type", f"{name} must be a string, got {short(value)}")
    return value


def parse_comparison(obj: Any) -> tuple[Any, ...]:
    """One OpenAI comparison object -> its raw-frame fields as a tuple in ``FIELDS`` order, or raise :class:`RowProblem`."""
    if not isinstance(obj, dict):
        raise RowProblem("not_object", f"got {type(obj).__name__}")
    info = obj.get("info")
    if info is None:
        raise RowProblem("missing_field", "no 'info'")
    if not isinstance(info, dict):
        raise RowProblem("bad_type", f"info must be an object, got {short(info)}")
    if info.get("post") is not None:
        source, prompt, prompt_name = "tldr", info["post"], "info.post"
    elif info.get("article") is not None:
        source, prompt, prompt_name = "cnndm", info["article"], "info.article"
    else:
        raise RowProblem("missing_field", "no 'info.post' or 'info.article'")
    if not isinstance(prompt, str):
        raise RowProblem("bad_type", f"{prompt_name} must be a string, got {short(prompt)}")
    summaries = obj.get("summaries")
    if summaries is None:
        raise RowProblem("missing_field", "no 'summaries'")
    if not isinstance(summaries, list) or len(summaries) != 2 or not all(isinstance(s, dict) for s in summaries):
        raise RowProblem("bad_summaries", f"got {short(summaries)}")
    texts = []
    for i, summary in enumerate(summaries):
        text = summary.get("text")
        if text is None:
            raise RowProblem("missing_field", f"no 'summaries[{i}].text'")
        if not isinstance(text, str):
            raise RowProblem("bad_type", f"summaries[{i}].text must be a string, got {short(text)}")
        texts.append(text)
    if "choice" not in obj or obj["choice"] is None:
        raise RowProblem("missing_field", "no 'choice'")
    choice = obj["choice"]
    if isinstance(choice, bool) or not isinstance(choice, int) or choice not in (0, 1):
        raise RowProblem("bad_choice", f"got {short(choice)}")
    if not is_text(prompt):
        raise RowProblem("empty_text", prompt_name)
    if not is_text(texts[0]) and not is_text(texts[1]):
        raise RowProblem("empty_text", "both summaries")
    for name, text in ((prompt_name, prompt), ("summaries[0].text", texts[0]), ("summaries[1].text", texts[1])):
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise RowProblem("bad_encoding", f"{name} holds a lone surrogate") from None
    extra = obj.get("extra")
    if extra is not None and not isinstance(extra, dict):
        raise RowProblem("bad_type", f"extra must be an object, got {short(extra)}")
    split = obj.get("split")
    if split is not None and not isinstance(split, str):
        raise RowProblem("bad_type", f"split must be a string, got {short(split)}")
    chosen, rejected = summaries[choice], summaries[1 - choice]
    notes = (summaries[0].get("note"), summaries[1].get("note"))
    return (
        prompt,
        texts[choice],
        texts[1 - choice],
        source,
        None if info.get("id") is None else str(info["id"]),
        norm_split(split),
        _opt_str(info.get("title"), "info.title"),
        _opt_str(info.get("subreddit"), "info.subreddit"),
        _opt_str(info.get("site"), "info.site"),
        None if chosen.get("policy") is None else str(chosen["policy"]),
        None if rejected.get("policy") is None else str(rejected["policy"]),
        None if obj.get("worker") is None else str(obj["worker"]),
        None if obj.get("batch") is None else str(obj["batch"]),
        as_confidence((extra or {}).get("confidence")),
        choice,
        None if notes == (None, None) else repr(notes),
    )


def load_openai_json(path: Path, bad: BadRows) -> pd.DataFrame:
    """Stream an OpenAI comparisons JSON-lines file (``.gz`` too) into a raw frame."""
    buf = RowBuffer(COLUMNS)
    name = str(path)
    for line_no, obj in iter_json_lines(path, bad):
        try:
            buf.append_values(parse_comparison(obj) + (name, line_no))
        except RowProblem as problem:
            bad.add(name, line_no, problem.reason, problem.detail)
    return buf.frame()


def looks_like_openai(keys: set[str]) -> bool:
    """True when a record's keys are those of an OpenAI comparison."""
    return {"info", "summaries"} <= keys
