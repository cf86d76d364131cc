"""FID against the closed form for Gaussians; feature cosine and top-1 retrieval by hand."""

import numpy as np
import pytest
import torch

from uvlm.eval.continuous import mean_cosine, retrieval_top1, similarity_matrix
from uvlm.eval.fid import (
    fid_from_features,
    frechet_distance,
    inception_extractor,
    make_extractor,
)


def test_frechet_distance_diagonal_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    s1, s2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    # = 5 + (1 + 4 - 4) + (4 + 1 - 4) + (9 + 1 - 6) = 5 + 1 + 1 + 4 = 11
    assert expected == 11.0
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(11.0)


def test_frechet_distance_rotated_gaussians():
    # A rotation of both covariances leaves the distance unchanged.
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(4, 4)))
    s1, s2 = np.diag([1.0, 2.0, 3.0, 4.0]), np.diag([2.0, 2.0, 1.0, 0.5])
    mu1, mu2 = np.zeros(4), np.ones(4)
    want = 4 + np.sum(np.diag(s1) + np.diag(s2) - 2 * np.sqrt(np.diag(s1) * np.diag(s2)))
    got = frechet_distance(q @ mu1, q @ s1 @ q.T, q @ mu2, q @ s2 @ q.T)
    assert got == pytest.approx(want, rel=1e-6)


def test_fid_from_features_identical_sets_is_zero_and_shift_adds_squared_norm():
    f = np.random.default_rng(1).normal(size=(500, 3))
    assert fid_from_features(f, f) == pytest.approx(0.0, abs=1e-6)
    assert fid_from_features(f, f + np.array([3.0, 0.0, 4.0])) == pytest.approx(25.0, rel=1e-6)


def test_fid_singular_covariance_uses_the_offset():
    # Fewer samples than dimensions: singular covariances, still a finite distance.
    rng = np.random.default_rng(2)
    d = fid_from_features(rng.normal(size=(5, 8)), rng.normal(size=(5, 8)))
    assert np.isfinite(d) and d > 0


def test_fid_rejects_too_few_samples():
    with pytest.raises(ValueError, match="N >= 2"):
        fid_from_features(np.zeros((1, 3)), np.zeros((4, 3)))


def test_inception_needs_its_weights_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="eval.inception_weights"):
        inception_extractor(tmp_path / "missing.pth")
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"")
    try:
        import pytorch_fid  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install pytorch-fid"):
            make_extractor(str(weights), judge=None)


def test_mean_cosine_by_hand():
    pred = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])  # (1, 2, 2)
    target = torch.tensor([[[1.0, 0.0], [2.0, 0.0]]])
    # token 0: cos 1; token 1: cos 0 -> mean 0.5
    assert mean_cosine(pred, target).tolist() == [0.5]


def test_retrieval_top1():
    gallery = torch.eye(3).reshape(3, 1, 3)  # three orthogonal one-token images
    pred = torch.tensor([[[0.9, 0.1, 0.0]], [[0.0, 0.2, 1.0]], [[1.0, 0.0, 0.0]]])
    assert retrieval_top1(pred, gallery, torch.tensor([0, 2, 1])).tolist() == [True, True, False]
    assert similarity_matrix(pred, gallery).shape == (3, 3)
    with pytest.raises(ValueError, match="retrieval"):
        similarity_matrix(pred, torch.zeros(3, 2, 3))
