"""CLI command ``balpm demo``: real TL;DR data when found (else the hub, else the teaching world),
random vs BALD vs BAL-PM for a few seeds, the report, then the dashboard on the runs.

Where the data comes from, in order: ``--data``; ``$BALPM_SHARED_DATA/summarize_from_feedback/comparisons``;
``../shared/data/summarize_from_feedback/comparisons`` (from the current folder, then from the checkout);
the Hugging Face hub (``openai/summarize_from_feedback``, subsampled) when online; else the synthetic
teaching world. The demo always says which one it uses.
"""
from __future__ import annotations

import dataclasses
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import typer

from balpm.config import DataConfig, RunConfig
from balpm.errors import ConfigError

COMPARISONS = Path("summarize_from_feedback") / "comparisons"
HUB_ID = "openai/summarize_from_feedback"
POLICIES = ("random", "bald", "balpm")
# sized to finish in a few minutes on 2 CPU cores (the real TL;DR files here give a ~1,200-comparison pool)
SCALES: dict[str, dict[str, dict[str, Any]]] = {
    "small": {
        "loop": {"initial": 64, "batch_size": 64, "rounds": 8},
        "model": {"ensemble_size": 5, "hidden": (256, 64), "lr": 1e-3, "max_epochs": 10, "patience": 2,
                  "batch_size": 32, "standardize": True},
    },
    "medium": {
        "loop": {"initial": 128, "batch_size": 128, "rounds": 8},
        "model": {"ensemble_size": 5, "hidden": (512, 128), "lr": 1e-3, "max_epochs": 10, "patience": 2,
                  "batch_size": 32, "standardize": True},
    },
}
HUB_SAMPLE = {"small": 3000, "medium": 6000}
#: MiniLM texts/s at 256 tokens on a quiet 2-core CPU (benchmarks/featurize_throughput.py), for the upfront estimate
CPU_TEXTS_PER_SECOND = 20


@dataclass(frozen=True)
class DataSource:
    """Where the demo's data comes from: ``kind`` (flag, env, shared, hub, synthetic), paths and a note."""

    kind: str
    paths: tuple[str, ...]
    note: str
    format: str = "auto"


def _hub_online(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes") or \
            os.environ.get("HF_DATASETS_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def find_data(data: Optional[list[str]] = None, *, cwd: Path | None = None, online: bool | None = None) -> DataSource:
    """Pick the demo's data source (see the module docstring); never downloads anything itself."""
    if data:
        missing = [p for p in data if not Path(p).exists() and not str(p).startswith(("hf://", HUB_ID))]
        if missing:
            raise ConfigError(f"--data {missing[0]!r} does not exist; give a comparisons file or folder")
        return DataSource("flag", tuple(str(p) for p in data), f"data from --data: {', '.join(map(str, data))}")
    env = os.environ.get("BALPM_SHARED_DATA")
    if env and (Path(env) / COMPARISONS).is_dir():
        p = Path(env) / COMPARISONS
        return DataSource("env", (str(p),), f"real TL;DR + CNN/DM comparisons from $BALPM_SHARED_DATA: {p}")
    cwd = cwd or Path.cwd()
    for base in (cwd, Path(__file__).resolve().parents[2]):
        p = (base / ".." / "shared" / "data" / COMPARISONS).resolve()
        if p.is_dir():
            return DataSource("shared", (str(p),), f"real TL;DR + CNN/DM comparisons found at {p}")
    if online if online is not None else _hub_online():
        return DataSource("hub", (HUB_ID,), f"no local files; the Hugging Face hub {HUB_ID} (subsampled)", "hub")
    return DataSource("synthetic", (), "no TL;DR files found and the hub is unreachable: using the SYNTHETIC "
                                        "teaching world (2-D prompts in clusters; not real data)")


def _load(source: DataSource, scale: str, seed: int = 0, progress: bool = True,
          dtype: str = "fp32") -> tuple[Any, Any, RunConfig, str]:
    """Table, features, the base config and a note on what was done to the data."""
    from balpm.data import load_for_config
    from balpm.features import featurize

    if source.kind == "synthetic":  # the teaching preset (balpm/presets.py); each seed draws its own world
        from balpm.loop import data_config
        from balpm.presets import apply_preset

        cfg = apply_preset(RunConfig())
        res = load_for_config(data_config(cfg))
        return res.table, res.features, cfg, "teaching world (seed 0's draw shown; each seed draws its own)"
    # the hub's 176k comparisons: a seeded prompt-grouped subsample, taken before featurization
    subsample = HUB_SAMPLE[scale] if source.kind == "hub" else 0
    data_cfg = DataConfig(paths=source.paths, format=source.format, split_seed=seed, subsample=subsample)
    try:
        table = load_for_config(data_cfg).table
    except Exception as exc:
        if source.kind != "hub":
            raise
        typer.echo(f"hub load failed ({' '.join(str(exc).split())[:120]}); using the synthetic teaching world")
        return _load(DataSource("synthetic", (), "synthetic fallback"), scale)
    notes = []
    if subsample:
        notes.append(f"subsampled to {len(table)} comparisons (whole prompts) to finish in minutes")
    feature_cfg = dataclasses.replace(RunConfig().features, dtype=dtype)
    _featurize_note(table, dtype)
    t0 = time.perf_counter()
    features = featurize(table, feature_cfg, progress=progress)
    typer.echo(f"featurized in {time.perf_counter() - t0:.1f} s"
               + ("" if any(features.cache_hits.values()) else " (now cached: the next demo skips this)"))
    cfg = RunConfig().replace(data={"paths": source.paths, "format": source.format, "split_seed": seed,
                                    "subsample": subsample}, features={"dtype": dtype})
    return table, features, cfg, "; ".join(notes) or "all rows used"


def _featurize_note(table: Any, dtype: str = "fp32") -> None:
    """Say upfront what featurizing will do and how long it takes on a CPU (before any model is loaded)."""
    from balpm.features import table_texts

    _, prompts, _, pairs, _ = table_texts(table)
    distinct = len(set(prompts)) + len(set(pairs))
    import torch

    head = (f"featurizing {len(table):,} comparisons with the default MiniLM encoder: {distinct:,} distinct texts "
            f"(of {len(prompts) + len(pairs):,}), cached after the first time")
    if torch.cuda.is_available():
        typer.echo(f"{head}, on a GPU: seconds")
        return
    minutes = distinct / CPU_TEXTS_PER_SECOND / 60 * 2 / max(1, min(2, os.cpu_count() or 1))
    from balpm.features.encoder import cpu_has_native_bf16

    if dtype == "bf16":
        minutes /= 2
    typer.echo(f"{head}. A quiet 2-core CPU embeds about {CPU_TEXTS_PER_SECOND} texts/s in fp32: about "
               f"{max(minutes, 0.5):.0f} min in {dtype} on {os.cpu_count()} core(s) (longer when other programs use "
               "them); the estimate from the first batch follows, and the bar shows the time left")
    if dtype == "fp32" and cpu_has_native_bf16():
        typer.echo("  (this CPU has native bf16: --dtype bf16 is about twice as fast, with features within "
                   "cosine 0.9999 of fp32's; the default stays fp32, the features every other command computes)")


def _fit_rounds(cfg: RunConfig, table: Any) -> RunConfig:
    """Lower the number of rounds when the pool is too small for the scale."""
    n_train = int((table["split"] == "train").sum())
    lp = cfg.loop
    fit = (n_train - lp.initial) // lp.batch_size + 1
    if fit < 2:
        raise ConfigError(f"only {n_train} train comparisons: too few for the demo's initial {lp.initial} + batch {lp.batch_size}")
    return cfg.replace(loop={"rounds": min(lp.rounds, fit)}) if fit < lp.rounds else cfg


def run_demo(data: Optional[list[str]] = None, runs_dir: Path = Path("runs/demo"), seeds: int = 3,
             scale: str = "small", workers: int = 1, progress: bool = True, dtype: str = "fp32") -> dict[str, Any]:
    """Everything but the dashboard: find data, featurize, sweep, report. Returns the report summary."""
    from balpm import report, sweep

    if scale not in SCALES:
        raise ConfigError(f"unknown --scale {scale!r}; choose {', '.join(SCALES)}")
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1 (got {seeds})")
    t0 = time.perf_counter()
    source = find_data(data)
    typer.echo(f"balpm demo: {source.note}")
    if dtype not in ("fp32", "bf16"):
        raise ConfigError(f"unknown --dtype {dtype!r}; choose fp32 or bf16")
    table, features, base, note = _load(source, scale, progress=progress, dtype=dtype)
    synthetic = source.kind == "synthetic"  # the teaching preset already sized it; SCALES are for real data
    base = _fit_rounds(base.replace(name=f"demo ({source.kind}, {scale})", **({} if synthetic else SCALES[scale])), table)
    n_splits = table["split"].value_counts().to_dict()
    typer.echo(f"data: {len(table)} comparisons {n_splits}; {note}; features D={features.pairs_N_2_D.shape[-1]}")
    lp = base.loop
    typer.echo(f"runs: {', '.join(POLICIES)} x {seeds} seed(s), initial {lp.initial}, batch {lp.batch_size}, "
               f"{lp.rounds} rounds, K={base.model.ensemble_size} -> {runs_dir}")
    configs = sweep.expand(base, POLICIES, list(range(seeds)))
    results = sweep.sweep(configs, runs_dir, workers=workers, progress=progress,
                          table=None if synthetic else table, features=None if synthetic else features)
    failed = [r for r in results if r.state != "complete"]
    for r in failed:
        typer.echo(f"run {r.run_id} failed: {r.error}", err=True)
    want = {r.run_id for r in results if r.state == "complete"}
    summary = report.report([Path(runs_dir) / rid for rid in sorted(want)], n_boot=1000)
    html = report.write_html(summary, Path(runs_dir) / "learning_curves.html")
    typer.echo(report.format_text(summary))
    typer.echo(f"learning curves: {html}")
    summary["seconds"] = time.perf_counter() - t0
    summary["data_source"] = source.kind
    typer.echo(f"demo finished in {summary['seconds']:.0f} s (data: {source.kind})")
    return summary


def demo_command(
    data: Optional[list[str]] = typer.Option(None, "--data", help="comparisons file or folder (repeatable)"),
    runs_dir: Path = typer.Option(Path("runs/demo"), "--runs-dir", help="where the demo's runs go"),
    seeds: int = typer.Option(3, "--seeds", help="seeds per policy"),
    no_dashboard: bool = typer.Option(False, "--no-dashboard", help="stop after the report"),
    scale: str = typer.Option("small", "--scale", help="small (a few minutes on 2 cores) or medium"),
    workers: int = typer.Option(max(1, min(4, os.cpu_count() or 1)), "--workers", "-j",
                                help="parallel run processes (one torch thread each when > 1)"),
    port: int = typer.Option(8501, "--port", help="dashboard port"),
    dtype: str = typer.Option("fp32", "--dtype", help="features in fp32, or bf16 autocast (about twice as fast on CPUs "
                              "with native bf16, AVX512-BF16 or AMX; slower elsewhere)"),
) -> None:
    """Random vs BALD vs BAL-PM on real TL;DR data (or the teaching world), the report, then the dashboard."""
    # idle OpenMP threads sleep rather than spin: on a shared machine spinning threads starve everyone
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if not no_dashboard:  # a busy --port is found now, not after minutes of featurizing and runs
        from balpm.cli.dashboard import check_port

        check_port(port)
    run_demo(data, runs_dir, seeds, scale, workers, dtype=dtype)
    if no_dashboard:
        return
    try:
        from balpm.cli import dashboard
    except ImportError:
        dashboard = None
    serve = getattr(dashboard, "serve", None)
    if serve is None:
        typer.echo("the dashboard is not available in this install; open the runs with: balpm report " + str(runs_dir))
        return
    serve(runs_dir, port=port, open_browser=False)


def register(app: typer.Typer) -> None:
    """Add ``demo`` to the app."""
    app.command("demo")(demo_command)
