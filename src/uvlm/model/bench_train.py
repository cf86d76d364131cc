"""`python -m uvlm bench-train --config C`: training throughput and memory on this machine.

Runs the real training loop (``uvlm.train.fit``) on synthetic data at the config's batch
sizes, each measurement in a fresh process so that its peak memory is its own. Reports
tokens/s (text + image positions) and optimizer steps/s after the first logging interval
(warm-up), the model FLOPs they make per second and the model FLOP utilisation where the
GPU's peak is known (formula: ``uvlm.model.flops``), CPU seconds per step (set-up included;
robust to other load on the machine), and the peak RSS (and, on a GPU, the peak GPU memory
allocated while training).

* ``--device cpu`` (the default): the config's own model, once per precision (fp32, bf16),
  and what ``precision: auto`` picks here and why (bf16 is only faster on devices that run
  it natively). Writes ``R/bench/train.json``.
* ``--device cuda``: the paper-shape model: Vicuna-7B's architecture with random bf16
  weights (nothing downloaded) and the config's LoRA (``config/paper.yaml``: r=128), the
  config's vision spaces, batch and micro-batch, at the config's precision. Writes
  ``R/bench/train_cuda.json``.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import resource
import shutil
import time

from uvlm import paths
from uvlm.cli import command_parser, parse_command
from uvlm.config import ConfigError, load
from uvlm.grid import parse_run
from uvlm.utils import write_json


def _one(config: str, overrides: list[str], run_name: str, images: int, threads: int,
         device: str, queue) -> None:
    import torch

    from uvlm.model import synthetic
    from uvlm.model.batching import Batcher, Template
    from uvlm.model.context import mode_records
    from uvlm.model.flops import paper_lm, param_counts
    from uvlm.model.unified import build_model
    from uvlm.train import fit
    from uvlm.utils import stream_seed

    torch.set_num_threads(threads)
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    cfg, run = load(config, overrides), parse_run(run_name)
    ctx, records, features = synthetic.inputs(cfg, run, images, cfg.seed)
    out = paths.bench_dir(cfg) / "train" / f"{device}-{cfg.train.precision}"
    shutil.rmtree(out, ignore_errors=True)
    # uvlm.train.train's steps, with the paper-shape LLM on a GPU, made there
    records = mode_records(records, run, f"run {run.name}")
    template = Template.of(cfg, ctx)
    data = Batcher(template.encode(records), features, ctx.und, ctx.gen)
    torch.manual_seed(stream_seed(cfg.seed, "train", "init", 0))
    with torch.device(dev):
        model = build_model(cfg, run, ctx, lm=paper_lm(dev) if cuda else None)
    frozen, trainable = param_counts(model, model.lm.get_input_embeddings())
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    cpu = time.process_time()
    fit(cfg, run, 0, model, data, progress=False, out=out, cpu=not cuda)
    cpu = time.process_time() - cpu
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    shutil.rmtree(out)
    timed = lines[1:]  # the first interval holds the warm-up
    # ru_maxrss is in KiB on Linux
    queue.put({"tokens_per_s": sum(x["tokens_per_s"] for x in timed) / len(timed),
               "steps_per_s": len(timed) / sum(x["s_per_step"] for x in timed),
               "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
               "gpu": torch.cuda.get_device_name() if cuda else None,
               "params_frozen": frozen, "params_trainable": trainable,
               "steps": lines[-1]["step"], "cpu_s_per_step": cpu / lines[-1]["step"]})


def measure(config: str, overrides: list[str], run_name: str, images: int, threads: int,
            steps: int, device: str = "cpu") -> dict:
    """Tokens/s, steps/s and peak memory of ``steps`` optimizer steps, in a fresh process."""
    cfg = load(config, overrides)
    per_step = cfg.train.batch_size
    records = images * {"mixed": 3, "und": 2, "gen": 1}[parse_run(run_name).mode]
    epochs = steps * per_step / records
    log = max(steps // 4, 1)
    overrides = overrides + [f"train.epochs={epochs}", "train.checkpoints=1",
                             f"train.log_every={log}"]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    p = ctx.Process(target=_one, args=(config, overrides, run_name, images, threads, device,
                                       queue))
    p.start()
    result = queue.get()
    p.join()
    if p.exitcode:
        raise RuntimeError(f"bench-train child for {overrides} failed ({p.exitcode})")
    return result


def main(argv: list[str]) -> None:
    p = command_parser("uvlm bench-train", __doc__.split("\n")[0])
    p.add_argument("--run", default="vq-vq_mixed", help="architecture and mode to time")
    p.add_argument("--images", type=int, default=512, help="synthetic training images")
    p.add_argument("--steps", type=int, default=None,
                   help="optimizer steps (default: 24 on the CPU, 8 on a GPU)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (cores) to use")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="cuda: the paper-shape model (Vicuna-7B, random weights) on a GPU")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="the device's peak TFLOP/s for the utilisation (default: the table "
                        "of uvlm.model.flops for known GPUs)")
    args, cfg = parse_command(p, argv)
    import torch

    from uvlm.device import require_cuda
    from uvlm.model.flops import TRAIN_FORMULA, peak_tflops, train_flops_per_token
    from uvlm.precision import cpu_bf16, cpu_model, resolve

    steps = args.steps or (8 if args.device == "cuda" else 24)
    if args.device == "cuda":
        require_cuda("bench-train --device cuda", "--device cuda", "leave out --device cuda")
        if not cfg.model.lora.enabled:
            raise ConfigError("bench-train --device cuda: the paper-shape model trains LoRA; "
                              "use a config with model.lora.enabled: true (config/paper.yaml)")
        precisions = [resolve(cfg.train.precision, torch.device("cuda"))[0]]
        name = torch.cuda.get_device_name()
    else:
        precisions, name = ["fp32", "bf16"], cpu_model()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    peak = peak_tflops(name, args.peak_tflops)
    results = {}
    for precision in precisions:
        r = measure(args.config, args.set + [f"train.precision={precision}"], args.run,
                    args.images, args.threads, steps, args.device)
        flops = train_flops_per_token(r["params_frozen"], r["params_trainable"])
        r["model_tflops_per_s"] = r["tokens_per_s"] * flops / 1e12
        r["mfu"] = r["model_tflops_per_s"] / peak if peak else None
        results[precision] = r
        memory = (f"peak GPU memory {r['peak_gpu_mib'] / 1024:,.1f} GiB, "
                  if r["peak_gpu_mib"] is not None else "")
        mfu = f"MFU {r['mfu']:.1%}" if peak else "MFU not computed (pass --peak-tflops)"
        print(f"{precision}: {r['tokens_per_s']:,.0f} tokens/s, {r['steps_per_s']:.3f} steps/s "
              f"({r['cpu_s_per_step']:.3f} CPU s/step with set-up), "
              f"{r['model_tflops_per_s']:.3g} model TFLOP/s, {mfu}; {memory}peak RSS "
              f"{r['peak_rss_mib']:,.0f} MiB ({r['steps']} steps, batch {cfg.train.batch_size},"
              f" N = {r['params_frozen'] + r['params_trainable']:,} params, "
              f"{r['params_trainable']:,} trained, {args.threads} thread(s))", flush=True)
    print(f"{TRAIN_FORMULA}; peak {peak if peak else 'unknown'} TFLOP/s ({name})")
    summary = {"config": args.config, "run": args.run, "threads": args.threads,
               "device": args.device, "name": name, "peak_tflops": peak,
               "flop_formula": TRAIN_FORMULA, **results}
    if args.device == "cuda":
        write_json(paths.bench_dir(cfg) / "train_cuda.json", summary)
        return
    auto, why = resolve("auto", torch.device("cpu"))
    ratio = results["bf16"]["tokens_per_s"] / results["fp32"]["tokens_per_s"]
    print(f"bf16 / fp32 = {ratio:.2f}x; CPU: {cpu_model()} ({cpu_bf16()[1]}); "
          f"auto picks {auto} ({why})")
    write_json(paths.bench_dir(cfg) / "train.json",
               summary | {"cpu": cpu_model(), "auto": auto, "auto_reason": why})
