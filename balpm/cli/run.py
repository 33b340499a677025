"""CLI commands ``balpm run`` (one simulated run, or ``--resume`` a killed one) and ``balpm sweep``.

Flags override the YAML given with ``--config``; the run directory is ``<runs-dir>/<run_id>``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import typer
import yaml

from balpm.config import RunConfig
from balpm.errors import ConfigError

# ---- shared options (one definition for run and sweep) -------------------------------------------
CONFIG = typer.Option(None, "--config", "-c", help="YAML config (sections data, features, model, acquisition, loop)")
DATA = typer.Option(None, "--data", help="data file or folder (repeatable); none: the synthetic teaching world")
OOD = typer.Option(None, "--ood", help="out-of-distribution test file (repeatable), e.g. CNN/DM comparisons")
FORMAT = typer.Option(None, "--format", help="loader: auto, openai, hub, carper, hh, table, synthetic")
SKIP_BAD = typer.Option(None, "--skip-bad/--no-skip-bad", help="skip malformed rows (counted) instead of stopping")
ROUNDS = typer.Option(None, "--rounds", help="train/evaluate rounds")
BATCH = typer.Option(None, "--batch-size", help="B, items acquired per round")
INITIAL = typer.Option(None, "--initial", help="randomly labelled items before round 0")
POOL = typer.Option(None, "--pool-size", help="pool items from the shuffled train split (0: all)")
BETA = typer.Option(None, "--beta", help="weight of the entropy term")
K = typer.Option(None, "--k", help="k of the kNN radius (the point itself is neighbour 1)")
D = typer.Option(None, "--d", help="weight d of the digamma term")
NORMALIZE = typer.Option(None, "--normalize", help="none, zscore or faithful (the reference's slip)")
ESTIMATOR = typer.Option(None, "--estimator", help="pool_radius or kl")
UNCERTAINTY = typer.Option(None, "--uncertainty", help="epistemic, predictive, aleatoric, variance or none")
MINIMIZE = typer.Option(None, "--minimize-entropy/--maximize-entropy", help="ablation: U - beta*H")
COLDNESS = typer.Option(None, "--coldness", help="beta_g of the stochastic BALD family")
MODEL = typer.Option(None, "--model", help="feature model: 'minilm', a Hugging Face id or a local path")
ENSEMBLE = typer.Option(None, "--ensemble-size", help="K, ensemble members")
EPOCHS = typer.Option(None, "--epochs", help="at most this many training epochs per round")
HIDDEN = typer.Option(None, "--hidden", help="hidden widths of each reward MLP, e.g. 2048,256")
LR = typer.Option(None, "--lr", help="AdamW learning rate")
DEVICE = typer.Option(None, "--device", help="model device: auto, cuda or cpu")
NO_SCORES = typer.Option(None, "--pool-scores/--no-pool-scores", help="write every pool item's scores per round")
RUNS_DIR = typer.Option(Path("runs"), "--runs-dir", help="runs root folder")
QUIET = typer.Option(False, "--quiet", "-q", help="no progress bars")


def build_config(config: Optional[Path] = None, *, data: Optional[list[str]] = None,
                 ood: Optional[list[str]] = None, **flags: Any) -> RunConfig:
    """A RunConfig from an optional YAML plus CLI flags (a flag given overrides the YAML).

    A run's own ``config.yaml`` (with its ``meta`` section) is accepted as ``--config``.
    """
    if config is not None:
        if not Path(config).is_file():
            raise ConfigError(f"config file {str(config)!r} not found")
        try:
            raw = yaml.safe_load(Path(config).read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"config {str(config)!r} is not valid YAML: {str(exc).splitlines()[0]}") from None
        if raw is not None and not isinstance(raw, dict):
            raise ConfigError("config YAML must be a mapping of sections (data, features, model, acquisition, loop)")
        raw = dict(raw or {})
        raw.pop("meta", None)
        cfg = RunConfig.from_dict(raw)
    else:
        cfg = RunConfig()
    where = {
        "format": ("data", "format"), "skip_bad": ("data", "skip_bad"), "rounds": ("loop", "rounds"), "batch_size": ("loop", "batch_size"),
        "initial": ("loop", "initial"), "pool_size": ("loop", "pool_size"), "seed": ("loop", "seed"),
        "save_pool_scores": ("loop", "save_pool_scores"),
        "policy": ("acquisition", "policy"), "beta": ("acquisition", "beta"), "k": ("acquisition", "k"),
        "d": ("acquisition", "d"), "normalize": ("acquisition", "normalize"), "estimator": ("acquisition", "estimator"),
        "uncertainty": ("acquisition", "uncertainty"), "minimize_entropy": ("acquisition", "minimize_entropy"),
        "coldness": ("acquisition", "coldness"), "model": ("features", "model"),
        "ensemble_size": ("model", "ensemble_size"), "epochs": ("model", "max_epochs"), "lr": ("model", "lr"),
        "device": ("model", "device"), "hidden": ("model", "hidden"),
    }
    changes: dict[str, dict[str, Any]] = {}
    for key, value in flags.items():
        if value is None:
            continue
        if key not in where:
            raise ConfigError(f"internal: unknown flag {key}")
        if key == "hidden":
            try:
                value = tuple(int(v) for v in str(value).split(",") if v.strip())
            except ValueError:
                raise ConfigError(f"--hidden must be comma-separated integers, e.g. 2048,256 (got {value!r})") from None
        section, field = where[key]
        changes.setdefault(section, {})[field] = value
    if data:
        changes.setdefault("data", {})["paths"] = tuple(str(p) for p in data)
    if ood:
        changes.setdefault("data", {})["ood_paths"] = tuple(str(p) for p in ood)
    return cfg.replace(**changes).validate() if changes else cfg.validate()


def run_command(
    config: Optional[Path] = CONFIG, data: Optional[list[str]] = DATA, ood: Optional[list[str]] = OOD,
    format: Optional[str] = FORMAT, skip_bad: Optional[bool] = SKIP_BAD,
    policy: Optional[str] = typer.Option(None, "--policy", help="random, bald, softmax_bald, power_bald, softrank_bald, balpm"),
    seed: Optional[int] = typer.Option(None, "--seed", help="seed of everything random in the run"),
    rounds: Optional[int] = ROUNDS, batch_size: Optional[int] = BATCH, initial: Optional[int] = INITIAL,
    pool_size: Optional[int] = POOL, beta: Optional[float] = BETA, k: Optional[int] = K, d: Optional[float] = D,
    normalize: Optional[str] = NORMALIZE, estimator: Optional[str] = ESTIMATOR, uncertainty: Optional[str] = UNCERTAINTY,
    minimize_entropy: Optional[bool] = MINIMIZE, coldness: Optional[float] = COLDNESS, model: Optional[str] = MODEL,
    ensemble_size: Optional[int] = ENSEMBLE, epochs: Optional[int] = EPOCHS, hidden: Optional[str] = HIDDEN,
    lr: Optional[float] = LR, device: Optional[str] = DEVICE, save_pool_scores: Optional[bool] = NO_SCORES,
    runs_dir: Path = RUNS_DIR,
    resume: bool = typer.Option(False, "--resume", help="continue a killed run from its last complete round"),
    run_id: Optional[str] = typer.Option(None, "--run-id", help="run folder name (default <policy>-s<seed>-<hash>)"),
    quiet: bool = QUIET,
) -> None:
    """Run one simulated active-learning run (or --resume a killed one); prints its folder and final metrics."""
    from balpm import loop, runs

    cfg = build_config(config, data=data, ood=ood, format=format, skip_bad=skip_bad, policy=policy, seed=seed, rounds=rounds,
                       batch_size=batch_size, initial=initial, pool_size=pool_size, beta=beta, k=k, d=d,
                       normalize=normalize, estimator=estimator, uncertainty=uncertainty,
                       minimize_entropy=minimize_entropy, coldness=coldness, model=model,
                       ensemble_size=ensemble_size, epochs=epochs, hidden=hidden, lr=lr, device=device,
                       save_pool_scores=save_pool_scores)
    path = loop.run(cfg, runs_dir, resume=resume, progress=not quiet, run_id=run_id)
    run = runs.open_run(runs_dir, path.name)
    rounds_df = run.rounds()
    last = rounds_df.iloc[-1] if len(rounds_df) else None
    msg = f"run {run.run_id}: {run.status['state']}, {len(rounds_df)} rounds -> {path}"
    if last is not None:
        msg += (f"\n  final ({int(last['labelled'])} labels): test log-likelihood {last['test_log_likelihood']:.4f}, "
                f"accuracy {last['test_accuracy']:.3f}")
        if last["ood_log_likelihood"] == last["ood_log_likelihood"]:
            msg += f"; OOD log-likelihood {last['ood_log_likelihood']:.4f}, accuracy {last['ood_accuracy']:.3f}"
    typer.echo(msg)


def sweep_command(
    policies: str = typer.Option("random,bald,balpm", "--policies", help="comma-separated policies"),
    seeds: str = typer.Option("0-2", "--seeds", help="seeds: 0-9 or 0,1,2"),
    grid: Optional[list[str]] = typer.Option(None, "--grid", help="name=v1,v2 (repeatable), e.g. beta=0.01,0.1"),
    workers: int = typer.Option(max(1, os.cpu_count() or 1), "--workers", "-j", help="parallel processes"),
    backend: str = typer.Option("local", "--backend", help="local (processes) or ray"),
    address: Optional[str] = typer.Option(None, "--address", help="--backend ray: the cluster's address (ray start "
                                          "--head prints it); none: a local Ray started and stopped for this sweep"),
    cpus_per_run: float = typer.Option(1.0, "--cpus-per-run", help="--backend ray: CPUs (torch threads) per run"),
    gpus_per_run: float = typer.Option(0.0, "--gpus-per-run", help="--backend ray: GPUs per run (0.5: two runs share one)"),
    config: Optional[Path] = CONFIG, data: Optional[list[str]] = DATA, ood: Optional[list[str]] = OOD,
    format: Optional[str] = FORMAT, skip_bad: Optional[bool] = SKIP_BAD,
    rounds: Optional[int] = ROUNDS, batch_size: Optional[int] = BATCH, initial: Optional[int] = INITIAL,
    pool_size: Optional[int] = POOL, beta: Optional[float] = BETA, k: Optional[int] = K, d: Optional[float] = D,
    normalize: Optional[str] = NORMALIZE, estimator: Optional[str] = ESTIMATOR, uncertainty: Optional[str] = UNCERTAINTY,
    minimize_entropy: Optional[bool] = MINIMIZE, coldness: Optional[float] = COLDNESS, model: Optional[str] = MODEL,
    ensemble_size: Optional[int] = ENSEMBLE, epochs: Optional[int] = EPOCHS, hidden: Optional[str] = HIDDEN,
    lr: Optional[float] = LR, device: Optional[str] = DEVICE, save_pool_scores: Optional[bool] = NO_SCORES,
    runs_dir: Path = RUNS_DIR, quiet: bool = QUIET,
) -> None:
    """Run policies x seeds x grid in parallel, one folder per run (complete runs are reused, partial ones resumed)."""
    from balpm import sweep

    base = build_config(config, data=data, ood=ood, format=format, skip_bad=skip_bad, rounds=rounds, batch_size=batch_size,
                        initial=initial, pool_size=pool_size, beta=beta, k=k, d=d, normalize=normalize,
                        estimator=estimator, uncertainty=uncertainty, minimize_entropy=minimize_entropy,
                        coldness=coldness, model=model, ensemble_size=ensemble_size, epochs=epochs, hidden=hidden,
                        lr=lr, device=device, save_pool_scores=save_pool_scores)
    configs = sweep.expand(base, sweep.parse_policies(policies), sweep.parse_seeds(seeds), sweep.parse_grid(grid or []))
    results = sweep.sweep(configs, runs_dir, workers=workers, backend=backend, progress=not quiet, address=address,
                          cpus_per_run=cpus_per_run, gpus_per_run=gpus_per_run)
    failed = [r for r in results if r.state != "complete"]
    typer.echo(f"sweep: {len(results) - len(failed)}/{len(results)} runs complete in {runs_dir}")
    for r in failed:
        typer.echo(f"  failed {r.run_id}: {r.error}", err=True)
    if failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``run`` and ``sweep`` to the app."""
    app.command("run")(run_command)
    app.command("sweep")(sweep_command)
