"""The results layout (uvlm.paths): one function per file, for the package and the rules."""

from pathlib import Path

from uvlm import paths, provenance
from uvlm.config import from_dict
from uvlm.grid import Run


def test_a_str_root_gives_str_paths_and_wildcards_pass_through():
    assert paths.ckpt_weights("results/x", "{run}", "{seed}", "{k}") == \
        "results/x/runs/{run}/seed{seed}/{k}/model.safetensors"
    assert paths.eval_metrics("R", "{run}", "{seed}", 3) == \
        "R/eval/{run}/seed{seed}/ckpt03/metrics.json"
    assert paths.affine_file("R", "{space}", "{strength}") == \
        "R/encoders/affine/{space}_{strength}.safetensors"
    assert paths.log_file("R", "train", "{run}/seed{seed}") == "R/logs/train/{run}/seed{seed}.log"


def test_a_config_gives_paths_under_its_root():
    cfg = from_dict({"name": "tiny"})
    run = Run("vq-vq", "mixed")
    assert cfg.root == Path("results/tiny")
    assert paths.ckpt_dir(cfg, run, 0, 2) == Path("results/tiny/runs/vq-vq_mixed/seed0/ckpt02")
    assert paths.affine_file(cfg, "vq", 0.5) == \
        Path("results/tiny/encoders/affine/vq_0.5.safetensors")
    assert paths.train_log(cfg, run, 1, "sft") == \
        Path("results/tiny/runs/vq-vq_mixed/seed1/sft/metrics.jsonl")
    assert paths.table_files(cfg, "t")[0] == Path("results/tiny/paper/tables/t.csv")
    # the str and Path forms name the same file
    assert paths.features_file(str(cfg.root), "vq", "test") == \
        str(paths.features_file(cfg, "vq", "test"))


def test_provenance_templates_come_from_the_layout():
    unit = provenance.UNITS["evaluate"]
    assert unit.artifact == paths.eval_metrics("", "{run}", "{seed}", "{ckpt}")
    assert unit.record == "eval/{run}/seed{seed}/provenance.json"
