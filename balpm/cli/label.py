"""CLI command ``balpm label RUN_DIR``: label a ``balpm select`` batch in the dashboard, export, next round.

Without a flag it serves the dashboard (the same server and Host-header guard as ``balpm dashboard``) on the
runs folder holding ``RUN_DIR``, landing on the annotation page for that run (``BALPM_LABEL_RUN``). The
flags act and exit: ``--status`` prints the progress of the batch being labelled, ``--export FILE`` writes the
A/B labels as a ``prompt, chosen, rejected`` table, ``--next-round`` trains on every label and selects the
next batch into the same run folder (engine: :mod:`balpm.labels`, its ``next_round`` calling
:func:`balpm.next_batch.next_round`).
"""
from __future__ import annotations

import getpass
import json
import os
from pathlib import Path
from typing import Optional

import typer

from balpm.cli.dashboard import serve
from balpm.errors import ConfigError

#: environment variables the annotation page reads: the run it opens on, and the annotator's name
LABEL_RUN_ENV = "BALPM_LABEL_RUN"
ANNOTATOR_ENV = "BALPM_ANNOTATOR"


def default_annotator() -> str:
    """``$BALPM_ANNOTATOR``, else the login name (``getpass.getuser``), else ``annotator``."""
    try:
        return os.environ.get(ANNOTATOR_ENV) or getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name (a container without a passwd entry)
        return "annotator"


def label_command(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="the run folder balpm select made "
                                   "(runs/select-<policy>-s<seed>-<hash>)"),
    export: Optional[Path] = typer.Option(None, "--export", metavar="FILE", help="write the A/B labels as a "
                                          "prompt, chosen, rejected table (.jsonl, .csv, .parquet) and exit"),
    next_round: bool = typer.Option(False, "--next-round", help="train on every label so far and select the next "
                                    "batch into the same run folder, then exit (the batch must be fully labelled)"),
    status: bool = typer.Option(False, "--status", help="print the labelling progress and exit"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", metavar="FILE", help="with --next-round: also write the "
                                       "new batch file (.jsonl, .csv, .parquet)"),
    annotator: Optional[str] = typer.Option(None, "--annotator", metavar="NAME", help="the name saved with each "
                                            "label (default: $BALPM_ANNOTATOR or your login name)"),
    port: int = typer.Option(8501, "--port", help="port to serve on"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to bind (127.0.0.1: this machine only; the server "
                                                         "has no authentication)"),
    open_browser: bool = typer.Option(False, "--open/--no-open", help="open a browser tab"),
    allow_host: list[str] = typer.Option([], "--allow-host", metavar="NAME",
                                         help="also answer requests for this host name (repeatable)"),
    as_json: bool = typer.Option(False, "--json", help="with --status, --export or --next-round: print one JSON object"),
) -> None:
    """Label the batch of a balpm select run pair by pair in the dashboard (keys a, b, t, s; left arrow: back),
    saving each label at once to RUN_DIR/labels.sqlite; or export the labels, or select the next round."""
    from balpm import labels
    from balpm import next_batch as engine

    if sum([export is not None, next_round, status]) > 1:
        raise ConfigError("give one of --status, --export, --next-round at a time")
    if out is not None and not next_round:
        raise ConfigError("--out writes the new batch of --next-round; add --next-round or drop --out")
    if out is not None:
        engine.check_batch_path(out)
    if export is not None:
        labels.check_export_path(export)
    store = labels.LabelStore(run_dir)  # checks the folder and its label store before anything else
    if status:
        rnd = store.last_round()
        prog = store.progress(rnd)
        first = store.first_unlabelled(rnd)
        doc = {"run_id": store.run_id, "round": rnd, "done": prog.done, "total": prog.total, **prog.counts,
               "first_unlabelled": first, "labels_total": len(store.labels())}
        if as_json:
            typer.echo(json.dumps(doc))
            return
        counts = ", ".join(f"{k} {v}" for k, v in prog.counts.items())
        typer.echo(f"{store.run_id}: round {rnd}, {prog.done} of {prog.total} labelled ({counts})")
        typer.echo("next: balpm label --next-round" if prog.complete else f"next unlabelled: pair {first + 1}")
        return
    if export is not None:
        result = labels.export(run_dir, export)
        doc = {"out": str(export), "pairs": len(result.table), "ties": result.ties, "skips": result.skips}
        typer.echo(json.dumps(doc) if as_json else f"{len(result.table)} preference pairs -> {export} "
                   f"({result.ties} ties and {result.skips} skips left out)")
        return
    if next_round:
        result = labels.next_round(run_dir)
        wrote = engine.write_batch(result.batch, out) if out is not None else False
        doc = {"run_id": result.run_id, "round": result.round, "picks": len(result.batch), "reused": result.reused,
               "out": str(out) if out is not None else None, "out_written": wrote}
        typer.echo(json.dumps(doc) if as_json else f"round {result.round}: {len(result.batch)} pairs to label in "
                   f"{result.run_dir}" + (" (already selected)" if result.reused else ""))
        return
    os.environ[LABEL_RUN_ENV] = store.run_id
    os.environ[ANNOTATOR_ENV] = annotator or default_annotator()
    code = serve(store.root, port=port, host=host, open_browser=open_browser, allow_hosts=allow_host)
    if code not in (0, -2, 130):
        raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add ``balpm label`` to the app."""
    app.command("label")(label_command)
