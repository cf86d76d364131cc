# Stage `data`: rendered smart-watch images, LLaVA-format text tasks, ground-truth tables
# and the training-data variants (biased understanding data, extra one-task data).


rule data_split:
    output:
        json=paths.data_file(R, "{split}"),
        attributes=paths.attributes_file(R, "{split}"),
        images=directory(paths.images_dir(R, "{split}")),
    params:
        cfg=CONFIG_FILE,
        depends=sections("data"),
    log:
        log("data", "{split}"),
    benchmark:
        benchmark("data", "{split}")
    threads: 16  # capped at --cores locally; the slurm profile sets its own
    priority: UPSTREAM_PRIORITY
    conda:
        "../envs/uvlm.yaml"
    shell:
        "python -m uvlm data --config {params.cfg} --split {wildcards.split} > {log} 2>&1"


rule data_variants:
    input:
        train=paths.data_file(R, "train"),
        extra=paths.data_file(R, "extra") if uses_extra() else [],
    output:
        [paths.variant_file(R, name) for name in grid.data_variants(CFG)],
    params:
        cfg=CONFIG_FILE,
        depends=sections("data"),
    log:
        log("data", "variants"),
    benchmark:
        benchmark("data", "variants")
    localrule: True  # seconds of JSON; not worth a cluster job
    priority: UPSTREAM_PRIORITY
    conda:
        "../envs/uvlm.yaml"
    shell:
        "python -m uvlm data-variants --config {params.cfg} > {log} 2>&1"


rule data:
    input:
        [paths.data_file(R, split) for split in splits()],
        rules.data_variants.output,
