"""Hostile runs folders (issue 15): symlinked run files and run folders are refused under a relative or an
absolute root alike, and a ``.npy`` whose header lies about its shape is refused from the header before
anything is loaded, mapped or projected."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from balpm import npy_files
from balpm.cli import main
from balpm.errors import BalpmError, FeatureError
from balpm.evidence.report import collect
from balpm.experiment import projection, runs, snapshot
from balpm.features.cache import FeatureCache


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A runs root with one complete real run ``r0`` (teaching world, two rounds) and its dataset snapshot."""
    root = tmp_path_factory.mktemp("base")
    main(["run", "--rounds", "2", "--initial", "20", "--batch-size", "20", "--runs-dir", str(root), "--run-id", "r0",
          "--set", "model.ensemble_size=2", "--set", "model.max_epochs=2", "--quiet"])
    return root


@pytest.fixture
def hostile(base, tmp_path, monkeypatch) -> Path:
    """``tmp/hostile/A``: the real run ``r0``; ``r1`` whose config.yaml and status.json are links to another
    complete run's files outside the runs folder (``tmp/outside/victim``); ``r2``, a link to that run's folder.
    The current directory is ``tmp``, so ``hostile/A`` is a relative root."""
    root = tmp_path / "hostile" / "A"
    shutil.copytree(base, root, symlinks=True)
    victim = tmp_path / "outside" / "victim"
    shutil.copytree(base / "r0", victim)
    r1 = root / "r1"
    shutil.copytree(base / "r0", r1)
    for name in ("config.yaml", "status.json"):
        (r1 / name).unlink()
        os.symlink(os.path.relpath(victim / name, r1), r1 / name)
    os.symlink(victim, root / "r2")
    monkeypatch.chdir(tmp_path)
    return root


@pytest.mark.parametrize("relative", [True, False])
def test_links_out_of_the_runs_folder_are_refused_under_any_root(hostile, relative, capsys):
    root = Path("hostile/A") if relative else hostile.resolve()
    infos = {i.run_id: i for i in runs.list_runs(root)}
    assert infos["r0"].state == "complete"
    assert infos["r1"].state == "broken" and "outside the runs folder" in infos["r1"].reason
    assert infos["r2"].state == "broken" and "symbolic link" in infos["r2"].reason
    for rid in ("r1", "r2"):
        with pytest.raises(BalpmError, match="refused|outside the runs folder"):
            runs.open_run(root, rid)
    # balpm runs: listed as broken, never read
    main(["runs", "--runs-dir", str(root)])
    lines = dict(line.split("\t", 1) for line in capsys.readouterr().out.splitlines())
    assert lines["r1"].startswith("broken") and "refused" in lines["r1"]
    assert lines["r2"].startswith("broken") and "refused" in lines["r2"]
    # balpm report: the root, and the hostile run folder given directly
    loaded, skipped = collect([root])
    assert [r.run_id for r in loaded] == ["r0"]
    assert {s["run_id"]: "refused" in s["reason"] for s in skipped} == {"r1": True, "r2": True}
    loaded, skipped = collect([root / "r1"])
    assert not loaded and "refused" in skipped[0]["reason"]


def test_a_run_given_as_a_link_is_read_but_its_files_must_stay_beside_it(hostile):
    assert runs.inspect_run(Path("hostile/A/r2")).state == "complete"  # the link's target is a plain run
    assert runs.inspect_run(Path("hostile/A/r1")).state == "broken"


def _snapshot_dir(root: Path) -> Path:
    (folder,) = [p for p in (root / runs.DATASETS_DIR).iterdir() if p.is_dir()]
    return folder


def _lying_npy(path: Path, shape: tuple[int, ...], sparse_full_size: bool = True) -> None:
    """A float32 .npy whose header claims ``shape``: a sparse file of exactly that size (no disk used), or
    (``sparse_full_size=False``) the header followed by only 16 rows' worth of data."""
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": shape})
        offset = fh.tell()
        row = int(np.prod(shape[1:])) * 4
        fh.truncate(offset + (int(np.prod(shape)) * 4 if sparse_full_size else 16 * row))


def test_a_lying_features_header_is_refused_before_loading(base, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(base, root)
    folder = _snapshot_dir(root)
    n_ids = len(json.loads((folder / "prompt_ids.json").read_text()))
    real = npy_files.read_header(folder / "prompt_features.npy")
    npy_files.check_header(real, "real", rows=n_ids)  # what balpm writes passes
    _lying_npy(folder / "prompt_features.npy", (500_000, 1024))
    data_hash = folder.name
    t0 = time.perf_counter()
    for load in (lambda: projection.cached_projection(root, data_hash),
                 lambda: runs.open_run(root, "r0").dataset(),
                 lambda: projection.load_snapshot_features(root, data_hash)):
        with pytest.raises(FeatureError, match=rf"claims shape \(500000, 1024\).*{n_ids:,} ids"):
            load()
    assert time.perf_counter() - t0 < 10
    # the header claims more than the file holds
    _lying_npy(folder / "prompt_features.npy", (n_ids, 1024), sparse_full_size=False)
    with pytest.raises(FeatureError, match="but the file holds"):
        projection.load_snapshot_features(root, data_hash)


def test_a_lying_pair_features_header_is_refused(base, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(base, root)
    meta = runs.open_run(root, "r0").meta
    ffolder = snapshot.features_folder(root, meta["data_hash"], meta["feature_hash"])
    n_pairs = len(json.loads((ffolder / "pair_ids.json").read_text()))
    _, feats = snapshot.load_inputs(root, meta["data_hash"], meta["feature_hash"])  # the real one loads
    assert feats.pairs_N_2_D.shape[0] == n_pairs
    _lying_npy(ffolder / "pairs.npy", (500_000, 2, 1024))
    with pytest.raises(BalpmError, match=r"pairs.npy .*claims shape \(500000, 2, 1024\)"):
        snapshot.load_inputs(root, meta["data_hash"], meta["feature_hash"])


def test_the_projection_process_refuses_a_lying_header_with_bounded_memory(base, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(base, root)
    _lying_npy(_snapshot_dir(root) / "prompt_features.npy", (500_000, 1024))
    peak = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
            "print('PEAK_MB=%d' % (resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)); sys.exit(code)")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", peak, sys.executable, "-m", "balpm.experiment.projection", str(root)],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    out, _, peak_mb = proc.stdout.rpartition("PEAK_MB=")
    (result,) = json.loads(out.strip().splitlines()[-1]).values()
    assert "claims shape (500000, 1024)" in result["error"]
    assert int(peak_mb) < 1000 and time.perf_counter() - t0 < 60  # was 2.3 GB, and an hour of fitting


def test_feature_cache_treats_a_lying_header_as_damaged(tmp_path):
    cache = FeatureCache(tmp_path)
    array = np.arange(12, dtype=np.float32).reshape(6, 2)
    cache.save("ab" * 8, array, {})
    found = cache.load("ab" * 8, rows=6)
    assert found is not None and np.array_equal(found[0], array)
    assert cache.load("ab" * 8, rows=7) is None  # 6 rows cached, 7 texts asked for
    npy, manifest = cache.paths("ab" * 8)
    _lying_npy(npy, (500_000, 1024))
    doc = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**doc, "shape": [500_000, 1024]}))  # a manifest that agrees with the lie
    assert cache.load("ab" * 8, rows=6) is None


def test_balpm_runs_prints_hostile_folder_names_escaped(tmp_path, capsys):
    root = tmp_path / "runs"
    (root / "bad\x1b[31mred\u202e").mkdir(parents=True)  # ESC and RIGHT-TO-LEFT OVERRIDE in a folder name
    main(["runs", "--runs-dir", str(root)])
    out = capsys.readouterr().out
    assert out.startswith("bad\\x1b[31mred\\u202e\tbroken\t") and "\x1b" not in out and "\u202e" not in out


def test_report_text_is_terminal_safe(capsys):
    """`balpm report`'s text goes through errors.printable line by line: an ESC byte or a right-to-left
    override in a label never reaches the terminal raw, and the table keeps its lines."""
    from balpm.cli.report import _terminal_safe

    text = "setting x\n  balpm\x1b[31m-evil\u202e  +0.01\nlast"
    out = _terminal_safe(text)
    assert out.split("\n")[0] == "setting x" and len(out.split("\n")) == 3
    assert "\x1b" not in out and "\u202e" not in out and "\\x1b[31m-evil\\u202e" in out
