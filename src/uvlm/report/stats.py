"""Seed aggregation, derived comparisons and verdicts.

Per-seed frames have key columns plus ``seed, value, lo, hi`` (lo/hi: the evaluation's
bootstrap 95% interval over test items, NaN where it wrote none) and, where the evaluation
wrote its per-item terms, ``reps``: the value's bootstrap replicates under item weights
shared by every run (``uvlm.report.collect.item_weights``).

**Paired path** (derived quantities whose every row has replicates). All runs are scored on
the same test items, and replicate b of every run weights each item the same, so a derived
quantity computed replicate by replicate (``a - b``, a mean over checkpoints, a slope over
distortion strengths; column ``paired_reps``) is paired item by item: what both runs get
right or wrong together cancels. Over several seeds :func:`summarize` adds the seed-to-seed
variation with a two-level bootstrap, to derived quantities and to a run's own values alike:
replicate b also resamples the seeds (with replacement) and averages their replicate-b
values; the interval is the 2.5th-97.5th percentile and the standard error the spread of
those values, so a run's interval stays within its metric's range (a t-interval over 2
seeds is 12.7 standard errors wide and ran outside [0, 1]). With few seeds a bootstrap over
seeds understates their spread (by a factor (S-1)/S in variance); the label says so. A
run's own value over one seed keeps its evaluation's interval.

**Unpaired path** (values and derived quantities where some row lacks ``reps``, e.g. FID,
which is not a mean over items). Derived
per-seed quantities carry a standard error read off the intervals, ``se = (hi - lo) /
(2 * 1.96)``, with a symmetric interval ``value -/+ 1.96 se``; across seeds, a Student-t 95%
interval over seeds when there are at least two (``uvlm.eval.bootstrap.seed_summary``); with
one seed that seed's interval over test items, labelled. Where this path needs an assumption,
it makes intervals wider, not narrower:

* a difference of two runs treats their item-level errors as independent. Both runs are
  scored on the same test items, so the true error of the difference is smaller.
* an average over checkpoints takes the mean of the checkpoints' standard errors, the
  largest the standard error of a mean of correlated estimates can be.

Every summary also gives the **minimum detectable effect** (``mde``): the true effect a test
of this precision finds with 80% power at the 5% level, ``(z_.975 + z_.80) se`` (Student-t
quantiles on the t path), so an inconclusive verdict says how large an effect it could see.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from uvlm.eval.bootstrap import seed_summary
from uvlm.report.collect import Z95

SEED_T = "t over seeds"
ITEM_BOOTSTRAP = "bootstrap over test items (1 seed)"
NO_INTERVAL = "none (1 seed, no item interval)"
PAIRED = "paired bootstrap over test items (1 seed)"
PAIRED_SEEDS = "paired bootstrap over test items and seeds"
ITEMS_SEEDS = "bootstrap over test items and seeds"  # a run's own value over seeds
REPS = "reps"  # a run's value's replicates (from ``collect``)
PAIRED_REPS = "paired_reps"  # a derived quantity's replicates
Z80 = 0.8416212335729143  # one-sided 80% normal quantile: power 0.8
SEED_RESAMPLING = 20260512  # fixed: the seed draws of the two-level bootstrap

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
NO_DATA = "no data"


def per_seed(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """``keys + seed, value, lo, hi[, reps]`` of a tidy selection; one row per key and seed."""
    extra = [c for c in (REPS, PAIRED_REPS) if c in df.columns]
    out = df[[*keys, "seed", "value", "lo", "hi", *extra]].reset_index(drop=True)
    dup = out.duplicated([*keys, "seed"])
    if dup.any():
        raise ValueError(f"per_seed: several rows for {out[dup].iloc[0].to_dict()}; "
                         f"the selection is missing a key column")
    return out


def _se(lo, hi):
    return (hi - lo) / (2.0 * Z95)


def _with_interval(df: pd.DataFrame, se) -> pd.DataFrame:
    return df.assign(lo=df["value"] - Z95 * se, hi=df["value"] + Z95 * se)


def _paired(reps) -> bool:
    """Whether every row has replicates (missing ones read as None or NaN)."""
    return all(isinstance(r, np.ndarray) for r in reps)


def _reps_of(df: pd.DataFrame) -> str | None:
    """The replicates column a derivation reads: a derived quantity's, else the values'."""
    return next((c for c in (PAIRED_REPS, REPS) if c in df.columns), None)


def _combine(groups, fn) -> list:
    """``fn(stacked replicates)`` per group of rows, or None where a row has none."""
    out = []
    for reps in groups:
        reps = list(reps)
        out.append(fn(np.stack(reps)) if _paired(reps) else None)
    return out


def difference(a: pd.DataFrame, b: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per seed ``a - b`` (paired by keys and seed); an unpaired row is an error."""
    m = a.merge(b, on=[*keys, "seed"], how="outer", suffixes=("_a", "_b"), indicator=True)
    unpaired = m[m["_merge"] != "both"]
    if not unpaired.empty:
        row = unpaired.iloc[0]
        raise ValueError(f"difference: {dict(row[[*keys, 'seed']])} is only in "
                         f"{'the first' if row['_merge'] == 'left_only' else 'the second'} "
                         f"operand (a seed or checkpoint is missing for one run)")
    out = m[[*keys, "seed"]].assign(value=m["value_a"] - m["value_b"])
    se = np.sqrt(_se(m["lo_a"], m["hi_a"]) ** 2 + _se(m["lo_b"], m["hi_b"]) ** 2)
    out = _with_interval(out, se)
    ca, cb = _reps_of(a), _reps_of(b)
    if ca and cb:
        ca, cb = (f"{ca}_a", f"{cb}_b") if ca == cb else (ca, cb)
        out[PAIRED_REPS] = _combine(zip(m[ca], m[cb], strict=True), lambda ab: ab[0] - ab[1])
    return out


def difference_of(values: pd.DataFrame, col: str, a: object, b: object,
                  keys: list[str]) -> pd.DataFrame:
    """Per seed ``values[col == a] - values[col == b]`` paired on ``keys`` (e.g. mixed minus
    und-only: ``col="mode", a="mixed", b="und"``); ``col`` is dropped from the result."""
    return difference(values[values[col] == a].drop(columns=col),
                      values[values[col] == b].drop(columns=col), keys)


def mean_over(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per ``keys + seed``: the mean value over the remaining rows (e.g. checkpoints)."""
    g = df.assign(se=_se(df["lo"], df["hi"])).groupby([*keys, "seed"], sort=True)
    out = g.agg(value=("value", "mean"), se=("se", "mean")).reset_index()
    out = _with_interval(out.drop(columns="se"), out["se"])
    if col := _reps_of(df):
        out[PAIRED_REPS] = _combine((grp[col] for _, grp in g), lambda r: r.mean(0))
    return out


def slope(df: pd.DataFrame, x: str, keys: list[str]) -> pd.DataFrame:
    """Per ``keys + seed``: least-squares slope of value on column ``x``.

    The slope is ``sum(w_i y_i)`` with ``w_i = (x_i - mean x) / sum (x_j - mean x)^2``, so its
    standard error is ``sqrt(sum w_i^2 se_i^2)`` (the runs at different x are independent).
    """
    rows = []
    for key, g in df.groupby([*keys, "seed"], sort=True):
        xs = g[x].to_numpy(float)
        d = xs - xs.mean()
        ss = float((d**2).sum())
        if len(xs) < 2 or ss == 0.0:
            raise ValueError(f"slope: {dict(zip([*keys, 'seed'], key, strict=True))} needs "
                             f"at least two distinct values of {x}, got {sorted(set(xs))}")
        w = d / ss
        se = math.sqrt(float((w**2 * _se(g["lo"], g["hi"]).to_numpy(float) ** 2).sum()))
        row = dict(zip([*keys, "seed"], key, strict=True)) | {
            "value": float((w * g["value"].to_numpy(float)).sum()), "se": se}
        if col := _reps_of(g):
            row[PAIRED_REPS] = _combine([g[col]], lambda r, w=w: w @ r)[0]
        rows.append(row)
    extra = [PAIRED_REPS] if _reps_of(df) else []
    out = pd.DataFrame(rows, columns=[*keys, "seed", "value", "se", *extra])
    return _with_interval(out.drop(columns="se"), out["se"])


def _paired_summary(values: np.ndarray, reps: np.ndarray) -> dict:
    """Mean over seeds of ``values`` (S,), interval and se from their replicates (S, B)."""
    n_seeds, n_reps = reps.shape
    if n_seeds >= 2:
        rng = np.random.default_rng([SEED_RESAMPLING, n_seeds, n_reps])
        pick = rng.integers(0, n_seeds, size=(n_reps, n_seeds))  # (B, S) seed draws
        dist = reps[pick, np.arange(n_reps)[:, None]].mean(1)
    else:
        dist = reps[0]
    dist = dist[~np.isnan(dist)]
    if dist.size < 2:
        return {"mean": float(values.mean()), "lo": math.nan, "hi": math.nan, "se": math.nan}
    lo, hi = np.quantile(dist, [(1 - 0.95) / 2, 1 - (1 - 0.95) / 2])
    return {"mean": float(values.mean()), "lo": float(lo), "hi": float(hi),
            "se": float(dist.std(ddof=1))}


def mde(se: float, df: int | None = None) -> float:
    """Minimum detectable effect at 80% power, two-sided 5% level (t quantiles with df)."""
    if df is None:
        return (Z95 + Z80) * se
    from scipy import stats as st

    return float(st.t.ppf(0.975, df) + st.t.ppf(0.8, df)) * se


def summarize(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Mean over seeds and its 95% interval, one row per key: ``keys, mean, lo, hi,
    n_seeds, interval`` (``interval`` names how the interval was obtained)."""
    rows = []
    cols = [*keys, "mean", "lo", "hi", "n_seeds", "interval", "mde"]
    if df.empty:
        return pd.DataFrame(rows, columns=cols)
    for key, g in df.groupby(keys, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        base = dict(zip(keys, key, strict=True))
        if g["seed"].duplicated().any():
            raise ValueError(f"summarize: several rows per seed for {base}")
        n = len(g)
        col = _reps_of(g)
        if col == REPS and n < 2:
            col = None  # one seed of a run: its evaluation's interval (below)
        if col and _paired(g[col]):
            s = _paired_summary(g["value"].to_numpy(float), np.stack(list(g[col])))
            label = (PAIRED_SEEDS if n >= 2 else PAIRED) if col == PAIRED_REPS else ITEMS_SEEDS
            rows.append(base | {"mean": s["mean"], "lo": s["lo"], "hi": s["hi"], "n_seeds": n,
                                "interval": label, "mde": mde(s["se"])})
        elif n >= 2:
            s = seed_summary([float(v) for v in g["value"]])
            lo, hi = s["ci"]
            rows.append(base | {"mean": s["mean"], "lo": lo, "hi": hi, "n_seeds": n,
                                "interval": SEED_T,
                                "mde": mde(s["std"] / math.sqrt(n), n - 1)})
        else:
            r = g.iloc[0]
            has = not (math.isnan(r["lo"]) or math.isnan(r["hi"]))
            rows.append(base | {"mean": float(r["value"]), "lo": float(r["lo"]),
                                "hi": float(r["hi"]), "n_seeds": 1,
                                "interval": ITEM_BOOTSTRAP if has else NO_INTERVAL,
                                "mde": mde(_se(r["lo"], r["hi"])) if has else math.nan})
    return pd.DataFrame(rows, columns=cols)


def verdict(lo: float, hi: float, expect: str) -> str:
    """Whether an interval supports a claimed sign of the effect.

    ``expect="positive"``: the paper claims the quantity is > 0 (e.g. mixed - und in VQA
    accuracy); ``"negative"``: it claims < 0 (e.g. mixed - gen in FID, or the slope of the
    gain from mixing over distortion strength). Reproduced when the whole interval has the
    claimed sign, not reproduced when it has the opposite sign, else inconclusive.
    """
    if expect not in ("positive", "negative"):
        raise ValueError(f"verdict: expect must be 'positive' or 'negative', got {expect!r}")
    if math.isnan(lo) or math.isnan(hi):
        return INCONCLUSIVE
    sign = 1.0 if expect == "positive" else -1.0
    lo, hi = sorted((sign * lo, sign * hi))
    if lo > 0:
        return REPRODUCED
    if hi < 0:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def verdict_not_greater(lo: float, hi: float, margin: float) -> str:
    """Whether an interval supports "the quantity is not larger than ``margin``".

    Used for the adapter probe: the paper claims mixed training does not make the input
    adapter's features more separable, i.e. mixed - und probe accuracy <= margin.
    Reproduced when hi <= margin, not reproduced when lo > margin, else inconclusive.
    """
    if math.isnan(lo) or math.isnan(hi):
        return INCONCLUSIVE
    if hi <= margin:
        return REPRODUCED
    if lo > margin:
        return NOT_REPRODUCED
    return INCONCLUSIVE
