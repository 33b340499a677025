"""Planted worlds on real texts: any preference table -> the same comparisons with labels of known truth.

A real table's labels come from people whose reward nobody knows, so its test log-likelihood has no
known ceiling. :func:`plant` keeps the table's texts, prompts and splits and replaces its labels by
draws from a *planted* Bradley-Terry reward on the features the runs use (the cached MiniLM features
of :mod:`balpm.features`), so the Bayes-optimal test log-likelihood is known exactly.

Construction, every random choice from ``SeedSequence(seed, spawn_key=(purpose,))`` (one stream per
purpose, so changing one knob never moves another's draws):

1. **Features.** ``phi(x, y)``: the pair features (prompt + answer) of every comparison, from
   :func:`balpm.features.featurize` with the run config's feature settings (a cache hit when the
   source was featurized before).
2. **Reward.** PCA of all ``2N`` answer vectors ``phi(x, y)``, the top ``components`` directions,
   whitened (each with unit variance over the answers); ``w`` a seeded random unit vector there;
   ``r(x, y) = s * w . z(x, y)``. The strength ``s`` is solved (Brent's method) so that the
   *agreement* outside noisy regions, the mean over those comparisons of ``max(p, 1 - p)`` with
   ``p = sigmoid(r(x, y1) - r(x, y2))`` (the expected share of labels that agree with the reward,
   i.e. the Bayes-optimal accuracy there), equals the recipe's ``agreement``.
3. **Noisy regions** (``noisy_share`` > 0). k-means (``clusters``, seeded) of the prompt features of
   the non-OOD prompts; OOD prompts join their nearest centroid. Clusters are taken whole in a seeded
   random order (``noisy_pick: random``) or by decreasing mean answer contrast ``||phi(x, y1) -
   phi(x, y2)||`` (``noisy_pick: contrast``, a BALD trap), and the prefix whose share of non-OOD
   prompts is closest to ``noisy_share`` is noisy: there ``p = 0.5``, labels are coin flips.
4. **Labels.** Each comparison's winner is drawn from ``p``; where the source's rejected answer wins,
   chosen and rejected are swapped. ``true_prob`` = probability that the (new) chosen answer wins.

The exact ceiling is ``mean(log true_prob)`` over the test rows: the expected log-likelihood of the
Bayes-optimal predictor on these realised labels (the loop's truth.json computes the same).

Outputs in ``out``: ``table.parquet`` (train / valid / test rows) and ``ood.parquet`` (OOD rows, when
the source has any), read by ``balpm run`` through the table loader with the columns of
``run.yaml`` (written beside them: the recipe's run settings + that data section), and
``plant.json`` (sources and their SHA-256, seed, recipe, reward, noisy rule, splits, ceilings). The
run's feature cache entries for the planted table are written too: the source's features reordered
and swapped, bit-identical to those the reward was built on, so ``balpm run`` finds them.
Same inputs and seed give the same bytes.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from balpm import safe_yaml
from balpm.config import RunConfig
from balpm.errors import ConfigError, DataError
from balpm.experiment.runs import atomic_path, atomic_write_bytes

#: spawn keys of the seed streams (never renumber: it would change every planted world)
_REWARD, _KMEANS, _PICK, _LABELS = 0, 1, 2, 3
NOISY_PICKS = ("random", "contrast")
TABLE_FILE, OOD_FILE, MANIFEST_FILE, RUN_FILE = "table.parquet", "ood.parquet", "plant.json", "run.yaml"
#: columns of the written tables, in order
OUT_COLUMNS = ("pair_id", "prompt_id", "prompt", "chosen", "rejected", "split", "source",
               "true_prob", "noisy", "plant_cluster", "plant_swapped")
#: the data section of run.yaml: how the table loader reads the written files back unchanged
RUN_DATA = {"format": "table", "source_col": "source", "split_col": "split", "id_col": "pair_id",
            "prompt_id_col": "prompt_id", "keep_original_splits": True}
CONFIG_DIR = Path(__file__).resolve().parents[2] / "data" / "configs"


@dataclass(frozen=True)
class Recipe:
    """How a source is read and planted, and the run settings written to ``run.yaml``."""

    name: str = "custom"
    # the source (arguments of balpm.data.load_table)
    format: str = "auto"
    split_ratios: tuple[float, float, float] = (0.7, 0.1, 0.2)
    split_seed: int = 0
    keep_original_splits: bool = False
    # the planted reward
    agreement: float = 0.75
    components: int = 32
    # the noisy regions
    noisy_share: float = 1 / 3
    clusters: int = 10
    noisy_pick: str = "random"
    # the run config written to run.yaml: this YAML (relative to the recipe's folder) + these key=value changes
    run_base: str = ""
    run_set: dict[str, Any] = field(default_factory=dict)

    def check(self) -> Recipe:
        """One-line :class:`ConfigError` for an impossible knob."""
        if not 0.5 <= self.agreement < 1.0:
            raise ConfigError(f"agreement must be in [0.5, 1) (got {self.agreement}); 0.5 plants no preference, "
                              "1 would need an infinite reward")
        if not 0.0 <= self.noisy_share < 1.0:
            raise ConfigError(f"noisy_share must be in [0, 1) (got {self.noisy_share}); 0 plants no noisy region")
        if self.components < 1:
            raise ConfigError(f"components must be >= 1 (got {self.components})")
        if self.clusters < 1:
            raise ConfigError(f"clusters must be >= 1 (got {self.clusters})")
        if self.noisy_pick not in NOISY_PICKS:
            raise ConfigError(f"noisy_pick {self.noisy_pick!r} is unknown; use one of {', '.join(NOISY_PICKS)}")
        return self

    def knobs(self) -> dict[str, Any]:
        """The recipe as a plain dict (for plant.json)."""
        out = asdict(self)
        out["split_ratios"] = [float(r) for r in self.split_ratios]
        return out


_SECTIONS = {
    "source": ("format", "split_ratios", "split_seed", "keep_original_splits"),
    "plant": ("agreement", "components", "noisy_share", "clusters", "noisy_pick"),
}


def recipe_path(name_or_path: str) -> Path:
    """A recipe file: a path to a YAML file, or a shipped name (``tldr`` -> data/configs/plant-tldr.yaml)."""
    path = Path(name_or_path).expanduser()
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"recipe file {str(path)!r} not found; pass a YAML file or one of {shipped_recipes()}")
        return path
    shipped = CONFIG_DIR / f"plant-{name_or_path}.yaml"
    if not shipped.is_file():
        raise ConfigError(f"unknown recipe {name_or_path!r}; use one of {shipped_recipes()} or a YAML file")
    return shipped


def shipped_recipes() -> list[str]:
    """Names of the recipes under data/configs (``plant-<name>.yaml``)."""
    return sorted(p.stem[len("plant-"):] for p in CONFIG_DIR.glob("plant-*.yaml") if not p.stem.endswith("-run"))


def load_recipe(name_or_path: str, **changes: Any) -> tuple[Recipe, Path]:
    """``(recipe, its file)``: the YAML's ``source`` / ``plant`` / ``run`` sections, then ``changes`` (None: unchanged)."""
    path = recipe_path(name_or_path)
    raw = safe_yaml.load_file(path, f"recipe {str(path)!r}") or {}  # bounded, no aliases; one-line errors
    if not isinstance(raw, dict):
        raise ConfigError(f"recipe {str(path)!r} must be a mapping with sections source, plant, run")
    unknown = sorted(set(map(str, raw)) - {"source", "plant", "run"})
    if unknown:
        raise ConfigError(f"recipe {str(path)!r}: unknown section(s) {unknown}; use source, plant, run")
    kwargs: dict[str, Any] = {"name": path.stem.removeprefix("plant-")}
    for section, allowed in _SECTIONS.items():
        body = raw.get(section) or {}
        if not isinstance(body, dict):
            raise ConfigError(f"recipe {str(path)!r}: section {section} must be a mapping")
        bad = sorted(set(map(str, body)) - set(allowed))
        if bad:
            raise ConfigError(f"recipe {str(path)!r}: unknown key(s) {bad} in {section}; known: {', '.join(allowed)}")
        kwargs.update(body)
    run = raw.get("run") or {}
    if not isinstance(run, dict) or sorted(set(map(str, run)) - {"base", "set"}):
        raise ConfigError(f"recipe {str(path)!r}: section run takes base (a config YAML) and set (key: value)")
    kwargs["run_base"] = str(run.get("base") or "")
    kwargs["run_set"] = dict(run.get("set") or {})
    kwargs.update({k: v for k, v in changes.items() if v is not None})
    try:
        for key in ("agreement", "noisy_share"):
            kwargs[key] = float(kwargs.get(key, getattr(Recipe, key)))
        for key in ("components", "clusters", "split_seed"):
            value = kwargs.get(key, getattr(Recipe, key))
            if isinstance(value, bool) or float(value) != int(value):
                raise ValueError(key)
            kwargs[key] = int(value)
        kwargs["split_ratios"] = tuple(float(r) for r in kwargs.get("split_ratios", Recipe.split_ratios))
    except (TypeError, ValueError):
        raise ConfigError(f"recipe {str(path)!r}: agreement/noisy_share must be numbers, components/clusters/"
                          "split_seed whole numbers, split_ratios three numbers") from None
    return Recipe(**kwargs).check(), path


# ---------------------------------------------------------------------------------------------- engine


def _stream(seed: int, purpose: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(purpose),)))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def reward_direction(pairs_N_2_D: np.ndarray, components: int, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    """``g_N = w . (z(x, y1) - z(x, y2))`` per comparison (unit strength) and the construction's numbers.

    ``z`` = the answer vectors projected on their top ``components`` principal directions and whitened
    (unit variance over all ``2N`` answers); ``w`` a unit vector drawn from the seed's reward stream.
    """
    from sklearn.decomposition import PCA

    n, _, d = pairs_N_2_D.shape
    answers = np.asarray(pairs_N_2_D, dtype=np.float64).reshape(2 * n, d)  # [c0, r0, c1, r1, ...]
    m = int(min(components, d, 2 * n - 1))
    pca = PCA(n_components=m, whiten=True, svd_solver="full").fit(answers)
    z = pca.transform(answers).reshape(n, 2, m)
    w_M = _stream(seed, _REWARD).standard_normal(m)
    w_M /= np.linalg.norm(w_M)
    g_N = (z[:, 0] - z[:, 1]) @ w_M
    info = {"components": m, "explained_variance": round(float(pca.explained_variance_ratio_.sum()), 6),
            "w": [round(float(v), 8) for v in w_M]}
    return g_N, info


def solve_strength(g_N: np.ndarray, agreement: float) -> float:
    """The ``s`` with ``mean(sigmoid(s * |g|)) = agreement`` (0 for agreement 0.5)."""
    from scipy.optimize import brentq

    a = np.abs(np.asarray(g_N, dtype=np.float64))
    if agreement <= 0.5:
        return 0.0
    if not len(a) or not (a > 0).any():
        raise DataError("the planted reward gives every comparison the same value for both answers (identical "
                        "features); the table cannot carry a planted preference")
    def gap(s: float) -> float:
        return float(_sigmoid(s * a).mean()) - agreement
    hi = 1.0
    while gap(hi) < 0:
        hi *= 2.0
        if hi > 1e12:
            raise DataError(f"agreement {agreement} cannot be reached: too many comparisons have identical answer "
                            "features; lower --agreement")
    return float(brentq(gap, 0.0, hi, xtol=1e-12, rtol=1e-12, maxiter=500))


def noisy_clusters(prompts_P_D: np.ndarray, in_dist_P: np.ndarray, contrast_P: np.ndarray, recipe: Recipe,
                   seed: int) -> tuple[np.ndarray, list[int], dict[str, Any]]:
    """``(cluster of each prompt, noisy cluster ids, rule info)``; see the module doc, step 3."""
    from sklearn.cluster import KMeans

    x = np.asarray(prompts_P_D, dtype=np.float64)
    fit_on = x[in_dist_P]
    k = int(min(recipe.clusters, len(np.unique(fit_on, axis=0))))
    state = int(_stream(seed, _KMEANS).integers(0, 2**31 - 1))
    km = KMeans(n_clusters=k, n_init=10, random_state=state).fit(fit_on)
    cluster_P = km.predict(x).astype(np.int64)
    counts = np.bincount(cluster_P[in_dist_P], minlength=k)
    share_C = counts / max(int(in_dist_P.sum()), 1)
    if recipe.noisy_pick == "contrast":
        mean_C = np.array([contrast_P[in_dist_P & (cluster_P == c)].mean() if counts[c] else -np.inf for c in range(k)])
        order = [int(c) for c in np.argsort(-mean_C, kind="stable")]
    else:
        order = [int(c) for c in _stream(seed, _PICK).permutation(k)]
    picked: list[int] = []
    if recipe.noisy_share > 0:
        cum = np.cumsum(share_C[order])
        take = int(np.argmin(np.abs(cum - recipe.noisy_share))) + 1  # the prefix closest to the target (first on ties)
        picked = sorted(order[:take])
    info = {
        "rule": f"k-means ({k} clusters, n_init 10) of the non-OOD prompt features; clusters taken whole in "
                + ("decreasing mean answer contrast ||phi(x,y1)-phi(x,y2)||" if recipe.noisy_pick == "contrast"
                   else "a seeded random order")
                + f"; the prefix whose share of non-OOD prompts is closest to {recipe.noisy_share:.4g} is noisy "
                  "(labels there are coin flips); OOD prompts join their nearest centroid",
        "clusters": k, "order": order, "noisy_clusters": picked,
        "cluster_prompt_share": [round(float(v), 6) for v in share_C],
        "cluster_contrast": [round(float(contrast_P[in_dist_P & (cluster_P == c)].mean()), 6) if counts[c] else None
                             for c in range(k)],
    }
    return cluster_P, picked, info


@dataclass
class Planted:
    """The planted table (every split, source row order) and the facts plant.json records."""

    table: pd.DataFrame
    manifest: dict[str, Any]
    source_features: Any


def _mean_log(p: pd.Series) -> float | None:
    return round(float(np.log(p.to_numpy(dtype=np.float64)).mean()), 10) if len(p) else None


def _accuracy(p: pd.Series) -> float | None:
    if not len(p):
        return None
    v = p.to_numpy(dtype=np.float64)
    return round(float(np.where(v > 0.5, 1.0, np.where(v == 0.5, 0.5, 0.0)).mean()), 10)


def ceilings(table: pd.DataFrame) -> dict[str, Any]:
    """Exact Bayes-optimal numbers of a table with ``true_prob``: test / valid / OOD log-likelihood and accuracy."""
    out: dict[str, Any] = {}
    for split in ("test", "valid", "ood"):
        rows = table.loc[table["split"] == split, "true_prob"]
        out[f"{split}_log_likelihood"] = _mean_log(rows)
        out[f"{split}_accuracy"] = _accuracy(rows)
    pool = table["split"] == "train"
    out["noisy_share_pool"] = round(float(table.loc[pool, "noisy"].mean()), 10) if pool.any() else None
    out["chance_log_likelihood"] = round(math.log(0.5), 10)
    if out["test_log_likelihood"] is not None:
        out["test_headroom_over_chance"] = round(out["test_log_likelihood"] - math.log(0.5), 10)
    return out


def plant_table(source: pd.DataFrame, features: Any, recipe: Recipe, seed: int) -> Planted:
    """Plant a reward, noisy regions and labels on a loaded table and its features (module doc, steps 2-4)."""
    recipe.check()
    if isinstance(seed, bool) or int(seed) < 0:
        raise ConfigError(f"seed must be a whole number >= 0 (got {seed!r})")
    if not (source["split"] == "test").any():
        raise DataError("the source table has no test rows, so a planted world would have no test ceiling; "
                        "use split ratios with a test share > 0")
    features.validate(source)
    pairs = np.asarray(features.pairs_N_2_D)
    g_N, reward = reward_direction(pairs, recipe.components, seed)

    prompt_P = np.asarray(features.prompt_ids).astype(str)
    ood_prompts = set(source.loc[source["split"] == "ood", "prompt_id"].astype(str))
    in_dist_P = np.array([p not in ood_prompts for p in prompt_P])
    contrast_N = np.linalg.norm(pairs[:, 0].astype(np.float64) - pairs[:, 1].astype(np.float64), axis=1)
    contrast_P = pd.Series(contrast_N).groupby(source["prompt_id"].astype(str).to_numpy()).mean() \
        .reindex(prompt_P).to_numpy()
    if recipe.noisy_share > 0:
        cluster_P, picked, rule = noisy_clusters(features.prompts_P_D, in_dist_P, contrast_P, recipe, seed)
    else:
        cluster_P, picked, rule = np.full(len(prompt_P), -1, dtype=np.int64), [], {"rule": "none (noisy_share 0)"}
    row_prompt = pd.Index(prompt_P).get_indexer(source["prompt_id"].astype(str))
    cluster_N = cluster_P[row_prompt]
    noisy_N = np.isin(cluster_N, picked) if picked else np.zeros(len(source), dtype=bool)

    strength = solve_strength(g_N[~noisy_N], recipe.agreement) if (~noisy_N).any() else 0.0
    p_first_N = np.where(noisy_N, 0.5, _sigmoid(strength * g_N))  # P(the source's chosen answer wins)
    first_wins_N = _stream(seed, _LABELS).random(len(source)) < p_first_N

    out = source.copy()
    swap = ~first_wins_N
    out.loc[swap, ["chosen", "rejected"]] = source.loc[swap, ["rejected", "chosen"]].to_numpy()
    out["true_prob"] = np.where(first_wins_N, p_first_N, 1.0 - p_first_N)
    out["noisy"] = noisy_N
    out["plant_cluster"] = cluster_N
    out["plant_swapped"] = swap
    out = out[list(OUT_COLUMNS)].reset_index(drop=True)

    clean = ~noisy_N
    agree = float(np.maximum(p_first_N[clean], 1 - p_first_N[clean]).mean()) if clean.any() else None
    kept_human = float((first_wins_N[clean]).mean()) if clean.any() else None
    manifest = {
        "seed": int(seed),
        "recipe": recipe.knobs(),
        "reward": {
            "construction": "r(x, y) = s * w . z(x, y); z = phi(x, y) (the run's pair features) projected on the top "
                            f"{reward['components']} principal directions of all 2N answer vectors, whitened; w a seeded "
                            "unit vector (SeedSequence(seed, spawn_key=(0,))); s solved so that the mean over non-noisy "
                            "comparisons of max(p, 1-p), p = sigmoid(r(x,y1) - r(x,y2)), equals the agreement",
            **reward,
            "strength": round(strength, 10),
            "agreement_target": recipe.agreement,
            "agreement_achieved": round(agree, 10) if agree is not None else None,
            "labels_kept_from_source_outside_noisy": round(kept_human, 6) if kept_human is not None else None,
        },
        "noisy": {
            **rule,
            "prompt_share": round(float(np.isin(cluster_P[in_dist_P], picked).mean()), 6) if picked else 0.0,
            "row_share": round(float(noisy_N.mean()), 6),
        },
        "labels": "each winner drawn from p (SeedSequence(seed, spawn_key=(3,))); where the source's rejected answer "
                  "wins, chosen and rejected are swapped; true_prob = P(the chosen answer wins), 0.5 in noisy regions",
        "rows": {s: int((out["split"] == s).sum()) for s in ("train", "valid", "test", "ood")},
        "swapped": int(swap.sum()),
        "ceilings": ceilings(out),
    }
    return Planted(out, manifest, features)


# ---------------------------------------------------------------------------------------------- files


def file_sha256(path: Path) -> str:
    """SHA-256 hex of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_config(recipe: Recipe, recipe_file: Path | None, out: Path, has_ood: bool, cache_dir: str | None) -> Any:
    """The run config of the planted world: the recipe's run base and changes, data = the written files."""
    cfg = RunConfig()
    if recipe.run_base:
        base = Path(recipe.run_base)
        if not base.is_absolute() and recipe_file is not None:
            base = recipe_file.parent / base
        cfg = RunConfig.from_yaml(base)
    for key, value in recipe.run_set.items():
        cfg = cfg.set(str(key), value)
    data = {"paths": [str(out / TABLE_FILE)], "ood_paths": [str(out / OOD_FILE)] if has_ood else [], **RUN_DATA}
    cfg = cfg.replace(data=data, name=f"plant-{recipe.name}")
    if cache_dir:
        cfg = cfg.set("features.cache_dir", cache_dir)
    return cfg.validate()


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq


    table = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def _write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def prime_cache(loaded: pd.DataFrame, planted: Planted, feature_cfg: Any) -> dict[str, Any]:
    """Write the feature cache entries of ``loaded`` (the planted table as the loader returns it) from the
    source's features (rows reordered, swapped answers swapped), under the keys featurize computes."""
    from balpm.features.cache import FeatureCache, cache_key
    from balpm.features.encoder import quantization_name, resolve_model
    from balpm.features.featurize import table_texts
    from balpm.features.templates import templates_used, texts_sha256

    feats = planted.source_features
    spec = resolve_model(feature_cfg.model, feature_cfg.pooling)
    identity = {**spec.identity, "max_length": feature_cfg.max_length, "dtype": feature_cfg.dtype,
                "quantization": quantization_name(feature_cfg.load_in_4bit, feature_cfg.load_in_8bit)}
    prompt_ids, prompt_texts, pair_ids, pair_texts, sources = table_texts(loaded)
    templates = templates_used(sources)
    src_prompt = pd.Index(np.asarray(feats.prompt_ids).astype(str)).get_indexer(prompt_ids)
    src_pair = pd.Index(np.asarray(feats.pair_ids).astype(str)).get_indexer(pair_ids)
    if (src_prompt < 0).any() or (src_pair < 0).any():
        raise DataError("the planted table's ids do not match the source's; this is a bug in balpm plant")
    swapped_N = planted.table.set_index("pair_id").loc[pair_ids, "plant_swapped"].to_numpy(dtype=bool)
    pairs = np.array(feats.pairs_N_2_D[src_pair], dtype=np.float32)
    pairs[swapped_N] = pairs[swapped_N][:, ::-1]
    arrays = {"prompts": np.ascontiguousarray(feats.prompts_P_D[src_prompt], dtype=np.float32), "pairs": pairs}
    texts = {"prompts": prompt_texts, "pairs": pair_texts}
    cache = FeatureCache(feature_cfg.cache_dir)
    cache.ensure_writable()
    keys = {}
    for part in ("prompts", "pairs"):
        key = cache_key({**identity, "part": part, "templates": templates, "texts_sha256": texts_sha256(texts[part]),
                         **({"distinct_texts": 1} if len(set(texts[part])) < len(texts[part]) else {})})
        keys[part] = key
        if cache.load(key) is None:
            cache.save(key, arrays[part], {**identity, "part": part, "templates": templates,
                                           "texts_sha256": texts_sha256(texts[part]), "texts": len(texts[part]),
                                           "planted_from": feats.manifest.get(part, {}).get("key")})
    return keys


def plant(paths: list[str], out: str | Path, *, recipe: Recipe, recipe_file: Path | None = None, seed: int = 0,
          ood_paths: list[str] | tuple[str, ...] = (), cache_dir: str | None = None, overwrite: bool = False,
          progress: bool = True) -> dict[str, Any]:
    """Plant a world on the table in ``paths`` and write it to ``out``; returns the manifest (plant.json)."""
    from balpm.data.load import load_for_config, load_table
    from balpm.features import featurize

    recipe.check()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} is a file; pass a folder")
    if (out / MANIFEST_FILE).exists() and not overwrite:
        raise ConfigError(f"{str(out)!r} already holds a planted world ({MANIFEST_FILE}); pass another --out or --overwrite")
    loaded = load_table(list(paths), format=recipe.format, ood_paths=list(ood_paths), ratios=recipe.split_ratios,
                        seed=recipe.split_seed, keep_original=recipe.keep_original_splits)
    source = loaded.table.drop(columns=[c for c in ("true_prob", "noisy") if c in loaded.table.columns])
    if not len(source):
        raise DataError(f"no comparisons found in {list(paths)}; check the paths and --format")
    if not (source["split"] == "test").any():
        raise DataError(f"the source table in {list(paths)} has no test rows, so a planted world would have no test "
                        "ceiling; use split ratios with a test share > 0")
    has_ood = bool((source["split"] == "ood").any())
    cfg = run_config(recipe, recipe_file, out, has_ood, cache_dir)
    feats = featurize(source, cfg.features, progress=progress)
    planted = plant_table(source, feats, recipe, seed)

    out.mkdir(parents=True, exist_ok=True)
    in_dist = planted.table["split"] != "ood"
    _write_parquet(planted.table.loc[in_dist], out / TABLE_FILE)
    if has_ood:
        _write_parquet(planted.table.loc[~in_dist], out / OOD_FILE)
    elif (out / OOD_FILE).exists():
        (out / OOD_FILE).unlink()
    _write_text(out / RUN_FILE, "# written by balpm plant: run it with  balpm sweep -c " + str(out / RUN_FILE)
                + " --policies random,bald,balpm --seeds 0-15 --ceiling --runs-dir RUNS (a folder outside this one)\n"
                + cfg.to_yaml())

    # the loader must read the files back exactly (every row, its split, its truth)
    back = load_for_config(cfg.data).table
    check = planted.table.set_index("pair_id")
    same = len(back) == len(check) and set(back["pair_id"]) == set(check.index)
    if same:
        ref = check.loc[back["pair_id"]]
        same = (np.array_equal(back["split"].to_numpy(), ref["split"].to_numpy())
                and np.array_equal(back["true_prob"].to_numpy(), ref["true_prob"].to_numpy())
                and np.array_equal(back["noisy"].to_numpy(dtype=bool), ref["noisy"].to_numpy(dtype=bool))
                and np.array_equal(back["chosen"].to_numpy(), ref["chosen"].to_numpy()))
    if not same:
        raise DataError(f"the planted table in {str(out)!r} does not load back unchanged through the table loader; "
                        "this is a bug in balpm plant (the files are left for inspection)")
    keys = prime_cache(back, planted, cfg.features)

    files = [{"path": f["path"], "format": f["format"], "ood": f["ood"], "rows_read": f["rows_read"],
              "sha256": file_sha256(Path(f["path"]))} for f in loaded.report.get("files", [])]
    manifest = {
        "format": "balpm-plant/1",
        "recipe_name": recipe.name,
        "sources": files,
        "source_split": loaded.report.get("split"),
        "source_rows": len(source),
        "features": {"model": feats.manifest.get("model"), "feature_hash": feats.hash,
                     "planted_cache_keys": keys},
        **planted.manifest,
        "outputs": {name: file_sha256(out / name) for name in (TABLE_FILE, OOD_FILE, RUN_FILE) if (out / name).exists()},
        "run_config": str(out / RUN_FILE),
    }
    _write_text(out / MANIFEST_FILE, json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return manifest


__all__ = ["NOISY_PICKS", "Planted", "Recipe", "ceilings", "load_recipe", "noisy_clusters", "plant", "plant_table",
           "prime_cache", "reward_direction", "run_config", "shipped_recipes", "solve_strength"]
