"""balpm.experiment.projection: raw / PCA / UMAP maps of prompt features, cached beside the dataset snapshot."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from balpm.errors import BalpmError, ConfigError, FeatureError
from balpm.experiment import projection, runs


def _blobs(n_per: int = 60, dim: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=12.0, size=(3, dim))
    labels = np.repeat(np.arange(3), n_per)
    return (centres[labels] + rng.normal(size=(3 * n_per, dim))).astype(np.float32), labels


def _snapshot(root, feats: np.ndarray) -> str:
    ids = [f"q{i}" for i in range(len(feats))]
    table = pd.DataFrame({"pair_id": [f"p{i}" for i in range(len(feats))], "prompt_id": ids})
    return runs.write_dataset(root, table, ids, feats)


def test_two_dimensional_features_are_used_raw():
    feats = np.random.default_rng(1).normal(size=(40, 2)).astype(np.float32)
    proj = projection.project(feats, "auto")
    assert proj.method == "raw"
    np.testing.assert_array_equal(proj.coords_P_2, feats)
    # asking for PCA or UMAP of 2-D features still shows them as they are
    assert projection.project(feats, "pca").method == "raw"


def test_pca_is_the_top_two_principal_directions():
    rng = np.random.default_rng(2)
    # variance 25 along axis 3, 4 along axis 0, ~0.01 elsewhere
    feats = rng.normal(size=(300, 6)) * np.array([2.0, 0.1, 0.1, 5.0, 0.1, 0.1])
    proj = projection.project(feats.astype(np.float32), "pca", seed=0)
    assert proj.method == "pca" and proj.coords_P_2.shape == (300, 2)
    var = proj.coords_P_2.var(axis=0)
    assert var[0] > var[1] > 1.0
    # component 1 is (up to sign) the feature with variance 25, component 2 the one with 4
    assert abs(np.corrcoef(proj.coords_P_2[:, 0], feats[:, 3])[0, 1]) > 0.99
    assert abs(np.corrcoef(proj.coords_P_2[:, 1], feats[:, 0])[0, 1]) > 0.99
    again = projection.project(feats.astype(np.float32), "pca", seed=0)
    np.testing.assert_array_equal(proj.coords_P_2, again.coords_P_2)


def test_auto_falls_back_to_pca_when_umap_cannot_run():
    feats = np.random.default_rng(3).normal(size=(6, 8)).astype(np.float32)
    proj = projection.project(feats, "auto")
    assert proj.method == "pca"
    with pytest.raises(ConfigError, match="UMAP needs"):
        projection.project(feats, "umap", n_neighbors=15)


def test_bad_inputs_raise_one_line_errors():
    with pytest.raises(FeatureError, match="NaN"):
        projection.project(np.array([[0.0, np.nan, 1.0]] * 20, dtype=np.float32))
    with pytest.raises(FeatureError, match="shape"):
        projection.project(np.zeros((0, 3), dtype=np.float32))
    with pytest.raises(ConfigError, match="unknown projection method"):
        projection.project(np.zeros((20, 3), dtype=np.float32), "tsne")


def test_umap_separates_clusters_is_seeded_and_cached_on_disk(tmp_path):
    feats, labels = _blobs()
    data_hash = _snapshot(tmp_path, feats)
    first = projection.cached_projection(tmp_path, data_hash, method="umap", seed=0, n_neighbors=10)
    assert first.method == "umap" and not first.cached
    coords = first.coords_P_2
    # well-separated blobs stay separated: each point's nearest 2-D neighbour has its label
    d2 = ((coords[:, None, :] - coords[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    assert (labels[d2.argmin(1)] == labels).mean() > 0.97
    folder = tmp_path / "_datasets" / data_hash
    meta = json.loads((folder / "projection-umap.json").read_text())
    assert meta["seed"] == 0 and meta["n_neighbors"] == 10 and meta["features"] == projection.features_checksum(feats)
    np.testing.assert_array_equal(np.load(folder / "projection-umap.npy", allow_pickle=False), coords)

    hit = projection.cached_projection(tmp_path, data_hash, method="umap", seed=0, n_neighbors=10)
    assert hit.cached
    np.testing.assert_array_equal(hit.coords_P_2, coords)
    # auto prefers UMAP and finds the same cache file
    assert projection.cached_projection(tmp_path, data_hash, method="auto", n_neighbors=10).cached

    # the same seed refits to the same map (seeded), without the cache
    refit = projection.cached_projection(tmp_path, data_hash, method="umap", seed=0, n_neighbors=10, refit=True)
    assert not refit.cached
    np.testing.assert_allclose(refit.coords_P_2, coords, atol=1e-5)


def test_cache_is_invalidated_by_other_parameters_features_or_corruption(tmp_path):
    feats, _ = _blobs(n_per=10, dim=5)
    data_hash = _snapshot(tmp_path, feats)
    first = projection.cached_projection(tmp_path, data_hash, method="pca")
    assert not first.cached
    assert projection.cached_projection(tmp_path, data_hash, method="pca").cached
    assert not projection.cached_projection(tmp_path, data_hash, method="pca", seed=5).cached
    # features differing from the cached checksum (another feature set for the same data) refit
    other = feats + 1.0
    assert not projection.cached_projection(tmp_path, data_hash, other, method="pca").cached
    # a corrupt parameter file is ignored and rewritten, never trusted
    meta = tmp_path / "_datasets" / data_hash / "projection-pca.json"
    meta.write_text("{not json")
    again = projection.cached_projection(tmp_path, data_hash, other, method="pca")
    assert not again.cached and json.loads(meta.read_text())["method"] == "pca"


def test_snapshot_paths_cannot_leave_the_runs_root(tmp_path):
    with pytest.raises(BalpmError):
        projection.cached_projection(tmp_path, "../../etc")
    with pytest.raises(BalpmError):
        projection.snapshot_folder(tmp_path, "/etc")
    with pytest.raises(BalpmError, match="no prompt_features"):
        projection.cached_projection(tmp_path, "0123456789abcdef")


def test_object_array_cache_is_refused_not_unpickled(tmp_path):
    feats, _ = _blobs(n_per=10, dim=5)
    data_hash = _snapshot(tmp_path, feats)
    projection.cached_projection(tmp_path, data_hash, method="pca")
    npy = tmp_path / "_datasets" / data_hash / "projection-pca.npy"
    np.save(npy, np.array([{"evil": 1}] * 30, dtype=object), allow_pickle=True)
    proj = projection.cached_projection(tmp_path, data_hash, method="pca")
    assert not proj.cached and proj.coords_P_2.dtype == np.float32


def test_cached_snapshot_map_opens_without_reading_the_features(tmp_path, monkeypatch):
    feats, _ = _blobs(n_per=10, dim=5)
    data_hash = _snapshot(tmp_path, feats)
    first = projection.cached_projection(tmp_path, data_hash, method="pca")
    assert not first.cached and first.params["snapshot"] == data_hash

    def no_read(*a, **k):
        raise AssertionError("features read although the snapshot's map is cached")

    monkeypatch.setattr(projection, "load_snapshot_features", no_read)
    monkeypatch.setattr(projection, "umap_possible", no_read)  # no umap import on a cache hit either
    hit = projection.cached_projection(tmp_path, data_hash, method="auto")
    assert hit.cached and hit.method == "pca"
    np.testing.assert_array_equal(hit.coords_P_2, first.coords_P_2)


def test_precompute_maps_every_snapshot_the_runs_use_and_sweep_calls_it(tmp_path, monkeypatch):
    from balpm.config import RunConfig
    from balpm.experiment import loop, sweep

    cfg = RunConfig().replace(data={"synthetic": "paper", "synthetic_size": 200},
                              model={"hidden": (8,), "ensemble_size": 2, "max_epochs": 1, "batch_size": 16},
                              loop={"initial": 16, "batch_size": 16, "rounds": 2})
    loop.run(cfg.replace(acquisition={"policy": "random"}), tmp_path, progress=False)
    (data_hash,) = projection.snapshots_in_use(tmp_path)
    done = projection.precompute(tmp_path, method="pca")
    assert done[data_hash]["method"] == "pca" and done[data_hash]["cached"] is False
    assert (tmp_path / "_datasets" / data_hash / "projection-pca.npy").is_file()
    assert projection.precompute(tmp_path, method="pca")[data_hash]["cached"] is True
    # a broken snapshot is reported, never raised
    (tmp_path / "_datasets" / data_hash / "prompt_features.npy").write_bytes(b"not npy")
    (tmp_path / "_datasets" / data_hash / "projection-pca.json").unlink()
    assert "error" in projection.precompute(tmp_path, method="pca")[data_hash]

    calls = []
    monkeypatch.setattr(projection, "precompute", lambda root, run_ids=None, **kw: calls.append((root, run_ids)) or {})
    root = tmp_path / "swept"
    results = sweep.sweep(sweep.expand(cfg.replace(data={"synthetic": "teaching", "synthetic_size": 200}), ["random"], [0]),
                          root, progress=False)
    assert calls == [(root, [results[0].run_id])]


def test_a_map_being_fitted_by_another_process_is_waited_for(tmp_path):
    import socket
    import subprocess
    import sys
    import time

    feats, _ = _blobs(n_per=10, dim=5)
    data_hash = _snapshot(tmp_path, feats)
    folder = tmp_path / "_datasets" / data_hash
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:  # another live process (the dashboard's background fit) holds the marker
        runs.atomic_write_json(folder / projection.FITTING, {"pid": other.pid, "host": socket.gethostname()})
        t0 = time.monotonic()
        proj = projection.cached_projection(tmp_path, data_hash, method="pca", wait=1.0)
        assert time.monotonic() - t0 >= 1.0 and not proj.cached  # waited, then fitted itself
    finally:
        other.kill()
        other.wait()
    # a stale marker (dead process) is not waited for; our own fit leaves no marker behind
    runs.atomic_write_json(folder / projection.FITTING, {"pid": other.pid, "host": socket.gethostname()})
    t0 = time.monotonic()
    projection.cached_projection(tmp_path, data_hash, method="pca", refit=True, wait=30.0)
    assert time.monotonic() - t0 < 10
    assert not (folder / projection.FITTING).exists()
    # the background entry point the dashboard starts: no run uses this snapshot, so nothing to map
    # (tests/test_dashboard_pages.py sees it map a run's snapshot)
    out = subprocess.run([sys.executable, "-m", "balpm.experiment.projection", str(tmp_path), "--method", "pca"],
                         capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "{}"
