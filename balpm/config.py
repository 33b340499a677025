"""Every experiment knob as a frozen dataclass, with help text, YAML in and out, and a stable hash.

A :class:`RunConfig` fully determines a run: the same config (and the same data and features) gives
the same acquisitions, bit for bit. ``RunConfig.hash()`` is the content hash of the resolved config
(excluding the free-text ``name``); the dashboard uses it to reuse an existing run for a toggle.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from balpm.errors import ConfigError

PAPER_COLDNESS = {"softmax_bald": 10000.0, "power_bald": 8.0, "softrank_bald": 1.0}
POLICIES = (
    "random", "bald", "softmax_bald", "power_bald", "softrank_bald", "balpm",
)
UNCERTAINTIES = ("epistemic", "predictive", "aleatoric", "variance", "none")
ESTIMATORS = ("pool_radius", "kl")
NORMALIZATIONS = ("none", "zscore", "faithful")
BETA_MODES = ("fixed", "scaled")


def _f(default: Any, help: str, **kw: Any) -> Any:
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


@dataclass(frozen=True)
class DataConfig:
    """Where the preference table comes from and how it is split."""

    paths: tuple[str, ...] = _f((), "in-distribution data files or folders (empty: the synthetic world)")
    ood_paths: tuple[str, ...] = _f((), "out-of-distribution test files (e.g. CNN/DM comparisons)")
    format: str = _f("auto", "loader: auto, openai, hub, carper, hh, table, synthetic")
    synthetic: str = _f("teaching", "synthetic world when paths is empty: teaching or paper")
    synthetic_size: int = _f(0, "synthetic world size in comparisons (0: the world's default)")
    split_ratios: tuple[float, float, float] = _f((0.7, 0.1, 0.2), "pool / valid / test fractions of prompts")
    split_seed: int = _f(0, "seed of the prompt-grouped split")
    keep_original_splits: bool = _f(False, "keep the files' own splits (train; valid1 -> valid; valid2 -> test) instead of re-splitting")
    skip_bad: bool = _f(False, "skip malformed rows (counted) instead of stopping")


@dataclass(frozen=True)
class FeatureConfig:
    """How texts become vectors (see balpm.features)."""

    model: str = _f("minilm", "'minilm' (bundled encoder), any Hugging Face id or local path")
    pooling: str = _f("auto", "auto, mean (encoders) or last (causal LMs: last non-padding token)")
    max_length: int = _f(256, "token limit; the prompt is truncated, never the answer")
    dtype: str = _f("fp32", "fp32 or bf16 (autocast)")
    batch_size: int = _f(32, "texts per forward pass")
    device: str = _f("auto", "auto, cuda, mps or cpu")
    load_in_4bit: bool = _f(False, "4-bit quantisation via bitsandbytes")
    load_in_8bit: bool = _f(False, "8-bit quantisation via bitsandbytes")
    cache_dir: str = _f(".balpm_cache", "content-addressed feature cache folder")


@dataclass(frozen=True)
class ModelConfig:
    """The Bayesian preference model: K Bradley-Terry reward adapters trained as one batched module."""

    ensemble_size: int = _f(5, "K, the number of ensemble members")
    hidden: tuple[int, ...] = _f((2048, 256), "hidden widths of each reward MLP")
    init_std: float = _f(0.01, "std of the N(0, s^2) weight init")
    lr: float = _f(3e-5, "AdamW learning rate")
    weight_decay: float = _f(0.01, "AdamW weight decay")
    batch_size: int = _f(32, "training minibatch size")
    max_epochs: int = _f(4, "at most this many epochs per round")
    patience: int = _f(3, "early-stopping patience in epochs on the validation loss")
    validation: str = _f("valid", "split used for early stopping: valid, or none to keep the last epoch")
    standardize: bool = _f(False, "z-score each input dimension with the training pairs' mean and std (per round); "
                                  "off in the reference, needed for small-norm encoders such as MiniLM")
    device: str = _f("auto", "auto, cuda or cpu")


@dataclass(frozen=True)
class AcquisitionConfig:
    """The acquisition policy and its parameters (REFERENCE.md sections 4-6)."""

    policy: str = _f("balpm", f"one of {POLICIES}")
    beta: float = _f(0.01, "weight of the entropy term (BAL-PM)")
    k: int = _f(13, "k of the kNN radius, the point itself counted as neighbour 1")
    d: float = _f(1.0, "weight d of the digamma term (a free weight, not the dimension)")
    floor: float = _f(1e-4, "added to 2*r before the log")
    normalize: str = _f("zscore", f"prompt-feature normalisation: {NORMALIZATIONS}")
    estimator: str = _f("pool_radius", f"entropy estimator: {ESTIMATORS}")
    uncertainty: str = _f("epistemic", f"uncertainty score: {UNCERTAINTIES}")
    minimize_entropy: bool = _f(False, "ablation: U - beta*H instead of U + beta*H")
    coldness: float = _f(0.0, "beta_g of the stochastic BALD family (Gumbel scale 1/beta_g); "
                              "0 takes the paper's value: softmax 10000, power 8, softrank 1")
    exact_knn: bool = _f(True, "exact FAISS search (False: HNSW, approximate)")
    beta_mode: str = _f("fixed", "fixed: beta as given (the paper's); scaled: each round beta_effective = beta * "
                                 "IQR(U) / IQR(H) over the pool at step 0, so the spread of beta*H is beta times "
                                 "that of U (std when an IQR is 0; beta unchanged when U or H is constant). "
                                 "BAL-PM only; recorded per round in rounds.parquet (beta_effective)")


@dataclass(frozen=True)
class LoopConfig:
    """The simulated active-learning loop (REFERENCE.md section 1)."""

    pool_size: int = _f(0, "pool items taken from the shuffled train split (0: all)")
    initial: int = _f(320, "randomly labelled items before round 0")
    batch_size: int = _f(320, "B, items acquired per round")
    rounds: int = _f(75, "train/evaluate rounds; a batch is acquired after each but the last")
    seed: int = _f(0, "seed of everything random in the run")
    save_pool_scores: bool = _f(True, "write every pool item's scores per round (dashboard heat maps)")


@dataclass(frozen=True)
class RunConfig:
    """One simulated run: data, features, model, policy and loop."""

    name: str = _f("", "free-text label (not part of the hash)")
    data: DataConfig = _f(DataConfig(), "data")
    features: FeatureConfig = _f(FeatureConfig(), "features")
    model: ModelConfig = _f(ModelConfig(), "model")
    acquisition: AcquisitionConfig = _f(AcquisitionConfig(), "acquisition")
    loop: LoopConfig = _f(LoopConfig(), "loop")

    # ---- validation -------------------------------------------------------------------------
    def validate(self) -> "RunConfig":
        """Raise a one-line :class:`ConfigError` for any impossible parameter."""
        a, lp, m = self.acquisition, self.loop, self.model
        if a.policy not in POLICIES:
            raise ConfigError(f"unknown policy {a.policy!r}; choose one of {', '.join(POLICIES)}")
        if a.uncertainty not in UNCERTAINTIES:
            raise ConfigError(f"unknown uncertainty {a.uncertainty!r}; choose one of {', '.join(UNCERTAINTIES)}")
        if a.estimator not in ESTIMATORS:
            raise ConfigError(f"unknown estimator {a.estimator!r}; choose one of {', '.join(ESTIMATORS)}")
        if a.normalize not in NORMALIZATIONS:
            raise ConfigError(f"unknown normalisation {a.normalize!r}; choose one of {', '.join(NORMALIZATIONS)}")
        if not (a.beta >= 0):
            raise ConfigError(f"beta must be >= 0 (got {a.beta}); use --minimize-entropy for the entropy-minimiser ablation")
        if a.k < 1:
            raise ConfigError(f"k must be >= 1 (got {a.k})")
        if not (a.coldness >= 0):
            raise ConfigError(f"coldness must be > 0, or 0 for the paper's value (got {a.coldness})")
        if a.beta_mode not in BETA_MODES:
            raise ConfigError(f"unknown beta_mode {a.beta_mode!r}; choose one of {', '.join(BETA_MODES)}")
        if not (a.floor > 0):
            raise ConfigError(f"floor must be > 0 (got {a.floor})")
        if lp.batch_size < 1 or lp.rounds < 1 or lp.initial < 1:
            raise ConfigError("batch size, rounds and initial must all be >= 1")
        if lp.pool_size < 0:
            raise ConfigError(f"pool_size must be >= 0 (got {lp.pool_size}); 0 takes the whole train split")
        if lp.pool_size and lp.initial + lp.batch_size * (lp.rounds - 1) > lp.pool_size:
            raise ConfigError(
                f"initial + batch_size * (rounds - 1) = {lp.initial + lp.batch_size * (lp.rounds - 1)} exceeds pool_size "
                f"{lp.pool_size}; lower rounds or batch size")
        if m.ensemble_size < 1 or m.max_epochs < 1 or m.batch_size < 1 or not (m.lr > 0):
            raise ConfigError("ensemble_size, max_epochs, batch_size must be >= 1 and lr > 0")
        if sum(self.data.split_ratios) <= 0 or any(r < 0 for r in self.data.split_ratios):
            raise ConfigError(f"split ratios must be non-negative with a positive sum (got {self.data.split_ratios})")
        return self

    # ---- serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples as lists) for YAML/JSON."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "RunConfig":
        return _build(cls, raw or {}, "config")

    @classmethod
    def from_yaml(cls, path_or_text: str | Path) -> "RunConfig":
        text = Path(path_or_text).read_text() if Path(str(path_or_text)).suffix in (".yaml", ".yml") else str(path_or_text)
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"config is not valid YAML: {str(exc).splitlines()[0]}") from None
        if raw is not None and not isinstance(raw, dict):
            raise ConfigError("config YAML must be a mapping of sections (data, features, model, acquisition, loop)")
        return cls.from_dict(raw or {})

    def hash(self) -> str:
        """Stable 16-hex content hash of everything but ``name``."""
        d = self.to_dict()
        d.pop("name", None)
        if d.get("acquisition", {}).get("beta_mode") == "fixed":
            d["acquisition"].pop("beta_mode")  # the default leaves the hash of older configs unchanged
        blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def replace(self, **sections: Any) -> "RunConfig":
        """``cfg.replace(acquisition={"beta": 0.1}, loop={"seed": 3})``: a copy with fields changed."""
        out = self
        for name, changes in sections.items():
            if name == "name":
                out = dataclasses.replace(out, name=changes)
                continue
            if not hasattr(out, name):
                raise ConfigError(f"unknown config section {name!r}")
            out = dataclasses.replace(out, **{name: dataclasses.replace(getattr(out, name), **changes)})
        return out


def _build(cls: type, raw: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    unknown = set(raw) - set(known)
    if unknown:
        raise ConfigError(f"unknown key(s) {sorted(unknown)} in {where}; known: {sorted(known)}")
    kwargs: dict[str, Any] = {}
    for name, value in raw.items():
        f = known[name]
        default = f.default if f.default is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(default):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}.{name} must be a mapping")
            kwargs[name] = _build(type(default), value, f"{where}.{name}")
        elif isinstance(default, tuple):
            kwargs[name] = tuple(value) if isinstance(value, (list, tuple)) else (value,)
        else:
            kwargs[name] = value
    return cls(**kwargs)
