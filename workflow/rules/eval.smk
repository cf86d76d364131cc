# Stages `eval` and `analysis`: every checkpoint a table or figure reads is answered and
# scored (VQA under both protocols, captions, generation judged from pixels or features,
# FID); the adapter analysis of finding 3. Evaluation reads checkpoints and never retrains.

rule judge:
    input:
        unpack(judge_inputs),
    output:
        model=paths.judge_weights(R, "{judge}"),
        accuracy=paths.judge_accuracy(R, "{judge}"),
    params:
        cfg=CONFIG_FILE,
        depends=sections("data", "encoders", "eval"),
    log:
        log("eval", "judge_{judge}"),
    benchmark:
        benchmark("eval", "judge_{judge}")
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


# Two rules of one shape: eval_run answers every checkpoint of the runs whose data-scale
# curves are read, eval_final only the final checkpoint of the runs read nowhere else.
for _name, _names, _ks in (("eval_run", ALL_CKPTS, CKPTS), ("eval_final", FINAL_ONLY, CKPTS[-1:])):

    rule:
        name:
            _name
        input:
            unpack(eval_inputs),
        output:
            metrics=[paths.eval_metrics(R, "{run}", "{seed}", k) for k in _ks],
            answers=[paths.eval_answers(R, "{run}", "{seed}", k) for k in _ks],
            item_terms=[paths.eval_items(R, "{run}", "{seed}", k) for k in _ks],
        params:
            cfg=CONFIG_FILE,
            depends=sections("data", "encoders", "model", "train", "eval"),
            which="all" if _ks == CKPTS else "final",
        log:
            log("eval", "{run}/seed{seed}"),
        benchmark:
            benchmark("eval", "{run}/seed{seed}")
        wildcard_constraints:
            run=one_of(_names),
        threads: 1
        resources:
            gpu=1,
        conda:
            "../envs/uvlm.yaml"
        shell:
            "OMP_NUM_THREADS={threads} python -m uvlm evaluate --config {params.cfg}"
            " --run {wildcards.run} --seed {wildcards.seed}"
            " --checkpoints {params.which} > {log} 2>&1"


rule eval:
    input:
        all_eval(),


rule analyze_adapters:
    input:
        ckpt=ckpt("{run}", "{seed}", CKPTS[-1]),
        attributes=paths.attributes_file(R, "train"),
        features=adapter_features,
    output:
        paths.adapter_probe(R, "{run}", "{seed}"),
    params:
        cfg=CONFIG_FILE,
        depends=sections("data", "encoders", "model", "train", "eval"),
    log:
        log("analysis", "{run}/seed{seed}"),
    benchmark:
        benchmark("analysis", "{run}/seed{seed}")
    threads: 1
    conda:
        "../envs/uvlm.yaml"
    shell:
        "OMP_NUM_THREADS={threads} python -m uvlm analyze-adapters --config {params.cfg}"
        " --run {wildcards.run} --seed {wildcards.seed} > {log} 2>&1"


rule probe_spaces:
    input:
        attributes=[paths.attributes_file(R, s) for s in ("train", "test")],
        images=[paths.images_dir(R, s) for s in ("train", "test")],
        features=[features(sp, s) for sp in spaces() for s in ("train", "test")],
    output:
        paths.space_probe(R),
    params:
        cfg=CONFIG_FILE,
        depends=sections("data", "encoders", "eval"),
    log:
        log("analysis", "probe_spaces"),
    benchmark:
        benchmark("analysis", "probe_spaces")
    threads: 1
    conda:
        "../envs/uvlm.yaml"
    shell:
        "OMP_NUM_THREADS={threads} python -m uvlm probe-spaces --config {params.cfg}"
        " > {log} 2>&1"


rule analysis:
    input:
        space_probe(),
        adapter_probes(),
