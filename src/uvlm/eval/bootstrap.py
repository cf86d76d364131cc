"""Uncertainty: bootstrap intervals over test items and summaries over seeds.

Every metric in this package is a ratio of sums over *clusters* (a cluster is one test item:
an image's dialogue, caption or generated image): per-attribute means, micro-averaged totals
and plain means are all ``sum(num) / sum(den)``. Resampling clusters with replacement and
recomputing that ratio gives the percentile bootstrap; turns of one dialogue stay together,
so correlated turns do not narrow the interval.

Resamples are drawn as multinomial cluster counts ``W (B, C)``, so a resampled statistic is
``(W @ num) / (W @ den)``: one matrix product, no Python loop and no ``(B, C, K)`` tensor.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95


def bootstrap_ratio_ci(num: np.ndarray, den: np.ndarray, *, n_resamples: int, seed: int,
                       level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of ``num.sum(0) / den.sum(0)`` over clusters.

    num, den: (C, K) per-cluster sums and counts of K metrics (1-D input is one metric).
    Returns (lo, hi), each (K,) (or scalars for 1-D input). A metric with no counts at all
    gets NaN bounds; resamples in which a metric has no counts are ignored for that metric.
    """
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    if num.shape != den.shape:
        raise ValueError(f"bootstrap: num {num.shape} and den {den.shape} differ in shape")
    squeeze = num.ndim == 1
    num, den = np.atleast_2d(num.T).T, np.atleast_2d(den.T).T  # (C, K)
    n_clusters = num.shape[0]
    if n_clusters == 0 or n_resamples < 1:
        nan = np.full(num.shape[1], np.nan)
        return (nan[0], nan[0]) if squeeze else (nan, nan.copy())
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n_clusters, np.full(n_clusters, 1.0 / n_clusters),
                              size=n_resamples).astype(float)  # (B, C)
    sums, counts = weights @ num, weights @ den  # (B, K)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratios = np.where(counts > 0, sums / np.where(counts > 0, counts, 1.0), np.nan)
    alpha = (1.0 - level) / 2.0
    lo = np.full(num.shape[1], np.nan)
    hi = np.full(num.shape[1], np.nan)
    for k in range(num.shape[1]):
        valid = ratios[:, k][~np.isnan(ratios[:, k])]
        if valid.size:
            lo[k], hi[k] = np.quantile(valid, [alpha, 1.0 - alpha])
    return (lo[0], hi[0]) if squeeze else (lo, hi)


def bootstrap_mean_ci(values: np.ndarray, *, n_resamples: int, seed: int,
                      clusters: np.ndarray | None = None,
                      level: float = LEVEL) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-item ``values`` (N,).

    ``clusters`` (N,) groups items that are resampled together (e.g. the turns of one
    dialogue); by default every item is its own cluster.
    """
    values = np.asarray(values, dtype=float)
    if clusters is None:
        num, den = values, np.ones_like(values)
    else:
        _, inverse = np.unique(np.asarray(clusters), return_inverse=True)
        num = np.bincount(inverse, weights=values)
        den = np.bincount(inverse).astype(float)
    lo, hi = bootstrap_ratio_ci(num, den, n_resamples=n_resamples, seed=seed, level=level)
    return float(lo), float(hi)


def seed_summary(values: list[float], level: float = LEVEL) -> dict:
    """Mean, sample std and a Student-t interval of one metric over seeds.

    With a single seed there is no spread to estimate: std and the interval are None (not 0,
    which would read as "no variation").
    """
    x = np.asarray([v for v in values if v is not None], dtype=float)
    n = int(x.size)
    if n == 0:
        return {"mean": None, "std": None, "n": 0, "ci": None}
    mean = float(x.mean())
    if n < 2:
        return {"mean": mean, "std": None, "n": n, "ci": None}
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2.0, df=n - 1)) * std / math.sqrt(n)
    return {"mean": mean, "std": std, "n": n, "ci": [mean - half, mean + half]}


def as_interval(lo: float, hi: float) -> list[float] | None:
    """JSON form of an interval: [lo, hi], or None when undefined (no items)."""
    if np.isnan(lo) or np.isnan(hi):
        return None
    return [float(lo), float(hi)]


@dataclass(frozen=True)
class Ratios:
    """K ratio metrics over C clusters: metric k = ``num[:, k].sum() / den[:, k].sum()``."""

    names: tuple[str, ...]
    num: np.ndarray  # (C, K)
    den: np.ndarray  # (C, K)
    clusters: tuple[str, ...] = ()  # the C cluster ids, where known (pairs runs' items)

    @classmethod
    def from_terms(cls, terms: Iterable[tuple[str, str, float, float]],
                   names: Sequence[str]) -> Ratios:
        """Sum (cluster, metric, num, den) terms per cluster; clusters keep first-seen order."""
        index = {n: k for k, n in enumerate(names)}
        rows: dict[str, np.ndarray] = {}
        for cluster, name, num, den in terms:
            if name not in index:
                raise KeyError(f"metric {name!r} not in {list(names)}")
            row = rows.setdefault(cluster, np.zeros((2, len(names))))
            row[0, index[name]] += num
            row[1, index[name]] += den
        stacked = np.stack(list(rows.values())) if rows else np.zeros((0, 2, len(names)))
        return cls(tuple(names), stacked[:, 0, :], stacked[:, 1, :], tuple(rows))

    def to_json(self) -> dict:
        """Per-cluster terms, for comparisons paired on items (``evaluate``'s items.json)."""
        return {"metrics": list(self.names), "clusters": list(self.clusters),
                "num": self.num.tolist(), "den": self.den.tolist()}

    @classmethod
    def from_json(cls, d: dict, where: str) -> Ratios:
        num, den = np.asarray(d["num"], float), np.asarray(d["den"], float)
        shape = (len(d["clusters"]), len(d["metrics"]))
        if num.reshape(shape).shape != den.reshape(shape).shape:
            raise ValueError(f"{where}: terms do not match {shape[0]} clusters x "
                             f"{shape[1]} metrics")
        return cls(tuple(d["metrics"]), num.reshape(shape), den.reshape(shape),
                   tuple(d["clusters"]))

    def values(self) -> dict[str, float | None]:
        """Each metric's value; None where it has no counts."""
        num, den = self.num.sum(0), self.den.sum(0)
        return {n: (float(num[k] / den[k]) if den[k] > 0 else None)
                for k, n in enumerate(self.names)}

    def counts(self) -> dict[str, int]:
        return {n: int(round(self.den[:, k].sum())) for k, n in enumerate(self.names)}

    def intervals(self, *, n_resamples: int, seed: int) -> dict[str, list[float] | None]:
        """Bootstrap 95% interval of every metric (None where undefined)."""
        lo, hi = bootstrap_ratio_ci(self.num, self.den, n_resamples=n_resamples, seed=seed)
        return {n: as_interval(lo[k], hi[k]) for k, n in enumerate(self.names)}
