"""The Snakemake DAG: every config plans, bad configs are refused before any job runs."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def snakemake(*args, cwd=ROOT, check=True):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    p = subprocess.run([*SNAKEMAKE, *args], cwd=cwd, env=env, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{p.stdout}\n{p.stderr}")
    return p


def planned_jobs(output: str) -> dict[str, int]:
    """Parse the job-count table of `snakemake -n` into {rule: count}."""
    counts, in_table = {}, False
    for line in output.splitlines():
        parts = line.split()
        if parts[:2] == ["job", "count"]:
            in_table = True
            continue
        if in_table:
            if len(parts) == 2 and parts[1].isdigit():
                counts[parts[0]] = int(parts[1])
            elif parts and not set(parts[0]) <= {"-"}:
                in_table = False
    return counts


@pytest.mark.parametrize("cfg", ["smoke", "config", "paper", "llava"])
def test_dry_run_plans_every_config(cfg):
    t0 = time.time()
    p = snakemake("-n", "--configfile", f"config/{cfg}.yaml", "--forceall")
    jobs = planned_jobs(p.stdout)
    assert jobs.get("total", 0) > 0, p.stdout
    if cfg == "paper":
        assert time.time() - t0 < 30  # the issue asks < 10 s; the subprocess adds start-up
        assert jobs.get("train_run", 0) > 0
    if cfg == "llava":
        # 4 SFT amounts of CLIP-CLIP, detached CLIP-CLIP, CLIP-VQ; 3 stage-1 runs; the JSON
        # files, image folder, Vicuna, CLIP and VQ are missing here (resource_missing jobs)
        assert {k: jobs.get(k) for k in ("llava_data", "llava_pretrain", "llava_sft",
                                         "llava_eval", "resource_missing", "train_run",
                                         "eval_run", "data_split")} == {
            "llava_data": 5, "llava_pretrain": 3, "llava_sft": 6, "llava_eval": 6,
            "resource_missing": 7, "train_run": None, "eval_run": None, "data_split": None}
        assert jobs["paper_table_llava"] == 1


def test_bad_config_is_refused_before_any_job(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "config/smoke.yaml").read_text().replace(
        "architectures: [siglip-siglip, vq-vq]", "architectures: [siglip-siglip, vq-vqq]"))
    p = snakemake("-n", "--configfile", str(bad), check=False)
    assert p.returncode != 0
    assert "grid.architectures[1]: 'vq-vqq' is not allowed" in p.stdout + p.stderr


@pytest.mark.parametrize("old, new", [
    ("lr: 1.0e-3\n  adapter_lr", "lr: .nan\n  adapter_lr"),
    ("imbalance_architectures: [vq-vq]", "imbalance_architectures: []"),
    ("accelerate_config: workflow/accelerate/cpu.yaml", "accelerate_config: nope.yaml"),
    ("checkpoints: 2", "checkpoints: 100"),
    ("seed: 0\n", "seed: 0\nseed: 1\n"),  # a duplicate key
])
def test_workflow_and_config_schema_check_refuse_the_same_configs(tmp_path, old, new):
    bad = tmp_path / "bad.yaml"
    text = (ROOT / "config/smoke.yaml").read_text()
    assert old in text
    bad.write_text(text.replace(old, new, 1))
    check = subprocess.run([sys.executable, "-m", "uvlm", "config-schema", "--check", str(bad)],
                           cwd=ROOT, capture_output=True, text=True)
    assert check.returncode != 0
    message = check.stderr.strip().removeprefix("invalid: ")
    assert message.startswith(f"{bad}") and "\n" not in message
    p = snakemake("-n", "--configfile", str(bad), check=False)
    assert p.returncode != 0 and message in p.stdout + p.stderr


@pytest.mark.parametrize("cfg", ["smoke", "llava"])
def test_lint_passes(cfg):
    p = snakemake("--lint", "--configfile", f"config/{cfg}.yaml", check=False)
    assert p.returncode == 0, p.stdout + p.stderr


def test_only_the_checkpoints_a_target_reads_are_evaluated():
    """Runs read only at their final checkpoint (imbalance, alignment, transfer) get only
    that one evaluated; the data-scale curves' runs get every checkpoint."""
    from uvlm.config import load
    from uvlm.grid import all_runs, experiment_runs
    from uvlm.report import read_checkpoints

    cfg = load(ROOT / "config/smoke.yaml")
    reads, every = read_checkpoints(cfg), set(range(1, cfg.train.checkpoints + 1))
    assert set(reads) == {r.name for r in all_runs(cfg)}  # nothing trained goes unread
    curves = {r.name for r in experiment_runs(cfg, "mutual")}
    assert {n for n, ks in reads.items() if ks == every} == curves
    assert all(ks == {cfg.train.checkpoints} for n, ks in reads.items() if n not in curves)
    jobs = planned_jobs(snakemake("-n", "eval", "--configfile", "config/smoke.yaml").stdout)
    assert jobs["eval_run"] == len(curves) * len(cfg.grid.seeds)
    assert jobs["eval_final"] == len(reads) - len(curves)
