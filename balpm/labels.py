"""The label store of ``balpm label``: annotators' answers for a selection run, in SQLite inside its run folder.

::

    <runs>/<select run>/labels.sqlite
        meta(key TEXT PRIMARY KEY, value TEXT)          run_id, config_hash, schema
        labels(round INTEGER, pair_id TEXT, step INTEGER, label TEXT CHECK IN ('A','B','tie','skip'),
               annotator TEXT, labelled_at TEXT (UTC ISO), revisions INTEGER,
               UNIQUE(round, pair_id))

Guarantees:

* **One row per (round, pair id).** Every write is one ``INSERT ... ON CONFLICT(round, pair_id) DO UPDATE``
  (an upsert) in its own transaction: a refresh, two tabs, two processes or a killed server can never
  duplicate a label; labelling a pair again changes its value, time and annotator (``revisions`` counts
  the writes).
* **WAL mode, ``synchronous=FULL``.** Readers never block the writer and a crash mid-write leaves the last
  committed label. ``FULL`` (not ``NORMAL``) syncs the WAL on every commit, so a label is on disk when the
  click returns even through a power cut; a human clicks a few times a minute, so the cost (one fsync,
  milliseconds) is nothing.
* **Checked on open.** The file must be SQLite (a corrupt or foreign file is refused in one line and never
  written to) and belong to this run folder (``meta.run_id`` and ``meta.config_hash``); a label must be one
  of :data:`LABELS` for a pair of that round's batch.

Export (:func:`preference_table`): the A/B labels as a standard ``prompt, chosen, rejected`` table (ties and
skips left out and counted) in JSONL, CSV or parquet, which ``balpm run --data`` and ``balpm select
--labelled`` read.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from balpm import next_batch

from balpm.experiment import runs
from balpm.errors import ConfigError, DataError

#: the four answers an annotator can give: answer A preferred, answer B preferred, a tie, skipped
LABELS: tuple[str, ...] = ("A", "B", "tie", "skip")
#: the store's file name inside the run folder
DB_NAME = "labels.sqlite"
SCHEMA_VERSION = "1"
_SQLITE_HEADER = b"SQLite format 3\x00"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS labels (
    round INTEGER NOT NULL,
    pair_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    label TEXT NOT NULL CHECK (label IN ('A', 'B', 'tie', 'skip')),
    annotator TEXT NOT NULL,
    labelled_at TEXT NOT NULL,
    revisions INTEGER NOT NULL DEFAULT 1,
    UNIQUE (round, pair_id)
);
"""
_UPSERT = """
INSERT INTO labels (round, pair_id, step, label, annotator, labelled_at, revisions)
VALUES (?, ?, ?, ?, ?, ?, 1)
ON CONFLICT (round, pair_id) DO UPDATE SET
    label = excluded.label, annotator = excluded.annotator, labelled_at = excluded.labelled_at,
    revisions = labels.revisions + 1
"""
LABEL_COLUMNS: tuple[str, ...] = ("round", "pair_id", "step", "label", "annotator", "labelled_at", "revisions")
EXPORT_SUFFIXES: tuple[str, ...] = (".jsonl", ".csv", ".parquet")
_BATCHES: dict[tuple[str, str, str, int], pd.DataFrame] = {}  # (root, run id, config hash, round) -> batch


@dataclass(frozen=True)
class Progress:
    """Labels of one round: ``done`` of ``total`` pairs labelled, by value (``A``, ``B``, ``tie``, ``skip``)."""

    round: int
    done: int
    total: int
    counts: dict[str, int]

    @property
    def complete(self) -> bool:
        return self.done >= self.total


@dataclass(frozen=True)
class Export:
    """A preference table of the A/B labels (``prompt, chosen, rejected``) and how many ties / skips were left out."""

    table: pd.DataFrame
    ties: int
    skips: int


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class LabelStore:
    """The labels of one selection run folder (``balpm select``'s ``select-...`` folder).

    Opening checks the folder is a selection run and that an existing ``labels.sqlite`` is a SQLite
    database of this run; the database is created on the first write. Every method opens its own
    short connection, so one store object serves a Streamlit session or a CLI call alike."""

    def __init__(self, run_dir: str | Path) -> None:
        run_dir = Path(run_dir).expanduser()
        if not (run_dir / "config.yaml").is_file():
            raise ConfigError(f"{str(run_dir)!r} is not a run folder (no config.yaml); give the folder balpm select "
                              "printed after run:")
        self.root = run_dir.resolve().parent
        self.run_id = run_dir.name
        self.run = runs.open_run(self.root, self.run_id)
        if "select" not in self.run.meta:
            raise ConfigError(f"run {self.run_id!r} is not a selection (no meta.select in its config.yaml); label the "
                              "run folder that balpm select made")
        self.config_hash = str(self.run.meta.get("config_hash", ""))
        self.path = runs.safe_path(self.root, f"{self.run_id}/{DB_NAME}")
        self._batches: dict[int, pd.DataFrame] = {}
        if self.path.exists():
            self._check_file()

    # ---- the database ----------------------------------------------------------------------------
    def _check_file(self) -> None:
        """A one-line DataError unless the file is an SQLite database of this run (nothing written)."""
        if not self.path.is_file():
            raise DataError(f"{self.path} is not a file; move it away so balpm label can create its label store")
        with open(self.path, "rb") as fh:
            head = fh.read(len(_SQLITE_HEADER))
        if len(head) and head != _SQLITE_HEADER:
            raise DataError(f"{self.path} is not an SQLite database (corrupt or another file); it was left untouched: "
                            "move it aside and restore the store from a backup, or start labelling afresh")
        try:
            con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
            try:
                con.execute("PRAGMA quick_check").fetchall()
                tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                meta = dict(con.execute("SELECT key, value FROM meta").fetchall()) if "meta" in tables else {}
            finally:
                con.close()
        except sqlite3.DatabaseError as exc:
            raise DataError(f"{self.path} is a corrupt SQLite database ({exc}); it was left untouched: move it aside "
                            "and restore the store from a backup, or start labelling afresh") from None
        if not tables:
            return  # created but never written (killed before its first label)
        if "labels" not in tables or "meta" not in tables:
            raise DataError(f"{self.path} is an SQLite database but not a balpm label store (tables {sorted(tables)}); "
                            "move it aside")
        if meta.get("run_id") != self.run_id or meta.get("config_hash") != self.config_hash:
            raise DataError(f"{self.path} belongs to run {meta.get('run_id')!r}, not to {self.run_id!r} (copied from "
                            "another run folder?); move it back to its own run folder or aside")

    @contextmanager
    def _connect(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        if not self.path.exists() and not write:
            yield None  # type: ignore[misc]  # nothing labelled yet
            return
        con = sqlite3.connect(self.path, timeout=30, isolation_level=None)  # autocommit; explicit transactions
        try:
            con.execute("PRAGMA busy_timeout = 30000")
            con.execute("PRAGMA journal_mode = WAL")
            con.execute("PRAGMA synchronous = FULL")
            if write:
                con.executescript(_SCHEMA)
                con.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('run_id', ?), ('config_hash', ?), "
                            "('schema', ?)", (self.run_id, self.config_hash, SCHEMA_VERSION))
            yield con
        finally:
            con.close()

    def journal_mode(self) -> str:
        """The database's journal mode (``wal`` once the store exists)."""
        with self._connect(write=True) as con:
            return str(con.execute("PRAGMA journal_mode").fetchone()[0])

    # ---- the batches -----------------------------------------------------------------------------
    def last_round(self) -> int:
        """The run folder's last complete round: the batch being labelled."""
        return int(runs.open_run(self.root, self.run_id).last_round)

    def batch(self, rnd: int) -> pd.DataFrame:
        """The batch of round ``rnd`` (:func:`balpm.next_batch.read_batch`), one row per pick in pick order."""
        rnd = int(rnd)
        if rnd not in self._batches:
            last = self.last_round()
            if not 0 <= rnd <= last:
                raise ConfigError(f"run {self.run_id!r} has no round {rnd} (rounds 0-{last}); label one of those")
            # a round's batch never changes once committed: read once per process (the page reruns on every key)
            key = (str(self.root), self.run_id, self.config_hash, rnd)
            if key not in _BATCHES:
                if len(_BATCHES) >= 64:
                    _BATCHES.pop(next(iter(_BATCHES)))
                _BATCHES[key] = next_batch.read_batch(self.root, self.run_id, rnd)
            self._batches[rnd] = _BATCHES[key]
        return self._batches[rnd]

    # ---- writing ---------------------------------------------------------------------------------
    def set(self, rnd: int, pair_id: str, label: str, annotator: str = "") -> None:
        """Save (or change) the label of ``pair_id`` in round ``rnd`` at once (one upsert, one transaction)."""
        if label not in LABELS:
            raise DataError(f"label {label!r} is not one of {', '.join(LABELS)}; give A (answer A preferred), B, tie "
                            "or skip")
        batch = self.batch(rnd)
        where = batch.index[batch["pair_id"] == str(pair_id)]
        if not len(where):
            raise DataError(f"pair {pair_id!r} is not in round {rnd}'s batch of run {self.run_id!r}; label a pair of "
                            "that batch (balpm label --status shows it)")
        step = int(batch.loc[where[0], "step"])
        with self._connect(write=True) as con:
            con.execute(_UPSERT, (int(rnd), str(pair_id), step, label, str(annotator or ""), _now()))

    # ---- reading ---------------------------------------------------------------------------------
    def labels(self, rnd: int | None = None) -> pd.DataFrame:
        """The labels (of round ``rnd``, or all), sorted by round and step: :data:`LABEL_COLUMNS`."""
        with self._connect() as con:
            if con is None:
                rows: list = []
            elif rnd is None:
                rows = con.execute(f"SELECT {', '.join(LABEL_COLUMNS)} FROM labels ORDER BY round, step").fetchall()
            else:
                rows = con.execute(f"SELECT {', '.join(LABEL_COLUMNS)} FROM labels WHERE round = ? ORDER BY step",
                                   (int(rnd),)).fetchall()
        return pd.DataFrame(rows, columns=list(LABEL_COLUMNS)).astype(
            {"round": "int64", "step": "int64", "revisions": "int64", "pair_id": str, "label": str})

    def progress(self, rnd: int) -> Progress:
        """How much of round ``rnd``'s batch is labelled."""
        batch = self.batch(rnd)
        lab = self.labels(rnd)
        lab = lab[lab["pair_id"].isin(set(batch["pair_id"]))]
        counts = {v: int((lab["label"] == v).sum()) for v in LABELS}
        return Progress(int(rnd), len(lab), len(batch), counts)

    def first_unlabelled(self, rnd: int) -> int | None:
        """The position (0-based, pick order) of the first pair of round ``rnd`` without a label; None: all done."""
        batch = self.batch(rnd)
        done = set(self.labels(rnd)["pair_id"])
        for i, pid in enumerate(batch["pair_id"]):
            if pid not in done:
                return i
        return None

    # ---- export ----------------------------------------------------------------------------------
    def preference_table(self) -> Export:
        """Every A/B label of every round as ``prompt, chosen, rejected`` (round, then pick order); ties and
        skips are left out and counted."""
        lab = self.labels()
        parts = []
        for rnd, group in lab.groupby("round", sort=True):
            texts = self.batch(int(rnd)).set_index("pair_id")
            for _, r in group.iterrows():
                if r["label"] not in ("A", "B"):
                    continue
                t = texts.loc[r["pair_id"]]
                a, b = t["answer_a"], t["answer_b"]
                parts.append({"prompt": t["prompt"], "chosen": a if r["label"] == "A" else b,
                              "rejected": b if r["label"] == "A" else a})
        table = pd.DataFrame(parts, columns=["prompt", "chosen", "rejected"])
        return Export(table, int((lab["label"] == "tie").sum()), int((lab["label"] == "skip").sum()))


def check_export_path(path: str | Path) -> Path:
    """The export path, its suffix one of :data:`EXPORT_SUFFIXES` (one-line error otherwise)."""
    path = Path(path)
    if path.suffix.lower() not in EXPORT_SUFFIXES:
        raise ConfigError(f"--export {str(path)!r}: unknown suffix {path.suffix!r}; end it with "
                          f"{', '.join(EXPORT_SUFFIXES)}")
    if path.exists() and not path.is_file():
        raise ConfigError(f"--export {str(path)!r} is a folder; give a file name")
    return path


def export_bytes(table: pd.DataFrame, suffix: str) -> bytes:
    """The preference table's file content for ``suffix`` (``.jsonl``, ``.csv``, ``.parquet``)."""
    return next_batch.batch_bytes(table, suffix)


def export(run_dir: str | Path, path: str | Path) -> Export:
    """Write the run's preference table to ``path`` (format by suffix, atomically); return it."""
    path = check_export_path(path)
    result = LabelStore(run_dir).preference_table()
    path.parent.mkdir(parents=True, exist_ok=True)
    runs.atomic_write_bytes(path, export_bytes(result.table, path.suffix))
    return result


def next_round(run_dir: str | Path, *, progress: bool = False) -> next_batch.SelectResult:
    """Train on every label of the store and select the next batch into the same run folder
    (:func:`balpm.next_batch.next_round`; the store is checked first: a corrupt one stops here)."""
    store = LabelStore(run_dir)
    return next_batch.next_round(store.root / store.run_id, store.labels(), progress=progress)


__all__ = ["DB_NAME", "EXPORT_SUFFIXES", "LABELS", "LABEL_COLUMNS", "Export", "LabelStore", "Progress",
           "check_export_path", "export", "export_bytes", "next_round"]
