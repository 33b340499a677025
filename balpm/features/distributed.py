"""Featurization across GPUs and machines: Ray Data ``map_batches`` over an actor pool, one model per actor.

``balpm featurize --backend ray`` (or ``featurize(table, cfg, backend="ray")``) computes the same
cache entries as the single-process path, bit for bit on the same device type:

* the driver tokenizes every distinct text (tokenizer only, no model; repeated texts are embedded
  once, as in one process) and plans the forward passes exactly as :meth:`Encoder.encode_ids` does:
  texts sorted by token count (longest first, stable), cut into batches of ``batch_size``. Batch
  composition, and therefore padding, is the same as in one process;
* consecutive batches are grouped into shards of about ``texts_per_shard`` texts (a whole number of
  batches); each shard is one row of a Ray Dataset, and ``map_batches`` hands rows to a pool of
  actors, each holding one loaded model (``num_gpus=1`` per actor when the cluster has GPUs and the
  device is not ``cpu``; otherwise ``num_cpus`` = the smallest node's CPU count, its torch threads);
* results stream back to the driver, which writes each finished shard at once, atomically, to
  ``<cache>/_shards/<key>/shard-NNNNN.npy``. A rerun after a kill computes only the missing shards;
  when all are present the part is assembled, saved as the ordinary content-addressed cache entry
  (``FeatureCache.save``) and the shard folder is removed.

Only the driver needs the cache folder (no shared filesystem for featurization); every node needs
balpm and the model (a hub model is downloaded by each node into its own Hugging Face cache).
"""
from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from balpm.errors import ConfigError, FeatureError
from balpm.experiment.ray_watchdog import start as start_watchdog
from balpm.features.cache import FeatureCache, _atomic_write
from balpm.features.encoder import (
    ModelSpec,
    Tokenized,
    _quiet_transformers,
    hub_offline,
    load_encoder,
    pad_batch,
    tokenize_texts,
)
from balpm.features.templates import Text, unique_texts

log = logging.getLogger("balpm.features")

BACKENDS = ("local", "ray")
SHARDS_DIR = "_shards"
TEXTS_PER_SHARD = 4096
_PLAN_FORMAT = "balpm-shards/1"


def check_backend(backend: str, address: str | None = None) -> None:
    """One-line :class:`ConfigError` for an unknown backend, ``--address`` without Ray, Ray missing, or an
    address where no cluster answers."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose local or ray")
    if backend == "local":
        if address is not None:
            raise ConfigError("--address is for --backend ray; add --backend ray or drop --address")
        return
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError:
        raise ConfigError("--backend ray needs Ray: pip install 'balpm[ray]' (or use the default local backend)") from None
    if address:
        check_address(address)


def check_address(address: str, timeout: float = 5.0) -> None:
    """One-line :class:`ConfigError` when ``host:port`` (or ``ray://host:port``) does not answer within
    ``timeout`` seconds (Ray itself would keep retrying for minutes). ``auto``/``local`` pass unchecked."""
    m = re.fullmatch(r"(?:ray://)?\[?([^\]/]+?)\]?:(\d+)/?", address.strip())
    if m is None:
        if address.strip() in ("auto", "local"):
            return
        raise ConfigError(f"--address {address!r} is not host:port (e.g. 10.0.0.1:6379, as `ray start --head` prints it)")
    try:
        with socket.create_connection((m.group(1), int(m.group(2))), timeout=timeout):
            pass
    except OSError as exc:
        raise ConfigError(f"no Ray cluster answers at {address} ({exc.strerror or exc}); start one with "
                          "`ray start --head` and pass the address it prints, or drop --address for a local Ray") from None


@contextlib.contextmanager
def ray_session(address: str | None = None) -> Iterator[None]:
    """Use an initialised Ray as is; else connect to ``address`` (or start a local Ray) and stop it afterwards."""
    import ray

    if ray.is_initialized():
        yield
        return
    if address:
        check_address(address)
    watchdog = None
    if not address:  # a local Ray: torn down by a watchdog if this process is killed (balpm.experiment.ray_watchdog)
        watchdog = start_watchdog()
    try:
        try:
            ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            where = f"the Ray cluster at {address!r}" if address else "a local Ray"
            msg = " ".join(str(exc).split())[:200]
            raise ConfigError(f"cannot start or reach {where} ({msg}); check the address that `ray start --head` "
                              "printed, or drop --address for a local Ray") from None
        try:
            yield
        finally:
            ray.shutdown()
    finally:
        if watchdog is not None:
            watchdog.stop()


# ---- planning (driver) --------------------------------------------------------------------------
def load_tokenizer(spec: ModelSpec) -> Any:
    """The model's tokenizer alone (no weights), loaded exactly as :func:`load_encoder` loads it."""
    from transformers import AutoTokenizer


    common: dict[str, Any] = ({"local_files_only": True} if spec.local
                              else {"revision": spec.revision, "local_files_only": hub_offline()})
    try:
        with _quiet_transformers():
            return AutoTokenizer.from_pretrained(spec.source, **common)
    except Exception as exc:  # noqa: BLE001 - one line naming the fix
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise FeatureError(f"could not load the tokenizer of {spec.name} ({first}); check the id or folder") from None


def plan_shards(ids: Sequence[Sequence[int]], batch_size: int, texts_per_shard: int = TEXTS_PER_SHARD) -> list[np.ndarray]:
    """Row indices of each shard: :meth:`Encoder.encode_ids`'s length-sorted order, cut into whole batches."""
    lengths_N = np.array([len(x) for x in ids])
    order_N = np.argsort(-lengths_N, kind="stable")
    per_shard = max(1, int(texts_per_shard) // batch_size) * batch_size
    return [order_N[s:s + per_shard] for s in range(0, len(order_N), per_shard)]


def shard_dir(cache: FeatureCache, key: str) -> Path:
    """Folder of the finished shards of one cache entry still being computed."""
    return cache.root / SHARDS_DIR / key


def clear_shards(cache: FeatureCache, key: str) -> None:
    """Remove an entry's shard folder (after the assembled entry is in the cache)."""
    shutil.rmtree(shard_dir(cache, key), ignore_errors=True)
    with contextlib.suppress(OSError):
        (cache.root / SHARDS_DIR).rmdir()  # only when no other entry is in progress


def _shard_path(folder: Path, i: int) -> Path:
    return folder / f"shard-{i:05d}.npy"


def _prepare_folder(folder: Path, plan: dict[str, Any]) -> None:
    """Keep the shards of an identical earlier plan; start afresh otherwise."""
    plan_file = folder / "plan.json"
    if plan_file.is_file():
        try:
            if json.loads(plan_file.read_text()) == plan:
                return
        except (OSError, ValueError):
            pass
        log.info("shards in %s were planned differently; recomputing them", folder)
        shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(plan, sort_keys=True)
    _atomic_write(plan_file, lambda fh: fh.write(text.encode()))


def _load_shard(path: Path, rows: int) -> np.ndarray | None:
    """A finished shard, or None when absent or damaged (wrong dtype/shape, NaN)."""
    if not path.is_file():
        return None
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if arr.dtype != np.float32 or arr.ndim != 2 or arr.shape[0] != rows or not np.isfinite(arr).all():
        return None
    return arr


# ---- the actor (one model each) ----------------------------------------------------------------
class EncodeActor:
    """A Ray Data ``map_batches`` callable class: loads one model, then encodes shards of token ids.

    Each input row is one shard: ``tokens`` (int64 bytes, the shard's texts concatenated in planned
    order) and ``lengths`` (int64 bytes). The shard is encoded in batches of ``batch_size`` in that
    order, i.e. the very batches one process would form. Output: ``feats`` as float32 bytes (rows x D).
    """

    def __init__(self, spec: ModelSpec, device: str, dtype: str, load_in_4bit: bool, load_in_8bit: bool,
                 batch_size: int, threads: int) -> None:
        import torch


        if threads > 0:
            torch.set_num_threads(threads)
        if device.startswith("cuda"):  # Ray exposes this actor's GPU as cuda:0
            device = "cuda"
        self.encoder = load_encoder(spec, device=device, dtype=dtype, load_in_4bit=load_in_4bit,
                                    load_in_8bit=load_in_8bit)
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Encode every shard of ``batch``; returns ``shard``, ``dim``, ``feats`` (bytes) and ``device``."""
        enc = self.encoder
        feats_out, dims = [], []
        for tokens_b, lengths_b in zip(batch["tokens"], batch["lengths"]):
            flat = np.frombuffer(tokens_b, dtype=np.int64)
            lengths = np.frombuffer(lengths_b, dtype=np.int64)
            ends = np.cumsum(lengths)
            ids = [flat[e - n:e].tolist() for e, n in zip(ends, lengths)]
            parts = []
            for start in range(0, len(ids), self.batch_size):
                input_ids, mask = pad_batch(ids[start:start + self.batch_size], enc.pad_id, enc.padding_side)
                parts.append(enc._forward(input_ids, mask).numpy())
            feats = np.ascontiguousarray(np.concatenate(parts, axis=0), dtype=np.float32)
            feats_out.append(feats.tobytes())
            dims.append(feats.shape[1])
        out_feats = np.empty(len(feats_out), dtype=object)
        out_feats[:] = feats_out
        return {"shard": np.asarray(batch["shard"], dtype=np.int64), "dim": np.asarray(dims, dtype=np.int64),
                "feats": out_feats, "device": np.array([str(enc.device)] * len(feats_out))}


def _resources(device: str, actors: int | None) -> tuple[int, float, float, int]:
    """(actors, num_cpus, num_gpus, torch threads) per actor for the connected cluster."""
    import ray

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    gpus = sum(r.get("GPU", 0) for r in nodes)
    if device.startswith("mps"):
        raise FeatureError("--device mps cannot be spread over a Ray cluster; use --device auto, cpu or cuda "
                           "(or --backend local)")
    if gpus >= 1 and not device.startswith("cpu"):
        return (actors or int(gpus)), 1.0, 1.0, 0
    if device.startswith("cuda"):
        raise FeatureError(f"--device {device} but the Ray cluster has no GPU; use --device auto or cpu")
    cpus = [int(r.get("CPU", 0)) for r in nodes if r.get("CPU", 0) >= 1]
    if not cpus:
        raise FeatureError("the Ray cluster has no node with a CPU; add nodes or use --backend local")
    per = min(cpus)
    return (actors or sum(c // per for c in cpus)), float(per), 0.0, per


# ---- the distributed encode ----------------------------------------------------------------------
def encode_ray(spec: ModelSpec, texts: Sequence[Text], key: str, cfg: Any, cache: FeatureCache, *,
               progress: bool = True, desc: str = "featurize", address: str | None = None,
               actors: int | None = None, texts_per_shard: int | None = None,
               session: contextlib.ExitStack | None = None) -> tuple[Tokenized, np.ndarray, str]:
    """Features (N, D) of ``texts`` computed by a Ray actor pool; returns (tokens, features, device label).

    ``cfg`` is the :class:`FeatureConfig` (model options, ``batch_size``, ``max_length``, device);
    ``key`` the part's cache key (names the shard folder); ``texts_per_shard`` (default
    :data:`TEXTS_PER_SHARD`, rounded down to whole batches) sets the resume granularity. Finished shards are kept on disk, so a
    killed call resumes; the caller saves the result with ``cache.save`` and then calls
    :func:`clear_shards`. ``session``: an ExitStack that keeps the Ray session (connected or started
    here) open until it closes, so several parts share one; None: this call starts and stops it.
    """
    texts_per_shard = TEXTS_PER_SHARD if texts_per_shard is None else texts_per_shard
    if not isinstance(texts_per_shard, int) or texts_per_shard < 1:
        raise ConfigError(f"texts_per_shard must be an integer >= 1 (got {texts_per_shard!r})")
    if actors is not None and (not isinstance(actors, int) or actors < 1):
        raise ConfigError(f"actors must be an integer >= 1 (got {actors!r})")
    if not len(texts):
        raise FeatureError("no texts to featurize; the table is empty")

    # as in one process: identical texts are embedded once, the batches are planned over the distinct ones
    unique, inverse_M = unique_texts(texts)
    tokens = tokenize_texts(load_tokenizer(spec), unique, cfg.max_length)
    shards = plan_shards(tokens.ids, cfg.batch_size, texts_per_shard)
    folder = shard_dir(cache, key)
    plan = {"format": _PLAN_FORMAT, "key": key, "texts": len(unique), "batch_size": cfg.batch_size,
            "shards": len(shards), "texts_per_shard": len(shards[0])}
    _prepare_folder(folder, plan)
    missing = [i for i, rows in enumerate(shards) if _load_shard(_shard_path(folder, i), len(rows)) is None]
    done_texts = len(unique) - sum(len(shards[i]) for i in missing)
    log.info("%s: %d of %d shards to compute (%d texts already done in %s)", desc, len(missing), len(shards),
             done_texts, folder)
    devices: set[str] = set()
    if missing:
        with contextlib.ExitStack() as own:
            (session or own).enter_context(ray_session(address))
            devices = _run_pool(spec, cfg, tokens.ids, shards, missing, folder, progress, desc, done_texts, actors)
    out_U_D: np.ndarray | None = None
    for i, rows in enumerate(shards):
        arr = _load_shard(_shard_path(folder, i), len(rows))
        if arr is None:
            raise FeatureError(f"shard {i} of {folder} is missing or damaged after the Ray run; run featurize again")
        if out_U_D is None:
            out_U_D = np.empty((len(unique), arr.shape[1]), dtype=np.float32)
        out_U_D[rows] = arr
    assert out_U_D is not None
    label = "ray:" + ",".join(sorted(devices)) if devices else "ray:resumed"
    return tokens.expand(inverse_M), out_U_D[inverse_M], label


@contextlib.contextmanager
def _one_line_errors(spec: ModelSpec) -> Iterator[None]:
    """A failure inside an actor (model load, bad option) becomes one line, as in the local path."""
    try:
        yield
    except (FeatureError, ConfigError):
        raise
    except Exception as exc:  # noqa: BLE001 - Ray wraps the actor's error in a long traceback
        text = str(exc)
        found = re.findall(r"(?:FeatureError|ConfigError): ([^\n]+)", text)
        if found:
            raise FeatureError(found[-1].strip()) from None
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        raise FeatureError(f"the Ray actor pool featurizing with {spec.name} failed ({type(exc).__name__}: "
                           f"{(lines[-1] if lines else '')[:200]}); see the Ray logs, or use --backend local") from None


def _run_pool(spec: ModelSpec, cfg: Any, ids: list[list[int]], shards: list[np.ndarray], missing: list[int],
              folder: Path, progress: bool, desc: str, done_texts: int, actors: int | None) -> set[str]:
    """Run the missing shards through the actor pool, writing each shard as it arrives; returns devices used."""
    import ray.data
    from tqdm.auto import tqdm

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    with contextlib.suppress(AttributeError):
        ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)

    n_actors, num_cpus, num_gpus, threads = _resources(str(cfg.device), actors)
    n_actors = max(1, min(n_actors, len(missing)))
    items = []
    for i in missing:
        rows = shards[i]
        lengths = np.array([len(ids[r]) for r in rows], dtype=np.int64)
        flat = np.fromiter((t for r in rows for t in ids[r]), dtype=np.int64, count=int(lengths.sum()))
        items.append({"shard": i, "tokens": flat.tobytes(), "lengths": lengths.tobytes()})
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    kwargs = {"spec": spec, "device": str(cfg.device), "dtype": cfg.dtype, "load_in_4bit": cfg.load_in_4bit,
              "load_in_8bit": cfg.load_in_8bit, "batch_size": cfg.batch_size, "threads": threads}

    class BoundEncodeActor(EncodeActor):
        """:class:`EncodeActor` with this call's options bound (they travel with the class, not as actor arguments)."""

        def __init__(self) -> None:
            super().__init__(**kwargs)

    ds = ds.map_batches(BoundEncodeActor, batch_size=1, batch_format="numpy",
                        compute=ray.data.ActorPoolStrategy(size=n_actors), num_cpus=num_cpus, num_gpus=num_gpus)
    devices: set[str] = set()
    total = sum(len(s) for s in shards)
    with tqdm(total=total, initial=done_texts, unit="texts", desc=f"{desc} (ray, {n_actors} actors)",
              disable=not progress, dynamic_ncols=True) as bar, _one_line_errors(spec):
        for row in ds.iter_rows():
            i = int(row["shard"])
            feats = np.frombuffer(row["feats"], dtype=np.float32).reshape(-1, int(row["dim"]))
            if feats.shape[0] != len(shards[i]) or not np.isfinite(feats).all():
                raise FeatureError(f"model {spec.name} gave NaN/inf or misshapen features for shard {i} "
                                   f"(dtype {cfg.dtype}); try --dtype fp32 or another model")
            _atomic_write(_shard_path(folder, i), lambda fh, a=feats: np.save(fh, a, allow_pickle=False))
            devices.add(str(row["device"]))
            bar.update(len(shards[i]))
    return devices
