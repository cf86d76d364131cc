"""The paper stage's targets: every table, figure and ``findings.md``, with exact files.

``targets(cfg)`` maps each target the config asks for to ``(inputs, outputs)``; the
Snakefile makes one rule per target from it, and ``python -m uvlm paper --target NAME``
builds one. A target's inputs are exactly the files its builder reads (both come from the
same :class:`~uvlm.report.collect.Reads`), plus the reference numbers it prints and, for a
figure, its style files, so restyling one figure reruns only that figure's rule. A table's
runs and inputs come from its ``spec.TABLES`` entry, the one place they are declared.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from uvlm import paths
from uvlm.config import Config, ConfigError
from uvlm.grid import JUDGE_OF_SPACE, experiment_runs
from uvlm.report.collect import Reads, Results, eval_reads, load
from uvlm.report.reference import REFERENCE_PATH, load_reference
from uvlm.report.spec import TABLES, TableSpec, style_files
from uvlm.utils import atomic_write

# The builders (pandas summaries, scipy, matplotlib) are imported when a target is built,
# not when the Snakefile asks for the targets.


class TargetFiles(NamedTuple):
    inputs: list[Path]
    outputs: list[Path]


@dataclass(frozen=True)
class Target:
    experiments: tuple[str, ...]  # built when all of these are in grid.experiments
    reads: Callable[[Config], Reads]
    outputs: Callable[[Config], list[Path]]
    build: Callable[[Config, Results, dict | None], None]  # (cfg, results, reference)
    without: tuple[str, ...] = ()  # not built when any of these is in grid.experiments


def _rel(path: Path) -> Path:
    """Package files (reference numbers, styles) relative to the working directory when
    below it, so the Snakefile's inputs read like the rest of the repository."""
    rel = os.path.relpath(path)
    return Path(rel) if not rel.startswith("..") else path


def _final(cfg: Config) -> list[int]:
    return [cfg.train.checkpoints]


# --------------------------------------------------------------------------- tables

def _table_target(name: str, t: TableSpec) -> Target:
    def reads(cfg: Config) -> Reads:
        runs = tuple(t.runs(cfg))
        return Reads(evals=eval_reads((list(runs), _final(cfg))) if t.reads == "evals" else (),
                     probe_runs=runs if t.reads == "probes" else (),
                     log_runs=runs if t.extra == "steps" else (),
                     llava_runs=runs if t.reads == "llava" else (),
                     space_probe=t.reads == "spaces",
                     files=(_rel(REFERENCE_PATH),) if t.authors else ())

    def outputs(cfg: Config) -> list[Path]:
        return paths.table_files(cfg, name)

    def build(cfg: Config, res: Results, ref: dict | None) -> None:
        from uvlm.report import tables

        tables.write_table(tables.build_table(t, cfg, res, ref), paths.table_files(cfg, name))

    return Target((t.experiment,) if t.experiment else (), reads, outputs, build, t.without)


def _final_reads(experiment: str, ref: bool):
    def reads(cfg: Config) -> Reads:
        return Reads(evals=eval_reads((experiment_runs(cfg, experiment), _final(cfg))),
                     files=(_rel(REFERENCE_PATH),) if ref else ())
    return reads


def _adapter_reads(cfg: Config) -> Reads:
    return Reads(probe_runs=tuple(experiment_runs(cfg, "adapters")),
                 files=(_rel(REFERENCE_PATH),))


# --------------------------------------------------------------------------- figures

def _figure_target(name: str, experiment: str, reads_of: Callable[[Config], Reads],
                   ref: bool = False) -> Target:
    def reads(cfg: Config) -> Reads:
        base = reads_of(cfg)
        files = [_rel(p) for p in style_files(name)]
        return dataclasses.replace(
            base, files=tuple([*files, *((_rel(REFERENCE_PATH),) if ref else ())]))

    def outputs(cfg: Config) -> list[Path]:
        return paths.figure_files(cfg, name)

    def build(cfg: Config, res: Results, reference: dict | None) -> None:
        from uvlm.report import figures

        figures.draw(name, cfg, res, reference)

    return Target((experiment,), reads, outputs, build)


def _mutual_curves(cfg: Config) -> Reads:
    return Reads(evals=eval_reads((experiment_runs(cfg, "mutual"), paths.checkpoint_numbers(cfg))))


# --------------------------------------------------------------------------- findings

def _findings_reads(cfg: Config) -> Reads:
    exps = set(cfg.grid.experiments)
    groups = []
    if "mutual" in exps:
        groups.append((experiment_runs(cfg, "mutual"), paths.checkpoint_numbers(cfg)))
    for exp in ("imbalance", "alignment", "transfer"):
        if exp in exps:
            groups.append((experiment_runs(cfg, exp), _final(cfg)))
    return Reads(evals=eval_reads(*groups),
                 probe_runs=tuple(experiment_runs(cfg, "adapters")) if "adapters" in exps
                 else (),
                 llava_runs=tuple(experiment_runs(cfg, "llava")) if "llava" in exps else (),
                 space_probe="llava" not in exps,
                 judges=tuple(sorted({JUDGE_OF_SPACE[r.gen_space]
                                      for r in experiment_runs(cfg, "mutual")
                                      if r.mode != "und"})) if "mutual" in exps else (),
                 files=(_rel(REFERENCE_PATH),))


def _findings_outputs(cfg: Config) -> list[Path]:
    return [paths.findings_file(cfg)]


def _findings_build(cfg: Config, res: Results, ref: dict | None) -> None:
    from uvlm.report import findings

    with atomic_write(paths.findings_file(cfg)) as fh:
        fh.write(findings.findings(cfg, res, ref))


# --------------------------------------------------------------------------- registry

TARGETS: dict[str, Target] = {
    **{f"table_{name}": _table_target(name, t) for name, t in TABLES.items()},
    "fig_mutual": _figure_target("fig_mutual", "mutual", _mutual_curves, ref=True),
    "fig_imbalance": _figure_target("fig_imbalance", "imbalance",
                                    _final_reads("imbalance", ref=False)),
    "fig_alignment": _figure_target("fig_alignment", "alignment",
                                    _final_reads("alignment", ref=False)),
    "fig_transfer": _figure_target("fig_transfer", "transfer",
                                   _final_reads("transfer", ref=False), ref=True),
    "fig_adapters": _figure_target("fig_adapters", "adapters", _adapter_reads),
    "findings": Target((), _findings_reads, _findings_outputs, _findings_build),
}


def _configured(cfg: Config, target: Target) -> bool:
    exps = set(cfg.grid.experiments)
    return set(target.experiments) <= exps and not set(target.without) & exps


def targets(cfg: Config) -> dict[str, TargetFiles]:
    """Every paper target this config asks for: name -> (inputs, outputs)."""
    return {name: TargetFiles(t.reads(cfg).paths(cfg), t.outputs(cfg))
            for name, t in TARGETS.items() if _configured(cfg, t)}


def read_checkpoints(cfg: Config) -> dict[str, set[int]]:
    """Trained run name -> the checkpoints some configured target reads (the ones worth
    evaluating; a run no target reads through its evaluation is absent)."""
    out: dict[str, set[int]] = {}
    for t in TARGETS.values():
        if _configured(cfg, t):
            for run, k in t.reads(cfg).evals:
                out.setdefault(run.trained.name, set()).add(k)
    return out


def experiment_targets(cfg: Config, experiment: str) -> list[str]:
    """Names of the configured targets that show one experiment (``findings`` and the
    reference table belong to none)."""
    return [name for name, t in TARGETS.items()
            if experiment in t.experiments and _configured(cfg, t)]


def build(cfg: Config, name: str) -> list[Path]:
    """Build one target; returns its outputs."""
    if name not in TARGETS:
        raise ConfigError(f"paper target {name!r} is unknown; choose from: "
                          f"{', '.join(TARGETS)}")
    target = TARGETS[name]
    if not _configured(cfg, target):
        missing = sorted(set(target.experiments) - set(cfg.grid.experiments))
        raise ConfigError(f"paper target {name!r} needs experiment(s) {', '.join(missing)} "
                          f"in grid.experiments (config {cfg.name!r} has "
                          f"{', '.join(cfg.grid.experiments)})")
    reads = target.reads(cfg)
    # Only a target that declares the reference numbers as an input gets them.
    ref = load_reference() if _rel(REFERENCE_PATH) in reads.files else None
    target.build(cfg, load(cfg, reads), ref)
    return target.outputs(cfg)
