"""`python -m uvlm llava-train --config C --stage {pretrain,sft} --run RUN --seed S`: one stage of
the LLaVA-1.5 recipe (docs/paper.md §5), through the grid's training loop (``uvlm.train.fit``:
accelerate, safetensors checkpoints, resume after a kill).

* ``pretrain``: RUN is a stage-1 run (``uvlm.llava.pretrain_run``: ``clip-clip_mixed``,
  ``clip-clip_mixed_detach``, ``clip-vq_mixed``). The LLM is frozen; the adapters and the image
  head train on ``R/data/pretrain.json`` with ``llava.pretrain``'s batch and lr.
* ``sft``: the whole model trains on the run's ``R/data/sft-gen-{N}.json`` with ``train``,
  starting from the last checkpoint of its stage-1 run.

Records longer than ``model.llm.max_length`` are left out and counted in the log; LLaVA
truncates them instead, which would cut a generation sample's image tokens.
"""

from __future__ import annotations

from pathlib import Path

import torch
from accelerate import PartialState

from uvlm.cli import command_parser, parse_command
from uvlm.config import Config, ConfigError
from uvlm.device import job_gpu
from uvlm.grid import Run, all_runs, parse_run
from uvlm.llava import (
    STAGES,
    data_file,
    pretrain_run,
    stage_config,
    stage_data,
    stage_dir,
)
from uvlm.llava.images import TowerBatcher, check_images, load_parts, to_records
from uvlm.model.batching import Template
from uvlm.model.checkpoint import load_weights
from uvlm.model.context import mode_records
from uvlm.model.unified import build_model
from uvlm.paths import ckpt_name
from uvlm.train import fit
from uvlm.utils import read_json, stream_seed


def last_checkpoint(cfg: Config, stage: str, run: Run, seed: int) -> Path:
    return stage_dir(cfg, stage, run, seed) / ckpt_name(cfg.train.checkpoints)


def train_stage(cfg: Config, stage: str, run: Run, seed: int, progress: bool = True,
                cpu: bool | None = None) -> Path:
    """Train one stage of ``run`` (for ``pretrain``, its stage-1 run) and return its folder;
    ``cpu`` as in ``uvlm.train.fit``."""
    scfg = stage_config(cfg, stage)
    ctx, towers = load_parts(cfg, run)
    path = data_file(cfg, stage_data(cfg, stage, run))
    records, paths = to_records(read_json(path))
    records = mode_records(records, run, str(path))
    folder = Path(cfg.llava.image_folder)
    check_images(folder, paths)
    template = Template.of(cfg, ctx)
    enc = template.encode(records, drop_long=True)
    print(f"llava-train {stage} {run.name}: {len(enc.ids)} records of {path}; "
          f"{len(records) - len(enc.ids)} longer than model.llm.max_length="
          f"{cfg.model.llm.max_length} left out")
    cpu = not torch.cuda.is_available() if cpu is None else cpu
    device = PartialState(cpu=cpu).device
    data = TowerBatcher(enc, folder, paths, {s: t.to(device) for s, t in towers.items()},
                        ctx.und, ctx.gen, device)

    torch.manual_seed(stream_seed(cfg.seed, "train", "init", seed))
    model = build_model(scfg, run, ctx)
    if stage == "pretrain":
        model.lm.requires_grad_(False)
    else:  # stage 1's checkpoints are float32 (stage_config): the init is not rounded
        load_weights(model, last_checkpoint(cfg, "pretrain", run, seed) / "model.safetensors",
                     cfg.model.lora.enabled)
    return fit(scfg, run, seed, model, data, progress, stage_dir(cfg, stage, run, seed), cpu)


def main(argv: list[str]) -> None:
    p = command_parser("uvlm llava-train", __doc__.split("\n")[0])
    p.add_argument("--stage", required=True, choices=STAGES)
    p.add_argument("--run", required=True, help="run name; for pretrain a stage-1 run")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--no-progress", action="store_true")
    args, cfg = parse_command(p, argv)
    run = parse_run(args.run)
    runs = all_runs(cfg) if "llava" in cfg.grid.experiments else []
    known = {pretrain_run(r) for r in runs} if args.stage == "pretrain" else set(runs)
    if run not in known:
        raise ConfigError(f"run {run.name!r} is no {args.stage} run of {args.config}; "
                          f"choose from: {', '.join(sorted(r.name for r in known))}")
    # before loading the LLM and the towers: a GPU job claims a free GPU (one process), and
    # without a usable one it stops here
    with job_gpu(cfg, f"llava-train {args.stage} {run.name} seed {args.seed}") as device:
        train_stage(cfg, args.stage, run, args.seed, progress=not args.no_progress,
                    cpu=device.type == "cpu")
