"""CLI command ``balpm demo``: the paper's story in one screen, then the dashboard.

Two worlds, in this order (``--world teaching|real|both``, default both):

1. **The teaching world** (synthetic, balpm/experiment/presets.py: 50 + 50 x 9 labels of a 2,800-comparison pool),
   random vs BALD vs BAL-PM over :data:`TEACHING_SEEDS` seeds.
2. **The real sample** when one is found: the same three policies plus the ceiling (``full``: the same
   model trained on the whole pool) over :data:`REAL_SEEDS` seeds, enough for the A/A check.

For each world the demo prints, before pointing at any table, a short verdict in words
(:mod:`balpm.evidence.story`): who beat whom on test log-likelihood AULC with the interval and the seeds, the
smallest detectable effect behind a null, "fewer labels" only behind "better", where the labels went,
what the world needs for that result, and for the real sample the ceiling, headroom and A/A noise. The
numbers are those of ``balpm report <runs> --json`` on the same runs folder (the same function, same
defaults); the full tables stay in ``balpm report``, whose exact command is printed.

Where the real data comes from, in order: ``--data``; ``$BALPM_SHARED_DATA/summarize_from_feedback/comparisons``;
``../shared/data/summarize_from_feedback/comparisons`` (from the current folder, then from the checkout);
the Hugging Face hub (``openai/summarize_from_feedback``, subsampled) when online. Without any, the real part
is skipped with one line saying so.
"""
from __future__ import annotations

import dataclasses
import os
import shlex
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import typer

from balpm.cli import dashboard
from balpm.cli.dashboard import check_port
from balpm.config import DataConfig, RunConfig
from balpm.errors import ConfigError
from balpm.experiment import presets

COMPARISONS = Path("summarize_from_feedback") / "comparisons"
HUB_ID = "openai/summarize_from_feedback"
POLICIES = ("random", "bald", "balpm")
WORLDS = ("teaching", "real", "both")
#: Seeds of the teaching-world part: 8 x 3 runs take about a minute of a quiet 2-core machine
#: (benchmarks/demo_walltime.py --world teaching) and give the A/A check 35 splits.
TEACHING_SEEDS = 8
#: Seeds of the real part: the fewest that run the A/A check (balpm.evidence.stats.AA_MIN_SEEDS).
REAL_SEEDS = 6
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
    """Pick the demo's real data source (see the module docstring); never downloads anything itself.
    ``kind == "synthetic"`` means none was found."""
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
    return DataSource("synthetic", (), "no TL;DR files found and the hub is unreachable: no real sample "
                                        "(give one with --data, or set $BALPM_SHARED_DATA)")


def _load_real(source: DataSource, scale: str, seed: int = 0, progress: bool = True,
               dtype: str = "fp32") -> tuple[Any, Any, RunConfig, str]:
    """Table, features, the base config and a note on what was done to the data (real data only)."""
    from balpm.data import load_for_config
    from balpm.features import featurize

    # the hub's 176k comparisons: a seeded prompt-grouped subsample, taken before featurization
    subsample = HUB_SAMPLE[scale] if source.kind == "hub" else 0
    data_cfg = DataConfig(paths=source.paths, format=source.format, split_seed=seed, subsample=subsample)
    table = load_for_config(data_cfg).table
    notes = []
    if subsample:
        notes.append(f"subsampled to {len(table)} comparisons (whole prompts) to finish in minutes")
    feature_cfg = dataclasses.replace(RunConfig().features, dtype=dtype)
    t0 = time.perf_counter()
    features = featurize(table, feature_cfg, progress=progress, on_compute=_first_time_note(dtype))
    hit = all(features.cache_hits.values())
    typer.echo(f"features: {'cache hit' if hit else 'computed and cached (the next demo skips this)'} in "
               f"{time.perf_counter() - t0:.1f} s")
    cfg = RunConfig().replace(data={"paths": source.paths, "format": source.format, "split_seed": seed,
                                    "subsample": subsample}, features={"dtype": dtype})
    return table, features, cfg, "; ".join(notes) or "all rows used"


def _first_time_note(dtype: str = "fp32") -> Any:
    """The featurizer's ``on_compute`` hook: one line per part that is not cached (never on a cache hit).
    No guess at the time here: the encoder prints its estimate from the first batch measured on this machine."""
    def note(part: str, distinct: int, texts: int) -> None:
        typer.echo(f"featurizing the {part} with the default MiniLM encoder: {distinct:,} distinct texts (of "
                   f"{texts:,}), first time only (cached after); the time it takes is measured on the first batch "
                   "and printed next")
        from balpm.features.encoder import cpu_has_native_bf16

        if dtype == "fp32" and part == "prompts" and cpu_has_native_bf16():
            typer.echo("  (this CPU has native bf16: --dtype bf16 is about twice as fast, with features within "
                       "cosine 0.9999 of fp32's; the default stays fp32, the features every other command computes)")
    return note


def _fit_rounds(cfg: RunConfig, table: Any) -> RunConfig:
    """Lower the number of rounds when the pool is too small for the scale."""
    n_train = int((table["split"] == "train").sum())
    lp = cfg.loop
    fit = (n_train - lp.initial) // lp.batch_size + 1
    if fit < 2:
        raise ConfigError(f"only {n_train} train comparisons: too few for the demo's initial {lp.initial} + batch {lp.batch_size}")
    return cfg.replace(loop={"rounds": min(lp.rounds, fit)}) if fit < lp.rounds else cfg


def _sweep(base: RunConfig, seeds: int, root: Path, *, workers: int, progress: bool, ceiling: bool = False,
           table: Any = None, features: Any = None) -> list[str]:
    """Run the demo's policies x seeds (and the ceiling) under ``root``; the complete runs' ids."""
    from balpm.experiment import sweep

    configs = sweep.expand(base, POLICIES, list(range(seeds)), ceiling=ceiling)
    results = sweep.sweep(configs, root, workers=workers, progress=progress, table=table, features=features)
    for r in results:
        if r.state != "complete":
            typer.echo(f"run {r.run_id} failed: {r.error}", err=True)
    return [r.run_id for r in results if r.state == "complete"]


def _report(root: Path, run_ids: list[str]) -> tuple[dict[str, Any], dict[str, Any], str]:
    """``balpm report ROOT`` (and ``--baseline bald``) with the CLI's defaults, and the setting of this demo's runs."""
    from balpm.evidence import report

    summary = report.report([root])
    vs_bald = report.report([root], baseline="bald")
    mine = set(run_ids)
    setting = next((e["setting"] for e in summary["policies"] if mine & set(e["run_ids"])), None)
    if setting is None:
        raise ConfigError(f"no complete demo run in {str(root)!r}; rerun balpm demo (complete runs are reused)")
    return summary, vs_bald, setting


def _say_story(summary: dict[str, Any], vs_bald: dict[str, Any], setting: str, root: Path, *, teaching: bool) -> None:
    """The verdict in words (balpm.evidence.story), then where the tables are."""
    from balpm.evidence import story

    lines = story.verdict_lines(summary, setting)
    balpm_labels = [e["label"] for e in vs_bald["policies"] if e["setting"] == setting and e["policy"] == "balpm"]
    lines += story.verdict_lines(vs_bald, setting, labels=balpm_labels)
    region = "the noisy region"
    if teaching:
        from balpm.data.synthetic import TEACHING_CLUSTER_NAMES

        region = f"the noisy {TEACHING_CLUSTER_NAMES[0]} region"
    mech = story.mechanisms(summary, root, setting)
    why = story.mechanism_line(mech, summary, setting, region)
    by_policy = {e["policy"]: mech.get(e["label"]) for e in summary["policies"] if e["setting"] == setting}
    bald, balpm = by_policy.get("bald"), by_policy.get("balpm")
    if (teaching and bald and balpm and None not in (bald.noisy_share, balpm.noisy_share, bald.pool_noisy_share)
            and bald.noisy_share > bald.pool_noisy_share and balpm.noisy_share < bald.noisy_share):
        why += (f" BALD's ensemble disagrees most on the {TEACHING_CLUSTER_NAMES[0]} coin flips, which no number of "
                "labels teaches; BAL-PM's entropy term spreads its picks over the topics.")
    lines.append(why)
    aa_and_ceiling = story.headroom_lines(summary, setting)
    if teaching:
        lines += aa_and_ceiling[:2]  # the A/A check and truth.json's Bayes-optimal ceiling
        lines.append("When (what each part of this result needs): " + "; ".join(story.teaching_conditions(mech))
                     + ". Measured, with seeds, intervals and MDEs, in docs/evidence.md ('Sampled worlds': the "
                       "single-knob checks; 'Regime map').")
    else:
        lines += aa_and_ceiling
        lines.append(("To separate the policies" if story.separable(summary, setting) is not True else
                      "To detect smaller differences and test the paper's claim")
                     + ", run on the full data (data/README.md says how to get it): balpm sweep --data "
                     "~/data/comparisons --ceiling --seeds 0-15 --runs-dir runs/full, then balpm report runs/full.")
    typer.echo("")
    for line in lines:
        typer.echo(f"  * {line}")
    from balpm.evidence import report

    html = report.write_html(summary, root / "learning_curves.html")
    r = shlex.quote(str(root))
    typer.echo(f"\n  Full tables (every metric, Holm, MDEs): balpm report {r}   (JSON: balpm report {r} --json; "
               f"BAL-PM vs BALD: balpm report {r} --baseline bald); learning curves: {html}")


def _teaching_part(runs_root: Path, seeds: int, rounds: int | None, workers: int, progress: bool) -> dict[str, Any]:
    base = presets.apply_preset(RunConfig()).replace(name="demo (teaching world)")
    if rounds is not None:
        base = base.replace(loop={"rounds": rounds})
    lp = base.loop
    root = runs_root / "teaching"
    typer.echo(f"\n== The teaching world (synthetic: 2-D prompts in a noisy chit-chat blob and five topics; not real "
               f"data) ==\nruns: {', '.join(POLICIES)} x {seeds} seed(s), initial {lp.initial}, batch {lp.batch_size}, "
               f"{lp.rounds} rounds, K={base.model.ensemble_size} -> {root}")
    t0 = time.perf_counter()
    ids = _sweep(base, seeds, root, workers=workers, progress=progress)
    typer.echo(f"teaching world: {len(ids)} runs complete in {time.perf_counter() - t0:.0f} s")
    summary, vs_bald, setting = _report(root, ids)
    _say_story(summary, vs_bald, setting, root, teaching=True)
    return summary


def _real_part(source: DataSource, runs_root: Path, seeds: int, rounds: int | None, scale: str, workers: int,
               progress: bool, dtype: str) -> dict[str, Any]:
    root = runs_root / "real"
    typer.echo(f"\n== The real sample ({source.note}) ==")
    table, features, base, note = _load_real(source, scale, progress=progress, dtype=dtype)
    base = base.replace(name=f"demo ({source.kind}, {scale})", **SCALES[scale])
    if rounds is not None:
        base = base.replace(loop={"rounds": rounds})
    base = _fit_rounds(base, table)
    n_splits = table["split"].value_counts().to_dict()
    typer.echo(f"data: {len(table)} comparisons {n_splits}; {note}; features D={features.pairs_N_2_D.shape[-1]}")
    lp = base.loop
    typer.echo(f"runs: {', '.join(POLICIES)} + the ceiling (full pool) x {seeds} seed(s), initial {lp.initial}, batch "
               f"{lp.batch_size}, {lp.rounds} rounds, K={base.model.ensemble_size} -> {root}")
    if seeds < REAL_SEEDS:
        typer.echo(f"A/A check: not run with {seeds} seed(s) (needs >= {REAL_SEEDS}); the seed noise stays unmeasured")
    t0 = time.perf_counter()
    ids = _sweep(base, seeds, root, workers=workers, progress=progress, ceiling=True, table=table, features=features)
    typer.echo(f"real sample: {len(ids)} runs complete in {time.perf_counter() - t0:.0f} s")
    summary, vs_bald, setting = _report(root, ids)
    _say_story(summary, vs_bald, setting, root, teaching=False)
    return summary


def run_demo(data: Optional[list[str]] = None, runs_dir: Path = Path("runs/demo"), seeds: int | None = None,
             scale: str = "small", workers: int = 1, progress: bool = True, dtype: str = "fp32",
             world: str = "both", rounds: int | None = None) -> dict[str, Any]:
    """Everything but the dashboard: per world, the runs, the report and the verdict in words.

    ``seeds``: per world (default :data:`TEACHING_SEEDS` for the teaching world, :data:`REAL_SEEDS` for the
    real sample); ``rounds``: fewer rounds for a quick look (default: the preset's / the scale's).
    Returns ``{"teaching": summary, "real": summary, "seconds", "data_source"}`` (a world that did not
    run is absent); each summary is what ``balpm report <runs-dir>/<world> --json`` prints.
    """
    if world not in WORLDS:
        raise ConfigError(f"unknown --world {world!r}; choose {', '.join(WORLDS)}")
    if scale not in SCALES:
        raise ConfigError(f"unknown --scale {scale!r}; choose {', '.join(SCALES)}")
    if seeds is not None and seeds < 1:
        raise ConfigError(f"--seeds must be >= 1 (got {seeds})")
    if rounds is not None and rounds < 2:
        raise ConfigError(f"--rounds must be >= 2 (got {rounds}): a learning curve needs two points")
    if dtype not in ("fp32", "bf16"):
        raise ConfigError(f"unknown --dtype {dtype!r}; choose fp32 or bf16")
    t0 = time.perf_counter()
    source = find_data(data) if world in ("real", "both") else None
    if world == "real" and source is not None and source.kind == "synthetic":
        raise ConfigError("--world real: " + source.note)
    out: dict[str, Any] = {}
    typer.echo("balpm demo: random vs BALD vs BAL-PM" + (", first on the teaching world" if world != "real" else ""))
    if world in ("teaching", "both"):
        out["teaching"] = _teaching_part(Path(runs_dir), seeds or TEACHING_SEEDS, rounds, workers, progress)
    if source is not None:
        if source.kind == "synthetic":
            typer.echo(f"\n== The real sample: skipped ({source.note}) ==")
        else:
            out["real"] = _real_part(source, Path(runs_dir), seeds or REAL_SEEDS, rounds, scale, workers, progress,
                                     dtype)
    out["seconds"] = time.perf_counter() - t0
    out["data_source"] = source.kind if source is not None else None
    typer.echo(f"\ndemo finished in {out['seconds']:.0f} s")
    return out


def demo_command(
    data: Optional[list[str]] = typer.Option(None, "--data", help="comparisons file or folder (repeatable)"),
    runs_dir: Path = typer.Option(Path("runs/demo"), "--runs-dir", help="where the demo's runs go (one folder per "
                                  "world: teaching/, real/)"),
    world: str = typer.Option("both", "--world", help="teaching (synthetic, about a minute), real (the sample found, "
                              "with the ceiling) or both, the teaching world first"),
    seeds: Optional[int] = typer.Option(None, "--seeds", help=f"seeds per policy (default: {TEACHING_SEEDS} in the "
                                        f"teaching world, {REAL_SEEDS} on real data: the A/A check needs {REAL_SEEDS})"),
    rounds: Optional[int] = typer.Option(None, "--rounds", help="rounds per run (default: the teaching preset's "
                                         f"{presets.TEACHING_PRESET['loop']['rounds']}; the scale's "
                                         f"{SCALES['small']['loop']['rounds']} on real data)"),
    no_dashboard: bool = typer.Option(False, "--no-dashboard", help="stop after the words"),
    scale: str = typer.Option("small", "--scale", help="real data: small (a few minutes on 2 cores) or medium"),
    workers: int = typer.Option(max(1, min(4, os.cpu_count() or 1)), "--workers", "-j",
                                help="parallel run processes (one torch thread each when > 1)"),
    port: int = typer.Option(8501, "--port", help="dashboard port"),
    dtype: str = typer.Option("fp32", "--dtype", help="features in fp32, or bf16 autocast (about twice as fast on CPUs "
                              "with native bf16, AVX512-BF16 or AMX; slower elsewhere)"),
) -> None:
    """Random vs BALD vs BAL-PM: the teaching world, then the real sample, each told in words, then the dashboard."""
    # idle OpenMP threads sleep rather than spin: on a shared machine spinning threads starve everyone
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if not no_dashboard:  # a busy --port is found now, not after minutes of featurizing and runs
        check_port(port)
    out = run_demo(data, runs_dir, seeds, scale, workers, dtype=dtype, world=world, rounds=rounds)
    shown = Path(runs_dir) / ("teaching" if "teaching" in out else "real")
    if no_dashboard:
        typer.echo(f"dashboard: balpm dashboard --runs {shlex.quote(str(shown))}")
        return
    serve = getattr(dashboard, "serve", None)
    if serve is None:
        typer.echo("the dashboard is not available in this install; open the runs with: balpm report " + str(shown))
        return
    if "teaching" in out and "real" in out:
        typer.echo(f"dashboard on the teaching world; the real sample: balpm dashboard --runs "
                   f"{shlex.quote(str(Path(runs_dir) / 'real'))}")
    serve(shown, port=port, open_browser=False)


def register(app: typer.Typer) -> None:
    """Add ``demo`` to the app."""
    app.command("demo")(demo_command)
