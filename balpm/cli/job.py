"""The hidden command ``balpm job``: the dashboard's background job (an ablation toggle, the start form).

It runs a config (one run, or ``--policies`` x ``--seeds`` of it) on the inputs stored in a runs folder's
dataset snapshot (:mod:`balpm.experiment.snapshot`: table and features, memory-mapped), so a job never re-featurizes
and never depends on the folder the dashboard was started in. ``dashboard/jobs.py`` starts it as
``python -m balpm job --config C --runs-dir R --data-hash H --feature-hash F [--policies P --seeds S]``.
Exit 0 when every run completed, 1 when one failed (its folder says failed), 2 on bad input (one line).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from balpm.config import RunConfig


def run_from_snapshot(config: str | Path, root: str | Path, data_hash: str, feature_hash: str, *,
                      policies: list[str] | None = None, seeds: list[int] | None = None, workers: int = 1,
                      progress: bool = False) -> int:
    """Run ``config`` (one run, or ``policies`` x ``seeds`` of it) on the snapshot's inputs under ``root``.

    Returns 0 when every run completed, 1 otherwise (a failed run is marked failed in its folder)."""
    from balpm.experiment import loop, snapshot, sweep  # lazy: torch (balpm --help must not import it)

    cfg = RunConfig.from_yaml(Path(config))
    table, feats = snapshot.load_inputs(root, data_hash, feature_hash)
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


def job_command(
    config: Path = typer.Option(..., "--config", help="the run's config.yaml"),
    runs_dir: Path = typer.Option(..., "--runs-dir", help="runs root folder holding the snapshot"),
    data_hash: str = typer.Option(..., "--data-hash", help="the snapshot's data hash (root/_datasets/<hash>)"),
    feature_hash: str = typer.Option(..., "--feature-hash", help="the snapshot's feature set"),
    policies: Optional[str] = typer.Option(None, "--policies", help="comma-separated policies (a sweep of config)"),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="seeds of the sweep: 0-9 or 0,1,2"),
    workers: int = typer.Option(1, "--workers", min=1, help="parallel processes of the sweep"),
) -> None:
    """Run a config from a runs folder's dataset snapshot (the dashboard's background job)."""
    from balpm.experiment import sweep  # lazy: torch (balpm --help must not import it)

    parsed_policies = sweep.parse_policies(policies) if policies else None
    parsed_seeds = sweep.parse_seeds(seeds) if seeds else None
    code = run_from_snapshot(config, runs_dir, data_hash, feature_hash, policies=parsed_policies, seeds=parsed_seeds,
                             workers=workers)
    if code:
        raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add the hidden ``balpm job`` to the app."""
    app.command("job", hidden=True)(job_command)
