"""What the paper stage compares: protocols, metrics, series and how they are printed."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from uvlm.grid import Run, experiment_runs
from uvlm.report.collect import BENCHMARKS

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
SERIES_ORDER = tuple(SERIES_LABELS)
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


def number_format(metric: str | None) -> str:
    """How a metric's numbers print: FID to one decimal, scores in [0, 1] to three."""
    return ".1f" if metric in LOWER_IS_BETTER else ".3f"


def fmt(metric: str | None, value: float, number: str | None = None) -> str:
    """``number`` (a format spec) overrides the metric's own format."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return format(value, number or number_format(metric))


def fmt_interval(metric: str | None, mean: float, lo: float, hi: float,
                 number: str | None = None) -> str:
    """``0.912 [0.901, 0.925]``; the mean alone when there is no interval."""
    if mean is None or math.isnan(mean):
        return "–"
    if math.isnan(lo) or math.isnan(hi):
        return fmt(metric, mean, number)
    return f"{fmt(metric, mean, number)} [{fmt(metric, lo, number)}, {fmt(metric, hi, number)}]"


def fmt_diff(metric: str | None, mean: float, lo: float, hi: float,
             number: str | None = None) -> str:
    """Signed: ``+0.012 [-0.004, +0.028]``."""
    if mean is None or math.isnan(mean):
        return "–"
    number = "+" + (number or number_format(metric))
    s = format(mean, number)
    if math.isnan(lo) or math.isnan(hi):
        return s
    return f"{s} [{format(lo, number)}, {format(hi, number)}]"


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


# --------------------------------------------------------------------------- tables

@dataclass(frozen=True)
class Column:
    """A printed column: the long rows whose ``TableSpec.column`` key has this ``value``."""

    value: object = None
    label: str | None = None  # None: the metric's display name
    number: str | None = None  # format spec of its numbers; None: the metric's (fmt)


@dataclass(frozen=True)
class TableSpec:
    """One paper table, declared once: the registry reads its inputs from it, and
    ``tables.build_table`` computes its long frame (the CSV) and pivots it to the printed
    form (Markdown and LaTeX)."""

    title: str
    # --- what it reads
    experiment: str | None = None  # its runs: this experiment's ...
    modes: tuple[str, ...] | None = None  # ... of these modes (None: all of them)
    reads: str | None = "evals"  # of the runs: final "evals", "probes", "llava"; or "spaces"
    authors: str | None = None  # paper_numbers.yaml entry printed beside ours ("all": each)
    extra: str | None = None  # last column: "steps" (reads the training logs) or "lost"
    without: tuple[str, ...] = ()  # not built when one of these experiments is configured
    # --- the long frame
    sections: tuple[str, ...] = ()  # the metrics.json sections a mutual table shows
    versus: tuple[str, str, str] | None = None  # (key, a, b): also a - b, paired per seed
    archs: str | None = None  # the cfg.grid list whose order sorts the arch key ...
    order: dict = field(default_factory=dict)  # ... then these keys, in their listed order,
    then: tuple[str, ...] = ()  # ... then these keys by value
    not_in_csv: tuple[str, ...] = ()  # row keys that are printed only
    # --- the printed form: a row per distinct value of ``rows``, a column per ``columns``
    rows: tuple[str, ...] = ()  # "source" keeps ours apart from the authors' and cites them
    column: str | tuple[str, ...] | None = "metric"  # key(s) whose value picks the column
    columns: tuple[Column, ...] | None = None  # None: a column per metric, ``first`` first
    first: tuple[str, ...] = ()
    labels: dict = field(default_factory=dict)  # row key -> header (besides ROW_LABELS)
    show: dict = field(default_factory=dict)  # row key -> {value: text} or a format spec
    value: str = "mean"  # the long frame's number column
    notes: tuple[str, ...] = ()  # format strings over ``cfg`` and ``ref``

    def runs(self, cfg) -> list[Run]:
        if self.experiment is None:
            return []
        return [r for r in experiment_runs(cfg, self.experiment)
                if self.modes is None or r.mode in self.modes]

    @property
    def difference(self) -> str | None:
        """The key value of the ``versus`` rows: ``mixed - und``."""
        return f"{self.versus[1]} - {self.versus[2]}" if self.versus else None


ROW_LABELS = {"section": "protocol"}
ROW_SHOW = {"series": SERIES_LABELS, "section": SECTION_LABELS}
OURS = "ours"
PROBE_COLUMNS = ("time", "weather", "position", "battery", "total")

TABLES: dict[str, TableSpec] = {  # table file stem -> its spec
    "mutual_understanding": TableSpec(
        "Mutual benefit, understanding: VQA at the final checkpoint",
        experiment="mutual", modes=("mixed", "und"), authors="vqvq_mixed_curve", extra="steps",
        sections=VQA_SECTIONS, archs="architectures",
        order={"section": VQA_SECTIONS, "series": SERIES_ORDER},
        rows=("arch", "section", "series", "source"), first=VQA_METRICS,
        notes=("Protocols: official = the authors' scorer (first turn, first 499 records); "
               "full = every turn of every test item.",
               "Authors' row: their VQ-VQ mixed run at 100% of the epoch "
               "({ref[vqvq_mixed_curve][source]}); Vicuna-7B scale, one run; their und-only "
               "counterpart was not published.",
               "steps: optimizer steps of the run (equal-compute runs match the mixed run).")),
    "mutual_generation": TableSpec(
        "Mutual benefit, generation at the final checkpoint",
        experiment="mutual", modes=("mixed", "gen"), extra="steps", sections=(GEN_SECTION,),
        archs="architectures", order={"series": SERIES_ORDER}, rows=("arch", "series"),
        first=GEN_ORDER,
        notes=("judge acc.: a classifier trained on ground truth reads each generated image "
               "(pixels for VQ heads, features for continuous heads) and is scored against "
               "the attributes the prompt asked for. FID only for VQ heads (pixel decoder); "
               "its feature extractor is named in the header (a stand-in is not Inception).",
               "The authors published no generation-only numbers.")),
    "mutual_caption": TableSpec(
        "Captions at the final checkpoint (trained on, never scored by the authors)",
        experiment="mutual", modes=("mixed", "und"), sections=(CAPTION_SECTION,),
        archs="architectures", order={"series": SERIES_ORDER}, rows=("arch", "series"),
        notes=("Attributes parsed back from generated captions.",)),
    "imbalance": TableSpec(
        "Imbalance: extra one-task data on top of the mixed training set (final checkpoint)",
        experiment="imbalance", archs="imbalance_architectures",
        order={"extra": ("none", "generation", "understanding")}, then=("n",),
        rows=("arch", "extra", "n"), column=("section", "metric"),
        columns=(Column((PRIMARY_VQA, UND_TOTAL), "VQA total (full)"),
                 Column(("vqa_official", UND_TOTAL), "VQA total (official)"),
                 Column((GEN_SECTION, GEN_PRIMARY), "judge acc."),
                 Column((GEN_SECTION, FID), "FID")),
        labels={"extra": "extra data", "n": "extra images"},
        notes=("extra = generation: the added images carry only generation records (read the "
               "understanding columns); extra = understanding: only VQA and caption records "
               "(read the generation columns).",)),
    "alignment": TableSpec(
        "Alignment: VQA total (full protocol) under an affine distortion of the input space, "
        "final checkpoint",
        experiment="alignment", versus=("quantity", "mixed", "und"), then=("arch", "affine"),
        rows=("arch", "affine"), column="quantity",
        columns=(Column("mixed", "mixed"), Column("und", "und-only"),
                 Column("mixed - und", "gain (mixed - und)")),
        labels={"affine": "distortion"}, show={"affine": "g"},
        notes=("distortion: VQ sigma (singular values in [1-s, 1+s]) for vq-* architectures; "
               "SigLIP k (0 identity, 1 rotation, >1 scale in [1/k, k]) for siglip-*. The "
               "authors published no VQA numbers for this experiment.",)),
    "transfer": TableSpec(
        "Transfer: accuracy on the attribute under-represented in the understanding data "
        "(final checkpoint)",
        experiment="transfer", authors="weather_biased", versus=("mode", "mixed", "und"),
        archs="architectures", order={"section": VQA_SECTIONS},
        rows=("arch", "attribute", "section", "source"), column="mode",
        columns=(Column("und", "und-only"), Column("mixed", "mixed"),
                 Column("mixed - und", "mixed - und")),
        labels={"attribute": "biased attribute"},
        notes=("Generation data stays complete; understanding records of images outside the "
               "kept values are dropped (config data.bias).",
               "Authors' rows: {ref[weather_biased][arch]} weather-biased, "
               "{ref[weather_biased][runs][und][source]}; the mixed row is "
               "{ref[weather_biased][runs][mixed][source]}.")),
    "adapters": TableSpec(
        "Adapters: linear-probe accuracy of weather from the input adapter's features (final "
        "checkpoint)",
        experiment="adapters", reads="probes", authors="adapter_probe",
        versus=("series", "mixed", "und"), archs="adapters_architectures",
        order={"series": ("und", "mixed", "mixed - und")}, rows=("arch", "series", "source"),
        column=None, columns=(Column(None, "weather probe acc."),),
        notes=("The claim of finding 3: mixed training does not make the adapter's features "
               "more separable (transfer happens inside the LLM).",)),
    "llava": TableSpec(
        "LLaVA-1.5-7B recipe with generation data: lmms-eval benchmarks",
        experiment="llava", reads="llava", authors="llava", rows=("run", "source", "config"),
        column="benchmark", value="value",
        columns=tuple(Column(key, b.label, f".{b.decimals}f") for key, b in BENCHMARKS.items()),
        notes=("Percent except MME (points). Intervals: value -/+ 1.96 lmms-eval stderr where "
               "lmms-eval reports one. '–': benchmark not run.",
               "Authors' rows: {ref[llava][source]} @ {ref[llava][commit]}; run -> "
               "configuration inferred from step counts (docs/paper.md §5).")),
    "reference": TableSpec(
        "The authors' raw numbers (reference; Vicuna-7B scale, one run each)",
        reads=None, authors="all",
        rows=("entry", "arch", "mode", "protocol", "at", "metric", "source"), column=None,
        columns=(Column(None, "value", "g"),), value="value",
        notes=("Copied from result files in the history of "
               "github.com/MajorDavidZhang/Generalization_unified_VLM "
               "(src/uvlm/report/paper_numbers.yaml cites each file).",)),
    # the llava scale encodes images on the fly: no features to probe
    "spaces": TableSpec(
        "What each frozen vision space keeps: linear readouts, VQA formulas (test split)",
        reads="spaces", extra="lost", without=("llava",), not_in_csv=("readout",),
        rows=("space", "readout"), columns=tuple(Column(m) for m in PROBE_COLUMNS),
        notes=("Readouts fitted on the {cfg.data.n_train} train images' frozen features (codes "
               "one-hot per position; pixels 2x2-pooled), scored on the {cfg.data.n_test} test "
               "images, one item per image and attribute: the ceiling a model reading that "
               "space can reach with a linear reader (a lower bound on what the space holds).",
               "Interval: bootstrap over test images.")),
}


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
