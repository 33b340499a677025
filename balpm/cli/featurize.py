"""CLI command ``balpm featurize``: load a preference table and compute (or find cached) features."""
from __future__ import annotations

import json

import typer

from balpm.cli.columns import (
    CHOSEN_COL, ID_COL, PROMPT_COL, PROMPT_ID_COL, REJECTED_COL, SOURCE_COL, SPLIT_COL, SUBSAMPLE, column_map,
)


def featurize_command(
    paths: list[str] = typer.Argument(..., help="data files or folders (OpenAI JSON lines, hub parquet, CarperAI, HH, CSV/JSONL/parquet)"),
    format: str = typer.Option("auto", "--format", help="loader: auto, openai, hub, carper, hh, table"),
    ood: list[str] = typer.Option([], "--ood", help="out-of-distribution files (featurized too, split 'ood')"),
    model: str = typer.Option("minilm", "--model", help="'minilm' (bundled encoder), a Hugging Face id[@revision] or a local folder"),
    pooling: str = typer.Option("auto", "--pooling", help="auto, mean, last, cls or max"),
    max_length: int = typer.Option(256, "--max-length", help="token limit; the prompt is truncated, never the answer"),
    dtype: str = typer.Option("fp32", "--dtype", help="fp32 or bf16 (autocast)"),
    batch_size: int = typer.Option(32, "--batch-size", help="texts per forward pass"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps"),
    load_in_4bit: bool = typer.Option(False, "--load-in-4bit", help="4-bit weights via bitsandbytes"),
    load_in_8bit: bool = typer.Option(False, "--load-in-8bit", help="8-bit weights via bitsandbytes"),
    cache_dir: str = typer.Option(".balpm_cache", "--cache-dir", help="content-addressed feature cache folder"),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="skip malformed rows (counted) instead of stopping"),
    prompt_col: str | None = PROMPT_COL,
    chosen_col: str | None = CHOSEN_COL,
    rejected_col: str | None = REJECTED_COL,
    split_col: str | None = SPLIT_COL,
    id_col: str | None = ID_COL,
    prompt_id_col: str | None = PROMPT_ID_COL,
    source_col: str | None = SOURCE_COL,
    subsample: int = SUBSAMPLE,
    seed: int = typer.Option(0, "--seed", help="seed of the prompt-grouped split and of --subsample (a run's data.split_seed)"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show a progress bar with texts/s"),
    backend: str = typer.Option("local", "--backend", help="local (this process) or ray (an actor pool, one model per "
                                "actor and per GPU where the cluster has GPUs; resumable by shards)"),
    address: str | None = typer.Option(None, "--address", help="--backend ray: the cluster's address (ray start "
                                       "--head prints it); none: a local Ray started and stopped for this call"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object instead of text"),
) -> None:
    """Compute prompt and prompt+answer features of a preference table (a second identical call is a cache hit)."""
    from balpm.config import FeatureConfig
    from balpm.features.encoder import check_options

    check_options(dtype=dtype, max_length=max_length, batch_size=batch_size, load_in_4bit=load_in_4bit,
                  load_in_8bit=load_in_8bit, pooling=pooling)
    from balpm.features.distributed import check_backend

    check_backend(backend, address)
    cfg = FeatureConfig(model=model, pooling=pooling, max_length=max_length, dtype=dtype, batch_size=batch_size,
                        device=device, load_in_4bit=load_in_4bit, load_in_8bit=load_in_8bit, cache_dir=cache_dir)
    from balpm.data import load_table
    from balpm.features import featurize

    columns = column_map(prompt_col, chosen_col, rejected_col, split_col, id_col, prompt_id_col, source_col)
    loaded = load_table(paths, format=format, skip_bad=skip_bad, ood_paths=tuple(ood), columns=columns,
                        subsample=subsample, seed=seed)
    table = loaded.table
    feats = featurize(table, cfg, progress=progress, backend=backend, address=address)
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
    typer.echo(f"model: {summary['model']} ({summary['pooling']} pooling, D={summary['dim']}, {dtype}, max length {max_length})")
    for part, info in summary["parts"].items():
        shape = " x ".join(str(s) for s in info["shape"])
        how = "cache hit" if info["cache_hit"] else f"computed ({info['texts_per_second']} texts/s)"
        typer.echo(f"{part}: {shape} float32, {how} -> {info['path']}")
    typer.echo(f"feature hash: {summary['feature_hash']}")


def register(app: typer.Typer) -> None:
    """Add ``balpm featurize`` to the app."""
    app.command("featurize")(featurize_command)

