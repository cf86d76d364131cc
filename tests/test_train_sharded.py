"""Sharded training (FSDP2 SHARD_GRAD_OP, ``uvlm.shard``) on 2 CPU processes: the loss curve
of the unsharded 2-process run, sharded resume state, and a SIGKILL then restart gives the
uninterrupted run's weights."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
import yaml
from safetensors.torch import load_file

import test_train
from uvlm.config import ConfigError
from uvlm.shard import Sharding, requested

REPO = Path(__file__).resolve().parents[1]
RUN = "siglip-vq_mixed"


def raw_cfg() -> dict:
    """test_train's tiny config with 2 layers (a shard each); 16 images, 48 records: 72
    steps of 4 = 2 processes x 2 micro-batches of 1."""
    raw = test_train.raw_cfg(epochs=6.0, batch_size=4, micro_batch_size=1, checkpoints=8,
                             grad_clip=1.0)
    raw["model"]["llm"]["layers"] = 2
    return raw


def test_the_launch_environment_decides_the_sharding(monkeypatch):
    monkeypatch.delenv("ACCELERATE_USE_FSDP", raising=False)
    assert requested() is None
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_VERSION", "2")
    monkeypatch.setenv("FSDP_RESHARD_AFTER_FORWARD", "false")
    assert requested() == Sharding(False) and requested().name == "SHARD_GRAD_OP"
    monkeypatch.setenv("FSDP_VERSION", "1")
    with pytest.raises(ConfigError, match="uvlm train shards with FSDP2"):
        requested()


@pytest.mark.parametrize("name", ["fsdp_shard_grad_op.yaml", "fsdp_cpu2.yaml"])
def test_committed_fsdp_launch_configs(name):
    conf = yaml.safe_load((REPO / "workflow/accelerate" / name).read_text())
    assert conf["distributed_type"] == "FSDP"
    assert conf["fsdp_config"] == {"fsdp_version": 2, "fsdp_reshard_after_forward": False}
    assert conf["use_cpu"] == (name == "fsdp_cpu2.yaml")


def test_llava_stage_2_trains_sharded():
    from uvlm.config import load

    assert load(REPO / "config/llava.yaml").train.accelerate_config == \
        "workflow/accelerate/fsdp_shard_grad_op.yaml"


def _launch(tmp: Path, launch_config: str) -> subprocess.Popen:
    tmp.mkdir(exist_ok=True)
    (tmp / "cfg.yaml").write_text(yaml.safe_dump(raw_cfg()))
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(REPO / "workflow/accelerate" / launch_config), "-m", "uvlm", "train",
           "--config", "cfg.yaml", "--run", RUN, "--seed", "0", "--synthetic", "16",
           "--no-progress"]
    return subprocess.Popen(cmd, cwd=tmp, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(p: subprocess.Popen) -> str:
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 0, out
    return out


def _out(tmp: Path) -> Path:
    return tmp / "results/t/runs" / RUN / "seed0"


def _losses(tmp: Path) -> list[float]:
    return [json.loads(x)["loss"] for x in (_out(tmp) / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_sharded_training_matches_unsharded_and_resumes_after_sigkill(tmp_path):
    """Sharded (FSDP2 over gloo) vs unsharded (DDP over gloo), both 2 processes with 2
    accumulated micro-batches each and gradient clipping: the same loss curve to float
    rounding (FSDP's reduce-scatter and DDP's all-reduce add in another order; stated
    tolerance 1e-4 relative) and the same weights to 1e-4. Then a sharded run killed with
    SIGKILL after its first sharded state and started again ends with bitwise the weights and
    losses of the uninterrupted sharded run."""
    ddp, fsdp, killed = tmp_path / "ddp", tmp_path / "fsdp", tmp_path / "killed"
    # the uninterrupted runs, one after the other (2 cores)
    assert "sharded" not in _finish(_launch(ddp, "cpu2.yaml"))
    log = _finish(_launch(fsdp, "fsdp_cpu2.yaml"))
    assert "= 2 processes x 2 micro-batches x 1" in log
    assert "sharded (SHARD_GRAD_OP, FSDP2)" in log
    assert len(_losses(ddp)) == 72
    assert _losses(fsdp) == pytest.approx(_losses(ddp), rel=1e-4)
    wd = load_file(str(_out(ddp) / "ckpt08" / "model.safetensors"))
    wf = load_file(str(_out(fsdp) / "ckpt08" / "model.safetensors"))
    assert wd.keys() == wf.keys()
    for k in wd:  # full (gathered) weights, as the unsharded run writes them
        assert wf[k].shape == wd[k].shape and torch.allclose(wf[k], wd[k], atol=1e-4), k

    p = _launch(killed, "fsdp_cpu2.yaml")
    state = _out(killed) / "state"
    deadline = time.time() + 400
    while not (state / "latest.json").exists():
        assert p.poll() is None and time.time() < deadline, "run ended before its first state"
        time.sleep(0.005)
    # the launcher and its workers, which torchrun starts in sessions of their own
    for proc in [*psutil.Process(p.pid).children(recursive=True), psutil.Process(p.pid)]:
        os.kill(proc.pid, signal.SIGKILL)
    p.wait()
    assert not (_out(killed) / "ckpt08").exists(), "killed too late to test resuming"
    step = json.loads((state / "latest.json").read_text())
    assert step["sharded_over"] == 2
    names = sorted(f.name for f in (state / step["dir"]).iterdir())
    assert names == ["metrics.jsonl", "model-rank0-of2.safetensors",
                     "model-rank1-of2.safetensors", "optimizer-rank0-of2.safetensors",
                     "optimizer-rank1-of2.safetensors", "optimizer.json"]
    shards = [load_file(str(state / step["dir"] / f"model-rank{r}-of2.safetensors"))
              for r in (0, 1)]
    big = max(wf, key=lambda k: wf[k].numel())  # a weight split over the two processes
    assert shards[0][big].shape[0] + shards[1][big].shape[0] == wf[big].shape[0]

    log = _finish(_launch(killed, "fsdp_cpu2.yaml"))
    assert f"resuming at step {step['step']}" in log
    for k in range(1, 9):
        a = load_file(str(_out(fsdp) / f"ckpt{k:02d}" / "model.safetensors"))
        b = load_file(str(_out(killed) / f"ckpt{k:02d}" / "model.safetensors"))
        assert all(torch.equal(a[n], b[n]) for n in a), f"ckpt{k:02d} differs"
    assert _losses(killed) == _losses(fsdp)
    assert not state.exists()
