""".npy files read from a runs folder or a cache, checked from their header before any data is read.

A ``.npy`` header states the array's shape and dtype; nothing stops it from claiming 500,000 x 1,024
beside a run of 3,600 prompts (a sparse file, or a file too short for its header). Loading that - or
memory-mapping it and projecting it - costs gigabytes and an hour. :func:`read_header` reads only the
header (``numpy.lib.format.read_magic`` / ``read_array_header_*``); :func:`check_header` compares it
with what the caller knows (the number of prompt ids the rows must match, the file's size) and raises a
one-line :class:`~balpm.errors.FeatureError` before any row is read. :func:`load` does both, then loads
(or memory-maps) the array, never with pickle.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from balpm.errors import FeatureError

#: the widest feature vector accepted (the largest LLM hidden size today is 16,384)
MAX_DIM = 65_536


@dataclass(frozen=True)
class NpyHeader:
    """What a ``.npy`` file's header says: ``shape``, ``dtype``, ``fortran_order``, the data ``offset`` and
    the file's actual ``file_size`` in bytes."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    offset: int
    file_size: int

    @property
    def data_bytes(self) -> int:
        """Bytes the header's shape and dtype need after the header."""
        return math.prod(self.shape) * self.dtype.itemsize


def read_header(path: str | Path, where: str | None = None) -> NpyHeader:
    """The header of the ``.npy`` file ``path`` (only the header is read); one-line FeatureError if it has none."""
    path = Path(path)
    where = where or path.name
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh, max_header_size=10_000)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh, max_header_size=10_000)
            else:  # pragma: no cover - read_magic already refuses other versions
                raise ValueError(f"unknown .npy version {version}")
            offset = fh.tell()
            size = os.fstat(fh.fileno()).st_size
    except OSError as exc:
        raise FeatureError(f"{where} unreadable ({exc.strerror or exc})") from None
    except (ValueError, SyntaxError, TypeError, EOFError) as exc:
        raise FeatureError(f"{where} is not a valid .npy file ({' '.join(str(exc).split())[:120]})") from None
    return NpyHeader(tuple(int(n) for n in shape), np.dtype(dtype), bool(fortran), int(offset), int(size))


def check_header(header: NpyHeader, where: str, *, rows: int | None = None, ndim: int | tuple[int, ...] = 2,
                 max_dim: int = MAX_DIM, fix: str = "re-run the run (or delete the file) to write it again") -> NpyHeader:
    """``header`` if it describes a float array of ``ndim`` dimensions with ``rows`` rows (when given), no
    dimension above ``max_dim`` but the first, and exactly as many data bytes as the file holds; else a
    one-line FeatureError naming ``where``, what the header claims and ``fix``."""
    ndims = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    claim = f"{where}: its header claims shape {header.shape} {header.dtype}"
    if header.dtype.hasobject or header.dtype.kind != "f":
        raise FeatureError(f"{claim}, not a float array; {fix}")
    if len(header.shape) not in ndims:
        raise FeatureError(f"{claim}, not {' or '.join(map(str, ndims))}-dimensional; {fix}")
    if any(n <= 0 for n in header.shape):
        raise FeatureError(f"{claim}, which is empty; {fix}")
    if rows is not None and header.shape[0] != rows:
        raise FeatureError(f"{claim} but there are {rows:,} ids for its rows; {fix}")
    if any(n > max_dim for n in header.shape[1:]):
        raise FeatureError(f"{claim}, wider than {max_dim:,} (the cap on a feature vector); {fix}")
    if header.offset + header.data_bytes != header.file_size:
        raise FeatureError(f"{claim} ({header.data_bytes:,} bytes of data) but the file holds "
                           f"{header.file_size - header.offset:,}; {fix}")
    return header


def load(path: str | Path, where: str | None = None, *, rows: int | None = None, ndim: int | tuple[int, ...] = 2,
         mmap: bool = False, fix: str = "re-run the run (or delete the file) to write it again") -> np.ndarray:
    """The array in ``path`` after :func:`check_header` (``mmap``: memory-mapped read-only); never pickled."""
    path = Path(path)
    where = where or path.name
    check_header(read_header(path, where), where, rows=rows, ndim=ndim, fix=fix)
    try:
        return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except OSError as exc:
        raise FeatureError(f"{where} unreadable ({exc.strerror or exc})") from None
    except (ValueError, EOFError) as exc:
        raise FeatureError(f"{where} unreadable ({' '.join(str(exc).split())[:120]})") from None
