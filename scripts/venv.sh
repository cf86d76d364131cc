# Create or reuse .venv/ at the repository root with the pinned dependencies.
# Sourced by scripts/pipeline.sh and scripts/test.sh; safe to run again (it only reinstalls
# when pyproject.toml changed).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
"$PY" -c 'import sys; assert sys.version_info[:2] >= (3, 11), "uvlm needs Python >= 3.11"' \
    || { echo "error: $PY is older than Python 3.11" >&2; exit 1; }

VENV="$ROOT/.venv"
STAMP="$VENV/.uvlm-installed"
WANT="$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    # torch first, so that the package's `torch==2.13.0` finds it installed and keeps it.
    # From PyPI (the default), torch 2.13.0 for Linux x86_64 is the CUDA 13 build: several GB
    # of nvidia-*-cu13 wheels, and it needs an NVIDIA driver >= 580. UVLM_TORCH_INDEX picks
    # another build from PyTorch's own index (README, "Installing torch"):
    #   UVLM_TORCH_INDEX=https://download.pytorch.org/whl/cpu     a CPU-only laptop (~200 MB)
    #   UVLM_TORCH_INDEX=https://download.pytorch.org/whl/cu1XX   a cluster's CUDA 1X.X
    # It takes effect when .venv/ is made; to switch builds, remove .venv/ first.
    "$VENV/bin/python" -m pip install --quiet "torch==2.13.0" \
        ${UVLM_TORCH_INDEX:+--index-url "$UVLM_TORCH_INDEX"}
    "$VENV/bin/python" -m pip install --quiet -e "$ROOT[test,slurm]"
    echo "$WANT" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
export VIRTUAL_ENV="$VENV"
