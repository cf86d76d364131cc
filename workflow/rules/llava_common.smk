# Helpers of the llava experiment's rules (llava.smk). The config values each job reads (its
# params `depends`) come from uvlm.llava, so a changed value reruns exactly the jobs that read
# it (e.g. another lmms-eval task list re-evaluates and never retrains).
from uvlm import llava as uvlm_llava

LLAVA_SEED = CFG.grid.seeds[0]  # the llava experiment has one seed (checked by the config)


def accelerate_gpus(path):
    """GPUs an accelerate config launches processes on (0 for a CPU config)."""
    with open(path) as fh:
        conf = yaml.safe_load(fh)
    return 0 if conf.get("use_cpu", False) else int(conf.get("num_processes", 1))


def external(path, folder=False):
    """An input from outside the workflow, declared when it is a local path: absolute, or
    under resources/ (a missing one there stops the run in rule resource_missing). A hub id
    such as lmsys/vicuna-7b-v1.5 is read by transformers at run time and not tracked. The
    mtime of a folder changes with any file in it, so folders never trigger a rerun."""
    if not (os.path.isabs(path) or path.startswith("resources/")):
        return []
    return [ancient(path)] if folder else [path]


def llava_models(run):
    """The LLM and the run's frozen towers, as inputs."""
    inputs = external(CFG.model.llm.path, folder=True)
    if "clip" in (run.und_space, run.gen_space):
        inputs += external(CFG.encoders.clip.path, folder=True)
    if "vq" in (run.und_space, run.gen_space):
        inputs += external(CFG.encoders.vq.path)
    return inputs


def llava_stage_ckpts(stage):
    """Outputs of a training stage: its checkpoints (the last one is what the next reads)."""
    return [paths.ckpt_weights(R, "{run}", "{seed}", k, stage) for k in CKPTS]


def llava_data_inputs(wildcards):
    ll = CFG.llava
    source = ll.pretrain_json if wildcards.name == "pretrain" else ll.sft_json
    return external(ll.sharegpt4v_json) + external(source)


def llava_data_depends(wildcards):
    return uvlm_llava.as_param(uvlm_llava.data_depends(CFG, wildcards.name))


def llava_train_inputs(wildcards, stage):
    run = grid.parse_run(wildcards.run)
    inputs = {
        "data": paths.data_file(R, uvlm_llava.stage_data(CFG, stage, run)),
        "images": external(CFG.llava.image_folder, folder=True),
        "models": llava_models(run),
    }
    if stage == "sft":
        stage1 = uvlm_llava.pretrain_run(run)
        inputs["init"] = paths.ckpt_weights(R, stage1, wildcards.seed, CKPTS[-1], "pretrain")
    return inputs


def llava_pretrain_inputs(wildcards):
    return llava_train_inputs(wildcards, "pretrain")


def llava_sft_inputs(wildcards):
    return llava_train_inputs(wildcards, "sft")


def llava_pretrain_depends(wildcards):
    run = grid.parse_run(wildcards.run)
    return uvlm_llava.as_param(uvlm_llava.train_depends(CFG, "pretrain", run))


def llava_sft_depends(wildcards):
    run = grid.parse_run(wildcards.run)
    return uvlm_llava.as_param(uvlm_llava.train_depends(CFG, "sft", run))


def llava_eval_inputs(wildcards):
    run = grid.parse_run(wildcards.run)
    return {
        "ckpt": paths.ckpt_weights(R, run, LLAVA_SEED, CKPTS[-1], "sft"),
        "models": llava_models(run),
    }


def llava_eval_depends(wildcards):
    return uvlm_llava.as_param(uvlm_llava.eval_depends(CFG, grid.parse_run(wildcards.run)))


def llava_checkpoint_dir(wildcards, input):
    """The checkpoint folder lmms-eval loads (config.yaml beside model.safetensors)."""
    return os.path.dirname(input.ckpt)
