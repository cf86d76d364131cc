# Stages `eval` and `analysis`: every checkpoint is answered and scored (VQA under both
# protocols, captions, generation judged from pixels or features, FID); the adapter
# analysis of finding 3. Evaluation reads checkpoints and never retrains.

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
        adapter_probes(),
