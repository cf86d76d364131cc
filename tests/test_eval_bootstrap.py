"""Bootstrap intervals and seed summaries on hand-checkable data."""

import numpy as np
import pytest
from scipy import stats

from uvlm.eval.bootstrap import Ratios, bootstrap_mean_ci, bootstrap_ratio_ci, seed_summary


def test_constant_data_gives_a_zero_width_interval():
    assert bootstrap_mean_ci(np.full(50, 0.7), n_resamples=200, seed=0) == pytest.approx(
        (0.7, 0.7))


def test_two_points_have_known_quantiles():
    # The mean of 2 draws from {0, 1} is 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4, so the
    # 2.5% and 97.5% quantiles are 0 and 1.
    lo, hi = bootstrap_mean_ci(np.array([0.0, 1.0]), n_resamples=4000, seed=1)
    assert (lo, hi) == (0.0, 1.0)


def test_interval_matches_the_normal_approximation_for_a_large_sample():
    x = np.random.default_rng(0).random(2000)
    lo, hi = bootstrap_mean_ci(x, n_resamples=2000, seed=3)
    se = x.std() / np.sqrt(x.size)
    assert lo == pytest.approx(x.mean() - 1.96 * se, abs=0.3 * se)
    assert hi == pytest.approx(x.mean() + 1.96 * se, abs=0.3 * se)


def test_seeded_and_reproducible():
    x = np.arange(10.0)
    assert bootstrap_mean_ci(x, n_resamples=100, seed=5) == bootstrap_mean_ci(
        x, n_resamples=100, seed=5)
    assert bootstrap_mean_ci(x, n_resamples=100, seed=5) != bootstrap_mean_ci(
        x, n_resamples=100, seed=6)


def test_clusters_resample_together():
    # Two clusters, each internally constant: resampling clusters gives only means of
    # {0, 0}, {0, 1}, {1, 1} weighted by cluster size; values are never split inside one.
    values = np.array([0.0, 0.0, 0.0, 1.0])
    clusters = np.array(["a", "a", "a", "b"])
    lo, hi = bootstrap_mean_ci(values, clusters=clusters, n_resamples=4000, seed=0)
    assert (lo, hi) == (0.0, 1.0)


def test_ratio_ci_ignores_resamples_without_counts_and_undefined_metrics():
    num = np.array([[1.0, 0.0], [0.0, 0.0]])
    den = np.array([[1.0, 0.0], [1.0, 0.0]])
    lo, hi = bootstrap_ratio_ci(num, den, n_resamples=500, seed=0)
    assert (lo[0], hi[0]) == (0.0, 1.0)
    assert np.isnan(lo[1]) and np.isnan(hi[1])


def test_ratios_from_terms():
    r = Ratios.from_terms([("x", "a", 1.0, 1.0), ("y", "a", 0.0, 1.0), ("x", "b", 3.0, 4.0)],
                          ["a", "b", "c"])
    assert r.num.shape == (2, 3)
    assert r.values() == {"a": 0.5, "b": 0.75, "c": None}
    assert r.counts() == {"a": 2, "b": 4, "c": 0}
    ci = r.intervals(n_resamples=100, seed=0)
    assert ci["c"] is None and ci["a"][0] <= 0.5 <= ci["a"][1]


def test_seed_summary_t_interval():
    out = seed_summary([1.0, 2.0, 3.0])
    assert out["mean"] == 2.0 and out["std"] == 1.0 and out["n"] == 3
    half = stats.t.ppf(0.975, 2) / np.sqrt(3)  # 4.303 / 1.732 = 2.484
    assert out["ci"] == pytest.approx([2 - half, 2 + half])
    assert seed_summary([0.4]) == {"mean": 0.4, "std": None, "n": 1, "ci": None}
    assert seed_summary([])["mean"] is None
