"""The results layout: every path under ``results/<name>/`` (docs/design.md §7), in one module.

The package's readers and writers, the Snakemake rules (workflow/rules/*.smk), the report's
target registry and the provenance records all take their paths from here, so a file is
always written where its rule declares it and read where it was written.

Every function takes the results root first: a ``Config`` (its ``results/<name>``), a
``Path`` or a ``str``. Given a ``str`` it returns a ``str``, otherwise a ``Path``: the rules
pass ``R`` (a ``str``) and get strings Snakemake can ``expand``, and ``""`` gives the path
relative to the root (the templates of ``uvlm.provenance.UNITS``). Runs, seeds, checkpoints,
spaces and splits may be given as strings, so a Snakemake wildcard such as ``"{run}"`` or
``"{seed}"`` passes through unchanged; a run may also be a ``uvlm.grid.Run`` and a checkpoint
its number k (``ckpt{k:02d}``).

Standard library only (plus ``uvlm.config`` and ``uvlm.grid``): the Snakefile imports this
module while it plans, in an environment that may hold only Snakemake.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from uvlm.config import Config
    from uvlm.grid import Run

RESULTS = "results"  # every config's outputs live in RESULTS/<config name>/
#: the folders DVC versions (docs/design.md §9); the rest is rebuilt from them
STAGES = ("data", "encoders", "runs", "eval", "analysis")
WEIGHTS = "model.safetensors"  # a model folder's weights (checkpoints, encoders, judges)
PROVENANCE = "provenance.json"  # a provenance record beside its artifact (uvlm.provenance)

def results_root(name: str) -> Path:
    """``results/<name>``: where everything a config makes lives (``Config.root``)."""
    return Path(RESULTS) / name


def _join(root, *parts):
    """``root/part/...``: a ``str`` for a ``str`` root, else a ``Path``; empty parts drop."""
    if isinstance(root, str):
        return "/".join(p for p in (root, *parts) if p)
    if not isinstance(root, Path):  # a Config
        root = root.root
    return root.joinpath(*parts)


def _run(run: Run | str) -> str:
    """A name passes through; a grid cell is read where its trained run lives."""
    return run if isinstance(run, str) else run.trained.name


def _seed(seed: int | str) -> str:
    return f"seed{seed}"


def ckpt_name(k: int | str) -> str:
    """``ckpt{k:02d}``, the folder of checkpoint k of K; a string passes through."""
    return k if isinstance(k, str) else f"ckpt{k:02d}"


def checkpoint_numbers(cfg: Config) -> list[int]:
    """1..K: the checkpoints every run saves (``train.checkpoints``)."""
    return list(range(1, cfg.train.checkpoints + 1))


def ckpt_names(cfg: Config) -> list[str]:
    """``ckpt01`` .. ``ckptK``."""
    return [ckpt_name(k) for k in checkpoint_numbers(cfg)]


def config_file(root):
    """The resolved config every rule reads (written by workflow/rules/common.smk)."""
    return _join(root, "config.yaml")


# --------------------------------------------------------------------------- data


def data_dir(root):
    return _join(root, "data")


def data_file(root, name: str):
    """``data/{name}.json``: a split's records (train, test, extra) or, at the llava scale,
    a training file (pretrain, sft-gen-N)."""
    return _join(root, "data", f"{name}.json")


def image_relpath(split: str, image_id: int | str) -> str:
    """An image as the records name it, relative to ``data/``."""
    name = image_id if isinstance(image_id, str) else f"{image_id:06d}"
    return f"images/{split}/{name}.png"


def images_dir(root, split: str):
    return _join(root, "data", "images", split)


def partial_images_dir(root, split: str):
    """Where a split's images are rendered before the folder is renamed into place."""
    return _join(root, "data", "images", f".{split}.partial")


def image_file(root, split: str, image_id: int | str):
    return _join(root, "data", image_relpath(split, image_id))


def attributes_file(root, split: str):
    """``data/attributes/{split}.csv``: the ground truth, one row per image."""
    return _join(root, "data", "attributes", f"{split}.csv")


def variants_dir(root):
    return _join(root, "data", "variants")


def variant_file(root, name: str):
    """``data/variants/{name}.json``: a biased or extra-data training file (or summary)."""
    return _join(root, "data", "variants", f"{name}.json")


def train_data_file(root, variant: str):
    """The records a run trains on: ``data/train.json`` or its variant's file."""
    return data_file(root, "train") if variant == "train" else variant_file(root, variant)


def record(folder):
    """The provenance record beside the artifacts of ``folder`` (a run, eval, judge or
    analysis folder)."""
    return _join(folder, PROVENANCE)


def stage_record(root, stage: str, name: str):
    """``{stage}/provenance/{name}.json``: the provenance record of a data or encoders
    artifact (those folders hold several artifacts side by side)."""
    return _join(root, stage, "provenance", f"{name}.json")


# --------------------------------------------------------------------------- encoders


def encoder_dir(root, name: str):
    """``encoders/{name}/``: the tokenizer, siglip or vq folder."""
    return _join(root, "encoders", name)


def encoder_weights(root, name: str):
    return _join(root, "encoders", name, WEIGHTS)


def tokenizer_file(root):
    return _join(root, "encoders", "tokenizer", "tokenizer.json")


def features_file(root, space: str, split: str):
    """``encoders/features/{space}_{split}.safetensors``: features or codes of a split."""
    return _join(root, "encoders", "features", f"{space}_{split}.safetensors")


def affine_file(root, space: str, strength: float | str):
    """``encoders/affine/{space}_{strength:g}.safetensors``."""
    s = strength if isinstance(strength, str) else f"{strength:g}"
    return _join(root, "encoders", "affine", f"{space}_{s}.safetensors")


# --------------------------------------------------------------------------- runs


def run_dir(root, run: Run | str, seed: int | str):
    """``runs/{run}/seed{s}/``: one training job's outputs."""
    return _join(root, "runs", _run(run), _seed(seed))


def stage_dir(root, run: Run | str, seed: int | str, stage: str):
    """``runs/{run}/seed{s}/{stage}/``: a llava training stage (pretrain, sft)."""
    return _join(root, "runs", _run(run), _seed(seed), stage)


def ckpt_dir(root, run: Run | str, seed: int | str, k: int | str, stage: str = ""):
    """``runs/{run}/seed{s}/[{stage}/]ckpt{k:02d}/``: weights + the resolved config."""
    return _join(root, "runs", _run(run), _seed(seed), stage, ckpt_name(k))


def ckpt_weights(root, run: Run | str, seed: int | str, k: int | str, stage: str = ""):
    return _join(ckpt_dir(root, run, seed, k, stage), WEIGHTS)


def train_log(root, run: Run | str, seed: int | str, stage: str = ""):
    """``runs/{run}/seed{s}/[{stage}/]metrics.jsonl``: the training log."""
    return metrics_log(_join(root, "runs", _run(run), _seed(seed), stage))


def metrics_log(out):
    """The training log in a training job's output folder (``run_dir``, ``stage_dir``)."""
    return _join(out, "metrics.jsonl")


def state_dir(out):
    """A training job's resume scratch in its output folder, removed when it completes."""
    return _join(out, "state")


def state_latest(state):
    """``state/latest.json``: which step folder holds the resume state (switched last)."""
    return _join(state, "latest.json")


def state_step_dir(state, step: int):
    """``state/step{N:08d}/``: the full training state at optimizer step N."""
    return _join(state, f"step{step:08d}")


def _sharded(stem: str, shard: tuple[int, int] | None) -> str:
    """``{stem}.safetensors``, or one process's shards: ``{stem}-rank{r}-of{world}...``."""
    return f"{stem}.safetensors" if shard is None else \
        f"{stem}-rank{shard[0]}-of{shard[1]}.safetensors"


def state_weights(step_dir, shard: tuple[int, int] | None = None):
    """The weights in a resume state's step folder: ``model.safetensors`` (``WEIGHTS``), or
    with ``shard`` = (rank, world) that process's shards, ``model-rank{r}-of{world}``
    (``uvlm.shard``)."""
    return _join(step_dir, WEIGHTS if shard is None else _sharded("model", shard))


def state_optimizer(step_dir, shard: tuple[int, int] | None = None):
    """The AdamW moments in a resume state's step folder: ``optimizer.safetensors``, or one
    process's shards, ``optimizer-rank{r}-of{world}.safetensors``."""
    return _join(step_dir, _sharded("optimizer", shard))


def state_optimizer_groups(step_dir):
    """``optimizer.json``: the optimizer's param groups (one file, written by rank 0)."""
    return _join(step_dir, "optimizer.json")


# --------------------------------------------------------------------------- eval


def eval_run_dir(root, run: Run | str, seed: int | str):
    return _join(root, "eval", _run(run), _seed(seed))


def eval_dir(root, run: Run | str, seed: int | str, k: int | str):
    """``eval/{run}/seed{s}/ckpt{k:02d}/``: one checkpoint's answers, outputs and scores."""
    return _join(root, "eval", _run(run), _seed(seed), ckpt_name(k))


def eval_metrics(root, run: Run | str, seed: int | str, k: int | str):
    return _join(eval_dir(root, run, seed, k), "metrics.json")


def eval_items(root, run: Run | str, seed: int | str, k: int | str):
    """Each section's per-item terms, beside metrics.json (``uvlm.eval.score``)."""
    return _join(eval_dir(root, run, seed, k), "items.json")


def eval_answers(root, run: Run | str, seed: int | str, k: int | str):
    return _join(eval_dir(root, run, seed, k), "answers.jsonl")


def judge_dir(root, judge: str):
    """``eval/judge/{judge}/``: a generation judge (pixels, siglip)."""
    return _join(root, "eval", "judge", judge)


def judge_weights(root, judge: str):
    return _join(root, "eval", "judge", judge, WEIGHTS)


def judge_accuracy(root, judge: str):
    return _join(root, "eval", "judge", judge, "accuracy.json")


def llava_results(root, run: Run | str):
    """lmms-eval's ``*_results.json`` for one llava-scale run, copied to a fixed name."""
    return _join(root, "eval", "llava", _run(run), "results.json")


def llava_raw(root, run: Run | str):
    """lmms-eval's own output folder for one llava-scale run."""
    return _join(root, "eval", "llava", _run(run), "lmms-eval")


# --------------------------------------------------------------------------- analysis


def adapter_probe_dir(root, run: Run | str, seed: int | str):
    return _join(root, "analysis", "adapters", _run(run), _seed(seed))


def adapter_probe(root, run: Run | str, seed: int | str):
    """``analysis/adapters/{run}/seed{s}/probe.json``: finding 3's adapter analysis."""
    return _join(adapter_probe_dir(root, run, seed), "probe.json")


def space_probe_dir(root):
    return _join(root, "analysis", "spaces")


def space_probe(root):
    """``analysis/spaces/probe.json``: what each frozen vision space keeps."""
    return _join(root, "analysis", "spaces", "probe.json")


# --------------------------------------------------------------------------- paper


def paper_dir(root):
    return _join(root, "paper")


def table_files(root, stem: str) -> list:
    """A table's CSV, Markdown and LaTeX files, in that order."""
    return [_join(root, "paper", "tables", f"{stem}.{ext}") for ext in ("csv", "md", "tex")]


def figure_files(root, name: str) -> list:
    """A figure's PNG and PDF files, in that order."""
    return [_join(root, "paper", "figures", f"{name}.{ext}") for ext in ("png", "pdf")]


def findings_file(root):
    return _join(root, "paper", "findings.md")


# --------------------------------------------------------------------------- logs, benchmarks

BENCHMARKS = "benchmarks"  # under a config's results folder (``uvlm.timing`` reads it)


def log_file(root, stage: str, job: str):
    """``logs/{stage}/{job}.log``: one job's log; ``job`` may hold wildcards and folders."""
    return _join(root, "logs", stage, f"{job}.log")


def benchmark_file(root, stage: str, job: str):
    """``benchmarks/{stage}/{job}.tsv``: Snakemake's benchmark of one job (``benchmark:``),
    ``job`` as in its log; one folder per stage, the rows of ``uvlm.timing``."""
    return _join(root, BENCHMARKS, stage, f"{job}.tsv")


def missing_resource_log(file: str) -> str:
    """The log of rule resource_missing, outside every config's folder."""
    return f"{RESULTS}/logs/resource_missing/{file}.log"


def bench_dir(root):
    """``bench/``: the outputs of the bench-* commands (not part of the DAG)."""
    return _join(root, "bench")
