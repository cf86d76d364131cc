# Stage `paper`: one rule per table, figure and the findings report, generated from the
# report registry so each output declares exactly the result files it reads. Restyling one
# figure reruns only that figure's rule; nothing here retrains or re-evaluates.

for _name, _target in report_targets(CFG).items():

    rule:
        name:
            f"paper_{_name}"
        input:
            [str(p) for p in _target.inputs],
        output:
            [reported(p, _name) for p in _target.outputs],
        params:
            cfg=CONFIG_FILE,
            target=_name,
        log:
            log("paper", _name),
        benchmark:
            benchmark("paper", _name)
        localrule: True  # seconds of pandas and matplotlib; not worth a cluster job
        conda:
            "../envs/uvlm.yaml"
        shell:
            "python -m uvlm paper --config {params.cfg} --target {params.target} > {log} 2>&1"


rule paper:
    input:
        paper_outputs(),


for _exp in CFG.grid.experiments:

    rule:
        name:
            _exp
        input:
            paper_outputs(_exp),
