"""``balpm data inspect``: the readable table, ``--json``, and one-line errors with exit code 2."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from balpm.cli import main

REPO = Path(__file__).resolve().parents[1]


def _run(capsys, argv):
    main(argv)
    return capsys.readouterr()


def test_inspect_json_on_the_real_files(capsys, comparisons_dir):
    d = comparisons_dir
    out = _run(capsys, ["data", "inspect", str(d / "batch13.json"), str(d / "batch18.json"),
                        str(d / "edit_b2_eval_test.json"), "--ood", str(d / "batch0_cnndm.json"),
                        "--ood", str(d / "cnndm0.json"), "--json"]).out
    report = json.loads(out)  # exactly one JSON object
    assert out.strip().count("\n") == 0
    assert report["rows"] == 1776 + 437
    assert report["duplicates_dropped"] == 437
    assert report["bad_rows"] == 0
    assert report["per_source"] == {"tldr": 1776, "cnndm": 437}
    assert report["per_split"]["ood"] == 437
    assert sum(report["per_split"].values()) == report["rows"]
    assert report["prompts"] == report["prompts_per_source"]["tldr"] + report["prompts_per_source"]["cnndm"]
    assert report["comparisons_per_prompt"]["max"] >= report["comparisons_per_prompt"]["mean"] >= 1


def test_inspect_table_is_readable(capsys, comparisons_dir):
    out = _run(capsys, ["data", "inspect", str(comparisons_dir), "--seed", "3", "--ratios", "0.8,0.1,0.1"]).out
    assert "duplicates dropped 437" in out
    assert "rows 2,213" in out
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("source"))
    assert header.split() == ["source", "train", "valid", "test", "ood", "rows", "prompts"]
    cnndm = next(line for line in lines if line.startswith("cnndm")).split()
    assert cnndm[-3:] == ["437", "437", "45"]
    assert "seed 3" in out


def test_inspect_named_columns(capsys, tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text("".join(json.dumps({"q": f"q{i}", "good": "g", "bad": "b", "fold": "test"}) + "\n" for i in range(6)),
                    encoding="utf-8")
    out = _run(capsys, ["data", "inspect", str(path), "--prompt-col", "q", "--chosen-col", "good", "--rejected-col", "bad",
                        "--split-col", "fold", "--keep-original", "--json"]).out
    report = json.loads(out)
    assert report["rows"] == 6 and report["per_split"] == {"test": 6} and report["per_source"] == {"custom": 6}


def test_bad_row_is_one_line_error_exit_2(capsys, tmp_path):
    path = tmp_path / "bad.json"
    good = {"info": {"post": "p"}, "summaries": [{"text": "a"}, {"text": "b"}], "choice": 0, "worker": "w"}
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "choice": 7}) + "\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "inspect", str(path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert f"{path}: line 2: choice is not 0 or 1" in err and "--skip-bad" in err
    report = json.loads(_run(capsys, ["data", "inspect", str(path), "--skip-bad", "--json"]).out)
    assert (report["rows"], report["bad_rows"], report["bad_reasons"]) == (1, 1, {"bad_choice": 1})


@pytest.mark.parametrize("argv", [
    ["data", "inspect", "/no/such/file.json"],
    ["data", "inspect", "x", "--format", "weird"],
    ["data", "inspect", "x", "--ratios", "1,2"],
])
def test_usage_errors_exit_2(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_subprocess_prints_no_traceback(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_bytes(b'{"prompt": "p", "chosen": "a", "rejected": "b"}\n{"prompt": "p\xff", "chosen": "a"}\n')
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "balpm", "data", "inspect", str(path)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120, check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(f"error: {path}: line 2: not valid UTF-8 (byte 13")
    assert proc.stderr.rstrip().endswith("pass --skip-bad (skip_bad=True) to skip such rows")


def test_subsample_flag_of_inspect(capsys, comparisons_dir):
    report = json.loads(_run(capsys, ["data", "inspect", str(comparisons_dir), "--subsample", "300", "--seed", "2",
                                      "--json"]).out)
    assert report["subsample"]["n"] == 300 and report["rows"] == report["subsample"]["rows_after"] < 2213
    assert sum(n for s, n in report["per_split"].items() if s != "ood") >= 300


def test_custom_column_table_can_be_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    table = tmp_path / "qa.csv"
    table.write_text("question,good,bad\n" + "".join(f"Is {i} even?,{'yes' if i % 2 == 0 else 'no'},maybe {i}\n"
                                                      for i in range(40)))
    cols = ["--set", "data.prompt_col=question", "--set", "data.chosen_col=good", "--set", "data.rejected_col=bad"]
    common = ["--data", str(table), "--policy", "random", "--initial", "4", "--batch-size", "4", "--rounds", "2",
              "--ensemble-size", "2", "--hidden", "8", "--epochs", "1", "--no-pool-scores", "--runs-dir", str(tmp_path / "runs"),
              "--set", f"features.cache_dir={tmp_path / 'cache'}", "-q"]
    with pytest.raises(SystemExit):  # without the mapping: one line naming the column options
        main(["run"] + common)
    assert "name them with --prompt-col" in capsys.readouterr().err
    out = _run(capsys, ["run"] + common + cols).out
    assert "complete, 2 rounds" in out
    # the data inspect / featurize flags keep working on the same file
    report = json.loads(_run(capsys, ["data", "inspect", str(table), "--prompt-col", "question", "--chosen-col", "good",
                                      "--rejected-col", "bad", "--json"]).out)
    assert report["rows"] == 40
