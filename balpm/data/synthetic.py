"""Synthetic preference worlds (source ``synthetic``): clearly labelled simulations, never real data.

Every row has ``source = "synthetic"`` and the features' manifest names the world as its model
(``synthetic-teaching`` or ``synthetic-paper``). Both worlds return ``(table, Features)`` with the
preference-table columns of :mod:`balpm.data.schema`, prompt-grouped ``train`` / ``valid`` / ``test``
splits and an ``ood`` set drawn from a shifted distribution. Extra columns: ``cluster`` (the prompt's
cluster) and ``true_prob`` (the hidden Bradley-Terry probability that the chosen answer beats the
rejected one; the label was drawn from it).

* :func:`teaching_world` (the default when no data is given; a run draws it from its own seed, see
  :func:`world_seed`): 2-D prompts in six clusters, four comparisons per prompt, pair features
  ``[x, y, answer vector]`` (D = 64). Its two lessons, in two sentences:

  1. Cluster 0, *chit-chat* (40% of the pool, a tight blob at the centre of the map), has large,
     varied answers (32 directions, scale 3) and coin-flip labels: there is no taste to learn, but
     the ensemble's members disagree there and keep disagreeing as labels arrive, so BALD spends
     ~90% of its budget there on labels that teach nothing; BAL-PM's entropy term sees a dense,
     already-covered place and spreads its labels over the five *topic* clusters (18% .. 8% of the
     pool, wider, on a ring), which the test set asks about equally (``test_weights``).
  2. Each topic has its own taste (one direction in its own 6 answer dimensions), and the four
     comparisons of a prompt differ in *contrast*, how different the two answers are (0.1, 0.3,
     1.0, 1.6, one each): near-ties are coin flips that teach little, clear pairs teach a lot. The
     four comparisons share one H, so U (high for clear pairs) decides among them: BAL-PM without U
     labels near-ties as often as random does.

  Labels follow the topics' tastes on 68% of topic comparisons. The OOD set reverses the cluster
  proportions, shifts the centres and moves the typical answers.
  Every parameter that decided a lesson is a knob of :class:`balpm.data.worlds.WorldSpec` (``world=``,
  ``data.world``): noisy-region share, its answer contrast, its label noise, the test weighting, topic
  imbalance, comparisons per prompt, size, budget and feature dimension; at the defaults the world is
  bit-identical to the one above.
* :func:`paper_world`: any number of comparisons and dimensions, clustered prompt features in D
  dimensions, for benchmarks at the paper's shape (pool 92,000 x 4,096).
"""
from __future__ import annotations

import hashlib
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from balpm.data.splits import assign_splits, check_ratios
from balpm.data.worlds import CLASSIC, parse_world
from balpm.errors import ConfigError

if TYPE_CHECKING:  # the features package imports transformers: only when a world is built
    from balpm.data.worlds import WorldSpec
    from balpm.features import Features

__all__ = ["SOURCE", "TEACHING_CLUSTER_NAMES", "TEACHING_CLUSTER_SIZES", "TEACHING_TEST_WEIGHTS", "features_hash",
           "paper_world", "teaching_world", "world_seed"]

SOURCE = "synthetic"
TEACHING_CLUSTER_NAMES: tuple[str, ...] = ("chit-chat", "topic 1", "topic 2", "topic 3", "topic 4", "topic 5")
TEACHING_CLUSTER_SIZES: tuple[float, ...] = (0.40, 0.18, 0.14, 0.11, 0.09, 0.08)
TEACHING_TEST_WEIGHTS: tuple[float, ...] = (0.0, 1.0, 1.0, 1.0, 1.0, 1.0)

# Teaching-world geometry and scales (fixed: the picture is the same for every seed; the seed draws the
# samples). Why each value: see the module docstring and docs/teaching-world.md.
_CHAT_STD = 0.25      # chit-chat prompts: a tight, dense blob at the centre of the map
_TOPIC_STD = 0.7      # topic prompts: wider clusters on a ring
_RING = 4.0           # radius of the ring of topic clusters
_CHAT_DIMS = 32       # chit-chat answers vary in many directions ...
_CHAT_SCALE = 3.0     # ... by a lot (large, varied answers): the members disagree there, and keep disagreeing
_TOPIC_DIMS = 6       # each topic's answers vary in its own 6 directions; its taste is one direction in them
_CONTRASTS = (0.1, 0.3, 1.0, 1.6)  # how different the two answers of a comparison are; a prompt's comparisons take each once
_CENTRE = 0.5         # spread of each prompt's typical answer
_STRENGTH = 1.2       # Bradley-Terry strength of the topics' tastes (chit-chat: 0, a coin flip)
_ISO = 0.05           # isotropic answer noise in every direction (features are full rank everywhere)
_XY_SCALE = 0.3       # the prompt position enters the pair features at this scale
_OOD_SHIFT = (0.5, -0.4)
_OOD_ANSWER_SHIFT = 0.3
_CHUNK = 8192         # paper world: rows generated per block (fixed: the draws depend on it)


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


def world_seed(run_seed: int, split_seed: int = 0) -> int:
    """The seed a run draws its synthetic world from: the run seed (``loop.seed``), so that 8 seeds are 8
    world draws; a non-zero ``data.split_seed`` mixes in (another family of draws for the same run seeds)."""
    if int(split_seed) == 0:
        return int(run_seed)
    return int(np.random.SeedSequence([int(run_seed) & 0xFFFFFFFF, int(split_seed) & 0xFFFFFFFF, 29]).generate_state(1)[0])


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
def _teaching_layout(n_clusters: int, layout_seed: int) -> dict[str, Any]:
    """The fixed geometry: cluster centres (C, 2) (cluster 0 at the origin, the others on a ring), the
    answer dimensions of each cluster (chit-chat: ``_CHAT_DIMS``; each topic: its own ``_TOPIC_DIMS``) and
    each topic's hidden reward direction (a unit vector inside its block; zero for chit-chat)."""
    rng = np.random.default_rng(np.random.SeedSequence([int(layout_seed), 7]))
    angles = 2 * np.pi * np.arange(n_clusters - 1) / max(n_clusters - 1, 1) + np.pi / 7
    centres = np.vstack([np.zeros((1, 2)), _RING * np.c_[np.cos(angles), np.sin(angles)]])
    blocks = [np.arange(_CHAT_DIMS)] + [_CHAT_DIMS + _TOPIC_DIMS * i + np.arange(_TOPIC_DIMS)
                                        for i in range(n_clusters - 1)]
    dim = _CHAT_DIMS + _TOPIC_DIMS * (n_clusters - 1)
    w_C_A = np.zeros((n_clusters, dim))
    for c in range(1, n_clusters):
        u = rng.standard_normal(_TOPIC_DIMS)
        w_C_A[c, blocks[c]] = u / np.linalg.norm(u)
    return {"centres": centres, "blocks": blocks, "w": w_C_A, "dim": dim}


def _teaching_prompts(rng: np.random.Generator, n_prompts: int, fractions: np.ndarray, centres: np.ndarray,
                      shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``n_prompts`` prompt positions (P, 2) and clusters (P,), cluster counts proportional to ``fractions``."""
    counts = _counts(n_prompts, fractions) if n_prompts else np.zeros(len(fractions), np.int64)
    cluster_P = np.repeat(np.arange(len(fractions)), counts)
    cluster_P = cluster_P[rng.permutation(n_prompts)]
    std = np.where(cluster_P == 0, _CHAT_STD, _TOPIC_STD)[:, None]
    xy_P_2 = centres[cluster_P] + shift + std * rng.standard_normal((n_prompts, 2))
    return xy_P_2, cluster_P


def _teaching_answers(rng: np.random.Generator, prompt_N: np.ndarray, cluster_N: np.ndarray, contrast_N: np.ndarray,
                      layout: dict[str, Any], chat_scale: float = _CHAT_SCALE) -> tuple[np.ndarray, np.ndarray]:
    """Answer vectors (N, A) of both answers of every comparison.

    Each prompt has a typical answer (its centre in its cluster's block); the two
    answers of a comparison scatter around it with the comparison's contrast (chit-chat: ``_CHAT_SCALE`` in
    all of its ``_CHAT_DIMS`` dimensions; ``chat_scale`` instead, for a world's ``contrast_ratio``). A little isotropic noise keeps the features full rank."""
    dim, n = layout["dim"], len(prompt_N)
    n_p = int(prompt_N.max()) + 1 if n else 0
    centre_P_A = np.zeros((n_p, dim))
    a = _ISO * rng.standard_normal((n, dim))
    b = _ISO * rng.standard_normal((n, dim))
    for c, block in enumerate(layout["blocks"]):
        rows = np.flatnonzero(cluster_N == c)
        centre_P_A[:, block] = _CENTRE * rng.standard_normal((n_p, len(block)))
        scale = np.full(len(rows), chat_scale) if c == 0 else contrast_N[rows]
        base = centre_P_A[prompt_N[rows]][:, block]
        a[np.ix_(rows, block)] += base + scale[:, None] * rng.standard_normal((len(rows), len(block)))
        b[np.ix_(rows, block)] += base + scale[:, None] * rng.standard_normal((len(rows), len(block)))
    return a, b


def teaching_world(seed: int = 0, n: int | None = None, *, n_prompts: int = 1000, comparisons_per_prompt: int = 4,
                   cluster_sizes: tuple[float, ...] = TEACHING_CLUSTER_SIZES,
                   test_weights: tuple[float, ...] = TEACHING_TEST_WEIGHTS, n_ood_prompts: int = 150,
                   ratios: tuple[float, float, float] = (0.7, 0.1, 0.2), layout_seed: int = 0,
                   world: WorldSpec | str | None = None) -> tuple[pd.DataFrame, Features]:
    """The synthetic teaching world: ``(table, Features)``, a pure function of ``seed`` (see the module doc).

    ``n_prompts`` in-distribution prompts (``n`` comparisons instead, if given: ``ceil(n / cpp)`` prompts,
    trimmed to exactly ``n`` comparisons) with ``comparisons_per_prompt`` comparisons each. ``ratios``
    (pool / valid / test) sets how many prompts go to each split: pool and valid prompts follow
    ``cluster_sizes``, test prompts follow ``test_weights`` (default: the five topic clusters equally, no
    chit-chat). Plus ``n_ood_prompts`` prompts in the ``ood`` split with the pool's proportions reversed,
    the centres shifted and the typical answers moved. Prompt features: the 2-D positions (P, 2); pair
    features: ``[x, y (scaled), answer]`` (N, 2, 2 + 32 + 6 * topics), column 0 the chosen answer.
    Default: 4,000 + 600 comparisons, pool 2,800, D = 64. The geometry and the hidden tastes come from
    ``layout_seed`` (fixed by default, so every seed draws the same picture); the prompts, answers,
    labels and split from ``seed``. Extra columns: ``cluster``, ``true_prob``, ``contrast``.

    ``world`` (a :class:`~balpm.data.worlds.WorldSpec` or its spec string, e.g. ``"test=pool,cpp=2"``) sets
    ``n_prompts``, ``comparisons_per_prompt``, ``cluster_sizes`` and ``test_weights`` from its knobs (over
    the arguments) and the noisy region's contrast, label noise, the OOD test and the feature dimension
    (see :mod:`balpm.data.worlds`). None or the classic spec: the classic world, bit for bit.
    """
    spec = parse_world(world) if world is not None else CLASSIC
    chat_scale = _CHAT_SCALE
    if world is not None:
        cluster_sizes = spec.cluster_sizes(TEACHING_CLUSTER_SIZES)
        n_prompts, comparisons_per_prompt = spec.n_prompts, spec.cpp
        test_weights = TEACHING_TEST_WEIGHTS if spec.test == "topics" else tuple(cluster_sizes)
        chat_scale = spec.chat_scale(_CHAT_SCALE)
    fractions = np.asarray(cluster_sizes, dtype=np.float64)
    if fractions.ndim != 1 or fractions.size < 2 or (fractions <= 0).any() or not np.isfinite(fractions).all():
        raise ConfigError(f"cluster_sizes must be at least two positive fractions (got {cluster_sizes})")
    weights = np.asarray(test_weights, dtype=np.float64)
    if weights.shape != fractions.shape or (weights < 0).any() or not np.isfinite(weights).all() or weights.sum() <= 0:
        raise ConfigError(f"test_weights must be {fractions.size} non-negative numbers with a positive sum, one per "
                          f"cluster (got {test_weights})")
    cpp = int(comparisons_per_prompt)
    if n is not None:
        if int(n) < 1:
            raise ConfigError(f"synthetic world size must be >= 1 comparison (got {n})")
        n_prompts = math.ceil(int(n) / cpp) if cpp >= 1 else 0
    ratios_3 = check_ratios(ratios)
    n_prompts = int(n_prompts)
    n_test = int(np.rint(ratios_3[2] * n_prompts))
    n_valid = int(np.rint(ratios_3[1] * n_prompts))
    n_pool = n_prompts - n_test - n_valid
    if n_pool < len(fractions) or cpp < 1 or n_ood_prompts < 0 or (ratios_3[2] > 0 and n_test < 1):
        raise ConfigError(
            f"teaching world needs at least {len(fractions)} pool prompts (one per cluster), comparisons_per_prompt >= 1 "
            f"and n_ood_prompts >= 0 (got {n_pool} pool prompts of {n_prompts}, {cpp}, {n_ood_prompts}); "
            "raise n_prompts / synthetic_size")
    layout = _teaching_layout(len(fractions), layout_seed)
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 11])
    rng_pool, rng_test, rng_ood, rng_ans, rng_lab = (np.random.default_rng(s) for s in ss.spawn(5))
    none = np.zeros(2)
    xy_pool, cl_pool = _teaching_prompts(rng_pool, n_pool + n_valid, fractions, layout["centres"], none)
    if spec.test == "ood":  # the test set drawn from the OOD split's shifted distribution
        xy_test, cl_test = _teaching_prompts(rng_test, n_test, fractions[::-1].copy(), layout["centres"],
                                             np.asarray(_OOD_SHIFT))
    else:
        xy_test, cl_test = _teaching_prompts(rng_test, n_test, weights, layout["centres"], none)
    xy_ood, cl_ood = _teaching_prompts(rng_ood, int(n_ood_prompts), fractions[::-1].copy(), layout["centres"],
                                       np.asarray(_OOD_SHIFT))
    xy_P_2 = np.vstack([xy_pool, xy_test, xy_ood])
    cluster_P = np.concatenate([cl_pool, cl_test, cl_ood])
    valid_P = np.zeros(len(cluster_P), bool)
    valid_P[rng_pool.permutation(n_pool + n_valid)[:n_valid]] = True
    split_P = np.where(valid_P, "valid", "train").astype(object)
    split_P[n_pool + n_valid:n_pool + n_valid + n_test] = "test"
    split_P[n_pool + n_valid + n_test:] = "ood"
    n_p = len(cluster_P)

    prompt_N = np.repeat(np.arange(n_p), cpp)
    slot_N = np.tile(np.arange(cpp), n_p)
    if n is not None:  # trim the in-distribution part to exactly n comparisons (the last prompts lose some)
        inside = split_P[prompt_N] != "ood"
        keep = ~inside | (np.cumsum(inside) <= int(n))
        prompt_N, slot_N = prompt_N[keep], slot_N[keep]
    cluster_N = cluster_P[prompt_N]
    levels = np.asarray(_CONTRASTS)
    order_P_L = np.argsort(rng_ans.random((n_p, max(cpp, len(levels)))), axis=1)   # each prompt: levels shuffled
    contrast_N = levels[order_P_L[prompt_N, slot_N] % len(levels)]
    is_ood_N = split_P[prompt_N] == "ood"
    ans_a, ans_b = _teaching_answers(rng_ans, prompt_N, cluster_N, contrast_N, layout, chat_scale)
    shifted_N = is_ood_N | ((split_P[prompt_N] == "test") if spec.test == "ood" else False)
    if shifted_N.any():  # the OOD prompts' typical answers move: their answers differ from the pool's
        ood_rows = np.flatnonzero(shifted_N)
        for c, block in enumerate(layout["blocks"]):
            rows = ood_rows[cluster_N[ood_rows] == c]
            ans_a[np.ix_(rows, block)] += _OOD_ANSWER_SHIFT
            ans_b[np.ix_(rows, block)] += _OOD_ANSWER_SHIFT
    margin_N = _STRENGTH * np.einsum("na,na->n", ans_a - ans_b, layout["w"][cluster_N])
    if spec.noisy_flip < 1.0:  # the noisy region has a taste, mixed with coin flips: p = f/2 + (1-f) sigmoid(m)
        chat = cluster_N == 0
        u = np.random.default_rng(np.random.SeedSequence([int(layout_seed), 8])).standard_normal(_CHAT_DIMS)
        strength = _STRENGTH * float(np.mean(_CONTRASTS)) / chat_scale  # margins of a topic comparison's scale
        margin_N[chat] = strength * ((ans_a - ans_b)[chat][:, layout["blocks"][0]] @ (u / np.linalg.norm(u)))
        p_a = 0.5 * (1.0 + np.tanh(0.5 * margin_N))
        p_a[chat] = spec.noisy_flip * 0.5 + (1.0 - spec.noisy_flip) * p_a[chat]
        a_wins = rng_lab.random(len(margin_N)) < p_a
    else:
        a_wins, p_a = _label(rng_lab, margin_N)
    xy_N_2 = _XY_SCALE * xy_P_2[prompt_N]
    pairs_N_2_D = _orient(a_wins, np.hstack([xy_N_2, ans_a]), np.hstack([xy_N_2, ans_b]))
    native_dim = pairs_N_2_D.shape[-1]
    if spec.dim > native_dim:  # isotropic noise dimensions, then one seeded rotation of all D (per geometry)
        noise = _ISO * np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 13])).standard_normal(
            (len(pairs_N_2_D), 2, spec.dim - native_dim))
        g = np.random.default_rng(np.random.SeedSequence([int(layout_seed), 9, spec.dim])).standard_normal(
            (spec.dim, spec.dim))
        q, r = np.linalg.qr(g)
        pairs_N_2_D = np.concatenate([pairs_N_2_D, noise], axis=2) @ (q * np.sign(np.diag(r)))
    elif spec.dim < native_dim:
        raise ConfigError(f"world knob dim must be >= {native_dim} for this world (got {spec.dim}); fix data.world")

    prompt_ids_P = np.array([f"syn-t{p:05d}" for p in range(n_p)])
    name_a = [f"answer a{p}-{2 * s}" for p, s in zip(prompt_N, slot_N)]
    name_b = [f"answer a{p}-{2 * s + 1}" for p, s in zip(prompt_N, slot_N)]
    table = pd.DataFrame({
        "pair_id": [f"syn-t{p:05d}-{s}" for p, s in zip(prompt_N, slot_N)],
        "prompt_id": prompt_ids_P[prompt_N],
        "prompt": [f"synthetic prompt {p} ({TEACHING_CLUSTER_NAMES[c] if c < len(TEACHING_CLUSTER_NAMES) else f'cluster {c}'})"
                   for p, c in zip(prompt_N, cluster_N)],
        "chosen": np.where(a_wins, name_a, name_b),
        "rejected": np.where(a_wins, name_b, name_a),
        "split": split_P[prompt_N].astype(str),
        "source": SOURCE,
        "cluster": cluster_N.astype(np.int64),
        "true_prob": np.where(a_wins, p_a, 1.0 - p_a),
        "contrast": np.where(cluster_N == 0, chat_scale, contrast_N).astype(np.float64),
    })
    used = np.unique(prompt_N)
    topic = cluster_N > 0
    manifest = {
        "model": "synthetic-teaching", "world": "teaching", "seed": int(seed), "layout_seed": int(layout_seed),
        "n_prompts": n_prompts, "comparisons_per_prompt": cpp, "cluster_sizes": [float(f) for f in fractions],
        "test_weights": [float(w) for w in weights], "n_ood_prompts": int(n_ood_prompts),
        "agreement_topics": float(np.mean(np.maximum(p_a, 1 - p_a)[topic])) if topic.any() else float("nan"),
        "pair_layout": f"[prompt x, prompt y (x {_XY_SCALE}), answer ({layout['dim']}: chit-chat {_CHAT_DIMS}, "
                       f"then {_TOPIC_DIMS} per topic)]",
    }
    if not spec.is_classic():
        manifest.update(world_spec=spec.spec(), pair_layout=manifest["pair_layout"] + (
            f", {spec.dim - native_dim} noise dimensions, rotated (D = {spec.dim})" if spec.dim > native_dim else ""))
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
