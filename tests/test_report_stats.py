"""Seed aggregation, derived intervals and verdicts on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from uvlm.report import stats
from uvlm.report.collect import Z95


def frame(rows, keys=("arch",)):
    return pd.DataFrame(rows, columns=[*keys, "seed", "value", "lo", "hi"])


@pytest.mark.parametrize("lo, hi, expect, verdict", [
    (0.01, 0.05, "positive", "reproduced"),
    (-0.05, -0.01, "positive", "not reproduced"),
    (-0.01, 0.05, "positive", "inconclusive"),
    (-0.05, -0.01, "negative", "reproduced"),  # e.g. FID: mixed - gen < 0 is the claim
    (0.01, 0.05, "negative", "not reproduced"),
    (0.0, 0.05, "positive", "inconclusive"),  # touching 0 is not excluding it
    (math.nan, math.nan, "positive", "inconclusive"),
])
def test_verdict(lo, hi, expect, verdict):
    assert stats.verdict(lo, hi, expect) == verdict


def test_verdict_refuses_an_unknown_direction():
    with pytest.raises(ValueError, match="expect"):
        stats.verdict(0.0, 1.0, "up")


@pytest.mark.parametrize("lo, hi, verdict", [
    (-0.02, 0.03, "reproduced"), (0.06, 0.2, "not reproduced"), (0.0, 0.1, "inconclusive")])
def test_verdict_not_greater(lo, hi, verdict):
    assert stats.verdict_not_greater(lo, hi, 0.05) == verdict


def test_summarize_one_seed_keeps_the_item_interval():
    s = stats.summarize(frame([("a", 0, 0.5, 0.4, 0.7)]), ["arch"]).iloc[0]
    assert (s["mean"], s["lo"], s["hi"], s["n_seeds"]) == (0.5, 0.4, 0.7, 1)
    assert s["interval"] == stats.ITEM_BOOTSTRAP
    s = stats.summarize(frame([("a", 0, 0.5, math.nan, math.nan)]), ["arch"]).iloc[0]
    assert s["interval"] == stats.NO_INTERVAL and math.isnan(s["lo"])


def test_summarize_several_seeds_is_a_t_interval():
    v = [0.5, 0.6, 0.8]
    s = stats.summarize(frame([("a", i, x, 0, 1) for i, x in enumerate(v)]), ["arch"]).iloc[0]
    half = sps.t.ppf(0.975, 2) * np.std(v, ddof=1) / math.sqrt(3)
    assert s["mean"] == pytest.approx(np.mean(v))
    assert (s["lo"], s["hi"]) == pytest.approx((np.mean(v) - half, np.mean(v) + half))
    with pytest.raises(ValueError, match="several rows per seed"):
        stats.summarize(frame([("a", 0, 0.5, 0, 1), ("a", 0, 0.6, 0, 1)]), ["arch"])


def test_difference_is_paired_and_propagates_errors():
    se_a, se_b = 0.01, 0.02
    a = frame([("x", 0, 0.7, 0.7 - Z95 * se_a, 0.7 + Z95 * se_a)])
    b = frame([("x", 0, 0.6, 0.6 - Z95 * se_b, 0.6 + Z95 * se_b)])
    d = stats.difference(a, b, ["arch"]).iloc[0]
    assert d["value"] == pytest.approx(0.1)
    assert d["hi"] - d["value"] == pytest.approx(Z95 * math.hypot(se_a, se_b))
    with pytest.raises(ValueError, match="only in the first operand"):
        stats.difference(frame([("x", 0, 1, 0, 1), ("x", 1, 1, 0, 1)]),
                         frame([("x", 0, 1, 0, 1)]), ["arch"])


def test_mean_over_and_slope():
    se = 0.01
    rows = [("x", s, 0, x, y, y - Z95 * se, y + Z95 * se)
            for s, x, y in [(0, 0.0, 0.3), (0, 0.1, 0.2), (0, 0.2, 0.1)]]
    df = pd.DataFrame(rows, columns=["arch", "seed", "k", "affine", "value", "lo", "hi"])
    m = stats.mean_over(df.drop(columns=["k", "affine"]), ["arch"]).iloc[0]
    assert m["value"] == pytest.approx(0.2) and m["hi"] - m["value"] == pytest.approx(Z95 * se)
    s = stats.slope(df.drop(columns="k"), "affine", ["arch"]).iloc[0]
    # w = (x - 0.1) / 0.02 -> (-5, 0, 5); se = sqrt(50) * 0.01
    assert s["value"] == pytest.approx(-1.0)
    assert s["hi"] - s["value"] == pytest.approx(Z95 * math.sqrt(50) * se)
    with pytest.raises(ValueError, match="two distinct values"):
        stats.slope(df[df["affine"] == 0.0].drop(columns="k"), "affine", ["arch"])
