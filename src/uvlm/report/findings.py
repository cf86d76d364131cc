"""``findings.md``: the paper's three findings, our numbers at this scale, computed verdicts.

Every verdict comes from :func:`uvlm.report.stats.verdict` applied to an interval computed
here or read from a table's long frame (``tables.frame``: the same numbers the tables
print); nothing in this module states an outcome. The authors' raw numbers stand beside
ours as a reference and never enter a verdict.
"""

from __future__ import annotations

import math
from collections import Counter

import pandas as pd

from uvlm.config import Config
from uvlm.grid import equal_compute_scale, experiment_runs, experiment_seeds
from uvlm.report import spec, stats, tables
from uvlm.report.collect import Results
from uvlm.report.reference import short_source
from uvlm.report.spec import TABLES
from uvlm.utils import markdown_table

CLAIMS = {  # the v1 abstract's wording (docs/paper.md §4)
    "F1": "Mixed understanding + generation data gives mutual benefits across architectures, "
          "and these scale with data.",
    "F2": "Better alignment of the multimodal input and output spaces gives better "
          "generalization.",
    "F3": "Knowledge from generation transfers to understanding, and this happens inside the "
          "base LLM rather than in the modality adapters.",
}
PRIMARY = spec.SECTION_LABELS[spec.PRIMARY_VQA]


# --------------------------------------------------------------------------- helpers

def _md(rows: list[dict]) -> str:
    if not rows:
        return "_no rows_\n"
    cols = list(rows[0])
    return "\n".join(markdown_table(cols, ([r.get(c, "") for c in cols] for r in rows))) + "\n"


ALIKE = "0 (every item scored alike)"


def _judge(per_seed: pd.DataFrame, keys: list[str], expect: str, metric: str) -> pd.DataFrame:
    """Summary over seeds of a per-seed effect, judged (:func:`_judged`)."""
    return _judged(stats.summarize(per_seed, keys), expect, metric)


def _judged(s: pd.DataFrame, expect: str, metric: str) -> pd.DataFrame:
    """A summary of an effect with its verdict, formatted text and minimum detectable
    effect. An effect without an interval gets no verdict, only "inconclusive"
    (``stats.verdict``), and its MDE reads "–". A difference that is 0 with a 0-wide
    interval (the two runs score every item alike, so no resample can differ) says so,
    since an MDE of 0 would claim a power the test does not have."""
    intervals = list(zip(s["mean"], s["lo"], s["hi"], strict=True))
    alike = [m == lo == hi == 0 for m, lo, hi in intervals]
    return s.assign(
        verdict=[stats.NO_DATA if math.isnan(m) else stats.verdict(lo, hi, expect)
                 for m, lo, hi in intervals],
        mde_text=["–" if a else spec.fmt(metric, v) for a, v in zip(alike, s["mde"],
                                                                  strict=True)],
        text=[ALIKE if a else spec.fmt_diff(metric, m, lo, hi)
              for a, (m, lo, hi) in zip(alike, intervals, strict=True)])


class Tally:
    """Verdict counts per test, for the summary at the top."""

    def __init__(self):
        self.rows: list[tuple[str, str, Counter]] = []

    def add(self, finding: str, test: str, verdicts) -> None:
        self.rows.append((finding, test, Counter(verdicts)))

    def markdown(self) -> str:
        kinds = [stats.REPRODUCED, stats.NOT_REPRODUCED, stats.INCONCLUSIVE, stats.NO_DATA]
        return _md([{"finding": f, "test": t} | {k: c.get(k, 0) for k in kinds}
                    for f, t, c in self.rows])


def _mutual_values(cfg: Config, res: Results, section: str, metric: str) -> pd.DataFrame:
    """Per seed: keys arch, series, frac (every checkpoint read)."""
    df = tables.with_series(res.evals, experiment_runs(cfg, "mutual"))
    return stats.per_seed(df[(df["section"] == section) & (df["metric"] == metric)],
                          ["arch", "series", "frac"])


def _present(values: pd.DataFrame, col: str, a: str, b: str) -> pd.DataFrame:
    """Rows of architectures that have both series (absent metrics drop an architecture)."""
    have = values.groupby("arch")[col].agg(set)
    keep = [arch for arch, s in have.items() if {a, b} <= s]
    return values[values["arch"].isin(keep) & values[col].isin([a, b])]


def _comparison(values: pd.DataFrame, a: str, b: str, expect: str, metric: str
                ) -> dict[str, pd.DataFrame]:
    """The a - b effect per arch: at the final checkpoint, averaged over fractions, and its
    trend (slope over the fraction of training: "the benefit scales with data").

    The trend's interval treats checkpoints as independent; they share test items and a
    training trajectory, and positively correlated errors make a slope's true interval
    narrower, so this is conservative too.
    """
    v = _present(values, "series", a, b)
    if v.empty:
        return {}
    final = v[v["frac"] == v["frac"].max()].drop(columns="frac")
    per_frac = stats.difference_of(v, "series", a, b, ["arch", "frac"])
    out = {"final": _judge(stats.difference_of(final, "series", a, b, ["arch"]), ["arch"],
                           expect, metric),
           "mean": _judge(stats.mean_over(per_frac, ["arch"]), ["arch"], expect, metric)}
    if per_frac["frac"].nunique() >= 2:
        # the benefit grows with data: a rising mixed - und, or a falling mixed - gen FID
        out["trend"] = _judge(stats.slope(per_frac, "frac", ["arch"]), ["arch"], expect,
                              metric)
    return out


def _comparison_rows(cfg, judged: dict, authors: dict | None = None) -> list[dict]:
    rows = []
    for arch in cfg.grid.architectures:
        r = {k: j[j["arch"] == arch] for k, j in judged.items()}
        if r["final"].empty:
            continue
        r = {k: j.iloc[0] for k, j in r.items()}
        row = {"arch": arch, "final checkpoint": r["final"]["text"],
               "verdict (final)": r["final"]["verdict"],
               "mean over fractions": r["mean"]["text"], "verdict (mean)": r["mean"]["verdict"]}
        if "trend" in r:
            row |= {"slope over fraction": r["trend"]["text"],
                    "verdict (grows)": r["trend"]["verdict"]}
        row |= {"MDE (final)": r["final"]["mde_text"], "seeds": int(r["final"]["n_seeds"]),
                "interval": r["final"]["interval"]}
        if authors is not None:
            row["authors"] = authors.get(arch, "none published")
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- F1

def _f1(cfg: Config, res: Results, ref: dict, tally: Tally) -> list[str]:
    out = [f"## F1. Mutual benefit\n\n**Claim.** {CLAIMS['F1']}\n"]
    if "mutual" not in cfg.grid.experiments:
        return out + ["_The `mutual` experiment is not in this config's grid._\n"]
    curve = ref["vqvq_mixed_curve"]
    total, fracs = curve["scores"][spec.UND_TOTAL], curve["fractions"]
    # the one published effect of this kind: how much the mixed run gains with data
    authors_und = {curve["arch"]: f"mixed {total[0]:.4f} at {fracs[0]:.0%} of the data to "
                                  f"{total[-1]:.4f} at {fracs[-1]:.0%} "
                                  f"({total[-1] - total[0]:+.4f}; "
                                  f"{spec.SECTION_LABELS[curve['protocol']]} protocol, "
                                  f"{short_source(curve)}); und-only not published"}
    tests = [
        ("understanding: mixed - und-only, VQA total "
         f"({PRIMARY} protocol)", spec.PRIMARY_VQA, spec.UND_TOTAL, "und", "positive",
         authors_und),
        ("understanding: mixed - und-only, VQA total (official protocol)", "vqa_official",
         spec.UND_TOTAL, "und", "positive", authors_und),
        ("generation: mixed - gen-only, judge accuracy", spec.GEN_SECTION, spec.GEN_PRIMARY,
         "gen", "positive", {}),
        ("generation: mixed - gen-only, FID (lower is better; VQ heads)", spec.GEN_SECTION,
         spec.FID, "gen", "negative", {}),
    ]
    out.append(_ceilings(res))
    for title, section, metric, single, expect, authors in tests:
        if section == spec.GEN_SECTION and metric == spec.GEN_PRIMARY:
            out.append(_judge_bounds(res))
        judged = _comparison(_mutual_values(cfg, res, section, metric), "mixed", single,
                             expect, metric)
        out.append(f"### {title}\n")
        if not judged:
            out.append("_No architecture has this metric for both series._\n")
            continue
        out.append(_md(_comparison_rows(cfg, judged, authors)))
        tally.add("F1", title, [v for j in judged.values() for v in j["verdict"]])
    scale = {m: equal_compute_scale(m) for m in ("und", "gen")}
    out.append("### Equal compute (reported separately)\n\nSingle-task runs given as many "
               f"optimizer steps as the mixed run (epochs x{scale['und']:g} for und-only, "
               f"x{scale['gen']:g} for gen-only); at each checkpoint both have taken the "
               "same number of steps.\n")
    if cfg.grid.equal_compute:
        for title, section, metric, single in [
                (f"mixed - und-only (equal compute), VQA total ({PRIMARY})", spec.PRIMARY_VQA,
                 spec.UND_TOTAL, "und-eq"),
                ("mixed - gen-only (equal compute), judge accuracy", spec.GEN_SECTION,
                 spec.GEN_PRIMARY, "gen-eq")]:
            judged = _comparison(_mutual_values(cfg, res, section, metric), "mixed", single,
                                 "positive", metric)
            out.append(f"#### {title}\n")
            if not judged:
                out.append("_No data._\n")
                continue
            out.append(_md(_comparison_rows(cfg, judged)))
            tally.add("F1 (equal compute)", title,
                      [v for j in judged.values() for v in j["verdict"]])
    else:
        out.append("_grid.equal_compute is off in this config._\n")
    out += _imbalance(cfg, res, tally)
    return out


def _ceilings(res: Results) -> str:
    """What each frozen space keeps (``probe-spaces``): the ceiling of understanding scores."""
    if not res.spaces:
        return "_No probe of the vision spaces at this scale._\n"
    parts = []
    for space, s in res.spaces.items():
        attrs = ", ".join(f"{m} {s[m]:.3f}" for m in ("time", "weather", "position", "battery"))
        parts.append(f"**{space}** total {s['total']:.3f} ({attrs})")
    return ("What the frozen spaces keep (`paper/tables/spaces`; linear readouts fitted on "
            "the train split, the same VQA formulas on the test split; raw pixels are the "
            "ceiling): " + "; ".join(parts) + ". An understanding score can only approach "
            "its space's probe.\n")


#: a judge's input sets on the test split (``uvlm.eval.judge``), as findings.md names them
JUDGE_SETS = {"gt": "ground truth", "vq_recon": "the VQ's reconstructions of it",
              "shuffled_gt": "test images shuffled against their prompts (the floor)"}


def _judge_bounds(res: Results) -> str:
    """What a judge can certify: its accuracy on ground truth (and on the VQ's
    reconstructions) is the ceiling of a generation score, on shuffled images the floor."""
    if not res.judges:
        return "_No generation judge at this scale._\n"
    parts = []
    for judge, acc in res.judges.items():
        sets = ", ".join(f"{label} {acc[k]['total']:.3f}" for k, label in JUDGE_SETS.items()
                         if k in acc)
        parts.append(f"**{judge}** judge: {sets}")
    return ("The judges' own total accuracy on the test split (every attribute of each "
            "image): " + "; ".join(parts) + ". A generation score between the floor and "
            "the ceiling says how much of the prompt the images show.\n")


def _imbalance(cfg: Config, res: Results, tally: Tally) -> list[str]:
    out = ["### Imbalance (extension): the other task's metric as one task's data grows\n"]
    if "imbalance" not in cfg.grid.experiments:
        return out + ["_The `imbalance` experiment is not in this config's grid._\n"]
    df = tables.imbalance_rows(cfg, res)
    rows = []
    for extra, (section, metric, what) in {
            "generation": (spec.PRIMARY_VQA, spec.UND_TOTAL, f"VQA total ({PRIMARY})"),
            "understanding": (spec.GEN_SECTION, spec.GEN_PRIMARY, "judge accuracy")}.items():
        sel = df[(df["section"] == section) & (df["metric"] == metric)
                 & df["extra"].isin(["none", extra])]
        values = stats.per_seed(sel, ["arch", "n"])
        verdicts = []
        for n in sorted(set(values["n"]) - {0}):
            j = _judge(stats.difference_of(values, "n", n, 0, ["arch"]), ["arch"], "positive",
                       metric)
            verdicts += list(j["verdict"])
            for _, r in j.iterrows():
                rows.append({"arch": r["arch"], "extra data": f"+{n} {extra}-only images",
                             "metric": what, "change vs base": r["text"],
                             "MDE": r["mde_text"],
                             "direction": {stats.REPRODUCED: "higher",
                                           stats.NOT_REPRODUCED: "lower"}.get(
                                               r["verdict"], "not resolved")})
        if verdicts:  # one per architecture and level: "reproduced" = the metric rose
            tally.add("F1 (imbalance)", f"extra {extra}-only data raises {what}", verdicts)
    out.append("The revised paper: more data of one task first helps the other, excessive "
               "imbalance may hurt it. Direction computed from the interval of the change "
               "(final checkpoint, relative to the mixed base run).\n")
    return out + [_md(rows)]


# --------------------------------------------------------------------------- F2

def _f2(cfg: Config, res: Results, tally: Tally) -> list[str]:
    out = [f"## F2. Alignment of input and output spaces\n\n**Claim.** {CLAIMS['F2']}\n"]
    if "mutual" in cfg.grid.experiments:
        out += _f2_architectures(cfg, res, tally)
    if "alignment" not in cfg.grid.experiments:
        return out + ["_The `alignment` experiment is not in this config's grid._\n"]
    gain = tables.alignment_gain(cfg, res)
    slope = _judge(stats.slope(gain, "affine", ["arch"]), ["arch"], "negative", "total")
    ends = []
    for _, g in gain.groupby("arch", sort=False):
        lo_s, hi_s = g["affine"].min(), g["affine"].max()
        ends.append(stats.difference_of(g, "affine", hi_s, lo_s, ["arch"]))
    ends = _judge(pd.concat(ends, ignore_index=True), ["arch"], "negative", "total")
    t = TABLES["alignment"]
    per = tables.frame(t, cfg, res)
    per = per[per[t.versus[0]] == t.difference]
    rows = []
    for arch in [a for a in cfg.grid.architectures if a in set(gain["arch"])]:
        s, e = slope[slope["arch"] == arch].iloc[0], ends[ends["arch"] == arch].iloc[0]
        p = per[per["arch"] == arch]
        rows.append({
            "arch": arch,
            "gain by strength": "; ".join(
                f"{a:g}: {spec.fmt_diff('total', m, lo, hi)}" for a, m, lo, hi in
                zip(p["affine"], p["mean"], p["lo"], p["hi"], strict=True)),
            "slope of gain": s["text"], "verdict (slope < 0)": s["verdict"],
            "gain at max - gain at min": e["text"], "verdict (< 0)": e["verdict"],
            "MDE (max - min)": e["mde_text"], "seeds": int(s["n_seeds"])})
        tally.add("F2", f"{arch}: gain from mixing falls with distortion",
                  [s["verdict"], e["verdict"]])
    out.append(f"### Gain from mixing (mixed - und-only, VQA total, {PRIMARY} protocol, final "
               "checkpoint) vs input-space distortion\n")
    out.append(_md(rows))
    out.append("Authors' numbers: none published for this experiment (only one FID, VQ-VQ "
               "mixed at sigma 0.2).\n")
    return out


def _f2_architectures(cfg: Config, res: Results, tally: Tally) -> list[str]:
    """Shared-space (siglip-siglip, vq-vq) vs cross-space architectures' gain from mixing."""
    runs = {r.arch: r for r in experiment_runs(cfg, "mutual")}
    kind = {a: "shared" if r.und_space == r.gen_space else "cross" for a, r in runs.items()}
    out = ["### Shared-space vs cross-space architectures\n"]
    if set(kind.values()) != {"shared", "cross"}:
        return out + ["_This config's grid lacks one of the two kinds of architecture._\n"]
    values = _mutual_values(cfg, res, spec.PRIMARY_VQA, spec.UND_TOTAL)
    values = _present(values, "series", "mixed", "und")
    final = values[values["frac"] == values["frac"].max()].drop(columns="frac")
    gain = stats.difference_of(final, "series", "mixed", "und", ["arch"]).assign(
        kind=lambda d: d["arch"].map(kind))
    by_kind = stats.mean_over(gain.drop(columns="arch"), ["kind"])
    d = _judge(stats.difference_of(by_kind, "kind", "shared", "cross", [])
               .assign(test="shared - cross"), ["test"], "positive", "total").iloc[0]
    tally.add("F2", "shared-space gain > cross-space gain", [d["verdict"]])
    return out + [_md([{"gain(shared) - gain(cross)": d["text"], "verdict": d["verdict"],
                        "MDE": d["mde_text"], "seeds": int(d["n_seeds"]),
                        "shared": ", ".join(a for a, k in kind.items() if k == "shared"),
                        "cross": ", ".join(a for a, k in kind.items() if k == "cross")}])]


# --------------------------------------------------------------------------- F3

def _f3(cfg: Config, res: Results, ref: dict, tally: Tally) -> list[str]:
    out = [f"## F3. Transfer from generation to understanding\n\n**Claim.** {CLAIMS['F3']}\n"]
    out.append("### (a) Biased understanding data: mixed - und-only on the biased attribute "
               "(final checkpoint)\n")
    if "transfer" in cfg.grid.experiments:
        t = TABLES["transfer"]
        diff = tables.frame(t, cfg, res)
        diff = diff[diff[t.versus[0]] == t.difference]
        biased = ref["weather_biased"]
        authors_diff = (biased["runs"]["mixed"]["scores"][biased["attribute"]]
                        - biased["runs"]["und"]["scores"][biased["attribute"]])
        rows = []
        for section in spec.VQA_SECTIONS:
            j = _judged(diff[diff["section"] == section], "positive", "accuracy")
            for _, r in j.iterrows():
                match = (r["arch"], r["attribute"]) == (biased["arch"], biased["attribute"])
                rows.append({"arch": r["arch"], "biased attribute": r["attribute"],
                             "protocol": spec.SECTION_LABELS[section],
                             "mixed - und-only": r["text"], "verdict": r["verdict"],
                             "MDE": r["mde_text"], "seeds": int(r["n_seeds"]),
                             "authors": f"{authors_diff:+.3f} (und "
                                        f"{biased['runs']['und']['scores'][r['attribute']]:.3f}"
                                        f", {short_source(biased['runs']['und'])}; mixed from "
                                        f"{short_source(biased['runs']['mixed'])})"
                             if match and section == biased["protocol"] else "–"})
            if section == spec.PRIMARY_VQA:
                tally.add("F3", "transfer: mixed > und-only on the biased attribute",
                          j["verdict"])
        out.append(_md(rows))
    else:
        out.append("_The `transfer` experiment is not in this config's grid._\n")
    out.append("### (b) Input-adapter features: weather probe, mixed - und-only\n")
    if "adapters" in cfg.grid.experiments:
        t = TABLES["adapters"]
        acc = tables.frame(t, cfg, res)
        d = acc[acc[t.versus[0]] == t.difference]
        probe = ref["adapter_probe"]
        rows = []
        for _, r in d.iterrows():
            v = stats.verdict_not_greater(r["lo"], r["hi"], spec.PROBE_MARGIN)
            a = {s: acc[(acc["arch"] == r["arch"]) & (acc["series"] == s)].iloc[0]
                 for s in ("und", "mixed")}
            rows.append({"arch": r["arch"],
                         "und-only": spec.fmt_interval("accuracy", a["und"]["mean"],
                                                       a["und"]["lo"], a["und"]["hi"]),
                         "mixed": spec.fmt_interval("accuracy", a["mixed"]["mean"],
                                                    a["mixed"]["lo"], a["mixed"]["hi"]),
                         "mixed - und-only": spec.fmt_diff("accuracy", r["mean"], r["lo"],
                                                           r["hi"]),
                         f"verdict (<= {spec.PROBE_MARGIN:g})": v,
                         "seeds": int(r["n_seeds"]),
                         "authors": f"und-only {probe['probe_accuracy']:.3f} "
                                    f"({short_source(probe)})"
                         if r["arch"] == probe["arch"] else "–"})
            tally.add("F3", f"{r['arch']}: adapters of mixed not more separable", [v])
        out.append(f"The claim holds here when mixed training does not make the adapter's "
                   f"features more linearly separable: the interval of the difference lies "
                   f"below the margin {spec.PROBE_MARGIN:g} (reproduced), above it (not "
                   f"reproduced), or across it (inconclusive).\n")
        out.append(_md(rows))
    else:
        out.append("_The `adapters` experiment is not in this config's grid._\n")
    return out


# --------------------------------------------------------------------------- document

def _seeds_text(cfg: Config) -> str:
    """``0, 1, 2`` or, where experiments differ, ``mutual 0, 1, 2; others 0``."""
    mutual = experiment_seeds(cfg, "mutual")
    rest = list(cfg.grid.seeds)
    if "mutual" not in cfg.grid.experiments or mutual == rest:
        return ", ".join(map(str, rest))
    return f"mutual {', '.join(map(str, mutual))}; other experiments {', '.join(map(str, rest))}"


def _header(cfg: Config) -> list[str]:
    llm = cfg.model.llm
    size = (f"{llm.path} (pretrained)" if llm.source == "pretrained"
            else f"{llm.arch} {llm.layers} layers x {llm.hidden_size} wide, random init")
    return [
        f"# Findings of arXiv 2505.23043 at scale `{cfg.name}`\n",
        "Generated by `python -m uvlm paper --target findings` from this config's "
        "evaluation outputs. Every verdict is computed from the numbers "
        "(`uvlm.report.findings`), none is typed.\n",
        f"- Scale: LLM {size}; {cfg.data.n_train} training and {cfg.data.n_test} test images; "
        f"{cfg.train.checkpoints} checkpoints per run; seeds "
        f"{_seeds_text(cfg)}; config hash `{cfg.hash()}`.",
        "- Verdict: for a claimed sign of an effect, **reproduced** when the whole 95% "
        "interval has that sign, **not reproduced** when it has the opposite sign, "
        "**inconclusive** when it contains 0.",
        f"- {tables.INTERVAL_NOTE} Differences of runs (and their averages and slopes) are "
        "paired on the test items: every run is scored on the same items, and the "
        "bootstrap weights each item the same in both runs, so what both get right or wrong "
        "together cancels; with several seeds, the bootstrap also resamples the seeds "
        "(\"paired bootstrap over test items and seeds\"). FID is not a mean over items: "
        "its differences keep a t-interval over seeds (or none, with one seed).",
        "- MDE: the minimum detectable effect of a test, the true effect it finds with 80% "
        "power at the 5% level, (1.96 + 0.84) standard errors; an inconclusive verdict with "
        "an MDE larger than the authors' effect says this scale cannot resolve it.",
        f"- VQA verdicts use the {PRIMARY} protocol (every turn of every test item, the same "
        "items for every run); the official protocol scores different items for mixed and "
        "und-only runs and is shown beside it.",
        "- Authors' numbers: Vicuna-7B scale, one run each, from their result files "
        "(`src/uvlm/report/paper_numbers.yaml`); a reference, never part of a verdict.\n",
    ]


def _llava(cfg: Config, res: Results, ref: dict) -> list[str]:
    if "llava" not in cfg.grid.experiments:
        return []
    t = tables.build_table(TABLES["llava"], cfg, res, ref)
    return ["## LLaVA-1.5 real-world experiment\n",
            "No verdict: one 7B run per configuration, and lmms-eval gives intervals for few "
            "benchmarks. The scaling rows add 0 (the understanding-only baseline) to "
            f"{max(cfg.llava.sft_generation):,} generation samples to the same SFT data; our "
            "runs beside the authors'.\n",
            tables.to_markdown(t)]


def findings(cfg: Config, res: Results, ref: dict) -> str:
    tally = Tally()
    body = [*_f1(cfg, res, ref, tally), *_f2(cfg, res, tally), *_f3(cfg, res, ref, tally),
            *_llava(cfg, res, ref)]
    doc = [*_header(cfg), "## Summary: verdicts per test\n",
           "Counts over architectures (and, for F1, over the final-checkpoint, "
           "mean-over-fractions and trend verdicts of each); the sections below give the "
           "numbers.\n", tally.markdown(), *body]
    return "\n".join(doc)
