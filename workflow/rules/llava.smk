# The llava experiment (config/llava.yaml; docs/paper.md §5, README "LLaVA experiment"): ShareGPT4V
# captions turned into text-to-image samples and mixed into LLaVA-1.5's two training stages,
# each run evaluated by lmms-eval; the paper rules turn the results into table_llava.
# Inputs from outside the workflow (the three JSON files, the image folder, Vicuna, CLIP,
# LlamaGen's VQ) are declared where they are local paths (llava_common.smk).


rule llava_data:
    input:
        llava_data_inputs,
    output:
        paths.data_file(R, "{name}"),
    params:
        cfg=CONFIG_FILE,
        depends=llava_data_depends,
    log:
        log("llava", "data_{name}"),
    benchmark:
        benchmark("llava", "data_{name}")
    wildcard_constraints:
        name=r"pretrain|sft-gen-\d+",
    conda:
        "../envs/uvlm.yaml"
    shell:
        "python -m uvlm llava-data --config {params.cfg} --only {wildcards.name} > {log} 2>&1"


rule llava_pretrain:
    # stage 1: adapters and image head on the frozen LLM, one per stage-1 run
    # (uvlm.llava.pretrain_run), shared by the runs of its architecture
    input:
        unpack(llava_pretrain_inputs),
    output:
        ckpts=llava_stage_ckpts("pretrain"),
        metrics=paths.train_log(R, "{run}", "{seed}", "pretrain"),
    params:
        cfg=CONFIG_FILE,
        accelerate=CFG.train.accelerate_config,
        depends=llava_pretrain_depends,
    log:
        log("llava", "pretrain_{run}_seed{seed}"),
    benchmark:
        benchmark("llava", "pretrain_{run}_seed{seed}")
    threads: 1
    resources:
        gpu=accelerate_gpus(CFG.train.accelerate_config),
        runtime=CFG.llava.pretrain.runtime_minutes,
    conda:
        "../envs/uvlm.yaml"
    shell:
        "OMP_NUM_THREADS={threads} accelerate launch --config_file {params.accelerate}"
        " -m uvlm llava-train --config {params.cfg} --stage pretrain --run {wildcards.run}"
        " --seed {wildcards.seed} > {log} 2>&1"


rule llava_sft:
    # stage 2: the whole model, from the last checkpoint of its stage-1 run
    input:
        unpack(llava_sft_inputs),
    output:
        ckpts=llava_stage_ckpts("sft"),
        metrics=paths.train_log(R, "{run}", "{seed}", "sft"),
    params:
        cfg=CONFIG_FILE,
        accelerate=CFG.train.accelerate_config,
        depends=llava_sft_depends,
    log:
        log("llava", "sft_{run}_seed{seed}"),
    benchmark:
        benchmark("llava", "sft_{run}_seed{seed}")
    threads: 1
    resources:
        gpu=accelerate_gpus(CFG.train.accelerate_config),
        runtime=CFG.train.runtime_minutes,
    conda:
        "../envs/uvlm.yaml"
    shell:
        "OMP_NUM_THREADS={threads} accelerate launch --config_file {params.accelerate}"
        " -m uvlm llava-train --config {params.cfg} --stage sft --run {wildcards.run}"
        " --seed {wildcards.seed} > {log} 2>&1"


rule llava_eval:
    # lmms-eval (an external tool; README, "LLaVA experiment"), batch 1, greedy; its
    # *_results.json is copied to where the report reads it
    input:
        unpack(llava_eval_inputs),
    output:
        paths.llava_results(R, "{run}"),
    params:
        cfg=CONFIG_FILE,
        checkpoint=llava_checkpoint_dir,
        raw=paths.llava_raw(R, "{run}"),
        tasks=",".join(CFG.llava.tasks),
        depends=llava_eval_depends,
    log:
        log("llava", "eval_{run}"),
    benchmark:
        benchmark("llava", "eval_{run}")
    threads: 1
    resources:
        gpu=1,
    conda:
        "../envs/uvlm.yaml"
    shell:
        "rm -rf {params.raw} && python -m uvlm lmms-eval --model uvlm"
        " --model_args checkpoint={params.checkpoint} --tasks {params.tasks} --batch_size 1"
        " --output_path {params.raw} --log_samples > {log} 2>&1"
        " && python -m uvlm llava-results --config {params.cfg} --run {wildcards.run}"
        " --raw {params.raw} >> {log} 2>&1"
