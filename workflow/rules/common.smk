# Config validation and the helpers every rule file uses. The grid (which runs exist) comes
# from the importable package, so the DAG and `python -m uvlm` always agree.
import json
import os
import re

import yaml
from snakemake.utils import validate

from uvlm import config as uvlm_config
from uvlm import grid, paths, preflight
from uvlm.report import experiment_targets, read_checkpoints
from uvlm.report import targets as report_targets


# The typed config first: its errors name the key and the allowed values. The JSON schema is
# generated from the same dataclasses (tests keep workflow/schemas/ in sync). Then the checks
# across keys, the same as `python -m uvlm config-schema --check`, before any job is planned.
for _path in workflow.configfiles:
    uvlm_config.read_yaml(_path)  # refuses duplicate keys, which Snakemake's loader keeps
_source = ", ".join(map(str, workflow.configfiles)) or "config"
CFG = uvlm_config.from_dict(config, source=_source)
preflight.check(CFG, _source)
validate(config, schema="../schemas/config.schema.yaml")

R = str(paths.results_root(CFG.name))  # a str: uvlm.paths then gives str paths
RUNS = {r.name: r for r in grid.all_runs(CFG)}
# The llava experiment (a config of its own) trains and evaluates with the rules of llava.smk;
# train_run and eval_run, and the `train` and `eval` targets, serve the other experiments.
LLAVA = "llava" in CFG.grid.experiments
JOBS = [] if LLAVA else grid.jobs(CFG)  # (run, seed) pairs: mutual may have more seeds
CKPTS = paths.ckpt_names(CFG)
# Data and encoder jobs go before any training that is ready to run. A training's priority is
# its estimated cost (train.smk), and Snakemake does not hand a job's priority on to the jobs
# it waits for: in the measured mini grid (README, "Mini scale") the VQ features, which the
# longest runs need, waited behind SigLIP trainings, and the extra-data runs started last.
UPSTREAM_PRIORITY = 1 + max((grid.training_cost(CFG, run) for run, _ in JOBS), default=0.0)

# Rules read the resolved config from one file. It is rewritten only when its content
# changes, so its mtime never triggers reruns; the `params` of each rule (the config
# sections it depends on) decide what reruns when the config changes.
CONFIG_FILE = paths.config_file(R)
_resolved = yaml.safe_dump(uvlm_config.to_dict(CFG), sort_keys=False)
if not os.path.exists(CONFIG_FILE) or open(CONFIG_FILE).read() != _resolved:
    os.makedirs(R, exist_ok=True)
    with open(f"{CONFIG_FILE}.tmp", "w") as _fh:
        _fh.write(_resolved)
    os.replace(f"{CONFIG_FILE}.tmp", CONFIG_FILE)


wildcard_constraints:
    split="train|test|extra",
    space="siglip|vq|clip",
    run=r"[A-Za-z0-9_.+-]+",
    seed=r"\d+",


def benchmark(stage, job):
    """A job's benchmark file (every rule that does work declares one), in the layout
    `python -m uvlm timing` reads: one folder per stage, `job` as in the rule's log."""
    return paths.benchmark_file(R, stage, job)


def log(stage, job):
    """A job's log: `R/logs/{stage}/{job}.log`."""
    return paths.log_file(R, stage, job)


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
    return paths.features_file(R, space, split)


def vq_weights():
    return paths.encoder_weights(R, "vq")


def ckpt(run, seed, k):
    return paths.ckpt_weights(R, run, seed, k)


# Only what a table or figure reads is evaluated: runs read at every checkpoint (the
# data-scale curves) go through eval_run, runs read only at the final one through eval_final.
READ_CKPTS = read_checkpoints(CFG)
FINAL_ONLY = sorted(n for n, ks in READ_CKPTS.items() if ks == {CFG.train.checkpoints})
ALL_CKPTS = sorted(set(READ_CKPTS) - set(FINAL_ONLY))


def one_of(names):
    """A wildcard constraint matching exactly these run names (none: matches nothing)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


def eval_metrics(run, seed):
    ks = CKPTS[-1:] if run in FINAL_ONLY else CKPTS if run in READ_CKPTS else []
    return [paths.eval_metrics(R, run, seed, k) for k in ks]


def all_ckpts():
    return [ckpt(r.name, s, k) for r, s in JOBS for k in CKPTS]


def all_eval():
    return [m for r, s in JOBS for m in eval_metrics(r.name, s)]


def paper_outputs(experiment=None):
    """Outputs of every paper target, or of one experiment's targets."""
    wanted = None if experiment is None else set(experiment_targets(CFG, experiment))
    return [
        str(p)
        for name, files in report_targets(CFG).items()
        if wanted is None or name in wanted
        for p in files.outputs
    ]


def reported(path, target):
    """A paper output as `snakemake --report` shows it: a figure's PNG, a table's CSV and
    findings.md, captioned by workflow/report/<target>.rst; PDF, LaTeX and Markdown copies
    stay plain outputs."""
    category = "Findings" if target == "findings" else {
        ".png": "Figures",
        ".csv": "Tables",
    }.get(os.path.splitext(str(path))[1])
    if category is None:
        return str(path)
    return report(str(path), caption=f"../report/{target}.rst", category=category)


def affine_file(space, strength):
    return paths.affine_file(R, space, strength)


# --------------------------------------------------------------- input functions


def encoder_weights(wildcards):
    if wildcards.space == "vq":
        return [vq_weights()]
    if wildcards.space == "siglip" and CFG.encoders.siglip.source == "train":
        return rules.siglip.output
    return []


def train_inputs(wildcards):
    run = grid.parse_run(wildcards.run)
    needed = {
        "und": [run.und_space],
        "gen": [run.gen_space],
        "mixed": [run.und_space, run.gen_space],
    }
    split = ["train", "extra"] if run.variant.startswith("extra-") else ["train"]
    inputs = {
        "data": paths.train_data_file(R, run.variant),
        "tokenizer": rules.tokenizer.output[0],
        "features": [features(s, sp) for s in sorted(set(needed[run.mode])) for sp in split],
    }
    if "vq" in (run.und_space, run.gen_space):
        inputs["vq"] = vq_weights()
    if run.affine:
        inputs["affine"] = affine_file(run.und_space, run.affine)
    return inputs


def judge_inputs(wildcards):
    inputs = {
        "train": paths.attributes_file(R, "train"),
        "test": paths.attributes_file(R, "test"),
    }
    if wildcards.judge == "pixels":
        inputs["images"] = [paths.images_dir(R, "train"), paths.images_dir(R, "test")]
        # VQ reconstructions: always of the test split, of train when trained on them
        splits = ["train", "test"] if CFG.eval.judge_train_recon else ["test"]
        inputs["vq"] = [vq_weights()] + [features("vq", s) for s in splits]
    else:
        inputs["features"] = [features(wildcards.judge, s) for s in ("train", "test")]
    return inputs


def eval_inputs(wildcards):
    run = grid.parse_run(wildcards.run)
    inputs = {
        "ckpts": [ckpt(wildcards.run, wildcards.seed, k)
                  for k in (CKPTS[-1:] if wildcards.run in FINAL_ONLY else CKPTS)],
        "test": paths.data_file(R, "test"),
        "attributes": paths.attributes_file(R, "test"),
        "tokenizer": rules.tokenizer.output[0],
        "features": sorted({features(run.und_space, "test"), features(run.gen_space, "test")}),
    }
    if run.mode != "und":
        inputs["judge"] = paths.judge_weights(R, grid.JUDGE_OF_SPACE[run.gen_space])
    if "vq" in (run.und_space, run.gen_space):
        inputs["vq"] = vq_weights()
    if run.affine:
        inputs["affine"] = affine_file(run.und_space, run.affine)
    if run.mode != "und" and run.gen_space == "vq" and CFG.eval.inception_weights:
        inputs["inception"] = CFG.eval.inception_weights
    return inputs


def space_probe():
    """What each frozen vision space keeps (not at the llava scale: no features stage)."""
    return [] if LLAVA else [paths.space_probe(R)]


def adapter_probes():
    if "adapters" not in CFG.grid.experiments:
        return []
    return [
        paths.adapter_probe(R, r, s)
        for r in grid.experiment_runs(CFG, "adapters")
        for s in grid.run_seeds(CFG, r)
    ]


def adapter_features(wildcards):
    return features(grid.parse_run(wildcards.run).und_space, "train")
