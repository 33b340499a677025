"""Synthetic preference worlds (source ``synthetic``): clearly labelled simulations, never real data.

Every row has ``source = "synthetic"`` and the features' manifest names the world as its model
(``synthetic-teaching`` or ``synthetic-paper``). Both worlds return ``(table, Features)`` with the
preference-table columns of :mod:`balpm.data.schema`, prompt-grouped ``train`` / ``valid`` / ``test``
splits (:func:`balpm.data.splits.assign_splits`) and an ``ood`` set drawn from a shifted distribution.
Extra columns: ``cluster`` (the prompt's cluster) and ``true_prob`` (the hidden Bradley-Terry probability
that the chosen answer beats the rejected one; the label was drawn from it).

* :func:`teaching_world`: 2-D prompts in six clusters of very different sizes (50%, 20%, 12%, 8%, 6%,
  4%), four comparisons per prompt, pair features ``[prompt x, y | answer vector]`` (D = 16). Answers
  of each cluster vary in their own block of answer directions, and the hidden reward is linear in the
  answer with a component in every block, so each cluster's part of the reward is learnt only from
  that cluster's labels. The largest cluster's answers vary most (larger inputs: the ensemble's members
  disagree most there), so BALD's top-B batches pile up in it (redundant picks, visible at a glance on
  the 2-D map), while an entropy-seeking policy spreads over the clusters. The OOD set reverses the
  cluster proportions and shifts the centres. Labels agree with the hidden reward's preferred answer
  on 60-75% of comparisons (about 70%), like human labellers.
* :func:`paper_world`: any number of comparisons and dimensions, clustered prompt features in D
  dimensions, for benchmarks at the paper's shape (pool 92,000 x 4,096).
"""
from __future__ import annotations

import hashlib
import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from balpm.data.splits import assign_splits
from balpm.errors import ConfigError

if TYPE_CHECKING:  # the features package imports transformers: only when a world is built
    from balpm.features import Features

__all__ = ["SOURCE", "TEACHING_CLUSTER_SIZES", "features_hash", "paper_world", "teaching_world"]

SOURCE = "synthetic"
TEACHING_CLUSTER_SIZES: tuple[float, ...] = (0.50, 0.20, 0.12, 0.08, 0.06, 0.04)

# Teaching-world geometry (fixed: the picture is the same for every seed; the seed draws the samples).
_BIG_STD = 1.0        # spread of the largest cluster's prompts
_SMALL_STD = 0.45     # spread of the other clusters' prompts
_RING = 5.0           # the small clusters sit on a ring of this radius around the largest one
_BIG_ANSWER = 1.6     # answer scale in the largest cluster (larger inputs: more epistemic uncertainty)
_SMALL_ANSWER = 1.0   # answer scale elsewhere
_ISO = 0.2            # isotropic answer noise in every direction (features are full rank everywhere)
_BIG_SHARE = 4        # answer dimensions that vary in the largest cluster (the rest split over the others)
_STRENGTH = 0.6       # reward scale: sets the label agreement (about 0.70 overall)
_OOD_SHIFT = (0.6, -0.4)
_CHUNK = 8192         # paper world: rows generated per block (fixed: the draws depend on it)
_PAIR_SCALE = 6.0     # pair features are scaled so that the reference model (N(0, 0.01^2) init, lr 3e-5) learns


def features_hash(prompts_P_D: np.ndarray, pairs_N_2_D: np.ndarray, prompt_ids: np.ndarray, pair_ids: np.ndarray) -> str:
    """16-hex SHA-256 of both arrays (shape, dtype and bytes) and their id lists."""
    h = hashlib.sha256()
    for arr in (prompts_P_D, pairs_N_2_D):
        arr = np.ascontiguousarray(arr)
        h.update(f"{arr.shape}{arr.dtype}".encode())
        h.update(arr.tobytes())
    for ids in (prompt_ids, pair_ids):
        h.update("\x1f".join(np.asarray(ids).astype(str).tolist()).encode())
    return h.hexdigest()[:16]


def _counts(total: int, fractions: np.ndarray) -> np.ndarray:
    """Integer counts summing to ``total`` proportional to ``fractions`` (largest remainder)."""
    raw = fractions / fractions.sum() * total
    base = np.floor(raw).astype(np.int64)
    short = int(total - base.sum())
    if short > 0:
        base[np.argsort(-(raw - base), kind="stable")[:short]] += 1
    return base


def _features(table: pd.DataFrame, prompt_ids: np.ndarray, prompts_P_D: np.ndarray, pairs_N_2_D: np.ndarray,
              manifest: dict) -> Features:
    from balpm.features import (
        Features,  # lazy: the features package pulls in transformers
    )

    pair_ids = table["pair_id"].to_numpy().astype(str)
    prompt_ids = np.asarray(prompt_ids).astype(str)
    prompts_P_D = np.ascontiguousarray(prompts_P_D, dtype=np.float32)
    pairs_N_2_D = np.ascontiguousarray(pairs_N_2_D, dtype=np.float32)
    digest = features_hash(prompts_P_D, pairs_N_2_D, prompt_ids, pair_ids)
    manifest = {**manifest, "source": SOURCE, "synthetic": True, "prompt_dim": int(prompts_P_D.shape[1]),
                "pair_dim": int(pairs_N_2_D.shape[2]), "prompts": len(prompt_ids), "pairs": len(pair_ids),
                "array_sha256": digest, "cache_hit": {"prompts": False, "pairs": False}}
    return Features(prompt_ids=prompt_ids, prompts_P_D=prompts_P_D, pair_ids=pair_ids, pairs_N_2_D=pairs_N_2_D,
                    manifest=manifest, hash=digest)


def _label(rng: np.random.Generator, margin_N: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bradley-Terry labels: ``first_wins_N`` (bool) and ``p_first_N`` = sigmoid(margin)."""
    p_first = 0.5 * (1.0 + np.tanh(0.5 * np.asarray(margin_N, dtype=np.float64)))
    return rng.random(margin_N.shape[0]) < p_first, p_first


def _orient(first_wins_N: np.ndarray, feats_a: np.ndarray, feats_b: np.ndarray) -> np.ndarray:
    """(N, 2, D) with the winner's features in column 0."""
    w = first_wins_N.reshape((-1,) + (1,) * (feats_a.ndim - 1))
    return np.stack([np.where(w, feats_a, feats_b), np.where(w, feats_b, feats_a)], axis=1)


# ---- teaching world -------------------------------------------------------------------------------
def _teaching_layout(n_clusters: int, answer_dim: int, layout_seed: int) -> dict[str, np.ndarray]:
    """Cluster centres (C, 2); per-cluster answer subspaces (disjoint blocks of a random rotation) and the
    hidden reward's direction inside each (unit vectors, summed into one global direction ``w``)."""
    rng = np.random.default_rng(np.random.SeedSequence([int(layout_seed), 7]))
    angles = 2 * np.pi * np.arange(n_clusters - 1) / max(n_clusters - 1, 1) + np.pi / 7
    centres = np.vstack([np.zeros((1, 2)), _RING * np.c_[np.cos(angles), np.sin(angles)]])
    rot, _ = np.linalg.qr(rng.standard_normal((answer_dim, answer_dim)))
    big = min(_BIG_SHARE, max(1, answer_dim - (n_clusters - 1))) if n_clusters > 1 else answer_dim
    rest = np.array_split(np.arange(big, answer_dim), n_clusters - 1) if answer_dim > big else []
    blocks = [np.arange(big)] + [b if len(b) else np.arange(big) for b in rest]
    blocks += [np.arange(answer_dim)] * (n_clusters - len(blocks))  # more clusters than dimensions: share
    bases = [rot[:, b] for b in blocks]
    w = np.zeros(answer_dim)
    for basis in bases:
        u = basis @ rng.standard_normal(basis.shape[1])
        w += u / np.linalg.norm(u)
    return {"centres": centres, "bases": bases, "w": w}


def _teaching_answers(rng: np.random.Generator, cluster_N: np.ndarray, layout: dict) -> np.ndarray:
    """Answer vectors: cluster-specific subspace (scaled) plus small isotropic noise."""
    dim = layout["w"].shape[0]
    out = _ISO * rng.standard_normal((len(cluster_N), dim))
    for c, basis in enumerate(layout["bases"]):
        rows = np.flatnonzero(cluster_N == c)
        scale = _BIG_ANSWER if c == 0 else _SMALL_ANSWER
        out[rows] += scale * rng.standard_normal((len(rows), basis.shape[1])) @ basis.T
    return out


def _teaching_prompts(rng: np.random.Generator, n_prompts: int, fractions: np.ndarray, centres: np.ndarray,
                      shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    counts = _counts(n_prompts, fractions)
    cluster_P = np.repeat(np.arange(len(fractions)), counts)
    cluster_P = cluster_P[rng.permutation(n_prompts)]
    std = np.where(cluster_P == 0, _BIG_STD, _SMALL_STD)[:, None]
    xy_P_2 = centres[cluster_P] + shift + std * rng.standard_normal((n_prompts, 2))
    return xy_P_2, cluster_P


def teaching_world(seed: int = 0, n: int | None = None, *, n_prompts: int = 800, comparisons_per_prompt: int = 4,
                   answer_dim: int = 14, cluster_sizes: tuple[float, ...] = TEACHING_CLUSTER_SIZES,
                   n_ood_prompts: int = 150, ratios: tuple[float, float, float] = (0.7, 0.1, 0.2),
                   layout_seed: int = 0) -> tuple[pd.DataFrame, Features]:
    """The synthetic teaching world: ``(table, Features)``, deterministic in ``seed``.

    ``n_prompts`` in-distribution prompts (``n`` comparisons instead, if given: ``ceil(n / cpp)`` prompts)
    with ``comparisons_per_prompt`` comparisons each, split by prompt into train / valid / test with
    ``ratios``; plus ``n_ood_prompts`` prompts (same number of comparisons each) in the ``ood`` split,
    drawn with the cluster proportions reversed and the centres shifted. Prompt features are the 2-D
    prompt positions (P, 2); pair features are ``[x, y, answer (answer_dim)]`` (N, 2, 2 + answer_dim),
    column 0 the chosen answer. Default: 3,200 + 600 comparisons, D = 16. The cluster layout and
    hidden reward come from ``layout_seed`` (fixed by default), the samples and labels from ``seed``.
    """
    fractions = np.asarray(cluster_sizes, dtype=np.float64)
    if fractions.ndim != 1 or fractions.size < 2 or (fractions <= 0).any() or not np.isfinite(fractions).all():
        raise ConfigError(f"cluster_sizes must be at least two positive fractions (got {cluster_sizes})")
    if n is not None:
        if int(n) < 1:
            raise ConfigError(f"synthetic world size must be >= 1 comparison (got {n})")
        n_prompts = math.ceil(int(n) / int(comparisons_per_prompt)) if comparisons_per_prompt >= 1 else 0
    if n_prompts < len(fractions) or comparisons_per_prompt < 1 or answer_dim < 1 or n_ood_prompts < 0:
        raise ConfigError(
            f"teaching world needs n_prompts >= {len(fractions)} (one per cluster), comparisons_per_prompt >= 1, "
            f"answer_dim >= 1 and n_ood_prompts >= 0 (got {n_prompts}, {comparisons_per_prompt}, {answer_dim}, {n_ood_prompts})")
    layout = _teaching_layout(len(fractions), int(answer_dim), layout_seed)
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 11])
    rng_ind, rng_ood, rng_lab = (np.random.default_rng(s) for s in ss.spawn(3))
    xy_in, cl_in = _teaching_prompts(rng_ind, int(n_prompts), fractions, layout["centres"], np.zeros(2))
    xy_ood, cl_ood = _teaching_prompts(rng_ood, int(n_ood_prompts), fractions[::-1].copy(), layout["centres"],
                                       np.asarray(_OOD_SHIFT))
    xy_P_2 = np.vstack([xy_in, xy_ood])
    cluster_P = np.concatenate([cl_in, cl_ood])
    is_ood_P = np.r_[np.zeros(len(cl_in), bool), np.ones(len(cl_ood), bool)]
    n_p, cpp = len(cluster_P), int(comparisons_per_prompt)

    prompt_N = np.repeat(np.arange(n_p), cpp)
    slot_N = np.tile(np.arange(cpp), n_p)
    if n is not None:  # trim the in-distribution part to exactly n comparisons
        keep = (~is_ood_P[prompt_N]) & (np.arange(len(prompt_N)) < int(n)) | is_ood_P[prompt_N]
        prompt_N, slot_N = prompt_N[keep], slot_N[keep]
    cluster_N = cluster_P[prompt_N]
    xy_N_2 = xy_P_2[prompt_N]
    ans_a = _teaching_answers(rng_lab, cluster_N, layout)
    ans_b = _teaching_answers(rng_lab, cluster_N, layout)
    margin = _STRENGTH * (ans_a - ans_b) @ layout["w"]
    a_wins, p_a = _label(rng_lab, margin)
    pairs_N_2_D = _PAIR_SCALE * _orient(a_wins, np.hstack([xy_N_2, ans_a]), np.hstack([xy_N_2, ans_b]))

    prompt_ids_P = np.array([f"syn-t{p:05d}" for p in range(n_p)])
    name_a = [f"answer a{p}-{2 * s}" for p, s in zip(prompt_N, slot_N)]
    name_b = [f"answer a{p}-{2 * s + 1}" for p, s in zip(prompt_N, slot_N)]
    table = pd.DataFrame({
        "pair_id": [f"syn-t{p:05d}-{s}" for p, s in zip(prompt_N, slot_N)],
        "prompt_id": prompt_ids_P[prompt_N],
        "prompt": [f"synthetic prompt {p} (cluster {c})" for p, c in zip(prompt_N, cluster_N)],
        "chosen": np.where(a_wins, name_a, name_b),
        "rejected": np.where(a_wins, name_b, name_a),
        "split": np.where(is_ood_P[prompt_N], "ood", "train"),
        "source": SOURCE,
        "cluster": cluster_N.astype(np.int64),
        "true_prob": np.where(a_wins, p_a, 1.0 - p_a),
    })
    table = assign_splits(table, ratios=ratios, seed=int(seed))
    used = np.unique(prompt_N)
    manifest = {
        "model": "synthetic-teaching", "world": "teaching", "seed": int(seed), "layout_seed": int(layout_seed),
        "n_prompts": int(n_prompts), "comparisons_per_prompt": cpp, "answer_dim": int(answer_dim),
        "cluster_sizes": [float(f) for f in fractions], "n_ood_prompts": int(n_ood_prompts),
        "agreement": float(np.mean(np.maximum(p_a, 1 - p_a))),
        "pair_layout": "[prompt x, prompt y, answer vector]",
    }
    return table, _features(table, prompt_ids_P[used], xy_P_2[used], pairs_N_2_D, manifest)


# ---- paper-shape world -----------------------------------------------------------------------------
def paper_world(n: int = 4000, d: int = 64, seed: int = 0, n_prompts: int | None = None, *, n_clusters: int = 8,
                ood_fraction: float = 0.1, ratios: tuple[float, float, float] = (0.7, 0.1, 0.2)) -> tuple[pd.DataFrame, Features]:
    """A paper-shape synthetic world: ``n`` comparisons with D = ``d`` features, ``(table, Features)``.

    ``n_prompts`` prompts (default ``max(1, n // 4)``; every prompt has at least one comparison) in
    ``n_clusters`` clusters with Zipf sizes (1, 1/2, 1/3, ...) in D dimensions; pair features are the
    prompt vector plus an answer vector (prompt-dominated, like LLM features of prompt + answer); the
    hidden reward is linear in the answer with a direction shared by all clusters plus a per-cluster
    deviation, labels from Bradley-Terry (about
    70% agreement). ``ood_fraction * n`` extra comparisons on new prompts with shifted centres form the
    ``ood`` split. float32 throughout, generated in chunks (n = 92,000 and d = 4,096 take ~3.7 GB).
    """
    n, d, chunk = int(n), int(d), _CHUNK
    n_prompts = max(1, n // 4) if n_prompts is None else int(n_prompts)
    if n < 1 or d < 1 or n_clusters < 1 or not (0 <= ood_fraction) or n_prompts < 1 or n_prompts > n:
        raise ConfigError(
            f"paper world needs n >= 1, d >= 1, 1 <= n_prompts <= n, n_clusters >= 1, ood_fraction >= 0 "
            f"(got n={n}, d={d}, n_prompts={n_prompts}, n_clusters={n_clusters}, ood_fraction={ood_fraction})")
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 23])
    rng_layout, rng_prompt, rng_pair = (np.random.default_rng(s) for s in ss.spawn(3))
    centres = 3.0 * rng_layout.standard_normal((n_clusters, d), dtype=np.float32)
    # one shared preference direction plus a cluster-specific deviation (each cluster's taste differs a bit)
    shared = rng_layout.standard_normal(d).astype(np.float32)
    dirs = shared / np.linalg.norm(shared) + 0.7 * rng_layout.standard_normal((n_clusters, d)).astype(np.float32) / math.sqrt(d)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    shift = rng_layout.standard_normal(d).astype(np.float32)
    weights = 1.0 / np.arange(1, n_clusters + 1)

    n_ood = round(ood_fraction * n)
    p_ood = min(max(1, n_ood // 4), n_ood) if n_ood else 0
    n_p = n_prompts + p_ood
    cluster_P = np.concatenate([
        np.repeat(np.arange(n_clusters), _counts(n_prompts, weights))[rng_prompt.permutation(n_prompts)],
        rng_prompt.choice(n_clusters, size=p_ood, p=weights[::-1] / weights.sum()),
    ]).astype(np.int64)
    is_ood_P = np.r_[np.zeros(n_prompts, bool), np.ones(p_ood, bool)]
    prompts_P_D = np.empty((n_p, d), np.float32)
    for s in range(0, n_p, chunk):
        c = cluster_P[s:s + chunk]
        block = rng_prompt.standard_normal((len(c), d), dtype=np.float32)
        block += centres[c] + np.where(is_ood_P[s:s + chunk, None], shift, np.float32(0))
        prompts_P_D[s:s + chunk] = block

    def prompts_for(count: int, lo: int, hi: int) -> np.ndarray:
        span = hi - lo
        out = np.concatenate([np.arange(lo, hi), rng_prompt.integers(lo, hi, size=count - span)]) if count >= span \
            else rng_prompt.choice(np.arange(lo, hi), size=count, replace=False)
        return np.sort(out)

    prompt_N = np.concatenate([prompts_for(n, 0, n_prompts), prompts_for(n_ood, n_prompts, n_p) if n_ood else
                               np.zeros(0, np.int64)]).astype(np.int64)
    total = len(prompt_N)
    answer_scale = np.float32(0.5)
    strength = 1.5 / (math.sqrt(2.0) * float(answer_scale))
    pairs_N_2_D = np.empty((total, 2, d), np.float32)
    p_chosen = np.empty(total)
    a_won = np.empty(total, bool)
    for s in range(0, total, chunk):
        p = prompt_N[s:s + chunk]
        a = answer_scale * rng_pair.standard_normal((len(p), d), dtype=np.float32)
        b = answer_scale * rng_pair.standard_normal((len(p), d), dtype=np.float32)
        w = dirs[cluster_P[p]]
        margin = strength * np.einsum("nd,nd->n", w, a - b).astype(np.float64)
        a_wins, p_a = _label(rng_pair, margin)
        pairs_N_2_D[s:s + chunk] = _orient(a_wins, prompts_P_D[p] + a, prompts_P_D[p] + b)
        p_chosen[s:s + chunk] = np.where(a_wins, p_a, 1.0 - p_a)
        a_won[s:s + chunk] = a_wins

    prompt_ids_P = np.array([f"syn-p{p:07d}" for p in range(n_p)])
    starts = np.r_[0, np.flatnonzero(np.diff(prompt_N)) + 1]
    slot_N = np.arange(total) - np.repeat(starts, np.diff(np.r_[starts, total]))
    table = pd.DataFrame({
        "pair_id": [f"syn-p{p:07d}-{s}" for p, s in zip(prompt_N, slot_N)],
        "prompt_id": prompt_ids_P[prompt_N],
        "prompt": [f"synthetic prompt {p} (cluster {c})" for p, c in zip(prompt_N, cluster_P[prompt_N])],
        "chosen": [f"answer a{p}-{2 * s + (not w)}" for p, s, w in zip(prompt_N, slot_N, a_won)],
        "rejected": [f"answer a{p}-{2 * s + bool(w)}" for p, s, w in zip(prompt_N, slot_N, a_won)],
        "split": np.where(is_ood_P[prompt_N], "ood", "train"),
        "source": SOURCE,
        "cluster": cluster_P[prompt_N],
        "true_prob": p_chosen,
    })
    table = assign_splits(table, ratios=ratios, seed=int(seed))
    manifest = {
        "model": "synthetic-paper", "world": "paper", "seed": int(seed), "n": n, "d": d, "n_prompts": n_prompts,
        "n_clusters": int(n_clusters), "ood_fraction": float(ood_fraction),
        "agreement": float(np.mean(np.maximum(p_chosen, 1 - p_chosen))),
        "pair_layout": "prompt vector + answer vector",
    }
    return table, _features(table, prompt_ids_P, prompts_P_D, pairs_N_2_D, manifest)
