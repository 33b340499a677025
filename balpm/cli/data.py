"""CLI commands: ``balpm data inspect`` - what a set of preference data files holds.

Its options are generated from :class:`balpm.config.DataConfig`'s fields (:mod:`balpm.cli.data_options`, plus
``--ratios`` and ``--keep-original``) and ``--set data.<field>=...``, checked by the fields as ``balpm run``'s are.
"""
from __future__ import annotations

import json

import typer

from balpm.cli.data_options import DATA_KEYS
from balpm.cli.options import GivenOptions, config_from, config_options, options_for

data_app = typer.Typer(help="Preference data: inspect files of any supported format.", no_args_is_help=True)

#: python parameter name -> (config key, flag[, short]): the shared data options, the split's ratios and mode
INSPECT_KEYS: dict[str, tuple[str, ...]] = {
    **DATA_KEYS,
    "format": ("data.format", "--format", "-f"),
    "ratios": ("data.split_ratios", "--ratios"),
    "keep_original": ("data.keep_original_splits", "--keep-original"),
}
SET_HELP = "any data knob as data.field=value (repeatable; applied last); the fields and their help are in balpm/config.py"


@data_app.command("inspect")
@config_options(options_for(INSPECT_KEYS), set_help=SET_HELP)
def inspect_command(
    flags: GivenOptions = None,  # type: ignore[assignment]  (filled by config_options)
    paths: list[str] = typer.Argument(..., help="data files or folders (OpenAI JSON lines, hub parquet, CarperAI, HH-RLHF, CSV/JSONL/parquet)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object instead of the table"),
) -> None:
    """Load the files as a run would and print counts per source and split, prompts, duplicates and bad rows."""
    from balpm.data.inspect import format_report
    from balpm.data.load import load_for_config

    cfg = config_from(flags, INSPECT_KEYS, sections=("data",), fixed={"data.paths": tuple(paths)}).validate()
    report = load_for_config(cfg.data).report
    if as_json:
        typer.echo(json.dumps(report, sort_keys=True))
    else:
        typer.echo(format_report(report))


def register(app: typer.Typer) -> None:
    """Add the ``data`` command group to the app."""
    app.add_typer(data_app, name="data")
