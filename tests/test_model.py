"""The batched Bradley-Terry ensemble: determinism, independent members, learning, early stopping."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from balpm.config import ModelConfig
from balpm.data.synthetic import paper_world
from balpm.engine.model import PreferenceEnsemble, onednn_available
from balpm.errors import ConfigError, FeatureError
from balpm.evidence.metrics import preference_metrics

SMALL = ModelConfig(ensemble_size=3, hidden=(32, 16), init_std=0.1, lr=3e-3, batch_size=32, max_epochs=3,
                    device="cpu")


@pytest.fixture(scope="module")
def world():
    table, feats = paper_world(n=500, d=8, seed=1, n_prompts=100)
    split = table["split"].to_numpy()
    return {s: feats.pairs_N_2_D[split == s] for s in ("train", "valid", "test")}


def test_shapes_and_range(world):
    model = PreferenceEnsemble(SMALL, 8, seed=0)
    report = model.fit(world["train"], world["valid"])
    probs = model.predict_probs(world["test"])
    assert probs.shape == (len(world["test"]), 3) and probs.dtype == np.float64
    assert ((probs > 0) & (probs < 1)).all()
    assert model.predict_probs(np.zeros((0, 2, 8), np.float32)).shape == (0, 3)
    assert model.predict_rewards(world["test"][:5, 0]).shape == (5, 3)
    assert 1 <= report.best_epoch <= report.epochs <= SMALL.max_epochs
    assert len(report.best_epochs) == 3 and len(report.train_history) == report.epochs
    assert report.seconds > 0 and np.isfinite(report.valid_loss)


def test_same_seed_same_data_is_bitwise_identical(world):
    runs = []
    for _ in range(2):
        model = PreferenceEnsemble(SMALL, 8, seed=5)
        model.fit(world["train"], world["valid"])
        runs.append(model.predict_probs(world["test"]))
    assert np.array_equal(runs[0], runs[1])
    other = PreferenceEnsemble(SMALL, 8, seed=6)
    other.fit(world["train"], world["valid"])
    assert not np.array_equal(other.predict_probs(world["test"]), runs[0])


def test_members_differ(world):
    model = PreferenceEnsemble(SMALL, 8, seed=0)
    w = [model.member_weights(m)[0][0] for m in range(3)]
    assert not np.array_equal(w[0], w[1]) and not np.array_equal(w[1], w[2])
    model.fit(world["train"], world["valid"])
    probs = model.predict_probs(world["test"])
    assert np.abs(probs[:, 0] - probs[:, 1]).max() > 1e-3
    assert np.abs(probs[:, 1] - probs[:, 2]).max() > 1e-3
    # biases start at zero, weights at N(0, init_std^2)
    big = PreferenceEnsemble(dataclasses.replace(SMALL, hidden=(256,)), 8, seed=0)
    w0, b0 = big.member_weights(1)[0]
    assert not b0.any() and abs(w0.std() - 0.1) < 0.01


def test_members_train_like_separate_trainers(world):
    """Member m of a K-ensemble equals a 1-member ensemble with member m's seed stream (member 0)."""
    cfg = dataclasses.replace(SMALL, validation="none", max_epochs=2)
    ens = PreferenceEnsemble(cfg, 8, seed=3)
    ens.fit(world["train"])
    solo = PreferenceEnsemble(dataclasses.replace(cfg, ensemble_size=1), 8, seed=3)
    solo.fit(world["train"])
    np.testing.assert_allclose(ens.predict_probs(world["test"])[:, 0], solo.predict_probs(world["test"])[:, 0],
                               rtol=0, atol=1e-6)


def test_batched_forward_equals_per_member_loop(world):
    model = PreferenceEnsemble(dataclasses.replace(SMALL, init_std=0.5), 8, seed=2)
    model.fit(world["train"][:64])
    pairs = world["test"][:40].astype(np.float64)
    for m in range(3):
        layers = model.member_weights(m)

        def reward(x: np.ndarray, layers: list = layers) -> np.ndarray:
            h = x
            for i, (w, b) in enumerate(layers):
                h = h @ w.astype(np.float64) + b.astype(np.float64)
                if i < len(layers) - 1:
                    h = np.tanh(h)
            return h[:, 0]

        margin = reward(pairs[:, 0]) - reward(pairs[:, 1])
        expected = 1 / (1 + np.exp(-margin))
        np.testing.assert_allclose(model.predict_probs(pairs)[:, m], expected, rtol=0, atol=1e-5)
        np.testing.assert_allclose(model.predict_rewards(pairs[:, 0])[:, m], reward(pairs[:, 0]), rtol=1e-4, atol=1e-5)
    # the training path (per-member rows) and the evaluation path (shared rows) agree
    x = torch.from_numpy(world["test"][:10, 0].astype(np.float32))
    with torch.no_grad():
        shared = model.net.forward_shared(x)
        per_member = model.net.forward_members(x.expand(3, -1, -1).contiguous())
    torch.testing.assert_close(shared, per_member, rtol=1e-5, atol=1e-6)


def test_loss_decreases_and_beats_chance(world):
    cfg = dataclasses.replace(SMALL, max_epochs=8, validation="none")
    model = PreferenceEnsemble(cfg, 8, seed=0)
    report = model.fit(world["train"])
    assert report.train_history[-1] < report.train_history[0] - 0.02
    metrics = preference_metrics(model.predict_probs(world["test"]))
    assert metrics["accuracy"] > 0.6           # chance 0.5; the Bayes accuracy on this test set is 0.79
    assert metrics["log_likelihood"] > np.log(0.5)


def test_early_stopping_restores_best_weights(world):
    # validation pairs with the labels flipped: the validation loss rises while training proceeds,
    # so every member's best epoch is the first and the first epoch's weights come back
    flipped = world["train"][:, ::-1].copy()
    cfg = dataclasses.replace(SMALL, max_epochs=10, patience=2)
    model = PreferenceEnsemble(cfg, 8, seed=4)
    report = model.fit(world["train"], flipped)
    assert report.best_epochs == (1, 1, 1) and report.best_epoch == 1
    assert report.epochs == 3                                   # patience 2: epochs 2 and 3 worse, stop
    assert report.valid_history[1] > report.valid_history[0]
    assert report.valid_loss == pytest.approx(report.valid_history[0], rel=1e-5)
    one_epoch = PreferenceEnsemble(dataclasses.replace(cfg, max_epochs=1, validation="none"), 8, seed=4)
    one_epoch.fit(world["train"])
    assert np.array_equal(model.predict_probs(world["test"]), one_epoch.predict_probs(world["test"]))


def test_validation_none_keeps_last_epoch(world):
    cfg = dataclasses.replace(SMALL, validation="none")
    with_valid = PreferenceEnsemble(cfg, 8, seed=1)
    report = with_valid.fit(world["train"], world["train"][:, ::-1])
    plain = PreferenceEnsemble(cfg, 8, seed=1)
    plain.fit(world["train"])
    assert report.epochs == report.best_epoch == cfg.max_epochs and np.isnan(report.valid_loss)
    assert np.array_equal(with_valid.predict_probs(world["test"]), plain.predict_probs(world["test"]))


def test_bad_input_is_one_line(world):
    model = PreferenceEnsemble(SMALL, 8, seed=0)
    bad = world["train"].copy()
    bad[3, 1, 2] = np.nan
    cases = [(bad, "non-finite"), (world["train"][:, :, :5], "dimension 5"), (world["train"][:, 0], "shape"),
             (np.zeros((0, 2, 8)), "empty")]
    for arr, word in cases:
        with pytest.raises(FeatureError) as err:
            model.fit(arr)
        assert word in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(FeatureError):
        model.fit(world["train"], bad)
    for change in ({"validation": "test"}, {"ensemble_size": 0}, {"hidden": (0,)}, {"device": "tpu"},
                   {"init_std": 0.0}, {"patience": 0}):
        with pytest.raises(ConfigError):
            PreferenceEnsemble(dataclasses.replace(SMALL, **change), 8, seed=0)


@pytest.mark.parametrize("fused", [True, False])
def test_adamw_matches_torch_optim(fused):
    from balpm.engine.model import AdamW

    gen = torch.Generator().manual_seed(0)
    init = [torch.randn(3, 4, 5, generator=gen), torch.randn(3, 1, 5, generator=gen)]
    grads = [[torch.randn(t.shape, generator=gen) for t in init] for _ in range(4)]
    mine = [torch.nn.Parameter(t.clone()) for t in init]
    ref = [torch.nn.Parameter(t.clone()) for t in init]
    opt = AdamW([([mine[0]], 0.05), ([mine[1]], 0.0)], lr=1e-2)
    opt.fused = opt.fused and fused
    ref_opt = torch.optim.AdamW([{"params": [ref[0]], "weight_decay": 0.05}, {"params": [ref[1]], "weight_decay": 0.0}],
                                lr=1e-2, foreach=False)
    for g in grads:
        for p, gi in zip(mine, g):
            p.grad = gi.clone()
        for p, gi in zip(ref, g):
            p.grad = gi.clone()
        opt.step()
        ref_opt.step()
    for a, b in zip(mine, ref):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-6, atol=1e-7)


def test_standardize_makes_training_invariant_to_feature_scale(world):
    """MiniLM-like features (tiny per-dimension scale) learn as well as unit-scale ones once standardised."""
    cfg = dataclasses.replace(SMALL, max_epochs=8, validation="none", standardize=True)
    shift, scale = np.linspace(-3, 3, 8).astype(np.float32), np.float32(0.01)
    tiny = {s: (x * scale + shift).astype(np.float32) for s, x in world.items()}
    m1, m2 = PreferenceEnsemble(cfg, 8, seed=0), PreferenceEnsemble(cfg, 8, seed=0)
    m1.fit(world["train"])
    m2.fit(tiny["train"])
    np.testing.assert_allclose(m1.predict_probs(world["test"]), m2.predict_probs(tiny["test"]), atol=2e-3)
    assert preference_metrics(m2.predict_probs(tiny["test"]))["accuracy"] > 0.6


# ---- the speed work of issue 9 keeps the default results bit for bit ---------------------------------
def _reference_fit(model: PreferenceEnsemble, train: np.ndarray, valid: np.ndarray) -> tuple[float, np.ndarray]:
    """The training loop and prediction as they were before the speed work (commit 026854b), verbatim in
    substance: per-chunk first-layer layout, no_grad passes, validation on the whole split every epoch."""
    from torch import nn

    from balpm.engine.model import AdamW, _member_seed

    def margins(pairs: torch.Tensor) -> torch.Tensor:
        out = []
        with torch.no_grad():
            for s in range(0, pairs.shape[0], 2048):
                r = model.net.forward_shared(pairs[s:s + 2048].reshape(-1, model.input_dim)).view(model.k, -1, 2)
                out.append(r[..., 0] - r[..., 1])
        return torch.cat(out, dim=1)

    model.reset()
    cfg, k, d = model.cfg, model.k, model.input_dim
    tr, va = torch.from_numpy(np.ascontiguousarray(train)), torch.from_numpy(np.ascontiguousarray(valid))
    n = tr.shape[0]
    opt = AdamW([(list(model.net.weights), cfg.weight_decay), (list(model.net.biases), 0.0)], cfg.lr)
    gens = [torch.Generator().manual_seed(_member_seed(model.seed, m, 1)) for m in range(k)]
    flat = tr.reshape(n * 2, d)
    best = torch.full((k,), float("inf"))
    bad = np.zeros(k, dtype=np.int64)
    best_params = [p.detach().clone() for p in model.net.parameters()]
    for _epoch in range(cfg.max_epochs):
        order = torch.stack([torch.randperm(n, generator=g) for g in gens])
        for s in range(0, n, cfg.batch_size):
            idx = order[:, s:s + cfg.batch_size]
            b = idx.shape[1]
            rows = torch.stack([2 * idx, 2 * idx + 1], dim=-1).reshape(k, 2 * b)
            x = torch.index_select(flat, 0, rows.reshape(-1)).view(k, 2 * b, d)
            r = model.net.forward_members(x).view(k, b, 2)
            loss = nn.functional.softplus(r[..., 1] - r[..., 0]).mean(dim=1)
            opt.zero_grad()
            loss.sum().backward()
            opt.step()
        vloss = nn.functional.softplus(-margins(va)).mean(dim=1)
        better_t = vloss < best
        best = torch.where(better_t, vloss, best)
        better = better_t.numpy()
        bad = np.where(better, 0, bad + 1)
        with torch.no_grad():
            for bp, p in zip(best_params, model.net.parameters()):
                bp[better_t] = p.detach()[better_t]
        if (bad >= cfg.patience).all():
            break
    with torch.no_grad():
        for bp, p in zip(best_params, model.net.parameters()):
            p.copy_(bp)
    return float(best.mean()), torch.sigmoid(margins(va).double()).T.numpy()


def test_default_mode_is_bit_identical_to_the_code_before_the_speed_work():
    _, feats = paper_world(n=2600, d=24, seed=3)
    pairs = feats.pairs_N_2_D
    train, valid = pairs[:300], pairs[300:2600]   # > one 2048-pair evaluation chunk
    cfg = dataclasses.replace(SMALL, hidden=(40, 8), max_epochs=4, patience=2)
    new = PreferenceEnsemble(cfg, 24, seed=11)
    report = new.fit(train, valid)
    ref = PreferenceEnsemble(cfg, 24, seed=11)
    ref_loss, ref_probs = _reference_fit(ref, train, valid)
    assert report.valid_loss == ref_loss
    assert np.array_equal(new.predict_probs(valid), ref_probs)


def test_speed_switches_are_approximations_that_stay_close(world):
    base = PreferenceEnsemble(SMALL, 8, seed=0)
    base.fit(world["train"], world["valid"])
    p0 = base.predict_probs(world["test"])
    bf16 = PreferenceEnsemble(dataclasses.replace(SMALL, precision="bf16"), 8, seed=0)
    bf16.fit(world["train"], world["valid"])
    p1 = bf16.predict_probs(world["test"])
    assert not np.array_equal(p0, p1) and np.abs(p0 - p1).max() < 0.05
    sub = PreferenceEnsemble(dataclasses.replace(SMALL, valid_subset=20), 8, seed=0)
    rep = sub.fit(world["train"], world["valid"])
    assert np.isfinite(rep.valid_loss)
    from balpm.engine.model import valid_subset_rows

    rows = valid_subset_rows(100, 20)
    assert rows.size == 20 and np.array_equal(rows, valid_subset_rows(100, 20)) and np.all(np.diff(rows) > 0)
    with pytest.raises(ConfigError, match="precision"):
        PreferenceEnsemble(dataclasses.replace(SMALL, precision="fp8"), 8, seed=0)


def test_memmapped_features_give_the_same_model(world, tmp_path):
    path = tmp_path / "pairs.npy"
    np.save(path, world["train"])
    mm = np.load(path, mmap_mode="r")
    a = PreferenceEnsemble(SMALL, 8, seed=4)
    a.fit(world["train"], world["valid"])
    b = PreferenceEnsemble(SMALL, 8, seed=4)
    b.fit(mm, world["valid"])
    assert np.array_equal(a.predict_probs(world["test"]), b.predict_probs(world["test"]))


# ---- model.matmul: oneDNN kernels (issue 9) --------------------------------------------------------
needs_onednn = pytest.mark.skipif(not onednn_available(), reason="this torch build has no oneDNN")


@needs_onednn
def test_onednn_kernels_agree_with_torchs_default_to_float32_rounding():
    """Same arithmetic by another kernel: every probability within float32 rounding, same early stopping."""
    _, feats = paper_world(n=2600, d=24, seed=3)
    pairs = feats.pairs_N_2_D
    train, valid, test = pairs[:300], pairs[300:1300], pairs[1300:2600]
    out = {}
    for matmul in ("blas", "onednn"):
        cfg = dataclasses.replace(SMALL, hidden=(40, 8), max_epochs=4, patience=2, matmul=matmul)
        model = PreferenceEnsemble(cfg, 24, seed=11)
        assert model.net.dnn == (matmul == "onednn")
        report = model.fit(train, valid)
        out[matmul] = (report, model.predict_probs(test), model.predict_rewards(test[:, 0]))
    (rb, pb, wb), (ro, po, wo) = out["blas"], out["onednn"]
    assert rb.best_epochs == ro.best_epochs and rb.epochs == ro.epochs
    np.testing.assert_allclose(po, pb, rtol=0, atol=1e-5)
    np.testing.assert_allclose(wo, wb, rtol=1e-4, atol=1e-5)
    assert ro.valid_loss == pytest.approx(rb.valid_loss, rel=1e-5)
    assert not np.array_equal(po, pb)  # a different kernel indeed (else this test checks nothing)


@needs_onednn
def test_onednn_is_deterministic_and_row_independent():
    """Two fits give the same bits, and a row's probability does not depend on which rows share its pass
    (the loop predicts a shrinking pool in chunks)."""
    _, feats = paper_world(n=3000, d=16, seed=2)
    pairs = feats.pairs_N_2_D
    cfg = dataclasses.replace(SMALL, hidden=(48, 8), matmul="onednn")
    a, b = PreferenceEnsemble(cfg, 16, seed=7), PreferenceEnsemble(cfg, 16, seed=7)
    a.fit(pairs[:200], pairs[200:600])
    b.fit(pairs[:200], pairs[200:600])
    full = a.predict_probs(pairs[600:])          # > one 2048-pair chunk
    assert np.array_equal(full, b.predict_probs(pairs[600:]))
    rows = np.sort(np.random.default_rng(0).choice(len(full), 999, replace=False))
    assert np.array_equal(a.predict_probs(pairs[600:][rows]), full[rows])


@needs_onednn
def test_onednn_member_linear_matches_baddbmm_and_its_gradients():
    from balpm.engine.model import _MemberLinear

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 7, 11, generator=gen, requires_grad=True)
    w = torch.randn(3, 11, 5, generator=gen, requires_grad=True)
    b = torch.randn(3, 1, 5, generator=gen, requires_grad=True)
    g = torch.randn(3, 7, 5, generator=gen)
    grads = []
    for fn in (_MemberLinear.apply, lambda x, w, b: torch.baddbmm(b, x, w)):
        y = fn(x, w, b)
        y.backward(g)
        grads.append((y.detach(), x.grad.clone(), w.grad.clone(), b.grad.clone()))
        x.grad = w.grad = b.grad = None
    for ours, torchs in zip(*grads):
        torch.testing.assert_close(ours, torchs, rtol=1e-5, atol=1e-5)


def test_matmul_auto_picks_onednn_only_for_large_float32_cpu_models():
    from balpm.engine.model import use_onednn

    cpu = torch.device("cpu")
    big = dataclasses.replace(SMALL, hidden=(2048, 256))
    assert not use_onednn(SMALL, 8, cpu)                                   # 8 x 32 weights: per-call overhead wins
    assert use_onednn(big, 384, cpu) == onednn_available()                 # MiniLM width and up
    assert not use_onednn(dataclasses.replace(big, matmul="blas"), 384, cpu)
    assert not use_onednn(dataclasses.replace(big, precision="bf16"), 384, cpu)
    assert not use_onednn(big, 384, torch.device("cuda"))
    with pytest.raises(ConfigError, match="model.matmul"):
        PreferenceEnsemble(dataclasses.replace(SMALL, matmul="fast"), 8, seed=0)
