"""Fuzz harness for the data loaders: every input loads, or raises a one-line BalpmError - nothing else.

Inputs (all built here, seeded by :data:`SEED`): byte mutations of seed files in every format the loaders
read (OpenAI comparison JSON lines, HH-RLHF, CarperAI ``save_to_disk``, CSV/TSV/JSONL/JSON-array/parquet/
Arrow tables, ``.gz`` variants; the seed rows are a few lines of the real files when present, else
hand-made), structure-aware generators per format (fields of every wrong type, empty / zero-width /
NFD / BOM / lone-surrogate text, duplicate columns, metadata of the wrong JSON type), decompression bombs
(128 MiB of NULs, also after valid rows, 320 MiB of blank lines, one 128 MiB CSV field, a quoted field of 120,000
lines, a 4 GiB sparse file, 200,000-deep JSON, 300,000 malformed lines) and hostile file
names (ESC, newline, bidi override, undecodable bytes, upper-case extensions).

Each case is loaded by ``load_table`` in ONE child process with ``RLIMIT_AS`` 3 GiB; per case the harness
asserts: the outcome is a table or a :class:`~balpm.errors.BalpmError` whose message is one printable line;
no other exception; under :data:`CASE_SECONDS`; a loaded table can be written to parquet and its report
printed. The child's peak RSS must stay under :data:`PEAK_RSS_MB`.

``BALPM_FUZZ_N=5000 pytest tests/test_fuzz_data.py -s`` runs the long mode (N generated cases; it prints
cases tried, outcomes and peak RSS). CI runs :data:`N_CI` with the fixed seed.
"""
from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

SEED = 20261206
N_CI = 160
CASE_SECONDS = 30.0
PEAK_RSS_MB = 1500
ADDRESS_SPACE = 3 << 30
REPO = Path(__file__).resolve().parents[1]

# ----------------------------------------------------------------------------- seed rows


def _hand_rows() -> list[dict[str, Any]]:
    posts = ["I (24F) asked my landlord to fix the heating.\nHe said no.", "Caf\u00e9 owner here: a question about tips.",
             "My dog ate a sock. What now?"]
    return [{"info": {"id": f"t3_{i}", "post": p, "title": f"title {i}", "subreddit": "tifu"}, "split": "train",
             "summaries": [{"text": f" summary A {i}", "policy": "sup1", "note": None},
                           {"text": f" summary B {i}", "policy": "ref", "note": None}],
             "choice": i % 2, "worker": f"w{i}", "batch": "batch1", "extra": {"confidence": 7}}
            for i, p in enumerate(posts)]


def seed_rows() -> list[dict[str, Any]]:
    """A few OpenAI comparison rows: the first lines of the real TL;DR and CNN/DM files when present."""
    env = os.environ.get("BALPM_SHARED_DATA")
    folder = (Path(env) if env else REPO.parent / "shared" / "data") / "summarize_from_feedback" / "comparisons"
    rows: list[dict[str, Any]] = []
    for name, n in (("batch13.json", 3), ("batch0_cnndm.json", 1)):
        path = folder / name
        if path.is_file():
            with open(path, encoding="utf-8") as fh:
                rows += [json.loads(next(fh)) for _ in range(n)]
    return rows or _hand_rows()


def _table_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        s = r["summaries"]
        out.append({"prompt": r["info"].get("post") or r["info"].get("article"), "chosen": s[r["choice"]]["text"],
                    "rejected": s[1 - r["choice"]]["text"], "split": r.get("split") or "train"})
    return out


def _hh_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"chosen": f"\n\nHuman: {t['prompt'][:300]}\n\nAssistant: {t['chosen']}",
             "rejected": f"\n\nHuman: {t['prompt'][:300]}\n\nAssistant: {t['rejected']}"} for t in _table_rows(rows)]


def _jsonl(records: list[Any]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def _csv(records: list[dict[str, Any]], sep: str = ",") -> bytes:
    import csv

    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=sep, lineterminator="\n")
    cols = list(records[0]) if records else ["prompt", "chosen", "rejected"]
    writer.writerow(cols)
    for r in records:
        writer.writerow([r.get(c) for c in cols])
    return buf.getvalue().encode("utf-8", "surrogatepass")


def _parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _arrow(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def seed_files(rows: list[dict[str, Any]]) -> dict[str, bytes]:
    """Seed files of every format, by file name."""
    table_rows = _table_rows(rows)
    pa_table = pa.Table.from_pylist(table_rows)
    return {
        "openai.json": _jsonl(rows),
        "openai.json.gz": gzip.compress(_jsonl(rows), mtime=0),
        "hh.jsonl": _jsonl(_hh_rows(rows)),
        "hh.jsonl.gz": gzip.compress(_jsonl(_hh_rows(rows)), mtime=0),
        "table.jsonl": _jsonl(table_rows),
        "table.json": json.dumps(table_rows, indent=1).encode(),
        "table.csv": _csv(table_rows),
        "table.csv.gz": gzip.compress(_csv(table_rows), mtime=0),
        "table.tsv": _csv(table_rows, "\t"),
        "table.parquet": _parquet(pa_table),
        "table.arrow": _arrow(pa_table),
    }


# ----------------------------------------------------------------------------- generators

_SNIPPETS: tuple[bytes, ...] = (
    b"\x00", b"\x00" * 300, b"\n", b"\n" * 50, b"\r\n", b"\xef\xbb\xbf", "\u200b".encode(), "\u202e".encode(),
    b"\\ud800", b"\\udfff", b'"', b",", b"\t", b"{", b"}", b"[", b"]", b"\x1b[31m", b"\xff\xfe", b"\xc3", b"null",
    b'"\\u0000"', b"1e999", b"-0", b"[" * 200, b"{\"a\":" * 100, "e\u0301".encode(), b"\\", b"\x7f", b"PK\x03\x04",
)


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """1-4 random byte-level mutations: bit flips, deletions, insertions of hostile snippets, duplication, truncation."""
    buf = bytearray(data)
    for _ in range(int(rng.integers(1, 5))):
        op = int(rng.integers(0, 6))
        at = int(rng.integers(0, len(buf) + 1))
        if op == 0 and buf:
            for _ in range(int(rng.integers(1, 9))):
                i = int(rng.integers(0, len(buf)))
                buf[i] ^= 1 << int(rng.integers(0, 8))
        elif op == 1 and buf:
            del buf[at:at + int(rng.integers(1, 64))]
        elif op == 2:
            buf[at:at] = _SNIPPETS[int(rng.integers(0, len(_SNIPPETS)))]
        elif op == 3:
            buf[at:at] = rng.integers(0, 256, int(rng.integers(1, 32)), dtype=np.uint8).tobytes()
        elif op == 4 and buf:
            span = bytes(buf[at:at + int(rng.integers(1, 200))])
            buf[at:at] = span * int(rng.integers(1, 4))
        elif op == 5:
            del buf[at:]
    return bytes(buf)


_TEXTS: tuple[Any, ...] = (
    "a real enough text", "", "   ", "\u200b\u200b", "\ufeff", "\ufeffwith a BOM", "\ud800", "x\udfffy", "Cafe\u0301",
    "\x1b[2J", "line\nbreaks\r\n", "\u202eevil", "x" * 100_000, None, 0, 1, -1, 2, 1.5, float("nan"), True, False,
    [], ["a", "b"], {}, {"text": "t"}, [[[["deep"]]]],
)


def _value(rng: np.random.Generator) -> Any:
    return _TEXTS[int(rng.integers(0, len(_TEXTS)))]


def _text_or(rng: np.random.Generator, good: str) -> Any:
    return good if rng.random() < 0.6 else _value(rng)


def generated_openai(rows: list[dict[str, Any]], rng: np.random.Generator) -> list[Any]:
    """OpenAI comparison records with random fields replaced by hostile values (and extra keys, missing keys)."""
    out: list[Any] = []
    for r in rows:
        rec = json.loads(json.dumps(r))
        info = rec["info"]
        for key in ("post", "title", "subreddit", "id"):
            if key in info and rng.random() < 0.3:
                info[key] = _value(rng)
        for s in rec["summaries"]:
            for key in ("text", "policy", "note"):
                if rng.random() < 0.2:
                    s[key] = _value(rng)
        for key in ("choice", "worker", "split", "batch", "extra"):
            if rng.random() < 0.2:
                rec[key] = _value(rng)
        if rng.random() < 0.1:
            rec["summaries"] = _value(rng)
        if rng.random() < 0.1:
            del rec[list(rec)[int(rng.integers(0, len(rec)))]]
        if rng.random() < 0.05:
            rec = _value(rng)
        out.append(rec)
    return out


def generated_table(rows: list[dict[str, Any]], rng: np.random.Generator) -> list[dict[str, Any]]:
    out = []
    for t in _table_rows(rows):
        out.append({k: _text_or(rng, v) for k, v in t.items()})
    return out


def _strings_only(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: (v if isinstance(v, str) or v is None else json.dumps(v)) for k, v in r.items()} for r in records]


def generated_case(kind: str, rows: list[dict[str, Any]], rng: np.random.Generator, folder: Path) -> list[str]:
    """One structure-aware input of ``kind``; returns the paths to load."""
    if kind == "openai":
        path = folder / ("gen.json.gz" if rng.random() < 0.3 else "gen.json")
        data = "".join(json.dumps(r, allow_nan=True) + "\n" for r in generated_openai(rows, rng)).encode("utf-8", "surrogatepass")
        path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
        return [str(path)]
    if kind == "hh":
        recs = [{k: _text_or(rng, v) for k, v in r.items()} for r in _hh_rows(rows)]
        if rng.random() < 0.5:  # transcripts that go on after the answer, or lack turns
            for r in recs:
                if isinstance(r.get("chosen"), str):
                    r["chosen"] += ["\n\nHuman: more?", "", "\n\nAssistant:", "\n\nHuman:\u200b"][int(rng.integers(0, 4))]
        path = folder / "gen_hh.jsonl"
        path.write_bytes("".join(json.dumps(r) + "\n" for r in recs).encode("utf-8", "surrogatepass"))
        return [str(path)]
    if kind in ("csv", "tsv"):
        recs = _strings_only(generated_table(rows, rng))
        path = folder / f"gen.{kind}"
        data = _csv(recs, "," if kind == "csv" else "\t")
        if rng.random() < 0.3:  # a duplicate header name, or a BOM before a quoted field mid-file
            data = data.replace(b"rejected", b"chosen", 1) if rng.random() < 0.5 else data.replace(b'\n"', b'\n\xef\xbb\xbf"', 1)
        path.write_bytes(data)
        return [str(path)]
    if kind in ("parquet", "arrow"):
        recs = _strings_only(generated_table(rows, rng))
        names = ["prompt", "chosen", "rejected", "split"]
        if rng.random() < 0.3:
            names[int(rng.integers(0, 4))] = names[int(rng.integers(0, 4))]  # duplicate column names
        try:
            arrays = [pa.array([r.get(c) for r in recs], type=pa.string()) for c in ("prompt", "chosen", "rejected", "split")]
            table = pa.Table.from_arrays(arrays, names=names)
            payload = _parquet(table) if kind == "parquet" else _arrow(table)
        except (pa.ArrowException, UnicodeEncodeError):  # a surrogate cannot even be written: write the plain rows
            table = pa.Table.from_pylist(_table_rows(rows))
            payload = _parquet(table) if kind == "parquet" else _arrow(table)
        path = folder / f"gen.{kind}"
        path.write_bytes(payload)
        return [str(path)]
    if kind == "carper":
        root = folder / "carper"
        (root / "train").mkdir(parents=True)
        table = pa.Table.from_pylist([{**t, "prompt": "SUBREDDIT: r/tifu\nPOST: " + t["prompt"]} for t in _table_rows(rows)])
        (root / "train" / "data-00000-of-00001.arrow").write_bytes(_arrow(table.drop(["split"])))
        good_dict: Any = {"splits": ["train"]}
        good_state: Any = {"_data_files": [{"filename": "data-00000-of-00001.arrow"}], "_split": "train"}
        hostile: list[Any] = [["train"], "train", 3, None, {"splits": "train"}, {"splits": [1, 2]}, {"splits": ["../x"]},
                              {"splits": [None]}, {"_data_files": "data.arrow"}, {"_data_files": [1, 2]},
                              {"_data_files": [{"filename": 7}]}, {"_data_files": [{"filename": "../../etc/passwd"}]},
                              {"_data_files": [{"filename": "missing.arrow"}]}]
        dict_value = good_dict if rng.random() < 0.5 else hostile[int(rng.integers(0, len(hostile)))]
        state_value = good_state if rng.random() < 0.5 else hostile[int(rng.integers(0, len(hostile)))]
        (root / "dataset_dict.json").write_text(json.dumps(dict_value))
        (root / "train" / "state.json").write_text(json.dumps(state_value))
        if rng.random() < 0.2:
            (root / "dataset_dict.json").write_bytes(mutate((root / "dataset_dict.json").read_bytes(), rng))
        return [str(root)]
    raise AssertionError(kind)


def _members(block: bytes, times: int) -> bytes:
    """A multi-member gzip of ``block`` repeated ``times`` times (1 GiB of NULs in ~1 MB)."""
    return gzip.compress(block, compresslevel=9, mtime=0) * times


def bomb_cases(folder: Path, rows: list[dict[str, Any]]) -> list[tuple[str, list[str], str]]:
    """Decompression bombs and huge inputs: ``(name, paths, format)``."""
    nul = b"\x00" * (16 << 20)
    row = _jsonl(rows[:2])
    cases = []
    (folder / "nul.json.gz").write_bytes(_members(nul, 8))
    cases.append(("gz 128 MiB of NUL, no newline", [str(folder / "nul.json.gz")], "auto"))
    (folder / "after.json.gz").write_bytes(gzip.compress(row, mtime=0) + _members(nul, 8))
    cases.append(("gz valid rows then 128 MiB of NUL", [str(folder / "after.json.gz")], "openai"))
    (folder / "blank.json.gz").write_bytes(_members(b"\n" * (16 << 20), 20))
    cases.append(("gz 320 MiB of blank lines (detect)", [str(folder / "blank.json.gz")], "auto"))
    cases.append(("gz 320 MiB of blank lines (openai)", [str(folder / "blank.json.gz")], "openai"))
    (folder / "field.csv.gz").write_bytes(gzip.compress(b'prompt,chosen,rejected\n"', mtime=0) + _members(b"a" * (16 << 20), 8))
    cases.append(("csv.gz one 128 MiB field", [str(folder / "field.csv.gz")], "auto"))
    (folder / "lines.csv.gz").write_bytes(gzip.compress(b'prompt,chosen,rejected\n"', mtime=0) + _members(b"ab\n" * 60_000, 2))
    cases.append(("csv.gz one quoted field over 120,000 lines", [str(folder / "lines.csv.gz")], "auto"))
    with open(folder / "sparse.json", "wb") as fh:
        fh.truncate(4 << 30)
    cases.append(("4 GiB sparse file of NUL", [str(folder / "sparse.json")], "auto"))
    (folder / "deep.json").write_bytes(b"[" * 200_000 + b"\n")
    cases.append(("200,000-deep JSON", [str(folder / "deep.json")], "auto"))
    (folder / "manybad.json").write_bytes(b"{x\n" * 300_000)
    cases.append(("300,000 malformed lines (detect)", [str(folder / "manybad.json")], "auto"))
    return cases


def hostile_names(folder: Path, seeds: dict[str, bytes]) -> list[tuple[str, list[str], str]]:
    names = ["esc\x1b[31m.json", "new\nline.json", "bidi\u202etxt.json", os.fsdecode(b"bytes\xff.json"), "UPPER.JSON.GZ",
             "table.PARQUET", "-dash.CSV", "space name .jsonl"]
    sources = [seeds["openai.json"], seeds["openai.json"], seeds["openai.json"], seeds["openai.json"],
               seeds["openai.json.gz"], seeds["table.parquet"], seeds["table.csv"], b"{broken\n"]
    cases = []
    for name, data in zip(names, sources):
        sub = folder / f"n{len(cases)}"
        sub.mkdir()
        (sub / name).write_bytes(data)
        cases.append((f"name {name!a}", [str(sub / name)], "auto"))
    return cases


def build_cases(folder: Path, n: int, seed: int) -> list[dict[str, Any]]:
    """Every case: fixed bombs and names, then ``n`` seeded mutations / generations."""
    rng = np.random.default_rng(seed)
    rows = seed_rows()
    seeds = seed_files(rows)
    fixed = bomb_cases(folder, rows) + hostile_names(folder, seeds)
    cases = [{"name": name, "paths": paths, "format": fmt, "skip_bad": False} for name, paths, fmt in fixed]
    kinds = ["openai", "hh", "csv", "tsv", "parquet", "arrow", "carper"]
    names = sorted(seeds)
    for i in range(n):
        sub = folder / f"c{i}"
        sub.mkdir()
        if rng.random() < 0.55:
            name = names[int(rng.integers(0, len(names)))]
            data = seeds[name]
            if name.endswith(".gz") and rng.random() < 0.6:  # mutate the text, then compress it again
                data = gzip.compress(mutate(gzip.decompress(data), rng), mtime=0)
            else:
                data = mutate(data, rng)
            (sub / name).write_bytes(data)
            paths, what = [str(sub / name)], f"mutated {name}"
        else:
            kind = kinds[int(rng.integers(0, len(kinds)))]
            paths, what = generated_case(kind, rows, rng, sub), f"generated {kind}"
        fmt = "auto" if rng.random() < 0.8 else ["openai", "hh", "table", "carper"][int(rng.integers(0, 4))]
        cases.append({"name": f"{i}: {what}", "paths": paths, "format": fmt, "skip_bad": bool(rng.random() < 0.5)})
    return cases


# ----------------------------------------------------------------------------- the child process


def _own_peak_kib(resource) -> float:
    """This process image's peak RSS in KiB: /proc's VmHWM (ru_maxrss keeps the spawning pytest's
    high-water mark across exec, which would count the parent's memory as the child's)."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return float(line.split()[1])
    except OSError:
        pass
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def worker(manifest: str) -> None:
    """Load every case of ``manifest`` (JSON list) and print one JSON line per case (run in the child)."""
    import resource

    from balpm.data import load_table
    from balpm.data.inspect import format_report
    from balpm.errors import BalpmError

    for case in json.loads(Path(manifest).read_text()):
        start = time.perf_counter()
        outcome, message = "ok", ""
        try:
            result = load_table(case["paths"], format=case["format"], skip_bad=case["skip_bad"])
            pa.Table.from_pandas(result.table)  # text that reached the table can be written (no surrogates)
            format_report(result.report).encode("utf-8")
            json.dumps(result.report)
            message = f"{len(result.table)} rows, {result.report['bad_rows']} bad"
        except BalpmError as exc:
            outcome, message = type(exc).__name__, str(exc)
        except BaseException as exc:  # noqa: BLE001 - exactly what the harness looks for
            outcome, message = f"OTHER {type(exc).__name__}", repr(exc)[:500]
        print(json.dumps({"name": case["name"], "outcome": outcome, "message": message,
                          "seconds": round(time.perf_counter() - start, 3),
                          "peak_rss_mb": round(_own_peak_kib(resource) / 1024, 1)},
                         ensure_ascii=True), flush=True)


def run_cases(folder: Path, cases: list[dict[str, Any]], timeout: float) -> list[dict[str, Any]]:
    manifest = folder / "manifest.json"
    manifest.write_text(json.dumps(cases))
    code = (f"import resource, sys; resource.setrlimit(resource.RLIMIT_AS, ({ADDRESS_SPACE}, {ADDRESS_SPACE})); "
            f"sys.path.insert(0, {str(Path(__file__).parent)!r}); import test_fuzz_data as f; f.worker({str(manifest)!r})")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for var in [v for v in env if v.startswith(("BALPM_MAX", "BALPM_DETECT"))]:
        env.pop(var)  # the default caps
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=str(folder))
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0 and len(lines) == len(cases), (
        f"the fuzz child died (rc {proc.returncode}) after {len(lines)} of {len(cases)} cases; "
        f"next case {cases[len(lines)]['name'] if len(lines) < len(cases) else '-'}; stderr: {proc.stderr[-2000:]}")
    return lines


def check_results(results: list[dict[str, Any]]) -> None:
    bad = [r for r in results if r["outcome"].startswith("OTHER")]
    assert not bad, f"{len(bad)} case(s) raised something other than BalpmError: " + "; ".join(
        f"{r['name']}: {r['message']}" for r in bad[:5])
    for r in results:
        if r["outcome"] != "ok":
            assert "\n" not in r["message"] and r["message"].isprintable(), (r["name"], r["message"])
        assert r["seconds"] < CASE_SECONDS, (r["name"], r["seconds"])
    peak = max(r["peak_rss_mb"] for r in results)
    assert peak < PEAK_RSS_MB, f"peak RSS {peak} MB over {PEAK_RSS_MB} MB"


def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    from collections import Counter

    return {"cases": len(results), "outcomes": dict(Counter(r["outcome"] for r in results).most_common()),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
            "slowest": sorted(((r["seconds"], r["name"]) for r in results), reverse=True)[:3]}


def test_fuzz_loaders_load_or_raise_one_line(tmp_path):
    n = int(os.environ.get("BALPM_FUZZ_N") or N_CI)
    cases = build_cases(tmp_path, n, SEED)
    results = run_cases(tmp_path, cases, timeout=max(600, 2 * n))
    print("\nfuzz:", json.dumps(summary(results)))
    check_results(results)
    by_name = {r["name"]: r for r in results}
    # the bombs stop at their caps, each error naming the variable that raises it
    assert "BALPM_MAX_LINE_BYTES" in by_name["gz 128 MiB of NUL, no newline"]["message"]
    assert "BALPM_MAX_LINE_BYTES" in by_name["gz valid rows then 128 MiB of NUL"]["message"]
    assert "BALPM_DETECT_MAX" in by_name["gz 320 MiB of blank lines (detect)"]["message"]
    assert "BALPM_MAX_LINE_BYTES" in by_name["csv.gz one 128 MiB field"]["message"]
    assert "BALPM_MAX_RECORD_LINES" in by_name["csv.gz one quoted field over 120,000 lines"]["message"]
    assert "BALPM_MAX_GZIP_RATIO" in by_name["gz 320 MiB of blank lines (openai)"]["message"]
    assert "BALPM_MAX_LINE_BYTES" in by_name["4 GiB sparse file of NUL"]["message"]
    assert "BALPM_DETECT_MAX" in by_name["300,000 malformed lines (detect)"]["message"]
    # hostile names are echoed escaped, and upper-case extensions load
    assert "\\x1b" in by_name["name 'esc\\x1b[31m.json'"]["message"] or by_name["name 'esc\\x1b[31m.json'"]["outcome"] == "ok"
    assert by_name["name 'UPPER.JSON.GZ'"]["outcome"] == "ok"
    assert by_name["name 'table.PARQUET'"]["outcome"] == "ok"
    assert by_name["name '-dash.CSV'"]["outcome"] == "ok"
    # the harness is not vacuous: some generated inputs load, some are refused
    outcomes = summary(results)["outcomes"]
    assert outcomes.get("ok", 0) >= 10 and sum(v for k, v in outcomes.items() if k != "ok") >= 10, outcomes


def test_harness_catches_other_exceptions():
    """check_results fails on a non-BalpmError, a two-line message and a slow case (the harness can fail)."""
    ok = {"name": "a", "outcome": "ok", "message": "", "seconds": 0.1, "peak_rss_mb": 100.0}
    check_results([ok])
    for broken in ({**ok, "outcome": "OTHER KeyError"}, {**ok, "outcome": "DataError", "message": "two\nlines"},
                   {**ok, "outcome": "DataError", "message": "esc \x1b"}, {**ok, "seconds": CASE_SECONDS + 1},
                   {**ok, "peak_rss_mb": PEAK_RSS_MB + 1}):
        with pytest.raises(AssertionError):
            check_results([ok, broken])


def test_mutations_are_seeded():
    data = seed_files(_hand_rows())["openai.json"]
    first = [mutate(data, np.random.default_rng(7)) for _ in range(1)]
    again = [mutate(data, np.random.default_rng(7)) for _ in range(1)]
    assert first == again and first[0] != data
    assert zlib.crc32(mutate(data, np.random.default_rng(8))) != zlib.crc32(first[0])
