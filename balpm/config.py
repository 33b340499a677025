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
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from balpm import devices, safe_yaml
from balpm.errors import ConfigError
from balpm.knobs import (  # noqa: F401 - re-exported: the value lists live in the leaf module balpm.knobs
    BETA_MODES,
    ESTIMATORS,
    NORMALIZATIONS,
    PAPER_COLDNESS,
    UNCERTAINTIES,
    _f,
)

SECTIONS = ("data", "features", "model", "acquisition", "loop")
#: the loaders' formats (balpm.data.load reads this tuple; it lives here because the CLI reads the config
#: without importing the loaders and pandas); DataConfig.format adds "synthetic"
LOADER_FORMATS = ("auto", "openai", "hub", "carper", "hh", "table")
#: the feature poolings balpm.features.encoder implements (it reads this tuple)
POOLINGS = ("auto", "mean", "last", "cls", "max")

# First-class CLI flags of ``balpm run`` / ``sweep`` and the config key each one sets (every other
# knob: ``--set section.field=value``). Error messages name the flag. A policy's knob declares its own flag
# (``knob(..., flag="--beta")`` in its module); :data:`CLI_FLAGS` adds those from the registry.
_SECTION_FLAGS: dict[str, str] = {
    "data.paths": "--data", "data.ood_paths": "--ood", "data.format": "--format", "data.skip_bad": "--skip-bad",
    "features.model": "--model",
    "model.ensemble_size": "--ensemble-size", "model.max_epochs": "--epochs", "model.hidden": "--hidden",
    "model.lr": "--lr", "model.device": "--device",
    "acquisition.policy": "--policy", "acquisition.uncertainty": "--uncertainty",
    "loop.pool_size": "--pool-size", "loop.initial": "--initial", "loop.batch_size": "--batch-size",
    "loop.rounds": "--rounds", "loop.seed": "--seed", "loop.save_pool_scores": "--pool-scores",
}


class _CliFlags(Mapping):
    """:data:`CLI_FLAGS`: the sections' first-class flags plus every registered policy knob's own ``flag``."""

    def _all(self) -> dict[str, str]:
        out = dict(_SECTION_FLAGS)
        for name, (_, f) in _registry().all_knob_fields().items():
            if f.metadata.get("flag"):
                out.setdefault(f"acquisition.{name}", f.metadata["flag"])
        return out

    def __getitem__(self, key: str) -> str:
        return self._all()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


CLI_FLAGS: Mapping[str, str] = _CliFlags()

_TRUE = ("true", "yes", "on", "1", "y")
_FALSE = ("false", "no", "off", "0", "n")


def _registry() -> Any:
    """The policy registry (:mod:`balpm.acquisition.registry`), imported lazily: the policy modules import
    this module's value lists, so importing the registry at the top would circle."""
    from balpm.acquisition import registry

    return registry


def __getattr__(name: str) -> Any:
    """``POLICIES``: the registered policy names (the registry, loaded on first use; PEP 562)."""
    if name == "POLICIES":
        return _registry().names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
                               "4096 is the paper's 7B-LLM width", ge=0, since_default=0)
    world: str = _f("", "teaching-world knobs as a spec string, e.g. noisy_share=0.2,test=pool (empty: the classic "
                        "teaching world; knobs and bounds: balpm worlds --knobs, balpm/data/worlds.py)", since_default="")
    split_ratios: tuple[float, float, float] = _f((0.7, 0.1, 0.2), "pool / valid / test fractions of prompts")
    split_seed: int = _f(0, "seed of the prompt-grouped split", ge=0)
    keep_original_splits: bool = _f(False, "keep the files' own splits (train; valid1 -> valid; valid2 -> test) instead of re-splitting")
    skip_bad: bool = _f(False, "skip malformed rows (counted) instead of stopping")
    subsample: int = _f(0, "keep whole prompts (seeded by split_seed) until this many comparisons, before the split "
                           "and before featurization (0: all)", ge=0, since_default=0)
    prompt_col: str = _f("", "column holding the prompt (format table; empty: 'prompt')", since_default="")
    chosen_col: str = _f("", "column holding the preferred answer (empty: 'chosen')", since_default="")
    rejected_col: str = _f("", "column holding the other answer (empty: 'rejected')", since_default="")
    split_col: str = _f("", "column holding the original split (optional)", since_default="")
    id_col: str = _f("", "column holding a unique pair id (optional)", since_default="")
    prompt_id_col: str = _f("", "column holding a prompt id (optional)", since_default="")
    source_col: str = _f("", "column holding the source name (optional)", since_default="")


# Fields added after runs existed carry ``since_default`` (balpm.knobs): the value every older run had in
# effect. One rule for every section: RunConfig.hash() leaves such a field out at that value (older run ids stay
# valid), and a run's own config.yaml that lacks it gets that value (:func:`_fill_predated`).


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
                                "an approximation that changes results", choices=("fp32", "bf16"), since_default="fp32")
    valid_subset: int = _f(0, "0: early stopping on the whole validation split (the default); N: on a fixed, "
                              "seeded subset of N validation pairs (faster, changes results)", ge=0, since_default=0)
    matmul: str = _f("auto", "CPU matrix-product kernels of the model, all float32: onednn (oneDNN's JIT kernels, "
                             "AVX-512 on any x86 vendor; ~2x MKL on AMD CPUs), blas (torch's default: MKL or "
                             "OpenBLAS; what runs made before this field used), auto (onednn when this torch has "
                             "it and the first layer has >= 65,536 weights, else blas). Kernels differ at float32 "
                             "rounding (~1e-6 relative), so a run is bit-reproducible under one kernel; CUDA "
                             "ignores it", choices=("auto", "onednn", "blas"), since_default="blas")


#: The knobs every policy's section carried before policies owned their knobs (issue 16), at their defaults.
#: The acquisition section hashes as this union (a policy's own knobs and its ``legacy`` values over these
#: defaults), so every run id made before stays what it was. In a config FILE, a legacy knob that the policy
#: does not own is accepted: at its default it is dropped; otherwise (the old ``sweep --grid beta=...`` over
#: random, or the teaching preset's beta 0.1 on every policy) it is kept in ``AcquisitionConfig.legacy``,
#: which only enters the hash and the YAML: it never changed that policy's picks and never will.
LEGACY_KNOBS: dict[str, Any] = {
    "beta": 0.01, "k": 13, "d": 1.0, "floor": 1e-4, "normalize": "zscore", "estimator": "pool_radius",
    "minimize_entropy": False, "coldness": 0.0, "exact_knn": True, "beta_mode": "fixed",
}
_LEGACY_SINCE = {"beta_mode": "fixed"}  # added after runs existed: out of the hash at this value


@dataclass(frozen=True, init=False)
class AcquisitionConfig:
    """The acquisition policy, the uncertainty score every policy uses (random records it too) and the
    policy's own knobs (docs/method.md sections 4-6).

    ``knobs`` is an instance of the policy's knob class (its registry entry,
    :mod:`balpm.acquisition.registry`; ``None`` here means its defaults); ``legacy`` holds hash-only
    values of :data:`LEGACY_KNOBS` the policy does not own (see there). YAML and :meth:`to_dict` stay
    flat (``{policy: balpm, uncertainty: epistemic, beta: 0.01, ...}``) and ``acq.beta`` reads a knob.
    Build one with :meth:`make` (``AcquisitionConfig.make("balpm", beta=0.1)``).
    """

    policy: str = _f("balpm", "the acquisition policy (the registered ones: balpm run --help lists them)",
                     flag="--policy")
    uncertainty: str = _f("epistemic", f"uncertainty score: {', '.join(UNCERTAINTIES)}", choices=UNCERTAINTIES,
                          flag="--uncertainty")
    knobs: Any = field(default=None, metadata={"help": "the policy's own knobs", "internal": True})
    legacy: tuple[tuple[str, Any], ...] = field(default=(), metadata={"help": "hash-only legacy values",
                                                                       "internal": True})

    def __init__(self, policy: str = "balpm", uncertainty: str = "epistemic", knobs: Any = None,
                 legacy: tuple[tuple[str, Any], ...] = (), **knob_values: Any) -> None:
        """``AcquisitionConfig(policy="balpm", beta=0.1)``: knob values by name (as with the old union of knobs,
        a :data:`LEGACY_KNOBS` name the policy does not own is kept hash-only); or ``knobs=`` an instance."""
        entry = _registry().policy_entry(policy)
        if uncertainty not in UNCERTAINTIES:
            raise ConfigError(f"unknown uncertainty {uncertainty!r}; choose one of {', '.join(UNCERTAINTIES)}")
        if knobs is None:
            knobs = entry.knobs()
        elif type(knobs) is not entry.knobs:
            raise ConfigError(f"acquisition.knobs of policy {policy!r} must be {entry.knobs.__name__} "
                              f"(got {type(knobs).__name__})")
        for name, value in (("policy", policy), ("uncertainty", uncertainty), ("knobs", knobs),
                            ("legacy", tuple(legacy))):
            object.__setattr__(self, name, value)
        own = {k: knob_values.pop(k) for k in list(knob_values) if k in entry.knob_fields()}
        if own:  # as given, like any dataclass field: validate() checks them
            object.__setattr__(self, "knobs", dataclasses.replace(knobs, **own))
        if knob_values:
            done = self.updated(knob_values, strict=False)
            object.__setattr__(self, "knobs", done.knobs)
            object.__setattr__(self, "legacy", done.legacy)

    def __getattr__(self, name: str) -> Any:
        """``acq.beta``: a knob of the policy; for a policy without it, the legacy union's value (its
        ``legacy`` value or the old default) so readers written for the union keep working."""
        if name.startswith("__"):
            raise AttributeError(name)
        d = object.__getattribute__(self, "__dict__")
        knobs = d.get("knobs")
        if knobs is not None and name in {f.name for f in fields(knobs)}:
            return getattr(knobs, name)
        if name in LEGACY_KNOBS:
            return dict(d.get("legacy", ())).get(name, LEGACY_KNOBS[name])
        raise AttributeError(f"policy {d.get('policy')!r} has no knob {name!r}")

    # ---- the policy's knobs --------------------------------------------------------------------
    @property
    def entry(self) -> Any:
        """The policy's registry entry."""
        return _registry().policy_entry(self.policy)

    def knob_values(self) -> dict[str, Any]:
        """The policy's own knobs, by name, in declaration order."""
        return {f.name: getattr(self.knobs, f.name) for f in fields(self.knobs)}

    @classmethod
    def make(cls, policy: str = "balpm", uncertainty: str = "epistemic", **knobs: Any) -> "AcquisitionConfig":
        """``make("balpm", beta=0.1)``: knob values coerced by their fields; a knob the policy does not own is
        a one-line ConfigError naming the policy's knobs."""
        return cls(policy=policy, uncertainty=uncertainty).updated(knobs)

    def updated(self, changes: dict[str, Any], *, strict: bool = True) -> "AcquisitionConfig":
        """A copy with ``changes`` (``policy``, ``uncertainty`` and knob names; values coerced by their fields).

        A new ``policy`` keeps the knobs the new policy also owns and, as the union did, the non-default
        :data:`LEGACY_KNOBS` values it does not own (hash-only, so sweeps made before keep their run ids).
        ``strict``: a knob the policy does not own is a one-line ConfigError; otherwise (a config file, a
        preset) a legacy knob goes to ``legacy`` (dropped at its default).
        """
        changes = dict(changes)
        policy = coerce_value("acquisition.policy", changes.pop("policy", self.policy))
        uncertainty = coerce_value("acquisition.uncertainty", changes.pop("uncertainty", self.uncertainty))
        entry = _registry().policy_entry(policy)
        own = entry.knob_fields()
        values: dict[str, Any] = {}
        legacy = dict(self.legacy)
        if policy != self.policy:
            for name, value in self.knob_values().items():
                if name in own:
                    values[name] = value
                elif name in LEGACY_KNOBS and value != LEGACY_KNOBS[name]:
                    legacy[name] = value
            for name in [n for n in legacy if n in own]:  # a legacy value the new policy owns becomes its knob
                values[name] = coerce_value(f"acquisition.{name}", legacy.pop(name), policy=policy)
        else:
            values = self.knob_values()
        for name, value in changes.items():
            if name in own:
                values[name] = coerce_value(f"acquisition.{name}", value, policy=policy)
            elif not strict and name in LEGACY_KNOBS:
                value = _coerce(type(LEGACY_KNOBS[name]), value, f"config key acquisition.{name}")
                legacy[name] = value
            else:
                raise ConfigError(_not_owned(name, policy))
        for name in list(legacy):
            if name in own or legacy[name] == LEGACY_KNOBS[name]:
                legacy.pop(name)
        return AcquisitionConfig(policy=policy, uncertainty=uncertainty, knobs=entry.knobs(**values),
                                 legacy=tuple(sorted(legacy.items())))

    def to_dict(self) -> dict[str, Any]:
        """The flat section: policy, uncertainty, the policy's knobs, then any legacy values."""
        return {"policy": self.policy, "uncertainty": self.uncertainty, **self.knob_values(), **dict(self.legacy)}

    def hash_dict(self) -> dict[str, Any]:
        """The section as the run hash sees it: the legacy union (:data:`LEGACY_KNOBS`), overridden by the
        policy's knobs and its legacy values; a field with ``since_default`` at that value is left out."""
        d: dict[str, Any] = {"policy": self.policy, "uncertainty": self.uncertainty, **LEGACY_KNOBS}
        d.update(self.knob_values())
        d.update(dict(self.legacy))
        since = dict(_LEGACY_SINCE)
        since.update({f.name: f.metadata["since_default"] for f in fields(self.knobs) if "since_default" in f.metadata})
        for name, value in since.items():
            if name in d and d[name] == value:
                d.pop(name)
        return json.loads(json.dumps(d))


def check_owned(policy: str | Any, names: Any) -> None:
    """One-line ConfigError (naming the flag, whose knob it is and the policy's knobs) unless ``policy`` (or,
    given several, one of them: a sweep's) owns every acquisition knob in ``names`` (``policy`` and
    ``uncertainty`` belong to every policy). The CLI checks the knobs a user gave with this; files and
    :meth:`RunConfig.replace` keep legacy knobs hash-only."""
    policies = [policy] if isinstance(policy, str) else list(policy)
    own = {k for p in policies for k in _registry().policy_entry(p).knob_fields()}
    for name in names:
        if name not in ("policy", "uncertainty") and name not in own:
            if len(policies) == 1:
                raise ConfigError(_not_owned(name, policies[0]))
            owners = _registry().knob_owners(name)
            raise ConfigError(f"{key_name(f'acquisition.{name}')} is not a knob of any of the policies "
                              f"{', '.join(policies)} ({'it is a knob of ' + ', '.join(owners) if owners else 'no policy has it'})")


def _not_owned(name: str, policy: str) -> str:
    reg = _registry()
    own = list(reg.policy_entry(policy).knob_fields())
    owners = reg.knob_owners(name)
    whose = f"it is a knob of {', '.join(owners)}" if owners else "no policy has it"
    return (f"{key_name(f'acquisition.{name}')} is not a knob of policy {policy!r} ({whose}); {policy}'s knobs: "
            f"{', '.join(own) if own else '(none)'}")


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
    if flag is None and key.startswith("acquisition."):
        try:
            flag = field_info(key)[1].metadata.get("flag")
        except ConfigError:
            flag = None
    return f"{key} ({flag})" if flag else f"{key} (--set {key}=...)"


def section_class(section: str) -> type:
    """The dataclass of one config section (``"loop"`` -> :class:`LoopConfig`)."""
    if section not in SECTIONS:
        raise ConfigError(f"unknown config section {section!r}; choose one of {', '.join(SECTIONS)}")
    return _field_types(RunConfig)[section]


@functools.lru_cache(maxsize=None)
def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def section_fields(section: str, policy: str | None = None) -> dict[str, tuple[Any, dataclasses.Field]]:
    """``{name: (type, Field)}`` of a section's knobs. ``acquisition``: ``policy``, ``uncertainty`` and the
    knobs of ``policy`` (None: of every registered policy, the first owner's field for a shared name)."""
    cls = section_class(section)
    types = _field_types(cls)
    out = {f.name: (types[f.name], f) for f in fields(cls) if not f.metadata.get("internal")}
    if section == "acquisition":
        reg = _registry()
        if policy is not None:
            knob_cls = reg.policy_entry(policy).knobs
            kt = _field_types(knob_cls)
            out.update((f.name, (kt[f.name], f)) for f in fields(knob_cls))
        else:
            for name, (owner, f) in reg.all_knob_fields().items():
                out.setdefault(name, (_field_types(reg.policy_entry(owner).knobs)[name], f))
    return out


def field_info(key: str, policy: str | None = None) -> tuple[Any, dataclasses.Field]:
    """``(type, dataclasses.Field)`` of ``"section.field"`` (one-line ConfigError if unknown); an acquisition
    knob is looked up in ``policy``'s knob class (None: any policy's)."""
    section, _, name = key.partition(".")
    known = section_fields(section, policy)
    if name not in known:
        if section == "acquisition" and policy is not None and name in section_fields(section):
            raise ConfigError(_not_owned(name, policy))
        raise ConfigError(f"unknown config key {key!r}; {section} has {', '.join(known)}")
    return known[name]


def resolve_key(name: str) -> str:
    """``"beta"`` -> ``"acquisition.beta"``; ``"loop.rounds"`` stays. A bare name must be unambiguous."""
    name = name.strip()
    if "." in name:
        field_info(name)
        return name
    hits = [s for s in SECTIONS if name in section_fields(s)]
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


def coerce_value(key: str, value: Any, where: str | None = None, *, policy: str | None = None) -> Any:
    """``value`` (native or text) as the type of config key ``"section.field"``; one-line error otherwise.

    ``where`` names the source in the error (default: the key and its CLI flag). Allowed values
    (``choices``; for ``acquisition.policy`` the registered policies) are checked here; bounds are checked
    by :meth:`RunConfig.validate`. ``policy``: whose knob an acquisition key is (None: any policy's).
    """
    tp, f = field_info(key, policy)
    where = where or key_name(key)
    out = _coerce(tp, value, where)
    if key == "data.world" and isinstance(value, _AsWritten):  # a run's own config.yaml: its spelling, its run id
        from balpm.data.worlds import parse_world  # lazy: numpy (balpm --help imports none)

        if out:
            parse_world(out)  # still checked
        out = str(out)
    elif key == "data.world" and out:  # one spelling per world, so two spellings of a world hash the same
        from balpm.data.worlds import canonical_spec  # lazy: numpy (balpm --help imports none)

        out = canonical_spec(out)
    choices = _registry().names() if key == "acquisition.policy" else f.metadata.get("choices")
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
    acquisition: AcquisitionConfig = field(default_factory=AcquisitionConfig, metadata={"help": "acquisition"})
    loop: LoopConfig = _f(LoopConfig(), "loop")

    # ---- validation -------------------------------------------------------------------------
    def validate(self) -> "RunConfig":
        """Raise a one-line :class:`ConfigError` for any impossible parameter (naming its CLI flag).

        Checks every field's type, allowed values and bounds, the devices (``cuda`` needs a visible
        GPU) and the cross-field constraints. Reads nothing and writes nothing.
        """
        for section in SECTIONS:
            sub = getattr(self, section)
            policy = self.acquisition.policy if section == "acquisition" else None
            for name, (_, f) in section_fields(section, policy).items():
                key = f"{section}.{name}"
                raw = getattr(sub, name)
                value = coerce_value(key, raw, policy=policy)
                ge, gt = f.metadata.get("ge"), f.metadata.get("gt")
                for v in (value if isinstance(value, tuple) else (value,)):
                    if isinstance(v, bool) or not isinstance(v, (int, float)):
                        continue
                    if ge is not None and not v >= ge:
                        raise ConfigError(f"{key_name(key)} must be >= {ge:g} (got {_describe(raw)})")
                    if gt is not None and not v > gt:
                        raise ConfigError(f"{key_name(key)} must be > {gt:g} (got {_describe(raw)})")
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
        devices.check_name(ft.device, "features.device")
        devices.check_available(m.device, "model.device (--device)")
        devices.check_available(ft.device, "features.device (--set features.device=...)")
        return self

    # ---- serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples as lists) for YAML/JSON; the acquisition section flat."""
        out = {f.name: (self.acquisition.to_dict() if f.name == "acquisition" else getattr(self, f.name))
               for f in fields(self)}
        return json.loads(json.dumps({k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v
                                      for k, v in out.items()}))

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
        d["acquisition"] = self.acquisition.hash_dict()
        for section in SECTIONS:  # one rule: a field added later is left out at its since_default
            if section == "acquisition":
                continue
            for f in fields(section_class(section)):
                if "since_default" in f.metadata and d[section].get(f.name) == _jsonable(f.metadata["since_default"]):
                    d[section].pop(f.name)
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
            if name == "acquisition":  # as the union did: a legacy knob of another policy stays hash-only
                out = dataclasses.replace(out, acquisition=out.acquisition.updated(dict(changes), strict=False))
                continue
            typed = {k: coerce_value(f"{name}.{k}", v) for k, v in dict(changes).items()}
            out = dataclasses.replace(out, **{name: dataclasses.replace(getattr(out, name), **typed)})
        return out

    def set(self, key: str, value: Any) -> "RunConfig":
        """A copy with one ``"section.field"`` set (coerced by the field's type)."""
        key = resolve_key(key)
        section, _, name = key.partition(".")
        return self.replace(**{section: {name: value}})


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


class _AsWritten(str):
    """``data.world`` as a run's own config.yaml spells it: kept as written (not canonicalised), so a run made
    before world specs were canonical keeps its run id and resumes (the spec parses to the same world)."""


def _fill_predated(raw: dict[str, Any]) -> dict[str, Any]:
    """A run's own config.yaml (it has ``meta``) written before some model fields existed: those fields
    get the value that run had in effect (their ``since_default``), not today's default, so resuming it
    continues it bit for bit. Any other mapping is returned unchanged."""
    if "meta" in raw:
        raw = dict(raw)
        for section in SECTIONS:
            if isinstance(raw.get(section), dict) and section != "acquisition":
                predated = {f.name: f.metadata["since_default"] for f in fields(section_class(section))
                            if "since_default" in f.metadata}
                raw[section] = {**predated, **raw[section]}
        if isinstance(raw.get("data"), dict) and isinstance(raw["data"].get("world"), str):
            raw["data"] = {**raw["data"], "world": _AsWritten(raw["data"]["world"])}
    return raw


def _build(cls: type, raw: dict[str, Any], where: str) -> Any:
    if cls is AcquisitionConfig:
        return _build_acquisition(raw)
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


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _build_acquisition(raw: dict[str, Any]) -> AcquisitionConfig:
    """The flat acquisition section of a config file: policy, uncertainty, the policy's knobs; a legacy
    union knob the policy does not own is kept hash-only (:data:`LEGACY_KNOBS`), any other is an error."""
    raw = {str(k): v for k, v in raw.items()}
    policy = coerce_value("acquisition.policy", raw.pop("policy", "balpm"),
                          f"config key {key_name('acquisition.policy')}")
    base = AcquisitionConfig(policy=policy)
    where = {k: f"config key {key_name(f'acquisition.{k}')}" for k in raw}
    try:
        return base.updated(raw, strict=False)
    except ConfigError as exc:
        bad = [k for k in raw if k != "uncertainty" and k not in base.entry.knob_fields() and k not in LEGACY_KNOBS]
        if bad and not any(w in str(exc) for w in where.values()):
            raise ConfigError(_not_owned(bad[0], policy)) from None
        raise
