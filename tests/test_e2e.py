"""End to end: the smoke grid from nothing to findings.md, then incremental rebuilds."""

import json
from pathlib import Path

import pytest
import yaml

from conftest import run_snakemake
from test_workflow import planned_jobs
from uvlm.config import load
from uvlm.grid import all_runs
from uvlm.report import targets

pytestmark = pytest.mark.slow
STYLE = Path(__file__).resolve().parents[1] / "src/uvlm/report/styles/fig_alignment.yaml"


def plan(work: Path, *args: str) -> dict[str, int]:
    p = run_snakemake(work, "-n", *args)
    return planned_jobs(p.stdout)


def test_smoke_grid_builds_every_paper_output(smoke_run):
    cfg = load(smoke_run / "config/smoke.yaml")
    for files in targets(cfg).values():
        for out in files.outputs:
            assert (smoke_run / out).stat().st_size > 0, out
    findings = (smoke_run / "results/smoke/paper/findings.md").read_text()
    assert "F1. Mutual benefit" in findings
    # each judge's ceiling and floor, from its accuracy.json, beside the generation scores
    assert "**pixels** judge: ground truth" in findings and "(the floor)" in findings
    acc = json.loads((smoke_run / "results/smoke/eval/judge/pixels/accuracy.json").read_text())
    assert {"gt", "vq_recon", "shuffled_gt"} <= set(acc)
    for run in all_runs(cfg):
        ckpt = smoke_run / f"results/smoke/eval/{run.name}/seed0/ckpt02/metrics.json"
        assert ckpt.is_file(), ckpt


def test_nothing_changed_plans_no_job(smoke_run):
    assert plan(smoke_run, "--configfile", "config/smoke.yaml") == {}


def test_restyling_one_figure_reruns_only_that_figure(smoke_run):
    original = STYLE.read_text()
    try:
        STYLE.write_text(original + "\n# restyled by tests/test_e2e.py\n")
        jobs = plan(smoke_run, "--configfile", "config/smoke.yaml")
    finally:
        STYLE.write_text(original)
    assert jobs == {"paper_fig_alignment": 1, "all": 1, "total": 2}


def test_adding_a_seed_trains_and_evaluates_only_the_new_runs(smoke_run):
    raw = yaml.safe_load((smoke_run / "config/smoke.yaml").read_text())
    raw["grid"]["seeds"] = [0, 1]
    (smoke_run / "config/smoke2.yaml").write_text(yaml.safe_dump(raw))
    jobs = plan(smoke_run, "--configfile", "config/smoke2.yaml")
    n_runs = len(all_runs(load(smoke_run / "config/smoke2.yaml")))
    assert jobs["train_run"] == n_runs
    assert jobs["eval_run"] + jobs["eval_final"] == n_runs
    assert not {"data_split", "data_variants", "tokenizer", "siglip", "vq", "features",
                "affine", "judge"} & set(jobs)


def test_changing_a_data_value_reruns_the_data_rules_and_downstream(smoke_run):
    raw = yaml.safe_load((smoke_run / "config/smoke.yaml").read_text())
    raw["data"]["n_test"] += 1
    (smoke_run / "config/smoke3.yaml").write_text(yaml.safe_dump(raw))
    jobs = plan(smoke_run, "--configfile", "config/smoke3.yaml")
    assert jobs["data_split"] == 3 and jobs["data_variants"] == 1
    assert jobs["train_run"] > 0 and jobs["eval_run"] > 0


def test_snakemake_report_shows_figures_tables_and_findings_captioned(smoke_run):
    html = smoke_run / "report.html"
    run_snakemake(smoke_run, "--configfile", "config/smoke.yaml", "--report", str(html))
    text = html.read_text()
    captions = Path(__file__).resolve().parents[1] / "workflow/report"
    for name, files in targets(load(smoke_run / "config/smoke.yaml")).items():
        shown = [p for p in files.outputs if p.suffix in (".png", ".csv") or name == "findings"]
        assert shown, name
        for path in shown:
            assert path.name in text, path
        # the caption's first line after its bold title
        words = (captions / f"{name}.rst").read_text().splitlines()[0].split("**")[-1]
        assert words.strip() in text, name
