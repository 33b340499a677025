"""CLI commands ``balpm run`` (one simulated run, or ``--resume`` a killed one), ``balpm sweep`` and ``balpm runs``.

The options of ``run`` and ``sweep`` come from the config dataclasses (:mod:`balpm.config`): each
first-class flag (``config.CLI_FLAGS``) shows its field's help and default, and every other knob is
``--set section.field=value`` (repeatable). Precedence: defaults < ``-c/--config`` YAML (or, for
``--resume --run-id ID``, the run's own config.yaml) < flags < ``--set``. Every value is typed and
checked by its field before anything is read or written; the run directory is ``<runs-dir>/<run_id>``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import typer

from balpm.acquisition.registry import knob_owners, policy_entry
from balpm.acquisition.registry import names as registry_names
from balpm.cli.options import GivenOptions, field_option
from balpm.cli.options import config_options as generated_options
from balpm.config import (
    CLI_FLAGS,
    RunConfig,
    check_owned,
    coerce_value,
    parse_assignment,
    read_yaml,
)
from balpm.errors import ConfigError, printable
from balpm.experiment import presets

# ---- the config flags, generated from the dataclasses ------------------------------------------
# python parameter name -> config key; the flag itself is config.CLI_FLAGS[key]
FLAG_PARAMS: dict[str, str] = {
    "format": "data.format", "skip_bad": "data.skip_bad",
    "policy": "acquisition.policy", "seed": "loop.seed",
    "rounds": "loop.rounds", "batch_size": "loop.batch_size", "initial": "loop.initial", "pool_size": "loop.pool_size",
    "uncertainty": "acquisition.uncertainty",
    "model": "features.model", "ensemble_size": "model.ensemble_size", "epochs": "model.max_epochs",
    "hidden": "model.hidden", "lr": "model.lr", "device": "model.device", "save_pool_scores": "loop.save_pool_scores",
}
# every registered policy knob with a flag of its own (--beta, --k, --coldness, a plugin's): generated
FLAG_PARAMS.update((flag.lstrip("-").replace("-", "_"), key) for key, flag in CLI_FLAGS.items()
                   if key.startswith("acquisition.") and key not in FLAG_PARAMS.values())
_NEGATIVE = {"data.skip_bad": "--no-skip-bad", "acquisition.minimize_entropy": "--maximize-entropy",
             "loop.save_pool_scores": "--no-pool-scores"}
_SWEEP_SKIPS = ("policy", "seed")  # the sweep has --policies and --seeds instead


def _preset_default(key: str) -> Any:
    """The teaching preset's value of ``key`` (what a run without ``--data`` really uses), or None."""
    section, _, name = key.partition(".")
    value = presets.TEACHING_PRESET.get(section, {}).get(name)
    return ",".join(str(v) for v in value) if isinstance(value, tuple) else value


def _option(param: str, key: str) -> tuple[Any, Any]:
    """``(annotation, typer.Option)`` of one config flag (:func:`balpm.cli.options.field_option`).

    ``--help`` shows the default a run really uses: for a field of the teaching preset both values
    (without ``--data``: the preset's; with: the field's).
    """
    ann, opt = field_option(key, CLI_FLAGS[key], negative=_NEGATIVE.get(key), preset=_preset_default(key),
                            preset_note="without --data, the teaching world's preset", default_note="with --data")
    name = key.partition(".")[2]
    if key == "acquisition.policy":  # the registered policies (plugins included), as choices
        opt.metavar = "[" + "|".join(registry_names()) + "]"
        opt.help = f"one of {', '.join(registry_names())}"
    owners = knob_owners(name) if key.startswith("acquisition.") and name not in ("policy", "uncertainty") else []
    if owners:  # whose knob it is (a flag of a knob the chosen policy does not own is refused)
        opt.help = f"({', '.join(owners)} knob) {opt.help}"
    return ann, opt


@dataclass
class ConfigFlags(GivenOptions):
    """The config part of a ``run`` / ``sweep`` command line: ``-c``, the first-class flags given, ``--set``."""

    def build(self, base: RunConfig | None = None, *, policies: list[str] | None = None) -> RunConfig:
        """The validated RunConfig: ``base`` (or ``-c``, or the defaults) with the flags, then ``--set``, applied.
        ``policies`` (a sweep's): a knob flag must belong to one of them (else to the config's policy)."""
        return build_config(self.config, sets=self.sets, base=base, policies=policies, **self.values)


def config_options(*, policy_and_seed: bool = True) -> Any:
    """Decorator: append ``-c/--config``, the config flags and ``--set`` to a command's options.

    The command receives them as one :class:`ConfigFlags` argument named ``flags`` (it must declare it).
    Other options of the command (e.g. the sweep's) stay as they are.
    """
    options = {pname: _option(pname, key) for pname, key in (("data", "data.paths"), ("ood", "data.ood_paths"))}
    options.update((pname, _option(pname, FLAG_PARAMS[pname])) for pname in FLAG_PARAMS
                   if policy_and_seed or pname not in _SWEEP_SKIPS)
    return generated_options(options, config_file=True, make=ConfigFlags)


def build_config(config: Optional[Path] = None, *, data: Optional[list[str]] = None,
                 ood: Optional[list[str]] = None, sets: Optional[list[str]] = None, base: RunConfig | None = None,
                 policies: Optional[list[str]] = None, **flags: Any) -> RunConfig:
    """A validated RunConfig: ``base`` (or the YAML ``config``, or the defaults), then flags, then ``--set``.

    ``flags`` are keyed by the Python names of :data:`FLAG_PARAMS` (``rounds=2``, ``hidden="16,8"``);
    each is typed and checked by its field, and an error names the flag. A run's own ``config.yaml``
    (with its ``meta`` section) is accepted as ``config``.
    """
    yaml_keys: list[str] = []  # the fields a YAML config sets: kept by the preset below
    if base is not None:
        cfg = base
    elif config is not None:
        raw = read_yaml(Path(config))
        yaml_keys = [f"{s}.{k}" for s, v in raw.items() if isinstance(v, dict) for k in v]
        cfg = RunConfig.from_dict(raw)
    else:
        cfg = RunConfig()
    changes: dict[str, dict[str, Any]] = {}

    def put(key: str, value: Any) -> None:
        if key == "name":
            changes["name"] = value
            return
        section, _, name = key.partition(".")
        changes.setdefault(section, {})[name] = value

    for pname, value in flags.items():
        if value is None:
            continue
        if pname not in FLAG_PARAMS:
            raise ConfigError(f"internal: unknown flag {pname}")
        key = FLAG_PARAMS[pname]
        put(key, coerce_value(key, value, CLI_FLAGS[key]))
    if data:
        put("data.paths", tuple(str(p) for p in data))
    if ood:
        put("data.ood_paths", tuple(str(p) for p in ood))
    for item in sets or []:
        key, value = parse_assignment(item)
        put(key, value)
    acq = changes.get("acquisition", {})
    if policies and "policy" not in acq:  # a sweep's knob of a listed policy other than the base's: its owner's runs
        owner = _knob_owner(cfg.acquisition.policy, policies, set(acq))
        if owner is not None:
            acq["policy"] = owner
    cfg = cfg.replace(**changes) if changes else cfg
    check_owned(policies or cfg.acquisition.policy, acq)  # --beta on random: whose knob
    if base is None:  # no data: the teaching world's preset sizes (balpm/experiment/presets.py) fill what was not set

        given = [f"{s}.{k}" for s, v in changes.items() if isinstance(v, dict) for k in v]
        cfg = presets.apply_preset(cfg, yaml_keys + given)
    return cfg.validate()


def _knob_owner(current: str, policies: list[str], knobs: set[str]) -> str | None:
    """The listed policy that owns every acquisition knob in ``knobs`` when the base's policy ``current`` does not
    (``--policies random,epig --set acquisition.targets=test``: epig), else None. The base keeps its policy
    whenever it owns the knobs, so the run ids of every earlier sweep stay; each run's policy is set by the
    sweep's expansion, which keeps a knob only in the runs of a policy that owns it."""
    shared = {"policy", "uncertainty"}
    if knobs <= shared | set(policy_entry(current).knob_fields()):
        return None
    return next((p for p in policies if p != "full" and knobs <= shared | set(policy_entry(p).knob_fields())), None)


def resume_base(runs_dir: Path, run_id: str) -> RunConfig:
    """The config of the existing run ``runs_dir/run_id`` (its own config.yaml), for ``--resume --run-id``."""
    from balpm.experiment import runs

    runs.check_run_id(run_id)
    path = Path(runs_dir) / run_id
    if not path.exists():
        raise ConfigError(f"no run {run_id!r} in {str(runs_dir)!r}; list the runs with: balpm runs --runs-dir {runs_dir} "
                          "(or drop --resume to start a new run)")
    if not (path / "config.yaml").is_file():
        raise ConfigError(f"{str(path)!r} is not a run folder (no config.yaml); delete it or pick another --run-id")
    try:
        return RunConfig.from_yaml(path / "config.yaml")
    except ConfigError as exc:
        raise ConfigError(f"run {run_id!r}: its config.yaml is not usable ({exc})") from None


def load_checked_table(cfg: RunConfig) -> Any:
    """The table of a run on data files, its splits checked against the loop sizes BEFORE any featurizing
    (a one-row table fails here in a second, with nothing written); None for a synthetic world (no paths),
    which ``loop.run`` draws with its features."""
    if not cfg.data.paths and not cfg.data.ood_paths:
        return None
    from balpm.data import load_for_config
    from balpm.data.splits import check_run_sizes

    table = load_for_config(cfg.data).table
    check_run_sizes(table["split"].to_numpy(), cfg.loop, cfg.acquisition)
    return table


def world_line(cfg: RunConfig) -> str:
    """One line: which world or data a run uses and the sizes it runs at (``balpm run`` prints it first)."""
    lp, m = cfg.loop, cfg.model
    sizes = (f"initial {lp.initial}, batch {lp.batch_size}, {lp.rounds} rounds, K={m.ensemble_size}, "
             f"hidden {','.join(map(str, m.hidden))}, beta {cfg.acquisition.beta:g}")
    if cfg.data.paths or cfg.data.ood_paths:
        return f"data: {', '.join(cfg.data.paths + cfg.data.ood_paths)}; {sizes}"
    if presets.preset_name(cfg) == "teaching":
        world = f"the world {cfg.data.world}" if cfg.data.world else "the teaching world"
        return (f"no --data: {world} (synthetic: a noisy chit-chat blob and five topics) with the teaching preset: "
                f"{sizes} (flags override; run --help lists both defaults)")
    return f"no --data: the synthetic {cfg.data.synthetic!r} world; {sizes}"


def run_help() -> str:
    """``balpm run``'s help: what a bare run uses (the teaching preset), and the defaults with ``--data``."""
    lp, ref = presets.TEACHING_PRESET["loop"], RunConfig().loop
    return ("Run one simulated active-learning run (or --resume a killed one); prints its folder and final metrics. "
            f"Without --data it runs the synthetic teaching world at the teaching preset (initial {lp['initial']}, "
            f"batch {lp['batch_size']}, {lp['rounds']} rounds, K={presets.TEACHING_PRESET['model']['ensemble_size']}); with "
            f"--data, the reference's sizes (initial {ref.initial}, batch {ref.batch_size}, {ref.rounds} rounds). "
            "Each option below shows both defaults where they differ.")


@config_options(policy_and_seed=True)
def run_command(
    flags: ConfigFlags = None,  # type: ignore[assignment]  (filled by config_options)
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", metavar="DIR", help="runs root folder"),
    resume: bool = typer.Option(False, "--resume", metavar="", help="continue a killed or failed run from its last complete "
                                "round; with --run-id ID (and no -c) the run's own config.yaml is used"),
    run_id: Optional[str] = typer.Option(None, "--run-id", metavar="ID", help="run folder name (default <policy>-s<seed>-<hash>)"),
    print_config: bool = typer.Option(False, "--print-config", metavar="", help="print the resolved config as YAML and exit"),
    quiet: bool = typer.Option(False, "--quiet", "-q", metavar="", help="no progress bars"),
) -> None:
    """Run one simulated active-learning run (or --resume a killed one); prints its folder and final metrics."""
    from balpm.experiment import loop, runs

    runs.check_root(runs_dir)
    base = resume_base(runs_dir, run_id) if (resume and run_id and flags.config is None) else None
    cfg = flags.build(base)
    if print_config:
        typer.echo(cfg.to_yaml(), nl=False)
        return
    typer.echo(world_line(cfg))
    table = load_checked_table(cfg)
    path = loop.run(cfg, runs_dir, resume=resume, progress=not quiet, run_id=run_id, table=table)
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


@config_options(policy_and_seed=False)
def sweep_command(
    flags: ConfigFlags = None,  # type: ignore[assignment]  (filled by config_options)
    policies: str = typer.Option("random,bald,balpm", "--policies", metavar="P1,P2", help="comma-separated policies"),
    seeds: str = typer.Option("0-15", "--seeds", metavar="SEEDS", help="seeds: 0-9 or 0,1,2 (default 16 seeds, the "
                               "number claims use: 8-seed verdicts flipped between seed sets, issue 13)"),
    grid: Optional[list[str]] = typer.Option(None, "--grid", metavar="NAME=V1,V2", help="name=v1,v2 (repeatable), e.g. beta=0.01,0.1"),
    workers: int = typer.Option(max(1, os.cpu_count() or 1), "--workers", "-j", metavar="INTEGER", help="parallel processes"),
    backend: str = typer.Option("local", "--backend", metavar="[local|ray]", help="local (processes) or ray"),
    address: Optional[str] = typer.Option(None, "--address", help="--backend ray: the cluster's address (ray start "
                                          "--head prints it); none: a local Ray started and stopped for this sweep"),
    cpus_per_run: float = typer.Option(1.0, "--cpus-per-run", help="--backend ray: CPUs (torch threads) per run"),
    gpus_per_run: float = typer.Option(0.0, "--gpus-per-run", help="--backend ray: GPUs per run (0.5: two runs share one)"),
    ceiling: bool = typer.Option(False, "--ceiling", metavar="", help="also one run per seed of 'full': the same model trained once "
                                 "on the whole pool, the ceiling the report and plots show"),
    ablations: Optional[str] = typer.Option(None, "--ablations", metavar="PRESET", help="also BAL-PM's ablation set over "
                                            "the same seeds: paper = no U, H minimiser, predictive, KL, beta 1..0.0001 "
                                            "(docs/method.md section 6); the Ablations page compares them with the base"),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", metavar="DIR", help="runs root folder"),
    quiet: bool = typer.Option(False, "--quiet", "-q", metavar="", help="no progress bars"),
) -> None:
    """Run policies x seeds x grid in parallel, one folder per run (complete runs are reused, partial ones resumed)."""
    from balpm.experiment import runs, sweep

    runs.check_root(runs_dir)
    base = flags.build(policies=sweep.parse_policies(policies))
    configs = sweep.expand(base, sweep.parse_policies(policies), sweep.parse_seeds(seeds), sweep.parse_grid(grid or []),
                           ceiling=ceiling)
    if ablations:
        configs = sweep.with_ablations(configs, base, ablations, sweep.parse_seeds(seeds))
    results = sweep.sweep(configs, runs_dir, workers=workers, backend=backend, progress=not quiet, address=address,
                          cpus_per_run=cpus_per_run, gpus_per_run=gpus_per_run)
    failed = [r for r in results if r.state != "complete"]
    typer.echo(f"sweep: {len(results) - len(failed)}/{len(results)} runs complete in {runs_dir}")
    for r in failed:
        typer.echo(f"  failed {r.run_id}: {r.error}", err=True)
    if failed:
        raise typer.Exit(1)


def runs_command(
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", metavar="DIR", help="runs root folder"),
) -> None:
    """List the runs under --runs-dir: id, state, rounds done, policy label and seed (resume one with --resume --run-id)."""
    from balpm.experiment import runs

    if not runs_dir.is_dir():
        what = "is not a folder" if runs_dir.exists() else "does not exist"
        raise ConfigError(f"--runs-dir {str(runs_dir)!r} {what}; give the folder holding the runs "
                          "(balpm run and balpm sweep write them there)")

    infos = runs.list_runs(runs_dir)
    if not infos:
        typer.echo(f"no runs in {printable(runs_dir)}")
        return
    for i in infos:  # folder names and reasons come from the folder: terminal-safe (ESC, newlines escaped)
        done = f"{i.last_round + 1}/{i.rounds}" if i.state != "broken" or i.rounds else "-"
        what = i.reason if i.state == "broken" else f"{i.label or i.policy} seed {i.seed}"
        if i.state == "failed" or (i.state == "running" and i.alive is False):
            what += f" (resume: balpm run --resume --run-id {i.run_id} --runs-dir {runs_dir})"
        typer.echo(f"{printable(i.run_id)}\t{i.state}\t{done}\t{printable(what)}")


def register(app: typer.Typer) -> None:
    """Add ``run``, ``sweep`` and ``runs`` to the app."""
    app.command("run", help=run_help())(run_command)
    app.command("sweep")(sweep_command)
    app.command("runs")(runs_command)
