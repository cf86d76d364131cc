"""Pieces shared by the encoder commands: the tiny training loops' warm-up and batches,
and writing a model folder atomically."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import torch

from uvlm.utils import file_mode

#: fraction of the steps spent on linear warm-up before the cosine decay
WARMUP = 0.05


def warmup_steps(steps: int) -> int:
    """The encoders' warm-up: ``WARMUP * steps`` rounded down, at least 1 (``uvlm.utils.lr_at``
    decays the rest by a cosine)."""
    return max(1, int(WARMUP * steps))


def index_batches(n: int, batch_size: int, steps: int, seed: int) -> Iterator[torch.Tensor]:
    """``steps`` batches of ``min(batch_size, n)`` indices: epochs of seeded permutations,
    dropping each epoch's incomplete last batch."""
    if n == 0:
        raise ValueError("no training examples")
    gen = torch.Generator().manual_seed(seed)
    b = min(batch_size, n)
    done = 0
    while done < steps:
        perm = torch.randperm(n, generator=gen)
        for start in range(0, n - b + 1, b):
            if done == steps:
                return
            yield perm[start:start + b]
            done += 1


@contextlib.contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a scratch folder next to ``path``; on success it replaces ``path``, so a crash
    never leaves a half-written model or tokenizer folder behind."""
    tmp = path.with_name(f".{path.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # library writers (save_pretrained's safetensors) create some files 0600; match open()
    for f in tmp.rglob("*"):
        if f.is_file():
            f.chmod(file_mode())
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)
