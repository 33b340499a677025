"""CLI command ``balpm report``: every policy against the baseline per quality metric (balpm.evidence.stats), learning-curve HTML."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from balpm.errors import printable


def _terminal_safe(text: str) -> str:
    """The text report with every line terminal-safe: run ids and labels come from folder names and configs
    (an ESC byte or a bidi override there must not reach the terminal raw)."""
    return "\n".join(printable(line) for line in text.split("\n"))


def report_command(
    paths: list[Path] = typer.Argument(..., help="run folders or runs roots (every run inside)"),
    baseline: str = typer.Option("random", "--baseline", help="policy label to compare against"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object instead of the table"),
    html: Optional[Path] = typer.Option(None, "--html", help="write the learning curves to this standalone HTML file"),
    smooth: int = typer.Option(3, "--smooth", help="trailing moving-average window in rounds for the DRAWN curves "
                               "(HTML, JSON 'curves'; 1: none); never changes a statistic"),
    n_boot: int = typer.Option(1000, "--n-boot", help="bootstrap resamples for the CIs shown beside the t intervals "
                               "and for the fewer-labels figure"),
    seed: int = typer.Option(0, "--seed", help="seed of the bootstrap and of the A/A split draw"),
    metrics: Optional[str] = typer.Option(None, "--metrics", help="comma-separated quality metrics for the text "
                                          "tables, e.g. test_log_likelihood,test_accuracy (default: all; "
                                          "--json always has all)"),
    variants: bool = typer.Option(False, "--variants", help="also compare ablation variants (balpm sweep --ablations, "
                                  "--uncertainty none|predictive, --minimize-entropy, --estimator kl); left out "
                                  "by default"),
    worlds: bool = typer.Option(False, "--worlds", help="results over many worlds (a balpm worlds sweep): per world "
                                "and comparison the paired AULC effect of test log-likelihood as a share of the "
                                "world's headroom, verdicts under Holm across the table, the share of worlds with "
                                "each verdict, the regime map and the mechanism per world"),
) -> None:
    """Every policy against the baseline per metric: paired AULC and final differences over seeds with 95%
    Student-t CIs and a verdict (better / worse / no detectable difference), the A/A check, the ceiling of
    'full' runs with its headroom, and 'X% fewer labels' only behind a 'better' verdict. Every verdict comes with
    its minimal detectable effect (80% power) and, across the table, Holm's step-down control. With --worlds:
    the same over the worlds of a balpm worlds sweep (balpm.evidence.worlds_report)."""
    from balpm.evidence import report

    if worlds:
        from balpm.evidence import worlds_report

        if metrics or baseline != "random":
            raise typer.BadParameter("--worlds reports test log-likelihood against random; drop --metrics / --baseline")
        summary = worlds_report.worlds_report(paths, n_boot=n_boot, seed=seed)
        if html is not None:
            worlds_report.write_html(summary, html)
            summary["html"] = str(html)
        typer.echo(worlds_report.to_json(summary) if as_json else _terminal_safe(worlds_report.format_text(summary)))
        if html is not None and not as_json:
            typer.echo(f"distributions and regime map: {printable(html)}")
        return
    chosen = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None
    if chosen:
        report.format_text({"settings": [], "policies": [], "skipped": [], "baseline": baseline, "runs": 0,
                            "level": 0.95}, chosen)  # an unknown metric stops here, before any work
    summary = report.report(paths, baseline=baseline, smooth=smooth, n_boot=n_boot, seed=seed, variants=variants)
    if html is not None:
        report.write_html(summary, html)
        summary["html"] = str(html)
    if as_json:
        typer.echo(report.to_json(summary))
    else:
        typer.echo(_terminal_safe(report.format_text(summary, chosen)))
        if html is not None:
            typer.echo(f"learning curves: {printable(html)}")


def register(app: typer.Typer) -> None:
    """Add ``report`` to the app."""
    app.command("report")(report_command)
