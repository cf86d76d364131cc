"""What a run's model and training read from the data and encoders stages.

``load_context`` gives the model its tokenizer, vision spaces, frozen codebook and affine map;
``load_train_inputs`` adds the run's training records (filtered by mode) and the features they
need. Tests and benchmarks build the same objects with ``uvlm.model.synthetic``.
"""

from __future__ import annotations

import torch

from uvlm import paths
from uvlm.config import Config, ConfigError
from uvlm.grid import Run
from uvlm.model.batching import GEN_TASKS, MODE_TASKS
from uvlm.model.unified import ModelContext


def load_context(cfg: Config, run: Run) -> ModelContext:
    from uvlm import encoders

    und, gen = encoders.space_info(cfg, run.und_space), encoders.space_info(cfg, run.gen_space)
    codebook = encoders.load_codebook(cfg) if "vq" in (und.kind, gen.kind) else None
    affine = encoders.load_affine(cfg, run.und_space, run.affine) if run.affine else None
    return ModelContext(encoders.load_tokenizer(cfg), und, gen, codebook, affine,
                        cfg.model.merge(und.kind), cfg.model.merge(gen.kind))


def train_file(cfg: Config, run: Run):
    """``R/data/train.json``, or the run's variant file."""
    return paths.train_data_file(cfg, run.variant)


def mode_records(records: list[dict], run: Run, source: str) -> list[dict]:
    """The records a run trains on: its mode's tasks."""
    keep = [r for r in records if r["task"] in MODE_TASKS[run.mode]]
    if not keep:
        raise ConfigError(f"{source}: no {run.mode} records ({', '.join(MODE_TASKS[run.mode])})")
    return keep


def load_train_inputs(cfg: Config, run: Run):
    """(context, records, features[space][split]) for one run; the features are
    ``FeatureFile``s, read a batch at a time by the ``Batcher``."""
    from uvlm import encoders
    from uvlm.data.records import load_records

    path = train_file(cfg, run)
    records = mode_records(load_records(path), run, str(path))
    ctx = load_context(cfg, run)
    features: dict[str, dict[str, torch.Tensor]] = {}
    for space, tasks in ((ctx.und, False), (ctx.gen, True)):
        splits = sorted({r["split"] for r in records if (r["task"] in GEN_TASKS) == tasks})
        for split in splits:
            # read lazily: each batch reads its rows (docs/design.md §5)
            features.setdefault(space.name, {})[split] = encoders.open_features(
                cfg, space.name, split)
    return ctx, records, features
