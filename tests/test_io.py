"""The shared writers and readers: same bytes every time, the umask's mode, errors that name
the file."""

import errno
import os
import subprocess
import sys

import pytest
import torch

from uvlm import UvlmError, paths
from uvlm.config import load
from uvlm.encoders import load_features
from uvlm.utils import atomic_path, atomic_write, load_tensors, save_tensors

METADATA = {k: f"value {k}" for k in ("space", "split", "config_hash", "a", "b", "c", "d")}
WRITE = """
import sys, torch
from uvlm.utils import save_tensors
save_tensors(sys.argv[1], {"x": torch.arange(6.0), "codes": torch.arange(4)},
             metadata={k: f"value {k}" for k in sys.argv[2:]})
"""


def test_safetensors_files_are_byte_identical_across_processes(tmp_path):
    # safetensors orders the metadata as a per-process random HashMap
    for name in ("a", "b"):
        subprocess.run([sys.executable, "-c", WRITE, str(tmp_path / name), *METADATA],
                       check=True)
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()
    tensors = load_tensors(tmp_path / "a")
    assert torch.equal(tensors["x"], torch.arange(6.0))
    assert torch.equal(tensors["codes"], torch.arange(4))


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_outputs_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        save_tensors(tmp_path / "t.safetensors", {"x": torch.zeros(2)})
        with atomic_write(tmp_path / "t.json") as fh:
            fh.write("{}")
        with atomic_path(tmp_path / "t.bin") as tmp, open(tmp, "w") as fh:
            fh.write("x")
    finally:
        os.umask(old)
    for name in ("t.safetensors", "t.json", "t.bin"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def test_a_full_disk_names_the_file(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(OSError, match=f"cannot write {target}: No space left") as e:
        with atomic_write(target):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert e.value.errno == errno.ENOSPC
    assert not target.exists() and list(tmp_path.iterdir()) == []  # nothing half-written
    with pytest.raises(OSError, match=f"cannot write {target}: No space left"):
        with atomic_path(target):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_truncated_features_file_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text("name: c\n")
    cfg = load(tmp_path / "c.yaml")
    path = paths.features_file(cfg, "vq", "train")
    save_tensors(path, {"codes": torch.zeros(4, 3, dtype=torch.int64)})
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(UvlmError, match=f"{path}: not a readable safetensors file, truncated"):
        load_features(cfg, "vq", "train")
