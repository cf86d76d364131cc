# Stage `train`: one job per (run, seed) of the grid. Each run saves checkpoints at equal
# fractions of its data (the paper's data-scale axis). Only the final checkpoint files are
# declared outputs; the resume state lives in an undeclared scratch folder, so a killed job
# continues instead of restarting.


rule train_run:
    input:
        unpack(train_inputs),
    output:
        ckpts=[ckpt("{run}", "{seed}", k) for k in CKPTS],
        metrics=paths.train_log(R, "{run}", "{seed}"),
    params:
        cfg=CONFIG_FILE,
        # committed accelerate config, always explicit (never the per-user default)
        accelerate=CFG.train.accelerate_config,
        depends=sections("data", "encoders", "model", "train"),
    log:
        log("train", "{run}/seed{seed}"),
    benchmark:
        benchmark("train", "{run}/seed{seed}")
    threads: 1
    # longest runs first (uvlm.grid.training_cost), so the grid does not end on one long run
    priority: lambda wildcards: grid.training_cost(CFG, RUNS[wildcards.run])
    resources:
        gpu=1,
        runtime=CFG.train.runtime_minutes,
    conda:
        "../envs/uvlm.yaml"
    shell:
        "OMP_NUM_THREADS={threads} accelerate launch --config_file {params.accelerate}"
        " -m uvlm train --config {params.cfg} --run {wildcards.run} --seed {wildcards.seed}"
        " > {log} 2>&1"


rule train:
    input:
        all_ckpts(),
