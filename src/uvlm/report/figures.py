"""Figures (PNG and PDF) with 95% interval bands; one function per figure.

A figure's look lives in ``styles/base.yaml`` (shared) and ``styles/<figure>.yaml`` (its
own), read by ``spec.load_style``; both are inputs of the figure's rule, so restyling one
figure reruns only that rule.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from uvlm.config import Config  # noqa: E402
from uvlm.grid import experiment_runs, experiment_seeds  # noqa: E402
from uvlm.paths import figure_files  # noqa: E402
from uvlm.report import spec, stats, tables  # noqa: E402
from uvlm.report.collect import Results  # noqa: E402
from uvlm.report.spec import TABLES, load_style  # noqa: E402
from uvlm.utils import atomic_path  # noqa: E402


def _grid(style: dict, rows: int, cols: int, width: float = 1.0):
    """Figure of rows x cols panels of ``style["panel"]`` inches (width scaled)."""
    w, h = style["panel"]
    fig, axes = plt.subplots(rows, cols, figsize=(w * width * cols, h * rows), squeeze=False)
    return fig, axes


def _save(fig, paths: list[Path]) -> None:
    png, pdf = paths
    # No creation date or software string: the same numbers give the same bytes.
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})
    with atomic_path(pdf) as tmp:
        fig.savefig(tmp, format="pdf", metadata={"CreationDate": None, "Producer": None})
    plt.close(fig)


def _line(ax, s: pd.DataFrame, x: str, look: dict, alpha: float) -> None:
    """Mean line and interval band of a summary frame (x, mean, lo, hi)."""
    s = s.sort_values(x)
    kw = {k: look[k] for k in ("color", "linestyle", "marker")}
    ax.plot(s[x], s["mean"], label=look["label"], **kw)
    if s["lo"].notna().any():
        ax.fill_between(s[x], s["lo"], s["hi"], color=look["color"], alpha=alpha, lw=0)


def _empty(ax, text: str) -> None:
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=7,
            color="#777777")


def _ylabel(label: str, notes) -> str:
    """Axis label plus the metric's annotations (e.g. which network FID used)."""
    notes = sorted({n for n in notes if n})
    return label + (f"\n({'; '.join(notes)})" if notes else "")


def _legend(fig, axes) -> None:
    """One legend for the whole figure, below the panels (entries unique by label)."""
    entries: dict = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    if entries:
        fig.legend(entries.values(), entries.keys(), loc="upper center",
                   bbox_to_anchor=(0.5, 0.0), ncol=min(len(entries), 3))


# --------------------------------------------------------------------------- (a) mutual

MUTUAL_PANELS = [  # (section, metric, series drawn, title, y label)
    (spec.PRIMARY_VQA, spec.UND_TOTAL, ("mixed", "und", "und-eq"), "understanding",
     f"VQA total ({spec.SECTION_LABELS[spec.PRIMARY_VQA]})"),
    (spec.GEN_SECTION, spec.GEN_PRIMARY, ("mixed", "gen", "gen-eq"), "generation",
     "judge accuracy"),
    (spec.GEN_SECTION, spec.FID, ("mixed", "gen", "gen-eq"), "generation (FID)", "FID"),
]


def fig_mutual(cfg: Config, res: Results, ref: dict, style: dict, paths: list[Path]) -> None:
    runs = experiment_runs(cfg, "mutual")
    series_of = {r.name: spec.series(r) for r in runs}
    df = res.evals[res.evals["run"].isin(series_of)].assign(
        series=lambda d: d["run"].map(series_of))
    archs = list(cfg.grid.architectures)
    curve = ref["vqvq_mixed_curve"]
    fig, axes = _grid(style, len(archs), len(MUTUAL_PANELS))
    for i, arch in enumerate(archs):
        for j, (section, metric, kinds, title, ylabel) in enumerate(MUTUAL_PANELS):
            ax = axes[i, j]
            sel = df[(df["arch"] == arch) & (df["section"] == section)
                     & (df["metric"] == metric)]
            ax.set_title(f"{arch}: {title}")
            if sel.empty:
                _empty(ax, f"no {spec.metric_label(metric, section)} for {arch}\n"
                           "(not in its evaluation outputs)")
                continue
            for kind in kinds:
                s = sel[sel["series"] == kind]
                if not s.empty:
                    summary = stats.summarize(stats.per_seed(s, ["frac"]), ["frac"])
                    _line(ax, summary, "frac", style["series"][kind], style["band_alpha"])
            if (section, metric) == (spec.PRIMARY_VQA, spec.UND_TOTAL) \
                    and curve["arch"] == arch:
                look = style["series"]["authors"] | {
                    "label": f"{style['series']['authors']['label']}, "
                             f"{spec.SECTION_LABELS[curve['protocol']]} protocol"}
                ax.plot(curve["fractions"], curve["scores"][spec.UND_TOTAL],
                        **{k: look[k] for k in ("color", "linestyle", "marker")},
                        label=look["label"])
            ax.set_ylabel(_ylabel(ylabel, sel["note"]))
            ax.set_xlabel("fraction of training")
    _legend(fig, axes)
    fig.suptitle(f"Mixed vs single-task training across data scale ({cfg.name}; "
                 f"VQA {spec.SECTION_LABELS[spec.PRIMARY_VQA]} protocol; seeds "
                 f"{', '.join(map(str, experiment_seeds(cfg, 'mutual')))})", fontsize=9)
    fig.tight_layout()
    _save(fig, paths)


# --------------------------------------------------------------------------- (b) imbalance

IMBALANCE_PANELS = [  # (extra data, section, metric, title, y label)
    ("generation", spec.PRIMARY_VQA, spec.UND_TOTAL, "understanding vs extra gen. data",
     f"VQA total ({spec.SECTION_LABELS[spec.PRIMARY_VQA]})"),
    ("understanding", spec.GEN_SECTION, spec.GEN_PRIMARY, "generation vs extra und. data",
     "judge accuracy"),
    ("understanding", spec.GEN_SECTION, spec.FID, "FID vs extra und. data", "FID"),
]


def fig_imbalance(cfg: Config, res: Results, ref: dict, style: dict,
                  paths: list[Path]) -> None:
    summary = tables.frame(TABLES["imbalance"], cfg, res)
    archs = list(cfg.grid.imbalance_architectures)
    fig, axes = _grid(style, len(archs), len(IMBALANCE_PANELS))
    look = {"color": style["color"], "linestyle": "-", "marker": style["marker"],
            "label": "mixed + extra data"}
    for i, arch in enumerate(archs):
        for j, (extra, section, metric, title, ylabel) in enumerate(IMBALANCE_PANELS):
            ax = axes[i, j]
            ax.set_title(f"{arch}: {title}")
            s = summary[(summary["arch"] == arch) & (summary["extra"].isin(["none", extra]))
                        & (summary["section"] == section) & (summary["metric"] == metric)]
            if s.empty:
                _empty(ax, f"no {spec.metric_label(metric, section)} for {arch}")
                continue
            _line(ax, s, "n", look, style["band_alpha"])
            ax.set_xlabel(f"extra {extra}-only images")
            ax.set_ylabel(_ylabel(ylabel, s["note"]))
    fig.suptitle(f"Imbalance: one task's extra data, the other task's metric ({cfg.name}, "
                 "final checkpoint)", fontsize=9)
    fig.tight_layout()
    _save(fig, paths)


# --------------------------------------------------------------------------- (c) alignment

def fig_alignment(cfg: Config, res: Results, ref: dict, style: dict,
                  paths: list[Path]) -> None:
    t = TABLES["alignment"]
    summary = tables.frame(t, cfg, res)
    summary = summary[summary[t.versus[0]] == t.difference]
    runs = {r.arch: r for r in experiment_runs(cfg, "alignment")}
    fig, axes = _grid(style, 1, len(runs))
    look = {"color": style["color"], "linestyle": "-", "marker": style["marker"],
            "label": "mixed - und-only"}
    for ax, (arch, run) in zip(axes[0], runs.items(), strict=True):
        ax.axhline(0.0, **style["zero_line"])
        _line(ax, summary[summary["arch"] == arch], "affine", look, style["band_alpha"])
        ax.set_title(arch)
        ax.set_xlabel(style["xlabel"][run.und_space])
        ax.set_ylabel(f"gain from mixing\n(VQA total, {spec.SECTION_LABELS[spec.PRIMARY_VQA]})")
    fig.suptitle(f"Alignment: gain from mixing vs input-space distortion ({cfg.name}, final "
                 "checkpoint)", fontsize=9)
    fig.tight_layout()
    _save(fig, paths)


# --------------------------------------------------------------------------- (d) transfer

def fig_transfer(cfg: Config, res: Results, ref: dict, style: dict,
                 paths: list[Path]) -> None:
    t = TABLES["transfer"]
    summary = tables.frame(t, cfg, res)
    summary = summary[(summary["section"] == spec.PRIMARY_VQA)
                      & (summary[t.versus[0]] != t.difference)]
    groups = list(dict.fromkeys(zip(summary["arch"], summary["attribute"], strict=True)))
    biased = ref["weather_biased"]
    w = style["bar_width"]
    fig, axes = _grid(style, 1, 1, width=max(1.0, len(groups) / 2))
    ax = axes[0, 0]
    x = np.arange(len(groups))
    for offset, mode in ((-w / 2, "und"), (w / 2, "mixed")):
        look = style["series"][mode]
        s = summary[summary["mode"] == mode].set_index(["arch", "attribute"]).reindex(groups)
        err = np.vstack([s["mean"] - s["lo"], s["hi"] - s["mean"]])
        ax.bar(x + offset, s["mean"], w, color=look["color"], label=look["label"],
               yerr=np.where(np.isnan(err), 0.0, err), capsize=style["capsize"])
        ref_run = biased["runs"][mode]
        for i, (arch, attr) in enumerate(groups):
            if (arch, attr) == (biased["arch"], biased["attribute"]):
                a = style["series"]["authors"]
                ax.plot(x[i] + offset, ref_run["scores"][attr], marker=a["marker"],
                        color=a["color"], linestyle="none", markersize=7,
                        label=f"{a['label']}{', unverified' if not ref_run['verified'] else ''}"
                        f" ({mode})")
    ax.set_xticks(x, [f"{a}\n{attr}-biased" for a, attr in groups])
    ax.set_ylabel(f"accuracy on the biased attribute\n(VQA "
                  f"{spec.SECTION_LABELS[spec.PRIMARY_VQA]})")
    ax.set_ylim(0, 1.05)
    _legend(fig, axes)
    ax.set_title(f"Transfer from generation to understanding ({cfg.name})")
    fig.tight_layout()
    _save(fig, paths)


# --------------------------------------------------------------------------- (e) adapters

def fig_adapters(cfg: Config, res: Results, ref: dict, style: dict,
                 paths: list[Path]) -> None:
    runs = experiment_runs(cfg, "adapters")
    seed = experiment_seeds(cfg, "adapters")[0]  # the t-SNE panels show one seed
    accuracy = tables.frame(TABLES["adapters"], cfg, res)
    labels = sorted({lab for p in res.probes.values() for lab in p.labels})
    colors = dict(zip(labels, style["palette"], strict=False))
    if len(colors) < len(labels):
        raise ValueError(f"styles/fig_adapters.yaml: palette has {len(style['palette'])} "
                         f"colours for {len(labels)} labels {labels}")
    fig, axes = _grid(style, 1, len(runs))
    for ax, run in zip(axes[0], runs, strict=True):
        probe = res.probes[run.name, seed]
        for lab in labels:
            pts = probe.tsne[[x == lab for x in probe.labels]]
            ax.scatter(pts[:, 0], pts[:, 1], s=style["point_size"], alpha=style["point_alpha"],
                       color=colors[lab], label=lab, linewidths=0)
        a = accuracy[(accuracy["arch"] == run.arch)
                     & (accuracy["series"] == spec.series(run))].iloc[0]
        acc = spec.fmt_interval("accuracy", a["mean"], a["lo"], a["hi"])
        ax.set_title(f"{run.arch}, {spec.SERIES_LABELS[spec.series(run)]}\nprobe acc. {acc}")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
    _legend(fig, axes)
    fig.suptitle(f"Input-adapter features, t-SNE (seed {seed}; {cfg.name})", fontsize=9)
    fig.tight_layout()
    _save(fig, paths)


FIGURES = {
    "fig_mutual": fig_mutual,
    "fig_imbalance": fig_imbalance,
    "fig_alignment": fig_alignment,
    "fig_transfer": fig_transfer,
    "fig_adapters": fig_adapters,
}


def draw(name: str, cfg: Config, res: Results, ref: dict) -> None:
    """Draw figure ``name`` under its style and write its PNG and PDF."""
    style = load_style(name)
    with plt.rc_context(style["rc"]):
        FIGURES[name](cfg, res, ref, style, figure_files(cfg, name))
