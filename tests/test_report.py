"""The paper stage on a fake results tree with known numbers (smoke config grid)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from uvlm import paths
from uvlm.config import load
from uvlm.grid import Run, all_runs, run_seeds
from uvlm.report import TARGETS, build, collect, experiment_targets, targets
from uvlm.report.cli import main as paper_main
from uvlm.report.reference import REFERENCE_PATH, load_reference

ROOT = Path(__file__).resolve().parents[1]
HALF = 0.02  # half-width of every fake bootstrap interval
BASE = {"mixed": 0.70, "und": 0.60, "gen": 0.50}  # fake VQA/judge level by mode
EQ_BONUS = 0.05  # equal-compute single-task runs
VQA = ("time", "weather", "position", "battery", "total")


def smoke(*overrides: str):
    return load(ROOT / "config/smoke.yaml", list(overrides))


def vqa_value(run: Run, seed: int, k: int, metric: str, section: str) -> float:
    v = BASE[run.mode] + (EQ_BONUS if run.equal_compute else 0.0) + 0.01 * k + 0.001 * seed
    v -= 0.5 * run.affine if run.mode == "mixed" else 0.0  # mixing helps less when distorted
    v += {"vqa_official": 0.0, "vqa_full": 0.002}[section] + 0.0001 * VQA.index(metric)
    return v


def gen_value(run: Run, seed: int, k: int) -> float:
    return BASE[run.mode] + (EQ_BONUS if run.equal_compute else 0.0) + 0.02 * k + 0.001 * seed


def metrics_json(run: Run, seed: int, k: int) -> dict:
    """A metrics.json shaped as uvlm.eval.score writes it (keys, nulls, counts, ci)."""
    out = {}
    for section in ("vqa_official", "vqa_full"):
        if run.mode == "gen":  # no VQA rows: null scores, zero counts, null intervals
            out[section] = {m: None for m in VQA} | {f"count_{m}": 0 for m in VQA}
            out[section]["ci"] = dict.fromkeys(VQA)
            continue
        sec = {m: vqa_value(run, seed, k, m, section) for m in VQA}
        sec |= {f"count_{m}": 20 for m in VQA}
        sec["ci"] = {m: [sec[m] - HALF, sec[m] + HALF] for m in VQA}
        out[section] = sec
    out["caption"] = {"recall_time": 0.5, "count_recall_time": 10, "count_captions": 10,
                      "ci": {"recall_time": None}}
    if run.mode == "und":
        out["generation"] = {"count_total": 0}
        return out
    acc = gen_value(run, seed, k)
    gen = {"judge_space": "pixels" if run.gen_space == "vq" else run.gen_space,
           "total": acc, "weather": acc, "count_total": 24, "count_weather": 8,
           "ci": {"total": [acc - HALF, acc + HALF], "weather": [acc - HALF, acc + HALF]}}
    if run.gen_space == "vq":  # FID only where there are pixels; no interval (not a mean)
        fid = 200.0 - 10 * k - (20.0 if run.mode == "mixed" else 0.0)
        gen |= {"fid": fid, "fid_extractor": "standin-judge", "count_fid_generated": 24,
                "count_fid_reference": 24}
    else:
        gen |= {"cosine": 0.8, "retrieval_top1": 0.4}
        gen["ci"] |= {"cosine": [0.78, 0.82], "retrieval_top1": [0.3, 0.5]}
    out["generation"] = gen
    return out


def items_json(metrics: dict, run: Run, seed: int, n: int = 20) -> dict:
    """items.json for a metrics.json: per-cluster scores whose mean is each metric's value,
    with an item effect shared by every run and a smaller one of the run and seed."""
    out = {}
    for section in ("vqa_official", "vqa_full", "generation"):
        sec = metrics.get(section, {})
        names = [m for m in sec if m in {*VQA, "total", "weather"} and sec[m] is not None]
        if not names:
            continue
        c = np.arange(n)
        shared = 0.2 * (c - c.mean()) / c.std()
        own = np.random.default_rng([seed, len(run.name), n]).normal(0, 0.05, n)
        own -= own.mean()
        num = np.stack([sec[m] + shared + own for m in names], 1)
        out[section] = {"metrics": names, "clusters": [f"r{i}" for i in c],
                        "num": num.tolist(), "den": np.ones_like(num).tolist()}
    return out


SPACE_PROBE = {"siglip": 0.8, "vq": 0.6, "pixels": 0.9}  # time; every other attribute 1.0


def space_probe_json() -> dict:
    out = {}
    for space, t in SPACE_PROBE.items():
        s = {"time": t, "weather": 1.0, "position": 1.0, "battery": 1.0}
        s["total"] = (t + 4.0) / 5
        out[space] = {**s, **{f"count_{m}": 10 for m in s}, "readout": "test",
                      "ci": {m: [v - 0.01, v + 0.01] for m, v in s.items()}}
    return out


JUDGE_FLOORS = {"pixels": 0.25, "siglip": 0.3}


def write_fake(cfg, root: Path, metrics=metrics_json, probe_acc=None) -> None:
    """Every file the paper stage reads for ``cfg``, under ``root`` (the working dir)."""
    p = root / paths.space_probe(cfg)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(space_probe_json()))
    for judge, floor in JUDGE_FLOORS.items():
        p = root / paths.judge_accuracy(cfg, judge)
        p.parent.mkdir(parents=True, exist_ok=True)
        sets = {"gt": 0.97, "shuffled_gt": floor} | ({"vq_recon": 0.89} if judge == "pixels"
                                                     else {})
        p.write_text(json.dumps({"space": judge, "split": "test",
                                 **{k: {"total": v} for k, v in sets.items()}}))
    K = cfg.train.checkpoints
    for run in dict.fromkeys(r.trained for r in all_runs(cfg)):  # what the grid trains
        for seed in run_seeds(cfg, run):
            for k in range(1, K + 1):
                p = root / paths.eval_metrics(cfg, run, seed, k)
                p.parent.mkdir(parents=True, exist_ok=True)
                m = metrics(run, seed, k)
                p.write_text(json.dumps(m))
                items = root / paths.eval_items(cfg, run, seed, k)
                items.write_text(json.dumps(items_json(m, run, seed)))
            log = root / paths.train_log(cfg, run, seed)
            log.parent.mkdir(parents=True, exist_ok=True)
            steps = 12 if run.mode == "mixed" or run.equal_compute else 8
            log.write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n"
                                   for s in range(1, steps + 1)))
            rng = np.random.default_rng(seed)
            labels = ["sunny", "cloudy", "raining"] * 10
            acc = (probe_acc or (lambda r, s: 0.9 + 0.01 * s))(run, seed)
            p = root / paths.adapter_probe(cfg, run, seed)
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(json.dumps({"probe_accuracy": acc, "labels": labels,
                                     "tsne": rng.normal(size=(30, 2)).tolist()}))


@pytest.fixture
def tree(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = smoke()
    write_fake(cfg, tmp_path)
    return cfg


def read_csv(cfg, stem: str) -> pd.DataFrame:
    return pd.read_csv(cfg.root / "paper" / "tables" / f"{stem}.csv")


# --------------------------------------------------------------------------- collect


def test_collect_is_tidy_and_absence_is_not_zero(tree):
    cfg = tree
    runs = [r for r in all_runs(cfg) if r.arch == "siglip-siglip" and r.variant == "train"
            and not r.affine]
    df = collect.collect(cfg, collect.eval_reads((runs, [1, 2])))
    assert list(df.columns) == collect.COLUMNS
    gen_only = df[df["run"] == "siglip-siglip_gen"]
    assert not gen_only["section"].str.startswith("vqa").any()  # no VQA rows, not zeros
    und_only = df[df["run"] == "siglip-siglip_und"]
    assert "generation" not in set(und_only["section"])
    assert "fid" not in set(df["metric"])  # continuous head: no FID row at all
    row = df[(df["run"] == "siglip-siglip_mixed") & (df["section"] == "vqa_full")
             & (df["metric"] == "total") & (df["ckpt"] == 2)].iloc[0]
    assert row["value"] == pytest.approx(0.70 + 0.02 + 0.002 + 0.0004)
    assert row["hi"] - row["lo"] == pytest.approx(2 * HALF)
    assert row["n_items"] == 20 and row["frac"] == 1.0
    cap = df[(df["section"] == "caption")].iloc[0]
    assert math.isnan(cap["lo"])  # a null interval stays undefined
    vq = collect.collect(cfg, collect.eval_reads(([Run("vq-vq", "mixed")], [2])))
    fid = vq[vq["metric"] == "fid"].iloc[0]
    assert fid["note"] == "fid_extractor=standin-judge" and math.isnan(fid["lo"])
    judge = vq[(vq["section"] == "generation") & (vq["metric"] == "total")].iloc[0]
    assert judge["note"] == "judge_space=pixels" and judge["n_items"] == 24


def test_unknown_string_entry_is_refused(tmp_path):
    p = tmp_path / "metrics.json"
    p.write_text(json.dumps({"generation": {"total": 0.5, "judge": "pixels"}}))
    with pytest.raises(ValueError, match=r"metrics.json: generation.judge"):
        collect.read_metrics(p)
    p.write_text(json.dumps({"vqa_fancy": {}}))
    with pytest.raises(ValueError, match="unknown section"):
        collect.read_metrics(p)


def test_probe_interval_from_its_test_size(tmp_path):
    p = tmp_path / "probe.json"
    p.write_text(json.dumps({"probe_accuracy": 0.9, "n_test": 100, "labels": ["sunny"],
                             "tsne": [[0.0, 1.0]]}))
    probe = collect.read_probe(p)
    assert (probe.lo, probe.hi) == pytest.approx((0.8256, 0.9448), abs=1e-4)  # Wilson
    p.write_text(json.dumps({"probe_accuracy": 0.9, "labels": ["a", "b"], "tsne": [[0, 1]]}))
    with pytest.raises(ValueError, match="tsne must be N x 2 with N labels"):
        collect.read_probe(p)


def test_reference_numbers_load_and_are_checked(tmp_path):
    ref = load_reference()
    assert ref["vqvq_mixed_curve"]["scores"]["total"][-1] == 0.9399
    assert ref["weather_biased"]["runs"]["und"]["scores"]["weather"] == 0.2857
    bad = tmp_path / "numbers.yaml"
    bad.write_text(REFERENCE_PATH.read_text().replace("    battery: [0.9303, ", "    battery: ["))
    with pytest.raises(ValueError, match=r"vqvq_mixed_curve.scores.battery: 9 values"):
        load_reference(bad)


# --------------------------------------------------------------------------- targets


def test_targets_follow_the_config():
    cfg = smoke()
    t = targets(cfg)
    assert "table_llava" not in t and "findings" in t and "fig_mutual" in t
    assert set(experiment_targets(cfg, "alignment")) == {"table_alignment", "fig_alignment"}
    llava = targets(load(ROOT / "config/llava.yaml"))
    assert set(llava) == {"table_llava", "table_reference", "findings"}
    for name, (inputs, outputs) in t.items():
        assert outputs and len(set(inputs)) == len(inputs), name


def test_a_figure_style_is_an_input_of_that_figure_only():
    t = targets(smoke())
    own = Path("src/uvlm/report/styles/fig_alignment.yaml")
    holders = [name for name, (inputs, _) in t.items()
               if any(Path(p).name == own.name for p in inputs)]
    assert holders == ["fig_alignment"]


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_a_target_reads_exactly_its_declared_inputs(tree, monkeypatch, name):
    cfg = tree
    if name not in targets(cfg):
        pytest.skip(f"{name} is not configured at smoke scale")
    read: set[Path] = set()
    real_json, real_log = collect._read_json, collect.read_final_step

    def spy_json(path):
        read.add(Path(path))
        return real_json(path)

    def spy_log(path):
        read.add(Path(path))
        return real_log(path)

    monkeypatch.setattr(collect, "_read_json", spy_json)
    monkeypatch.setattr(collect, "read_final_step", spy_log)
    build(cfg, name)
    inputs = {Path(p) for p in targets(cfg)[name].inputs}
    results = {p for p in inputs if p.parts[0] == "results"}
    assert read == results


# --------------------------------------------------------------------------- tables


def build_all(cfg) -> None:
    for name in targets(cfg):
        for path in build(cfg, name):
            assert path.is_file() and path.stat().st_size > 0, path


def test_the_mini_grid_builds_every_target(tmp_path, monkeypatch):
    """The default config's shape: 2 seeds for mutual only, one alignment architecture."""
    monkeypatch.chdir(tmp_path)
    cfg = load(ROOT / "config/config.yaml")
    write_fake(cfg, tmp_path)
    build_all(cfg)
    und = read_csv(cfg, "mutual_understanding")
    assert set(und[und["source"] == "ours"]["n_seeds"]) == {2}
    # crossed architectures' single-task cells read the same-space runs (none of their own)
    assert {"siglip-vq", "vq-siglip"} <= set(und[und["series"] == "und"]["arch"])
    assert not (tmp_path / paths.eval_run_dir(cfg, "siglip-vq_und", 0)).exists()
    assert (tmp_path / paths.eval_run_dir(cfg, "siglip-siglip_und", 0)).is_dir()
    # the base run has mutual's 2 seeds; imbalance compares on the seed all its runs share
    assert set(read_csv(cfg, "imbalance")["n_seeds"]) == {1}
    assert set(read_csv(cfg, "alignment")["n_seeds"]) == {1}
    findings = (tmp_path / "results/mini/paper/findings.md").read_text()
    assert "seeds mutual 0, 1; other experiments 0" in findings


def test_tables_carry_the_known_numbers(tree):
    cfg = tree
    build_all(cfg)
    und = read_csv(cfg, "mutual_understanding")
    row = und[(und["arch"] == "vq-vq") & (und["series"] == "mixed")
              & (und["section"] == "vqa_full") & (und["metric"] == "total")
              & (und["source"] == "ours")].iloc[0]
    assert row["mean"] == pytest.approx(0.70 + 0.02 + 0.002 + 0.0004, abs=1e-6)
    assert row["lo"] == pytest.approx(row["mean"] - HALF, abs=1e-6)  # one seed: bootstrap
    assert row["n_seeds"] == 1
    authors = und[und["source"] != "ours"]
    assert set(authors["arch"]) == {"vq-vq"}
    assert authors.set_index("metric").loc["total", "mean"] == pytest.approx(0.9399)
    md = (cfg.root / "paper/tables/mutual_understanding.md").read_text()
    assert "und-only, equal compute" in md and "authors @ 4608171" in md
    tex = (cfg.root / "paper/tables/mutual_understanding.tex").read_text()
    assert "\\toprule" in tex and "\\bottomrule" in tex and "vq\\_full" not in tex

    gen = read_csv(cfg, "mutual_generation")
    fid = gen[(gen["arch"] == "vq-vq") & (gen["metric"] == "fid")]
    assert set(fid["note"]) == {"fid_extractor=standin-judge"}
    assert "siglip-siglip" not in set(fid["arch"])
    assert "standin-judge" in (cfg.root / "paper/tables/mutual_generation.md").read_text()

    align = read_csv(cfg, "alignment")
    gain = align[(align["arch"] == "vq-vq") & (align["affine"] == 0.3)
                 & (align["quantity"] == "mixed - und")].iloc[0]
    assert gain["mean"] == pytest.approx(0.1 - 0.15, abs=1e-6)
    # a difference of two runs is paired on the test items (items.json)
    assert gain["interval"] == "paired bootstrap over test items (1 seed)"
    assert gain["lo"] < gain["mean"] < gain["hi"] and gain["mde"] > 0

    transfer = read_csv(cfg, "transfer")
    d = transfer[(transfer["mode"] == "mixed - und") & (transfer["section"] == "vqa_full")]
    assert d["mean"].iloc[0] == pytest.approx(0.1, abs=1e-6)
    assert "siglip-vq" in set(transfer["arch"])  # the authors' reference row

    imb = read_csv(cfg, "imbalance")
    assert set(imb["extra"]) == {"none", "generation", "understanding"}
    # a column's header carries only its own rows' annotation: the judge's is not a VQA one
    header = (cfg.root / "paper/tables/imbalance.md").read_text().splitlines()[2]
    assert "| VQA total (full) | VQA total (official) | judge acc. (judge_space=pixels) |" \
        in header
    probes = read_csv(cfg, "adapters")
    assert probes[(probes["series"] == "mixed - und")]["mean"].iloc[0] == pytest.approx(0.0)
    ref = read_csv(cfg, "reference")
    assert len(ref[ref["entry"] == "vqvq_mixed_curve"]) == 50


def test_seed_interval_is_a_bootstrap_over_items_and_seeds(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = smoke("grid.seeds=[0,1,2]")
    write_fake(cfg, tmp_path)
    build(cfg, "table_mutual_understanding")
    und = read_csv(cfg, "mutual_understanding")
    row = und[(und["arch"] == "siglip-siglip") & (und["series"] == "und")
              & (und["section"] == "vqa_official") & (und["metric"] == "time")].iloc[0]
    values = np.array([0.60 + 0.02 + 0.001 * s for s in (0, 1, 2)])
    assert row["n_seeds"] == 3 and row["interval"] == "bootstrap over test items and seeds"
    assert row["mean"] == pytest.approx(values.mean(), abs=1e-9)
    # the fake items spread the score (sd 0.2 over 20 items) far more than the seeds do
    # (0.001 apart): the interval holds the items' variation, which a t-interval over the
    # seeds would leave out, and stays inside [0, 1]
    t_half = sps.t.ppf(0.975, 2) * values.std(ddof=1) / math.sqrt(3)
    assert 0 < row["lo"] < values.min() and values.max() < row["hi"] < 1
    assert row["hi"] - row["lo"] > 10 * 2 * t_half


# --------------------------------------------------------------------------- figures


def test_figures_are_written(tree):
    cfg = tree
    names = [n for n in TARGETS if n.startswith("fig_")]
    assert set(names) <= set(targets(cfg))
    for name in names:
        png, pdf = build(cfg, name)
        assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 1000
        assert pdf.read_bytes()[:4] == b"%PDF" and pdf.stat().st_size > 1000


# --------------------------------------------------------------------------- findings


def findings_rows(text: str, heading: str) -> list[list[str]]:
    """Rows of the first Markdown table after ``heading``."""
    block = text.split(heading, 1)[1]
    rows = []
    for line in block.splitlines()[1:]:
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip("|").split("|")])
        elif rows:
            break
    return rows[2:]  # skip header and rule


def understanding_verdicts(cfg) -> dict[str, str]:
    build(cfg, "findings")
    text = (cfg.root / "paper/findings.md").read_text()
    rows = findings_rows(text, "### understanding: mixed - und-only, VQA total (full")
    return {r[0]: r[2] for r in rows}


@pytest.mark.parametrize("delta, expected", [
    (0.10, "reproduced"),  # mixed better by 5 interval half-widths
    (-0.10, "not reproduced"),
    (0.01, "inconclusive"),  # within the (wide, independent-errors) interval
])
def test_verdicts_follow_the_numbers(tmp_path, monkeypatch, delta, expected):
    monkeypatch.chdir(tmp_path)
    cfg = smoke()

    def metrics(run, seed, k):
        m = metrics_json(run, seed, k)
        if run.mode == "mixed":
            for section in ("vqa_official", "vqa_full"):
                und = vqa_value(Run(run.arch, "und"), seed, k, "total", section)
                m[section]["total"] = und + delta
                m[section]["ci"]["total"] = [und + delta - HALF, und + delta + HALF]
        return m

    write_fake(cfg, tmp_path, metrics)
    assert understanding_verdicts(cfg) == {"siglip-siglip": expected, "vq-vq": expected}


def test_findings_report_every_finding_with_the_authors_numbers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = smoke("grid.seeds=[0,1,2]")
    write_fake(cfg, tmp_path)
    build(cfg, "findings")
    text = (cfg.root / "paper/findings.md").read_text()
    for heading in ("## F1.", "## F2.", "## F3.", "## Summary"):
        assert heading in text
    assert "0.8905 at 10% of the data to 0.9399 at 100%" in text  # authors: VQ-VQ mixed total
    # beside the generation scores: what each judge reads on ground truth and on shuffled
    # images, from its accuracy.json
    assert ("**pixels** judge: ground truth 0.970, the VQ's reconstructions of it 0.890, test "
            "images shuffled against their prompts (the floor) 0.250") in text
    assert "**siglip** judge: ground truth 0.970, test images shuffled" in text
    f2 = findings_rows(text, "vs input-space distortion")
    assert {r[0]: r[3] for r in f2}["vq-vq"] == "reproduced"  # gain falls with sigma
    adapters = findings_rows(text, "### (b) Input-adapter features")
    assert adapters[0][0] == "vq-vq" and adapters[0][4] == "reproduced"  # equal probes


def test_summary_counts_the_imbalance_verdicts(tree):
    build(tree, "findings")
    text = (tree.root / "paper/findings.md").read_text()
    summary = findings_rows(text, "## Summary: verdicts per test")
    imbalance = {r[1]: sum(map(int, r[2:])) for r in summary if r[0] == "F1 (imbalance)"}
    # smoke: one architecture (vq-vq) x one extra level (48 images) per kind of extra data
    assert list(imbalance.values()) == [1, 1], summary
    rows = findings_rows(text, "### Imbalance (extension)")
    assert len(rows) == 2


def test_one_seed_without_an_interval_is_inconclusive(tree):
    build(tree, "findings")
    text = (tree.root / "paper/findings.md").read_text()
    adapters = findings_rows(text, "### (b) Input-adapter features")
    assert adapters[0][4] == "inconclusive"  # probe.json has no interval, one seed


# --------------------------------------------------------------------------- errors


def test_missing_input_names_the_file(tree, capsys):
    cfg = tree
    missing = paths.eval_metrics(cfg, Run("vq-vq", "und"), 0, 2)
    missing.unlink()
    with pytest.raises(FileNotFoundError, match=str(missing)):
        build(cfg, "table_mutual_understanding")
    with pytest.raises(SystemExit) as e:
        paper_main(["--config", str(ROOT / "config/smoke.yaml"),
                    "--target", "table_mutual_understanding"])
    assert str(missing) in str(e.value)


def test_cli_lists_targets_and_refuses_unconfigured_ones(tree, capsys):
    cfg = tree
    paper_main(["--config", str(ROOT / "config/smoke.yaml"), "--list"])
    listed = json.loads(capsys.readouterr().out)
    assert listed["findings"]["outputs"] == [str(cfg.root / "paper/findings.md")]
    with pytest.raises(SystemExit) as e:
        paper_main(["--config", str(ROOT / "config/smoke.yaml"), "--target", "table_llava"])
    assert "needs experiment(s) llava" in str(e.value)


def test_every_target_has_a_report_caption():
    for name in TARGETS:
        assert (ROOT / "workflow/report" / f"{name}.rst").is_file(), name


def test_spaces_table_names_what_a_space_loses(tree):
    cfg = tree
    build(cfg, "table_spaces")
    t = read_csv(cfg, "spaces")
    time = t[t["metric"] == "time"].set_index("space")["share_of_pixels"]
    assert time["vq"] == pytest.approx(0.6 / 0.9) and time["siglip"] == pytest.approx(0.8 / 0.9)
    md = (cfg.root / "paper/tables/spaces.md").read_text()
    assert "time (67%)" in md and "time (89%)" in md and "(ceiling)" in md
    build(cfg, "findings")
    assert "**vq** total 0.920 (time 0.600" in (cfg.root / "paper/findings.md").read_text()


def test_a_difference_scored_alike_on_every_item_says_so():
    """Two runs that answer every item alike give a 0-wide interval: the finding says so
    instead of printing an MDE of 0; other differences are formatted as before."""
    from uvlm.report.findings import ALIKE, _judged

    s = pd.DataFrame({"mean": [0.0, 0.02], "lo": [0.0, -0.01], "hi": [0.0, 0.05],
                      "mde": [0.0, 0.04]})
    out = _judged(s, "positive", "total")
    assert list(out["text"]) == [ALIKE, "+0.020 [-0.010, +0.050]"]
    assert list(out["mde_text"]) == ["–", "0.040"]
    assert list(out["verdict"]) == ["inconclusive", "inconclusive"]
