"""Provenance records: written beside each versioned artifact, checked against the config.

A fake artifact per command (empty files at the real paths) is enough: provenance depends
on paths and config sections only.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from uvlm import provenance
from uvlm.config import load

ROOT = Path(__file__).resolve().parents[1]

# command -> the fields of one artifact, and the files that artifact consists of
ARTIFACTS = {
    "data": ({"split": "train"}, ["data/train.json", "data/attributes/train.csv"]),
    "data-variants": ({}, ["data/variants/biased-weather.json", "data/variants/summary.json"]),
    "encoders-tokenizer": ({}, ["encoders/tokenizer/tokenizer.json"]),
    "encoders-siglip": ({}, ["encoders/siglip/model.safetensors"]),
    "encoders-vq": ({}, ["encoders/vq/model.safetensors"]),
    "encoders-features": ({"space": "vq", "split": "train"},
                          ["encoders/features/vq_train.safetensors"]),
    "encoders-affine": ({}, ["encoders/affine/vq_0.3.safetensors"]),
    "train": ({"run": "vq-vq_mixed", "seed": 0},
              ["runs/vq-vq_mixed/seed0/metrics.jsonl",
               "runs/vq-vq_mixed/seed0/ckpt01/model.safetensors"]),
    "judge-train": ({"judge": "pixels"}, ["eval/judge/pixels/model.safetensors"]),
    "evaluate": ({"run": "vq-vq_mixed", "seed": 0},
                 ["eval/vq-vq_mixed/seed0/ckpt01/metrics.json",
                  "eval/vq-vq_mixed/seed0/ckpt02/metrics.json"]),
    "analyze-adapters": ({"run": "vq-vq_mixed", "seed": 0},
                         ["analysis/adapters/vq-vq_mixed/seed0/probe.json"]),
}
TRAINED = {"train", "evaluate", "analyze-adapters"}  # depend on the train section


@pytest.fixture
def config(tmp_path, monkeypatch) -> Path:
    """A config whose results/<name>/ holds every kind of artifact with its provenance."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.setattr(provenance, "git_state", lambda: {"commit": "a" * 40, "dirty": False})
    path = tmp_path / "t.yaml"
    path.write_text("name: t\nseed: 3\ntrain: {lr: 1.0e-3}\n")
    cfg = load(path)
    for command, (fields, files) in ARTIFACTS.items():
        for f in files:
            (cfg.root / f).parent.mkdir(parents=True, exist_ok=True)
            (cfg.root / f).write_text("artifact\n")
        provenance.write(cfg, command, **fields)
    return path


def run_check(config: Path, *args: str, capsys) -> tuple[int, str]:
    try:
        provenance.main(["--config", str(config), *args])
        code = 0
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().out


def record(config: Path, command: str) -> Path:
    fields, _ = ARTIFACTS[command]
    return load(config).root / provenance.UNITS[command].record.format(**fields)


def test_every_command_records_what_made_its_artifact(config):
    cfg = load(config)
    rec = json.loads(record(config, "train").read_text())
    assert rec["command"] == "train" and rec["fields"] == {"run": "vq-vq_mixed", "seed": 0}
    assert rec["sections"] == ["data", "encoders", "model", "train"]
    assert rec["seed"] == 3 and rec["config"]["train"]["lr"] == 1e-3
    assert set(rec["config"]) == {"data", "encoders", "model", "train", "seed"}
    assert rec["config_hash"] == provenance.config_hash(rec["config"])
    assert rec["packages"]["uvlm"] and rec["packages"]["torch"]
    assert rec["git"] == {"commit": "a" * 40, "dirty": False}
    written = {p for p in cfg.root.rglob("*.json") if "provenance" in p.relative_to(cfg.root).parts
               or p.name == "provenance.json"}
    assert written == {record(config, c) for c in ARTIFACTS}  # one record per artifact


def test_matching_config_passes(config, capsys):
    code, out = run_check(config, capsys=capsys)
    assert code == 0, out
    assert f"{len(ARTIFACTS)} records checked, 0 mismatch, 0 missing, 0 unreadable" in out


def test_a_training_change_flags_checkpoints_evaluations_and_probes_only(config, capsys):
    code, out = run_check(config, "--set", "train.lr=2.0e-4", capsys=capsys)
    assert code == 1
    flagged = set(re.findall(r"^MISMATCH (\S+):", out, flags=re.M))
    assert flagged == {record(config, c).relative_to(load(config).root).as_posix()
                       for c in TRAINED}
    assert "runs/vq-vq_mixed/seed0/provenance.json: sections train differ: " \
           "train.lr 0.001 -> 0.0002" in out


def test_an_evaluation_change_leaves_checkpoints_alone(config, capsys):
    code, out = run_check(config, "--set", "eval.bootstrap=7", capsys=capsys)
    assert code == 1
    assert "MISMATCH eval/judge/pixels/provenance.json: sections eval differ: " \
           "eval.bootstrap 1000 -> 7" in out
    assert "runs/" not in out and "data/" not in out


def test_the_root_seed_is_part_of_every_record(config, capsys):
    code, out = run_check(config, "--set", "seed=4", capsys=capsys)
    assert code == 1
    assert out.count("MISMATCH") == len(ARTIFACTS) and "seed 3 -> 4" in out


def test_an_artifact_without_provenance_is_missing(config, capsys):
    record(config, "encoders-features").unlink()
    code, out = run_check(config, capsys=capsys)
    assert code == 1
    assert ("MISSING  encoders/provenance/features_vq_train.json: no provenance for "
            "encoders/features/vq_train.safetensors") in out


def test_an_unreadable_record_is_named_and_fails(config, capsys):
    record(config, "evaluate").write_text("{not json")
    code, out = run_check(config, capsys=capsys)
    assert code == 1
    assert "UNREADABLE eval/vq-vq_mixed/seed0/provenance.json: " in out
    assert "not valid JSON" in out


def test_other_code_or_packages_are_notes_only(config, capsys):
    path = record(config, "data")
    rec = json.loads(path.read_text())
    rec["git"] = {"commit": "0" * 40, "dirty": True}
    rec["packages"]["torch"] = "0.0.1"
    path.write_text(json.dumps(rec))
    code, out = run_check(config, capsys=capsys)
    assert code == 0, out
    assert f"NOTE     1 artifact: made at git commit {'0' * 40} (now {'a' * 40})" in out
    assert "NOTE     1 artifact: made from a checkout with uncommitted changes" in out
    assert "NOTE     1 artifact: made with torch 0.0.1 (now" in out


def test_stage_selection(config, capsys):
    code, out = run_check(config, "--set", "train.lr=2.0e-4", capsys=capsys)
    assert code == 1
    provenance.main(["--config", str(config), "--set", "train.lr=2.0e-4",
                     "--stage", "data", "encoders"])
    assert "0 mismatch" in capsys.readouterr().out


def test_git_state_of_this_checkout():
    state = provenance.git_state()
    assert set(state) == {"commit", "dirty"}
    assert state["commit"] is None or re.fullmatch(r"[0-9a-f]{40}", state["commit"])


def test_write_refuses_wrong_fields_a_missing_artifact_and_other_ranks(config, monkeypatch):
    cfg = load(config)
    with pytest.raises(ValueError, match=r"provenance of train: expected fields \['run', 'seed'\]"):
        provenance.write(cfg, "train", run="vq-vq_mixed")
    with pytest.raises(KeyError, match="unknown command 'nope'"):
        provenance.write(cfg, "nope")
    with pytest.raises(FileNotFoundError, match="no artifact .*runs/vq-vq_und/seed0/metrics"):
        provenance.write(cfg, "train", run="vq-vq_und", seed=0)
    monkeypatch.setenv("RANK", "1")  # accelerate/torchrun: rank 0 writes
    assert provenance.write(cfg, "train", run="vq-vq_und", seed=0) is None


def test_sections_are_those_of_the_rules_rerun_triggers():
    """The rule of each command reruns on exactly the sections its provenance records."""
    seen = {}
    for smk in sorted((ROOT / "workflow/rules").glob("*.smk")):
        for block in re.split(r"^\s*rule\b", smk.read_text(), flags=re.M)[1:]:
            command = re.search(r"-m uvlm ([\w-]+)", block)
            depends = re.search(r"depends=sections\(([^)]*)\)", block)
            if command and depends:
                seen[command[1]] = tuple(re.findall(r'"(\w+)"', depends[1]))
    assert seen == {c: u.sections for c, u in provenance.UNITS.items()}


def test_nothing_to_check_fails(config, tmp_path, capsys):
    """A config name without results or an empty pull is no pass of the safety gate."""
    other = tmp_path / "other.yaml"
    other.write_text("name: other\n")
    code, _ = run_check(other, capsys=capsys)
    assert code == "provenance results/other: nothing to check: no artifact of data, encoders, " \
        "runs, eval, analysis there (is the config name 'other' right, and were its artifacts " \
        "built or pulled?)"
    shutil.rmtree(load(config).root / "analysis")
    code, _ = run_check(config, "--stage", "analysis", capsys=capsys)
    assert "nothing to check: no artifact of analysis there" in code
