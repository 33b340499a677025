"""``balpm featurize`` on a real comparisons file: computed, then a cache hit; one-line errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from balpm.cli import main


def _run(argv, capsys):
    code = 0
    try:
        main(argv)
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_featurize_then_cache_hit(comparisons_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = str(comparisons_dir / "edit_b2_eval_test.json")
    args = ["featurize", data, "--cache-dir", str(tmp_path), "--max-length", "64", "--batch-size", "8", "--no-progress"]
    code, out, err = _run(args, capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("table: 5 comparisons")
    assert sum("computed" in line for line in lines) == 2 and "cache hit" not in out
    code, out, err = _run(args + ["--json"], capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["rows"] == 5 and summary["dim"] == 384 and summary["model"] == "minilm"
    assert all(p["cache_hit"] for p in summary["parts"].values())
    assert summary["parts"]["pairs"]["shape"] == [5, 2, 384]
    pairs = np.load(summary["parts"]["pairs"]["path"])
    assert pairs.dtype == np.float32 and np.isfinite(pairs).all()
    code, out, _ = _run(args, capsys)
    assert code == 0 and sum("cache hit" in line for line in out.splitlines()) == 2


@pytest.mark.parametrize("extra, needle", [
    (["--dtype", "fp16"], "fp32"),
    (["--load-in-4bit", "--load-in-8bit"], "not both"),
    (["--model", "/no/such/folder-or-id"], "model"),
])
def test_bad_options_are_one_line_errors(extra, needle, comparisons_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = _run(["featurize", str(comparisons_dir / "edit_b2_eval_test.json"), "--cache-dir", str(tmp_path),
                           "--no-progress", *extra], capsys)
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1 and needle in err
    assert not list(tmp_path.rglob("*.npy"))


def test_missing_file_is_one_line_error(tmp_path, capsys):
    code, _, err = _run(["featurize", str(tmp_path / "missing.json"), "--cache-dir", str(tmp_path)], capsys)
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
