"""Training precision: ``auto`` picks bf16 autocast only where the device runs it natively.

bf16 autocast is not faster everywhere. A CPU with AVX-512 BF16 (or AMX) multiplies bf16
matrices about 1.7x faster than fp32; a CPU without them emulates bf16 and runs it about
12x *slower* (measured with ``python -m uvlm bench-train``); CUDA devices since Ampere run it
natively. ``auto`` therefore resolves per device, and every job prints what it chose and why,
and records the choice in its provenance (results differ in the last bits between the two).
An explicit ``fp32`` or ``bf16`` in the config always wins.
"""

from __future__ import annotations

import platform
from typing import Literal

import torch

from uvlm.config import Precision


def cpu_bf16() -> tuple[bool, str]:
    """Does this CPU run bf16 matrix multiplies natively? (and which instruction set)"""
    cpu = torch.cpu  # private checks, present since torch 2.2; absent means "not known"
    if getattr(cpu, "_is_amx_tile_supported", lambda: False)():
        return True, "AMX"
    if getattr(cpu, "_is_avx512_bf16_supported", lambda: False)():
        return True, "AVX-512 BF16"
    return False, f"no AVX-512 BF16 or AMX ({torch.backends.cpu.get_cpu_capability()})"


def native_bf16(device: torch.device) -> tuple[bool, str]:
    """Whether ``device`` runs bf16 natively, with the reason in words."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return True, f"{name} supports bf16"
        return False, f"{name} has no native bf16"
    if device.type == "cpu":
        ok, why = cpu_bf16()
        return ok, f"CPU has {why}"
    return False, f"bf16 autocast not chosen automatically on {device.type}"


def resolve(requested: Precision, device: torch.device) -> tuple[Literal["fp32", "bf16"], str]:
    """The precision a job uses on ``device``, and why."""
    if requested != "auto":
        return requested, "set in the config"
    ok, why = native_bf16(device)
    return ("bf16" if ok else "fp32"), f"auto: {why}"


def announce(job: str, requested: Precision, device: torch.device,
             log=print) -> Literal["fp32", "bf16"]:
    """Resolve and print ``job: precision bf16 (auto: CPU has AVX-512 BF16)``."""
    used, why = resolve(requested, device)
    log(f"{job}: precision {used} ({why})")
    return used


def cpu_model() -> str:
    """The CPU's model name, for benchmarks and the README's times."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:  # not Linux
        pass
    return platform.processor() or platform.machine()
