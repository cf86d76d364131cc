"""Sharded training (ZeRO-2 / FSDP ``SHARD_GRAD_OP``) for ``uvlm.train``: FSDP2's
``fully_shard`` on the model, asked for by the accelerate launch config.

A launch config with ``distributed_type: FSDP`` and ``fsdp_config: {fsdp_version: 2,
fsdp_reshard_after_forward: false}`` (``workflow/accelerate/fsdp_shard_grad_op.yaml``) makes
``accelerate launch`` export ``ACCELERATE_USE_FSDP=true``, ``FSDP_VERSION=2`` and
``FSDP_RESHARD_AFTER_FORWARD=false``. ``uvlm.train`` then shards the model itself, the way
accelerate's own FSDP2 preparation does (``fully_shard`` on every decoder layer, then on the
whole model), and gives accelerate only the optimizer: weights, gradients and AdamW moments
live in 1/N shards on each of the N processes; the weights are gathered for the forward and
backward (``reshard_after_forward: false``, SHARD_GRAD_OP) and resharded after it.

Why not accelerate's ``prepare(model)``: on CPU processes accelerate ignores the FSDP
request (its state is ``MULTI_CPU``, a DDP over gloo), so that path could not be tested
without GPUs; FSDP2 itself runs on gloo. One code path serves both: the Accelerator is built
with the FSDP request hidden, so it is a plain multi-process accelerator on GPUs as on CPUs.

Gradient reduction is FSDP's reduce-scatter average over processes, the same mean as DDP's
all-reduce, so ``uvlm.train``'s loss scaling holds unchanged.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from uvlm.config import ConfigError


@dataclass(frozen=True)
class Sharding:
    reshard_after_forward: bool  # False: SHARD_GRAD_OP (ZeRO-2); True: FULL_SHARD (ZeRO-3)

    @property
    def name(self) -> str:
        return "FULL_SHARD" if self.reshard_after_forward else "SHARD_GRAD_OP"


def requested() -> Sharding | None:
    """The sharding ``accelerate launch`` was asked for (its FSDP environment), or None."""
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() != "true":
        return None
    version = os.environ.get("FSDP_VERSION", "1")
    if version != "2":
        raise ConfigError(f"accelerate launch config: fsdp_version {version}; uvlm train "
                          "shards with FSDP2, set fsdp_config.fsdp_version: 2")
    reshard = os.environ.get("FSDP_RESHARD_AFTER_FORWARD", "true").lower()
    if reshard not in ("true", "false"):
        raise ConfigError(f"accelerate launch config: fsdp_reshard_after_forward {reshard!r}; "
                          "FSDP2 takes true (FULL_SHARD) or false (SHARD_GRAD_OP)")
    return Sharding(reshard == "true")


@contextlib.contextmanager
def fsdp_hidden() -> Iterator[None]:
    """Build the Accelerator inside this: it must not prepare the model with FSDP itself."""
    saved = os.environ.pop("ACCELERATE_USE_FSDP", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["ACCELERATE_USE_FSDP"] = saved


def shard(model: torch.nn.Module, sharding: Sharding, device: torch.device) -> torch.nn.Module:
    """``fully_shard`` every transformer block of the LLM (its ``_no_split_modules``), then the
    whole model (embeddings, norm, adapters, image head), in place. Create the optimizer
    after this: the parameters become DTensors."""
    from torch.distributed.fsdp import fully_shard

    model.to(device)
    blocks = set(getattr(model.lm, "_no_split_modules", None) or ())
    if not blocks:
        raise ConfigError(f"{type(model.lm).__name__}: no _no_split_modules, so uvlm cannot "
                          "tell its transformer blocks to shard")
    for m in list(model.lm.modules()):
        if type(m).__name__ in blocks:
            fully_shard(m, reshard_after_forward=sharding.reshard_after_forward)
    fully_shard(model, reshard_after_forward=sharding.reshard_after_forward)
    return model


def full_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The whole state dict, gathered to the CPU of rank 0 (empty elsewhere); every process
    must call it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True,
                                                                cpu_offload=True))


def local(t: torch.Tensor) -> torch.Tensor:
    """This process's shard of a DTensor; any other tensor as it is."""
    from torch.distributed.tensor import DTensor

    return t.to_local() if isinstance(t, DTensor) else t


def like(shard: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """A shard read back from a file, as a DTensor sharded like ``param`` (if it is one)."""
    from torch.distributed.tensor import DTensor

    if not isinstance(param, DTensor):
        return shard
    return DTensor.from_local(shard.to(param.to_local().device), param.device_mesh,
                              param.placements, run_check=False, shape=param.shape,
                              stride=param.stride())
