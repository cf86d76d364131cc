"""`python -m uvlm bench-train --config C`: training throughput and memory on this machine.

Runs the real ``uvlm.train.train`` loop on synthetic data at the config's model and batch
sizes, once per precision (fp32, bf16), each in a fresh process so that its peak resident
memory is its own, and says what ``precision: auto`` picks here and why (bf16 is only
faster on devices that run it natively). Reports tokens/s (text + image positions) and
optimizer steps/s after the first logging interval (warm-up), CPU seconds per step (set-up
included; robust to other load on the machine), and the peak RSS. Writes ``R/bench/train.json``.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import resource
import shutil
import time

from uvlm.config import command_parser, load, parse_command
from uvlm.grid import parse_run
from uvlm.utils import write_json


def _one(config: str, overrides: list[str], run_name: str, images: int, threads: int,
         queue) -> None:
    import torch

    from uvlm.model import synthetic
    from uvlm.train import train

    torch.set_num_threads(threads)
    cfg, run = load(config, overrides), parse_run(run_name)
    ctx, records, features = synthetic.inputs(cfg, run, images, cfg.seed)
    out = cfg.root / "bench" / "train" / cfg.train.precision
    shutil.rmtree(out, ignore_errors=True)
    cpu = time.process_time()
    train(cfg, run, 0, ctx, records, features, progress=False, out=out)
    cpu = time.process_time() - cpu
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    shutil.rmtree(out)
    timed = lines[1:]  # the first interval holds the warm-up
    # ru_maxrss is in KiB on Linux
    queue.put({"tokens_per_s": sum(x["tokens_per_s"] for x in timed) / len(timed),
               "steps_per_s": len(timed) / sum(x["s_per_step"] for x in timed),
               "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "steps": lines[-1]["step"], "cpu_s_per_step": cpu / lines[-1]["step"]})


def measure(config: str, overrides: list[str], run_name: str, images: int, threads: int,
            steps: int) -> dict:
    """Tokens/s, steps/s and peak RSS of ``steps`` optimizer steps, in a fresh process."""
    cfg = load(config, overrides)
    per_step = cfg.train.batch_size
    records = images * {"mixed": 3, "und": 2, "gen": 1}[parse_run(run_name).mode]
    epochs = steps * per_step / records
    log = max(steps // 4, 1)
    overrides = overrides + [f"train.epochs={epochs}", "train.checkpoints=1",
                             f"train.log_every={log}"]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    p = ctx.Process(target=_one, args=(config, overrides, run_name, images, threads, queue))
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
    p.add_argument("--steps", type=int, default=24)
    p.add_argument("--threads", type=int, default=1, help="torch threads (cores) to use")
    args, cfg = parse_command(p, argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    results = {}
    for precision in ("fp32", "bf16"):
        r = measure(args.config, args.set + [f"train.precision={precision}"], args.run,
                    args.images, args.threads, args.steps)
        results[precision] = r
        print(f"{precision}: {r['tokens_per_s']:,.0f} tokens/s, {r['steps_per_s']:.2f} steps/s "
              f"({r['cpu_s_per_step']:.3f} CPU s/step with set-up), peak RSS "
              f"{r['peak_rss_mib']:,.0f} MiB ({r['steps']} steps, batch {cfg.train.batch_size},"
              f" {args.threads} thread(s))", flush=True)
    import torch

    from uvlm.precision import cpu_bf16, cpu_model, resolve

    auto, why = resolve("auto", torch.device("cpu"))
    ratio = results["bf16"]["tokens_per_s"] / results["fp32"]["tokens_per_s"]
    print(f"bf16 / fp32 = {ratio:.2f}x; CPU: {cpu_model()} ({cpu_bf16()[1]}); "
          f"auto picks {auto} ({why})")
    write_json(cfg.root / "bench" / "train.json",
               {"config": args.config, "run": args.run, "threads": args.threads,
                "cpu": cpu_model(), "auto": auto, "auto_reason": why, **results})

