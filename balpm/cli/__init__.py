"""The ``balpm`` command line (typer). Each sub-module registers one group of commands.

Every error is printed as one line ``error: ...`` on stderr (:func:`main`): exit code 2 for bad input
(:class:`balpm.errors.BalpmError`), 1 for the environment (disk full, read-only, permissions, memory),
130 on Ctrl-C; the traceback only with the global ``--debug`` flag or ``BALPM_DEBUG=1``.
"""
from __future__ import annotations

import errno
import os
import sys
import traceback

# Idle OpenMP threads sleep instead of spinning (set before torch loads): on a 2-core machine shared
# with another process, spinning threads made a bare `balpm run` about 3x slower (34.6 s -> 12.6 s).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer

from balpm.cli.options import click_modules  # (re-exported: the CLI and its tests use it)
from balpm.errors import BalpmError, printable

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
from balpm.cli import job as _job  # noqa: E402
from balpm.cli import label as _label  # noqa: E402
from balpm.cli import plant as _plant  # noqa: E402
from balpm.cli import report as _report  # noqa: E402
from balpm.cli import run as _run  # noqa: E402
from balpm.cli import select as _select  # noqa: E402
from balpm.cli import worlds as _worlds  # noqa: E402

for _module in (_data, _featurize, _plant, _run, _select, _label, _report, _dashboard, _demo, _worlds, _job):
    _module.register(app)


def _version(value: bool) -> None:
    if value:
        import balpm

        typer.echo(f"balpm {balpm.__version__}")
        raise typer.Exit()


_DEBUG = False  # set by the global --debug flag (or BALPM_DEBUG=1): tracebacks instead of one line


def _set_debug(value: bool) -> None:
    global _DEBUG
    if value:
        _DEBUG = True


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, metavar="",
                                       help="print the version and exit"),
          debug: bool = typer.Option(False, "--debug", callback=_set_debug, is_eager=True, metavar="",
                                     help="on an error, print the full traceback, not one line (also BALPM_DEBUG=1)")
          ) -> None:
    """BAL-PM: Bayesian active learning for preference modelling - data, features, runs, reports, dashboard."""


def debug_enabled() -> bool:
    """Whether errors show their traceback: the global ``--debug`` flag or ``BALPM_DEBUG=1``."""
    return _DEBUG or os.environ.get("BALPM_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


_OS_HINTS = {
    errno.ENOSPC: "free some space or write elsewhere",
    errno.EDQUOT: "the disk quota is full; free some space or write elsewhere",
    errno.EROFS: "the filesystem is read-only; write elsewhere",
    errno.EACCES: "check the permissions, or write elsewhere",
    errno.EPERM: "check the permissions, or write elsewhere",
    errno.ENOENT: "check the path",
    errno.EEXIST: "a file is in the way of a folder; check the path",
    errno.ENOTDIR: "a part of the path is a file, not a folder; check the path",
}


def _os_error_line(exc: OSError) -> str:
    """One line for an OSError: its strerror (or text), the path(s) made printable, and what to do."""
    what = exc.strerror or " ".join(str(exc).split()) or type(exc).__name__
    paths = [p for p in (exc.filename, exc.filename2) if p is not None]
    where = " -> ".join("'" + printable(os.fsdecode(p) if isinstance(p, (bytes, os.PathLike)) else p) + "'" for p in paths)
    hint = _OS_HINTS.get(exc.errno or -1, "an environment problem (disk, permissions, files); rerun with --debug "
                                          "for the traceback")
    return f"{what}{': ' + where if where else ''} ({hint})"


def error_line(exc: BaseException) -> tuple[str, int]:
    """The one ``error: ...`` line for an exception and the exit code: 2 bad input (BalpmError, a name or text
    that is not valid Unicode, input nested too deeply), 1 environment (OSError, MemoryError) or a bug, 130 Ctrl-C."""
    if isinstance(exc, BalpmError):
        return f"error: {exc}", 2
    if isinstance(exc, KeyboardInterrupt):
        return "error: interrupted (Ctrl-C); a run resumes from its last complete round with balpm run --resume", 130
    if isinstance(exc, MemoryError):
        return ("error: out of memory (MemoryError); use a smaller input (--set data.subsample=N) or a machine "
                "with more memory"), 1
    if isinstance(exc, UnicodeError):
        return (f"error: text that is not valid Unicode ({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); "
                "use UTF-8 names and text"), 2
    if isinstance(exc, RecursionError):
        return "error: an input is nested too deeply to read (RecursionError); check the file", 2
    if isinstance(exc, OSError):
        return f"error: {_os_error_line(exc)}", 1
    return (f"error: internal error ({type(exc).__name__}: {' '.join(str(exc).split())[:300]}); rerun with --debug "
            "(or BALPM_DEBUG=1) for the traceback and report it"), 1


def _print_error(line: str) -> None:
    """Write one line on stderr, whatever the terminal's encoding (unprintable characters escaped)."""
    line = printable(line)
    enc = getattr(sys.stderr, "encoding", None) or "utf-8"
    try:
        print(line.encode(enc, "backslashreplace").decode(enc, "replace"), file=sys.stderr, flush=True)
    except (OSError, ValueError):  # stderr closed: nothing more to do
        pass


def _silence_stdout() -> None:
    """Point file descriptor 1 at /dev/null, so that output still buffered is not flushed again (and failed
    again, as a second message) when the interpreter exits."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError, AttributeError):  # stdout is not a file (a test's capture): nothing to do
        pass


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; every exception becomes ONE ``error: ...`` line on stderr.

    Exit codes: 2 for bad input (:class:`BalpmError` and click's usage errors), 1 for the environment
    (OSError: disk full, read-only, permissions; MemoryError) and for bugs, 130 on Ctrl-C. The traceback
    is printed only with the global ``--debug`` flag or ``BALPM_DEBUG=1``. ``typer.Exit(code)`` (which
    click returns rather than raises under ``standalone_mode=False``) becomes ``sys.exit(code)``.
    """
    global _DEBUG
    _DEBUG = False
    try:
        code = app(args=argv, standalone_mode=False)
        try:  # a full disk or closed pipe on stdout is reported here, not at interpreter exit
            sys.stdout.flush()
        except OSError as exc:
            exc.filename = exc.filename or "standard output"
            raise
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - the one place every error becomes one line
        clicks = click_modules()
        if isinstance(exc, tuple(m.exceptions.ClickException for m in clicks)):
            try:
                exc.show()
            except UnicodeError:  # a usage error quoting an argument that is not valid Unicode
                _print_error(f"error: {exc.format_message()}")
            sys.exit(exc.exit_code)
        if isinstance(exc, tuple(m.exceptions.Abort for m in clicks if hasattr(m.exceptions, "Abort"))):
            if isinstance(exc.__context__, KeyboardInterrupt):
                exc = exc.__context__
            else:
                _print_error("error: aborted")
                sys.exit(1)
        if isinstance(exc, OSError):
            try:
                sys.stdout.flush()
            except (OSError, ValueError):
                _silence_stdout()  # what stdout could not take is dropped, not retried (and failed) at exit
                if exc.filename is None:
                    exc.filename = "standard output"
        if isinstance(exc, BrokenPipeError):  # the reader of our output went away (balpm runs | head): as click
            sys.exit(1)
        if debug_enabled():
            traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        line, status = error_line(exc)
        _print_error(line)
        sys.exit(status)
    if isinstance(code, int) and not isinstance(code, bool) and code != 0:
        if code == 130:  # typer turns a KeyboardInterrupt into Exit(130): the same one line as above
            _print_error(error_line(KeyboardInterrupt())[0])
        sys.exit(code)
