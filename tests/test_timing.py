"""The timing summary adds up Snakemake's benchmark files per stage."""

import pytest

from uvlm.paths import benchmark_file
from uvlm.timing import main, stages, table

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def bench(root, rel, wall, cpu):
    """A benchmark file where the workflow's rules put it (rel: stage/job.tsv)."""
    stage, job = rel.removesuffix(".tsv").split("/", 1)
    path = benchmark_file(root, stage, job)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + f"{wall}\t0:00:00\t1\t1\t1\t1\t0\t0\t50\t{cpu}\n")


def test_stages_sum_wall_and_cpu_per_stage(tmp_path):
    bench(tmp_path, "train/a/seed0.tsv", 60.0, 30.0)
    bench(tmp_path, "train/b/seed1.tsv", 120.0, 90.0)
    bench(tmp_path, "eval/a/seed0.tsv", 6.0, 6.0)
    s = stages(tmp_path)
    assert (s["train"].jobs, s["train"].wall, s["train"].cpu) == (2, 180.0, 120.0)
    assert (s["train"].longest, s["train"].longest_job) == (120.0, "train/b/seed1")
    text = table(s)
    assert "| train | 2 | 3.0 | 2.0 | 2.0 (`train/b/seed1`) |" in text
    assert "| all | 3 | 3.1 | 2.1 | – |" in text


def test_missing_or_bad_files_name_the_path(tmp_path, capsys):
    with pytest.raises(SystemExit, match="benchmarks: no benchmark files"):
        main([str(tmp_path)])
    bad = tmp_path / "benchmarks/train/x.tsv"
    bad.parent.mkdir(parents=True)
    bad.write_text("nope\n1\n")
    with pytest.raises(SystemExit, match="x.tsv: not a Snakemake benchmark file"):
        main([str(tmp_path)])
