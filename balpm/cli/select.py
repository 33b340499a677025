"""CLI command ``balpm select``: the next batch of an unlabelled pool for real annotators (engine: balpm.next_batch).

The config is the usual :class:`balpm.config.RunConfig` (defaults, then ``-c/--config`` YAML, then the flags,
then ``--set section.field=value``), without the teaching preset: the model and feature defaults of
``balpm run --data``. Every check happens before anything is featurized or written.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from balpm.acquisition.registry import names as registry_names
from balpm.cli.run import build_config
from balpm.config import RunConfig, read_yaml


def select_command(
    pool: list[Path] = typer.Argument(..., metavar="UNLABELLED...", help="files of unlabelled pairs: columns prompt, "
                                      "answer_a, answer_b (CSV/TSV/JSONL/JSON/parquet), or any preference file "
                                      "(its chosen/rejected read as A/B, the order ignored)"),
    out: Path = typer.Option(..., "--out", "-o", help="the batch file: .jsonl, .csv or .parquet (by its suffix)"),
    labelled: Optional[list[Path]] = typer.Option(None, "--labelled", "-l", help="labelled pairs (prompt, chosen, "
                                                  "rejected; any format balpm run --data reads); repeatable"),
    batch_size: int = typer.Option(..., "--batch-size", "-b", min=1, help="pairs to choose"),
    policy: str = typer.Option("balpm", "--policy", metavar="[" + "|".join(registry_names()) + "]",
                               help="the acquisition policy; with no --labelled only random, coreset or dopt"),
    seed: int = typer.Option(0, "--seed", min=0, help="seed of the model and of the selection"),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", metavar="DIR", help="runs root folder"),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="a RunConfig YAML (e.g. a run's config.yaml)"),
    sets: Optional[list[str]] = typer.Option(None, "--set", metavar="SECTION.FIELD=VALUE",
                                             help="any config field, e.g. --set model.ensemble_size=8 (repeatable)"),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="skip malformed rows (counted) instead of stopping"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show featurizing progress"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object instead of text"),
) -> None:
    """Choose the next batch of unlabelled pairs to label: train the ensemble on the labelled pairs, score the
    pool with the policy, write the batch file and a run folder the dashboard opens (same command: same batch)."""
    # lazy: the engine and the run folders import numpy and pandas, kept out of CLI start-up (balpm --help)
    from balpm import next_batch as engine
    from balpm.experiment import runs

    out = engine.check_batch_path(out)
    runs.check_root(runs_dir)
    base = RunConfig.from_dict(read_yaml(config)) if config is not None else RunConfig()
    cfg = build_config(base=base, sets=sets, policy=policy, seed=seed, batch_size=batch_size)
    pool_table = engine.load_unlabelled(pool, skip_bad=skip_bad)
    labelled_table = engine.load_labelled(labelled, skip_bad=skip_bad) if labelled else None
    result = engine.select(cfg, pool_table, labelled_table, batch_size, runs_dir, progress=progress)
    wrote = engine.write_batch(result.batch, out)
    summary = {"run_id": result.run_id, "run_dir": str(result.run_dir), "out": str(out), "picks": len(result.batch),
               "reused_run": result.reused, "out_written": wrote, "already_labelled": result.already_labelled,
               "labelled": 0 if labelled_table is None else len(labelled_table), "pool": len(pool_table)}
    if as_json:
        typer.echo(json.dumps(summary))
        return
    note = f" ({result.already_labelled} already labelled, left out)" if result.already_labelled else ""
    typer.echo(f"{policy}: {len(result.batch)} of {len(pool_table)} unlabelled pairs{note}, "
               f"trained on {summary['labelled']} labelled")
    typer.echo(f"batch: {out}" + ("" if wrote else " (unchanged)"))
    typer.echo(f"run:   {result.run_dir}" + (" (reused: same inputs, nothing recomputed)" if result.reused else ""))


def register(app: typer.Typer) -> None:
    """Add ``balpm select`` to the app."""
    app.command("select")(select_command)
