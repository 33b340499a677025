"""CLI command ``balpm plant``: a real preference table -> a planted world with known truth and exact ceilings."""
from __future__ import annotations

import json

import typer

from balpm.errors import ConfigError


def plant_command(
    data: list[str] = typer.Option(..., "--data", help="data files or folders any loader reads (OpenAI JSON lines, "
                                   "hub parquet, CarperAI, HH, CSV/JSONL/parquet)"),
    out: str = typer.Option(..., "--out", metavar="DIR", help="folder for table.parquet, ood.parquet, run.yaml, plant.json"),
    ood: list[str] = typer.Option([], "--ood", help="out-of-distribution files (planted too, split 'ood')"),
    seed: int = typer.Option(0, "--seed", help="seed of the reward direction, the noisy clusters and the labels"),
    recipe: str = typer.Option("tldr", "--recipe", help="a shipped recipe (tldr, cnndm, hh: data/configs/plant-<name>.yaml) "
                               "or a recipe YAML file"),
    agreement: float | None = typer.Option(None, "--agreement", help="override: Bayes-optimal accuracy outside noisy regions, in [0.5, 1)"),
    noisy_share: float | None = typer.Option(None, "--noisy-share", help="override: target share of prompts in noisy clusters (0: none)"),
    clusters: int | None = typer.Option(None, "--clusters", help="override: k-means clusters of the prompt features"),
    noisy_pick: str | None = typer.Option(None, "--noisy-pick", help="override: random, or contrast (largest answer contrast first: a BALD trap)"),
    components: int | None = typer.Option(None, "--components", help="override: whitened principal directions of the reward"),
    cache_dir: str | None = typer.Option(None, "--cache-dir", help="feature cache folder (default: the run config's, .balpm_cache)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace a planted world already in --out"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show featurization progress"),
    as_json: bool = typer.Option(False, "--json", help="print plant.json instead of a summary"),
) -> None:
    """Plant a known reward on a real preference table: resampled labels, noisy regions, exact test ceiling."""
    from balpm.data.plant import load_recipe, plant

    if seed < 0:
        raise ConfigError(f"--seed must be >= 0 (got {seed})")
    rec, rec_file = load_recipe(recipe, agreement=agreement, noisy_share=noisy_share, clusters=clusters,
                                noisy_pick=noisy_pick, components=components)
    manifest = plant(list(data), out, recipe=rec, recipe_file=rec_file, seed=seed, ood_paths=list(ood),
                     cache_dir=cache_dir, overwrite=overwrite, progress=progress)
    if as_json:
        typer.echo(json.dumps(manifest))
        return
    rows, ceil, reward, noisy = manifest["rows"], manifest["ceilings"], manifest["reward"], manifest["noisy"]
    typer.echo(f"planted world ({manifest['recipe_name']} recipe, seed {seed}) -> {out}")
    typer.echo(f"rows: {rows['train']:,} pool, {rows['valid']:,} valid, {rows['test']:,} test, {rows['ood']:,} OOD; "
               f"{manifest['swapped']:,} labels swapped against the source")
    typer.echo(f"reward: {reward['components']} whitened directions, strength {reward['strength']:.4g}, "
               f"agreement {reward['agreement_achieved']} outside noisy regions")
    typer.echo(f"noisy: clusters {noisy.get('noisy_clusters', [])}, {noisy['prompt_share']:.1%} of prompts, "
               f"{ceil['noisy_share_pool'] or 0:.1%} of the pool")
    ood_part = f", OOD {ceil['ood_log_likelihood']:.4f}" if ceil.get("ood_log_likelihood") is not None else ""
    typer.echo(f"exact ceiling (mean log true_prob): test {ceil['test_log_likelihood']:.4f}{ood_part} "
               f"(chance {ceil['chance_log_likelihood']:.4f}); Bayes test accuracy {ceil['test_accuracy']:.3f}")
    typer.echo(f"run it: balpm sweep -c {manifest['run_config']} --policies random,bald,balpm --seeds 0-15 --ceiling "
               "--runs-dir RUNS (a folder outside --out)")


def register(app: typer.Typer) -> None:
    """Add ``balpm plant`` to the app."""
    app.command("plant")(plant_command)
