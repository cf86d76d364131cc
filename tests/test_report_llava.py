"""The LLaVA table: lmms-eval's results JSON (hand-written fixture) beside the authors'."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from uvlm import paths
from uvlm.config import load
from uvlm.grid import experiment_runs
from uvlm.report import build, collect, targets

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests/fixtures/lmms_eval_results.json"


def test_lmms_eval_reader_converts_to_the_papers_units():
    got = collect.read_lmms_eval(FIXTURE)
    assert got["gqa"][0] == pytest.approx(61.63)
    assert got["gqa"][1] == pytest.approx(61.63 - 1.959964 * 0.43, abs=1e-4)  # stderr band
    assert got["mme_perception"][0] == 1519.0 and math.isnan(got["mme_perception"][1])
    assert got["mme_cognition"][0] == 315.0
    assert got["mmbench_en_dev"][0] == pytest.approx(62.54)  # already in percent
    assert got["pope_accuracy"][0] == pytest.approx(86.94)
    assert got["pope_f1"][0] == pytest.approx(85.9)
    assert got["mmstar"][0] == pytest.approx(34.09)
    # not run: absent, never zero; MM-Vet is not a column
    assert {"vizwiz_val", "textvqa_val"}.isdisjoint(got) and len(got) == 7


def test_lmms_eval_reader_refuses_other_files(tmp_path):
    p = tmp_path / "results.json"
    p.write_text(json.dumps({"vqa_full": {}}))
    with pytest.raises(ValueError, match="not an lmms-eval results file"):
        collect.read_lmms_eval(p)
    p.write_text(json.dumps({"results": {"gqa": {"exact_match,none": "high"}}}))
    with pytest.raises(ValueError, match=r"results.gqa.exact_match,none"):
        collect.read_lmms_eval(p)


def test_llava_table(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load(ROOT / "config/llava.yaml")
    for run in experiment_runs(cfg, "llava"):
        path = paths.llava_results(cfg, run)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(FIXTURE, path)
    runs = ["clip-clip_und", "clip-clip_mixed_gen-50000", "clip-clip_mixed_gen-100000",
            "clip-clip_mixed", "clip-clip_mixed_detach", "clip-vq_mixed"]
    assert [str(p) for p in targets(cfg)["table_llava"].inputs[:6]] == [
        f"results/llava/eval/llava/{r}/results.json" for r in runs]
    csv, md, tex = build(cfg, "table_llava")
    long = pd.read_csv(csv)
    ours = long[long["source"] == "ours"]
    assert list(dict.fromkeys(ours["run"])) == runs
    # our rows say what they train, as the authors' rows do
    config = ours.groupby("run", sort=False)["config"].first()
    assert config["clip-clip_und"] == "CLIP-CLIP, no generation samples in SFT"
    assert config["clip-clip_mixed_gen-50000"] == "CLIP-CLIP, +50,000 generation samples in SFT"
    assert config["clip-clip_mixed_detach"] == ("CLIP-CLIP, +200,000 generation samples in SFT, "
                                                "detach_mm_projector")
    assert config["clip-vq_mixed"] == "CLIP-VQ, +200,000 generation samples in SFT"
    authors = long[long["source"] != "ours"].set_index(["run", "benchmark"])["value"]
    assert authors["llava-v1.5-7b", "gqa"] == pytest.approx(62.05)
    text = md.read_text()
    assert "MME-P" in text and "authors @ ff6f2b5" in text and "61.63 [" in text
    assert "\\toprule" in tex.read_text()
    build(cfg, "findings")  # llava-only config: the findings name what was not run
    findings = (cfg.root / "paper/findings.md").read_text()
    assert "## LLaVA-1.5 real-world experiment" in findings
    assert "The `mutual` experiment is not in this config's grid." in findings
