"""CLI command ``balpm worlds``: sample teaching worlds from the stated prior and sweep policies x seeds on each.

::

    balpm worlds --n 24 --seed 0 --policies random,bald,balpm --seeds 0-7 --workers 2 --runs-dir runs/worlds
    balpm worlds --n 24 --seed 0 --dry-run          # print the sampled worlds, write nothing
    balpm worlds --world test=pool --world contrast_ratio=1 --seeds 0-15 --runs-dir runs/knobs   # given worlds
    balpm worlds --knobs                            # the knobs, their bounds and the prior

The worlds (:func:`balpm.data.worlds.sample_worlds` of ``--n`` and ``--seed``, or the ``--world`` specs)
are written to ``<runs-dir>/worlds.yaml`` (the prior, its seed, each world's canonical spec, knobs and
loop sizes) before any run starts; each run's config carries its world in ``data.world``, so the
report groups the runs of one world into one setting. Each world runs at the teaching preset
(balpm/experiment/presets.py: model and beta chosen on the classic world, never on these) with the loop sizes its
pool and budget imply (:func:`balpm.data.worlds.loop_settings`). The runs go through
:func:`balpm.experiment.sweep.sweep` (local processes, or ``--backend ray`` as ``balpm sweep``) a few worlds at a time (only those worlds' inputs are held in memory);
re-issuing the command skips complete runs and resumes partial ones.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import typer

from balpm import safe_yaml
from balpm.errors import ConfigError
from balpm.experiment.presets import apply_preset

WORLDS_FILE = "worlds.yaml"
WORLDS_PER_SWEEP = 4  # worlds whose runs one sweep call holds (inputs of 4 worlds x seeds in memory at once)


def world_configs(spec: str, policies: list[str], seeds: list[int], sets: list[str], *, ceiling: bool) -> list[Any]:
    """The validated configs of one world: policies x seeds at the teaching preset with the world's loop
    sizes; ``sets`` (``section.field=value``) override both."""
    from balpm.cli.run import build_config
    from balpm.experiment import sweep

    base = build_config(sets=sets, policies=policies)  # a listed policy's own knob goes to its runs (build_config)
    explicit = [s.split("=", 1)[0].strip() for s in sets]
    base = apply_preset(base.replace(data={"world": spec}), explicit).validate()
    return sweep.expand(base, policies, seeds, ceiling=ceiling)


def _worlds_doc(worlds: list[Any], *, prior: Any, seed: int | None, policies: list[str], seeds: list[int],
                ceiling: bool) -> dict[str, Any]:
    from balpm.data.worlds import loop_settings, pool_comparisons

    return {
        "prior": prior, "seed": seed, "n": len(worlds), "policies": policies, "seeds": seeds, "ceiling": ceiling,
        "worlds": [{"index": i, "spec": w.spec(), "knobs": w.knobs(), "pool": pool_comparisons(w),
                    "loop": loop_settings(w)} for i, w in enumerate(worlds)],
    }


def _record(runs_dir: Path, doc: dict[str, Any]) -> None:
    """Write ``worlds.yaml``; an existing one must list the same worlds first (a larger --n extends it)."""
    from balpm.experiment.runs import atomic_write_text

    path = runs_dir / WORLDS_FILE
    if path.is_file():
        try:
            old = safe_yaml.load_file(path, str(path)) or {}  # bounded, no aliases
            old_specs = [w["spec"] for w in old.get("worlds", [])]
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the same one-line error
            raise ConfigError(f"{path} is unreadable ({' '.join(str(exc).split())[:120]}); delete it or choose another "
                              "--runs-dir") from None
        new_specs = [w["spec"] for w in doc["worlds"]]
        if new_specs[:len(old_specs)] != old_specs and old_specs[:len(new_specs)] != new_specs:
            raise ConfigError(f"{path} lists other worlds than these (prior, seed or --world differ); choose another "
                              "--runs-dir or re-issue the command that made it")
        if len(old_specs) > len(new_specs):
            return  # a smaller --n re-runs the first worlds: the record of the larger set stays
    runs_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, safe_yaml.dump(doc))  # never anchors/aliases: read back by safe_yaml


def _print_knobs() -> None:
    from balpm.data.worlds import PRIOR, world_knobs_help

    typer.echo(f"{'knob':<15} {'classic':<20} {'bounds':<22} help")
    for name, default, bounds, help in world_knobs_help():
        typer.echo(f"{name:<15} {default:<20} {bounds:<22} {help}")
    typer.echo("\nprior (balpm.data.worlds.PRIOR):")
    typer.echo(safe_yaml.dump(PRIOR, default_flow_style=None).rstrip())


def worlds_command(
    n: int = typer.Option(24, "--n", metavar="N", help="worlds sampled from the prior"),
    seed: int = typer.Option(0, "--seed", metavar="SEED", help="seed of the worlds' draw (not of the runs)"),
    world: Optional[list[str]] = typer.Option(None, "--world", metavar="SPEC", help="a world spec instead of sampling "
                                              "(repeatable), e.g. --world test=pool --world contrast_ratio=1"),
    policies: str = typer.Option("random,bald,balpm", "--policies", metavar="P1,P2", help="comma-separated policies"),
    seeds: str = typer.Option("0-7", "--seeds", metavar="SEEDS", help="run seeds on every world: 0-7 or 0,1,2"),
    ceiling: bool = typer.Option(False, "--ceiling", metavar="", help="also the ceiling 'full' per world and seed"),
    workers: int = typer.Option(max(1, os.cpu_count() or 1), "--workers", "-j", metavar="INTEGER",
                                help="parallel processes"),
    backend: str = typer.Option("local", "--backend", metavar="[local|ray]", help="local (processes) or ray, as balpm sweep"),
    address: Optional[str] = typer.Option(None, "--address", help="--backend ray: the cluster's address (none: a "
                                          "local Ray for this command)"),
    sets: Optional[list[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help="a config knob for every run "
                                             "(repeatable), e.g. --set acquisition.beta=0.01"),
    runs_dir: Path = typer.Option(Path("runs/worlds"), "--runs-dir", metavar="DIR", help="runs root folder"),
    dry_run: bool = typer.Option(False, "--dry-run", metavar="", help="print the worlds and their loop sizes; "
                                 "write and run nothing"),
    knobs: bool = typer.Option(False, "--knobs", metavar="", help="print the world knobs, bounds and prior; exit"),
    quiet: bool = typer.Option(False, "--quiet", "-q", metavar="", help="no progress bars"),
) -> None:
    """Sample N teaching worlds from the stated prior (or take --world specs) and run policies x seeds on each."""
    from balpm.data.worlds import PRIOR, parse_world, pool_comparisons, sample_worlds
    from balpm.experiment import runs, sweep

    if knobs:
        _print_knobs()
        return
    if world:
        specs = [parse_world(w) for w in world]
        prior, draw_seed = None, None
    else:
        specs = sample_worlds(n, seed)
        prior, draw_seed = PRIOR, int(seed)
    if backend not in ("local", "ray"):
        raise ConfigError(f"unknown backend {backend!r}; choose local or ray")
    pol = sweep.parse_policies(policies)
    sds = sweep.parse_seeds(seeds)
    sets = list(sets or [])
    per_world = [world_configs(w.spec(), pol, sds, sets, ceiling=ceiling) for w in specs]  # every check first
    if dry_run:
        for i, (w, cfgs) in enumerate(zip(specs, per_world)):
            lp = cfgs[0].loop
            typer.echo(f"world {i:>3}: pool {pool_comparisons(w):>5}, labels {lp.initial}+{lp.batch_size}x"
                       f"{lp.rounds - 1} ({len(cfgs)} runs)  {w.spec()}")
        typer.echo(f"{len(specs)} worlds, {sum(map(len, per_world))} runs (dry run: nothing written)")
        return
    runs.check_root(runs_dir)
    _record(Path(runs_dir), _worlds_doc(specs, prior=prior, seed=draw_seed, policies=pol, seeds=sds,
                                        ceiling=ceiling))
    failed: list[Any] = []
    total = 0
    for start in range(0, len(specs), WORLDS_PER_SWEEP):
        group = [c for cfgs in per_world[start:start + WORLDS_PER_SWEEP] for c in cfgs]
        results = sweep.sweep(group, runs_dir, workers=workers, backend=backend, address=address, progress=not quiet)
        total += len(results)
        failed += [r for r in results if r.state != "complete"]
        end = min(start + WORLDS_PER_SWEEP, len(specs))
        typer.echo(f"worlds {start}-{end - 1} of {len(specs)}: {len(results) - sum(r.state != 'complete' for r in results)}"
                   f"/{len(results)} runs complete")
    typer.echo(f"worlds: {total - len(failed)}/{total} runs complete in {runs_dir} (worlds listed in "
               f"{Path(runs_dir) / WORLDS_FILE})")
    for r in failed:
        typer.echo(f"  failed {r.run_id}: {r.error}", err=True)
    if failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``worlds`` to the app."""
    app.command("worlds")(worlds_command)
