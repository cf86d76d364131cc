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
import shutil
import time
from functools import lru_cache
from pathlib import Path

import torch
from accelerate import Accelerator, PartialState

from uvlm import paths, provenance, shard
from uvlm.cli import command_parser, parse_command
from uvlm.config import Config, ConfigError, to_dict
from uvlm.device import job_gpu
from uvlm.grid import Run, optimizer_steps, parse_run
from uvlm.model.batching import Batcher, Template
from uvlm.model.checkpoint import (
    drop_stale_state,
    keep_checkpoint,
    load_state,
    read_checkpoint_config,
    restore_checkpoints,
    save_state,
    write_checkpoint,
)
from uvlm.model.context import load_train_inputs, mode_records
from uvlm.model.unified import ModelContext, UnifiedVLM, build_model, check_arch
from uvlm.precision import resolve
from uvlm.progress import progress_bar
from uvlm.utils import atomic_write, lr_at, run_lock, stream_seed


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


# ---------------------------------------------------------------------- training

def train(cfg: Config, run: Run, seed: int, ctx: ModelContext, records: list[dict],
          features: dict, progress: bool = True, out: Path | None = None,
          cpu: bool | None = None) -> Path:
    """Train one run into ``out`` (default ``R/runs/{run}/seed{seed}``) and return it."""
    records = mode_records(records, run, f"run {run.name}")
    template = Template.of(cfg, ctx)
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
    out = paths.run_dir(cfg, run, seed) if out is None else out
    # Without CUDA, processes started by torchrun (accelerate's multi-process launcher) must
    # be told they are CPU processes to form a gloo group instead of falling back to one.
    cpu = not torch.cuda.is_available() if cpu is None else cpu
    main = PartialState(cpu=cpu).is_main_process
    with run_lock(out) if main else contextlib.nullcontext():
        return _loop(cfg, run, seed, model, data, progress, out, cpu)


def _loop(cfg: Config, run: Run, seed: int, model: UnifiedVLM, data: Batcher, progress: bool,
          out: Path, cpu: bool) -> Path:
    state, metrics = paths.state_dir(out), paths.metrics_log(out)
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
                fh.write(paths.metrics_log(paths.state_step_dir(state, start)).read_text())
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
    warmup = math.ceil(tc.warmup_ratio * total)
    for step in range(start, total):
        for group, peak in zip(optimizer.param_groups, peaks, strict=True):
            group["lr"] = lr_at(step, total, peak, warmup)
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
                ckpt = out / paths.ckpt_name(ckpt_at[done])
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
            _, _, info = read_checkpoint_config(out / paths.ckpt_name(cfg.train.checkpoints))
            provenance.write(cfg, "train", run=run.name, seed=args.seed,
                             precision=info["precision"])
