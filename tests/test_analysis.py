"""Adapter analysis: the linear probe separates separable data and not random labels."""

import numpy as np
import pytest

from uvlm.eval.analysis import linear_probe, tsne_embedding


def _blobs(n=300, d=16, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=n)
    centers = rng.normal(size=(3, d)) * 4
    return centers[labels] + rng.normal(size=(n, d)), labels


def test_probe_reads_separable_classes():
    x, y = _blobs()
    out = linear_probe(x, y, seed=0)
    assert out["test_accuracy"] > 0.97
    assert (out["n_train"], out["n_test"]) == (240, 60)


def test_probe_is_at_chance_on_random_labels():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(600, 8))
    y = rng.integers(0, 3, size=600)
    assert abs(linear_probe(x, y, seed=0)["test_accuracy"] - 1 / 3) < 0.12


def test_probe_is_seeded():
    x, y = _blobs(n=120)
    assert linear_probe(x, y, seed=3) == linear_probe(x, y, seed=3)


def test_tsne_shapes_and_seed():
    x, _ = _blobs(n=60, d=5)
    a = tsne_embedding(x, seed=0, perplexity=10)
    assert a.shape == (60, 2)
    np.testing.assert_allclose(a, tsne_embedding(x, seed=0, perplexity=10))
    with pytest.raises(ValueError, match="perplexity"):
        tsne_embedding(x[:8], seed=0, perplexity=10)
