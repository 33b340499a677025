"""Pathological inputs (issue 8, data loading): each is one bad row like any other, or one line naming the
file, the line, the problem and the fix; never a traceback. Plus identical answers, early-split HH pairs,
the seeded subsample and column names carried by DataConfig."""
from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from balpm.config import DataConfig
from balpm.data import load_for_config, load_table
from balpm.data.hh import split_hh
from balpm.errors import BalpmError, DataError

DEEP = "[" * 200_000 + "]" * 200_000


def _rows(n: int, start: int = 0) -> list[str]:
    return [json.dumps({"prompt": f"question {i}?", "chosen": f"good {i}", "rejected": f"bad {i}"}) for i in range(start, start + n)]


def _openai(worker: str, post: str = "My cat ignores me.", texts=("Cat ignores me.", "Ignored by cat.")) -> str:
    return json.dumps({"info": {"id": "t3_a", "post": post, "title": "Cat", "subreddit": "pets"}, "split": "valid1",
                       "summaries": [{"text": texts[0], "policy": "a"}, {"text": texts[1], "policy": "b"}],
                       "choice": 0, "worker": worker, "batch": "b0"})


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("where", [1, 2])
@pytest.mark.parametrize("kind", ["table", "openai"])
def test_200000_deep_array_is_one_bad_row(tmp_path, where, kind):
    good = _rows(3) if kind == "table" else [_openai(f"w{i}") for i in range(3)]
    lines = good[: where - 1] + [DEEP] + good[where - 1:]
    path = _write(tmp_path / "deep.jsonl", lines)
    with pytest.raises(DataError) as err:
        load_table([path])
    message = str(err.value)
    assert message.startswith(f"{path}: line {where}: nested too deeply") and "\n" not in message, message
    result = load_table([path], skip_bad=True)
    assert (result.report["rows"], result.report["bad_reasons"]) == (3, {"too_deep": 1})


def test_deep_array_alone_in_a_json_file(tmp_path):
    path = _write(tmp_path / "deep.json", [DEEP])
    with pytest.raises(DataError, match=r"deep.json: line 1: nested too deeply"):
        load_table([path], format="table")
    result = load_table([path], format="table", skip_bad=True)
    assert (result.report["rows"], result.report["bad_rows"]) == (0, 1)


def test_json_error_detail_is_complete(tmp_path):
    path = _write(tmp_path / "x.jsonl", _rows(1) + ['{"prompt": "p", "chosen": "a" "rejected": "b"}'])
    with pytest.raises(DataError) as err:
        load_table([path])
    assert "not valid JSON (Expecting ',' delimiter: line 1 column 31 (char 30))" in str(err.value)


def test_duplicate_json_key_is_a_bad_row(tmp_path):
    path = _write(tmp_path / "x.jsonl", _rows(2) + ['{"prompt": "p", "chosen": "a", "rejected": "b", "chosen": "c"}'])
    with pytest.raises(DataError, match=r"line 3: not valid JSON \(the key 'chosen' appears twice"):
        load_table([path])
    assert load_table([path], skip_bad=True).report["bad_reasons"] == {"bad_json": 1}


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_utf16_file_names_the_encoding_and_the_fix(tmp_path, encoding):
    path = tmp_path / "wide.jsonl"
    path.write_bytes("\n".join(_rows(3)).encode(encoding))
    for skip in (False, True):
        with pytest.raises(DataError) as err:
            load_table([path], skip_bad=skip)
        message = str(err.value)
        assert "not UTF-8" in message and "iconv -f UTF-" in message and "UTF-" in message.split("is ")[1], message


def test_latin1_file_names_the_encoding(tmp_path):
    path = tmp_path / "latin.jsonl"
    path.write_bytes("\n".join(json.dumps({"prompt": f"café {i}", "chosen": "é", "rejected": "è"}, ensure_ascii=False)
                               for i in range(3)).encode("latin-1"))
    with pytest.raises(DataError, match=r"not UTF-8 text: convert it, e\.g\. `iconv"):
        load_table([path], skip_bad=True)
    with pytest.raises(DataError, match=r"line 1: not valid UTF-8 .*re-save the file as UTF-8"):
        load_table([path], format="table")


def test_csv_unquoted_comma_and_duplicate_header(tmp_path):
    path = _write(tmp_path / "a.csv", ["prompt,chosen,rejected", "What is 1+1?,2,3", "What is 1,000 + 1?,1001,1000", "x?,y,z"])
    with pytest.raises(DataError) as err:
        load_table([path])
    assert str(err.value).startswith(f"{path}: line 3: not a valid CSV row (4 fields where the header has 3; "
                                     "a field holding a comma must be quoted)")
    result = load_table([path], skip_bad=True)
    assert result.report["bad_reasons"] == {"bad_csv": 1} and sorted(result.table["prompt"]) == ["What is 1+1?", "x?"]
    dup = _write(tmp_path / "b.csv", ["prompt,chosen,rejected,chosen", "p,a,b,c"])
    for skip in (False, True):
        with pytest.raises(DataError, match=r"b.csv: line 1: the header names column 'chosen' twice \(columns 2 and 4\)"):
            load_table([dup], skip_bad=skip)


def test_csv_unclosed_quote_names_the_lines(tmp_path):
    path = _write(tmp_path / "q.csv", ["prompt,chosen,rejected", "p1,a,b", '"p2,a,b', "p3,a,b"])
    with pytest.raises(DataError, match=r"line 3: not a valid CSV row \(a quoted field opened here is never closed; lines 3-4"):
        load_table([path])


@pytest.mark.parametrize("first", ["{not json", "[1, 2, 3]", '{"unrelated": 1}', "\x00\x00", DEEP[:100] + "]" * 50])
def test_detection_reads_the_first_good_records(tmp_path, first):
    path = _write(tmp_path / "c.jsonl", [first] + [_openai(f"w{i}") for i in range(3)])
    result = load_table([path], skip_bad=True)
    assert result.report["files"][0]["format"] == "openai"
    assert (result.report["rows"], result.report["bad_rows"]) == (3, 1)
    with pytest.raises(DataError, match=rf"{path}: line 1: "):
        load_table([path])


def test_identical_answers_dropped_counted_and_warned_once(tmp_path, caplog):
    lines = [_openai("w1"), _openai("w2", texts=("Same.", "Same.")), _openai("w3", texts=("Same. ", " Same.")),
             _openai("w4", post="Another post.")]
    path = _write(tmp_path / "same.json", lines)
    with caplog.at_level(logging.WARNING, logger="balpm.data"):
        result = load_table([path])
    assert result.report["rows"] == 2 and result.report["identical_answers_dropped"] == 2
    assert result.report["files"][0]["identical_answers_dropped"] == 2
    warnings = [r for r in caplog.records if "identical" in r.getMessage()]
    assert len(warnings) == 1 and "dropped 2 comparison(s)" in warnings[0].getMessage()
    assert not (result.table["chosen"].str.strip() == result.table["rejected"].str.strip()).any()
    from balpm.data.inspect import format_report

    assert "identical answers dropped 2" in format_report(result.report)


def test_hh_pairs_that_differ_early_split_at_the_last_shared_turn(tmp_path):
    ok = {"chosen": "\n\nHuman: Hi?\n\nAssistant: Hello!", "rejected": "\n\nHuman: Hi?\n\nAssistant: Go away."}
    early = {"chosen": "\n\nHuman: Tea?\n\nAssistant: Yes, green.\n\nHuman: Why?\n\nAssistant: Healthy.",
             "rejected": "\n\nHuman: Tea?\n\nAssistant: No.\n\nHuman: Why not?\n\nAssistant: Caffeine."}
    human = {"chosen": "\n\nHuman: Q?\n\nAssistant: A.\n\nHuman: More?\n\nAssistant: Sure.",
             "rejected": "\n\nHuman: Q?\n\nAssistant: A.\n\nHuman: Less?\n\nAssistant: Fine."}
    path = tmp_path / "test.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(json.dumps(r) for r in (ok, early, human)) + "\n")
    result = load_table([path])  # no --skip-bad needed
    assert result.report["rows"] == 3 and result.report["hh_split_early"] == 2 and result.report["bad_rows"] == 0
    table = result.table.sort_values("line")
    assert table["prompt"].tolist() == ["\n\nHuman: Hi?\n\nAssistant:", "\n\nHuman: Tea?\n\nAssistant:",
                                        "\n\nHuman: Q?\n\nAssistant: A.\n\nHuman:"]
    assert table["chosen"].tolist()[1] == "Yes, green.\n\nHuman: Why?\n\nAssistant: Healthy."
    assert table["rejected"].tolist()[1] == "No.\n\nHuman: Why not?\n\nAssistant: Caffeine."
    for row, rec in zip(table.itertuples(), (ok, early, human)):  # prompt + answer rebuilds each transcript
        assert rec["chosen"].startswith(row.prompt) and rec["chosen"][len(row.prompt):].strip() == row.chosen
    assert split_hh(ok["chosen"], ok["rejected"])[3] is False


@pytest.mark.parametrize("content", [b"", b"\n\n  \n", b"\xef\xbb\xbf"])
def test_empty_file_is_noted_not_a_crash(tmp_path, content):
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(content)
    with pytest.raises(DataError, match=r"no comparisons found .*empty.jsonl is empty"):
        load_table([empty])
    _write(tmp_path / "good.jsonl", _rows(3))
    result = load_table([tmp_path])
    assert result.report["rows"] == 3 and any("empty.jsonl is empty" in n for n in result.report["notes"])


def test_folder_without_data_files(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="no data files"):
        load_table([tmp_path])


@pytest.mark.parametrize("payload", [
    b"\x00" * 100,                                            # NUL bytes
    b'{"prompt": 1, "chosen": 2.5, "rejected": true}',         # numbers where strings are expected
    b'{"prompt": ["a"], "chosen": {"x": 1}, "rejected": null}',
    b'{"prompt": "p", "chosen": "' + b"a" * 3_000_000 + b'", "rejected": "b"}\n{"prompt": "q", "chosen": "c"',  # huge line, cut
    b"\xff\xfe\xfd garbage",
    b"[" * 5000,
    b'"just a string"',
    b"123",
    b'{"prompt": "\\ud800", "chosen": "a", "rejected": "b"}',  # lone surrogate
])
@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv"])
def test_pathological_file_is_one_line_error_or_bad_rows(tmp_path, payload, suffix):
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(b'{"prompt": "ok?", "chosen": "yes", "rejected": "no"}\n' + payload + b"\n" if suffix != ".csv"
                     else b"prompt,chosen,rejected\nok?,yes,no\n" + payload + b"\n")
    for skip in (False, True):
        try:
            result = load_table([path], skip_bad=skip)
        except BalpmError as exc:
            assert "\n" not in str(exc) and len(str(exc)) < 600, str(exc)
            continue
        assert result.report["rows"] <= 2


def test_subsample_is_seeded_and_prompt_grouped(comparisons_dir):
    full = load_table([comparisons_dir]).table
    a = load_table([comparisons_dir], subsample=300, seed=3)
    b = load_table([comparisons_dir], subsample=300, seed=3)
    c = load_table([comparisons_dir], subsample=300, seed=4)
    assert a.table["pair_id"].tolist() == b.table["pair_id"].tolist()
    assert set(a.table["pair_id"]) != set(c.table["pair_id"])
    in_dist = a.table[a.table["split"] != "ood"]
    assert 300 <= len(in_dist) < 300 + full.groupby("prompt_id").size().max()
    counts = full.groupby("prompt_id").size()  # whole prompts only
    sizes = a.table.groupby("prompt_id").size()
    assert (sizes.to_numpy() == counts.loc[sizes.index].to_numpy()).all()
    frac = len(in_dist) / int((full["split"] != "ood").sum())
    n_ood = int((a.table["split"] == "ood").sum())
    assert 0 < n_ood and abs(n_ood / int((full["split"] == "ood").sum()) - frac) < 0.1
    assert a.report["subsample"]["rows_after"] == len(a.table)
    cfg = load_for_config(DataConfig(paths=(str(comparisons_dir),), split_seed=3, subsample=300))
    assert cfg.table["pair_id"].tolist() == a.table["pair_id"].tolist()
    assert set(np.unique(a.table["split"])) == {"train", "valid", "test", "ood"}


def test_column_names_come_from_data_config(tmp_path):
    path = _write(tmp_path / "qa.csv", ["question,good,bad,fold"] + [f"q{i}?,yes {i},no {i},train" for i in range(20)])
    with pytest.raises(DataError, match="name them with --prompt-col"):
        load_for_config(DataConfig(paths=(str(path),)))
    cfg = DataConfig(paths=(str(path),), prompt_col="question", chosen_col="good", rejected_col="bad", split_col="fold")
    result = load_for_config(cfg)
    assert result.report["rows"] == 20 and result.table["chosen"].str.startswith("yes").all()
    assert set(result.table["orig_split"]) == {"train"}


@pytest.mark.parametrize("name, content, what", [
    ("a.jsonl", gzip.compress(b'{"prompt": "p", "chosen": "a", "rejected": "b"}\n'), "gzip-compressed"),
    ("a.csv", b"PK\x03\x04" + b"\x00" * 40, "a zip archive"),
    ("a.json", b"PAR1" + b"\x00" * 40, "a parquet file"),
])
def test_binary_file_under_a_text_name_says_what_it_is(tmp_path, name, content, what):
    path = tmp_path / name
    path.write_bytes(content)
    for skip in (False, True):
        with pytest.raises(DataError, match=rf"{name}: the file is {what}, not text; "):
            load_table([path], skip_bad=skip)


def test_fifo_is_refused_without_reading(tmp_path):
    import os

    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match="not a regular file"):
        load_table([fifo])  # opening it would block forever
