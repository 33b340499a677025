"""A content-addressed feature cache: ``<root>/<key[:2]>/<key>.npy`` (float32) + ``<key>.json`` (manifest).

The key is the SHA-256 of everything that decides the features (model and revision, pooling, max
length, dtype, quantisation, templates, the texts in order). Writes are atomic (temporary file in the
same folder, then ``os.replace``; the manifest is written last and commits the entry). A read checks the
manifest, the array's dtype and shape, its SHA-256 and finiteness: any mismatch means the entry is
recomputed, never used. A read returns a read-only memory map of the ``.npy`` (pages are read as they
are used), so entries larger than RAM load.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from balpm import npy_files
from balpm.errors import FeatureError

log = logging.getLogger("balpm.features")

CACHE_FORMAT = "balpm-features/1"


def cache_key(identity: dict[str, Any]) -> str:
    """SHA-256 hex of the canonical JSON of ``identity`` (plus the cache format)."""
    blob = json.dumps({"format": CACHE_FORMAT, **identity}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def array_sha256(array: np.ndarray) -> str:
    """SHA-256 hex of an array's dtype, shape and C-ordered bytes."""
    arr = np.ascontiguousarray(array)
    digest = hashlib.sha256(f"{arr.dtype.str}{arr.shape}".encode())
    digest.update(arr.data)
    return digest.hexdigest()


def _all_finite(array: np.ndarray, rows: int = 4096) -> bool:
    """``np.isfinite(array).all()`` in blocks of rows (no full-size boolean temporary for a mapped array)."""
    return all(bool(np.isfinite(array[s:s + rows]).all()) for s in range(0, max(len(array), 1), rows))


def _atomic_write(path: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class FeatureCache:
    """A folder of cached feature arrays addressed by :func:`cache_key`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()

    def paths(self, key: str) -> tuple[Path, Path]:
        """(array path, manifest path) of an entry."""
        folder = self.root / key[:2]
        return folder / f"{key}.npy", folder / f"{key}.json"

    def ensure_writable(self) -> None:
        """Create the root folder; one-line :class:`FeatureError` when it cannot be written."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".probe.", delete=True):
                pass
        except OSError as exc:
            raise FeatureError(f"cannot write the feature cache at {self.root} ({exc.strerror or exc}); "
                               "pass --cache-dir with a writable folder") from None

    def load(self, key: str, rows: int | None = None) -> tuple[np.ndarray, dict[str, Any]] | None:
        """The cached array and manifest, or None when absent or damaged (a damaged entry is logged).

        ``rows``: the number of texts the entry holds vectors for (the product of all but the last
        dimension: ``(T, D)`` or ``(N, 2, D)`` with ``2N = T``). The ``.npy`` header's shape is checked
        against it, the manifest and the file's size before the array is mapped (a header that claims
        500,000 x 1,024 beside a small table is a damaged entry, not gigabytes to page in).
        """
        npy, manifest_path = self.paths(key)
        if not manifest_path.is_file():
            return None
        try:
            manifest = json.loads(manifest_path.read_text())
            header = npy_files.check_header(npy_files.read_header(npy), npy.name, ndim=(2, 3))
            if rows is not None and math.prod(header.shape[:-1]) != rows:
                raise ValueError(f"header shape {list(header.shape)} does not hold {rows} texts")
            if list(header.shape) != list(manifest.get("shape", [])):
                raise ValueError(f"header shape {list(header.shape)} differs from the manifest's {manifest.get('shape')}")
            # memory-mapped, read-only: a 1M-pair x 4,096 entry (33 GB) is paged in as it is read, never copied
            array = np.load(npy, allow_pickle=False, mmap_mode="r")
        except (OSError, ValueError, EOFError, AttributeError, FeatureError) as exc:
            log.warning("feature cache entry %s is unreadable (%s); recomputing", key[:12], exc)
            return None
        problem = None
        if manifest.get("key") != key or manifest.get("format") != CACHE_FORMAT:
            problem = "manifest key/format mismatch"
        elif array.dtype != np.float32:
            problem = f"dtype {array.dtype} is not float32"
        elif list(array.shape) != list(manifest.get("shape", [])):
            problem = f"shape {list(array.shape)} differs from the manifest's {manifest.get('shape')}"
        elif array_sha256(array) != manifest.get("array_sha256"):
            problem = "array checksum differs from the manifest"
        elif not _all_finite(array):
            problem = "array holds NaN/inf"
        if problem:
            log.warning("feature cache entry %s is damaged (%s); recomputing", key[:12], problem)
            return None
        return array, manifest

    def save(self, key: str, array: np.ndarray, manifest: dict[str, Any]) -> dict[str, Any]:
        """Write an entry atomically (array first, manifest last); returns the stored manifest."""
        array = np.ascontiguousarray(array, dtype=np.float32)
        stored = {**manifest, "format": CACHE_FORMAT, "key": key, "shape": list(array.shape),
                  "array_dtype": "float32", "array_sha256": array_sha256(array)}
        npy, manifest_path = self.paths(key)
        try:
            npy.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(npy, lambda fh: np.save(fh, array, allow_pickle=False))
            text = json.dumps(stored, indent=2, sort_keys=True, ensure_ascii=False)
            _atomic_write(manifest_path, lambda fh: fh.write(text.encode()))
        except OSError as exc:
            raise FeatureError(f"cannot write the feature cache at {self.root} ({exc.strerror or exc}); "
                               "pass --cache-dir with a writable folder") from None
        return stored
