"""Tables: CSV (long, full precision), Markdown and LaTeX booktabs (for reading).

Each builder takes the config, what its target read (``collect.Results``) and the authors'
numbers, and returns a :class:`Table`; :func:`write_table` writes the three files atomically.
Cells read ``mean [lo, hi]``: mean over seeds with a 95% interval (see ``stats``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from uvlm.config import Config
from uvlm.grid import experiment_runs, llava_generation, parse_run, shared_seeds
from uvlm.report import spec, stats
from uvlm.report.collect import BENCHMARKS, Results
from uvlm.report.reference import short_source
from uvlm.utils import atomic_write

OURS = "ours"
ACC = "accuracy"  # formats like any score in [0, 1]
INTERVAL_NOTE = ("Cells: mean over seeds [95% interval]; t-interval over seeds with 2 or "
                 "more seeds, else the bootstrap interval over test items of the one seed.")


@dataclass
class Table:
    title: str
    long: pd.DataFrame  # the CSV: one number per row, full precision
    wide: pd.DataFrame  # strings, for Markdown and LaTeX
    keys: int  # leading columns of ``wide`` that label rows (left-aligned)
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- writers

def markdown_table(columns, rows, keys: int | None = None) -> list[str]:
    """The lines of a Markdown table (every table and ``findings.md`` use this one writer).

    The first ``keys`` columns are left-aligned labels and the rest right-aligned numbers;
    ``keys=None`` leaves every column at the renderer's default. A ``|`` inside a cell is
    escaped so it cannot split the cell.
    """
    def row(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    columns = list(columns)
    n = len(columns) if keys is None else keys
    align = ["---"] * n + ["--:"] * (len(columns) - n)
    return [row(columns), row(align), *(row(r) for r in rows)]


def to_markdown(t: Table) -> str:
    lines = [f"**{t.title}**", "",
             *markdown_table(t.wide.columns, t.wide.itertuples(index=False), t.keys)]
    lines += [""] + [f"- {n}" for n in [*t.notes, INTERVAL_NOTE]]
    return "\n".join(lines) + "\n"


_TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                "^": r"\textasciicircum{}"}


def tex_escape(text) -> str:
    out = "".join(_TEX_ESCAPES.get(c, c) for c in str(text))
    return "{" + out + "}" if out.startswith("[") else out  # `\\ [` would read as a length


def to_latex(t: Table) -> str:
    spec_ = "l" * t.keys + "r" * (t.wide.shape[1] - t.keys)
    lines = [f"% {t.title}", *(f"% {n}" for n in [*t.notes, INTERVAL_NOTE]),
             "% needs \\usepackage{booktabs}", f"\\begin{{tabular}}{{{spec_}}}", "\\toprule",
             " & ".join(tex_escape(c) for c in t.wide.columns) + " \\\\", "\\midrule"]
    lines += [" & ".join(tex_escape(c) for c in r) + " \\\\"
              for r in t.wide.itertuples(index=False)]
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


def write_table(t: Table, paths: list[Path]) -> None:
    csv, md, tex = paths
    with atomic_write(csv) as fh:
        t.long.to_csv(fh, index=False, float_format="%.10g")
    with atomic_write(md) as fh:
        fh.write(to_markdown(t))
    with atomic_write(tex) as fh:
        fh.write(to_latex(t))


# --------------------------------------------------------------------------- helpers

def final(cfg: Config, res: Results, experiment: str | None = None) -> pd.DataFrame:
    """Final-checkpoint rows; of ``experiment``'s shared seeds when it is given."""
    df = res.evals[res.evals["ckpt"] == cfg.train.checkpoints]
    if experiment is not None:
        df = df[df["seed"].isin(shared_seeds(cfg, experiment))]
    return df


def _with_series(df: pd.DataFrame, runs) -> pd.DataFrame:
    by_name = {r.name: spec.series(r) for r in runs}
    return df[df["run"].isin(by_name)].assign(series=lambda d: d["run"].map(by_name))


def _notes(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The distinct annotations (e.g. the FID extractor) of each key."""
    return (df.groupby(keys, sort=False)["note"]
            .agg(lambda s: "; ".join(sorted({n for n in s if n}))).reset_index())


def _summary(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    s = stats.summarize(stats.per_seed(df, keys), keys)
    return s.merge(_notes(df, keys), on=keys, how="left").assign(source=OURS)


def _cell(metric: str, r) -> str:
    return spec.fmt_interval(metric, r["mean"], r["lo"], r["hi"])


def _header(metric: str, long: pd.DataFrame) -> str:
    rows = long[long["metric"] == metric]
    notes = sorted({n for n in rows["note"].dropna() if n})
    sections = set(rows["section"]) if "section" in rows else set()
    label = spec.metric_label(metric, sections.pop() if len(sections) == 1 else None)
    # one annotation for the whole column (e.g. the FID extractor) goes in its header;
    # annotations that differ by row are in the rows' "notes" column
    return f"{label} ({notes[0]})" if len(notes) == 1 else label


def _pivot(long: pd.DataFrame, rows: list[str], metrics: list[str], labels: dict,
           extra: dict | None = None) -> pd.DataFrame:
    """Wide display: one row per distinct ``rows`` value (in order of first appearance),
    a column per metric, ``n`` seeds; ``extra`` maps column -> {row key: text}."""
    out = []
    for key, g in long.groupby(rows, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        by_metric = {r["metric"]: r for _, r in g.iterrows()}
        rec = {labels.get(c, c): v for c, v in zip(rows, key, strict=True)}
        for m in metrics:
            rec[_header(m, long)] = _cell(m, by_metric[m]) if m in by_metric else "–"
        ns = sorted({int(n) for n in g["n_seeds"]})
        rec["seeds"] = "/".join(map(str, ns))
        if "note" in long and long["note"].fillna("").astype(bool).any():
            rec["notes"] = "; ".join(sorted({n for n in g["note"].dropna() if n})) or "–"
        for col, values in (extra or {}).items():
            rec[col] = values.get(key, "–")
        out.append(rec)
    return pd.DataFrame(out)


def _sorted(long: pd.DataFrame, order: dict[str, list], then: tuple[str, ...] = ()
            ) -> pd.DataFrame:
    """Rows sorted by the listed order of each key's values, then by the ``then`` columns;
    ties keep their order."""
    ranks = {f"_rank_{c}": long[c].map({v: i for i, v in enumerate(vals)})
             for c, vals in order.items()}
    return (long.assign(**ranks).sort_values([*ranks, *then], kind="stable")
            .drop(columns=list(ranks)).reset_index(drop=True))


def _authors_row(entry: dict, keys: dict, metric: str, value: float) -> dict:
    return keys | {"metric": metric, "mean": float(value), "lo": math.nan, "hi": math.nan,
                   "n_seeds": 1, "interval": "one run, none published", "note": "",
                   "source": short_source(entry)}


SERIES_ORDER = list(spec.SERIES_LABELS)
LABELS = {"arch": "arch", "series": "series", "section": "protocol", "source": "source"}


# --------------------------------------------------------------------------- mutual

def _mutual(cfg: Config, res: Results, modes: tuple[str, ...], sections: tuple[str, ...],
            first: tuple[str, ...]) -> tuple[pd.DataFrame, list[str]]:
    runs = [r for r in experiment_runs(cfg, "mutual") if r.mode in modes]
    df = _with_series(final(cfg, res), runs)
    df = df[df["section"].isin(sections)]
    long = _summary(df, ["arch", "series", "section", "metric"])
    return long, spec.ordered(long["metric"], first)


def _steps(cfg: Config, res: Results, runs) -> dict:
    """(arch, series) -> optimizer steps, mean over seeds (the equal-compute check)."""
    by_name = {r.name: (r.arch, spec.series(r)) for r in runs}
    steps = res.steps[res.steps["run"].isin(by_name)]
    return {by_name[run]: f"{g['steps'].mean():.0f}" for run, g in steps.groupby("run")}


def mutual_understanding(cfg: Config, res: Results, ref: dict) -> Table:
    runs = [r for r in experiment_runs(cfg, "mutual") if r.mode == "und" or r.mode == "mixed"]
    long, metrics = _mutual(cfg, res, ("mixed", "und"), spec.VQA_SECTIONS, spec.VQA_METRICS)
    curve = ref["vqvq_mixed_curve"]
    if curve["arch"] in cfg.grid.architectures:
        keys = {"arch": curve["arch"], "series": curve["mode"], "section": curve["protocol"]}
        authors = [_authors_row(curve, keys, m, v[-1]) for m, v in curve["scores"].items()]
        long = pd.concat([long, pd.DataFrame(authors)], ignore_index=True)
    long = _sorted(long, {"arch": list(cfg.grid.architectures),
                          "section": list(spec.VQA_SECTIONS), "series": SERIES_ORDER})
    steps = _steps(cfg, res, runs)
    rows = ["arch", "section", "series", "source"]
    wide = _pivot(long, rows, metrics, LABELS, {
        "steps": {(a, sec, s, OURS): v for (a, s), v in steps.items()
                  for sec in spec.VQA_SECTIONS}})
    wide["series"] = wide["series"].map(spec.SERIES_LABELS)
    wide["protocol"] = wide["protocol"].map(spec.SECTION_LABELS)
    return Table("Mutual benefit, understanding: VQA at the final checkpoint", long, wide, 4, [
        "Protocols: official = the authors' scorer (first turn, first 499 records); "
        "full = every turn of every test item.",
        f"Authors' row: their VQ-VQ mixed run at 100% of the epoch ({curve['source']}); "
        "Vicuna-7B scale, one run; their und-only counterpart was not published.",
        "steps: optimizer steps of the run (equal-compute runs match the mixed run)."])


def mutual_generation(cfg: Config, res: Results, ref: dict) -> Table:
    runs = [r for r in experiment_runs(cfg, "mutual") if r.mode in ("mixed", "gen")]
    long, metrics = _mutual(cfg, res, ("mixed", "gen"), (spec.GEN_SECTION,), spec.GEN_ORDER)
    long = _sorted(long, {"arch": list(cfg.grid.architectures), "series": SERIES_ORDER})
    steps = _steps(cfg, res, runs)
    wide = _pivot(long, ["arch", "series"], metrics, LABELS, {"steps": steps})
    wide["series"] = wide["series"].map(spec.SERIES_LABELS)
    return Table("Mutual benefit, generation at the final checkpoint", long, wide, 2, [
        "judge acc.: a classifier trained on ground truth reads each generated image "
        "(pixels for VQ heads, features for continuous heads) and is scored against the "
        "attributes the prompt asked for. FID only for VQ heads (pixel decoder); its "
        "feature extractor is named in the header (a stand-in is not Inception).",
        "The authors published no generation-only numbers."])


def mutual_caption(cfg: Config, res: Results, ref: dict) -> Table:
    long, metrics = _mutual(cfg, res, ("mixed", "und"), (spec.CAPTION_SECTION,), ())
    long = _sorted(long, {"arch": list(cfg.grid.architectures), "series": SERIES_ORDER})
    wide = _pivot(long, ["arch", "series"], metrics, LABELS)
    if not wide.empty:
        wide["series"] = wide["series"].map(spec.SERIES_LABELS)
    return Table("Captions at the final checkpoint (trained on, never scored by the authors)",
                 long, wide, 2, ["Attributes parsed back from generated captions."])


# --------------------------------------------------------------------------- imbalance

IMBALANCE_COLUMNS = [(spec.PRIMARY_VQA, spec.UND_TOTAL, "VQA total (full)"),
                     ("vqa_official", spec.UND_TOTAL, "VQA total (official)"),
                     (spec.GEN_SECTION, spec.GEN_PRIMARY, "judge acc."),
                     (spec.GEN_SECTION, spec.FID, "FID")]


def imbalance_summary(cfg: Config, res: Results) -> pd.DataFrame:
    """Summaries of the imbalance runs: keys arch, extra, n, section, metric (+ note)."""
    levels = spec.imbalance_levels(cfg)
    df = final(cfg, res, "imbalance")
    df = df[df["run"].isin(levels)]
    cells = pd.DataFrame([(run, *v) for run, v in levels.items()],
                         columns=["run", "arch", "extra", "n"])
    df = df.drop(columns="arch").merge(cells, on="run")
    wanted = {(s, m) for s, m, _ in IMBALANCE_COLUMNS}
    df = df[[(s, m) in wanted for s, m in zip(df["section"], df["metric"], strict=True)]]
    return _summary(df, ["arch", "extra", "n", "section", "metric"])


def imbalance(cfg: Config, res: Results, ref: dict) -> Table:
    long = _sorted(imbalance_summary(cfg, res),
                   {"arch": list(cfg.grid.imbalance_architectures),
                    "extra": ["none", "generation", "understanding"]}, then=("n",))
    wide = []
    for (arch, extra, n), g in long.groupby(["arch", "extra", "n"], sort=False):
        cells = {(r["section"], r["metric"]): r for _, r in g.iterrows()}
        rec = {"arch": arch, "extra data": extra, "extra images": str(n)}
        for section, metric, label in IMBALANCE_COLUMNS:
            notes = "; ".join(sorted(set(long.loc[long["metric"] == metric, "note"]) - {""}))
            rec[f"{label} ({notes})" if notes else label] = (
                _cell(metric, cells[section, metric]) if (section, metric) in cells else "–")
        rec["seeds"] = str(int(g["n_seeds"].max()))
        wide.append(rec)
    return Table("Imbalance: extra one-task data on top of the mixed training set (final "
                 "checkpoint)", long, pd.DataFrame(wide), 3, [
                     "extra = generation: the added images carry only generation records "
                     "(read the understanding columns); extra = understanding: only VQA and "
                     "caption records (read the generation columns)."])


# --------------------------------------------------------------------------- alignment

def alignment_gain(cfg: Config, res: Results, section: str = spec.PRIMARY_VQA
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per seed: VQA total of mixed and und runs (keys arch, affine, mode) and the gain
    mixed - und (keys arch, affine) at the final checkpoint."""
    runs = experiment_runs(cfg, "alignment")
    df = final(cfg, res, "alignment")
    df = df[df["run"].isin({r.name for r in runs}) & (df["section"] == section)
            & (df["metric"] == spec.UND_TOTAL)]
    values = stats.per_seed(df, ["arch", "affine", "mode"])
    keys = ["arch", "affine"]
    gain = stats.difference_of(values, "mode", "mixed", "und", keys)
    return values, gain


def alignment(cfg: Config, res: Results, ref: dict) -> Table:
    values, gain = alignment_gain(cfg, res)
    long = pd.concat([
        stats.summarize(values, ["arch", "affine", "mode"]).rename(columns={"mode": "quantity"}),
        stats.summarize(gain, ["arch", "affine"]).assign(quantity="mixed - und"),
    ], ignore_index=True).assign(metric=f"{spec.PRIMARY_VQA}.{spec.UND_TOTAL}")
    long = long.sort_values(["arch", "affine"], kind="stable").reset_index(drop=True)
    wide = []
    for (arch, affine), g in long.groupby(["arch", "affine"], sort=False):
        q = {r["quantity"]: r for _, r in g.iterrows()}
        wide.append({"arch": arch, "distortion": f"{affine:g}",
                     "mixed": _cell("total", q["mixed"]) if "mixed" in q else "–",
                     "und-only": _cell("total", q["und"]) if "und" in q else "–",
                     "gain (mixed - und)": spec.fmt_diff(
                         "total", *(q["mixed - und"][c] for c in ("mean", "lo", "hi")))
                     if "mixed - und" in q else "–",
                     "seeds": str(int(g["n_seeds"].max()))})
    return Table("Alignment: VQA total (full protocol) under an affine distortion of the "
                 "input space, final checkpoint", long, pd.DataFrame(wide), 2, [
                     "distortion: VQ sigma (singular values in [1-s, 1+s]) for vq-* "
                     "architectures; SigLIP k (0 identity, 1 rotation, >1 scale in [1/k, k]) "
                     "for siglip-*. The authors published no VQA numbers for this experiment."])


# --------------------------------------------------------------------------- transfer

def transfer_values(cfg: Config, res: Results) -> pd.DataFrame:
    """Per seed: accuracy on the biased attribute (keys arch, attribute, section, mode)."""
    cells = spec.transfer_cells(cfg)
    df = final(cfg, res, "transfer")
    df = df[df["run"].isin(cells) & df["section"].isin(spec.VQA_SECTIONS)]
    meta = pd.DataFrame([(run, attr) for run, (_, attr, _) in cells.items()],
                        columns=["run", "attribute"])
    df = df.merge(meta, on="run")
    df = df[df["metric"] == df["attribute"].map(spec.BIASED_METRIC)]
    return stats.per_seed(df, ["arch", "attribute", "section", "mode"])


def transfer(cfg: Config, res: Results, ref: dict) -> Table:
    values = transfer_values(cfg, res)
    keys = ["arch", "attribute", "section"]
    diff = stats.difference_of(values, "mode", "mixed", "und", keys)
    long = pd.concat([stats.summarize(values, [*keys, "mode"]).assign(source=OURS),
                      stats.summarize(diff, keys).assign(mode="mixed - und", source=OURS)],
                     ignore_index=True).assign(origin=OURS)
    biased = ref["weather_biased"]
    authors = []
    for mode, run in biased["runs"].items():
        authors.append({"arch": biased["arch"], "attribute": biased["attribute"],
                        "section": biased["protocol"], "mode": mode,
                        "mean": run["scores"][biased["attribute"]], "lo": math.nan,
                        "hi": math.nan, "n_seeds": 1, "interval": "one run, none published",
                        "source": short_source(run), "origin": "authors"})
    long = pd.concat([long, pd.DataFrame(authors)], ignore_index=True)
    long = _sorted(long, {"arch": list(cfg.grid.architectures),
                          "section": list(spec.VQA_SECTIONS)})
    wide = []
    for key, g in long.groupby([*keys, "origin"], sort=False):
        q = {r["mode"]: r for _, r in g.iterrows()}
        arch, attribute, section, origin = key
        source = OURS if origin == OURS else "; ".join(
            f"{r['source']} ({r['mode']})" for _, r in g.iterrows())
        cell = {m: _cell(ACC, q[m]) if m in q else "–" for m in ("und", "mixed")}
        if "mixed - und" in q:
            d = q["mixed - und"]
            delta = spec.fmt_diff(ACC, d["mean"], d["lo"], d["hi"])
        elif "und" in q and "mixed" in q:  # the authors' numbers: a plain difference
            delta = spec.fmt_diff(ACC, q["mixed"]["mean"] - q["und"]["mean"], math.nan,
                                  math.nan)
        else:
            delta = "–"
        wide.append({"arch": arch, "biased attribute": attribute,
                     "protocol": spec.SECTION_LABELS[section], "source": source,
                     "und-only": cell["und"], "mixed": cell["mixed"], "mixed - und": delta,
                     "seeds": str(int(g["n_seeds"].max()))})
    return Table("Transfer: accuracy on the attribute under-represented in the "
                 "understanding data (final checkpoint)", long, pd.DataFrame(wide), 4, [
                     "Generation data stays complete; understanding records of images "
                     "outside the kept values are dropped (config data.bias).",
                     f"Authors' rows: {biased['arch']} weather-biased, "
                     f"{biased['runs']['und']['source']}; the mixed row is "
                     f"{biased['runs']['mixed']['source']}."])


# --------------------------------------------------------------------------- adapters

def probe_values(cfg: Config, res: Results) -> pd.DataFrame:
    runs = experiment_runs(cfg, "adapters")
    df = _with_series(res.evals[res.evals["section"] == spec.PROBE_SECTION], runs)
    return stats.per_seed(df, ["arch", "series"])


def adapters(cfg: Config, res: Results, ref: dict) -> Table:
    values = probe_values(cfg, res)
    diff = stats.difference_of(values, "series", "mixed", "und", ["arch"])
    long = pd.concat([stats.summarize(values, ["arch", "series"]).assign(source=OURS),
                      stats.summarize(diff, ["arch"]).assign(series="mixed - und",
                                                             source=OURS)],
                     ignore_index=True)
    probe = ref["adapter_probe"]
    if probe["arch"] in cfg.grid.adapters_architectures:
        long = pd.concat([long, pd.DataFrame([{
            "arch": probe["arch"], "series": probe["mode"], "mean": probe["probe_accuracy"],
            "lo": math.nan, "hi": math.nan, "n_seeds": 1,
            "interval": "one run, none published", "source": short_source(probe)}])],
            ignore_index=True)
    long = _sorted(long, {"arch": list(cfg.grid.adapters_architectures),
                          "series": ["und", "mixed", "mixed - und"]})
    wide = pd.DataFrame([{
        "arch": r["arch"], "series": spec.SERIES_LABELS.get(r["series"], r["series"]),
        "source": r["source"],
        "weather probe acc.": (spec.fmt_diff if r["series"] == "mixed - und"
                               else spec.fmt_interval)(ACC, r["mean"], r["lo"], r["hi"]),
        "seeds": str(int(r["n_seeds"]))} for _, r in long.iterrows()])
    return Table("Adapters: linear-probe accuracy of weather from the input adapter's "
                 "features (final checkpoint)", long, wide, 3, [
                     "The claim of finding 3: mixed training does not make the adapter's "
                     "features more separable (transfer happens inside the LLM)."])


# --------------------------------------------------------------------------- llava

def llava_config(cfg: Config, name: str) -> str:
    """What a llava run trains, in the words of the authors' rows."""
    run = parse_run(name)
    n = llava_generation(cfg, run)
    return (f"{run.arch.upper()}, {f'+{n:,}' if n else 'no'} generation samples in SFT"
            + (", detach_mm_projector" if run.detach else ""))


def llava(cfg: Config, res: Results, ref: dict) -> Table:
    ours = res.llava.assign(source=OURS, config=[llava_config(cfg, r) for r in res.llava["run"]])
    table = ref["llava"]
    authors = pd.DataFrame([{"run": row["run"], "config": row["config"], "benchmark": b,
                             "value": v, "lo": math.nan, "hi": math.nan,
                             "source": short_source(table)}
                            for row in table["rows"] for b, v in row["scores"].items()])
    long = pd.concat([ours, authors], ignore_index=True)
    wide = []
    for (run, source), g in long.groupby(["run", "source"], sort=False):
        by = {r["benchmark"]: r for _, r in g.iterrows()}
        rec = {"run": run, "source": source, "config": g["config"].iloc[0]}
        for key, b in BENCHMARKS.items():
            if key not in by:
                rec[b.label] = "–"
                continue
            r, d = by[key], b.decimals
            rec[b.label] = (f"{r['value']:.{d}f}" if math.isnan(r["lo"])
                            else f"{r['value']:.{d}f} [{r['lo']:.{d}f}, {r['hi']:.{d}f}]")
        wide.append(rec)
    return Table("LLaVA-1.5-7B recipe with generation data: lmms-eval benchmarks", long,
                 pd.DataFrame(wide), 3, [
                     "Percent except MME (points). Intervals: value -/+ 1.96 lmms-eval "
                     "stderr where lmms-eval reports one. '–': benchmark not run.",
                     f"Authors' rows: {table['source']} @ {table['commit']}; "
                     "run -> configuration inferred from step counts (docs/paper.md §5)."])


# --------------------------------------------------------------------------- spaces

CEILING_SHARE = 0.9  # a space "keeps" an attribute when its probe reaches 90% of the pixels'
PROBE_COLUMNS = ("time", "weather", "position", "battery", "total")


def spaces(cfg: Config, res: Results, ref: dict | None = None) -> Table:
    """What each frozen vision space keeps: linear readouts of the attributes from the
    train split's features/codes (and raw pixels, the ceiling), scored on the test split."""
    from uvlm.eval.probe import PIXELS

    ceiling = res.spaces[PIXELS]
    rows, wide = [], []
    for space, s in res.spaces.items():
        rec = {"space": space, "readout": s["readout"]}
        lost = []
        for m in PROBE_COLUMNS:
            lo, hi = s["ci"].get(m) or (math.nan, math.nan)
            share = s[m] / ceiling[m] if ceiling[m] else math.nan
            rows.append({"space": space, "metric": m, "mean": s[m], "lo": lo, "hi": hi,
                         "n_items": s[f"count_{m}"], "share_of_pixels": share})
            rec[m] = spec.fmt_interval(m, s[m], lo, hi)
            if m != "total" and share < CEILING_SHARE:
                lost.append(f"{m} ({share:.0%})")
        rec["below 90% of pixels"] = ", ".join(lost) if space != PIXELS else "(ceiling)"
        wide.append(rec)
    return Table("What each frozen vision space keeps: linear readouts, VQA formulas "
                 "(test split)", pd.DataFrame(rows), pd.DataFrame(wide), 2, [
                     f"Readouts fitted on the {cfg.data.n_train} train images' frozen "
                     "features (codes one-hot per position; pixels 2x2-pooled), scored on "
                     f"the {cfg.data.n_test} test images, one item per image and attribute: "
                     "the ceiling a model reading that space can reach with a linear reader "
                     "(a lower bound on what the space holds).",
                     "Interval: bootstrap over test images."])


# --------------------------------------------------------------------------- reference

def reference(cfg: Config, res: Results, ref: dict) -> Table:
    rows = []
    curve = ref["vqvq_mixed_curve"]
    for metric, values in curve["scores"].items():
        for frac, v in zip(curve["fractions"], values, strict=True):
            rows.append({"entry": "vqvq_mixed_curve", "arch": curve["arch"],
                         "mode": curve["mode"], "protocol": curve["protocol"],
                         "at": f"{frac:.0%} of the epoch", "metric": metric, "value": v,
                         "source": short_source(curve)})
    biased = ref["weather_biased"]
    for mode, run in biased["runs"].items():
        for metric, v in run["scores"].items():
            rows.append({"entry": "weather_biased", "arch": biased["arch"], "mode": mode,
                         "protocol": biased["protocol"], "at": "final", "metric": metric,
                         "value": v, "source": short_source(run)})
    probe = ref["adapter_probe"]
    rows.append({"entry": "adapter_probe", "arch": probe["arch"], "mode": probe["mode"],
                 "protocol": "", "at": "final", "metric": spec.PROBE_METRIC,
                 "value": probe["probe_accuracy"], "source": short_source(probe)})
    for row in ref["llava"]["rows"]:
        for b, v in row["scores"].items():
            rows.append({"entry": "llava", "arch": row["run"], "mode": row["config"],
                         "protocol": "lmms-eval", "at": "final", "metric": b, "value": v,
                         "source": short_source(ref["llava"])})
    long = pd.DataFrame(rows)
    wide = long[[c for c in long.columns if c != "value"]].assign(
        value=[f"{v:g}" for v in long["value"]])
    return Table("The authors' raw numbers (reference; Vicuna-7B scale, one run each)", long,
                 wide, 7, ["Copied from result files in the history of "
                           "github.com/MajorDavidZhang/Generalization_unified_VLM "
                           "(src/uvlm/report/paper_numbers.yaml cites each file)."])


TABLES = {  # table file stem -> builder
    "mutual_understanding": mutual_understanding,
    "mutual_generation": mutual_generation,
    "mutual_caption": mutual_caption,
    "imbalance": imbalance,
    "alignment": alignment,
    "transfer": transfer,
    "adapters": adapters,
    "llava": llava,
    "reference": reference,
    "spaces": spaces,
}
