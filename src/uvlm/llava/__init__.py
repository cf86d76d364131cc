"""The LLaVA-1.5 real-world experiment (docs/paper.md §5; config/llava.yaml).

Text-to-image samples made from ShareGPT4V captions are mixed into the two training stages of
LLaVA-1.5-7B; the runs are compared on lmms-eval benchmarks. Files (R = results/<config name>):

* ``R/data/pretrain.json``: blip_laion_cc_sbu_558k + ``llava.pretrain_generation`` samples;
  ``R/data/sft-gen-{N}.json``: llava_v1_5_mix665k + N samples, one per ``llava.sft_generation``
  amount (``uvlm.llava.data``). LLaVA's JSON format; image paths relative to
  ``llava.image_folder``.
* ``R/runs/{run}/seed{s}/pretrain/``: stage 1, adapters and image head on the frozen LLM. One
  per architecture and adapter layout (``pretrain_run``), shared by that architecture's runs.
* ``R/runs/{run}/seed{s}/sft/``: stage 2, the whole model, from stage 1's last checkpoint
  (``uvlm.llava.train``; stage 1 saves float32, stage 2 ``train.checkpoint_dtype``).
* ``R/eval/llava/{run}/results.json``: lmms-eval's results (``uvlm.llava.lmms``), which the
  report reads (``uvlm.paths.llava_results``).

The runs (``uvlm.grid._llava``): ``clip-clip_und`` (no generation data in SFT),
``clip-clip_mixed_gen-{N}``, ``clip-clip_mixed`` (the largest amount), ``clip-clip_mixed_detach``
and ``clip-vq_mixed``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from uvlm import paths
from uvlm.config import Config, ConfigError, to_dict
from uvlm.grid import Run, llava_generation

STAGES = ("pretrain", "sft")


# --------------------------------------------------------------------------- runs and files

def pretrain_run(run: Run) -> Run:
    """The stage-1 run a run starts from: its architecture and adapter layout, mixed data."""
    return Run(run.arch, "mixed", detach=run.detach)


def data_names(cfg: Config) -> list[str]:
    return ["pretrain"] + [f"sft-gen-{n}" for n in cfg.llava.sft_generation]


def data_file(cfg: Config, name: str) -> Path:
    return paths.data_file(cfg, name)


def stage_data(cfg: Config, stage: str, run: Run) -> str:
    """The data file name a stage of ``run`` trains on."""
    return "pretrain" if stage == "pretrain" else f"sft-gen-{llava_generation(cfg, run)}"


def stage_dir(cfg: Config, stage: str, run: Run, seed: int) -> Path:
    """``R/runs/{run}/seed{s}/{stage}``; stage 1 lives under its (shared) pretrain run."""
    owner = pretrain_run(run) if stage == "pretrain" else run
    return paths.stage_dir(cfg, owner, seed, stage)


def stage_config(cfg: Config, stage: str) -> Config:
    """The config a stage trains with: ``train`` for SFT; for pretraining ``train`` with the
    batch, lr (adapters and head; the LLM is frozen) and time limit of ``llava.pretrain``, and
    float32 checkpoints whatever ``train.checkpoint_dtype`` says."""
    if stage == "sft":
        return cfg
    p = cfg.llava.pretrain
    # Stage 2 initialises its full fine-tuning from stage 1's last checkpoint: rounding that
    # to bfloat16 would move its starting point, so only stage 2 (read by evaluation alone)
    # publishes train.checkpoint_dtype.
    return dataclasses.replace(cfg, train=dataclasses.replace(
        cfg.train, adapter_lr=p.lr, batch_size=p.batch_size, micro_batch_size=p.micro_batch_size,
        runtime_minutes=p.runtime_minutes, checkpoint_dtype="float32"))


def check_config(cfg: Config) -> None:
    """What the LLaVA recipe needs beyond a valid config."""
    if cfg.model.lora.enabled:
        raise ConfigError("model.lora.enabled: the LLaVA recipe fine-tunes the whole LLM; "
                          "set it to false")
    if cfg.encoders.tokenizer.source != "pretrained":
        raise ConfigError("encoders.tokenizer.source: the LLaVA recipe uses the LLM's own "
                          "tokenizer; set it to pretrained")
    if cfg.encoders.vq.source != "pretrained":
        raise ConfigError("encoders.vq.source: the LLaVA recipe reads LlamaGen's VQ "
                          "(encoders.vq.path); set it to pretrained")


# --------------------------------------------------------------------------- what rules depend on

def data_depends(cfg: Config, name: str) -> dict:
    """The config values one data file is made from."""
    ll = cfg.llava
    out = {"seed": cfg.seed, "sharegpt4v_json": ll.sharegpt4v_json,
           "pretrain_generation": ll.pretrain_generation}  # SFT samples come after stage 1's
    if name == "pretrain":
        return out | {"pretrain_json": ll.pretrain_json,
                      "pretrain_image_folder": ll.pretrain_image_folder}
    return out | {"sft_json": ll.sft_json, "generation": int(name.removeprefix("sft-gen-"))}


def train_depends(cfg: Config, stage: str, run: Run) -> dict:
    """The config values a training stage reads; SFT also depends on its stage-1 run."""
    d = to_dict(stage_config(cfg, stage))
    out = {"data": data_depends(cfg, stage_data(cfg, stage, run)),
           "encoders": d["encoders"], "model": d["model"], "train": d["train"],
           "image_folder": cfg.llava.image_folder, "seed": cfg.seed}
    if stage == "sft":
        out["init"] = train_depends(cfg, "pretrain", run)
    return out


def eval_depends(cfg: Config, run: Run) -> dict:
    return {"train": train_depends(cfg, "sft", run), "tasks": cfg.llava.tasks,
            "max_new_tokens": cfg.eval.max_new_tokens}


def as_param(values: dict) -> str:
    """A Snakemake params value: a change of any of ``values`` reruns the job."""
    return json.dumps(values, sort_keys=True)
