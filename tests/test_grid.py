"""The grid: run names round-trip, experiments share runs, empty cells are refused."""

from pathlib import Path

import pytest

from uvlm.config import ConfigError, load
from uvlm.grid import (
    Run,
    all_runs,
    equal_compute_scale,
    experiment_runs,
    jobs,
    parse_run,
    run_seeds,
    training_cost,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "run",
    [
        Run("vq-vq", "mixed"),
        Run("siglip-vq", "und", equal_compute=True),
        Run("vq-vq", "und", affine=0.2),
        Run("siglip-siglip", "mixed", "biased-weather", detach=True),
        Run("vq-vq", "mixed", "extra-gen-1000"),
    ],
)
def test_run_names_round_trip(run):
    assert parse_run(run.name) == run


def test_names_are_readable():
    assert Run("siglip-vq", "und", equal_compute=True).name == "siglip-vq_und-eq"
    assert Run("vq-vq", "und", affine=0.2).name == "vq-vq_und_affine0.2"


@pytest.mark.parametrize("bad", ["vq-vq", "vq-vq_both", "vq-vq_mixed_sideways"])
def test_bad_run_names(bad):
    with pytest.raises(ConfigError, match=bad):
        parse_run(bad)


def test_equal_compute_matches_mixed_steps():
    assert Run("vq-vq", "und", equal_compute=True).epoch_scale == 1.5
    assert Run("vq-vq", "gen", equal_compute=True).epoch_scale == 3.0
    assert Run("vq-vq", "gen").epoch_scale == 1.0
    assert equal_compute_scale("und") == 1.5 and equal_compute_scale("mixed") == 1.0


def test_experiments_share_runs_instead_of_retraining():
    cfg = load(ROOT / "config/config.yaml")
    names = [r.name for r in all_runs(cfg)]
    assert len(names) == len(set(names))
    # alignment at distortion 0 is mutual's mixed run
    assert "siglip-siglip_mixed" in {r.name for r in experiment_runs(cfg, "alignment")}
    assert "siglip-siglip_mixed" in {r.name for r in experiment_runs(cfg, "mutual")}


def test_mutual_seeds_apply_to_mutual_runs_only():
    cfg = load(ROOT / "config/smoke.yaml", ["grid.seeds=[0]", "grid.mutual_seeds=[0,1,2]"])
    # shared by mutual and alignment: trained with mutual's seeds
    assert run_seeds(cfg, Run("vq-vq", "mixed")) == [0, 1, 2]
    assert run_seeds(cfg, Run("vq-vq", "mixed", affine=0.3)) == [0]
    assert run_seeds(cfg, Run("vq-vq", "und", "biased-weather")) == [0]
    pairs = jobs(cfg)
    assert len(pairs) == len(set(pairs))
    mutual = set(experiment_runs(cfg, "mutual"))
    assert len(pairs) == 3 * len(mutual) + len(set(all_runs(cfg)) - mutual)
    # empty mutual_seeds: every experiment uses grid.seeds
    plain = load(ROOT / "config/smoke.yaml", ["grid.seeds=[4,5]"])
    assert all(run_seeds(plain, r) == [4, 5] for r in all_runs(plain))
    with pytest.raises(ConfigError, match="in no configured experiment"):
        run_seeds(plain, Run("clip-clip", "mixed"))


def test_empty_experiment_is_refused_naming_it():
    cfg = load(ROOT / "config/smoke.yaml", ["grid.architectures=[siglip-vq]",
                                            "grid.imbalance_architectures=[]"])
    with pytest.raises(ConfigError, match="'imbalance' has no runs"):
        experiment_runs(cfg, "imbalance")


def test_unknown_experiment_is_refused():
    cfg = load(ROOT / "config/smoke.yaml")
    with pytest.raises(ConfigError, match="unknown experiment 'nope'"):
        experiment_runs(cfg, "nope")


def test_training_cost_orders_runs_longest_first():
    """Record passes: und records, generated images (a VQ image at VQ_IMAGE_COST), extras."""
    cfg = load(ROOT / "config/smoke.yaml", ["train.epochs=10", "data.n_train=3000"])
    cost = {name: training_cost(cfg, parse_run(name)) for name in (
        "siglip-vq_mixed", "siglip-siglip_mixed_extra-und-1000", "siglip-siglip_mixed",
        "siglip-vq_gen", "siglip-siglip_und", "siglip-siglip_gen", "siglip-siglip_und-eq")}
    assert cost == pytest.approx({"siglip-vq_mixed": 10 * (6000 + 1.6 * 3000),
                                  "siglip-siglip_mixed_extra-und-1000": 10 * (8000 + 3000),
                                  "siglip-siglip_mixed": 10 * 9000,
                                  "siglip-vq_gen": 10 * 1.6 * 3000,
                                  "siglip-siglip_und": 10 * 6000,
                                  "siglip-siglip_gen": 10 * 3000,
                                  "siglip-siglip_und-eq": 1.5 * 10 * 6000})
    # the order of the measured CPU times of the mini grid's runs (README "Mini scale"; the
    # gen-only VQ run trained is vq-vq_gen)
    measured = ["siglip-siglip_mixed_extra-und-1000", "siglip-vq_mixed", "siglip-siglip_mixed",
                "siglip-siglip_und", "siglip-vq_gen", "siglip-siglip_gen"]
    assert sorted(measured, key=cost.get, reverse=True) == measured
    assert training_cost(cfg, parse_run("siglip-siglip_mixed_extra-gen-1000")) == 10 * 10000


def test_crossed_single_task_cells_read_the_same_space_run():
    """An und-only run never trains its generation head, a gen-only run never reads an
    understanding image: a crossed architecture's single-task cell is trained once, as the
    same-space architecture's run, and read from its folders."""
    from uvlm import paths

    cfg = load(ROOT / "config/config.yaml", ["grid.equal_compute=true"])
    cells = {r.name: r for r in experiment_runs(cfg, "mutual")}
    assert len(cells) == 4 * 5
    expected = {"siglip-vq_und": "siglip-siglip_und", "vq-siglip_gen": "siglip-siglip_gen",
                "vq-siglip_und": "vq-vq_und", "siglip-vq_gen": "vq-vq_gen",
                "siglip-vq_und-eq": "siglip-siglip_und-eq",
                "vq-siglip_gen-eq": "siglip-siglip_gen-eq"}
    for cell, run in expected.items():
        assert cells[cell].trained == parse_run(run)
        assert paths.run_dir(cfg, cells[cell], 0) == paths.run_dir(cfg, parse_run(run), 0)
        assert run_seeds(cfg, cells[cell]) == run_seeds(cfg, parse_run(run)) == [0, 1]
    for name in ("siglip-vq_mixed", "siglip-siglip_und", "vq-vq_gen"):
        assert cells[name].trained is cells[name] and cells[name] == parse_run(name)
    # per seed: 4 mixed runs and one single-task run per space and task (x2 with equal compute)
    mutual = {r for r, _ in jobs(cfg)} & {c.trained for c in cells.values()}
    assert sorted(r.name for r in mutual if r.mode != "mixed") == sorted(
        f"{s}-{s}_{m}" for s in ("siglip", "vq") for m in ("und", "gen", "und-eq", "gen-eq"))
    assert not {r.name for r, _ in jobs(cfg)} & set(expected)
    # adapters read the same und-only cells
    assert {r.trained.name for r in experiment_runs(cfg, "adapters") if r.mode == "und"} == {
        "siglip-siglip_und", "vq-vq_und"}
