"""A run's inputs kept inside the runs folder, so a run can be repeated or varied from there alone.

:func:`balpm.runs.write_dataset` snapshots the preference table and the prompt features under
``root/_datasets/<data_hash>/``. This module adds the pair features the model trains on, once per
feature set::

    root/_datasets/<data_hash>/features-<feature_hash>/pairs.npy       float32 (M, 2, D), rows of pair_ids.json
    root/_datasets/<data_hash>/features-<feature_hash>/pair_ids.json   the M pair ids that have features
    root/_datasets/<data_hash>/features-<feature_hash>/features.json   {"hash", "pairs", "dim"} (written last)

(M is the table's length, or less when the run featurized only the rows it reads.)

and :func:`load_inputs` rebuilds ``(table, Features)`` from them (memory-mapped, no model, no data
files, no feature cache). The dashboard's background jobs (ablation toggles, the start form) run
through :func:`main` (``python -m balpm.snapshot``) so that they never re-featurize and never depend on
the folder the dashboard was started in. Nothing here is pickled.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from balpm.errors import BalpmError, ConfigError

_CHUNK = 4096


def features_folder(root: str | Path, data_hash: str, feature_hash: str) -> Path:
    """``root/_datasets/<data_hash>/features-<feature_hash>``, refusing names that would leave the root."""
    from balpm.projection import snapshot_folder
    from balpm.runs import safe_path

    fh = str(feature_hash)
    if not fh or not all(c.isalnum() for c in fh):
        raise BalpmError(f"feature hash {fh!r} is not a plain name")
    folder = snapshot_folder(root, data_hash)
    return safe_path(root, folder / f"features-{fh}")


def has_features(root: str | Path, data_hash: str | None, feature_hash: str | None) -> bool:
    """True when the snapshot holds the pair features of ``feature_hash`` (complete: features.json exists)."""
    if not data_hash or not feature_hash:
        return False
    try:
        return (features_folder(root, data_hash, feature_hash) / "features.json").is_file()
    except BalpmError:
        return False


def write_features(root: str | Path, data_hash: str, table: pd.DataFrame, features: Any,
                   pair_rows_T: np.ndarray | None = None) -> Path | None:
    """Store the pair features of ``table``'s rows (``features.pairs_N_2_D[pair_rows_T]``; rows marked -1,
    not featurized, are left out) beside the snapshot, once; written in chunks to a temp file and renamed
    (no full copy in memory). Returns the folder, or None when ``features`` has no hash."""
    fh = str(getattr(features, "hash", "") or "")
    if not fh:
        return None
    folder = features_folder(root, data_hash, fh)
    if (folder / "features.json").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    pairs = features.pairs_N_2_D
    rows = np.arange(len(table)) if pair_rows_T is None else np.asarray(pair_rows_T, dtype=np.int64)
    if len(rows) != len(table):
        raise ValueError("pair_rows_T must give one feature row per table row")
    have = rows >= 0
    ids = table["pair_id"].astype(str).to_numpy()[have].tolist()
    rows = rows[have]
    from balpm.runs import atomic_path

    with atomic_path(folder / "pairs.npy") as tmp:  # written in chunks to the temp file, then renamed
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(rows),) + tuple(pairs.shape[1:]))
        for s in range(0, len(rows), _CHUNK):
            out[s:s + _CHUNK] = pairs[rows[s:s + _CHUNK]]
        out.flush()
        del out
    from balpm.runs import atomic_write_json

    atomic_write_json(folder / "pair_ids.json", ids)
    atomic_write_json(folder / "features.json", {"hash": fh, "pairs": len(rows), "dim": int(pairs.shape[-1])})
    return folder


def load_inputs(root: str | Path, data_hash: str, feature_hash: str) -> tuple[pd.DataFrame, Any]:
    """``(table, Features)`` of a run from its snapshot alone (pair features memory-mapped, read-only)."""
    from balpm import npy_files
    from balpm.features.featurize import Features
    from balpm.projection import snapshot_folder
    from balpm.runs import safe_path

    folder = snapshot_folder(root, data_hash)
    ffolder = features_folder(root, data_hash, feature_hash)
    if not (ffolder / "features.json").is_file():
        raise BalpmError(f"dataset snapshot {data_hash} holds no pair features {feature_hash} (made by an older "
                         "balpm); run it again with balpm run to store them")
    try:
        paths = {n: safe_path(folder, n) for n in ("table.parquet", "prompt_ids.json", "prompt_features.npy")}
        table = pd.read_parquet(paths["table.parquet"])
        prompt_ids = np.asarray([str(p) for p in json.loads(paths["prompt_ids.json"].read_text())], dtype=object)
        # each header's shape against its ids (and the file's size) before a byte is loaded or mapped
        prompts = npy_files.load(paths["prompt_features.npy"], f"prompt_features.npy of snapshot {data_hash}",
                                 rows=len(prompt_ids))
        info = json.loads(safe_path(ffolder, "features.json").read_text())
        pair_ids = json.loads(safe_path(ffolder, "pair_ids.json").read_text())
        if not isinstance(pair_ids, list):
            raise ValueError("pair_ids.json is not a list")
        pairs = npy_files.load(safe_path(ffolder, "pairs.npy"), f"pairs.npy of snapshot {data_hash}",
                               rows=len(pair_ids), ndim=(2, 3), mmap=True)
    except BalpmError:  # already one line (a refused .npy header)
        raise
    except (OSError, ValueError) as exc:
        raise BalpmError(f"dataset snapshot {data_hash} unreadable ({' '.join(str(exc).split())[:160]})") from None
    if pairs.shape[0] != len(pair_ids) or info.get("hash") != str(feature_hash):
        raise BalpmError(f"dataset snapshot {data_hash}: pair features {feature_hash} do not match their pair ids")
    feats = Features(prompt_ids=prompt_ids, prompts_P_D=prompts,
                     pair_ids=np.asarray([str(p) for p in pair_ids], dtype=object), pairs_N_2_D=pairs,
                     manifest={"source": "snapshot", "data_hash": str(data_hash)}, hash=str(feature_hash))
    return table, feats


def run_from_snapshot(config: str | Path, root: str | Path, data_hash: str, feature_hash: str, *,
                      policies: list[str] | None = None, seeds: list[int] | None = None, workers: int = 1,
                      progress: bool = False) -> int:
    """Run ``config`` (one run, or ``policies`` x ``seeds`` of it) on the snapshot's inputs under ``root``.

    Returns 0 when every run completed, 1 otherwise (a failed run is marked failed in its folder)."""
    from balpm import loop, sweep
    from balpm.config import RunConfig

    cfg = RunConfig.from_yaml(Path(config))
    table, feats = load_inputs(root, data_hash, feature_hash)
    if policies:
        configs = sweep.expand(cfg, policies, seeds or [cfg.loop.seed])
        results = sweep.sweep(configs, root, workers=workers, progress=progress, table=table, features=feats)
        failed = [r for r in results if r.state != "complete"]
        for r in failed:
            print(f"run {r.run_id} failed: {r.error}", file=sys.stderr, flush=True)
        print(f"sweep: {len(results) - len(failed)}/{len(results)} runs complete in {root}", flush=True)
        return 1 if failed or not results else 0
    loop.run(cfg, root, resume=True, table=table, features=feats, progress=progress)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m balpm.snapshot --config C --runs-dir R --data-hash H --feature-hash F [--policies ...]``:
    the dashboard's background job. Exit 0 when every run completed, 1 when one failed, 2 on bad input."""
    ap = argparse.ArgumentParser(prog="python -m balpm.snapshot", description=main.__doc__)
    ap.add_argument("--config", required=True)
    ap.add_argument("--runs-dir", required=True)
    ap.add_argument("--data-hash", required=True)
    ap.add_argument("--feature-hash", required=True)
    ap.add_argument("--policies", default="")
    ap.add_argument("--seeds", default="")
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args(argv)
    try:
        from balpm import sweep

        policies = sweep.parse_policies(args.policies) if args.policies else None
        seeds = sweep.parse_seeds(args.seeds) if args.seeds else None
        return run_from_snapshot(args.config, args.runs_dir, args.data_hash, args.feature_hash,
                                 policies=policies, seeds=seeds, workers=max(1, args.workers))
    except (BalpmError, ConfigError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr, flush=True)
        return 2
    except Exception as exc:  # noqa: BLE001 - the run folder already says failed; the job exits non-zero
        print(f"error: {type(exc).__name__}: {' '.join(str(exc).split())[:500]}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
