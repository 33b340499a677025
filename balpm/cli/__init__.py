"""The ``balpm`` command line (typer). Each sub-module registers one group of commands.

Errors in user input (:class:`balpm.errors.BalpmError`) are printed as one line, exit code 2.
"""
from __future__ import annotations

import os
import sys

# Idle OpenMP threads sleep instead of spinning (set before torch loads): on a 2-core machine shared
# with another process, spinning threads made a bare `balpm run` about 3x slower (34.6 s -> 12.6 s).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer

from balpm.errors import BalpmError


def click_modules() -> list:
    """The click implementations in play: typer's vendored copy (typer >= 0.2x) and/or click itself."""
    mods = []
    try:
        import typer._click as vendored
        import typer._click.core  # noqa: F401
        import typer._click.exceptions  # noqa: F401
        import typer._click.globals  # noqa: F401

        mods.append(vendored)
    except ImportError:
        pass
    try:
        import click
        import click.exceptions  # noqa: F401

        mods.append(click)
    except ImportError:
        pass
    return mods

app = typer.Typer(
    name="balpm",
    help="BAL-PM: Bayesian active learning for preference modelling - data, features, runs, reports, dashboard.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

from balpm.cli import dashboard as _dashboard  # noqa: E402
from balpm.cli import data as _data  # noqa: E402
from balpm.cli import demo as _demo  # noqa: E402
from balpm.cli import featurize as _featurize  # noqa: E402
from balpm.cli import report as _report  # noqa: E402
from balpm.cli import run as _run  # noqa: E402

for _module in (_data, _featurize, _run, _report, _dashboard, _demo):
    _module.register(app)


def _version(value: bool) -> None:
    if value:
        import balpm

        typer.echo(f"balpm {balpm.__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, metavar="",
                                       help="print the version and exit")) -> None:
    """BAL-PM: Bayesian active learning for preference modelling - data, features, runs, reports, dashboard."""


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning a :class:`BalpmError` into one line on stderr (exit code 2).

    Every failure exits non-zero: ``typer.Exit(code)`` (which click returns rather than raises under
    ``standalone_mode=False``) becomes ``sys.exit(code)``; success returns normally.
    """
    try:
        code = app(args=argv, standalone_mode=False)
    except BalpmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except Exception as exc:  # click usage errors and aborts (typer's vendored click, or click itself)
        clicks = click_modules()
        if isinstance(exc, tuple(m.exceptions.ClickException for m in clicks)):
            exc.show()
            sys.exit(exc.exit_code)
        aborts = tuple(m.exceptions.Abort for m in clicks) + ((typer.Abort,) if hasattr(typer, "Abort") else ())
        if isinstance(exc, aborts):
            sys.exit(1)
        raise
    if isinstance(code, int) and not isinstance(code, bool) and code != 0:
        sys.exit(code)
