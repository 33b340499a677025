"""CLI command ``balpm featurize``: load a preference table and compute (or find cached) features.

Its options are generated from the config (:mod:`balpm.cli.options`): one per :class:`balpm.config.FeatureConfig`
field (``--model``, ``--pooling``, ``--max-length`` ...), the data options of :mod:`balpm.cli.data_options`,
and ``--set features.<field>=...`` / ``--set data.<field>=...``; every value is checked by its field, exactly
as ``balpm run`` checks it.
"""
from __future__ import annotations

import json
from dataclasses import fields

import typer

from balpm.cli.data_options import DATA_KEYS
from balpm.cli.options import GivenOptions, config_from, config_options, flag_name, options_for
from balpm.config import FeatureConfig

#: python parameter name -> (config key, flag): every FeatureConfig field, then the data options
FEATURIZE_KEYS: dict[str, tuple[str, ...]] = {
    **{f.name: (f"features.{f.name}", flag_name(f"features.{f.name}")) for f in fields(FeatureConfig)},
    **DATA_KEYS,
}
SET_HELP = ("any features or data knob as section.field=value (repeatable; applied last), e.g. "
            "--set features.pooling=mean; the fields and their help are in balpm/config.py")


@config_options(options_for(FEATURIZE_KEYS), set_help=SET_HELP)
def featurize_command(
    flags: GivenOptions = None,  # type: ignore[assignment]  (filled by config_options)
    paths: list[str] = typer.Argument(..., help="data files or folders (OpenAI JSON lines, hub parquet, CarperAI, HH, CSV/JSONL/parquet)"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show a progress bar with texts/s"),
    backend: str = typer.Option("local", "--backend", help="local (this process) or ray (an actor pool, one model per "
                                "actor and per GPU where the cluster has GPUs; resumable by shards)"),
    address: str | None = typer.Option(None, "--address", help="--backend ray: the cluster's address (ray start "
                                       "--head prints it); none: a local Ray started and stopped for this call"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object instead of text"),
) -> None:
    """Compute prompt and prompt+answer features of a preference table (a second identical call is a cache hit)."""
    from balpm.features.distributed import check_backend
    from balpm.features.encoder import check_options

    cfg = config_from(flags, FEATURIZE_KEYS, sections=("features", "data"), fixed={"data.paths": tuple(paths)})
    ft = cfg.features
    check_options(dtype=ft.dtype, max_length=ft.max_length, batch_size=ft.batch_size, load_in_4bit=ft.load_in_4bit,
                  load_in_8bit=ft.load_in_8bit, pooling=ft.pooling)
    cfg = cfg.validate()
    check_backend(backend, address)
    from balpm.data import load_for_config
    from balpm.features import featurize

    loaded = load_for_config(cfg.data)
    table = loaded.table
    feats = featurize(table, ft, progress=progress, backend=backend, address=address)
    summary = {
        "rows": len(table),
        "prompts": len(feats.prompt_ids),
        "dim": feats.dim,
        "model": feats.manifest["model"],
        "pooling": feats.manifest["pooling"],
        "feature_hash": feats.hash,
        "bad_rows": int(loaded.report.get("bad_rows", 0)),
        "parts": {
            part: {
                "shape": list(feats.manifest[part]["shape"]),
                "cache_hit": bool(feats.cache_hits[part]),
                "path": feats.manifest["paths"][part],
                "prompts_truncated": int(feats.manifest[part].get("prompts_truncated", 0)),
                "answers_truncated": int(feats.manifest[part].get("answers_truncated", 0)),
                "texts_per_second": feats.manifest[part].get("texts_per_second"),
            }
            for part in ("prompts", "pairs")
        },
    }
    if as_json:
        typer.echo(json.dumps(summary))
        return
    typer.echo(f"table: {summary['rows']:,} comparisons, {summary['prompts']:,} prompts"
               + (f", {summary['bad_rows']} bad rows skipped" if summary["bad_rows"] else ""))
    typer.echo(f"model: {summary['model']} ({summary['pooling']} pooling, D={summary['dim']}, {ft.dtype}, "
               f"max length {ft.max_length})")
    for part, info in summary["parts"].items():
        shape = " x ".join(str(s) for s in info["shape"])
        how = "cache hit" if info["cache_hit"] else f"computed ({info['texts_per_second']} texts/s)"
        typer.echo(f"{part}: {shape} float32, {how} -> {info['path']}")
    typer.echo(f"feature hash: {summary['feature_hash']}")


def register(app: typer.Typer) -> None:
    """Add ``balpm featurize`` to the app."""
    app.command("featurize")(featurize_command)

