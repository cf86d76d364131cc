"""`python -m uvlm timing RESULTS_DIR`: where a pipeline run spent its time.

Reads the benchmark file Snakemake writes for every job that does work
(``RESULTS_DIR/benchmarks/<stage>/<job>.tsv``, ``uvlm.paths.benchmark_file``: data, encoders,
train, eval, analysis, paper, llava) and prints, per stage, the number of jobs and the sum
and maximum of their wall-clock and CPU seconds, as Markdown.
The sum of wall seconds over the cores a run had is a lower bound of its elapsed time;
Snakemake prints the elapsed time itself at the end of its log.
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass
from pathlib import Path

from uvlm import UvlmError
from uvlm.paths import BENCHMARKS
from uvlm.utils import markdown_table


@dataclass
class Stage:
    jobs: int = 0
    wall: float = 0.0
    cpu: float = 0.0
    longest: float = 0.0
    longest_job: str = ""

    def add(self, job: str, wall: float, cpu: float) -> None:
        self.jobs += 1
        self.wall += wall
        self.cpu += cpu
        if wall > self.longest:
            self.longest, self.longest_job = wall, job


def read_benchmark(path: Path) -> tuple[float, float]:
    """(wall s, cpu s) of one Snakemake benchmark file (its last repeat)."""
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    if not rows or "s" not in rows[-1] or "cpu_time" not in rows[-1]:
        raise UvlmError(f"{path}: not a Snakemake benchmark file (columns s, cpu_time)")
    try:
        return float(rows[-1]["s"]), float(rows[-1]["cpu_time"])
    except ValueError:
        raise UvlmError(f"{path}: non-numeric s or cpu_time in {rows[-1]}") from None


def stages(results: Path) -> dict[str, Stage]:
    root = results / BENCHMARKS
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no benchmark files; run the pipeline first")
    out: dict[str, Stage] = {}
    for path in sorted(root.rglob("*.tsv")):
        rel = path.relative_to(root)
        wall, cpu = read_benchmark(path)
        out.setdefault(rel.parts[0], Stage()).add(str(rel.with_suffix("")), wall, cpu)
    return out


def _min(seconds: float) -> str:
    return f"{seconds / 60:.1f}"


def table(by_stage: dict[str, Stage]) -> str:
    rows, total = [], Stage()
    for name, s in by_stage.items():
        rows.append([name, s.jobs, _min(s.wall), _min(s.cpu),
                     f"{_min(s.longest)} (`{s.longest_job}`)"])
        total.jobs += s.jobs
        total.wall += s.wall
        total.cpu += s.cpu
    rows.append(["all", total.jobs, _min(total.wall), _min(total.cpu), "–"])
    return "\n".join(markdown_table(["stage", "jobs", "wall, sum (min)", "CPU, sum (min)",
                                     "longest job (min)"], rows, keys=1))


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m uvlm timing", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", type=Path, help="a config's results folder, e.g. results/mini")
    args = p.parse_args(argv)
    try:
        print(table(stages(args.results)))
    except (OSError, ValueError) as e:
        sys.exit(f"uvlm timing: {e}")
