"""Small shared helpers: atomic writes, safetensors and JSON I/O, seeded random streams,
Markdown tables.

Every writer here leaves the old file (or nothing) on any error, creates files with the mode
a plain ``open()`` would (0666 minus the umask, so shared group folders work), and names the
file in its errors (a full disk says which file it could not write).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: the Snakefile imports this module while it plans
    import numpy as np

from uvlm import UvlmError


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w") -> Iterator[Any]:
    """Open a temporary file next to ``path`` and rename it over ``path`` on success.

    A crash or exception leaves the old file (or nothing) in place, never a half-written one.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise OSError(f"cannot write {path}: {e.strerror}") from e
    try:
        with _naming(path), os.fdopen(fd, mode) as fh:
            yield fh
        os.chmod(tmp, file_mode())  # mkstemp creates 0600; match a plain open()
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to hand to a library writer; rename it over ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
    try:
        with _naming(path):
            yield tmp
        # some writers (safetensors) create their files 0600; match a plain open()
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _naming(path: Path) -> Iterator[None]:
    """An OSError without a file name (a write on a full disk: ENOSPC) gets ``path``'s."""
    try:
        yield
    except OSError as e:
        if e.errno is None or e.filename is not None:  # already says what it is about
            raise
        raise OSError(e.errno, f"cannot write {path}: {e.strerror}") from e


def save_tensors(path: str | Path, tensors: dict, metadata: dict[str, str] | None = None):
    """Write a safetensors file atomically, byte-identical for the same tensors and metadata.

    safetensors serialises ``metadata`` from a Rust HashMap, whose order changes from one
    process to the next (another sha256 for DVC on every rebuild), so the header is rewritten
    with sorted keys: the same length, and the data offsets count from its end, so the data
    stays where it is.
    """
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    path = Path(path)
    with atomic_path(path) as tmp:
        try:
            save_file(tensors, str(tmp), metadata=metadata)
        except SafetensorError as e:  # its I/O errors name its own scratch file
            raise OSError(f"cannot write {path}: {e}") from None
        with open(tmp, "r+b") as fh:
            n = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(n))
            canonical = json.dumps(header, sort_keys=True, separators=(",", ":"),
                                   ensure_ascii=False).encode()
            if len(canonical) > n:  # pragma: no cover - same content, never longer
                raise RuntimeError(f"{path}: sorted safetensors header grew")
            fh.seek(8)
            fh.write(canonical.ljust(n))  # safetensors pads its header with spaces too


def load_tensors(path: str | Path) -> dict:
    """All tensors of a safetensors file; a missing, truncated or corrupt file is named."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise UvlmError(f"{path}: not a readable safetensors file, truncated or corrupt "
                        f"({e}); rebuild it") from None


def file_mode() -> int:
    """The mode ``open()`` gives a new file: 0666 minus the umask."""
    mask = os.umask(0)  # the only way to read it is to set it
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def run_lock(directory: str | Path) -> Iterator[None]:
    """Hold ``directory/trainer.lock`` while training into ``directory``.

    Two trainers on one run directory resume from the same state and delete each other's
    files (an orphaned trainer left by a killed Snakemake, and the rerun's). The second one
    refuses, naming the holder. The kernel drops the lock when its process dies, kill -9
    included, so a crash never leaves a stale lock.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "trainer.lock"
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "a process that has not written its name yet"
            raise UvlmError(f"{directory}: another trainer ({holder}) is training this run; "
                            f"wait for it to finish or stop it, then start again") from None
        fh.truncate(0)
        fh.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        fh.flush()
        yield
        fh.truncate(0)  # a finished run leaves an empty lock: rebuilds stay byte-identical


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_write(path) as fh:
        json.dump(obj, fh, indent=1, sort_keys=True)
        fh.write("\n")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UvlmError(f"{path}: not valid JSON ({e})") from None


def stream_seed(seed: int, *names: str | int) -> int:
    """A 63-bit seed derived from the config seed and stream names.

    Independent random streams (e.g. ``("data", "train", 17)``) never share state, so adding
    one consumer never changes another's numbers.
    """
    h = hashlib.sha256(json.dumps([seed, *names]).encode()).digest()
    return int.from_bytes(h[:8], "little") >> 1


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    """The learning rate of every training loop: linear warmup over ``warmup`` steps (to
    ``peak`` at step ``warmup - 1``), then cosine decay to 0 at ``total``. Each loop rounds
    its own warmup fraction into ``warmup``: ``uvlm.train`` ceil(train.warmup_ratio x
    total), the encoders ``uvlm.encoders.common.warmup_steps``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))


def rng(seed: int, *names: str | int) -> np.random.Generator:
    import numpy as np

    return np.random.default_rng(stream_seed(seed, *names))


def markdown_table(columns, rows, keys: int | None = None) -> list[str]:
    """The lines of a Markdown table: the one writer of every table the package prints
    (the paper tables, ``findings.md``, the timing summary).

    The first ``keys`` columns are left-aligned labels and the rest right-aligned numbers;
    ``keys=None`` leaves every column at the renderer's default. A ``|`` inside a cell is
    escaped so it cannot split the cell.
    """
    def row(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    columns = list(columns)
    n = len(columns) if keys is None else keys
    align = ["---"] * n + ["--:"] * (len(columns) - n)
    return [row(columns), row(align), *(row(r) for r in rows)]
