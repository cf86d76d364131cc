"""Affine distortions (docs/paper.md §3.3): invertible, singular values in the paper's ranges,
identity at strength 0, seeded."""

import numpy as np
import pytest

from uvlm.encoders.affine import siglip_affine, vq_affine


def check_invertible(a, lo, hi):
    sv = np.linalg.svd(a, compute_uv=False)
    assert np.isfinite(np.linalg.cond(a))
    assert np.allclose(a @ np.linalg.inv(a), np.eye(len(a)), atol=1e-8)
    assert lo - 1e-9 <= sv.min() and sv.max() <= hi + 1e-9
    return sv


@pytest.mark.parametrize("sigma", [0.1, 0.2, 0.3])
def test_vq_affine_is_a_scaled_rotation_without_bias(sigma):
    a, b = vq_affine(0, 8, sigma)
    sv = check_invertible(a, 1 - sigma, 1 + sigma)
    assert sv.max() - sv.min() > sigma / 4  # really scaled, not a pure rotation
    assert np.all(b == 0)


@pytest.mark.parametrize("k", [1.1, 1.2, 1.4])
def test_siglip_affine_scales_within_1_over_k_to_k_with_positive_bias(k):
    a, b = siglip_affine(0, 64, k)
    check_invertible(a, 1 / k, k)
    assert b.shape == (64,) and b.min() >= 0 and b.max() <= 0.1 * k


def test_siglip_k1_is_a_rotation_plus_bias():
    a, b = siglip_affine(0, 64, 1.0)
    assert np.allclose(a.T @ a, np.eye(64), atol=1e-10)
    assert 0 <= b.min() and b.max() <= 0.1 and b.max() > 0


def test_strength_zero_is_the_identity():
    for a, b in (vq_affine(0, 8, 0.0), siglip_affine(0, 16, 0.0)):
        assert np.array_equal(a, np.eye(len(a))) and np.all(b == 0)


def test_seeded_and_strengths_share_directions():
    a1, _ = vq_affine(0, 8, 0.1)
    assert np.array_equal(a1, vq_affine(0, 8, 0.1)[0])
    assert not np.allclose(a1, vq_affine(1, 8, 0.1)[0])
    a3, _ = vq_affine(0, 8, 0.3)
    # same rotation Q: the normalised columns agree
    unit = lambda m: m / np.linalg.norm(m, axis=0)  # noqa: E731
    assert np.allclose(unit(a1), unit(a3))


def test_bad_strengths_are_refused():
    with pytest.raises(ValueError, match="siglip_ks: 0.5 must be 0"):
        siglip_affine(0, 8, 0.5)
    with pytest.raises(ValueError, match="vq_sigmas: 1.0 must be in"):
        vq_affine(0, 8, 1.0)
