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

import contextlib
import fcntl
import os
import shutil
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
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


CPU_HINT = ("give it a launch config with use_cpu: true "
            "(--set train.accelerate_config=workflow/accelerate/cpu.yaml)")


def require_cuda(job: str, why: str, cpu_hint: str = CPU_HINT) -> torch.device:
    """The CUDA device, or a one-line DeviceError naming ``job``, ``why`` it wants a GPU,
    what is missing and how to ask for the CPU instead."""
    problem = cuda_problem()
    if problem is not None:
        raise DeviceError(f"{job}: needs a CUDA GPU ({why}), but {problem}. To run it on the "
                          f"CPU on purpose, {cpu_hint}")
    return torch.device("cuda")


def job_device(cfg: Config, job: str) -> torch.device:
    """The device of ``job`` (e.g. ``train vq-vq_mixed seed 0``): the CPU if the config asks
    for it, else CUDA, checked now, before any data or weights are loaded."""
    cuda, why = wants_cuda(cfg)
    if not cuda:
        return torch.device("cpu")
    return require_cuda(job, why)


# ---------------------------------------------------------------------- one GPU per job

def nvidia_smi_count() -> int:
    """GPUs ``nvidia-smi -L`` lists (0 without it), counted without initialising CUDA."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return 0
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(line.startswith("GPU ") for line in out.stdout.splitlines())


def gpu_ids(count: Callable[[], int] = nvidia_smi_count) -> list[str]:
    """The GPUs a job may claim: the ids of ``CUDA_VISIBLE_DEVICES`` when it is set (up to
    the first invalid one, where CUDA stops), else 0 .. count()-1; the local profile counts
    them the same way (workflow/profiles/default)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return [str(i) for i in range(count())]
    ids = []
    for d in (d.strip() for d in visible.split(",")):
        if d == "" or d.startswith("-"):
            break
        ids.append(d)
    return ids


def lock_dir() -> Path:
    """``UVLM_GPU_LOCKS``, else ``/tmp/uvlm-gpu-locks``: one folder per machine, so that
    jobs of every config and checkout (and of every user) on it see each other's claims."""
    return Path(os.environ.get("UVLM_GPU_LOCKS") or Path(tempfile.gettempdir())
                / "uvlm-gpu-locks")


def _open_lock(path: Path):
    """The lock file for reading and writing; another user's, read-only (flock works on
    either)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:
        fd = os.open(path, os.O_RDONLY)
    return os.fdopen(fd, "r+" if os.access(path, os.W_OK) else "r")


@contextlib.contextmanager
def claim_gpu(job: str, count: Callable[[], int] = nvidia_smi_count,
              locks: Path | None = None, poll_s: float = 5.0, timeout_s: float | None = None,
              log: Callable[[str], None] = print) -> Iterator[str | None]:
    """Hold one free GPU while ``job`` runs, with ``CUDA_VISIBLE_DEVICES`` set to it.

    Each device has a lock file; the job takes the first whose ``flock`` it gets, and the
    kernel drops the lock when the process ends (``kill -9`` included), so a killed job never
    leaves a GPU claimed. With every GPU claimed it waits (saying so once), for at most
    ``timeout_s`` if given. Yields the claimed id, or None where nothing is claimed: no GPU
    is listed (the device check then says why), or a multi-process launcher (torchrun,
    ``accelerate launch`` with several processes) already gave each process its GPU. A
    process started by a job that holds a GPU (``UVLM_GPU_CLAIMED``, set with the claim)
    uses its parent's GPU.

    Must run before anything initialises CUDA: the driver reads ``CUDA_VISIBLE_DEVICES``
    once, at its first call (``uvlm.device`` counts GPUs with nvidia-smi for that reason).
    Under SLURM the lock names carry the job id: jobs that SLURM gave GPUs of their own on one
    node all see theirs as GPU 0, and must not wait for each other.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        log(f"{job}: {os.environ['WORLD_SIZE']} processes; each uses the GPU its launcher "
            f"gave it (no GPU claimed)")
        yield None
        return
    inherited = os.environ.get("UVLM_GPU_CLAIMED")
    if inherited is not None and inherited == os.environ.get("CUDA_VISIBLE_DEVICES"):
        # a process started by a job that holds a GPU would otherwise wait for its parent
        log(f"{job}: uses GPU {inherited}, claimed by the job that started it")
        yield inherited
        return
    ids = gpu_ids(count)
    if not ids:
        yield None
        return
    folder = lock_dir() if locks is None else locks
    if not folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):  # shared by every user, like /tmp itself
            folder.chmod(0o1777)
    scope = f"slurm{os.environ['SLURM_JOB_ID']}-" if os.environ.get("SLURM_JOB_ID") else ""
    start, said = time.monotonic(), False
    while True:
        holders = []
        for gid in ids:
            path = folder / f"{scope}gpu{gid}.lock"
            fh = _open_lock(path)
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                holders.append(f"GPU {gid}: {fh.read().strip() or 'a starting job'}")
                fh.close()
                continue
            with fh:
                if fh.writable():
                    fh.truncate(0)
                    fh.write(f"{job} (pid {os.getpid()} on {socket.gethostname()})\n")
                    fh.flush()
                before = {k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES",
                                                         "UVLM_GPU_CLAIMED")}
                os.environ["CUDA_VISIBLE_DEVICES"] = os.environ["UVLM_GPU_CLAIMED"] = gid
                log(f"{job}: claimed GPU {gid} ({path})")
                try:
                    yield gid
                finally:
                    for k, v in before.items():
                        if v is None:
                            os.environ.pop(k, None)
                        else:
                            os.environ[k] = v
                    if fh.writable():
                        fh.truncate(0)
            return
        waited = time.monotonic() - start
        if timeout_s is not None and waited >= timeout_s:
            raise DeviceError(f"{job}: no free GPU after {waited:.0f} s; "
                              + "; ".join(holders))
        if not said:
            log(f"{job}: all {len(ids)} GPUs are claimed ({'; '.join(holders)}); waiting")
            said = True
        time.sleep(poll_s)


@contextlib.contextmanager
def job_gpu(cfg: Config, job: str, count: Callable[[], int] = nvidia_smi_count,
            locks: Path | None = None) -> Iterator[torch.device]:
    """``job_device`` for the length of a job: a CUDA job first claims a free GPU
    (``claim_gpu``), then checks that CUDA works on it."""
    cuda, why = wants_cuda(cfg)
    if not cuda:
        yield torch.device("cpu")
        return
    with claim_gpu(job, count, locks):
        yield require_cuda(job, why)
