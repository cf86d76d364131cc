#!/usr/bin/env bash
# Set up .venv/ and run the default pipeline (mini scale) to the paper's tables and figures.
# Extra arguments go to snakemake, e.g. `bash scripts/pipeline.sh --configfile config/smoke.yaml`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"
cd "$ROOT"
exec snakemake --cores all "$@"
