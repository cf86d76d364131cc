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


# ---------------------------------------------------------------------- one GPU per job

CLAIMS = ("CUDA_VISIBLE_DEVICES", "WORLD_SIZE", "SLURM_JOB_ID", "UVLM_GPU_CLAIMED")

HOLD_GPU = """
import sys, time
from pathlib import Path
from uvlm.device import claim_gpu
with claim_gpu(sys.argv[1], count=lambda: int(sys.argv[2]), locks=Path(sys.argv[3]),
               log=lambda _: None) as gid:
    print(gid, flush=True)
    time.sleep(120)
"""


@pytest.fixture
def gpus(tmp_path, monkeypatch):
    """A machine with a fake number of GPUs and lock files in tmp_path: ``gpus.claim(job,
    n)`` claims one of n here, ``gpus.hold(job, n)`` in another process (each job is its own
    process); nothing of the real machine's GPUs or SLURM job is seen."""
    import subprocess
    import sys
    from types import SimpleNamespace

    for name in CLAIMS:
        monkeypatch.delenv(name, raising=False)
    locks, holders = tmp_path / "locks", []

    def claim(job: str, n: int, **kw):
        return dev.claim_gpu(job, count=lambda: n, locks=locks, log=lambda _: None, **kw)

    def hold(job: str, n: int, **env):
        p = subprocess.Popen([sys.executable, "-c", HOLD_GPU, job, str(n), str(locks)],
                             stdout=subprocess.PIPE, text=True, env={**dev.os.environ, **env})
        holders.append(p)
        return p, p.stdout.readline().strip()

    yield SimpleNamespace(claim=claim, hold=hold, locks=locks)
    for p in holders:
        p.kill()
        p.wait()
        p.stdout.close()


def test_each_job_claims_a_free_gpu_and_sees_only_it(gpus):
    (_, a), (b, b_gpu) = gpus.hold("a", 2), gpus.hold("b", 2)
    assert (a, b_gpu) == ("0", "1")
    with pytest.raises(dev.DeviceError, match=r"c: no free GPU after 0 s; GPU 0: a \(pid \d+ "
                                              r"on .*\); GPU 1: b \(pid"):
        with gpus.claim("c", 2, timeout_s=0):
            pass
    b.kill()  # kill -9: the kernel drops its lock
    b.wait()
    with gpus.claim("c", 2) as c:
        assert c == "1" and dev.os.environ["CUDA_VISIBLE_DEVICES"] == "1"
    assert not any(k in dev.os.environ for k in CLAIMS)  # restored on the way out
    assert sorted(p.name for p in gpus.locks.iterdir()) == ["gpu0.lock", "gpu1.lock"]


def test_the_visible_devices_are_the_ones_claimed(gpus, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3,-1,4")  # CUDA stops at the invalid id
    assert gpus.hold("a", 8)[1] == "2"
    assert gpus.hold("b", 8)[1] == "3"
    with pytest.raises(dev.DeviceError, match="GPU 2: a .*; GPU 3: b"), \
            gpus.claim("c", 8, timeout_s=0):
        pass  # the count (8) plays no part: only 2 and 3 are visible
    assert dev.os.environ["CUDA_VISIBLE_DEVICES"] == "2,3,-1,4"


def test_a_process_started_by_a_job_uses_its_gpu(gpus):
    said = []
    with gpus.claim("a", 2) as a:
        with dev.claim_gpu("child", count=lambda: 2, locks=gpus.locks, timeout_s=0,
                           log=said.append) as child:
            assert child == a == "0"
    assert said == ["child: uses GPU 0, claimed by the job that started it"]


def test_nothing_is_claimed_without_gpus_or_under_a_multi_process_launcher(gpus, monkeypatch):
    with gpus.claim("a", 0) as a:
        assert a is None and "CUDA_VISIBLE_DEVICES" not in dev.os.environ
    monkeypatch.setenv("WORLD_SIZE", "2")  # torchrun gave each process its GPU
    with gpus.claim("a", 2) as a:
        assert a is None and "CUDA_VISIBLE_DEVICES" not in dev.os.environ
    assert not gpus.locks.exists()


def test_slurm_jobs_on_one_node_do_not_wait_for_each_other(gpus, monkeypatch):
    assert gpus.hold("a", 1, SLURM_JOB_ID="41")[1] == "0"
    monkeypatch.setenv("SLURM_JOB_ID", "42")  # its own GPU, also seen as GPU 0
    with gpus.claim("b", 1, timeout_s=0) as b:
        assert b == "0"
    assert sorted(p.name for p in gpus.locks.iterdir()) == ["slurm41-gpu0.lock",
                                                            "slurm42-gpu0.lock"]


def test_a_waiting_job_takes_the_gpu_a_killed_job_frees(gpus):
    import threading

    holder, _ = gpus.hold("holder", 1)
    said = []
    threading.Timer(0.5, holder.kill).start()  # kill -9 while the next job waits
    with dev.claim_gpu("a", count=lambda: 1, locks=gpus.locks, poll_s=0.05, timeout_s=60,
                       log=said.append) as a:
        assert a == "0"
    assert said[0] == (f"a: all 1 GPUs are claimed (GPU 0: holder (pid {holder.pid} on "
                       f"{dev.socket.gethostname()})); waiting")
    assert said[1].startswith("a: claimed GPU 0 (") and len(said) == 2


def test_a_gpu_job_claims_before_it_checks_cuda_and_a_cpu_job_claims_nothing(gpus, tmp_path,
                                                                            monkeypatch):
    monkeypatch.delenv("ACCELERATE_USE_CPU", raising=False)
    seen = []

    def is_available():  # CUDA initialises after the claim, on the claimed GPU
        seen.append(dev.os.environ.get("CUDA_VISIBLE_DEVICES"))
        return True

    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(torch.cuda, "is_available", is_available)
    gpus.hold("other", 3)
    with dev.job_gpu(load(SMOKE, [GPU]), "train x seed 0", count=lambda: 3,
                     locks=gpus.locks) as device:
        assert device == torch.device("cuda") and seen == ["1"]
    with dev.job_gpu(load(SMOKE), "train x seed 0", count=lambda: 3,
                     locks=tmp_path / "cpu-locks") as device:
        assert device == torch.device("cpu")
    assert not (tmp_path / "cpu-locks").exists()
