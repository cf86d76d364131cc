# Stage `encoders`: the vision spaces (pretrained at paper scale, trained here at tiny
# scales), the tokenizer, the per-image features or VQ codes every training run reads, and
# the fixed affine distortions of the alignment experiment.


rule tokenizer:
    input:
        paths.data_file(R, "train"),
    output:
        paths.tokenizer_file(R),
    params:
        cfg=CONFIG_FILE,
        depends=sections("data", "encoders", "model"),
    log:
        log("encoders", "tokenizer"),
    benchmark:
        benchmark("encoders", "tokenizer")
    localrule: True  # seconds; not worth a cluster job
    priority: UPSTREAM_PRIORITY
    conda:
        "../envs/uvlm.yaml"
    shell:
        "python -m uvlm encoders-tokenizer --config {params.cfg} > {log} 2>&1"


rule siglip:
    input:
        data=paths.data_file(R, "train"),
        tokenizer=rules.tokenizer.output,
    output:
        paths.encoder_weights(R, "siglip"),
    params:
        cfg=CONFIG_FILE,
        depends=sections("data", "encoders"),
    log:
        log("encoders", "siglip"),
    threads: 1
    resources:
        gpu=1 if CFG.encoders.siglip.source == "train" else 0,
    priority: UPSTREAM_PRIORITY
    conda:
        "../envs/uvlm.yaml"
    benchmark:
        benchmark("encoders", "siglip")
    shell:
        "OMP_NUM_THREADS={threads} python -m uvlm encoders-siglip --config {params.cfg} > {log} 2>&1"


rule vq:
    input:
        # paper scale converts LlamaGen's checkpoint; tiny scales train on the train split
        (
            CFG.encoders.vq.path
            if CFG.encoders.vq.source == "pretrained"
            else paths.data_file(R, "train")
        ),
    output:
        vq_weights(),
    params:
        cfg=CONFIG_FILE,
        depends=sections("data", "encoders"),
    log:
        log("encoders", "vq"),
    threads: 1
    resources:
        gpu=1 if CFG.encoders.vq.source == "train" else 0,
    priority: UPSTREAM_PRIORITY
    conda:
        "../envs/uvlm.yaml"
    benchmark:
        benchmark("encoders", "vq")
    shell:
        "OMP_NUM_THREADS={threads} python -m uvlm encoders-vq --config {params.cfg} > {log} 2>&1"


rule features:
    input:
        data=paths.data_file(R, "{split}"),
        weights=encoder_weights,
    output:
        features("{space}", "{split}"),
    params:
        cfg=CONFIG_FILE,
        depends=sections("data", "encoders"),
    log:
        log("encoders", "features_{space}_{split}"),
    benchmark:
        benchmark("encoders", "features_{space}_{split}")
    threads: 1
    resources:
        gpu=1,
    priority: UPSTREAM_PRIORITY
    conda:
        "../envs/uvlm.yaml"
    shell:
        "OMP_NUM_THREADS={threads} python -m uvlm encoders-features --config {params.cfg} --space {wildcards.space}"
        " --split {wildcards.split} > {log} 2>&1"


rule affine:
    output:
        [affine_file("vq", s) for s in CFG.encoders.affine.vq_sigmas],
        [affine_file("siglip", k) for k in CFG.encoders.affine.siglip_ks],
    params:
        cfg=CONFIG_FILE,
        depends=sections("encoders"),
    log:
        log("encoders", "affine"),
    benchmark:
        benchmark("encoders", "affine")
    localrule: True  # a few random matrices; not worth a cluster job
    priority: UPSTREAM_PRIORITY
    conda:
        "../envs/uvlm.yaml"
    shell:
        "python -m uvlm encoders-affine --config {params.cfg} > {log} 2>&1"


rule encoders:
    input:
        rules.tokenizer.output,
        expand(features("{space}", "{split}"), space=spaces(), split=splits()),
        rules.affine.output,


rule resource_missing:
    # Pretrained weights under resources/ (LlamaGen's vq_ds16_c2i.pt, pytorch-fid's Inception
    # weights) cannot be downloaded at run time. A dry run plans this job; a real run stops
    # here, before any training, naming the file and where to get it (README, "Paper scale").
    output:
        "resources/{file}",
    log:
        paths.missing_resource_log("{file}"),
    localrule: True  # fails at once, on the machine the user watches
    conda:
        "../envs/uvlm.yaml"
    shell:
        "echo 'missing resources/{wildcards.file}: download it (see README, \"Paper scale\")"
        " and place it there, or point the config at its path' | tee {log} >&2; exit 1"
