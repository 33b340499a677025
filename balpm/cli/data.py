"""CLI commands: ``balpm data inspect`` - what a set of preference data files holds."""
from __future__ import annotations

import json

import typer

from balpm.cli.columns import (
    CHOSEN_COL, ID_COL, PROMPT_COL, PROMPT_ID_COL, REJECTED_COL, SOURCE_COL, SPLIT_COL, SUBSAMPLE, column_map,
)

from balpm.errors import ConfigError

data_app = typer.Typer(help="Preference data: inspect files of any supported format.", no_args_is_help=True)


def parse_ratios(text: str) -> tuple[float, float, float]:
    """``"0.7,0.1,0.2"`` -> ``(0.7, 0.1, 0.2)`` (one-line :class:`ConfigError` otherwise)."""
    try:
        values = tuple(float(x) for x in text.replace(" ", "").split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise ConfigError(f"--ratios {text!r} must be three comma-separated numbers (train,valid,test), e.g. 0.7,0.1,0.2")
    return values  # type: ignore[return-value]


@data_app.command("inspect")
def inspect_command(
    paths: list[str] = typer.Argument(..., help="data files or folders (OpenAI JSON lines, hub parquet, CarperAI, HH-RLHF, CSV/JSONL/parquet)"),
    format: str = typer.Option("auto", "--format", "-f", help="auto, openai, hub, carper, hh or table"),
    ood: list[str] = typer.Option([], "--ood", help="out-of-distribution file or folder (repeatable), e.g. CNN/DM comparisons"),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="skip malformed rows (counted) instead of stopping"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object instead of the table"),
    prompt_col: str | None = PROMPT_COL,
    chosen_col: str | None = CHOSEN_COL,
    rejected_col: str | None = REJECTED_COL,
    split_col: str | None = SPLIT_COL,
    id_col: str | None = ID_COL,
    prompt_id_col: str | None = PROMPT_ID_COL,
    source_col: str | None = SOURCE_COL,
    ratios: str = typer.Option("0.7,0.1,0.2", "--ratios", help="pool,valid,test fractions of prompts"),
    seed: int = typer.Option(0, "--seed", help="seed of the prompt-grouped split"),
    keep_original: bool = typer.Option(False, "--keep-original", help="keep the source's own splits (train, valid1->valid, valid2->test)"),
    subsample: int = SUBSAMPLE,
) -> None:
    """Load the files as a run would and print counts per source and split, prompts, duplicates and bad rows."""
    from balpm.data.inspect import format_report, inspect_data

    columns = column_map(prompt_col, chosen_col, rejected_col, split_col, id_col, prompt_id_col, source_col)
    report = inspect_data(paths, format=format, ood_paths=ood, skip_bad=skip_bad, columns=columns,
                          ratios=parse_ratios(ratios), seed=seed, keep_original=keep_original, subsample=subsample)
    if as_json:
        typer.echo(json.dumps(report, sort_keys=True))
    else:
        typer.echo(format_report(report))


def register(app: typer.Typer) -> None:
    """Add the ``data`` command group to the app."""
    app.add_typer(data_app, name="data")
