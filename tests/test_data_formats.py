"""CarperAI (save_to_disk fixture, parquet, jsonl), Anthropic HH-RLHF (plain and gzip) and named-column tables."""
from __future__ import annotations

import csv
import gzip
import json
import zipfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from balpm.data import load_table, validate_table
from balpm.data.hh import split_hh
from balpm.data.hub import iter_record_batches
from balpm.data.load import detect_file_format
from balpm.data.rows import RowProblem
from balpm.errors import DataError


@pytest.fixture(scope="module")
def carper_dir(shared_data, tmp_path_factory) -> Path:
    """The torchrl fixture unzipped: a datasets save_to_disk folder with train/valid1/valid2/test."""
    zip_path = shared_data / "summarize_from_feedback" / "fixtures" / "torchrl" / "openai_summarize_comparisons.zip"
    out = tmp_path_factory.mktemp("carper")
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(out)
    return out / "openai_summarize_comparisons"


def _carper_frames(carper_dir: Path) -> dict[str, pd.DataFrame]:
    """Each split's rows read with pyarrow only (independent of balpm)."""
    frames = {}
    for split in ("train", "valid1", "valid2", "test"):
        files = sorted((carper_dir / split).glob("*.arrow"))
        frames[split] = pa.concat_tables([pa.ipc.open_stream(pa.memory_map(str(f))).read_all() for f in files]).to_pandas()
    return frames


def test_carper_fixture_counts(carper_dir):
    frames = _carper_frames(carper_dir)
    assert {k: len(v) for k, v in frames.items()} == {"train": 50, "valid1": 50, "valid2": 50, "test": 50}
    result = load_table([carper_dir], keep_original=True)
    assert [f["format"] for f in result.report["files"]] == ["carper"]
    assert result.report["files"][0]["rows_read"] == 200
    allrows = pd.concat(frames.values(), keys=list(frames)).reset_index(level=0).rename(columns={"level_0": "orig"})
    unique = allrows.drop_duplicates(subset=["prompt", "chosen", "rejected", "orig"])
    assert result.report["rows"] == len(unique)
    assert result.report["duplicates_dropped"] == 200 - len(unique)
    table = validate_table(result.table)
    assert set(table["source"]) == {"tldr"}
    assert table.groupby("orig_split").size().to_dict() == unique.groupby("orig").size().to_dict()
    # keep_original: with its own test split, valid1 and valid2 both become valid
    moved = result.report["split"]["prompts_moved"]
    prompts_in_several = allrows.groupby("prompt")["orig"].nunique()
    assert moved == int((prompts_in_several > 1).sum())
    single = table[table["prompt"].map(prompts_in_several) == 1]
    expected = single["orig_split"].map({"train": "train", "valid1": "valid", "valid2": "valid", "test": "test"})
    assert (single["split"] == expected).all()


def test_carper_parquet_and_jsonl_give_the_same_table(carper_dir, tmp_path):
    frames = _carper_frames(carper_dir)
    pq_dir = tmp_path / "hub" / "data"
    pq_dir.mkdir(parents=True)
    for split, frame in frames.items():
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), pq_dir / f"{split}-00000-of-00001.parquet")
    jl = tmp_path / "carper.jsonl"
    with open(jl, "w", encoding="utf-8") as fh:
        for split, frame in frames.items():
            fh.writelines(json.dumps({**rec, "split": split}) + "\n" for rec in frame.to_dict("records"))
    ref = load_table([carper_dir], keep_original=True).table
    for path in (tmp_path / "hub", jl):
        got = load_table([path], keep_original=True)
        assert {f["format"] for f in got.report["files"]} == {"carper"}
        cols = ["pair_id", "prompt_id", "prompt", "chosen", "rejected", "split", "source", "orig_split"]
        a = got.table[cols].sort_values("pair_id").reset_index(drop=True)
        b = ref[cols].sort_values("pair_id").reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b)


# --------------------------------------------------------------------------- HH-RLHF

HH_ROWS = [
    {"chosen": "\n\nHuman: What is 2+2?\n\nAssistant: 4.", "rejected": "\n\nHuman: What is 2+2?\n\nAssistant: 5, I think."},
    {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Tell me a joke.\n\nAssistant: Why did the chicken cross the road?",
     "rejected": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Tell me a joke.\n\nAssistant: No."},
    {"chosen": "\n\nHuman: Name a colour.\n\nAssistant: Blue.", "rejected": "\n\nHuman: Name a colour.\n\nAssistant: Green."},
    {"chosen": "\n\nHuman: Name a colour.\n\nAssistant: Red.", "rejected": "\n\nHuman: Name a colour.\n\nAssistant:"},
]


def _write_hh(path: Path, rows, gz: bool) -> Path:
    data = "".join(json.dumps(r) + "\n" for r in rows).encode("utf-8")
    if gz:
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


@pytest.mark.parametrize("gz", [False, True])
def test_hh_rlhf_file(tmp_path, gz):
    path = _write_hh(tmp_path / ("train.jsonl.gz" if gz else "train.jsonl"), HH_ROWS, gz)
    assert detect_file_format(path) == "hh"
    result = load_table([path], keep_original=True)
    table = validate_table(result.table)
    assert result.report["rows"] == 4 and set(table["source"]) == {"hh"}
    assert set(table["orig_split"]) == {"train"} and set(table["split"]) == {"train"}  # from the file name
    for rec, row in zip(HH_ROWS, table.itertuples(index=False)):
        assert row.prompt.endswith("\n\nAssistant:")
        assert rec["chosen"].startswith(row.prompt) and rec["rejected"].startswith(row.prompt)
        assert rec["chosen"] == row.prompt + " " + row.chosen
        assert rec["rejected"].rstrip() == (row.prompt + " " + row.rejected).rstrip()
    assert table.loc[1, "prompt"].count("\n\nHuman:") == 2  # multi-turn prompt keeps the whole dialogue
    assert table.loc[2, "prompt_id"] == table.loc[3, "prompt_id"]  # same dialogue, same prompt
    assert result.report["empty_answers"] == 1


def test_hh_prefix_mismatch_is_an_error(tmp_path):
    bad = {"chosen": "\n\nHuman: A?\n\nAssistant: yes", "rejected": "\n\nHuman: B?\n\nAssistant: no"}
    path = _write_hh(tmp_path / "test.jsonl.gz", HH_ROWS[:1] + [bad], gz=True)
    with pytest.raises(DataError, match=r"line 2: chosen and rejected do not share a prompt prefix"):
        load_table([path])
    skipped = load_table([path], skip_bad=True)
    assert skipped.report["rows"] == 1 and skipped.report["bad_reasons"] == {"prefix_mismatch": 1}
    with pytest.raises(RowProblem):
        split_hh("\n\nHuman: hi", "\n\nHuman: hi\n\nAssistant: x")


# --------------------------------------------------------------------------- named columns


def test_named_columns_csv_jsonl_parquet(tmp_path):
    frame = pd.DataFrame({
        "question": ["q1", "q1", "q2", "q3, with a comma\nand a newline", "q4"],
        "good": ["a", "b", "c", "d", "e"],
        "bad": ["x", "y", "z", "w", "v"],
        "fold": ["train", "train", "test", "validation", "train"],
        "uid": ["u1", "u2", "u3", "u4", "u5"],
    })
    columns = {"prompt": "question", "chosen": "good", "rejected": "bad", "split": "fold", "id": "uid"}
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_json(tmp_path / "t.jsonl", orient="records", lines=True)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "t.parquet")
    tables = {}
    for name in ("t.csv", "t.jsonl", "t.parquet"):
        result = load_table([tmp_path / name], columns=columns, keep_original=True)
        t = validate_table(result.table)
        assert list(t["pair_id"]) == list(frame["uid"])
        assert list(t["prompt"]) == list(frame["question"])
        assert list(t["split"]) == ["train", "train", "test", "valid", "train"]
        assert set(t["source"]) == {"custom"}
        tables[name] = t.drop(columns=["file", "line"])
    pd.testing.assert_frame_equal(tables["t.csv"], tables["t.jsonl"])
    pd.testing.assert_frame_equal(tables["t.csv"], tables["t.parquet"])
    csv_lines = load_table([tmp_path / "t.csv"], columns=columns).table["line"].tolist()
    assert csv_lines == [2, 3, 4, 5, 7]  # physical line each record starts on (row 4 spans two lines)


def test_default_column_names_need_no_options(tmp_path):
    path = tmp_path / "prefs.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["prompt", "chosen", "rejected"])
        writer.writerows([["p1", "c1", "r1"], ["p2", "c2", "r2"], ["p1", "c1", "r1"]])
    result = load_table([path])
    assert result.report["rows"] == 2 and result.report["duplicates_dropped"] == 1
    assert result.report["files"][0]["format"] == "table"


def test_missing_named_column_is_one_line_error(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame({"question": ["q"], "good": ["a"], "bad": ["b"]}).to_csv(path, index=False)
    with pytest.raises(DataError, match="--prompt-col") as err:
        load_table([path], columns={"prompt": "prompt_text", "chosen": "good", "rejected": "bad"})
    assert "\n" not in str(err.value)


def test_duplicate_user_ids_are_an_error(tmp_path):
    path = tmp_path / "t.jsonl"
    rows = [{"prompt": "p", "chosen": "a", "rejected": "b", "id": "same"},
            {"prompt": "p", "chosen": "c", "rejected": "d", "id": "same"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(DataError, match=r"line 2: id 'same' already used"):
        load_table([path], columns={"id": "id"})


def test_unknown_format_and_missing_path(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_table([tmp_path / "nope.json"])
    odd = tmp_path / "odd.jsonl"
    odd.write_text(json.dumps({"a": 1}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="match no known format"):
        load_table([odd])
    txt = tmp_path / "x.txt"
    txt.write_text("hello", encoding="utf-8")
    with pytest.raises(DataError, match="unknown file type"):
        load_table([txt])


def test_arrow_file_formats_are_both_read(tmp_path):
    table = pa.table({"prompt": ["p"], "chosen": ["a"], "rejected": ["b"]})
    with pa.OSFile(str(tmp_path / "s.arrow"), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    with pa.OSFile(str(tmp_path / "f.arrow"), "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
        w.write_table(table)
    for name in ("s.arrow", "f.arrow"):
        assert sum(b.num_rows for b in iter_record_batches(tmp_path / name)) == 1
        assert load_table([tmp_path / name]).report["rows"] == 1
