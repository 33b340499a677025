"""Bounded input (issue 15): caps on line length, un-gzipped bytes and ratio, JSON-array / parquet size,
CSV record length and format-detection reading, each a one-line error naming the environment variable
that raises it; memory stays bounded on decompression bombs, a 4 GiB sparse file and a 50 MB text; texts
are capped by characters before tokenizing (token ids of real texts unchanged); ``balpm run`` checks the
splits before featurizing and writes nothing for a table that cannot run."""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from balpm.data import limits, load_table
from balpm.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]
MiB = 1 << 20


def _row(i: int) -> dict:
    return {"info": {"id": f"t3_{i}", "post": f"post number {i}", "title": "t", "subreddit": "s"}, "split": "train",
            "summaries": [{"text": f"one {i}", "policy": "a"}, {"text": f"two {i}", "policy": "b"}], "choice": 0,
            "worker": "w", "batch": "b", "extra": {}}


def _rows(n: int) -> bytes:
    return "".join(json.dumps(_row(i)) + "\n" for i in range(n)).encode()


def _message(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and text.isprintable()
    return text


# ----------------------------------------------------------------------------- each cap, and its variable


def test_line_cap_names_its_variable_and_the_variable_raises_it(tmp_path, monkeypatch):
    path = tmp_path / "nul.json.gz"
    path.write_bytes(gzip.compress(_rows(3) + b"\x00" * (3 * MiB)))
    monkeypatch.setenv("BALPM_MAX_LINE_BYTES", "1M")
    with pytest.raises(DataError, match=r"line 4: the line is longer than 1 MiB .*BALPM_MAX_LINE_BYTES=2M") as err:
        load_table([path], format="openai")
    _message(err)
    monkeypatch.setenv("BALPM_MAX_LINE_BYTES", "4M")  # raised: the NUL line is now read, and is one bad row
    result = load_table([path], format="openai", skip_bad=True, ratios=(1, 0, 0))
    assert len(result.table) == 3 and result.report["bad_reasons"] == {"bad_json": 1}


def test_line_cap_applies_to_plain_files_and_csv_fields(tmp_path, monkeypatch):
    monkeypatch.setenv("BALPM_MAX_LINE_BYTES", "1M")
    (tmp_path / "plain.jsonl").write_bytes(b"\x00" * (2 * MiB))
    with pytest.raises(DataError, match="BALPM_MAX_LINE_BYTES"):
        load_table([tmp_path / "plain.jsonl"])
    # one quoted CSV field over many short lines: the csv field limit is the same cap
    (tmp_path / "field.csv").write_bytes(b'prompt,chosen,rejected\n"' + (b"a" * 1000 + b"\n") * 2000 + b'",a,b\n')
    with pytest.raises(DataError, match=r"line 2: a field \(read to line \d+\) is longer than 1 MiB.*BALPM_MAX_LINE_BYTES"):
        load_table([tmp_path / "field.csv"])


def test_csv_record_lines_cap(tmp_path, monkeypatch):
    monkeypatch.setenv("BALPM_MAX_RECORD_LINES", "100")
    (tmp_path / "long.csv").write_text('prompt,chosen,rejected\n"' + "x\n" * 200 + '",a,b\n', encoding="utf-8")
    with pytest.raises(DataError, match="BALPM_MAX_RECORD_LINES"):
        load_table([tmp_path / "long.csv"])
    (tmp_path / "ok.csv").write_text('prompt,chosen,rejected\n"' + "x\n" * 50 + '",a,b\n' + "\n" * 5000 + "p,c,r\n",
                                     encoding="utf-8")
    table = load_table([tmp_path / "ok.csv"], ratios=(1, 0, 0)).table  # 5,000 blank lines between records are fine
    assert len(table) == 2 and table["prompt"].iloc[0].count("x") == 50 and table["line"].tolist() == [2, 5053]


def test_decompressed_bytes_cap(tmp_path, monkeypatch):
    path = tmp_path / "rows.json.gz"
    path.write_bytes(gzip.compress(_rows(8000)))
    size = len(gzip.decompress(path.read_bytes()))
    monkeypatch.setenv("BALPM_MAX_DECOMPRESSED_BYTES", str(size // 2))
    with pytest.raises(DataError, match="un-gzips to more than .*BALPM_MAX_DECOMPRESSED_BYTES") as err:
        load_table([path])
    _message(err)
    monkeypatch.setenv("BALPM_MAX_DECOMPRESSED_BYTES", str(size))
    assert len(load_table([path]).table) == 8000


def test_gzip_ratio_cap_stops_a_bomb_but_not_real_files(tmp_path, monkeypatch, shared_data):
    monkeypatch.setattr(limits, "GZIP_RATIO_AFTER", 1 * MiB)  # checked early, so that the test file stays small
    bomb = tmp_path / "blank.json.gz"
    bomb.write_bytes(gzip.compress(_rows(2) + b"\n" * (64 * MiB), compresslevel=9))
    with pytest.raises(DataError, match=r"over 200 times as much .*BALPM_MAX_GZIP_RATIO") as err:
        load_table([bomb], format="openai")
    _message(err)
    # the real files compress 3.6x (TL;DR) to 20x (CNN/DM: each article repeated): far below the cap
    for name in ("batch13.json", "batch0_cnndm.json"):
        real = shared_data / "summarize_from_feedback" / "comparisons" / name
        gz = tmp_path / f"{name}.gz"
        gz.write_bytes(gzip.compress(real.read_bytes(), compresslevel=9))
        assert len(load_table([gz]).table) == len(load_table([real]).table)


def test_detection_reads_a_bounded_prefix(tmp_path, monkeypatch):
    monkeypatch.setenv("BALPM_DETECT_MAX_LINES", "1000")
    path = tmp_path / "late.json"
    path.write_bytes(b"\n" * 50 + b"{broken\n" * 2000 + _rows(3))
    t0 = time.perf_counter()
    with pytest.raises(DataError, match=r"no record found in the first .* 1,000 lines .*950 malformed.*--format") as err:
        load_table([path])
    assert "BALPM_DETECT_MAX_LINES" in _message(err) and time.perf_counter() - t0 < 10
    result = load_table([path], format="openai", skip_bad=True, ratios=(1, 0, 0))  # no detection: every line read
    assert len(result.table) == 3 and result.report["bad_rows"] == 2000
    monkeypatch.setenv("BALPM_DETECT_MAX_LINES", "5000")
    assert load_table([path], skip_bad=True, ratios=(1, 0, 0)).report["files"][0]["format"] == "openai"


def test_detection_skips_blank_lines_quickly_and_bytes_cap(tmp_path, monkeypatch):
    monkeypatch.setenv("BALPM_DETECT_MAX_BYTES", "8M")
    monkeypatch.setenv("BALPM_DETECT_MAX_LINES", str(1 << 30))  # the bytes cap alone
    path = tmp_path / "blank.json.gz"
    path.write_bytes(gzip.compress(b"\n" * (16 * MiB) + _rows(3), compresslevel=9))
    t0 = time.perf_counter()
    with pytest.raises(DataError, match="first 8 MiB .*BALPM_DETECT_MAX_BYTES"):
        load_table([path])
    assert time.perf_counter() - t0 < 20
    table = load_table([path], format="openai", ratios=(1, 0, 0)).table  # line numbers count the blank lines
    assert table["line"].tolist() == [16 * MiB + i for i in (1, 2, 3)]


def test_json_array_and_parquet_caps(tmp_path, monkeypatch):
    records = [{"prompt": f"p{i}", "chosen": "a", "rejected": "b"} for i in range(200)]
    (tmp_path / "arr.json").write_text(json.dumps(records, indent=1), encoding="utf-8")
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "t.parquet")
    monkeypatch.setenv("BALPM_MAX_JSON_ARRAY_BYTES", "2K")
    with pytest.raises(DataError, match="JSON array is longer than 2 KiB.*BALPM_MAX_JSON_ARRAY_BYTES"):
        load_table([tmp_path / "arr.json"], format="table")
    monkeypatch.setenv("BALPM_MAX_PARQUET_BYTES", "1K")
    with pytest.raises(DataError, match="uncompressed .*BALPM_MAX_PARQUET_BYTES") as err:
        load_table([tmp_path / "t.parquet"])
    _message(err)
    monkeypatch.delenv("BALPM_MAX_JSON_ARRAY_BYTES")
    monkeypatch.delenv("BALPM_MAX_PARQUET_BYTES")
    assert len(load_table([tmp_path / "arr.json"], format="table").table) == 200
    assert len(load_table([tmp_path / "t.parquet"]).table) == 200


@pytest.mark.parametrize("value", ["lots", "-5", "0", "1.5G", "12 parsecs"])
def test_a_bad_cap_value_is_one_line(tmp_path, monkeypatch, value):
    (tmp_path / "r.json").write_bytes(_rows(3))
    monkeypatch.setenv("BALPM_MAX_LINE_BYTES", value)
    with pytest.raises(ConfigError, match="BALPM_MAX_LINE_BYTES") as err:
        load_table([tmp_path / "r.json"])
    _message(err)


def test_default_caps_are_far_above_the_real_data(shared_data):
    folder = shared_data / "summarize_from_feedback" / "comparisons"
    longest = max(len(line) for f in folder.iterdir() for line in f.read_bytes().split(b"\n"))
    assert longest * 1000 < limits.MAX_LINE_BYTES.value  # ~10 KB vs 64 MiB
    assert sum(f.stat().st_size for f in folder.iterdir()) * 100 < limits.MAX_DECOMPRESSED_BYTES.value


# ----------------------------------------------------------------------------- memory, in a child process

_CHILD = r"""
import gzip, json, resource, sys, time
from balpm.data import load_table
from balpm.errors import BalpmError
def peak_mb():
    # VmHWM: this process image's own peak RSS (getrusage's ru_maxrss keeps the high-water mark of the
    # process that spawned us across exec: a 900 MB pytest parent made a small child read 927 MB)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
out = {}
for name, path, fmt in json.loads(sys.argv[1]):
    t0 = time.perf_counter()
    try:
        load_table([path], format=fmt)
        outcome = "ok"
    except BalpmError as exc:
        outcome = str(exc)
    out[name] = {"outcome": outcome, "seconds": time.perf_counter() - t0,
                 "peak_mb": peak_mb()}
print(json.dumps(out))
"""


def _child(cases: list[tuple[str, str, str]], cwd: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BALPM_MAX", "BALPM_DETECT"))}
    proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(cases)], check=False, capture_output=True, text=True, timeout=600,
                          env={**env, "OMP_NUM_THREADS": "1"}, cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_memory_stays_bounded_on_bombs(tmp_path):
    """Each class of the issue with the DEFAULT caps: 256 MiB of NULs (gz, no newline; after valid rows), one
    128 MiB CSV field (gz), a 4 GiB sparse file of NULs, 320 MiB of blank lines (gz): one-line errors, peak RSS
    of the whole child under 600 MB (before: each took GiBs; the benchmark benchmarks/hostile_inputs.py
    measures before/after)."""
    nul_member = gzip.compress(b"\x00" * (16 * MiB), compresslevel=9)
    (tmp_path / "nul.json.gz").write_bytes(nul_member * 16)
    (tmp_path / "after.json.gz").write_bytes(gzip.compress(_rows(5)) + nul_member * 16)
    (tmp_path / "field.csv.gz").write_bytes(gzip.compress(b'prompt,chosen,rejected\n"x') + gzip.compress(b"a" * (16 * MiB)) * 8)
    with open(tmp_path / "sparse.json", "wb") as fh:
        fh.truncate(4 << 30)
    (tmp_path / "blank.json.gz").write_bytes(gzip.compress(b"\n" * (16 * MiB), compresslevel=9) * 20)
    cases = [("nul", "nul.json.gz", "auto"), ("after", "after.json.gz", "openai"), ("field", "field.csv.gz", "auto"),
             ("sparse", "sparse.json", "auto"), ("blank detect", "blank.json.gz", "auto"),
             ("blank openai", "blank.json.gz", "openai")]
    out = _child(cases, tmp_path)
    expect = {"nul": "BALPM_MAX_LINE_BYTES", "after": "BALPM_MAX_LINE_BYTES", "field": "BALPM_MAX_LINE_BYTES",
              "sparse": "BALPM_MAX_LINE_BYTES", "blank detect": "BALPM_DETECT_MAX", "blank openai": "BALPM_MAX_GZIP_RATIO"}
    for name, var in expect.items():
        assert var in out[name]["outcome"], (name, out[name])
        assert out[name]["seconds"] < 60, (name, out[name])
    assert max(v["peak_mb"] for v in out.values()) < 600, out


# ----------------------------------------------------------------------------- text cap before tokenizing


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from balpm.features.encoder import minilm_path

    return AutoTokenizer.from_pretrained(str(minilm_path()))


def test_char_cap_keeps_the_token_ids_of_real_texts(tokenizer, shared_data):
    """At max_length 16 the cap (1,024 characters) binds on every CNN/DM article: the ids are those of the
    uncapped texts, which the tokenizer would cut anyway."""
    from balpm.features.encoder import CHARS_PER_TOKEN_CAP, Tokenized, tokenize_texts
    from balpm.features.templates import template_for

    folder = shared_data / "summarize_from_feedback" / "comparisons"
    table = load_table([str(folder / "batch0_cnndm.json")], ratios=(1, 0, 0)).table.head(40)
    texts = [template_for("cnndm").pair_text(p, a) for p, a in zip(table["prompt"], table["chosen"])]
    assert min(len(t.prompt) for t in texts) > CHARS_PER_TOKEN_CAP * 16
    capped = tokenize_texts(tokenizer, texts, 16)
    from balpm.features import encoder

    uncapped = Tokenized(ids=[], prompt_cut=[], answer_cut=[])
    original = encoder.cap_chars
    try:
        encoder.cap_chars = lambda text, max_length: text  # the old behaviour: no character cap
        uncapped = tokenize_texts(tokenizer, texts, 16)
    finally:
        encoder.cap_chars = original
    assert capped.ids == uncapped.ids and capped.prompts_truncated == uncapped.prompts_truncated == len(texts)


def test_a_50_mb_text_reaches_the_tokenizer_capped(tokenizer):
    """A 50 MB post: the tokenizer only ever sees the capped text (before: all 50 MB, with offsets, GiBs)."""
    from balpm.features.encoder import CHARS_PER_TOKEN_CAP, tokenize_texts
    from balpm.features.templates import template_for

    seen: list[int] = []

    class Spy:
        is_fast = tokenizer.is_fast

        def __call__(self, text, **kwargs):
            seen.extend(len(t) for t in ([text] if isinstance(text, str) else text))
            return tokenizer(text, **kwargs)

    post = "word " * 10_000_000
    t0 = time.perf_counter()
    out = tokenize_texts(Spy(), [template_for("tldr").pair_text(post, "a short summary"),
                                 template_for("tldr").prompt_text(post)], 256)
    assert [len(ids) for ids in out.ids] == [256, 256] and out.prompts_truncated == 2 and out.answers_truncated == 0
    assert max(seen) <= CHARS_PER_TOKEN_CAP * 256 + 100 and time.perf_counter() - t0 < 20


# ----------------------------------------------------------------------------- run: splits before featurizing


@pytest.mark.parametrize("rows,match", [(1, "no test rows"), (3, "must be below the pool size")])
def test_run_checks_splits_before_featurizing(tmp_path, rows, match):
    (tmp_path / "d.json").write_bytes(_rows(rows))
    t0 = time.perf_counter()
    proc = subprocess.run([str(Path(sys.executable).parent / "balpm"), "run", "--data", "d.json", "--runs-dir", "runs",
                           "--set", "features.cache_dir=cache", "-q", "--set", "data.split_ratios=0.4,0.2,0.4"],
                          check=False, capture_output=True, text=True, cwd=tmp_path, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2 and match in proc.stderr, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error: ")
    assert not (tmp_path / "cache").exists() and not any((tmp_path / "runs").glob("*")) if (tmp_path / "runs").exists() \
        else not (tmp_path / "cache").exists()
    assert time.perf_counter() - t0 < 60
