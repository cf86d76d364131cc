"""The SLURM workflow profile: well formed on any machine; on a running one-node cluster
(`bash .ci/slurm-up.sh`, which CI runs) workflows go through `--executor slurm` for real,
and a partition that does not exist is refused with a message that names it.

The cluster tests run each entry of CASES through the profile, adapted to the test
cluster's 2 CPUs (see `adapt_profile`). To run another workflow through SLURM, add a Case
(name, `setup(workdir) -> snakemake arguments`, `check(workdir)`) and run it alone with
`pytest tests/test_slurm.py -k <name>`.

The smoke grid is not a Case: it is run once per test session by the `smoke_run` fixture
(tests/conftest.py), which goes through this profile when a cluster is up
(`smoke_executor_args`), so that the end-to-end, DVC and SLURM tests share one run;
`test_smoke_grid_runs_through_slurm_to_the_paper_tables` checks that run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from snakemake.profiles import ProfileConfigFileParser

from conftest import workflow_rules
from test_workflow import TINY_RULES, planned_jobs
from uvlm.config import load
from uvlm.report import targets

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "workflow/profiles/slurm/config.yaml"
CPU_RULE, GPU_RULE = "data_split", "train_run"  # names the profile gives resources to
SMOKE_JOBS = 6  # 2 run on the test cluster's 2 CPUs, the others wait in SLURM's queue


def render(path: Path, monkeypatch, env: dict[str, str] | None = None) -> dict:
    for name in ("UVLM_SLURM_PARTITION", "UVLM_SLURM_ACCOUNT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    with path.open() as fh:
        return dict(ProfileConfigFileParser().parse(fh))


# ------------------------------------------------------------------ any machine

def test_profile_selects_the_plugin_and_gives_gpu_rules_a_gpu(monkeypatch):
    profile = render(PROFILE, monkeypatch)
    assert profile["executor"] == "slurm"
    assert f"{GPU_RULE}:gpu=1" in profile["set-resources"]
    assert "cpus_per_task=threads" in profile["default-resources"]
    # no partition or account unless asked for: the plugin then uses the cluster default
    assert not any(r.startswith(("slurm_partition", "slurm_account"))
                   for r in profile["default-resources"])


def test_profile_takes_partition_and_account_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sinfo here: the name is not checked
    profile = render(PROFILE, monkeypatch,
                     {"UVLM_SLURM_PARTITION": "gpu-a100", "UVLM_SLURM_ACCOUNT": "all"})
    # quoted, so that Snakemake keeps them strings ("all" is also a Python builtin)
    assert "slurm_partition='gpu-a100'" in profile["default-resources"]
    assert "slurm_account='all'" in profile["default-resources"]


def test_every_profile_entry_is_commented():
    """Each top-level key and each entry under it has a comment line just above (or on the
    line); the Python under __definitions__ is exempt."""
    lines = PROFILE.read_text().splitlines()
    in_code, missing = False, []
    for i, line in enumerate(lines):
        indent = len(line) - len(line.lstrip())
        if line.startswith("__definitions__:"):
            in_code = True
        elif indent == 0 and line.strip() and not line.startswith("#"):
            in_code = False
        is_key = re.match(r"^ {0,2}[^\s#-][^:]*:", line)
        if in_code and not line.startswith("__definitions__") or not is_key:
            continue
        above = lines[i - 1].strip() if i else ""
        if not above.startswith("#") and " # " not in line:
            missing.append(f"line {i + 1}: {line.strip()}")
    assert not missing, "entries without a comment:\n" + "\n".join(missing)


def test_profile_names_only_rules_that_exist(monkeypatch):
    """Snakemake silently ignores set-resources for unknown rules: a renamed rule would
    lose its GPU."""
    rules = set(workflow_rules())
    if not rules:
        pytest.skip("workflow/rules/*.smk defines no rules yet")
    profile = render(PROFILE, monkeypatch)
    named = {e.split(":")[0] for e in profile["set-resources"]}
    named |= {e.split("=")[0] for e in profile["set-threads"]}
    assert named <= rules, f"not rules of the workflow: {sorted(named - rules)}"


# ------------------------------------------------------------------ a running cluster

def probe_cluster() -> tuple[str | None, str]:
    """(name of a usable node, "") or (None, why SLURM is not usable here)."""
    if shutil.which("sinfo") is None:
        return None, ("SLURM is not installed (no sinfo); `bash .ci/slurm-up.sh` installs "
                      "Debian's slurmctld/slurmd/munge and starts a one-node cluster (root)")
    try:
        p = subprocess.run(["sinfo", "-h", "-o", "%t %N"], capture_output=True, text=True,
                           timeout=20)
    except subprocess.TimeoutExpired:
        return None, "sinfo did not answer in 20 s: slurmctld is not running"
    if p.returncode != 0:
        return None, (f"slurmctld is not reachable ({p.stderr.strip()}); "
                      "start it with `bash .ci/slurm-up.sh`")
    nodes = [line.split() for line in p.stdout.splitlines() if line.strip()]
    usable = [n for state, n in nodes if state.rstrip("*") in ("idle", "mix", "alloc")]
    if not usable:
        return None, f"no usable SLURM node: sinfo says {p.stdout.strip() or 'nothing'}"
    return usable[0], ""


@pytest.fixture(scope="session")
def cluster() -> str:
    """The name of an idle node, or skip with the reason SLURM is not usable here."""
    node, reason = probe_cluster()
    if node is None:
        pytest.skip(reason)
    return node


def adapt_profile(dest: Path, jobs: int = 2) -> Path:
    """The slurm profile with its sizes scaled to the one-node test cluster (2 CPUs, no
    slurmdbd): every structural setting (executor, partition/account logic, which rules get
    a GPU) stays as committed. Jobs beyond the cluster's 2 CPUs wait in SLURM's queue and
    start as soon as one ends, hiding the plugin's polling interval."""
    profile = yaml.safe_load(PROFILE.read_text())
    profile |= {
        "jobs": jobs,
        "latency-wait": 5,
        "retries": 0,
        "keep-going": False,
        # no accounting database: job states come from squeue (MinJobAge=600 there)
        "slurm-status-command": "squeue",
        "slurm-init-seconds-before-status-checks": 2,
        "slurm-keep-successful-logs": True,
    }
    profile["default-resources"] |= {"mem_mb": 500, "runtime": 10}
    profile["set-threads"] = dict.fromkeys(profile["set-threads"], 1)
    profile["set-resources"] = {
        rule: res | {"mem_mb": 500} | ({"runtime": 10} if "runtime" in res else {})
        for rule, res in profile["set-resources"].items()
    }
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return dest


def smoke_executor_args(profile_dir: Path) -> list[str]:
    """How the session's smoke run (the `smoke_run` fixture, tests/conftest.py) executes:
    through the test cluster when one is up, so that the smoke test below checks it and the
    other smoke tests reuse its results, else locally on 2 cores."""
    node, _ = probe_cluster()
    if node is None:
        return ["--cores", "2"]
    return ["--workflow-profile", str(adapt_profile(profile_dir, jobs=SMOKE_JOBS))]


def snakemake(workdir: Path, profile: Path | str, *args: str, env: dict | None = None):
    env = dict(os.environ, **(env or {}))
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--workflow-profile", str(profile),
         "--directory", str(workdir), *args],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=600)


def scontrol_job(job_id: str) -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "job", job_id, "--oneliner"],
                         capture_output=True, text=True, check=True).stdout
    return dict(f.split("=", 1) for f in out.split() if "=" in f)


@dataclass(frozen=True)
class Case:
    name: str
    setup: Callable[[Path], list[str]]   # writes what it needs; returns snakemake arguments
    check: Callable[[Path], None]        # asserts on the workdir after a successful run


# Each job writes: SLURM job id, partition, and the GPU list SLURM gave it ("none").
REPORT = "echo $SLURM_JOB_ID $SLURM_JOB_PARTITION ${{CUDA_VISIBLE_DEVICES:-none}} > {output}"
TINY_SNAKEFILE = f"""
rule all:
    input: "cpu.txt", "gpu.txt"

rule {CPU_RULE}:
    output: "cpu.txt"
    shell: "{REPORT}"

rule {GPU_RULE}:
    input: "cpu.txt"
    output: "gpu.txt"
    resources: gpu=1
    shell: "{REPORT}"
"""


def tiny_setup(workdir: Path) -> list[str]:
    (workdir / "Snakefile").write_text(TINY_SNAKEFILE)
    return ["--snakefile", str(workdir / "Snakefile")]


def tiny_check(workdir: Path) -> None:
    cpu_job, cpu_part, cpu_dev = (workdir / "cpu.txt").read_text().split()
    gpu_job, gpu_part, gpu_dev = (workdir / "gpu.txt").read_text().split()
    assert cpu_job.isdigit() and gpu_job.isdigit() and cpu_job != gpu_job
    assert cpu_part == gpu_part and cpu_part != ""
    # SLURM allocated the GPU (the test cluster's is a stand-in): it sets the device list
    assert cpu_dev == "none" and gpu_dev != "none"
    for job_id in (cpu_job, gpu_job):
        assert scontrol_job(job_id)["JobState"] == "COMPLETED"
    # the profile's `gpu: 1` became `sbatch --gpus=1`; the CPU rule asked for none
    assert scontrol_job(gpu_job).get("TresPerJob") == "gres:gpu:1"
    assert "TresPerJob" not in scontrol_job(cpu_job)


CASES = [Case("tiny", tiny_setup, tiny_check)]


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_workflow_runs_through_slurm(case, cluster, tmp_path):
    profile = adapt_profile(tmp_path / "profile")
    workdir = tmp_path / "work"
    workdir.mkdir()
    args = case.setup(workdir)
    p = snakemake(workdir, profile, *args)
    assert p.returncode == 0, f"{p.stdout[-3000:]}\n{p.stderr[-6000:]}"
    assert "has been submitted with SLURM jobid" in p.stdout + p.stderr
    case.check(workdir)


def test_partition_typo_is_refused_before_any_job(cluster, tmp_path):
    profile = adapt_profile(tmp_path / "profile")
    (tmp_path / "Snakefile").write_text(TINY_SNAKEFILE)
    p = snakemake(tmp_path, profile, "--snakefile", str(tmp_path / "Snakefile"),
                  env={"UVLM_SLURM_PARTITION": "no-such-partition"})
    out = p.stdout + p.stderr
    assert p.returncode != 0
    assert "UVLM_SLURM_PARTITION='no-such-partition' is not a partition of this cluster" in out
    assert "sinfo lists:" in out and "submitted" not in out
    assert not (tmp_path / "cpu.txt").exists()


def test_partition_set_elsewhere_is_refused_by_sbatch_with_its_name(cluster, tmp_path):
    """A partition from --default-resources or a rule bypasses the profile's check; the
    plugin then reports sbatch's refusal, naming the partition, and nothing runs."""
    profile = adapt_profile(tmp_path / "profile")
    (tmp_path / "Snakefile").write_text(TINY_SNAKEFILE)
    p = snakemake(tmp_path, profile, "--snakefile", str(tmp_path / "Snakefile"),
                  "--default-resources", "slurm_partition='no-such-partition'", "mem_mb=500",
                  "runtime=10")
    out = p.stdout + p.stderr
    assert p.returncode != 0
    assert "SLURM sbatch failed" in out
    assert "invalid partition specified: no-such-partition" in out
    assert not (tmp_path / "cpu.txt").exists()


@pytest.mark.slow
def test_smoke_grid_runs_through_slurm_to_the_paper_tables(cluster, smoke_run):
    """The session's smoke run went through the slurm profile (see smoke_executor_args):
    every job of the grid ran, each one that is not a local rule as one SLURM job, the GPU
    rules asked for a GPU, and every paper table and figure was built."""
    slurm_logs = smoke_run / ".snakemake/slurm_logs"  # kept: slurm-keep-successful-logs
    assert slurm_logs.is_dir(), "the smoke_run fixture did not use smoke_executor_args"
    head_log = sorted((smoke_run / ".snakemake/log").glob("*.snakemake.log"))[0]  # the run's
    started = re.findall(r"^(local)?rule (\w+):$", head_log.read_text(), flags=re.M)
    plan = planned_jobs(snakemake(smoke_run, "none", "-n", "--forceall",
                                  "--configfile=config/smoke.yaml").stdout)
    plan.pop("total")
    assert Counter(rule for _, rule in started) == plan
    remote = Counter(rule for local, rule in started if not local)
    assert {"data_split", "features", "train_run", "eval_run", "judge"} <= set(remote)
    assert not {r for r in remote if r in TINY_RULES or r.startswith("paper_")}, remote
    job_logs = sorted(slurm_logs.rglob("*.log"))
    assert Counter(p.relative_to(slurm_logs).parts[0].removeprefix("rule_")
                   for p in job_logs) == remote
    profile = yaml.safe_load(PROFILE.read_text())
    gpu_rules = {rule for rule, res in profile["set-resources"].items() if res.get("gpu")}
    for log in job_logs:
        text = log.read_text()
        assert "1 of 1 steps (100%) done" in text, f"{log}:\n{text[-2000:]}"
        if log.relative_to(slurm_logs).parts[0].removeprefix("rule_") in gpu_rules:
            assert re.search(r"resources: .*\bgpu=1\b", text), log
    cfg = load(smoke_run / "config/smoke.yaml")
    for target in targets(cfg).values():
        for out in target.outputs:
            assert (smoke_run / out).stat().st_size > 0, out
