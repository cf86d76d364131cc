"""Shared test setup."""

import torch

# Tiny models on a 2-core machine: one intra-op thread is faster and keeps parallel test
# processes (and other jobs) from oversubscribing the cores.
torch.set_num_threads(1)


import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = ("Snakefile", "workflow", "config")


def copy_workflow(dest: Path) -> Path:
    """A working copy of the workflow (Snakefile, rules, configs) to run it in isolation."""
    for name in WORKFLOW_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name)
        else:
            shutil.copy2(src, dest / name)
    (dest / "profiles").symlink_to("workflow/profiles")
    return dest


def run_snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    p = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=workdir, env=env,
                       capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed in {workdir}:\n"
                             f"{p.stdout[-5000:]}\n{p.stderr[-5000:]}")
    return p


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """The smoke grid, run once per session to its paper tables; returns the work dir."""
    # through the test SLURM cluster when one is up (tests/test_slurm.py checks that), else
    # locally on 2 cores; the e2e, DVC and SLURM tests all reuse this one run
    from test_slurm import smoke_executor_args

    work = copy_workflow(tmp_path_factory.mktemp("smoke"))
    executor = smoke_executor_args(tmp_path_factory.mktemp("smoke-profile"))
    run_snakemake(work, *executor, "--configfile", "config/smoke.yaml")
    return work
