"""One entry point for every source format: files -> validated preference table + a report.

Steps (the same for every format):

1. **Detect** the format of each path (``format="auto"``) or use the one given: ``openai`` (comparison
   JSON lines), ``hub`` (the Hugging Face comparisons config, local parquet/arrow or online), ``carper``
   (prompt/chosen/rejected TL;DR), ``hh`` (Anthropic HH-RLHF) or ``table`` (any CSV/JSONL/parquet with
   the column names given). A folder is read file by file (sorted by name) unless it is a
   ``save_to_disk`` folder or a hub copy.
2. **Stream** each file; a malformed row raises one-line :class:`DataError` naming file, line and problem,
   or with ``skip_bad=True`` is skipped and counted (``report["bad_rows"]``, ``report["bad_reasons"]``).
3. **Drop exact duplicates**: rows identical in every field but ``batch``, ``file`` and ``line`` (e.g.
   ``cnndm0.json`` repeats ``batch0_cnndm.json``); the first occurrence is kept.
4. **Ids**: ``prompt_id`` = content hash of (source, prompt text), the same for a post in every file
   (the source's own id is kept as ``source_id``); ``pair_id`` = content hash of (source, prompt,
   chosen, rejected, choice, worker): the same pair judged by two workers gives two pair ids. A
   user-given id column is used instead when named. (Two rows that differ only in metadata such as
   confidence share the hash; the later ones get ``-2``, ``-3`` ... suffixes, counted in the report.)
5. **OOD**: rows from ``ood_paths`` are ``ood`` (their whole prompt). With ``format="auto"``, CNN/DM
   rows passed as ordinary paths are also ``ood`` when TL;DR rows are present (the paper's setup).
6. **Split** the rest (see :mod:`balpm.data.splits`): seeded prompt-grouped ``ratios`` (default), or
   ``keep_original=True`` for the source's own splits.
"""
from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from balpm.config import LOADER_FORMATS
from balpm.data import limits
from balpm.data.carper import is_save_to_disk, load_carper
from balpm.data.hh import load_hh, looks_like_hh
from balpm.data.hub import HUB_REPO, hub_files, is_hub_id, load_hub
from balpm.data.openai_json import load_openai_json, looks_like_openai
from balpm.data.rows import (
    BAD_REASONS,
    META_COLUMNS,
    BadRows,
    ProbeExhausted,
    content_hash,
    probing,
)
from balpm.data.schema import REQUIRED_COLUMNS, SPLITS, validate_table
from balpm.data.splits import assign_splits, check_ratios, original_splits
from balpm.data.tabular import (
    file_kind,
    iter_records,
    load_prompt_table,
    record_columns,
)
from balpm.errors import ConfigError, DataError

log = logging.getLogger("balpm.data")

FORMATS: tuple[str, ...] = LOADER_FORMATS  #: the loaders (one tuple: balpm.config.LOADER_FORMATS)
_DATA_SUFFIXES = (".json", ".jsonl", ".ndjson", ".gz", ".csv", ".tsv", ".parquet", ".arrow")
_NOT_IN_DUP_KEY = ("batch", "file", "line", "_ood", "_job", "_hh_split_early")
#: column roles a loader understands (``DataConfig.<role>_col`` and the CLI's ``--<role>-col``)
COLUMN_ROLES: tuple[str, ...] = ("prompt", "chosen", "rejected", "split", "id", "prompt_id", "source")


@dataclass
class LoadResult:
    """A loaded preference table (``split`` assigned, schema-checked), its report, and features when the
    source provides them (the synthetic worlds)."""

    table: pd.DataFrame
    report: dict[str, Any]
    features: Any = field(default=None)


# ----------------------------------------------------------------------------- format detection


def _is_data_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in _DATA_SUFFIXES and not path.name.startswith(".") \
        and path.name not in ("state.json", "dataset_info.json", "dataset_dict.json")


_DETECT_RECORDS = 20


def _first_records(path: Path, n: int = _DETECT_RECORDS) -> tuple[list[dict[str, Any]], BadRows]:
    """Up to ``n`` parseable records from the start of a file (malformed lines skipped and counted), reading at
    most ``BALPM_DETECT_MAX_BYTES`` / ``BALPM_DETECT_MAX_LINES``: a file with no record in that much (billions of
    blank or malformed lines) is a one-line :class:`DataError` naming the cap, not an endless read."""
    probe = BadRows(skip_bad=True)
    out: list[dict[str, Any]] = []
    try:
        with probing(limits.DETECT_MAX_BYTES.value, limits.DETECT_MAX_LINES.value):
            for _, _, rec in iter_records(path, probe):
                out.append(rec)
                if len(out) >= n:
                    break
    except ProbeExhausted:
        if not out:
            seen = f", {probe.total} malformed line(s)" if probe.total else ""
            raise DataError(
                f"{path}: no record found in the first {limits.DETECT_MAX_BYTES.show()} / "
                f"{limits.DETECT_MAX_LINES.show()} lines read to detect its format{seen} (the caps "
                f"{limits.DETECT_MAX_BYTES.env} and {limits.DETECT_MAX_LINES.env}); check the file, pass --format "
                f"(and the column names) to read it without detection, or raise the caps") from None
    return out, probe


def _first_record(path: Path) -> dict[str, Any] | None:
    records, _ = _first_records(path, 1)
    return records[0] if records else None


def _record_format(rec: dict[str, Any]) -> str | None:
    keys = set(rec)
    if looks_like_openai(keys):
        return "openai"
    if looks_like_hh(rec):
        return "hh"
    if {"prompt", "chosen", "rejected"} <= keys:
        return "carper" if str(rec.get("prompt", "")).lstrip().startswith("SUBREDDIT:") else "table"
    return None


def _no_record_message(path: Path, probe: BadRows) -> str:
    if probe.total == 0:
        return f"{path}: the file is empty (no record in it); remove it or pass a file with comparisons"
    reasons = ", ".join(f"{n} {BAD_REASONS.get(r, r)}" for r, n in probe.counts.most_common())
    fix = "check the file"
    if probe.counts.get("bad_encoding", 0) >= probe.total / 2:
        fix = ("it is not UTF-8 text: convert it, e.g. `iconv -f LATIN1 -t UTF-8` (use the file's real encoding), "
               "or re-save it as UTF-8")
    example = f" (e.g. {probe.examples[0]})" if probe.examples else ""
    return f"{path}: no readable record found: {probe.total} malformed line(s): {reasons}{example}; {fix}"


def detect_file_format(path: Path, columns: Mapping[str, str | None] | None = None) -> str:
    """The format of one data file: ``openai``, ``hub``, ``carper``, ``hh``, ``table``, or ``empty`` for a file
    without any content. Decided by the first well-formed records, so malformed first lines do not matter."""
    if columns and any(columns.values()):
        return "table"
    kind = file_kind(path)
    if kind in ("parquet", "arrow"):
        names = set(record_columns(path))
        if looks_like_openai(names):
            return "hub"
        if {"prompt", "chosen", "rejected"} <= names:
            rec = _first_record(path) or {}
            return "carper" if str(rec.get("prompt", "")).lstrip().startswith("SUBREDDIT:") else "table"
        if {"chosen", "rejected"} <= names:
            return "hh"
        raise DataError(f"{path}: columns {sorted(names)[:12]} match no known format; name them with --prompt-col/--chosen-col/--rejected-col")
    if kind in ("csv", "tsv"):
        return "table"
    records, probe = _first_records(path)
    if not records:
        if probe.total == 0:
            return "empty"
        raise DataError(_no_record_message(path, probe))
    for rec in records:
        fmt = _record_format(rec)
        if fmt is not None:
            return fmt
    raise DataError(
        f"{path}: the keys of its first {len(records)} record(s) ({sorted(map(str, records[0]))[:12]}) match no known format "
        "(OpenAI comparisons, HH-RLHF, prompt/chosen/rejected); pass --format and the column names"
    )


def expand_path(path: str | Path, fmt: str, columns: Mapping[str, str | None] | None = None) -> list[tuple[Path | str, str]]:
    """``(file or folder, format)`` pairs to read for one user path (folders expand to their files)."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown data format {fmt!r}; use one of {list(FORMATS)}")
    local = Path(path).expanduser()
    if not local.exists():
        hub_named = str(path).startswith("hf://") or str(path) == HUB_REPO
        if (fmt == "hub" or (fmt == "auto" and hub_named)) and is_hub_id(str(path)):
            return [(str(path), "hub")]
        raise DataError(f"{path}: no such file or folder; check the path")
    if local.is_dir():
        if fmt == "auto" and is_save_to_disk(local):
            arrow = sorted(local.rglob("*.arrow"))
            openai_like = bool(arrow) and looks_like_openai(set(record_columns(arrow[0])))
            return [(local, "hub" if openai_like else "carper")]  # a saved hub comparisons dataset, or CarperAI
        if fmt == "hub" or (fmt == "auto" and (local / "comparisons").is_dir()):
            hub_files(local)  # raises when empty
            return [(local, "hub")]
        if fmt == "carper":
            return [(local, "carper")]
        files = sorted(p for p in local.rglob("*") if _is_data_file(p))
        if not files:
            raise DataError(f"{local}: no data files (.json, .jsonl, .csv, .parquet, .arrow, .gz) in this folder")
        return [pair for f in files for pair in expand_path(f, fmt, columns)]
    if not local.is_file():  # a FIFO, a device, a socket: reading it could block or never end
        raise DataError(f"{path}: not a regular file or folder; pass a data file or a folder of them")
    return [(local, detect_file_format(local, columns) if fmt == "auto" else fmt)]


def read_raw(path: Path | str, fmt: str, bad: BadRows, columns: Mapping[str, str | None] | None = None) -> pd.DataFrame:
    """Read one expanded path with its format into a raw frame (see :mod:`balpm.data.rows`)."""
    if fmt == "openai":
        return load_openai_json(Path(path), bad)
    if fmt == "hub":
        return load_hub(path, bad)
    if fmt == "carper":
        return load_carper(Path(path), bad, columns)
    if fmt == "hh":
        return load_hh(Path(path), bad)
    if fmt == "table":
        return load_prompt_table(Path(path), bad, columns)
    if fmt == "empty":
        return pd.DataFrame({c: pd.Series(dtype=object) for c in ("prompt", "chosen", "rejected", "source", "file", "line")})
    raise ConfigError(f"unknown data format {fmt!r}; use one of {list(FORMATS)}")


# ----------------------------------------------------------------------------- ids and duplicates


def drop_duplicates(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Drop rows identical in every field but batch/file/line; returns ``(kept, dropped-mask over raw)``."""
    key = [c for c in raw.columns if c not in _NOT_IN_DUP_KEY]
    dup_N = raw.duplicated(subset=key, keep="first")
    return raw.loc[~dup_N].reset_index(drop=True), dup_N


def prompt_ids(source_N: pd.Series, prompt_N: pd.Series) -> list[str]:
    """Content hash of (source, prompt text) for each row; each distinct prompt is hashed once."""
    cache: dict[tuple[str, str], str] = {}
    out = []
    for src, text in zip(source_N.tolist(), prompt_N.tolist()):
        key = (src, text)
        pid = cache.get(key)
        if pid is None:
            pid = cache[key] = content_hash("prompt", src, text)
        out.append(pid)
    return out


def _col(frame: pd.DataFrame, name: str) -> list[Any]:
    if name not in frame.columns:
        return [None] * len(frame)
    return [None if (v is None or (isinstance(v, float) and np.isnan(v))) else v for v in frame[name].tolist()]


def pair_ids(frame: pd.DataFrame) -> list[str]:
    """Content hash of (source, prompt, chosen, rejected, choice, worker) for each row."""
    return [
        content_hash("pair", s, p, c, r, ch, w)
        for s, p, c, r, ch, w in zip(frame["source"].tolist(), frame["prompt"].tolist(), frame["chosen"].tolist(),
                                     frame["rejected"].tolist(), _col(frame, "choice"), _col(frame, "worker"))
    ]


def _user_ids(frame: pd.DataFrame, column: str, hashed: list[str]) -> pd.Series:
    ids = pd.Series(hashed, index=frame.index, dtype=object)
    if column in frame.columns:
        given = frame[column].notna()
        ids[given] = frame.loc[given, column].astype(str)
    return ids


def assign_ids(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Add ``prompt_id`` and ``pair_id``; returns ``(frame, suffixed collisions)``."""
    out = frame.copy()
    out["prompt_id"] = _user_ids(out, "user_prompt_id", prompt_ids(out["source"], out["prompt"])).astype(str)
    pair_N = _user_ids(out, "user_pair_id", pair_ids(out))
    if "user_pair_id" in out.columns:
        given = out["user_pair_id"].notna()
        dup = out.loc[given, "user_pair_id"].duplicated(keep=False)
        if dup.any():
            rows = out.loc[given].loc[dup.to_numpy()]
            first, second = rows.iloc[0], rows.iloc[1]
            raise DataError(
                f"{second['file']}: line {second['line']}: id {second['user_pair_id']!r} already used at "
                f"{first['file']} line {first['line']}; ids must be unique (or drop the id column)"
            )
    rank_N = pair_N.groupby(pair_N).cumcount()
    collisions = int((rank_N > 0).sum())
    if collisions:
        pair_N = pair_N.where(rank_N == 0, pair_N + "-" + (rank_N + 1).astype(str))
    out["pair_id"] = pair_N.astype(str)
    return out, collisions


# ----------------------------------------------------------------------------- the table


def _order_columns(table: pd.DataFrame) -> pd.DataFrame:
    table = table.drop(columns=[c for c in table.columns if c.startswith(("_", "user_"))])
    meta = [c for c in META_COLUMNS if c in table.columns]
    rest = [c for c in table.columns if c not in REQUIRED_COLUMNS and c not in meta]
    table = table[list(REQUIRED_COLUMNS) + meta + rest].copy()
    for col in table.columns:
        if table[col].dtype == object and table[col].map(lambda v: v is None or isinstance(v, str) or (isinstance(v, float) and np.isnan(v))).all():
            table[col] = table[col].astype("str")  # one string dtype; missing values stay missing
    return table


def _empty_table() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in REQUIRED_COLUMNS})


def _counts(series: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in series.value_counts(sort=False).sort_index().items()}


def build_report(table: pd.DataFrame, **extra: Any) -> dict[str, Any]:
    """Summary of a preference table: rows, prompts, per source / split, comparisons per prompt (+ ``extra``)."""
    per_prompt = table.groupby("prompt_id").size() if len(table) else pd.Series(dtype=np.int64)
    report: dict[str, Any] = {
        "rows": len(table),
        "prompts": int(table["prompt_id"].nunique()),
        "duplicates_dropped": 0,
        "bad_rows": 0,
        "bad_reasons": {},
        "per_source": _counts(table["source"]),
        "per_split": _counts(table["split"]),
        "per_source_split": {
            str(src): _counts(group["split"]) for src, group in table.groupby("source", sort=True)
        },
        "prompts_per_source": {str(k): int(v) for k, v in table.groupby("source")["prompt_id"].nunique().items()},
        "prompts_per_split": {str(k): int(v) for k, v in table.groupby("split")["prompt_id"].nunique().items()},
        "comparisons_per_prompt": {
            "mean": float(per_prompt.mean()) if len(per_prompt) else 0.0,
            "median": float(per_prompt.median()) if len(per_prompt) else 0.0,
            "max": int(per_prompt.max()) if len(per_prompt) else 0,
        },
    }
    report.update(extra)
    return report


def _as_paths(paths: str | Path | Iterable[str | Path]) -> list[str | Path]:
    if isinstance(paths, (str, Path)):
        return [paths]
    return list(paths)


def identical_answers(raw: pd.DataFrame) -> pd.Series:
    """Rows whose two answers are the same text (surrounding whitespace ignored): they carry no preference."""
    if not len(raw):
        return pd.Series(False, index=raw.index, dtype=bool)
    return raw["chosen"].astype(str).str.strip() == raw["rejected"].astype(str).str.strip()


def subsample_rows(table: pd.DataFrame, n: int, seed: int) -> pd.Series:
    """Seeded, prompt-grouped subsample: a mask keeping whole prompts (in a seeded random order) until ``n``
    in-distribution comparisons are reached; OOD rows keep the same fraction of their prompts (at least one).

    The order comes from ``SeedSequence(seed, spawn_key=(1,))``, independent of the split's own stream.
    """
    keep_N = pd.Series(False, index=table.index, dtype=bool)
    is_ood_N = table["split"] == "ood"
    n_in = int((~is_ood_N).sum())
    fraction = min(1.0, n / n_in) if n_in else 1.0
    for part, target in ((~is_ood_N, n), (is_ood_N, None)):
        rows = table.loc[part]
        if not len(rows):
            continue
        sizes = rows.groupby("prompt_id", sort=True).size()
        rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(1, 0 if target is not None else 1)))
        order = sizes.index.to_numpy()[rng.permutation(len(sizes))]
        want = target if target is not None else max(1, int(round(fraction * len(rows))))
        cum = np.cumsum(sizes.loc[order].to_numpy())
        take = int(np.searchsorted(cum, want, side="left")) + 1
        keep_N |= table["prompt_id"].isin(set(order[:take].tolist())) & part
    return keep_N


def load_table(paths: str | Path | Iterable[str | Path], *, format: str = "auto", skip_bad: bool = False,
               columns: Mapping[str, str | None] | None = None, ood_paths: str | Path | Iterable[str | Path] = (),
               ratios: Sequence[float] = (0.7, 0.1, 0.2), seed: int = 0, keep_original: bool = False,
               subsample: int = 0) -> LoadResult:
    """Load files of any supported format into one validated preference table with splits assigned.

    ``paths`` are in-distribution files or folders, ``ood_paths`` out-of-distribution ones (split ``ood``).
    ``columns`` maps roles (prompt, chosen, rejected, split, id, prompt_id, source) to column names.
    ``ratios`` / ``seed`` drive the prompt-grouped split; ``keep_original`` keeps the source's splits.
    ``subsample`` > 0 keeps whole prompts (seeded by ``seed``) until that many in-distribution comparisons,
    and the same fraction of the OOD rows, before the split (see :func:`subsample_rows`).
    Comparisons whose two answers are identical are dropped and counted (``identical_answers_dropped``).
    See the module docstring for every step. Raises :class:`DataError` on bad input (one line).
    """
    check_ratios(ratios)
    if isinstance(subsample, bool) or not isinstance(subsample, (int, np.integer)) or subsample < 0:
        raise ConfigError(f"subsample must be a whole number >= 0 (got {subsample!r}); 0 keeps every comparison")
    in_paths, out_paths = _as_paths(paths), _as_paths(ood_paths)
    if not in_paths and not out_paths:
        raise DataError("no data paths given; pass at least one file or folder")
    bad = BadRows(skip_bad=skip_bad)
    jobs = [(p, False) for p in in_paths] + [(p, True) for p in out_paths]
    expanded = [(item, fmt, is_ood) for p, is_ood in jobs for item, fmt in expand_path(p, format, columns)]
    frames, files = [], []
    notes: list[str] = []
    for job, (item, fmt, is_ood) in enumerate(expanded):
        before = bad.total
        raw = read_raw(item, fmt, bad, columns)
        raw["_ood"], raw["_job"] = is_ood, job
        frames.append(raw)
        files.append({"path": str(item), "format": fmt, "ood": is_ood, "rows_read": len(raw), "bad_rows": bad.total - before})
        if fmt == "empty":
            notes.append(f"{item} is empty")
    frames = [f for f in frames if len(f)]
    if not frames:
        if bad.total == 0:
            empty = [str(item) for item, fmt, _ in expanded if fmt == "empty"]
            what = f" ({', '.join(empty[:3])} {'is' if len(empty) == 1 else 'are'} empty)" if empty else ""
            raise DataError(f"no comparisons found in {[str(p) for p in in_paths + out_paths]}{what}; check the paths and --format")
        table = _empty_table()
        report = build_report(table, bad_rows=bad.total, bad_reasons=dict(bad.counts), bad_examples=bad.examples,
                              pair_id_collisions=0, empty_answers=0, identical_answers_dropped=0, hh_split_early=0,
                              split={"method": "none"}, files=files, notes=notes + ["every row was malformed and skipped"])
        return LoadResult(table, report)
    raw = pd.concat(frames, ignore_index=True)
    same_N = identical_answers(raw)
    same_per_job = raw.loc[same_N, "_job"].value_counts()
    if same_N.any():
        first = raw.loc[same_N].iloc[0]
        log.warning("dropped %d comparison(s) whose two answers are identical (no preference), e.g. %s:%s",
                    int(same_N.sum()), first["file"], first["line"])
        raw = raw.loc[~same_N].reset_index(drop=True)
    kept, dup_N = drop_duplicates(raw)
    dropped_per_job = raw.loc[dup_N, "_job"].value_counts()
    for job, info in enumerate(files):
        info["duplicates_dropped"] = int(dropped_per_job.get(job, 0))
        info["identical_answers_dropped"] = int(same_per_job.get(job, 0))
    hh_early = int(kept["_hh_split_early"].fillna(False).astype(bool).sum()) if "_hh_split_early" in kept.columns else 0
    if not len(kept):
        table = _empty_table()
        report = build_report(table, bad_rows=bad.total, bad_reasons=dict(bad.counts), bad_examples=bad.examples,
                              duplicates_dropped=int(dup_N.sum()), identical_answers_dropped=int(same_N.sum()),
                              pair_id_collisions=0, empty_answers=0, hh_split_early=0, split={"method": "none"},
                              files=files, notes=notes + ["every comparison had two identical answers"])
        return LoadResult(table, report)
    ood_keys = set(zip(raw.loc[raw["_ood"], "source"], raw.loc[raw["_ood"], "prompt"]))
    table, collisions = assign_ids(kept)

    # OOD: whole prompts of ood files; in auto mode CNN/DM is OOD beside TL;DR
    is_ood_N = np.fromiter(((k in ood_keys) for k in zip(table["source"], table["prompt"])), dtype=bool, count=len(table))
    ood_prompts = set(table.loc[is_ood_N, "prompt_id"])
    in_sources = set(table.loc[~is_ood_N, "source"])
    if format == "auto" and "tldr" in in_sources and "cnndm" in in_sources:
        ood_prompts |= set(table.loc[table["source"] == "cnndm", "prompt_id"])
        notes.append("CNN/DM rows given as ordinary paths are OOD because TL;DR rows are present (format auto)")
    table["split"] = np.where(table["prompt_id"].isin(ood_prompts), "ood", "train")
    subsample_info: dict[str, Any] = {}
    if subsample:
        keep_N = subsample_rows(table, int(subsample), seed)
        subsample_info = {"n": int(subsample), "seed": int(seed), "rows_before": len(table), "rows_after": int(keep_N.sum())}
        notes.append(f"subsampled to {int(keep_N.sum()):,} of {len(table):,} comparisons (whole prompts, seed {seed})")
        table = table.loc[keep_N].reset_index(drop=True)
    if keep_original:
        table, moved = original_splits(table, ratios, seed)
        split_info = {"method": "original", "prompts_moved": moved, "ratios": [float(r) for r in ratios], "seed": int(seed)}
    else:
        table = assign_splits(table, ratios, seed)
        split_info = {"method": "seeded", "ratios": [float(r) for r in ratios], "seed": int(seed)}
    table = _order_columns(table).reset_index(drop=True)
    validate_table(table, where="loaded table")
    report = build_report(
        table,
        duplicates_dropped=int(dup_N.sum()),
        bad_rows=bad.total,
        bad_reasons=dict(bad.counts),
        bad_examples=bad.examples,
        identical_answers_dropped=int(same_N.sum()),
        hh_split_early=hh_early,
        pair_id_collisions=collisions,
        empty_answers=int(((table["chosen"].str.strip() == "") | (table["rejected"].str.strip() == "")).sum()),
        split=split_info,
        subsample=subsample_info,
        files=files,
        notes=notes,
    )
    return LoadResult(table, report)


def load_for_config(cfg: Any) -> LoadResult:
    """Load the table a :class:`balpm.config.DataConfig` describes; the synthetic world when ``paths`` is empty.

    Uses ``paths``, ``ood_paths``, ``format``, ``skip_bad``, ``split_ratios``, ``split_seed``,
    ``keep_original_splits``, ``subsample`` and the column names ``prompt_col`` ... ``source_col``. The synthetic world (``cfg.synthetic`` = ``teaching``
    or ``paper``, size ``cfg.synthetic_size``, seed ``cfg.split_seed``, split by ``split_ratios``) comes with
    its features in ``LoadResult.features``.
    """
    if not cfg.paths and not cfg.ood_paths:
        return _synthetic(cfg)
    if getattr(cfg, "world", ""):
        raise ConfigError("data.world sets the knobs of the synthetic teaching world; it takes no data paths: "
                          "empty data.world or data.paths")
    if not cfg.paths:
        raise ConfigError("ood_paths given without paths; add the in-distribution data files to data.paths")
    if cfg.format == "synthetic":
        raise ConfigError("format 'synthetic' takes no paths; empty data.paths or choose another format")
    return load_table(
        list(cfg.paths), format=cfg.format, skip_bad=cfg.skip_bad, ood_paths=list(cfg.ood_paths),
        ratios=cfg.split_ratios, seed=cfg.split_seed, keep_original=cfg.keep_original_splits,
        columns=config_columns(cfg), subsample=int(getattr(cfg, "subsample", 0) or 0),
    )


def config_columns(cfg: Any) -> dict[str, str] | None:
    """The loader's ``columns`` mapping from a :class:`balpm.config.DataConfig`'s ``<role>_col`` fields
    (``prompt_col``, ``chosen_col``, ...; empty ones left out), None when none is set."""
    given = {role: getattr(cfg, f"{role}_col", "") for role in COLUMN_ROLES}
    return {role: str(name) for role, name in given.items() if name} or None


def _synthetic(cfg: Any) -> LoadResult:
    from balpm.data import synthetic  # lazy: owned by the model engineer

    kind = getattr(cfg, "synthetic", "teaching")
    if kind == "teaching":
        fn = synthetic.teaching_world
    elif kind == "paper":
        fn = synthetic.paper_world
    else:
        raise ConfigError(f"unknown synthetic world {kind!r}; use 'teaching' or 'paper'")
    params = inspect.signature(fn).parameters
    kwargs: dict[str, Any] = {"seed": int(cfg.split_seed)}
    if getattr(cfg, "synthetic_size", 0):
        if "n" not in params:
            raise ConfigError(f"the {kind} world has a fixed size; set data.synthetic_size to 0")
        kwargs["n"] = int(cfg.synthetic_size)
    if getattr(cfg, "synthetic_dim", 0):
        if "d" not in params:
            raise ConfigError(f"the {kind} world has a fixed dimension; set data.synthetic_dim to 0 or use data.synthetic=paper")
        kwargs["d"] = int(cfg.synthetic_dim)
    if getattr(cfg, "world", ""):  # the knobs of a generalised teaching world (balpm.data.worlds)
        if "world" not in params:
            raise ConfigError(f"data.world sets teaching-world knobs; the {kind} world has none: empty data.world "
                              "or set data.synthetic=teaching")
        kwargs["world"] = str(cfg.world)
    if "ratios" in params:
        kwargs["ratios"] = tuple(float(r) for r in check_ratios(cfg.split_ratios))
    table, features = fn(**kwargs)
    validate_table(table, where=f"synthetic {kind} world")
    report = build_report(table, files=[], notes=[f"synthetic {kind} world, seed {cfg.split_seed}"], split={"method": "synthetic"})
    return LoadResult(table, report, features)


__all__ = [
    "COLUMN_ROLES",
    "FORMATS",
    "SPLITS",
    "LoadResult",
    "assign_ids",
    "build_report",
    "config_columns",
    "detect_file_format",
    "drop_duplicates",
    "expand_path",
    "identical_answers",
    "load_for_config",
    "load_table",
    "read_raw",
    "subsample_rows",
]
