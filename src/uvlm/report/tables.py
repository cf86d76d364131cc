"""Tables: CSV (long, full precision), Markdown and LaTeX booktabs (for reading).

Every table is declared in ``spec.TABLES``; :func:`build_table` computes its long frame
(ours from :data:`FRAMES`, the authors' from :data:`AUTHORS`), sorts it and pivots it to the
printed form with :func:`pivot`; :func:`write_table` writes the three files atomically.
Cells read ``mean [lo, hi]``: mean over seeds with a 95% interval (see ``stats``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from uvlm.config import Config
from uvlm.grid import llava_generation, parse_run, shared_seeds
from uvlm.report import spec, stats
from uvlm.report.collect import Results
from uvlm.report.reference import short_source
from uvlm.report.spec import OURS, Column, TableSpec
from uvlm.utils import atomic_write, markdown_table

INTERVAL_NOTE = ("Cells: mean over seeds [95% interval]; with 2 or more seeds a bootstrap "
                 "over test items and seeds (a t-interval over seeds where a metric has no "
                 "per-item terms, as FID), with one seed the bootstrap interval over its "
                 "test items.")


@dataclass
class Table:
    title: str
    long: pd.DataFrame  # the CSV: one number per row, full precision
    wide: pd.DataFrame  # strings, for Markdown and LaTeX
    keys: int  # leading columns of ``wide`` that label rows (left-aligned)
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- writers

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


# --------------------------------------------------------------------------- our frames

def final(cfg: Config, df: pd.DataFrame, experiment: str | None = None) -> pd.DataFrame:
    """Final-checkpoint rows; of ``experiment``'s shared seeds when it is given."""
    df = df[df["ckpt"] == cfg.train.checkpoints]
    if experiment is not None:
        df = df[df["seed"].isin(shared_seeds(cfg, experiment))]
    return df


def with_series(df: pd.DataFrame, runs) -> pd.DataFrame:
    """The rows of ``runs``, with their series (``spec.series``)."""
    by_name = {r.name: spec.series(r) for r in runs}
    return df[df["run"].isin(by_name)].assign(series=lambda d: d["run"].map(by_name))


def _notes(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The distinct annotations (e.g. the FID extractor) of each key."""
    return (df.groupby(keys, sort=False)["note"]
            .agg(lambda s: "; ".join(sorted({n for n in s if n}))).reset_index())


def _summary(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    s = stats.summarize(stats.per_seed(df, keys), keys)
    return s.merge(_notes(df, keys), on=keys, how="left").assign(source=OURS)


def _with_difference(t: TableSpec, values: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Summaries over seeds of per-seed ``values`` and of their ``t.versus`` difference (e.g.
    mixed - und, paired per seed and test item), keyed ``t.difference``."""
    col, a, b = t.versus
    rest = [k for k in keys if k != col]
    diff = stats.difference_of(values, col, a, b, rest)
    return pd.concat([stats.summarize(values, keys),
                      stats.summarize(diff, rest).assign(**{col: t.difference})],
                     ignore_index=True)


def _mutual(t: TableSpec, cfg: Config, res: Results) -> pd.DataFrame:
    df = final(cfg, with_series(res.evals, t.runs(cfg)))
    return _summary(df[df["section"].isin(t.sections)], ["arch", "series", "section", "metric"])


def imbalance_rows(cfg: Config, res: Results) -> pd.DataFrame:
    """Final rows of the imbalance runs at their shared seeds, of the sections and metrics
    the table shows, keyed by the extra data and its size ``n`` (the base run: none, 0)."""
    levels = spec.imbalance_levels(cfg)
    df = final(cfg, res.evals, "imbalance")
    df = df[df["run"].isin(levels)]
    cells = pd.DataFrame([(run, *v) for run, v in levels.items()],
                         columns=["run", "arch", "extra", "n"])
    df = df.drop(columns="arch").merge(cells, on="run")
    wanted = {c.value for c in spec.TABLES["imbalance"].columns}
    return df[[(s, m) in wanted for s, m in zip(df["section"], df["metric"], strict=True)]]


def _imbalance(t: TableSpec, cfg: Config, res: Results) -> pd.DataFrame:
    return _summary(imbalance_rows(cfg, res), ["arch", "extra", "n", "section", "metric"])


def _alignment_values(cfg: Config, res: Results) -> pd.DataFrame:
    """Per seed: VQA total (full protocol) of the mixed and und runs, keys arch, affine,
    quantity (the mode), at the final checkpoint."""
    df = final(cfg, res.evals, "alignment")
    df = df[df["run"].isin({r.name for r in spec.TABLES["alignment"].runs(cfg)})
            & (df["section"] == spec.PRIMARY_VQA) & (df["metric"] == spec.UND_TOTAL)]
    return stats.per_seed(df.rename(columns={"mode": "quantity"}), ["arch", "affine", "quantity"])


def alignment_gain(cfg: Config, res: Results) -> pd.DataFrame:
    """Per seed: the gain from mixing, mixed - und (keys arch, affine)."""
    _, a, b = spec.TABLES["alignment"].versus
    return stats.difference_of(_alignment_values(cfg, res), "quantity", a, b, ["arch", "affine"])


def _alignment(t: TableSpec, cfg: Config, res: Results) -> pd.DataFrame:
    return _with_difference(t, _alignment_values(cfg, res), ["arch", "affine", "quantity"]).assign(
        metric=f"{spec.PRIMARY_VQA}.{spec.UND_TOTAL}")


def _transfer_values(cfg: Config, res: Results) -> pd.DataFrame:
    """Per seed: accuracy on the biased attribute (keys arch, attribute, section, mode)."""
    cells = spec.transfer_cells(cfg)
    df = final(cfg, res.evals, "transfer")
    df = df[df["run"].isin(cells) & df["section"].isin(spec.VQA_SECTIONS)]
    meta = pd.DataFrame([(run, attr) for run, (_, attr, _) in cells.items()],
                        columns=["run", "attribute"])
    df = df.merge(meta, on="run")
    df = df[df["metric"] == df["attribute"].map(spec.BIASED_METRIC)]
    return stats.per_seed(df, ["arch", "attribute", "section", "mode"])


def _transfer(t: TableSpec, cfg: Config, res: Results) -> pd.DataFrame:
    return _with_difference(t, _transfer_values(cfg, res),
                            ["arch", "attribute", "section", "mode"]).assign(source=OURS,
                                                                             origin=OURS)


def _probe_values(cfg: Config, res: Results) -> pd.DataFrame:
    """Per seed: weather-probe accuracy of the input adapter (keys arch, series)."""
    df = with_series(res.evals[res.evals["section"] == spec.PROBE_SECTION],
                     spec.TABLES["adapters"].runs(cfg))
    return stats.per_seed(df, ["arch", "series"])


def _adapters(t: TableSpec, cfg: Config, res: Results) -> pd.DataFrame:
    return _with_difference(t, _probe_values(cfg, res), ["arch", "series"]).assign(source=OURS)


def llava_config(cfg: Config, name: str) -> str:
    """What a llava run trains, in the words of the authors' rows."""
    run = parse_run(name)
    n = llava_generation(cfg, run)
    return (f"{run.arch.upper()}, {f'+{n:,}' if n else 'no'} generation samples in SFT"
            + (", detach_mm_projector" if run.detach else ""))


def _llava(t: TableSpec, cfg: Config, res: Results) -> pd.DataFrame:
    return res.llava.assign(source=OURS, config=[llava_config(cfg, r) for r in res.llava["run"]])


def _spaces(t: TableSpec, cfg: Config, res: Results) -> pd.DataFrame:
    """Linear readouts of the attributes from each frozen space (and raw pixels, the
    ceiling), with each one's share of the pixels' readout."""
    from uvlm.eval.probe import PIXELS

    ceiling = res.spaces[PIXELS]
    rows = []
    for space, s in res.spaces.items():
        for m in spec.PROBE_COLUMNS:
            lo, hi = s["ci"].get(m) or (math.nan, math.nan)
            rows.append({"space": space, "readout": s["readout"], "metric": m, "mean": s[m],
                         "lo": lo, "hi": hi, "n_items": s[f"count_{m}"],
                         "share_of_pixels": s[m] / ceiling[m] if ceiling[m] else math.nan})
    return pd.DataFrame(rows)


#: our long frame, by the experiment a table shows (or, without one, what it reads)
FRAMES = {"mutual": _mutual, "imbalance": _imbalance, "alignment": _alignment,
          "transfer": _transfer, "adapters": _adapters, "llava": _llava, "spaces": _spaces}


def frame(t: TableSpec, cfg: Config, res: Results) -> pd.DataFrame:
    """Our rows of a table's long frame, unsorted (``findings`` reads these too)."""
    return FRAMES[t.experiment or t.reads](t, cfg, res)


# --------------------------------------------------------------------------- authors' rows

def _authors(entry: dict, **row) -> dict:
    return row | {"lo": math.nan, "hi": math.nan, "n_seeds": 1,
                  "interval": "one run, none published", "source": short_source(entry)}


def _vqvq_mixed_curve(cfg: Config, ref: dict) -> list[dict]:
    """The last point of the authors' mixed curve, where the grid has their architecture."""
    curve = ref["vqvq_mixed_curve"]
    if curve["arch"] not in cfg.grid.architectures:
        return []
    return [_authors(curve, arch=curve["arch"], series=curve["mode"], section=curve["protocol"],
                     metric=m, mean=float(v[-1]), note="") for m, v in curve["scores"].items()]


def _weather_biased(cfg: Config, ref: dict) -> list[dict]:
    biased = ref["weather_biased"]
    return [_authors(run, arch=biased["arch"], attribute=biased["attribute"],
                     section=biased["protocol"], mode=mode,
                     mean=run["scores"][biased["attribute"]]) | {"origin": "authors"}
            for mode, run in biased["runs"].items()]


def _adapter_probe(cfg: Config, ref: dict) -> list[dict]:
    probe = ref["adapter_probe"]
    if probe["arch"] not in cfg.grid.adapters_architectures:
        return []
    return [_authors(probe, arch=probe["arch"], series=probe["mode"],
                     mean=probe["probe_accuracy"])]


def _llava_rows(cfg: Config, ref: dict) -> list[dict]:
    table = ref["llava"]
    return [{"run": row["run"], "config": row["config"], "benchmark": b, "value": v,
             "lo": math.nan, "hi": math.nan, "source": short_source(table)}
            for row in table["rows"] for b, v in row["scores"].items()]


def _every_entry(cfg: Config, ref: dict) -> list[dict]:
    """Every number of paper_numbers.yaml, as its file gives it (the reference table)."""
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
    return rows


#: the authors' rows of a table, by the paper_numbers.yaml entry its spec names
AUTHORS = {"vqvq_mixed_curve": _vqvq_mixed_curve, "weather_biased": _weather_biased,
           "adapter_probe": _adapter_probe, "llava": _llava_rows, "all": _every_entry}


# --------------------------------------------------------------------------- extra columns

CEILING_SHARE = 0.9  # a space "keeps" an attribute when its probe reaches 90% of the pixels'


def _steps(t: TableSpec, cfg: Config, res: Results):
    """Optimizer steps of our runs, mean over seeds (the equal-compute check)."""
    by_name = {r.name: (r.arch, spec.series(r)) for r in t.runs(cfg)}
    steps = res.steps[res.steps["run"].isin(by_name)]
    steps = {by_name[run]: f"{g['steps'].mean():.0f}" for run, g in steps.groupby("run")}

    def cell(key: dict, rows: pd.DataFrame) -> str:
        if key.get("source", OURS) != OURS:
            return "–"
        return steps.get((key["arch"], key["series"]), "–")
    return "steps", cell


def _lost(t: TableSpec, cfg: Config, res: Results):
    """The attributes a space keeps less of than the pixels do."""
    from uvlm.eval.probe import PIXELS

    def cell(key: dict, rows: pd.DataFrame) -> str:
        if key["space"] == PIXELS:
            return "(ceiling)"
        return ", ".join(f"{m} ({share:.0%})" for m, share in
                         zip(rows["metric"], rows["share_of_pixels"], strict=True)
                         if m != "total" and share < CEILING_SHARE)
    return f"below {CEILING_SHARE:.0%} of pixels", cell


EXTRAS = {"steps": _steps, "lost": _lost}


# --------------------------------------------------------------------------- the pivot

def _sorted(long: pd.DataFrame, order: dict, then: tuple[str, ...] = ()) -> pd.DataFrame:
    """Rows sorted by the listed order of each key's values, then by the ``then`` columns;
    ties keep their order."""
    if not order and not then:
        return long
    ranks = {f"_rank_{c}": long[c].map({v: i for i, v in enumerate(vals)})
             for c, vals in order.items()}
    return (long.assign(**ranks).sort_values([*ranks, *then], kind="stable")
            .drop(columns=list(ranks)).reset_index(drop=True))


def _picker(column):
    """Row -> the value of its column key(s)."""
    if column is None:
        return lambda r: None
    if isinstance(column, tuple):
        return lambda r: tuple(r[c] for c in column)
    return lambda r: r[column]


def _header(col: Column, rows: pd.DataFrame) -> str:
    """The column's label, with its one annotation (e.g. the FID extractor) when all its
    rows share it; annotations that differ by row are in the rows' "notes" column."""
    notes = _distinct_notes(rows)
    sections = set(rows["section"]) if "section" in rows else set()
    label = col.label or spec.metric_label(col.value, sections.pop() if len(sections) == 1
                                           else None)
    return f"{label} ({notes[0]})" if len(notes) == 1 else label


def _distinct_notes(rows: pd.DataFrame) -> list[str]:
    return sorted({n for n in rows["note"].dropna() if n}) if "note" in rows else []


def _show(value, how):
    if how is None:
        return value
    return how.get(value, value) if isinstance(how, dict) else format(value, how)


def _cell(t: TableSpec, col: Column, cells: dict) -> str:
    metric = col.value[-1] if isinstance(col.value, tuple) else col.value
    r = cells.get(col.value)
    if r is None:
        a, b = (cells.get(v) for v in t.versus[1:]) if t.versus else (None, None)
        if col.value == t.difference and a is not None and b is not None:
            # the authors' numbers: a plain difference of two single runs, no interval
            return spec.fmt_diff(metric, a[t.value] - b[t.value], math.nan, math.nan,
                                 col.number)
        return "–"
    mean, lo, hi = r[t.value], r.get("lo", math.nan), r.get("hi", math.nan)
    if t.versus and r[t.versus[0]] == t.difference:
        return spec.fmt_diff(metric, mean, lo, hi, col.number)
    return spec.fmt_interval(metric, mean, lo, hi, col.number)


def _sources(g: pd.DataFrame, pick) -> str:
    """One source, or each row's with its column (the authors' rows cite each run)."""
    sources = list(dict.fromkeys(g["source"]))
    if len(sources) == 1:
        return sources[0]
    return "; ".join(f"{r['source']} ({pick(r)})" for _, r in g.iterrows())


def pivot(t: TableSpec, long: pd.DataFrame, columns: list[Column], extra=None
          ) -> pd.DataFrame:
    """The printed form: a row per distinct value of ``t.rows`` (in order of first
    appearance), a column per ``columns``, the seeds, the annotations that differ by row and
    the extra column. Our rows and the authors' never share a printed row."""
    pick = _picker(t.column)
    picked = [pick(r) for _, r in long.iterrows()]
    of_column = [long[[v == c.value for v in picked]] for c in columns]
    headers = [_header(c, rows) for c, rows in zip(columns, of_column, strict=True)]
    row_notes = any(len(_distinct_notes(rows)) > 1 for rows in of_column)
    keys = ["_origin" if c == "source" else c for c in t.rows]
    if "source" in t.rows:
        long = long.assign(_origin=long["source"].where(long["source"] == OURS, "authors"))
    labels, show = spec.ROW_LABELS | t.labels, spec.ROW_SHOW | t.show
    out = []
    for key, g in long.groupby(keys, sort=False):
        key = dict(zip(t.rows, key if isinstance(key, tuple) else (key,), strict=True))
        cells = {pick(r): r for _, r in g.iterrows()}
        rec = {labels.get(c, c): _sources(g, pick) if c == "source" else _show(v, show.get(c))
               for c, v in key.items()}
        for col, header in zip(columns, headers, strict=True):
            rec[header] = _cell(t, col, cells)
        if "n_seeds" in g:
            rec["seeds"] = "/".join(map(str, sorted({int(n) for n in g["n_seeds"]})))
        if row_notes:
            rec["notes"] = "; ".join(_distinct_notes(g)) or "–"
        if extra:
            name, cell = extra
            rec[name] = cell(key, g)
        out.append(rec)
    return pd.DataFrame(out)


def build_table(t: TableSpec, cfg: Config, res: Results, ref: dict | None) -> Table:
    """Our rows and the authors' (``t.authors``), sorted and pivoted as ``t`` declares."""
    long = frame(t, cfg, res) if (t.experiment or t.reads) in FRAMES else None
    columns = list(t.columns or [Column(m) for m in spec.ordered(long[t.column], t.first)])
    if t.authors and (authors := AUTHORS[t.authors](cfg, ref)):
        long = (pd.DataFrame(authors) if long is None
                else pd.concat([long, pd.DataFrame(authors)], ignore_index=True))
    order = ({"arch": list(getattr(cfg.grid, t.archs))} if t.archs else {}) | {
        k: list(v) for k, v in t.order.items()}
    long = _sorted(long, order, t.then)
    extra = EXTRAS[t.extra](t, cfg, res) if t.extra else None
    wide = pivot(t, long, columns, extra)
    return Table(t.title, long.drop(columns=list(t.not_in_csv)), wide, len(t.rows),
                 [n.format(cfg=cfg, ref=ref) for n in t.notes])
