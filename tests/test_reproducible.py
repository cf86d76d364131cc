"""Rebuilding from the same config gives the same bytes, for every kind of artifact (data,
encoders, features, affine maps, checkpoints, evaluations, tables and figures): DVC then sees
nothing changed. Two fresh processes build a tiny grid each and every file is compared."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: the smoke config cut down to one architecture's mutual runs, a few images and steps
TINY = ["data.n_train=16", "data.n_test=4", "data.extra_generation=[]",
        "data.extra_understanding=[]", "data.workers=1", "encoders.siglip.steps=2",
        "encoders.vq.steps=2", "train.batch_size=8", "train.checkpoints=1",
        "grid.experiments=[mutual]", "grid.architectures=[vq-vq]", "grid.equal_compute=false",
        "eval.judge_steps=2", "eval.bootstrap=10", "eval.max_new_tokens=4"]

#: every command of the pipeline, in order, through `python -m uvlm` (one process)
BUILD = """
import sys
from uvlm.__main__ import main as uvlm
from uvlm.config import load
from uvlm.grid import jobs
from uvlm.report import targets

config, sets = sys.argv[1], sys.argv[2:]
cfg = load(config, sets)
common = ["--config", config, "--set", *sets]
for split in ("train", "test"):
    uvlm(["data", *common, "--split", split])
uvlm(["data-variants", *common])
for command in ("encoders-tokenizer", "encoders-vq", "encoders-siglip", "encoders-affine"):
    uvlm([command, *common])
for space in ("siglip", "vq"):
    for split in ("train", "test"):
        uvlm(["encoders-features", *common, "--space", space, "--split", split])
uvlm(["judge-train", *common, "--space", "pixels"])
uvlm(["probe-spaces", *common])
for run, seed in jobs(cfg):
    uvlm(["train", *common, "--run", run.name, "--seed", str(seed), "--no-progress"])
    uvlm(["evaluate", *common, "--run", run.name, "--seed", str(seed)])
for name in targets(cfg):
    uvlm(["paper", *common, "--target", name])
"""

#: files that record when or how fast they were made: they must agree once these keys are
#: dropped (provenance's "created"; measured times of the encoders' and trainers' logs)
TIMED = ("provenance", "metrics.json")
CLOCK_KEYS = {"created", "seconds", "cpu_seconds", "train_seconds", "train_cpu_seconds",
              "tokens_per_s", "s_per_step"}


def content(path: Path) -> str:
    """sha256 of the bytes; of the JSON without clock readings for a TIMED file."""
    data = path.read_bytes()
    if any(t in str(path) for t in TIMED) and path.suffix in (".json", ".jsonl"):
        rows = [json.loads(line) for line in data.splitlines()] if path.suffix == ".jsonl" \
            else [json.loads(data)]
        data = json.dumps([{k: v for k, v in r.items() if k not in CLOCK_KEYS} for r in rows],
                          sort_keys=True).encode()
    return hashlib.sha256(data).hexdigest()


def build(work: Path) -> dict[str, str]:
    work.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, "-c", BUILD, str(ROOT / "config" / "smoke.yaml"), *TINY],
                   cwd=work, env=env, check=True, capture_output=True)
    return {str(p.relative_to(work)): content(p)
            for p in sorted((work / "results").rglob("*")) if p.is_file()}


def test_two_builds_of_every_artifact_are_byte_identical(tmp_path):
    a, b = build(tmp_path / "a"), build(tmp_path / "b")
    assert a.keys() == b.keys()
    kinds = ["data/images/", "data/variants/", "encoders/vq/", "encoders/siglip/",
             "encoders/tokenizer/", "encoders/features/", "encoders/affine/", "runs/",
             "eval/judge/", "eval/vq-vq_mixed/", "paper/tables/", "paper/figures/"]
    assert [k for k in kinds if not any(f"results/smoke/{k}" in f for f in a)] == []
    assert [f for f in a if a[f] != b[f]] == []
