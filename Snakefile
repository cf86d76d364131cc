# uvlm: the paper's grid of datasets, vision spaces, training runs, evaluations, tables and
# figures as file targets. Pick a scale with `--configfile config/<scale>.yaml` (default:
# config/config.yaml, the mini scale); outputs go to results/<config name>/.
#
#   snakemake --cores all                 # everything for the config (rule all)
#   snakemake --cores all data            # one stage: data encoders train eval analysis paper
#   snakemake --cores all mutual          # one experiment's tables and figures


# Only load the default when no --configfile is given: Snakemake merges a `configfile:`
# directive with command-line config files key by key, which would leak mini-scale values
# into the smoke or paper configs.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/encoders.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/eval.smk"
include: "workflow/rules/paper.smk"
include: "workflow/rules/llava_common.smk"
include: "workflow/rules/llava.smk"


report: "workflow/report/workflow.rst"


rule all:
    default_target: True
    input:
        paper_outputs(),
