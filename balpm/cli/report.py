"""CLI command ``balpm report``: per-policy results over seeds, label efficiency, learning-curve HTML."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def report_command(
    paths: list[Path] = typer.Argument(..., help="run folders or runs roots (every run inside)"),
    baseline: str = typer.Option("random", "--baseline", help="policy label to compare against"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object instead of the table"),
    html: Optional[Path] = typer.Option(None, "--html", help="write the learning curves to this standalone HTML file"),
    smooth: int = typer.Option(3, "--smooth", help="trailing moving-average window in rounds (1: none)"),
    n_boot: int = typer.Option(1000, "--n-boot", help="bootstrap resamples for the confidence intervals"),
) -> None:
    """Summarise runs per policy: final log-likelihoods, AULC and 'X% fewer labels than the baseline'."""
    from balpm import report

    summary = report.report(paths, baseline=baseline, smooth=smooth, n_boot=n_boot)
    if html is not None:
        report.write_html(summary, html)
        summary["html"] = str(html)
    if as_json:
        typer.echo(report.to_json(summary))
    else:
        typer.echo(report.format_text(summary))
        if html is not None:
            typer.echo(f"learning curves: {html}")


def register(app: typer.Typer) -> None:
    """Add ``report`` to the app."""
    app.command("report")(report_command)
