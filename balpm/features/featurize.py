"""Preference table -> :class:`Features`: prompt features and prompt+answer features, cached.

Two parts, each its own cache entry:

* ``prompts``: one row per unique ``prompt_id`` (first-appearance order), text ``template.prompt_text``;
* ``pairs``: (N, 2, D), ``[:, 0]`` = prompt+chosen, ``[:, 1]`` = prompt+rejected, rows in table order.

A part whose key is in the cache is read back without loading the model at all; the returned
``Features.manifest["cache_hit"]`` says which parts were hits (and it is logged).
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from balpm.config import FeatureConfig
from balpm.errors import ConfigError, FeatureError
from balpm.features.cache import FeatureCache, cache_key
from balpm.features.encoder import (
    Encoder,
    ModelSpec,
    check_options,
    load_encoder,
    quantization_name,
    resolve_model,
)
from balpm.features.distributed import check_backend, clear_shards, encode_ray
from balpm.features.templates import Text, template_for, templates_used, texts_sha256, unique_texts

log = logging.getLogger("balpm.features")

PARTS = ("prompts", "pairs")
_NEEDED = ("pair_id", "prompt_id", "prompt", "chosen", "rejected")


@dataclass(frozen=True, eq=False)
class Features:
    """Prompt features (P, D) and pair features (N, 2, D), float32, with their manifest and content hash."""

    prompt_ids: np.ndarray
    prompts_P_D: np.ndarray
    pair_ids: np.ndarray
    pairs_N_2_D: np.ndarray
    manifest: dict
    hash: str

    @property
    def dim(self) -> int:
        """Feature dimension D."""
        return int(self.prompts_P_D.shape[1])

    @property
    def cache_hits(self) -> dict[str, bool]:
        """``{"prompts": bool, "pairs": bool}``: which parts came from the cache."""
        return dict(self.manifest.get("cache_hit", {}))

    @functools.cached_property
    def _prompt_index(self) -> pd.Index:
        return pd.Index(self.prompt_ids)

    def prompt_rows(self, prompt_ids_N: Sequence[str] | np.ndarray) -> np.ndarray:
        """Prompt features (N, D) for each given prompt id (e.g. the prompts of a set of pairs)."""
        ids_N = np.asarray(prompt_ids_N, dtype=object).astype(str)
        pos_N = self._prompt_index.get_indexer(ids_N)
        if (pos_N < 0).any():
            missing = ids_N[pos_N < 0][0]
            raise FeatureError(f"prompt id {missing!r} has no prompt features; featurize the table that holds it")
        return self.prompts_P_D[pos_N]

    def validate(self, table: pd.DataFrame) -> Features:
        """Check these features belong to ``table`` (same pair ids in order, every prompt present, all finite)."""
        if "pair_id" not in table.columns or "prompt_id" not in table.columns:
            raise FeatureError("table lacks pair_id/prompt_id columns; pass the preference table the features were made from")
        table_ids = table["pair_id"].astype(str).to_numpy()
        if len(table_ids) != len(self.pair_ids) or not np.array_equal(table_ids, self.pair_ids.astype(str)):
            raise FeatureError(f"features have {len(self.pair_ids)} pairs that do not match the table's {len(table_ids)} "
                               "pair ids in order; re-run balpm featurize on this table")
        if self.pairs_N_2_D.ndim != 3 or self.pairs_N_2_D.shape[:2] != (len(self.pair_ids), 2):
            raise FeatureError(f"pair features have shape {self.pairs_N_2_D.shape}, expected ({len(self.pair_ids)}, 2, D); "
                               "re-run balpm featurize")
        # Prompt and pair features may differ in width (the teaching world: 2-D prompts, 16-D pairs).
        if self.prompts_P_D.ndim != 2 or self.prompts_P_D.shape[0] != len(self.prompt_ids):
            raise FeatureError(f"prompt features have shape {self.prompts_P_D.shape}, expected ({len(self.prompt_ids)}, D); "
                               "re-run balpm featurize")
        missing = ~pd.Index(table["prompt_id"].astype(str).unique()).isin(self._prompt_index)
        if missing.any():
            raise FeatureError(f"{int(missing.sum())} prompt id(s) of the table have no prompt features; re-run balpm featurize")
        for name, arr in (("prompt", self.prompts_P_D), ("pair", self.pairs_N_2_D)):
            if arr.dtype != np.float32:
                raise FeatureError(f"{name} features are {arr.dtype}, expected float32; re-run balpm featurize")
            if not np.isfinite(arr).all():
                raise FeatureError(f"{name} features hold NaN/inf; re-run balpm featurize with --dtype fp32")
        return self


def check_table(table: pd.DataFrame) -> None:
    """One-line :class:`FeatureError` when the table cannot be featurized (before any work)."""
    missing = [c for c in _NEEDED if c not in table.columns]
    if missing:
        raise FeatureError(f"table lacks column(s) {missing}; featurize needs {list(_NEEDED)} (load it with balpm.data.load_table)")
    if len(table) == 0:
        raise FeatureError("the table has no rows; nothing to featurize")
    # The prompt must be text. One answer may be empty (a model that wrote nothing: 12 real CNN/DM
    # comparisons); its text "Article: ...\nSummary: " still has features. Both empty is an error.
    is_text = {c: table[c].map(lambda v: isinstance(v, str)) for c in ("prompt", "chosen", "rejected")}
    blank = {c: table[c].map(lambda v: not isinstance(v, str) or v.strip() == "") for c in ("prompt", "chosen", "rejected")}
    for col, bad in (("prompt", blank["prompt"]),
                     ("chosen", ~is_text["chosen"]), ("rejected", ~is_text["rejected"]),
                     ("chosen and rejected", blank["chosen"] & blank["rejected"])):
        if bad.any():
            raise FeatureError(f"empty or non-text {col} in pair {table.loc[bad, 'pair_id'].iloc[0]!r}; "
                               "drop the row or load with --skip-bad")
    if table["pair_id"].duplicated().any():
        raise FeatureError(f"pair_id {table.loc[table['pair_id'].duplicated(), 'pair_id'].iloc[0]!r} occurs twice; pair ids must be unique")
    texts_per_prompt = table.groupby("prompt_id", sort=False)["prompt"].nunique()
    if (texts_per_prompt > 1).any():
        raise FeatureError(f"prompt id {texts_per_prompt[texts_per_prompt > 1].index[0]!r} has different prompt texts; "
                           "prompt ids must identify one prompt")


def table_texts(table: pd.DataFrame) -> tuple[np.ndarray, list[Text], np.ndarray, list[Text], list[str]]:
    """(prompt_ids, prompt texts, pair_ids, 2N pair texts [chosen..., rejected...], sources) of a table."""
    sources = (table["source"].astype(str) if "source" in table.columns
               else pd.Series(["custom"] * len(table), index=table.index))
    firsts = ~table["prompt_id"].astype(str).duplicated()
    prompt_ids = table.loc[firsts, "prompt_id"].astype(str).to_numpy()
    prompt_texts = [template_for(s).prompt_text(p) for p, s in zip(table.loc[firsts, "prompt"], sources[firsts])]
    templ = [template_for(s) for s in sources]
    chosen = [t.pair_text(p, a) for t, p, a in zip(templ, table["prompt"], table["chosen"])]
    rejected = [t.pair_text(p, a) for t, p, a in zip(templ, table["prompt"], table["rejected"])]
    return prompt_ids, prompt_texts, table["pair_id"].astype(str).to_numpy(), chosen + rejected, list(sources)


def _identity(spec: ModelSpec, cfg: FeatureConfig) -> dict[str, Any]:
    return {**spec.identity, "max_length": cfg.max_length, "dtype": cfg.dtype,
            "quantization": quantization_name(cfg.load_in_4bit, cfg.load_in_8bit)}


def _versions() -> dict[str, str]:
    import torch
    import transformers

    import balpm

    return {"balpm": balpm.__version__, "torch": torch.__version__, "transformers": transformers.__version__}


def featurize(table: pd.DataFrame, cfg: FeatureConfig | None = None, *, progress: bool = True,
              backend: str = "local", address: str | None = None,
              on_compute: Callable[[str, int, int], None] | None = None) -> Features:
    """Prompt and prompt+answer features of a preference table (cache hit, no model load, when identical).

    ``on_compute(part, distinct_texts, texts)`` is called just before a part that is not in the cache is
    computed, never for a cache hit (``balpm demo`` says there that it is the first time; the time it takes
    follows from the first batch, see :meth:`Encoder.encode_ids`).
    Raises one-line :class:`FeatureError`/:class:`ConfigError` for a bad table or options, before any work.
    ``backend="ray"``: parts not in the cache are computed by a Ray actor pool (``address``: a cluster;
    None: a local Ray), same cache entries, resumable by shards (see :mod:`balpm.features.distributed`).
    """

    cfg = cfg or FeatureConfig()
    check_options(dtype=cfg.dtype, max_length=cfg.max_length, batch_size=cfg.batch_size,
                  load_in_4bit=cfg.load_in_4bit, load_in_8bit=cfg.load_in_8bit, pooling=cfg.pooling)
    check_backend(backend, address)
    check_table(table)
    spec = resolve_model(cfg.model, cfg.pooling)
    if spec.max_positions is not None and cfg.max_length > spec.max_positions:
        raise ConfigError(f"max_length {cfg.max_length} exceeds what {spec.name} can read ({spec.max_positions} tokens); "
                          f"use --max-length {spec.max_positions} or less")
    cache = FeatureCache(cfg.cache_dir)
    cache.ensure_writable()

    prompt_ids, prompt_texts, pair_ids, pair_texts, sources = table_texts(table)
    templates = templates_used(sources)
    identity = _identity(spec, cfg)
    parts: dict[str, list[Text]] = {"prompts": prompt_texts, "pairs": pair_texts}
    # A part with repeated texts is embedded once per distinct text: other batches, so values may differ from
    # embedding every text in the last float32 bit (1.8e-7 on the real TL;DR pairs); its key says so. A part
    # without repeats is computed exactly as before and keeps its key.
    keys = {part: cache_key({**identity, "part": part, "templates": templates, "texts_sha256": texts_sha256(texts),
                             **({"distinct_texts": 1} if len(set(texts)) < len(texts) else {})})
            for part, texts in parts.items()}

    encoder: Encoder | None = None

    def get_encoder() -> Encoder:
        nonlocal encoder
        if encoder is None:
            encoder = load_encoder(spec, device=cfg.device, dtype=cfg.dtype, load_in_4bit=cfg.load_in_4bit,
                                   load_in_8bit=cfg.load_in_8bit)
        return encoder

    arrays: dict[str, np.ndarray] = {}
    manifests: dict[str, dict[str, Any]] = {}
    hits: dict[str, bool] = {}
    # backend ray: one Ray session (started on the first part computed) serves both parts, then stops
    with contextlib.ExitStack() as ray_session:
        for part, texts in parts.items():
            found = cache.load(keys[part], rows=len(texts))  # the header's shape checked before mapping
            if found is not None:
                arrays[part], manifests[part] = found
                hits[part] = True
                log.info("%s features: cache hit %s", part, cache.paths(keys[part])[0])
                continue
            hits[part] = False
            if on_compute is not None:
                on_compute(part, len(set(texts)), len(texts))
            ray_opts = {"spec": spec, "address": address, "session": ray_session} if backend == "ray" else None
            arrays[part], manifests[part] = _compute_part(part, texts, keys[part], identity, templates, cfg, cache,
                                                          get_encoder, progress, ray_opts=ray_opts)

    prompts_P_D = arrays["prompts"]
    pairs = arrays["pairs"]
    pairs_N_2_D = pairs if pairs.ndim == 3 else pairs.reshape(2, len(pair_ids), -1).transpose(1, 0, 2)
    pairs_N_2_D = np.ascontiguousarray(pairs_N_2_D, dtype=np.float32)
    content = {part: {"key": manifests[part]["key"], "array_sha256": manifests[part]["array_sha256"]} for part in PARTS}
    feature_hash = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]
    manifest = {
        **identity, "model_source": spec.source, "templates": templates, "cache_dir": str(cache.root),
        "cache_hit": hits, "paths": {part: str(cache.paths(keys[part])[0]) for part in PARTS},
        "prompts": manifests["prompts"], "pairs": manifests["pairs"],
    }
    feats = Features(prompt_ids=prompt_ids, prompts_P_D=prompts_P_D, pair_ids=pair_ids, pairs_N_2_D=pairs_N_2_D,
                     manifest=manifest, hash=feature_hash)
    return feats.validate(table)


def _say(message: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(message, file=sys.stderr)


def _compute_part(part: str, texts: list[Text], key: str, identity: dict[str, Any], templates: dict[str, Any],
                  cfg: FeatureConfig, cache: FeatureCache, get_encoder: Callable[[], Encoder],
                  progress: bool, ray_opts: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    start = time.perf_counter()
    if ray_opts is not None:  # Ray actor pool, same batches, resumable shards (balpm.features.distributed)

        tokens, feats_M_D, device = encode_ray(ray_opts["spec"], texts, key, cfg, cache, progress=progress,
                                               desc=f"featurize {part}", address=ray_opts["address"],
                                               session=ray_opts["session"])
    else:
        encoder = get_encoder()
        # identical texts (an answer compared several times, a prompt in two files) are embedded once
        unique, inverse_M = unique_texts(texts)
        tokens = encoder.tokenize(unique, cfg.max_length).expand(inverse_M)
        if progress:
            _say(f"featurize {part}: {len(unique):,} distinct texts of {len(texts):,} with {encoder.spec.name} on "
                 f"{encoder.device} ({encoder.threads} threads); the time left is on the bar")
        feats_U_D = encoder.encode_ids(tokens.ids, batch_size=cfg.batch_size, progress=progress,
                                       desc=f"featurize {part}", eta=progress)
        feats_M_D = feats_U_D[inverse_M]
        device = str(encoder.device)
    seconds = time.perf_counter() - start
    if part == "pairs":
        n = len(texts) // 2
        feats_M_D = np.ascontiguousarray(feats_M_D.reshape(2, n, -1).transpose(1, 0, 2))
    manifest = {
        **identity, "part": part, "templates": templates, "texts_sha256": texts_sha256(texts), "texts": len(texts),
        "prompts_truncated": tokens.prompts_truncated, "answers_truncated": tokens.answers_truncated,
        "device": device, "batch_size": cfg.batch_size, "seconds": round(seconds, 3),
        "texts_per_second": round(len(texts) / max(seconds, 1e-9), 2),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "versions": _versions(),
    }
    stored = cache.save(key, feats_M_D, manifest)
    if ray_opts is not None:

        clear_shards(cache, key)
    log.info("%s features: computed %d texts in %.1f s, cached at %s", part, len(texts), seconds, cache.paths(key)[0])
    return feats_M_D, stored
