"""`python -m uvlm train --config C --run RUN --seed S`: train one run of the grid.

One visible loop on accelerate, in the manner of nanoGPT's train.py. Writes under
``R/runs/{run}/seed{s}/``:

* ``ckpt{k:02d}/`` (weights + config) after k/K of the run's optimizer steps, K =
  ``train.checkpoints``: the paper's data-scale axis (docs/paper.md §2.3);
* ``metrics.jsonl``: loss parts, lr and tokens/s every ``train.log_every`` steps;
* ``state/``: resume scratch. At every checkpoint it gets the full training state (weights,
  AdamW moments, step; safetensors + JSON) and a hard link of the checkpoint, so a killed run
  started again continues from its last checkpoint, even if Snakemake deleted the outputs of
  the failed job. It is removed when the run completes.

Determinism: data order is a seeded permutation per epoch and torch is reseeded every step,
so a resumed run ends with the same weights as an uninterrupted one.

Loss normalisation: text CE is the mean over every supervised token of the global batch and
the image loss the mean over its image tokens (token-weighted); each micro-batch on each
process divides its sums by the global counts, so shards add up to exactly that loss.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from functools import lru_cache
from pathlib import Path

import torch
from accelerate import Accelerator, PartialState

from uvlm import provenance, shard
from uvlm.config import Config, ConfigError, command_parser, parse_command, to_dict
from uvlm.device import job_gpu
from uvlm.grid import Run, optimizer_steps, parse_run
from uvlm.model.batching import Batcher, Template
from uvlm.model.checkpoint import (
    load_weights,
    read_checkpoint_config,
    save_weights,
    write_checkpoint,
)
from uvlm.model.context import load_train_inputs, mode_records
from uvlm.model.unified import ModelContext, UnifiedVLM, build_model, check_arch, saved_keys
from uvlm.precision import resolve
from uvlm.progress import progress_bar
from uvlm.utils import (
    atomic_write,
    load_tensors,
    read_json,
    run_lock,
    save_tensors,
    stream_seed,
    write_json,
)


def lr_at(step: int, total: int, peak: float, warmup_ratio: float) -> float:
    """Linear warmup over ceil(warmup_ratio x total) steps, then cosine decay to 0."""
    warmup = math.ceil(warmup_ratio * total)
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))


def plan(cfg: Config, run: Run, n_records: int) -> tuple[int, dict[int, int]]:
    """Optimizer steps of a run and {step: k} of its checkpoints at k/K of them."""
    tc = cfg.train
    total = optimizer_steps(cfg, run, n_records)
    if total < tc.checkpoints:
        raise ConfigError(f"run {run.name}: {total} optimizer steps cannot hold "
                          f"train.checkpoints={tc.checkpoints}")
    return total, {round(k * total / tc.checkpoints): k for k in range(1, tc.checkpoints + 1)}


def param_groups(model: UnifiedVLM, cfg: Config) -> list[dict]:
    """The LLM's trainable weights at train.lr; adapters and head at train.adapter_lr."""
    in_lm = {id(p) for p in model.lm.parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in trainable if id(p) in in_lm], "lr": cfg.train.lr},
            {"params": [p for p in trainable if id(p) not in in_lm], "lr": cfg.train.adapter_lr}]


def state_key(cfg: Config, run: Run, seed: int) -> str:
    """What a resume state must match: the config sections training reads, run and seed."""
    d = to_dict(cfg)
    sections = ("seed", "data", "encoders", "model", "train")
    if "llava" in cfg.grid.experiments:  # its data and stages come from the llava section
        sections += ("llava",)
    return json.dumps({k: d[k] for k in sections} | {"run": run.name, "train_seed": seed},
                      sort_keys=True)


# ---------------------------------------------------------------------- resume state

def save_state(state: Path, step: int, key: str, model, optimizer, lora: bool, metrics: Path,
               shard: tuple[int, int] | None = None, wait=lambda: None):
    """Write ``state/step{N}/`` then point ``state/latest.json`` at it (atomic switch).

    ``shard`` = (rank, world) of a sharded model (``uvlm.shard``): every process calls this
    and writes its own shards, ``model-rank{r}-of{world}.safetensors`` and
    ``optimizer-rank{r}-of{world}.safetensors``; ``wait`` (a barrier) runs before rank 0
    switches ``latest.json``. Without ``shard`` only the main process calls it.
    """
    from uvlm.shard import local

    rank, world = shard or (0, None)
    suffix = "" if shard is None else f"-rank{rank}-of{world}"
    d = state / f"step{step:08d}"
    d.mkdir(parents=True, exist_ok=True)
    save_weights(model, d / f"model{suffix}.safetensors", lora)
    opt = optimizer.state_dict()
    tensors = {f"{i}.{name}": local(t) for i, s in opt["state"].items() for name, t in s.items()}
    save_tensors(d / f"optimizer{suffix}.safetensors",
                 {k: v.contiguous() for k, v in tensors.items()})
    if rank == 0:
        write_json(d / "optimizer.json", {"param_groups": opt["param_groups"]})
        shutil.copyfile(metrics, d / "metrics.jsonl")
    wait()
    if rank == 0:
        write_json(state / "latest.json", {"step": step, "key": key, "dir": d.name,
                                           "sharded_over": world})
        for old in state.glob("step*"):
            if old != d:
                shutil.rmtree(old)


def drop_stale_state(state: Path, key: str) -> None:
    """A resume state of another config or run is discarded, loudly."""
    if (state / "latest.json").is_file() and read_json(state / "latest.json")["key"] != key:
        print(f"{state}: resume state of another config or run; starting afresh")
        shutil.rmtree(state)


def load_state(state: Path, model, optimizer, lora: bool,
               shard: tuple[int, int] | None = None) -> int:
    """Restore the latest state into model and optimizer; return its step (0 if none).

    A sharded state is read back by as many processes as wrote it, each its own shards.
    """
    from uvlm.shard import like, local

    if not (state / "latest.json").is_file():
        return 0
    latest = read_json(state / "latest.json")
    d = state / latest["dir"]
    world = None if shard is None else shard[1]
    if latest.get("sharded_over") != world:
        def what(w):
            return "unsharded" if w is None else f"sharded over {w} processes"
        raise ConfigError(f"{d}: the resume state is {what(latest.get('sharded_over'))}, this "
                          f"run is {what(world)}; resume with the launch config it was "
                          f"saved with, or delete {state} to start afresh")
    if shard is None:
        load_weights(model, d / "model.safetensors", lora)
    else:
        path = d / f"model-rank{shard[0]}-of{world}.safetensors"
        tensors = load_tensors(path)
        own = model.state_dict(keep_vars=True)
        with torch.no_grad():
            for k in saved_keys(model, lora):
                target = local(own[k])
                if k not in tensors or tensors[k].shape != target.shape:
                    raise ConfigError(f"{path}: no shard {k!r} of shape "
                                      f"{tuple(target.shape)}; not this run's state")
                target.copy_(tensors[k])
    suffix = "" if shard is None else f"-rank{shard[0]}-of{world}"
    flat = load_tensors(d / f"optimizer{suffix}.safetensors")
    params = [p for g in optimizer.param_groups for p in g["params"]]
    per_param: dict[int, dict] = {}
    for k, t in flat.items():
        i, name = k.split(".", 1)
        per_param.setdefault(int(i), {})[name] = t if name == "step" else like(t,
                                                                               params[int(i)])
    groups = read_json(d / "optimizer.json")["param_groups"]
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


# ---------------------------------------------------------------------- training

def train(cfg: Config, run: Run, seed: int, ctx: ModelContext, records: list[dict],
          features: dict, progress: bool = True, out: Path | None = None,
          cpu: bool | None = None) -> Path:
    """Train one run into ``out`` (default ``R/runs/{run}/seed{seed}``) and return it."""
    records = mode_records(records, run, f"run {run.name}")
    template = Template(ctx.tokenizer, cfg.model.system_prompt, ctx.und.num_tokens,
                        ctx.gen.num_tokens, cfg.model.llm.max_length)
    data = Batcher(template.encode(records), features, ctx.und, ctx.gen)
    torch.manual_seed(stream_seed(cfg.seed, "train", "init", seed))
    model = build_model(cfg, run, ctx)
    return fit(cfg, run, seed, model, data, progress, out, cpu)


def fit(cfg: Config, run: Run, seed: int, model: UnifiedVLM, data: Batcher,
        progress: bool = True, out: Path | None = None, cpu: bool | None = None) -> Path:
    """The training loop: ``model`` (its trainable parameters) on the records of ``data``.

    ``train`` calls it with a fresh model and the encoders stage's features; the llava
    stages (``uvlm.llava.train``) with a partly frozen or pre-trained model and images
    encoded on the fly. One trainer at a time per run directory (``run_lock``); its other
    processes (accelerate) share the main one's lock. ``cpu``: the commands pass the
    device ``uvlm.device.job_device`` chose; None (tests, benchmarks) means the CPU when
    there is no CUDA.
    """
    out = cfg.root / "runs" / run.name / f"seed{seed}" if out is None else out
    # Without CUDA, processes started by torchrun (accelerate's multi-process launcher) must
    # be told they are CPU processes to form a gloo group instead of falling back to one.
    cpu = not torch.cuda.is_available() if cpu is None else cpu
    main = PartialState(cpu=cpu).is_main_process
    with run_lock(out) if main else contextlib.nullcontext():
        return _loop(cfg, run, seed, model, data, progress, out, cpu)


def _loop(cfg: Config, run: Run, seed: int, model: UnifiedVLM, data: Batcher, progress: bool,
          out: Path, cpu: bool) -> Path:
    state, metrics = out / "state", out / "metrics.jsonl"
    tc = cfg.train

    world, rank = PartialState(cpu=cpu).num_processes, PartialState(cpu=cpu).process_index
    micro = tc.micro_batch_size or tc.batch_size // world
    if tc.batch_size % (world * micro):
        raise ConfigError(f"train.batch_size={tc.batch_size} is not a multiple of "
                          f"{world} processes x train.micro_batch_size={micro}")
    accum = tc.batch_size // (world * micro)
    sharding = shard.requested() if world > 1 else None
    with shard.fsdp_hidden():  # uvlm shards the model itself (uvlm.shard)
        accelerator = Accelerator(cpu=cpu, gradient_accumulation_steps=accum)
    main = accelerator.is_main_process
    n = len(data)
    total, ckpt_at = plan(cfg, run, n)

    @lru_cache(maxsize=2)
    def permutation(epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(stream_seed(cfg.seed, "train", "order", run.name,
                                                      seed, epoch))
        return torch.randperm(n, generator=g)

    def step_rows(step: int) -> torch.Tensor:
        """The global batch of ``step``: the next batch_size samples of the epoch stream."""
        pos = torch.arange(step * tc.batch_size, (step + 1) * tc.batch_size)
        return torch.cat([permutation(int(e))[pos[pos // n == e] % n] for e in
                          (pos // n).unique()])

    peaks = [tc.lr, tc.adapter_lr]
    if tc.grad_checkpointing and accelerator.device.type == "cuda":
        model.lm.gradient_checkpointing_enable(
            gradient_checkpointing_kwargs={"use_reentrant": False})
    if sharding:  # before the optimizer: the parameters become DTensor shards
        model = shard.shard(model, sharding, accelerator.device)
    ranks = (rank, world) if sharding else None
    optimizer = torch.optim.AdamW(param_groups(model, cfg), weight_decay=tc.weight_decay)
    key, lora = state_key(cfg, run, seed), cfg.model.lora.enabled
    if main:
        drop_stale_state(state, key)
    accelerator.wait_for_everyone()
    start = load_state(state, model, optimizer, lora, ranks)
    if main:
        restore_checkpoints(state, out)
        with atomic_write(metrics) as fh:  # the log up to the resumed step
            if start:
                fh.write((state / f"step{start:08d}" / "metrics.jsonl").read_text())
    if sharding:  # accelerate wraps the optimizer only; the model is FSDP's
        optimizer = accelerator.prepare(optimizer)
    else:
        model, optimizer = accelerator.prepare(model, optimizer)
    used, why = resolve(tc.precision, accelerator.device)
    bf16 = used == "bf16"
    accelerator.print(f"train {run.name} seed {seed}: precision {used} ({why})")
    accelerator.print(
        f"train {run.name} seed {seed}: {n} records, {total} steps x {tc.batch_size} "
        f"(= {world} processes x {accum} micro-batches x {micro}), {tc.epochs * run.epoch_scale:g}"
        f" epochs, lr {tc.lr:g} / adapters {tc.adapter_lr:g}, "
        f"{sum(p.numel() for p in model.parameters() if p.requires_grad):,} trainable params"
        + (f", sharded ({sharding.name}, FSDP2)" if sharding else "")
        + (f", resuming at step {start}" if start else ""))

    bar = progress_bar(total=total, initial=start, disable=not (progress and main))
    t0, tokens, logged = time.perf_counter(), 0, start
    for step in range(start, total):
        for group, peak in zip(optimizer.param_groups, peaks, strict=True):
            group["lr"] = lr_at(step, total, peak, tc.warmup_ratio)
        rows = step_rows(step)
        n_text, n_image = data.counts(rows)
        tokens += data.tokens(rows)
        torch.manual_seed(stream_seed(cfg.seed, "train", "step", run.name, seed, step, rank))
        sums = torch.zeros(2, device=accelerator.device)
        own = rows.view(world, -1)[rank]
        # micro-batches of similar lengths pad less; the sum over them is the same
        for part in own[data.enc.length[own].argsort(stable=True)].split(micro):
            with accelerator.accumulate(model):
                if sharding:  # reduce-scatter the gradients at the last micro-batch only
                    model.set_requires_gradient_sync(accelerator.sync_gradients)
                with torch.autocast(accelerator.device.type, torch.bfloat16, enabled=bf16):
                    parts = model(data.batch(part).to(accelerator.device))
                # x world x accum: DDP averages over processes, accelerate over micro-batches
                accelerator.backward(parts.loss(n_text, n_image) * world * accum)
                if accelerator.sync_gradients and tc.grad_clip:
                    accelerator.clip_grad_norm_(model.parameters(), tc.grad_clip)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            sums += torch.stack([parts.text_sum.detach(), parts.image_sum.detach()])
        text_sum, image_sum = accelerator.reduce(sums, "sum").tolist()
        text_loss, image_loss = text_sum / max(n_text, 1), image_sum / max(n_image, 1)
        loss = text_loss + parts.alpha * image_loss
        if not math.isfinite(loss):
            raise FloatingPointError(f"run {run.name} seed {seed}: loss {loss} at step {step}")
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}", refresh=False)  # shown at the next refresh
        done = step + 1
        if main and (done % tc.log_every == 0 or done == total):
            dt, t0 = time.perf_counter() - t0, time.perf_counter()
            line = {"step": done, "epoch": done * tc.batch_size / n, "loss": loss,
                    "text_loss": text_loss, "image_loss": image_loss,
                    "lr": optimizer.param_groups[0]["lr"],
                    "adapter_lr": optimizer.param_groups[1]["lr"], "tokens_per_s": tokens / dt,
                    "s_per_step": dt / (done - logged)}
            tokens, logged = 0, done
            with metrics.open("a") as fh:
                fh.write(json.dumps(line) + "\n")
        if done in ckpt_at:
            accelerator.wait_for_everyone()
            unwrapped = model if sharding else accelerator.unwrap_model(model)
            full = shard.full_state(model) if sharding else None  # every process gathers
            if main:
                ckpt = out / f"ckpt{ckpt_at[done]:02d}"
                info = {"seed": seed, "checkpoint": ckpt_at[done], "step": done,
                        "total_steps": total, "fraction": done / total,
                        "samples": done * tc.batch_size, "records": n, "precision": used}
                write_checkpoint(ckpt, unwrapped, cfg, run, info, full)
                keep_checkpoint(ckpt, state)
            del full
            if done < total and (main or sharding):
                save_state(state, done, key, unwrapped, optimizer.optimizer, lora, metrics,
                           ranks, accelerator.wait_for_everyone if sharding else lambda: None)
            accelerator.wait_for_everyone()
    bar.close()
    if main:
        # a workflow manager may have deleted checkpoints of this run meanwhile (a second
        # trainer refused, its job failed, its outputs went): state/ still links them all
        restore_checkpoints(state, out)
        shutil.rmtree(state, ignore_errors=True)
    accelerator.end_training()
    return out


def main(argv: list[str]) -> None:
    p = command_parser("uvlm train", __doc__.split("\n")[0])
    p.add_argument("--run", required=True, help="run name, e.g. vq-vq_mixed")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--synthetic", type=int, default=0, metavar="N",
                   help="train on N synthetic images instead of the pipeline's files "
                        "(benchmarks and tests)")
    p.add_argument("--no-progress", action="store_true")
    args, cfg = parse_command(p, argv)
    run = parse_run(args.run)
    check_arch(run)
    # before reading any input: a GPU job claims a free GPU, and without a usable one it
    # stops here, naming why
    with job_gpu(cfg, f"train {run.name} seed {args.seed}") as device:
        if args.synthetic:
            from uvlm.model import synthetic

            ctx, records, features = synthetic.inputs(cfg, run, args.synthetic, cfg.seed)
        else:
            ctx, records, features = load_train_inputs(cfg, run)
        out = train(cfg, run, args.seed, ctx, records, features, progress=not args.no_progress,
                    cpu=device.type == "cpu")
        if not args.synthetic:
            _, _, info = read_checkpoint_config(out / f"ckpt{cfg.train.checkpoints:02d}")
            provenance.write(cfg, "train", run=run.name, seed=args.seed,
                             precision=info["precision"])
