"""Seed aggregation, derived comparisons and verdicts.

Per-seed frames have key columns plus ``seed, value, lo, hi`` (lo/hi: the evaluation's
bootstrap 95% interval over test items, NaN where it wrote none). Derived per-seed
quantities (differences, averages over checkpoints, slopes over distortion strengths) carry a
standard error read off those intervals, ``se = (hi - lo) / (2 * 1.96)``, and get a symmetric
interval ``value -/+ 1.96 se``.

Across seeds, :func:`summarize` gives the mean with a Student-t 95% interval over seeds when
there are at least two (``uvlm.eval.bootstrap.seed_summary``); with one seed the only
uncertainty there is, is that seed's interval over test items, reported as is and labelled.

Where an assumption is needed it makes intervals wider, not narrower:

* a difference of two runs treats their item-level errors as independent. Both runs are
  scored on the same test items, so the true error of the difference is smaller.
* an average over checkpoints takes the mean of the checkpoints' standard errors, the
  largest the standard error of a mean of correlated estimates can be.
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

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
NO_DATA = "no data"


def per_seed(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """``keys + seed, value, lo, hi`` of a tidy selection; one row per key and seed."""
    out = df[[*keys, "seed", "value", "lo", "hi"]].reset_index(drop=True)
    dup = out.duplicated([*keys, "seed"])
    if dup.any():
        raise ValueError(f"per_seed: several rows for {out[dup].iloc[0].to_dict()}; "
                         f"the selection is missing a key column")
    return out


def _se(lo, hi):
    return (hi - lo) / (2.0 * Z95)


def _with_interval(df: pd.DataFrame, se) -> pd.DataFrame:
    return df.assign(lo=df["value"] - Z95 * se, hi=df["value"] + Z95 * se)


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
    return _with_interval(out, se)


def mean_over(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per ``keys + seed``: the mean value over the remaining rows (e.g. checkpoints)."""
    g = df.assign(se=_se(df["lo"], df["hi"])).groupby([*keys, "seed"], sort=True)
    out = g.agg(value=("value", "mean"), se=("se", "mean")).reset_index()
    return _with_interval(out.drop(columns="se"), out["se"])


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
        rows.append(dict(zip([*keys, "seed"], key, strict=True))
                    | {"value": float((w * g["value"].to_numpy(float)).sum()), "se": se})
    out = pd.DataFrame(rows, columns=[*keys, "seed", "value", "se"])
    return _with_interval(out.drop(columns="se"), out["se"])


def summarize(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Mean over seeds and its 95% interval, one row per key: ``keys, mean, lo, hi,
    n_seeds, interval`` (``interval`` names how the interval was obtained)."""
    rows = []
    cols = [*keys, "mean", "lo", "hi", "n_seeds", "interval"]
    if df.empty:
        return pd.DataFrame(rows, columns=cols)
    for key, g in df.groupby(keys, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        base = dict(zip(keys, key, strict=True))
        if g["seed"].duplicated().any():
            raise ValueError(f"summarize: several rows per seed for {base}")
        n = len(g)
        if n >= 2:
            s = seed_summary([float(v) for v in g["value"]])
            lo, hi = s["ci"]
            rows.append(base | {"mean": s["mean"], "lo": lo, "hi": hi, "n_seeds": n,
                                "interval": SEED_T})
        else:
            r = g.iloc[0]
            has = not (math.isnan(r["lo"]) or math.isnan(r["hi"]))
            rows.append(base | {"mean": float(r["value"]), "lo": float(r["lo"]),
                                "hi": float(r["hi"]), "n_seeds": 1,
                                "interval": ITEM_BOOTSTRAP if has else NO_INTERVAL})
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
