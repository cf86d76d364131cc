#!/usr/bin/env bash
# Snakemake runs this once inside a freshly created workflow/envs/uvlm.yaml environment
# (`--sdm conda`), from the workflow's working directory. It installs the uvlm package
# editable and without dependencies (the environment file pins them), so rules see the
# current source without rebuilding the environment.
# The repository is UVLM_SRC if set, else the git checkout around the working directory.
set -euo pipefail
src="${UVLM_SRC:-$(git rev-parse --show-toplevel 2>/dev/null || pwd)}"
if ! grep -qs '^name = "uvlm"' "$src/pyproject.toml"; then
    echo "uvlm post-deploy: $src/pyproject.toml is not the uvlm package;" \
        "run snakemake from the repository or set UVLM_SRC=/path/to/uvlm" >&2
    exit 1
fi
python -m pip install --no-deps -e "$src"
