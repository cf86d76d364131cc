"""Checkpoints: safetensors weights + the resolved config beside them.

``ckpt/model.safetensors`` holds ``saved_keys`` of the model (all weights at full training,
the trained ones with LoRA; never the frozen codebook or affine map, which are reloaded from
the encoders stage), in ``train.checkpoint_dtype``. ``ckpt/config.yaml`` is the resolved
config plus a ``checkpoint`` section (run, seed, step, fraction), so ``load_trained(ckpt)``
rebuilds the model from it alone.

The resume state of a training job lives here too: ``save_state`` / ``load_state`` (weights,
AdamW moments, step) and the hard links that keep its checkpoints (``keep_checkpoint``,
``restore_checkpoints``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
import yaml

from uvlm import UvlmError, paths
from uvlm.config import Config, ConfigError, from_dict, to_dict
from uvlm.grid import Run, parse_run
from uvlm.model.unified import ModelContext, UnifiedVLM, build_model, saved_keys
from uvlm.utils import atomic_write, load_tensors, read_json, save_tensors, write_json


def save_weights(model: UnifiedVLM, path: Path, lora: bool,
                 state: dict[str, torch.Tensor] | None = None,
                 dtype: torch.dtype | None = None) -> None:
    """``saved_keys`` of ``state`` (default: the model's state dict). A sharded model's own
    state dict holds DTensors: this writes each process's shards (``uvlm.shard``).
    ``dtype``: the floating-point tensors are stored in it (None: as they are)."""
    from uvlm.shard import local

    state = model.state_dict() if state is None else state
    out, seen = {}, set()
    for k in saved_keys(model, lora):
        t = local(state[k].detach())
        # tied weights share storage, which safetensors refuses: store a copy
        out[k] = t.clone() if t.data_ptr() in seen else t.contiguous()
        seen.add(t.data_ptr())
        if dtype is not None and out[k].is_floating_point():
            out[k] = out[k].to(dtype)
    save_tensors(path, out)


def load_weights(model: UnifiedVLM, path: Path, lora: bool) -> None:
    """Load a checkpoint; every expected key must be there with its shape. Floating-point
    tensors are cast to the model's dtype (a bfloat16 checkpoint into a float32 model, or
    the other way round)."""
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
        if tensors[k].is_floating_point():
            tensors[k] = tensors[k].to(state[k].dtype)
    model.load_state_dict(tensors, strict=False)


def write_checkpoint(out: Path, model: UnifiedVLM, cfg: Config, run: Run, info: dict,
                     state: dict[str, torch.Tensor] | None = None) -> None:
    """``out/model.safetensors`` in ``train.checkpoint_dtype`` and ``out/config.yaml``
    (config + ``checkpoint`` section); ``state``: the full state dict of a sharded model
    (``uvlm.shard.full_state``)."""
    save_weights(model, out / paths.WEIGHTS, cfg.model.lora.enabled, state,
                 getattr(torch, cfg.train.checkpoint_dtype))
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
    load_weights(model, Path(ckpt) / paths.WEIGHTS, cfg.model.lora.enabled)
    return model.eval(), cfg, run, ctx


# ---------------------------------------------------------------------- resume state
# A training job's scratch folder (``uvlm.paths.state_dir``): the full training state at its
# latest checkpoint and hard links of every checkpoint it wrote (``uvlm.train``).

def save_state(state: Path, step: int, key: str, model, optimizer, lora: bool, metrics: Path,
               shard: tuple[int, int] | None = None, wait=lambda: None):
    """Write ``state/step{N}/`` then point ``state/latest.json`` at it (atomic switch).

    ``shard`` = (rank, world) of a sharded model (``uvlm.shard``): every process calls this
    and writes its own shards, ``model-rank{r}-of{world}.safetensors`` and
    ``optimizer-rank{r}-of{world}.safetensors`` (``uvlm.paths.state_weights``,
    ``state_optimizer``); ``wait`` (a barrier) runs before rank 0 switches ``latest.json``.
    Without ``shard`` only the main process calls it. Weights and moments are stored as
    training holds them (float32 masters), whatever ``train.checkpoint_dtype`` says of the
    published checkpoints: a resumed run continues exactly where the killed one stopped.
    """
    from uvlm.shard import local

    rank, world = shard or (0, None)
    d = paths.state_step_dir(state, step)
    d.mkdir(parents=True, exist_ok=True)
    save_weights(model, paths.state_weights(d, shard), lora)
    opt = optimizer.state_dict()
    tensors = {f"{i}.{name}": local(t) for i, s in opt["state"].items() for name, t in s.items()}
    save_tensors(paths.state_optimizer(d, shard),
                 {k: v.contiguous() for k, v in tensors.items()})
    if rank == 0:
        write_json(paths.state_optimizer_groups(d), {"param_groups": opt["param_groups"]})
        shutil.copyfile(metrics, paths.metrics_log(d))
    wait()
    if rank == 0:
        write_json(paths.state_latest(state), {"step": step, "key": key, "dir": d.name,
                                               "sharded_over": world})
        for old in state.glob("step*"):
            if old != d:
                shutil.rmtree(old)


def drop_stale_state(state: Path, key: str) -> None:
    """A resume state of another config or run is discarded, loudly."""
    latest = paths.state_latest(state)
    if latest.is_file() and read_json(latest)["key"] != key:
        print(f"{state}: resume state of another config or run; starting afresh")
        shutil.rmtree(state)


def load_state(state: Path, model, optimizer, lora: bool,
               shard: tuple[int, int] | None = None) -> int:
    """Restore the latest state into model and optimizer; return its step (0 if none).

    A sharded state is read back by as many processes as wrote it, each its own shards.
    """
    from uvlm.shard import like, local

    if not paths.state_latest(state).is_file():
        return 0
    latest = read_json(paths.state_latest(state))
    d = state / latest["dir"]
    world = None if shard is None else shard[1]
    if latest.get("sharded_over") != world:
        def what(w):
            return "unsharded" if w is None else f"sharded over {w} processes"
        raise ConfigError(f"{d}: the resume state is {what(latest.get('sharded_over'))}, this "
                          f"run is {what(world)}; resume with the launch config it was "
                          f"saved with, or delete {state} to start afresh")
    if shard is None:
        load_weights(model, paths.state_weights(d), lora)
    else:
        path = paths.state_weights(d, shard)
        tensors = load_tensors(path)
        own = model.state_dict(keep_vars=True)
        with torch.no_grad():
            for k in saved_keys(model, lora):
                target = local(own[k])
                if k not in tensors or tensors[k].shape != target.shape:
                    raise ConfigError(f"{path}: no shard {k!r} of shape "
                                      f"{tuple(target.shape)}; not this run's state")
                target.copy_(tensors[k])
    flat = load_tensors(paths.state_optimizer(d, shard))
    params = [p for g in optimizer.param_groups for p in g["params"]]
    per_param: dict[int, dict] = {}
    for k, t in flat.items():
        i, name = k.split(".", 1)
        per_param.setdefault(int(i), {})[name] = t if name == "step" else like(t,
                                                                               params[int(i)])
    groups = read_json(paths.state_optimizer_groups(d))["param_groups"]
    optimizer.load_state_dict({"state": per_param, "param_groups": groups})
    return latest["step"]


def restore_checkpoints(state: Path, out: Path) -> None:
    """Re-link checkpoints that a workflow manager deleted after a killed job."""
    for kept in sorted(state.glob("ckpt*")):
        for f in kept.iterdir():
            if not (out / kept.name / f.name).exists():
                (out / kept.name).mkdir(parents=True, exist_ok=True)
                os.link(f, out / kept.name / f.name)


def keep_checkpoint(ckpt: Path, state: Path) -> None:
    (state / ckpt.name).mkdir(parents=True, exist_ok=True)
    for f in ckpt.iterdir():
        target = state / ckpt.name / f.name
        target.unlink(missing_ok=True)
        os.link(f, target)
