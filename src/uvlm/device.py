"""Where a job runs: a job meant for a GPU stops at once when no CUDA device is usable.

One rule for every command that runs a model (``train``, ``llava-train``, ``encoders-siglip``
and ``encoders-vq`` training, ``encoders-features``, ``evaluate``, ``lmms-eval``): the
config's ``train.accelerate_config`` decides. ``use_cpu: true`` (``workflow/accelerate/
cpu.yaml``, ``cpu2.yaml``) asks for the CPU on purpose, even where a GPU is present; any
other launch config (``gpu.yaml``, the default, and ``multi_gpu*.yaml``) asks for a CUDA
device. Without this check, torch's ``cuda.is_available()`` being False (a CPU wheel, no
driver, a driver too old for the wheel's CUDA) made a paper-scale job train a 7B model on the
CPU for days instead of failing in its first second.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
import yaml

from uvlm import UvlmError
from uvlm.config import Config, ConfigError

#: the oldest Linux driver each CUDA major version runs on (NVIDIA's CUDA toolkit release
#: notes, "minor version compatibility"); named in the driver-too-old message
MIN_DRIVER = {11: "450.80.02", 12: "525.60.13", 13: "580"}

#: the committed launch configs live in this checkout (src/uvlm/ -> the repository root)
CHECKOUT = Path(__file__).resolve().parents[2]


class DeviceError(UvlmError):
    """A job meant for a GPU found no usable CUDA device."""


def accelerate_path(cfg: Config) -> Path:
    """``train.accelerate_config``, relative to the working directory (the workflow's root),
    else to this checkout, so a command run from another folder (a test, a scratch
    directory) still reads the committed ``workflow/accelerate/`` files."""
    path = Path(cfg.train.accelerate_config)
    for candidate in (path, CHECKOUT / path):
        if candidate.is_file():
            return candidate
    raise ConfigError(f"train.accelerate_config: file {str(path)!r} not found (relative paths "
                      f"start at {Path.cwd()}, then at {CHECKOUT})")


def wants_cuda(cfg: Config) -> tuple[bool, str]:
    """Is the config's job meant for a CUDA GPU? (and what says so, in words)"""
    # `accelerate launch --cpu` (or a launch config with use_cpu: true) exports this
    if os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes"):
        return False, "ACCELERATE_USE_CPU is set"
    path = accelerate_path(cfg)
    try:
        conf = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"train.accelerate_config: {path} is not valid YAML ({e})") from None
    if conf.get("use_cpu", False):
        return False, f"{cfg.train.accelerate_config} has use_cpu: true"
    return True, f"{cfg.train.accelerate_config} has use_cpu: false"


def nvidia_driver() -> str | None:
    """The loaded NVIDIA kernel driver's version, or None (no driver, or not Linux)."""
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
    except OSError:
        return None
    # its first line names the version after the words "Kernel Module"
    words = text.split("Kernel Module", 1)[-1].split()
    return words[0] if words else "of unknown version"


def _hides_every_gpu(visible: str) -> bool:
    """CUDA stops at the first invalid id: "" and "-1" hide every GPU."""
    first = visible.split(",")[0].strip()
    return first == "" or first.startswith("-")


def cuda_problem() -> str | None:
    """Why no CUDA device is usable here, in words; None when one is.

    The driver-too-old case: torch's CUDA build cannot initialise although an NVIDIA kernel
    driver is loaded (``/proc/driver/nvidia/version`` exists) or torch's warning names the
    driver. torch reports that case only as ``cuda.is_available()`` False plus a warning.
    """
    build = torch.version.cuda
    if build is None:
        return (f"torch {torch.__version__} is a build without CUDA (a CPU wheel); install a "
                f"CUDA build (README, 'Installing torch')")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if torch.cuda.is_available():
            return None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and _hides_every_gpu(visible):
        return f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU"
    driver = nvidia_driver()
    said = [str(w.message) for w in caught if "too old" in str(w.message).lower()]
    if driver is not None or said:
        need = MIN_DRIVER.get(int(build.split(".")[0]))
        return (f"torch {torch.__version__} (a CUDA {build} build) cannot use the NVIDIA "
                f"driver{' ' + driver if driver else ''}: it is loaded but CUDA does not "
                f"initialise, so the driver is too old for this build"
                + (f" (CUDA {build.split('.')[0]} needs >= {need})" if need else "")
                + " or not working; update the driver or install a torch wheel of an older "
                  "CUDA (README, 'Installing torch')")
    return (f"no NVIDIA GPU or driver is visible (torch {torch.__version__} is a CUDA {build} "
            f"build; /proc/driver/nvidia/version is missing)")


def require_cuda(job: str, why: str) -> torch.device:
    """The CUDA device, or a one-line DeviceError naming ``job``, ``why`` it wants a GPU
    and what is missing."""
    problem = cuda_problem()
    if problem is not None:
        raise DeviceError(f"{job}: needs a CUDA GPU ({why}), but {problem}. To run it on the "
                          f"CPU on purpose, give it a launch config with use_cpu: true "
                          f"(--set train.accelerate_config=workflow/accelerate/cpu.yaml)")
    return torch.device("cuda")


def job_device(cfg: Config, job: str) -> torch.device:
    """The device of ``job`` (e.g. ``train vq-vq_mixed seed 0``): the CPU if the config asks
    for it, else CUDA, checked now, before any data or weights are loaded."""
    cuda, why = wants_cuda(cfg)
    if not cuda:
        return torch.device("cpu")
    return require_cuda(job, why)
