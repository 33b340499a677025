"""The ``balpm`` command line (typer). Each sub-module registers one group of commands.

Errors in user input (:class:`balpm.errors.BalpmError`) are printed as one line, exit code 2.
"""
from __future__ import annotations

import sys

import typer

from balpm.errors import BalpmError

app = typer.Typer(
    name="balpm",
    help="BAL-PM: Bayesian active learning for preference modelling - data, features, runs, reports, dashboard.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

from balpm.cli import data as _data  # noqa: E402
from balpm.cli import featurize as _featurize  # noqa: E402
from balpm.cli import run as _run  # noqa: E402
from balpm.cli import report as _report  # noqa: E402
from balpm.cli import dashboard as _dashboard  # noqa: E402
from balpm.cli import demo as _demo  # noqa: E402

for _module in (_data, _featurize, _run, _report, _dashboard, _demo):
    _module.register(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning a :class:`BalpmError` into one line on stderr."""
    try:
        app(args=argv, standalone_mode=False)
    except BalpmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except Exception as exc:  # click usage errors and aborts
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(1)
        raise
