"""One tensor of a safetensors file, read row by row: what a training batch needs, no more.

A safetensors file is an 8-byte little-endian header length, a JSON header giving each
tensor's dtype, shape and byte range, then the raw little-endian data. ``FeatureFile`` parses
the header (no pickle, no data loaded) and ``f[rows]`` reads those rows with positional
reads (``os.preadv``, consecutive rows in one call) into a fresh array, returned as float32
(features) or int64 (codes). The file's pages stay in the kernel's page cache, shared by
every process that reads the file, and a process holds only the rows it gathered.

Why not ``numpy.memmap``: a mapped page counts in the RSS of each process that touched it,
and on this machine's kernel (6.18) a fault maps the page cache's whole large folio, up to
2 MiB around a touched 8 KiB row; gathering 160 random rows of a 125 MiB bf16 file raised
RSS by ~120 MiB, and one epoch maps the whole file into every process. Schedulers that sum
their processes' RSS (SLURM's jobacct_gather) would count it once per process.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from uvlm import UvlmError

#: safetensors dtype -> (numpy dtype of the raw bytes, torch dtype they mean)
_DTYPES = {
    "BF16": ("<u2", torch.bfloat16),  # numpy has no bfloat16: read the bits, view them
    "F16": ("<f2", torch.float16),
    "F32": ("<f4", torch.float32),
    "I64": ("<i8", torch.int64),
}


class FeatureFile:
    """Tensor ``key`` of the safetensors file ``path``, read lazily.

    ``shape``, ``dtype`` (the stored one) and ``metadata`` come from the header; ``f[rows]``
    (an index tensor or array, a list, an int or a slice) reads those rows as float32
    (floating dtypes) or int64. The file stays open: a rebuild that replaces it (an atomic
    rename) does not change what this object reads.
    """

    def __init__(self, path: str | Path, key: str):
        self.path, self.key = Path(path), key
        self._fh = open(self.path, "rb", buffering=0)  # noqa: SIM115 - closed in close()
        try:
            self._parse(key)
        except BaseException:
            self.close()
            raise

    def _parse(self, key: str) -> None:
        size = os.fstat(self._fh.fileno()).st_size
        try:
            n = int.from_bytes(self._fh.read(8), "little")
            if not 0 < n <= size - 8:
                raise ValueError(f"header length {n} in a file of {size} bytes")
            header = json.loads(self._fh.read(n))
        except (ValueError, UnicodeDecodeError) as e:
            raise UvlmError(f"{self.path}: not a readable safetensors file, truncated or "
                            f"corrupt ({e}); rebuild it") from None
        if key not in header:
            names = ", ".join(k for k in header if k != "__metadata__")
            raise KeyError(f"{self.path}: no tensor {key!r} (has {names})")
        info = header[key]
        if info["dtype"] not in _DTYPES:
            raise UvlmError(f"{self.path}: tensor {key!r} is {info['dtype']}; features are "
                            f"stored as {', '.join(_DTYPES)}")
        self._raw, self.dtype = np.dtype(_DTYPES[info["dtype"]][0]), _DTYPES[info["dtype"]][1]
        self.shape = torch.Size(info["shape"])
        start, end = info["data_offsets"]
        if end - start != self.shape.numel() * self._raw.itemsize or 8 + n + end > size:
            raise UvlmError(f"{self.path}: tensor {key!r} {tuple(self.shape)} does not fit "
                            f"its bytes {start}..{end} of a {size}-byte file; truncated or "
                            "corrupt, rebuild it")
        self.metadata: dict[str, str] = header.get("__metadata__", {})
        self._data = 8 + n + start  # file offset of row 0
        self._row_bytes = (self.shape[1:].numel() if len(self.shape) else 1) * \
            self._raw.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows) -> torch.Tensor:
        if isinstance(rows, torch.Tensor):
            rows = rows.numpy()
        # the rows numpy would pick from an array of this length, as int64 ids
        idx = np.arange(len(self))[rows] if isinstance(rows, slice | int) else \
            np.asarray(rows, dtype=np.int64)
        one = idx.ndim == 0
        idx = idx.reshape(-1)
        if len(idx) and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"{self.path}: row {int(idx.max())} of {len(self)}")
        uniq, inverse = np.unique(idx % max(len(self), 1), return_inverse=True)
        buf = np.empty((len(uniq), *self.shape[1:]), self._raw)
        cuts = [0, *(np.flatnonzero(np.diff(uniq) != 1) + 1).tolist(), len(uniq)]
        for a, b in zip(cuts[:-1], cuts[1:], strict=False):  # a run of consecutive rows
            if a < b:
                self._read(memoryview(buf[a:b]).cast("B"), self._data + int(uniq[a]) *
                           self._row_bytes)
        t = torch.from_numpy(buf[inverse.reshape(-1)])
        if self.dtype == torch.bfloat16:
            t = t.view(torch.bfloat16)
        t = t.float() if t.is_floating_point() else t
        return t[0] if one else t

    def _read(self, view: memoryview, offset: int) -> None:
        done = 0
        while done < len(view):  # one call reads at most ~2 GiB on Linux
            got = os.preadv(self._fh.fileno(), [view[done:]], offset + done)
            if not got:
                raise UvlmError(f"{self.path}: ends before the rows of {self.key!r}; "
                                "truncated, rebuild it")
            done += got

    def load(self) -> torch.Tensor:
        """Every row (``f[:]``), in one read."""
        return self[:]

    def close(self) -> None:
        self._fh.close()

    def __del__(self):
        fh = getattr(self, "_fh", None)
        if fh is not None:
            fh.close()
