"""What the paper stage compares: protocols, metrics, series and how they are printed."""

from __future__ import annotations

import math
from pathlib import Path

import yaml

from uvlm.grid import Run, experiment_runs

#: VQA sections of metrics.json, both reported. The verdicts and curves use ``vqa_full``:
#: it scores every turn of every test item for every run, while the authors' ``official``
#: protocol scores different items for mixed and und-only runs (their und-only evaluation
#: filters the test file first, docs/paper.md §6.1), so its differences mix item sets.
VQA_SECTIONS = ("vqa_official", "vqa_full")
PRIMARY_VQA = "vqa_full"
VQA_METRICS = ("time", "weather", "position", "battery", "total")
UND_TOTAL = "total"

GEN_SECTION = "generation"
#: the judge's reading of each generated image vs the attributes its prompt asked for,
#: micro-averaged over attributes (per attribute: hour, minute, weather, ...)
GEN_PRIMARY = "total"
FID = "fid"
#: generation metrics printed first, in this order; any other metric follows alphabetically
GEN_ORDER = ("total", "fid", "cosine", "retrieval_top1")
LOWER_IS_BETTER = frozenset({"fid"})

CAPTION_SECTION = "caption"
PROBE_SECTION = "adapters"
PROBE_METRIC = "probe_accuracy"
#: a mixed - und difference in weather-probe accuracy up to this counts as "not more
#: separable" (the adapter claim of finding 3 is a claim of no meaningful difference)
PROBE_MARGIN = 0.05

#: transfer experiment: biased attribute -> the VQA category that measures it
BIASED_METRIC = {"weather": "weather", "battery": "battery"}

SERIES_LABELS = {
    "mixed": "mixed",
    "und": "und-only",
    "und-eq": "und-only, equal compute",
    "gen": "gen-only",
    "gen-eq": "gen-only, equal compute",
}
SECTION_LABELS = {"vqa_official": "official", "vqa_full": "full", "caption": "caption",
                  "generation": "generation", "adapters": "adapters"}
METRIC_LABELS = {"fid": "FID", "retrieval_top1": "retrieval@1",
                 "probe_accuracy": "probe acc.", (GEN_SECTION, "total"): "judge acc. (total)"}


def series(run: Run) -> str:
    """Series key of a run in the mutual comparison: its mode, ``-eq`` for equal compute."""
    return run.mode + ("-eq" if run.equal_compute else "")


def metric_label(metric: str, section: str | None = None) -> str:
    """Display name; a (section, metric) entry wins over a metric entry."""
    return METRIC_LABELS.get((section, metric), METRIC_LABELS.get(metric, metric))


def ordered(metrics, first=()) -> list[str]:
    """``first`` (those present) then the rest alphabetically."""
    metrics = set(metrics)
    return [m for m in first if m in metrics] + sorted(metrics - set(first))


def fmt(metric: str, value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.1f}" if metric in LOWER_IS_BETTER else f"{value:.3f}"


def fmt_interval(metric: str, mean: float, lo: float, hi: float) -> str:
    """``0.912 [0.901, 0.925]``; the mean alone when there is no interval."""
    if mean is None or math.isnan(mean):
        return "–"
    if math.isnan(lo) or math.isnan(hi):
        return fmt(metric, mean)
    return f"{fmt(metric, mean)} [{fmt(metric, lo)}, {fmt(metric, hi)}]"


def fmt_diff(metric: str, mean: float, lo: float, hi: float) -> str:
    """Signed: ``+0.012 [-0.004, +0.028]``."""
    if mean is None or math.isnan(mean):
        return "–"
    d = 1 if metric in LOWER_IS_BETTER else 3
    s = f"{mean:+.{d}f}"
    if math.isnan(lo) or math.isnan(hi):
        return s
    return f"{s} [{lo:+.{d}f}, {hi:+.{d}f}]"


# --------------------------------------------------------------------------- grid cells

def _checked(cfg, experiment: str, cells: dict) -> dict:
    """``cells`` keyed by run name, checked against the grid (a renamed run fails here)."""
    names = {r.name for r in experiment_runs(cfg, experiment)}
    if set(cells) != names:
        raise ValueError(f"report: the {experiment} runs the report expects "
                         f"{sorted(set(cells) ^ names)} differ from uvlm.grid's")
    return cells


def imbalance_levels(cfg) -> dict[str, tuple[str, str, int]]:
    """Imbalance run name -> (arch, extra task, extra images); the base run is the 0 of
    both curves and appears as ("none", 0)."""
    cells = {}
    for arch in cfg.grid.imbalance_architectures:
        cells[Run(arch, "mixed").name] = (arch, "none", 0)
        for n in cfg.data.extra_generation:
            cells[Run(arch, "mixed", f"extra-gen-{n}").name] = (arch, "generation", n)
        for n in cfg.data.extra_understanding:
            cells[Run(arch, "mixed", f"extra-und-{n}").name] = (arch, "understanding", n)
    return _checked(cfg, "imbalance", cells)


def transfer_cells(cfg) -> dict[str, tuple[str, str, str]]:
    """Transfer run name -> (arch, biased attribute, mode)."""
    cells = {Run(arch, mode, f"biased-{attr}").name: (arch, attr, mode)
             for arch in cfg.grid.transfer_architectures
             for attr in cfg.grid.transfer_attributes for mode in ("mixed", "und")}
    return _checked(cfg, "transfer", cells)


# --------------------------------------------------------------------------- figure styles

STYLE_DIR = Path(__file__).with_name("styles")


def style_files(figure: str) -> list[Path]:
    """The shared style and the figure's own (the latter wins key by key)."""
    return [STYLE_DIR / "base.yaml", STYLE_DIR / f"{figure}.yaml"]


def load_style(figure: str) -> dict:
    style: dict = {}
    for path in style_files(figure):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: figure style file not found")
        for key, value in (yaml.safe_load(path.read_text()) or {}).items():
            if isinstance(value, dict) and isinstance(style.get(key), dict):
                style[key] = style[key] | value
            else:
                style[key] = value
    return style
