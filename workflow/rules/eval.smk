# Stages `eval` and `analysis`: every checkpoint is answered and scored (VQA under both
# protocols, captions, generation judged from pixels or features, FID); the adapter
# analysis of finding 3. Evaluation reads checkpoints and never retrains.

def judge_for(space):
    """The judge that reads a generation space's outputs: VQ codes are decoded to pixels."""
    return {"vq": "pixels", "siglip": "siglip"}[space]


def judge_inputs(wildcards):
    inputs = {
        "train": f"{R}/data/attributes/train.csv",
        "test": f"{R}/data/attributes/test.csv",
    }
    if wildcards.judge == "pixels":
        inputs["images"] = [f"{R}/data/images/train", f"{R}/data/images/test"]
        # VQ reconstructions: always of the test split, of train when trained on them
        splits = ["train", "test"] if CFG.eval.judge_train_recon else ["test"]
        inputs["vq"] = [vq_weights()] + [features("vq", s) for s in splits]
    else:
        inputs["features"] = [features(wildcards.judge, s) for s in ("train", "test")]
    return inputs


rule judge:
    input:
        unpack(judge_inputs),
    output:
        model=f"{R}/eval/judge/{{judge}}/model.safetensors",
        accuracy=f"{R}/eval/judge/{{judge}}/accuracy.json",
    params:
        cfg=CONFIG_FILE,
        depends=sections("data", "encoders", "eval"),
    log:
        f"{R}/logs/eval/judge_{{judge}}.log",
    wildcard_constraints:
        judge="pixels|siglip",
    threads: 1
    resources:
        gpu=1,
    conda:
        "../envs/uvlm.yaml"
    shell:
        "OMP_NUM_THREADS={threads} python -m uvlm judge-train --config {params.cfg}"
        " --space {wildcards.judge} > {log} 2>&1"


def eval_inputs(wildcards):
    run = grid.parse_run(wildcards.run)
    inputs = {
        "ckpts": [ckpt(wildcards.run, wildcards.seed, k) for k in CKPTS],
        "test": f"{R}/data/test.json",
        "attributes": f"{R}/data/attributes/test.csv",
        "tokenizer": rules.tokenizer.output[0],
        "features": sorted({features(run.und_space, "test"), features(run.gen_space, "test")}),
    }
    if run.mode != "und":
        inputs["judge"] = f"{R}/eval/judge/{judge_for(run.gen_space)}/model.safetensors"
    if "vq" in (run.und_space, run.gen_space):
        inputs["vq"] = vq_weights()
    if run.affine:
        inputs["affine"] = affine_file(run.und_space, run.affine)
    return inputs


rule eval_run:
    input:
        unpack(eval_inputs),
    output:
        metrics=[f"{R}/eval/{{run}}/seed{{seed}}/{k}/metrics.json" for k in CKPTS],
        answers=[f"{R}/eval/{{run}}/seed{{seed}}/{k}/answers.jsonl" for k in CKPTS],
    params:
        cfg=CONFIG_FILE,
        depends=sections("data", "encoders", "model", "train", "eval"),
    log:
        f"{R}/logs/eval/{{run}}/seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/eval/{{run}}/seed{{seed}}.tsv"
    threads: 1
    resources:
        gpu=1,
    conda:
        "../envs/uvlm.yaml"
    shell:
        "OMP_NUM_THREADS={threads} python -m uvlm evaluate --config {params.cfg}"
        " --run {wildcards.run} --seed {wildcards.seed} > {log} 2>&1"


rule eval:
    input:
        all_eval(),


def adapter_runs():
    if "adapters" not in CFG.grid.experiments:
        return []
    return [r.name for r in grid.experiment_runs(CFG, "adapters")]


def adapter_features(wildcards):
    return features(grid.parse_run(wildcards.run).und_space, "train")


rule analyze_adapters:
    input:
        ckpt=ckpt("{run}", "{seed}", CKPTS[-1]),
        attributes=f"{R}/data/attributes/train.csv",
        features=adapter_features,
    output:
        f"{R}/analysis/adapters/{{run}}/seed{{seed}}/probe.json",
    params:
        cfg=CONFIG_FILE,
        depends=sections("data", "encoders", "model", "train", "eval"),
    log:
        f"{R}/logs/analysis/{{run}}/seed{{seed}}.log",
    threads: 1
    conda:
        "../envs/uvlm.yaml"
    shell:
        "OMP_NUM_THREADS={threads} python -m uvlm analyze-adapters --config {params.cfg}"
        " --run {wildcards.run} --seed {wildcards.seed} > {log} 2>&1"


rule analysis:
    input:
        expand(
            f"{R}/analysis/adapters/{{run}}/seed{{seed}}/probe.json",
            run=adapter_runs(),
            seed=SEEDS,
        ),
