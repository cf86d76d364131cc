"""Shared test setup."""

import torch

# Tiny models on a 2-core machine: one intra-op thread is faster and keeps parallel test
# processes (and other jobs) from oversubscribing the cores.
torch.set_num_threads(1)


import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = ("workflow", "config")


def copy_workflow(dest: Path) -> Path:
    """A working copy of the workflow (workflow/Snakefile, rules, profiles, configs) to run it
    in isolation; its jobs and the Snakefile use the installed uvlm."""
    for name in WORKFLOW_FILES:
        shutil.copytree(ROOT / name, dest / name)
    return dest


# The rules of the workflow as Snakemake parses it (rules made in a loop included), with
# what the tests check on each; printed as JSON by a child process (Snakemake's API keeps
# global state).
RULES_OF = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

with SnakemakeApi(OutputSettings()) as api:
    wf = api.workflow(resource_settings=ResourceSettings(), snakefile=Path("workflow/Snakefile"),
                      config_settings=ConfigSettings(configfiles=[Path(sys.argv[1])]))._workflow
    print(json.dumps({r.name: {"local": r.name in wf._localrules, "norun": r.norun,
                               "benchmark": str(r.benchmark or "")} for r in wf.rules}))
"""


def workflow_rules(configfile: str = "config/smoke.yaml") -> dict[str, dict]:
    """{rule name: {"local", "norun", "benchmark"}} of the workflow under ``configfile``."""
    p = subprocess.run([sys.executable, "-c", RULES_OF, configfile], cwd=ROOT,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.splitlines()[-1])


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
