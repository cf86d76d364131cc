"""A job meant for a GPU stops at once, naming the job and the reason, where no CUDA device
is usable (uvlm.device); a launch config with use_cpu: true runs on the CPU on purpose."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from uvlm import device as dev
from uvlm.__main__ import main as uvlm
from uvlm.config import ConfigError, load

ROOT = Path(__file__).resolve().parents[1]
SMOKE = str(ROOT / "config" / "smoke.yaml")
GPU = "train.accelerate_config=workflow/accelerate/gpu.yaml"


@pytest.fixture
def cuda_build(monkeypatch):
    """A CUDA 13.0 torch build whose CUDA does not initialise; no driver unless a test says."""
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(dev, "nvidia_driver", lambda: None)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("ACCELERATE_USE_CPU", raising=False)


@pytest.mark.parametrize("accelerate, cuda", [("cpu.yaml", False), ("cpu2.yaml", False),
                                              ("gpu.yaml", True), ("multi_gpu.yaml", True),
                                              ("multi_gpu8.yaml", True)])
def test_the_launch_config_says_whether_a_job_wants_a_gpu(accelerate, cuda, monkeypatch,
                                                          tmp_path):
    monkeypatch.delenv("ACCELERATE_USE_CPU", raising=False)
    monkeypatch.chdir(tmp_path)  # a relative path is found in this checkout too
    cfg = load(SMOKE, [f"train.accelerate_config=workflow/accelerate/{accelerate}"])
    wants, why = dev.wants_cuda(cfg)
    assert wants is cuda and f"use_cpu: {str(not cuda).lower()}" in why
    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")  # `accelerate launch --cpu`
    assert dev.wants_cuda(cfg) == (False, "ACCELERATE_USE_CPU is set")


def test_a_missing_launch_config_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv("ACCELERATE_USE_CPU", raising=False)
    monkeypatch.chdir(tmp_path)
    cfg = load(SMOKE, ["train.accelerate_config=nope/gpu.yaml"])
    with pytest.raises(ConfigError, match="train.accelerate_config: file 'nope/gpu.yaml' not"):
        dev.wants_cuda(cfg)


def test_each_reason_is_named(cuda_build, monkeypatch):
    assert "no NVIDIA GPU or driver is visible" in dev.cuda_problem()
    assert "a CUDA 13.0 build" in dev.cuda_problem()

    monkeypatch.setattr(dev, "nvidia_driver", lambda: "535.104.05")
    said = dev.cuda_problem()
    assert "cannot use the NVIDIA driver 535.104.05" in said and "too old" in said
    assert "CUDA 13 needs >= 580" in said

    # the same case seen only through torch's warning (no /proc entry, e.g. a container)
    monkeypatch.setattr(dev, "nvidia_driver", lambda: None)

    def warns():
        warnings.warn("CUDA initialization: The NVIDIA driver on your system is too old "
                      "(found version 12020)", UserWarning, stacklevel=1)
        return False

    monkeypatch.setattr(torch.cuda, "is_available", warns)
    assert "too old for this build" in dev.cuda_problem()

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert dev.cuda_problem() == "CUDA_VISIBLE_DEVICES='-1' hides every GPU"

    monkeypatch.setattr(torch.version, "cuda", None)
    assert "is a build without CUDA (a CPU wheel)" in dev.cuda_problem()

    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert dev.cuda_problem() is None


def test_a_cpu_launch_config_runs_on_the_cpu_even_with_a_gpu(monkeypatch):
    monkeypatch.delenv("ACCELERATE_USE_CPU", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert dev.job_device(load(SMOKE), "train x seed 0") == torch.device("cpu")


LLAVA = str(ROOT / "config" / "llava.yaml")


@pytest.mark.parametrize("argv, job", [
    (["train", "--config", SMOKE, "--set", GPU, "--run", "vq-vq_mixed", "--seed", "0"],
     "train vq-vq_mixed seed 0"),
    (["evaluate", "--config", SMOKE, "--set", GPU, "--run", "vq-vq_mixed", "--seed", "1"],
     "evaluate vq-vq_mixed seed 1"),
    (["encoders-features", "--config", SMOKE, "--set", GPU, "--space", "vq", "--split", "test"],
     "encoders-features vq test"),
    (["encoders-siglip", "--config", SMOKE, "--set", GPU], "encoders-siglip"),
    (["encoders-vq", "--config", SMOKE, "--set", GPU], "encoders-vq"),
    (["llava-train", "--config", LLAVA, "--stage", "sft", "--run", "clip-clip_mixed",
      "--seed", "0"], "llava-train sft clip-clip_mixed seed 0"),
])
def test_gpu_jobs_stop_at_once_naming_job_and_reason(argv, job, cuda_build, tmp_path,
                                                     monkeypatch):
    monkeypatch.delenv("UVLM_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)  # no data, encoders or checkpoints: the check comes first
    with pytest.raises(SystemExit) as e:
        uvlm(argv)
    message = str(e.value.code)
    assert "\n" not in message
    assert message.startswith(f"uvlm {argv[0]}: error: {job}: needs a CUDA GPU (")
    assert "use_cpu: false), but no NVIDIA GPU or driver is visible" in message
    assert "--set train.accelerate_config=workflow/accelerate/cpu.yaml" in message
