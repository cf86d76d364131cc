# Config validation and the helpers every rule file uses. The grid (which runs exist) comes
# from the importable package, so the DAG and `python -m uvlm` always agree.
import json
import os

import yaml
from snakemake.utils import validate

from uvlm import config as uvlm_config
from uvlm import grid
from uvlm.encoders import space_info
from uvlm.report import experiment_targets
from uvlm.report import targets as report_targets


# The typed config first: its errors name the key and the allowed values. The JSON schema is
# generated from the same dataclasses (tests keep workflow/schemas/ in sync).
CFG = uvlm_config.from_dict(
    config, source=", ".join(map(str, workflow.configfiles)) or "config"
)
validate(config, schema="../schemas/config.schema.yaml")

R = f"results/{CFG.name}"
RUNS = {r.name: r for r in grid.all_runs(CFG)}
SEEDS = CFG.grid.seeds
CKPTS = [f"ckpt{k:02d}" for k in range(1, CFG.train.checkpoints + 1)]

# Rules read the resolved config from one file. It is rewritten only when its content
# changes, so its mtime never triggers reruns; the `params` of each rule (the config
# sections it depends on) decide what reruns when the config changes.
CONFIG_FILE = f"{R}/config.yaml"
_resolved = yaml.safe_dump(uvlm_config.to_dict(CFG), sort_keys=False)
if not os.path.exists(CONFIG_FILE) or open(CONFIG_FILE).read() != _resolved:
    os.makedirs(R, exist_ok=True)
    with open(CONFIG_FILE + ".tmp", "w") as _fh:
        _fh.write(_resolved)
    os.replace(CONFIG_FILE + ".tmp", CONFIG_FILE)


wildcard_constraints:
    split="train|test|extra",
    space="siglip|vq|clip",
    run=r"[A-Za-z0-9_.+-]+",
    seed=r"\d+",


def sections(*names):
    """Params value: the config sections a rule depends on (a change reruns it)."""
    d = uvlm_config.to_dict(CFG)
    return json.dumps({n: d[n] for n in names} | {"seed": CFG.seed}, sort_keys=True)


def uses_extra():
    """The extra image pool exists whenever the config asks for extra one-task data."""
    return bool(CFG.data.extra_generation or CFG.data.extra_understanding)


def splits():
    return ["train", "test"] + (["extra"] if uses_extra() else [])


def spaces():
    return sorted({s for r in RUNS.values() for s in (r.und_space, r.gen_space)})


def features(space, split):
    return f"{R}/encoders/features/{space}_{split}.safetensors"


def train_data(run):
    return (
        f"{R}/data/train.json"
        if run.variant == "train"
        else f"{R}/data/variants/{run.variant}.json"
    )


def vq_weights():
    return f"{R}/encoders/vq/model.safetensors"


def ckpt(run, seed, k):
    return f"{R}/runs/{run}/seed{seed}/{k}/model.safetensors"


def eval_metrics(run, seed):
    return [f"{R}/eval/{run}/seed{seed}/{k}/metrics.json" for k in CKPTS]


def all_ckpts():
    return [ckpt(r, s, k) for r in RUNS for s in SEEDS for k in CKPTS]


def all_eval():
    return [m for r in RUNS for s in SEEDS for m in eval_metrics(r, s)]


def paper_outputs(experiment=None):
    """Outputs of every paper target, or of one experiment's targets."""
    wanted = None if experiment is None else set(experiment_targets(CFG, experiment))
    return [
        str(p)
        for name, files in report_targets(CFG).items()
        if wanted is None or name in wanted
        for p in files.outputs
    ]


def affine_file(space, strength):
    return f"{R}/encoders/affine/{space}_{strength:g}.safetensors"
