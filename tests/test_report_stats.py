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


def test_difference_of_splits_one_column():
    values = frame([("x", "mixed", 0, 0.7, 0.68, 0.72), ("x", "und", 0, 0.6, 0.58, 0.62),
                    ("y", "mixed", 0, 0.5, 0.48, 0.52), ("y", "und", 0, 0.55, 0.53, 0.57)],
                   keys=("arch", "mode"))
    d = stats.difference_of(values, "mode", "mixed", "und", ["arch"])
    assert "mode" not in d
    assert dict(zip(d["arch"], d["value"], strict=True)) == pytest.approx({"x": 0.1, "y": -0.05})


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


# --------------------------------------------------------------------------- paired on items

def _paired_frame(rows):
    """rows: (arch, seed, value, replicates) -> a per-seed frame with ``reps``."""
    return pd.DataFrame([{"arch": a, "seed": s, "value": v, "lo": math.nan, "hi": math.nan,
                          "reps": np.asarray(r, float)} for a, s, v, r in rows])


def test_item_weights_pair_runs_by_item_id():
    from uvlm.report.collect import item_weights

    w = item_weights(0, 500, ("r1", "r2", "r3"))
    assert w.shape == (500, 3) and w.mean() == pytest.approx(1.0, abs=0.1)  # Poisson(1)
    # an item is weighted the same whichever other items a run has
    assert np.array_equal(item_weights(0, 500, ("r3", "r9"))[:, 0], w[:, 2])
    assert not np.array_equal(item_weights(1, 500, ("r3",))[:, 0], w[:, 2])  # config seed


def test_replicates_are_ratios_of_weighted_sums():
    from uvlm.eval.bootstrap import Ratios
    from uvlm.report.collect import replicates

    # two clusters: scores (1, 0) over (1, 2) turns; weights (1, 1), (2, 0), (0, 1), (0, 0)
    r = Ratios(("total",), np.array([[1.0], [0.0]]), np.array([[1.0], [2.0]]), ("a", "b"))
    w = np.array([[1, 1], [2, 0], [0, 1], [0, 0]], float)
    assert np.allclose(replicates(r, w)["total"], [1 / 3, 1.0, 0.0, np.nan], equal_nan=True)
    back = Ratios.from_json(r.to_json(), "x")
    assert (back.names, back.clusters) == (r.names, r.clusters)
    assert np.array_equal(back.num, r.num) and np.array_equal(back.den, r.den)


def test_a_difference_shared_by_every_item_has_no_item_noise():
    """b scores 0.1 more than a on every item: whatever the resample, the paired difference
    is 0.1, so its interval is [0.1, 0.1] however noisy each run is."""
    rng = np.random.default_rng(0)
    item = rng.normal(0.5, 0.2, size=(1000,))  # replicates of a run's value, item noise
    a = _paired_frame([("x", 0, 0.5, item)])
    b = _paired_frame([("x", 0, 0.6, item + 0.1)])
    d = stats.difference(b, a, ["arch"])
    s = stats.summarize(d, ["arch"]).iloc[0]
    assert (s["mean"], s["lo"], s["hi"]) == pytest.approx((0.1, 0.1, 0.1))
    assert s["interval"] == stats.PAIRED and s["mde"] == pytest.approx(0.0, abs=1e-12)
    # a run's own value keeps the unpaired path (its evaluation's interval)
    assert stats.summarize(stats.per_seed(a, ["arch"]), ["arch"]).iloc[0]["interval"] \
        == stats.NO_INTERVAL


def test_seed_variation_enters_the_paired_interval():
    """Two seeds whose differences are exactly 0.0 and 0.2 on every replicate: resampling
    the seeds gives means 0.0, 0.1 or 0.2 (probabilities 1/4, 1/2, 1/4)."""
    zeros = np.zeros(4000)
    d = pd.DataFrame([{"arch": "x", "seed": s, "value": v, "lo": 0, "hi": 0,
                       stats.PAIRED_REPS: zeros + v} for s, v in ((0, 0.0), (1, 0.2))])
    s = stats.summarize(d, ["arch"]).iloc[0]
    assert s["interval"] == stats.PAIRED_SEEDS and s["mean"] == pytest.approx(0.1)
    assert (s["lo"], s["hi"]) == pytest.approx((0.0, 0.2))
    # se of that three-point distribution: sqrt(0.5 * 0.1**2) = 0.0707
    assert s["mde"] == pytest.approx((Z95 + stats.Z80) * math.sqrt(0.005), rel=0.05)


def test_a_runs_value_over_seeds_is_bootstrapped_over_items_and_seeds():
    """A run scores 0.95 and 1.0 on seeds 0 and 1, the same on every item replicate: the
    seed resampling gives 0.95, 0.975 or 1.0, so the interval is [0.95, 1.0], inside the
    metric's range, where a t-interval over the 2 seeds would reach 1.29."""
    a = _paired_frame([("x", 0, 0.95, np.full(4000, 0.95)), ("x", 1, 1.0, np.full(4000, 1.0))])
    s = stats.summarize(stats.per_seed(a, ["arch"]), ["arch"]).iloc[0]
    assert s["interval"] == stats.ITEMS_SEEDS and s["n_seeds"] == 2
    assert (s["mean"], s["lo"], s["hi"]) == pytest.approx((0.975, 0.95, 1.0))
    t = stats.summarize(stats.per_seed(a.drop(columns="reps"), ["arch"]), ["arch"]).iloc[0]
    assert t["interval"] == stats.SEED_T and t["hi"] == pytest.approx(
        0.975 + sps.t.ppf(0.975, 1) * np.std([0.95, 1.0], ddof=1) / math.sqrt(2))


def test_mean_over_and_slope_carry_paired_replicates():
    rows = [{"arch": "x", "seed": 0, "affine": x, "value": y, "lo": 0, "hi": 0,
             "reps": np.array([y, y + 1.0])} for x, y in ((0.0, 0.3), (0.1, 0.2), (0.2, 0.1))]
    df = pd.DataFrame(rows)
    m = stats.mean_over(df.drop(columns="affine"), ["arch"]).iloc[0]
    assert np.allclose(m[stats.PAIRED_REPS], [0.2, 1.2])
    s = stats.slope(df, "affine", ["arch"]).iloc[0]
    assert np.allclose(s[stats.PAIRED_REPS], [-1.0, -1.0])  # the +1 of replicate 2 cancels


def test_mde_formula():
    assert stats.mde(0.01) == pytest.approx(0.01 * (1.959964 + 0.841621), rel=1e-6)
    assert stats.mde(0.01, 2) == pytest.approx(0.01 * (sps.t.ppf(0.975, 2) + sps.t.ppf(0.8, 2)))


def test_a_section_without_items_has_nan_replicates():
    from uvlm.eval.bootstrap import Ratios
    from uvlm.report.collect import item_weights, replicates

    r = Ratios(("total",), np.zeros((0, 1)), np.zeros((0, 1)), ())
    assert np.isnan(replicates(r, item_weights(0, 5, ())) ["total"]).all()
