"""Every result file the paper stage reads: where it lives and how it is read.

Where each file lives comes from ``uvlm.paths`` (the results layout); the targets registry
declares its Snakemake inputs from the same ``Reads`` the readers use, so a table can never
read a file its rule did not declare.

Evaluation results become one tidy frame, a row per (run, seed, checkpoint, section, metric):

    run arch mode variant affine detach equal_compute seed ckpt frac
    section metric value lo hi n_items note reps

``lo``/``hi`` are the bootstrap 95% interval over test items written by the evaluation (NaN
when it wrote none); ``reps`` (sections in ``PAIRED_SECTIONS``, where the evaluation wrote
``items.json``) the value's bootstrap replicates under item weights that every run shares
(:func:`item_weights`), so that comparisons pair runs item by item (``uvlm.report.stats``);
``n_items`` comes from the evaluation's ``count_<metric>`` entries;
``note`` carries the string annotations of a metric (e.g. which network FID used). A metric
the evaluation did not write (a generation-only run has no VQA; a category with no items is
``null``) has no row: absence is never turned into a zero.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from uvlm import UvlmError, paths
from uvlm.config import Config
from uvlm.grid import Run, run_seeds
from uvlm.utils import stream_seed

# numpy and pandas are imported by the readers that use them: the Snakefile imports this
# module (the layout, ``Reads``) while it plans, in an environment that may hold only
# Snakemake.
if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from uvlm.eval.bootstrap import Ratios

Z95 = 1.959963984540054  # two-sided 95% normal quantile

# --------------------------------------------------------------------------- metrics.json

SECTIONS = ("vqa_official", "vqa_full", "caption", "generation")
#: string entries of a section -> the metric they describe (stored in that row's ``note``)
ANNOTATIONS = {"fid_extractor": "fid", "judge_space": "total"}
#: ``count_<metric>``: how many test items ``<metric>`` averages over (the eval's convention)
COUNT_PREFIX = "count_"
RUN_COLUMNS = ["run", "arch", "mode", "variant", "affine", "detach", "equal_compute"]
COLUMNS = [*RUN_COLUMNS, "seed", "ckpt", "frac", "section", "metric", "value", "lo", "hi",
           "n_items", "note", "reps"]


def _read_json(path: Path):
    if not path.is_file():
        raise FileNotFoundError(f"{path}: result file not found (declared as an input of "
                                f"this paper target; its producing rule did not write it)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UvlmError(f"{path}: not valid JSON ({e})") from None


def _number(x, where: str) -> float:
    if isinstance(x, bool) or not isinstance(x, int | float):
        raise ValueError(f"{where}: expected a number, got {x!r}")
    return float(x)


def _interval(ci, where: str) -> tuple[float, float]:
    if ci is None:  # the evaluation writes null when the interval is undefined
        return math.nan, math.nan
    if not isinstance(ci, list) or len(ci) != 2:
        raise ValueError(f"{where}: expected [lo, hi], got {ci!r}")
    return _number(ci[0], where), _number(ci[1], where)


def read_metrics(path: Path) -> list[dict]:
    """Rows (section, metric, value, lo, hi, n_items, note) of one ``metrics.json``."""
    data = _read_json(path)
    if not isinstance(data, dict):
        raise UvlmError(f"{path}: top level must be a mapping of sections")
    rows = []
    for section, entries in data.items():
        where = f"{path}: {section}"
        if section not in SECTIONS:
            raise ValueError(f"{where}: unknown section; allowed: {', '.join(SECTIONS)}")
        if not isinstance(entries, dict):
            raise ValueError(f"{where}: expected a mapping of metric -> value")
        ci = entries.get("ci", {})
        if not isinstance(ci, dict):
            raise ValueError(f"{where}.ci: expected a mapping of metric -> [lo, hi]")
        values, counts, notes = {}, {}, {}
        for key, value in entries.items():
            if key == "ci" or value is None:
                continue
            if key in ANNOTATIONS:
                if not isinstance(value, str):
                    raise ValueError(f"{where}.{key}: expected a string, got {value!r}")
                notes[ANNOTATIONS[key]] = f"{key}={value}"
            elif key.startswith(COUNT_PREFIX):
                counts[key.removeprefix(COUNT_PREFIX)] = _number(value, f"{where}.{key}")
            elif isinstance(value, str):
                raise ValueError(f"{where}.{key}: string entry {value!r} is not a known "
                                 f"annotation ({', '.join(ANNOTATIONS)}); add it to "
                                 f"uvlm.report.collect.ANNOTATIONS with the metric it names")
            else:
                values[key] = _number(value, f"{where}.{key}")
        for key in ci:
            if key not in entries:
                raise ValueError(f"{where}.ci.{key}: interval for a metric the section lacks")
        for metric, value in values.items():
            lo, hi = _interval(ci.get(metric), f"{where}.ci.{metric}")
            rows.append({"section": section, "metric": metric, "value": value, "lo": lo,
                         "hi": hi, "n_items": counts.get(metric, math.nan),
                         "note": notes.get(metric, "")})
    return rows


def run_fields(run: Run) -> dict:
    return {"run": run.name, "arch": run.arch, "mode": run.mode, "variant": run.variant,
            "affine": run.affine, "detach": run.detach, "equal_compute": run.equal_compute}


# --------------------------------------------------------------------------- probe.json


@dataclass(frozen=True)
class Probe:
    """Adapter analysis of one run and seed: linear-probe accuracy and a t-SNE embedding."""

    accuracy: float
    lo: float
    hi: float
    tsne: np.ndarray  # (N, 2)
    labels: list[str]  # (N,) weather of each point


def wilson_interval(p: float, n: int) -> tuple[float, float]:
    """95% Wilson score interval of a proportion ``p`` observed on ``n`` items."""
    z2 = Z95**2
    center = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return center - half, center + half


def read_probe(path: Path) -> Probe:
    """probe.json: ``probe_accuracy``, ``tsne`` (N x 2), ``labels`` (N); its interval from
    ``ci.probe_accuracy`` when given, else from ``n_test`` (Wilson), else none."""
    import numpy as np

    data = _read_json(path)
    for key in ("probe_accuracy", "tsne", "labels"):
        if key not in data:
            raise UvlmError(f"{path}: missing key {key!r}")
    acc = _number(data["probe_accuracy"], f"{path}: probe_accuracy")
    if "ci" in data:
        lo, hi = _interval(data["ci"].get("probe_accuracy"), f"{path}: ci.probe_accuracy")
    elif "n_test" in data:
        lo, hi = wilson_interval(acc, int(_number(data["n_test"], f"{path}: n_test")))
    else:
        lo, hi = math.nan, math.nan
    tsne = np.asarray(data["tsne"], dtype=float)
    labels = [str(x) for x in data["labels"]]
    if tsne.ndim != 2 or tsne.shape[1] != 2 or len(labels) != tsne.shape[0]:
        raise UvlmError(f"{path}: tsne must be N x 2 with N labels, got shape {tsne.shape} "
                         f"and {len(labels)} labels")
    return Probe(acc, lo, hi, tsne, labels)


def collect_probes(cfg: Config, runs: list[Run]) -> tuple[pd.DataFrame, dict]:
    """Probe accuracies as tidy rows (section ``adapters``) and the probes by (run, seed)."""
    import pandas as pd

    rows, probes = [], {}
    k = cfg.train.checkpoints  # the analysis reads the final checkpoint
    for run in runs:
        for seed in run_seeds(cfg, run):
            p = read_probe(paths.adapter_probe(cfg, run, seed))
            probes[run.name, seed] = p
            rows.append(run_fields(run) | {
                "seed": seed, "ckpt": k, "frac": 1.0, "section": "adapters",
                "metric": "probe_accuracy", "value": p.accuracy, "lo": p.lo, "hi": p.hi,
                "n_items": math.nan, "note": ""})
    return pd.DataFrame(rows, columns=COLUMNS), probes


# --------------------------------------------------------------------------- metrics.jsonl


def read_final_step(path: Path) -> int:
    """The last optimizer step a training log records."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: training log not found")
    step = None
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise UvlmError(f"{path}:{i}: not valid JSON ({e})") from None
        if "step" not in rec:
            raise UvlmError(f"{path}:{i}: record has no 'step'")
        step = int(rec["step"])
    if step is None:
        raise UvlmError(f"{path}: empty training log")
    return step


def collect_steps(cfg: Config, runs: list[Run]) -> pd.DataFrame:
    """Optimizer steps per run and seed (the equal-compute check)."""
    import pandas as pd

    rows = [{"run": r.name, "seed": s, "steps": read_final_step(paths.train_log(cfg, r, s))}
            for r in runs for s in run_seeds(cfg, r)]
    return pd.DataFrame(rows, columns=["run", "seed", "steps"])


# --------------------------------------------------------------------------- lmms-eval


@dataclass(frozen=True)
class Benchmark:
    """One column of the LLaVA table: an lmms-eval task's metric, in the paper's units."""

    label: str
    task: str
    metric: str  # lmms-eval key "<name>,<filter>"; its error is "<name>_stderr,<filter>"
    scale: float  # lmms-eval value -> the unit of the authors' table (percent or MME points)
    decimals: int = 2  # as the authors' table prints it (docs/paper.md §5)

    @property
    def stderr_key(self) -> str:
        name, filt = self.metric.split(",", 1)
        return f"{name}_stderr,{filt}"


#: docs/paper.md §5; keys match ``llava.scores`` in paper_numbers.yaml.
BENCHMARKS = {
    "gqa": Benchmark("GQA", "gqa", "exact_match,none", 100.0),
    "mmbench_en_dev": Benchmark("MMB-en dev", "mmbench_en_dev", "gpt_eval_score,none", 1.0),
    "mme_perception": Benchmark("MME-P", "mme", "mme_percetion_score,none", 1.0, 1),  # sic
    "mme_cognition": Benchmark("MME-C", "mme", "mme_cognition_score,none", 1.0, 1),
    "mmstar": Benchmark("MMStar", "mmstar", "average,none", 100.0),
    "vizwiz_val": Benchmark("VizWiz val", "vizwiz_vqa_val", "exact_match,none", 100.0),
    "pope_accuracy": Benchmark("POPE acc", "pope", "pope_accuracy,none", 100.0),
    "pope_f1": Benchmark("POPE F1", "pope", "pope_f1_score,none", 100.0),
    "textvqa_val": Benchmark("TextVQA val", "textvqa_val", "exact_match,none", 100.0),
}


def read_lmms_eval(path: Path) -> dict[str, tuple[float, float, float]]:
    """``{benchmark: (value, lo, hi)}`` from an lmms-eval results JSON, in the paper's units.

    A task lmms-eval did not run is absent; lo/hi are value -/+ 1.96 stderr when lmms-eval
    reports a numeric stderr (it writes ``"N/A"`` for aggregate scores such as MME).
    """
    data = _read_json(path)
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, dict):
        raise UvlmError(f"{path}: not an lmms-eval results file (no 'results' mapping)")
    out = {}
    for key, b in BENCHMARKS.items():
        task = results.get(b.task)
        if task is None or b.metric not in task:
            continue
        value = _number(task[b.metric], f"{path}: results.{b.task}.{b.metric}") * b.scale
        err = task.get(b.stderr_key)
        if isinstance(err, int | float) and not isinstance(err, bool):
            out[key] = (value, value - Z95 * err * b.scale, value + Z95 * err * b.scale)
        else:
            out[key] = (value, math.nan, math.nan)
    return out


def collect_llava(cfg: Config, runs: list[Run]) -> pd.DataFrame:
    import pandas as pd

    rows = [{"run": r.name, "benchmark": key, "value": v, "lo": lo, "hi": hi}
            for r in runs
            for key, (v, lo, hi) in read_lmms_eval(paths.llava_results(cfg, r)).items()]
    return pd.DataFrame(rows, columns=["run", "benchmark", "value", "lo", "hi"])


# --------------------------------------------------------------------------- what a target reads


@dataclass(frozen=True)
class Reads:
    """The result files one paper target reads (its Snakemake inputs, and nothing else).

    ``evals`` are (run, checkpoint) pairs, read for every seed; build it with
    :func:`eval_reads` so a run needed by two experiments is read once.
    """

    evals: tuple[tuple[Run, int], ...] = ()
    probe_runs: tuple[Run, ...] = ()
    log_runs: tuple[Run, ...] = ()
    llava_runs: tuple[Run, ...] = ()
    space_probe: bool = False  # what each frozen vision space keeps (probe-spaces)
    judges: tuple[str, ...] = ()  # generation judges whose own accuracy is read
    files: tuple[Path, ...] = field(default=())  # reference numbers, figure styles

    def paths(self, cfg: Config) -> list[Path]:
        """Distinct files (two cells may read one trained run, ``uvlm.grid.single_task``)."""
        return list(dict.fromkeys(
            [p for r, k in self.evals for s in run_seeds(cfg, r)
             for p in (paths.eval_metrics(cfg, r, s, k), paths.eval_items(cfg, r, s, k))]
            + [paths.adapter_probe(cfg, r, s)
               for r in self.probe_runs for s in run_seeds(cfg, r)]
            + [paths.train_log(cfg, r, s) for r in self.log_runs for s in run_seeds(cfg, r)]
            + [paths.llava_results(cfg, r) for r in self.llava_runs]
            + ([paths.space_probe(cfg)] if self.space_probe else [])
            + [paths.judge_accuracy(cfg, j) for j in self.judges]
            + list(self.files)))


def eval_reads(*groups: tuple[list[Run], list[int]]) -> tuple[tuple[Run, int], ...]:
    """Distinct (run, checkpoint) pairs of several (runs, checkpoints) groups, in order."""
    return tuple(dict.fromkeys((r, k) for runs, ks in groups for r in runs for k in ks))


@dataclass(frozen=True)
class Results:
    """Everything a target read, loaded."""

    evals: pd.DataFrame  # tidy (COLUMNS): eval rows and probe-accuracy rows
    probes: dict  # (run name, seed) -> Probe
    steps: pd.DataFrame  # run, seed, steps
    llava: pd.DataFrame  # run, benchmark, value, lo, hi
    spaces: dict = field(default_factory=dict)  # space -> probe-spaces scores (or {})
    judges: dict = field(default_factory=dict)  # judge -> its accuracy.json


PAIRED_SECTIONS = ("vqa_official", "vqa_full", "generation")  # the sections verdicts read


@functools.lru_cache(maxsize=32)
def item_weights(seed: int, n: int, clusters: tuple[str, ...]) -> np.ndarray:
    """(n, C) Poisson(1) bootstrap weights of test items (the Poisson bootstrap).

    Each item's weights come from a generator seeded by the item's id, so replicate b of
    every run weights an item the same, whichever other items a run was scored on: runs are
    paired item by item without a shared list of items.
    """
    import numpy as np

    cols = [np.random.default_rng(stream_seed(seed, "items", c)).poisson(1.0, n)
            for c in clusters]
    return np.stack(cols, axis=1).astype(float) if cols else np.zeros((n, 0))


def replicates(ratios: Ratios, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Each metric's bootstrap replicates (n,) under ``weights`` (n, C); NaN where a
    replicate weights none of the metric's items."""
    import numpy as np

    sums, counts = weights @ ratios.num, weights @ ratios.den  # (n, K)
    with np.errstate(invalid="ignore", divide="ignore"):
        reps = np.where(counts > 0, sums / np.where(counts > 0, counts, 1.0), np.nan)
    return {name: reps[:, k] for k, name in enumerate(ratios.names)}


def read_items(path: Path, seed: int, n: int) -> dict[tuple[str, str], np.ndarray]:
    """(section, metric) -> replicates, from one ``items.json``; empty where the evaluation
    wrote none (results made before it did: their comparisons take the unpaired path)."""
    from uvlm.eval.bootstrap import Ratios

    if not path.is_file() or n < 2:
        return {}
    out = {}
    for section, d in _read_json(path).items():
        if section in PAIRED_SECTIONS:
            r = Ratios.from_json(d, f"{path}: {section}")
            weights = item_weights(seed, n, r.clusters)
            out |= {(section, m): v for m, v in replicates(r, weights).items()}
    return out


def collect(cfg: Config, evals) -> pd.DataFrame:
    """The tidy frame of the ``metrics.json`` of every (run, checkpoint) pair and seed."""
    import pandas as pd

    rows = []
    for run, k in evals:
        for seed in run_seeds(cfg, run):
            base = run_fields(run) | {"seed": seed, "ckpt": k, "frac": k / cfg.train.checkpoints}
            reps = read_items(paths.eval_items(cfg, run, seed, k), cfg.seed, cfg.eval.bootstrap)
            rows += [base | r | {"reps": reps.get((r["section"], r["metric"]))}
                     for r in read_metrics(paths.eval_metrics(cfg, run, seed, k))]
    return pd.DataFrame(rows, columns=COLUMNS)


def load(cfg: Config, reads: Reads) -> Results:
    import pandas as pd

    evals = collect(cfg, reads.evals)
    probe_rows, probes = collect_probes(cfg, list(reads.probe_runs))
    frames = [f for f in (evals, probe_rows) if not f.empty]
    tidy = pd.concat(frames, ignore_index=True) if frames else evals
    return Results(tidy, probes, collect_steps(cfg, list(reads.log_runs)),
                   collect_llava(cfg, list(reads.llava_runs)),
                   _read_json(paths.space_probe(cfg)) if reads.space_probe else {},
                   {j: _read_json(paths.judge_accuracy(cfg, j)) for j in reads.judges})
