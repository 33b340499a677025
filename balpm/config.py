"""Every experiment knob as a frozen dataclass, with help text, YAML in and out, and a stable hash.

A :class:`RunConfig` fully determines a run: the same config (and the same data and features) gives
the same acquisitions, bit for bit. ``RunConfig.hash()`` is the content hash of the resolved config
(excluding the free-text ``name``); the dashboard uses it to reuse an existing run for a toggle.

One config surface: each field carries its help text, its allowed values and bounds in its metadata;
the CLI of ``balpm run`` / ``sweep`` is generated from them (``CLI_FLAGS`` names the first-class
flags, every other knob is ``--set section.field=value``), and every value, from YAML, a flag,
``--set`` or ``--grid``, goes through one coercion (:func:`coerce_value`) typed by its field:

* ``bool``: true/false, yes/no, on/off, 1/0 (strings in any case); anything else is an error, so
  ``save_pool_scores: "no"`` is False, never True.
* ``int``: whole numbers; a numeric string such as ``"5"`` is read as 5 (the CLI passes strings),
  ``3.5`` or ``"abc"`` is an error.
* ``float``: finite numbers (``inf`` and ``nan`` are errors for every knob); numeric strings are read.
* tuples: a YAML list, or a comma-separated string (``16,8``).

Errors are one line naming the key and, where there is one, its CLI flag.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from balpm import safe_yaml
from balpm.errors import ConfigError

PAPER_COLDNESS = {"softmax_bald": 10000.0, "power_bald": 8.0, "softrank_bald": 1.0}
POLICIES = (
    "random", "bald", "softmax_bald", "power_bald", "softrank_bald", "balpm",
    "full",  # the ceiling: trained once on the whole pool (balpm.acquisition.full, balpm sweep --ceiling)
)
UNCERTAINTIES = ("epistemic", "predictive", "aleatoric", "variance", "none")
ESTIMATORS = ("pool_radius", "kl")
NORMALIZATIONS = ("none", "zscore", "faithful")
BETA_MODES = ("fixed", "scaled")
SECTIONS = ("data", "features", "model", "acquisition", "loop")
#: the loaders' formats (balpm.data.load reads this tuple; it lives here because the CLI reads the config
#: without importing the loaders and pandas); DataConfig.format adds "synthetic"
LOADER_FORMATS = ("auto", "openai", "hub", "carper", "hh", "table")
#: the feature poolings balpm.features.encoder implements (it reads this tuple)
POOLINGS = ("auto", "mean", "last", "cls", "max")

# First-class CLI flags of ``balpm run`` / ``sweep`` and the config key each one sets (every other
# knob: ``--set section.field=value``). Error messages name the flag.
CLI_FLAGS: dict[str, str] = {
    "data.paths": "--data", "data.ood_paths": "--ood", "data.format": "--format", "data.skip_bad": "--skip-bad",
    "features.model": "--model",
    "model.ensemble_size": "--ensemble-size", "model.max_epochs": "--epochs", "model.hidden": "--hidden",
    "model.lr": "--lr", "model.device": "--device",
    "acquisition.policy": "--policy", "acquisition.beta": "--beta", "acquisition.k": "--k", "acquisition.d": "--d",
    "acquisition.normalize": "--normalize", "acquisition.estimator": "--estimator",
    "acquisition.uncertainty": "--uncertainty", "acquisition.minimize_entropy": "--minimize-entropy",
    "acquisition.coldness": "--coldness",
    "loop.pool_size": "--pool-size", "loop.initial": "--initial", "loop.batch_size": "--batch-size",
    "loop.rounds": "--rounds", "loop.seed": "--seed", "loop.save_pool_scores": "--pool-scores",
}

_TRUE = ("true", "yes", "on", "1", "y")
_FALSE = ("false", "no", "off", "0", "n")


def _f(default: Any, help: str, *, choices: tuple[str, ...] | None = None, ge: float | None = None,
       gt: float | None = None, **kw: Any) -> Any:
    """A dataclass field with its help text, allowed values (``choices``) and bounds (``ge``/``gt``)."""
    meta = {"help": help, "choices": choices, "ge": ge, "gt": gt}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


@dataclass(frozen=True)
class DataConfig:
    """Where the preference table comes from and how it is split."""

    paths: tuple[str, ...] = _f((), "in-distribution data files or folders (empty: the synthetic world)")
    ood_paths: tuple[str, ...] = _f((), "out-of-distribution test files (e.g. CNN/DM comparisons)")
    format: str = _f("auto", f"loader: {', '.join(LOADER_FORMATS)} or synthetic",
                     choices=LOADER_FORMATS + ("synthetic",))
    synthetic: str = _f("teaching", "synthetic world when paths is empty: teaching or paper")
    synthetic_size: int = _f(0, "synthetic world size in comparisons (0: the world's default)", ge=0)
    synthetic_dim: int = _f(0, "feature dimension D of the paper-shape world (0: the world's default, 64); "
                               "4096 is the paper's 7B-LLM width", ge=0)
    world: str = _f("", "teaching-world knobs as a spec string, e.g. noisy_share=0.2,test=pool (empty: the classic "
                        "teaching world; knobs and bounds: balpm worlds --knobs, balpm/data/worlds.py)")
    split_ratios: tuple[float, float, float] = _f((0.7, 0.1, 0.2), "pool / valid / test fractions of prompts")
    split_seed: int = _f(0, "seed of the prompt-grouped split", ge=0)
    keep_original_splits: bool = _f(False, "keep the files' own splits (train; valid1 -> valid; valid2 -> test) instead of re-splitting")
    skip_bad: bool = _f(False, "skip malformed rows (counted) instead of stopping")
    subsample: int = _f(0, "keep whole prompts (seeded by split_seed) until this many comparisons, before the split "
                           "and before featurization (0: all)", ge=0)
    prompt_col: str = _f("", "column holding the prompt (format table; empty: 'prompt')")
    chosen_col: str = _f("", "column holding the preferred answer (empty: 'chosen')")
    rejected_col: str = _f("", "column holding the other answer (empty: 'rejected')")
    split_col: str = _f("", "column holding the original split (optional)")
    id_col: str = _f("", "column holding a unique pair id (optional)")
    prompt_id_col: str = _f("", "column holding a prompt id (optional)")
    source_col: str = _f("", "column holding the source name (optional)")


#: DataConfig fields added after runs existed: left out of the hash while at their default
_DATA_HASH_DEFAULTS = {"subsample": 0, "prompt_col": "", "chosen_col": "", "rejected_col": "", "split_col": "",
                       "id_col": "", "prompt_id_col": "", "source_col": "", "synthetic_dim": 0,
                       "world": ""}
#: ModelConfig fields added after runs existed, with the value every run before them had in effect: left out of
#: the hash at that value (so older run ids stay valid), and filled in when a run's own config.yaml lacks them
_MODEL_HASH_DEFAULTS = {"precision": "fp32", "valid_subset": 0, "matmul": "blas"}


@dataclass(frozen=True)
class FeatureConfig:
    """How texts become vectors (see balpm.features)."""

    model: str = _f("minilm", "'minilm' (bundled encoder), any Hugging Face id or local path")
    pooling: str = _f("auto", "auto (a sentence-transformers folder's own, else mean for encoders, last for causal "
                              "LMs), mean, last (last non-padding token), cls or max", choices=POOLINGS)
    max_length: int = _f(256, "token limit; the prompt is truncated, never the answer", ge=1)
    dtype: str = _f("fp32", "fp32 or bf16 (autocast)", choices=("fp32", "bf16"))
    batch_size: int = _f(32, "texts per forward pass", ge=1)
    device: str = _f("auto", "auto, cuda, cuda:N, mps or cpu")
    load_in_4bit: bool = _f(False, "4-bit quantisation via bitsandbytes")
    load_in_8bit: bool = _f(False, "8-bit quantisation via bitsandbytes")
    cache_dir: str = _f(".balpm_cache", "content-addressed feature cache folder")


@dataclass(frozen=True)
class ModelConfig:
    """The Bayesian preference model: K Bradley-Terry reward adapters trained as one batched module."""

    ensemble_size: int = _f(5, "K, the number of ensemble members", ge=1)
    hidden: tuple[int, ...] = _f((2048, 256), "hidden widths of each reward MLP, e.g. 2048,256", ge=1)
    init_std: float = _f(0.01, "std of the N(0, s^2) weight init", gt=0)
    lr: float = _f(3e-5, "AdamW learning rate", gt=0)
    weight_decay: float = _f(0.01, "AdamW weight decay", ge=0)
    batch_size: int = _f(32, "training minibatch size", ge=1)
    max_epochs: int = _f(4, "at most this many epochs per round", ge=1)
    patience: int = _f(3, "early-stopping patience in epochs on the validation loss", ge=1)
    validation: str = _f("valid", "split used for early stopping: valid, or none to keep the last epoch",
                         choices=("valid", "none"))
    standardize: bool = _f(False, "z-score each input dimension with the training pairs' mean and std (per round); "
                                  "off in the reference, needed for small-norm encoders such as MiniLM")
    device: str = _f("auto", "auto, cuda or cpu", choices=("auto", "cuda", "cpu"))
    precision: str = _f("fp32", "fp32 (the default, exact) or bf16: forward passes and gradients in bfloat16 "
                                "(autocast; weights and AdamW state stay fp32), ~3x faster on CPUs with AVX512-BF16, "
                                "an approximation that changes results", choices=("fp32", "bf16"))
    valid_subset: int = _f(0, "0: early stopping on the whole validation split (the default); N: on a fixed, "
                              "seeded subset of N validation pairs (faster, changes results)", ge=0)
    matmul: str = _f("auto", "CPU matrix-product kernels of the model, all float32: onednn (oneDNN's JIT kernels, "
                             "AVX-512 on any x86 vendor; ~2x MKL on AMD CPUs), blas (torch's default: MKL or "
                             "OpenBLAS; what runs made before this field used), auto (onednn when this torch has "
                             "it and the first layer has >= 65,536 weights, else blas). Kernels differ at float32 "
                             "rounding (~1e-6 relative), so a run is bit-reproducible under one kernel; CUDA "
                             "ignores it", choices=("auto", "onednn", "blas"))


@dataclass(frozen=True)
class AcquisitionConfig:
    """The acquisition policy and its parameters (docs/method.md sections 4-6)."""

    policy: str = _f("balpm", f"one of {', '.join(POLICIES)}", choices=POLICIES)
    beta: float = _f(0.01, "weight of the entropy term (BAL-PM)", ge=0)
    k: int = _f(13, "k of the kNN radius, the point itself counted as neighbour 1", ge=1)
    d: float = _f(1.0, "weight d of the digamma term (a free weight, not the dimension)")
    floor: float = _f(1e-4, "added to 2*r before the log", gt=0)
    normalize: str = _f("zscore", f"prompt-feature normalisation: {', '.join(NORMALIZATIONS)}", choices=NORMALIZATIONS)
    estimator: str = _f("pool_radius", f"entropy estimator: {', '.join(ESTIMATORS)}", choices=ESTIMATORS)
    uncertainty: str = _f("epistemic", f"uncertainty score: {', '.join(UNCERTAINTIES)}", choices=UNCERTAINTIES)
    minimize_entropy: bool = _f(False, "ablation: U - beta*H instead of U + beta*H")
    coldness: float = _f(0.0, "beta_g of the stochastic BALD family (Gumbel scale 1/beta_g); "
                              "0 takes the paper's value: softmax 10000, power 8, softrank 1", ge=0)
    exact_knn: bool = _f(True, "exact FAISS search (False: HNSW, approximate)")
    beta_mode: str = _f("fixed", "fixed: beta as given (the paper's); scaled: each round beta_effective = beta * "
                                 "IQR(U) / IQR(H) over the pool at step 0, so the spread of beta*H is beta times "
                                 "that of U (std when an IQR is 0; beta unchanged when U or H is constant). "
                                 "BAL-PM only; recorded per round in rounds.parquet (beta_effective)",
                        choices=BETA_MODES)


@dataclass(frozen=True)
class LoopConfig:
    """The simulated active-learning loop (docs/method.md section 1)."""

    pool_size: int = _f(0, "pool items taken from the shuffled train split (0: all)", ge=0)
    initial: int = _f(320, "randomly labelled items before round 0", ge=1)
    batch_size: int = _f(320, "B, items acquired per round", ge=1)
    rounds: int = _f(75, "train/evaluate rounds; a batch is acquired after each but the last", ge=1)
    seed: int = _f(0, "seed of everything random in the run", ge=0)
    save_pool_scores: bool = _f(True, "write every pool item's scores per round (dashboard heat maps)")


# ---- one coercion, typed by the field ---------------------------------------------------------
def key_name(key: str) -> str:
    """How an error names a config key: ``acquisition.beta (--beta)`` or ``acquisition.floor (--set ...)``."""
    flag = CLI_FLAGS.get(key)
    return f"{key} ({flag})" if flag else f"{key} (--set {key}=...)"


def section_class(section: str) -> type:
    """The dataclass of one config section (``"loop"`` -> :class:`LoopConfig`)."""
    if section not in SECTIONS:
        raise ConfigError(f"unknown config section {section!r}; choose one of {', '.join(SECTIONS)}")
    return _field_types(RunConfig)[section]


@functools.lru_cache(maxsize=None)
def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def field_info(key: str) -> tuple[Any, dataclasses.Field]:
    """``(type, dataclasses.Field)`` of ``"section.field"`` (one-line ConfigError if unknown)."""
    section, _, name = key.partition(".")
    cls = section_class(section)
    known = {f.name: f for f in fields(cls)}
    if name not in known:
        raise ConfigError(f"unknown config key {key!r}; {section} has {', '.join(known)}")
    return _field_types(cls)[name], known[name]


def resolve_key(name: str) -> str:
    """``"beta"`` -> ``"acquisition.beta"``; ``"loop.rounds"`` stays. A bare name must be unambiguous."""
    name = name.strip()
    if "." in name:
        field_info(name)
        return name
    hits = [s for s in SECTIONS if name in {f.name for f in fields(section_class(s))}]
    if not hits:
        raise ConfigError(f"unknown config field {name!r}; write section.field, e.g. acquisition.beta or loop.rounds")
    if len(hits) > 1:
        raise ConfigError(f"config field {name!r} is ambiguous ({', '.join(f'{s}.{name}' for s in hits)}); "
                          "write section.field")
    return f"{hits[0]}.{name}"


def _describe(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _coerce(tp: Any, value: Any, where: str) -> Any:
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        value = value.item()  # numpy scalars (np.int64, np.bool_, np.float32) as Python values
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is getattr(types, "UnionType", None):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "~")):
            return None
        return _coerce(args[0], value, where)
    if origin is tuple:
        args = typing.get_args(tp)
        if isinstance(value, str):
            items: list[Any] = [v.strip() for v in value.split(",") if v.strip()]
        elif isinstance(value, (list, tuple)):
            items = list(value)
        elif value is None:
            items = []
        else:
            items = [value]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, where) for v in items)
        if len(items) != len(args):
            raise ConfigError(f"{where} needs {len(args)} values (got {_describe(value)}), e.g. "
                              f"{','.join(['0.5'] * len(args))}")
        return tuple(_coerce(a, v, where) for a, v in zip(args, items))
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise ConfigError(f"{where} must be true or false (got {_describe(value)})")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where} must be a whole number (got {value})")
        if isinstance(value, int):
            return int(value)
        number = value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                try:
                    number = float(value.strip())
                except ValueError:
                    raise ConfigError(f"{where} must be a whole number (got {_describe(value)})") from None
        if isinstance(number, float) and math.isfinite(number) and number.is_integer():
            return int(number)
        raise ConfigError(f"{where} must be a whole number (got {_describe(value)})")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where} must be a number (got {value})")
        if isinstance(value, (int, float)):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                raise ConfigError(f"{where} must be a number (got {_describe(value)})") from None
        else:
            raise ConfigError(f"{where} must be a number (got {_describe(value)})")
        if not math.isfinite(number):
            raise ConfigError(f"{where} must be a finite number (got {_describe(value)})")
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where} must be a text value (got {_describe(value)})")
    return value


def coerce_value(key: str, value: Any, where: str | None = None) -> Any:
    """``value`` (native or text) as the type of config key ``"section.field"``; one-line error otherwise.

    ``where`` names the source in the error (default: the key and its CLI flag). Allowed values
    (``choices``) are checked here; bounds are checked by :meth:`RunConfig.validate`.
    """
    tp, f = field_info(key)
    where = where or key_name(key)
    out = _coerce(tp, value, where)
    choices = f.metadata.get("choices")
    if choices and out not in choices:
        raise ConfigError(f"{where}: unknown value {_describe(out)}; choose one of {', '.join(choices)}")
    return out


def parse_assignment(text: str, where: str = "--set") -> tuple[str, Any]:
    """``"loop.rounds=5"`` -> ``("loop.rounds", 5)`` (typed and checked by the field)."""
    if "=" not in str(text):
        raise ConfigError(f"{where} {text!r} must look like section.field=value, e.g. {where} acquisition.beta=0.1")
    name, value = str(text).split("=", 1)
    if name.strip() == "name":  # the free-text run label, the only top-level field
        return "name", value.strip()
    key = resolve_key(name)
    return key, coerce_value(key, value.strip(), f"{where} {key}")


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
        """Raise a one-line :class:`ConfigError` for any impossible parameter (naming its CLI flag).

        Checks every field's type, allowed values and bounds, the devices (``cuda`` needs a visible
        GPU) and the cross-field constraints. Reads nothing and writes nothing.
        """
        for section in SECTIONS:
            sub = getattr(self, section)
            for f in fields(sub):
                key = f"{section}.{f.name}"
                value = coerce_value(key, getattr(sub, f.name))
                ge, gt = f.metadata.get("ge"), f.metadata.get("gt")
                for v in (value if isinstance(value, tuple) else (value,)):
                    if isinstance(v, bool) or not isinstance(v, (int, float)):
                        continue
                    if ge is not None and not v >= ge:
                        raise ConfigError(f"{key_name(key)} must be >= {ge:g} (got {_describe(getattr(sub, f.name))})")
                    if gt is not None and not v > gt:
                        raise ConfigError(f"{key_name(key)} must be > {gt:g} (got {_describe(getattr(sub, f.name))})")
        lp, m, ft = self.loop, self.model, self.features
        if not m.hidden:
            raise ConfigError(f"{key_name('model.hidden')} needs at least one width, e.g. 2048,256")
        if lp.pool_size and lp.initial + lp.batch_size * (lp.rounds - 1) > lp.pool_size:
            raise ConfigError(
                f"initial + batch_size * (rounds - 1) = {lp.initial + lp.batch_size * (lp.rounds - 1)} exceeds pool_size "
                f"{lp.pool_size}; lower --rounds or --batch-size")
        if sum(self.data.split_ratios) <= 0 or any(r < 0 for r in self.data.split_ratios):
            raise ConfigError(f"data.split_ratios must be non-negative with a positive sum (got {self.data.split_ratios})")
        if ft.load_in_4bit and ft.load_in_8bit:
            raise ConfigError("features.load_in_4bit and load_in_8bit exclude each other; choose one")
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", ft.device):
            raise ConfigError(f"features.device: unknown device {ft.device!r}; use auto, cpu, cuda, cuda:N or mps")
        _check_device_available(m.device, "model.device (--device)")
        _check_device_available(ft.device, "features.device (--set features.device=...)")
        return self

    # ---- serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples as lists) for YAML/JSON."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def to_yaml(self) -> str:
        """The config as YAML (sections in order; a valid ``-c`` input)."""
        return safe_yaml.dump(self.to_dict())

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "RunConfig":
        """Build from a nested dict; every value coerced by its field's type (a ``meta`` section is ignored)."""
        if raw is not None and not isinstance(raw, dict):
            raise ConfigError("config must be a mapping of sections (data, features, model, acquisition, loop)")
        raw = {k: v for k, v in _fill_predated(raw or {}).items() if k != "meta"}
        return _build(cls, raw, "")

    @classmethod
    def from_yaml(cls, path_or_text: str | Path) -> "RunConfig":
        """Read a YAML file (a path) or YAML text; a run's own config.yaml (with ``meta``) is accepted."""
        return cls.from_dict(read_yaml(path_or_text))

    def hash(self) -> str:
        """Stable 16-hex content hash of everything but ``name``."""
        d = self.to_dict()
        d.pop("name", None)
        if d.get("acquisition", {}).get("beta_mode") == "fixed":
            d["acquisition"].pop("beta_mode")  # the default leaves the hash of older configs unchanged
        for key, default in _DATA_HASH_DEFAULTS.items():  # likewise the data fields added later
            if d.get("data", {}).get(key, default) == default:
                d.get("data", {}).pop(key, None)
        for key, default in _MODEL_HASH_DEFAULTS.items():
            if d.get("model", {}).get(key, default) == default:
                d.get("model", {}).pop(key, None)
        blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def replace(self, **sections: Any) -> "RunConfig":
        """``cfg.replace(acquisition={"beta": 0.1}, loop={"seed": 3})``: a copy with fields changed.

        Values are coerced by their fields' types (``{"rounds": "5"}`` sets 5).
        """
        out = self
        for name, changes in sections.items():
            if name == "name":
                out = dataclasses.replace(out, name=str(changes))
                continue
            if name not in SECTIONS:
                raise ConfigError(f"unknown config section {name!r}; choose one of {', '.join(SECTIONS)}")
            typed = {k: coerce_value(f"{name}.{k}", v) for k, v in dict(changes).items()}
            out = dataclasses.replace(out, **{name: dataclasses.replace(getattr(out, name), **typed)})
        return out

    def set(self, key: str, value: Any) -> "RunConfig":
        """A copy with one ``"section.field"`` set (coerced by the field's type)."""
        key = resolve_key(key)
        section, _, name = key.partition(".")
        return self.replace(**{section: {name: value}})


def _check_device_available(device: str, where: str) -> None:
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"{where} is {device!r} but no CUDA GPU is visible (torch.cuda.is_available() is "
                              "False); use --device auto or cpu")
    elif device == "mps":
        import torch

        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ConfigError(f"{where} is 'mps' but Apple mps is not available; use auto or cpu")


def read_yaml(path_or_text: str | Path) -> dict[str, Any]:
    """The one YAML reader of configs: a file path or YAML text -> a dict of sections, ``meta`` removed.

    A ``Path`` (or a string naming an existing ``.yaml``/``.yml`` file) is read as a file; any other
    string is YAML text. Errors are one line (file missing, not YAML, not a mapping).
    """
    if isinstance(path_or_text, Path) or (isinstance(path_or_text, str) and "\n" not in path_or_text
                                          and path_or_text.strip().endswith((".yaml", ".yml"))):
        path = Path(path_or_text)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} not found (or not a file)")
        where = f"config {str(path)!r}"
        raw = safe_yaml.load_file(path, where)  # bounded: size, depth, nodes; no aliases
    else:
        where = "config"
        raw = safe_yaml.load_text(str(path_or_text), where)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping of sections (data, features, model, acquisition, loop)")
    raw = _fill_predated(dict(raw))
    raw.pop("meta", None)
    return raw


def _fill_predated(raw: dict[str, Any]) -> dict[str, Any]:
    """A run's own config.yaml (it has ``meta``) written before some model fields existed: those fields
    get the value that run had in effect (``_MODEL_HASH_DEFAULTS``), not today's default, so resuming it
    continues it bit for bit. Any other mapping is returned unchanged."""
    if "meta" in raw and isinstance(raw.get("model"), dict):
        return {**raw, "model": {**_MODEL_HASH_DEFAULTS, **raw["model"]}}
    return raw


def _build(cls: type, raw: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    unknown = [str(k) for k in raw if k not in known]
    if unknown:
        place = f"in section {where}" if where else "at the top level"
        raise ConfigError(f"unknown config key(s) {sorted(unknown)} {place}; known: {', '.join(known)}")
    types = _field_types(cls)
    kwargs: dict[str, Any] = {}
    for name, value in raw.items():
        tp = types[name]
        if dataclasses.is_dataclass(tp):
            if value is None:
                continue
            if not isinstance(value, dict):
                raise ConfigError(f"config section {name!r} must be a mapping of fields (got {_describe(value)})")
            kwargs[name] = _build(tp, value, name)
        elif not where:
            kwargs[name] = "" if (name == "name" and value is None) else _coerce(tp, value, f"config key {name}")
        else:
            kwargs[name] = coerce_value(f"{where}.{name}", value, f"config key {key_name(f'{where}.{name}')}")
    return cls(**kwargs)
