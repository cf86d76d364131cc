"""Checkpoints: safetensors weights + the resolved config beside them.

``ckpt/model.safetensors`` holds ``saved_keys`` of the model (all weights at full training,
the trained ones with LoRA; never the frozen codebook or affine map, which are reloaded from
the encoders stage). ``ckpt/config.yaml`` is the resolved config plus a ``checkpoint`` section
(run, seed, step, fraction), so ``load_trained(ckpt)`` rebuilds the model from it alone.
"""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from uvlm import UvlmError
from uvlm.config import Config, from_dict, to_dict
from uvlm.grid import Run, parse_run
from uvlm.model.unified import ModelContext, UnifiedVLM, build_model, saved_keys
from uvlm.utils import atomic_write, load_tensors, save_tensors


def save_weights(model: UnifiedVLM, path: Path, lora: bool,
                 state: dict[str, torch.Tensor] | None = None) -> None:
    """``saved_keys`` of ``state`` (default: the model's state dict). A sharded model's own
    state dict holds DTensors: this writes each process's shards (``uvlm.shard``)."""
    from uvlm.shard import local

    state = model.state_dict() if state is None else state
    out, seen = {}, set()
    for k in saved_keys(model, lora):
        t = local(state[k].detach())
        # tied weights share storage, which safetensors refuses: store a copy
        out[k] = t.clone() if t.data_ptr() in seen else t.contiguous()
        seen.add(t.data_ptr())
    save_tensors(path, out)


def load_weights(model: UnifiedVLM, path: Path, lora: bool) -> None:
    """Load a checkpoint; every expected key must be there with its shape."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint weights not found")
    tensors = load_tensors(path)
    state = model.state_dict()
    want = saved_keys(model, lora)
    missing = [k for k in want if k not in tensors]
    extra = sorted(set(tensors) - set(want))
    if missing or extra:
        key = (missing or extra)[0]
        raise UvlmError(f"{path}: key {key!r} is {'missing' if missing else 'unexpected'} "
                         f"({len(missing)} missing, {len(extra)} unexpected); does the "
                         f"checkpoint belong to this config and run?")
    for k in want:
        if tensors[k].shape != state[k].shape:
            raise UvlmError(f"{path}: key {k!r} has shape {tuple(tensors[k].shape)}, the "
                             f"model expects {tuple(state[k].shape)}")
    model.load_state_dict(tensors, strict=False)


def write_checkpoint(out: Path, model: UnifiedVLM, cfg: Config, run: Run, info: dict,
                     state: dict[str, torch.Tensor] | None = None) -> None:
    """``out/model.safetensors`` and ``out/config.yaml`` (config + ``checkpoint`` section);
    ``state``: the full state dict of a sharded model (``uvlm.shard.full_state``)."""
    save_weights(model, out / "model.safetensors", cfg.model.lora.enabled, state)
    with atomic_write(out / "config.yaml") as fh:
        yaml.safe_dump({**to_dict(cfg), "checkpoint": {"run": run.name, **info}}, fh,
                       sort_keys=False)


def read_checkpoint_config(ckpt: Path) -> tuple[Config, Run, dict]:
    path = Path(ckpt) / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint config not found")
    raw = yaml.safe_load(path.read_text())
    if not isinstance(raw, dict) or "checkpoint" not in raw:
        raise UvlmError(f"{path}: no 'checkpoint' section; not written by uvlm train")
    info = raw.pop("checkpoint")
    return from_dict(raw, str(path)), parse_run(info["run"]), info


def load_trained(ckpt: Path, ctx: ModelContext | None = None):
    """(model in eval mode, config, run, context) of a checkpoint directory.

    ``ctx`` defaults to the encoders stage's files of the checkpoint's config.
    """
    from uvlm.model.context import load_context

    cfg, run, _ = read_checkpoint_config(ckpt)
    ctx = load_context(cfg, run) if ctx is None else ctx
    torch.manual_seed(0)  # weights not in the file (a LoRA base) come from model.llm.path
    model = build_model(cfg, run, ctx)
    load_weights(model, Path(ckpt) / "model.safetensors", cfg.model.lora.enabled)
    return model.eval(), cfg, run, ctx
