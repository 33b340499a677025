"""The Hugging Face ``openai/summarize_from_feedback`` dataset, config ``comparisons``.

Online it is read through :func:`datasets.load_dataset`; offline from a local copy in the hub's layout:
``comparisons/train-00000-of-00001.parquet`` and ``comparisons/validation-00000-of-00001.parquet``
(or ``comparisons/train/0000.parquet``, or the ``.arrow`` files of a ``datasets`` cache). Columns:
``info`` (struct: id, post, title, subreddit, site, article), ``summaries`` (list of struct: text, policy,
note), ``choice``, ``worker``, ``batch``, ``split`` (train / valid1 / valid2), ``extra`` (struct: confidence).
Every row goes through the same :func:`balpm.data.openai_json.parse_comparison` as the JSON lines, so
the two give identical tables.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from balpm.data import limits
from balpm.data.limits import human_bytes
from balpm.data.openai_json import COLUMNS, RowProblem, parse_comparison
from balpm.data.rows import BadRows, RowBuffer, split_from_name
from balpm.errors import DataError, printable

HUB_REPO = "openai/summarize_from_feedback"
HUB_CONFIG = "comparisons"
_BATCH_ROWS = 4096


def check_parquet_size(path: Path, metadata: pq.FileMetaData) -> None:
    """One-line :class:`DataError` when a parquet file's row groups claim more uncompressed bytes than
    ``BALPM_MAX_PARQUET_BYTES`` (a small file that expands without bound), before any row is read."""
    total = sum(max(0, metadata.row_group(i).total_byte_size) for i in range(metadata.num_row_groups))
    if total > limits.MAX_PARQUET_BYTES.value:
        raise DataError(limits.MAX_PARQUET_BYTES.message(
            printable(path), f"its row groups hold {human_bytes(total)} uncompressed", "check that it is the file you meant"))


def check_unique_names(path: Path, names: list[str], within: str = "") -> list[str]:
    """``names``, or one-line :class:`DataError` when a column name occurs twice (pandas and ``to_pylist``
    would silently keep only the last column of that name); ``within`` names the struct column they belong to."""
    seen: dict[str, int] = {}
    what = f"the field {{}} of column {within!r}" if within else "the column {}"
    for i, name in enumerate(names, start=1):
        if name in seen:
            raise DataError(f"{printable(path)}: {what.format(repr(name))} occurs twice ({'fields' if within else 'columns'} {seen[name]} and {i}); "
                            "rename one so that every column name is unique")
        seen[name] = i
    return names


def check_schema_names(path: Path, schema: pa.Schema) -> None:
    """Unique names at every level of ``schema``: its columns and the fields of its (nested) struct columns."""
    check_unique_names(path, list(schema.names))
    stack = [(f.name, f.type) for f in schema]
    while stack:
        name, kind = stack.pop()
        while pa.types.is_list(kind) or pa.types.is_large_list(kind):
            kind = kind.value_type
        if pa.types.is_struct(kind):
            fields = [kind.field(i) for i in range(kind.num_fields)]
            check_unique_names(path, [f.name for f in fields], within=name)
            stack += [(f"{name}.{f.name}", f.type) for f in fields]


def iter_record_batches(path: Path) -> Iterator[pa.RecordBatch]:
    """Stream the record batches of a parquet or Arrow (IPC stream or file) file (names checked unique at every
    level of the schema)."""
    checked = None
    for batch in _record_batches(path):
        if batch.schema is not checked:
            check_schema_names(path, batch.schema)
            checked = batch.schema
        yield batch


def batch_records(path: Path | str, batch: pa.RecordBatch) -> list[dict]:
    """The rows of one record batch as dicts (one-line :class:`DataError` when its values cannot become Python
    values, e.g. a string column that is not UTF-8 or a corrupt buffer). The batch is fully validated first:
    a corrupt Arrow IPC file is memory-mapped as is, and converting its offsets unchecked can crash the process."""
    try:
        batch.validate(full=True)
        return batch.to_pylist()
    except (pa.ArrowException, UnicodeDecodeError, ValueError, OverflowError, IndexError) as exc:
        raise DataError(f"{printable(path)}: cannot read its rows ({type(exc).__name__}: "
                        f"{' '.join(str(exc).split())[:200]}); check or re-create the file") from None


def _record_batches(path: Path) -> Iterator[pa.RecordBatch]:
    try:
        if path.suffix.lower() == ".parquet":
            parquet = pq.ParquetFile(path)
            check_parquet_size(path, parquet.metadata)
            yield from parquet.iter_batches(batch_size=_BATCH_ROWS)
            return
        with pa.memory_map(str(path)) as source:
            try:
                reader = pa.ipc.open_stream(source)
            except pa.ArrowInvalid:
                reader = pa.ipc.open_file(source)
                for i in range(reader.num_record_batches):
                    yield reader.get_batch(i)
                return
            yield from reader
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: cannot read it as {path.suffix.lstrip('.') or 'arrow'} ({' '.join(str(exc).split())[:200]}); check the file") from None


def read_schema_names(path: Path) -> list[str]:
    """Column names of a parquet or Arrow file, without reading its rows (one-line error when one occurs twice)."""
    try:
        if path.suffix.lower() == ".parquet":
            return check_unique_names(path, list(pq.read_schema(path).names))
        with pa.memory_map(str(path)) as source:
            try:
                return check_unique_names(path, list(pa.ipc.open_stream(source).schema.names))
            except pa.ArrowInvalid:
                return check_unique_names(path, list(pa.ipc.open_file(source).schema.names))
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: cannot read its schema ({' '.join(str(exc).split())[:200]}); check the file") from None


def hub_files(path: Path) -> list[Path]:
    """The parquet/arrow files of a local hub copy: ``path`` itself, ``path/comparisons/**`` or ``path/**``."""
    if path.is_file():
        return [path]
    base = path / HUB_CONFIG if (path / HUB_CONFIG).is_dir() else path
    files = sorted(p for p in base.rglob("*") if p.suffix.lower() in (".parquet", ".arrow") and p.is_file())
    if not files:
        raise DataError(f"{path}: no .parquet or .arrow files found; point at the folder holding comparisons/*.parquet")
    return files


def parse_batches(batches: Iterator[pa.RecordBatch], name: str, bad: BadRows, default_split: str | None) -> pd.DataFrame:
    """Hub-layout record batches -> raw frame (``line`` = 1-based row number in the file)."""
    buf = RowBuffer(COLUMNS)
    row_no = 0
    for batch in batches:
        missing = {"info", "summaries", "choice"} - set(batch.schema.names)
        if missing:
            raise DataError(f"{name}: missing column(s) {sorted(missing)}; this is not the hub's comparisons layout (use --format carper or table)")
        for obj in batch_records(name, batch):
            row_no += 1
            if obj.get("split") is None and default_split is not None:
                obj["split"] = default_split
            try:
                buf.append_values(parse_comparison(obj) + (name, row_no))
            except RowProblem as problem:
                bad.add(name, row_no, problem.reason, problem.detail, unit="row")
    return buf.frame()


def load_hub_local(path: Path, bad: BadRows) -> pd.DataFrame:
    """A local copy of the hub's comparisons config (folder or single parquet/arrow file)."""
    frames = [parse_batches(iter_record_batches(f), str(f), bad, split_from_name(f)) for f in hub_files(path)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(COLUMNS))


def load_hub_online(repo: str = HUB_REPO, bad: BadRows | None = None, config: str = HUB_CONFIG) -> pd.DataFrame:
    """Download (or reuse the ``datasets`` cache of) ``repo``/``config`` and parse every split."""
    bad = bad or BadRows()
    try:
        import datasets

        dsets = datasets.load_dataset(repo, config)
    except Exception as exc:  # noqa: BLE001 - any hub/network failure becomes one line
        offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") else ""
        raise DataError(
            f"cannot load {repo!r} config {config!r} from the Hugging Face hub{offline}: "
            f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}; download it (see data/README.md) and pass the local folder"
        ) from None
    frames = []
    for split_name, dset in dsets.items():
        table = dset.data.table if hasattr(dset.data, "table") else dset.data
        frames.append(parse_batches(iter(table.to_batches(_BATCH_ROWS)), f"hf://{repo}/{config}/{split_name}", bad, split_name))
    return pd.concat(frames, ignore_index=True)


def is_hub_id(text: str) -> bool:
    """True for a hub dataset id such as ``openai/summarize_from_feedback`` (or ``hf://...``) that is not a local path."""
    if text.startswith("hf://"):
        return True
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not Path(text).exists() and not text.startswith((".", "~"))


def load_hub(path: str | Path, bad: BadRows) -> pd.DataFrame:
    """Local hub-layout copy when ``path`` exists, else the hub itself (``path`` is the repo id)."""
    local = Path(path)
    if local.exists():
        return load_hub_local(local, bad)
    text = str(path)
    repo = text.removeprefix("hf://")
    if not is_hub_id(text):
        raise DataError(f"{path}: no such file or folder; pass a local hub copy or a hub id like {HUB_REPO}")
    return load_hub_online(repo, bad)
