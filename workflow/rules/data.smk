# Stage `data`: rendered smart-watch images, LLaVA-format text tasks, ground-truth tables
# and the training-data variants (biased understanding data, extra one-task data).


rule data_split:
    output:
        json=f"{R}/data/{{split}}.json",
        attributes=f"{R}/data/attributes/{{split}}.csv",
        images=directory(f"{R}/data/images/{{split}}"),
    params:
        cfg=CONFIG_FILE,
        depends=sections("data"),
    log:
        f"{R}/logs/data/{{split}}.log",
    benchmark:
        benchmark("data", "{split}")
    threads: 16  # capped at --cores locally; the slurm profile sets its own
    conda:
        "../envs/uvlm.yaml"
    shell:
        "python -m uvlm data --config {params.cfg} --split {wildcards.split} > {log} 2>&1"


rule data_variants:
    input:
        train=f"{R}/data/train.json",
        extra=f"{R}/data/extra.json" if uses_extra() else [],
    output:
        expand(f"{R}/data/variants/{{name}}.json", name=grid.data_variants(CFG)),
    params:
        cfg=CONFIG_FILE,
        depends=sections("data"),
    log:
        f"{R}/logs/data/variants.log",
    benchmark:
        benchmark("data", "variants")
    localrule: True  # seconds of JSON; not worth a cluster job
    conda:
        "../envs/uvlm.yaml"
    shell:
        "python -m uvlm data-variants --config {params.cfg} > {log} 2>&1"


rule data:
    input:
        expand(f"{R}/data/{{split}}.json", split=splits()),
        rules.data_variants.output,
