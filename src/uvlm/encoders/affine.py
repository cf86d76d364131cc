"""`python -m uvlm encoders-affine --config C`: the fixed affine distortions of the alignment
experiment (docs/paper.md §3.3), ``y = x @ A + b`` on understanding features only.

Recovered from the authors' committed weights:

* VQ (codebook dimension d), strength sigma: ``A = Q diag(s)`` with Q the orthogonal factor
  of the QR decomposition of a uniform random d x d matrix, ``s ~ U[1 - sigma, 1 + sigma]``,
  ``b = 0``. sigma = 0 is the identity (the undistorted baseline).
* SigLIP (width D), strength k: k = 0 is the identity; k = 1 is the rotation Q with
  ``b ~ U[0, 0.1]``; k > 1 is ``Q diag(s)`` with ``s ~ U[1/k, k]`` and ``b ~ U[0, 0.1 k]``.

The singular values of ``Q diag(s)`` are exactly ``s``, so every map is invertible with
singular values in the stated range. Q and the uniform draws come from one seeded stream per
space (``rng(seed, "affine", space)``), so the strengths of a space share their directions
and differ only in magnitude, as the authors' files (all drawn with seed 42) do.
"""

from __future__ import annotations

import numpy as np
import torch

from uvlm import paths, provenance
from uvlm.cli import command_parser, parse_command
from uvlm.config import Config
from uvlm.encoders import space_info
from uvlm.utils import rng, save_tensors

#: SigLIP's translation is U[0, BIAS_SCALE * k] (k = 1: U[0, 0.1])
BIAS_SCALE = 0.1


def _draws(seed: int, space: str, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Q (dim, dim) orthogonal, u (dim,) ~ U[0, 1), v (dim,) ~ U[0, 1)) of one space."""
    gen = rng(seed, "affine", space)
    q, _ = np.linalg.qr(gen.random((dim, dim)))
    return q, gen.random(dim), gen.random(dim)


def vq_affine(seed: int, dim: int, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    if not 0.0 <= sigma < 1.0:
        raise ValueError(f"encoders.affine.vq_sigmas: {sigma} must be in [0, 1)")
    if sigma == 0.0:
        return np.eye(dim), np.zeros(dim)
    q, u, _ = _draws(seed, "vq", dim)
    s = 1.0 - sigma + 2.0 * sigma * u  # U[1 - sigma, 1 + sigma]
    return q * s, np.zeros(dim)  # q * s == q @ diag(s)


def siglip_affine(seed: int, dim: int, k: float) -> tuple[np.ndarray, np.ndarray]:
    if k == 0.0:
        return np.eye(dim), np.zeros(dim)
    if k < 1.0:
        raise ValueError(f"encoders.affine.siglip_ks: {k} must be 0 (identity), 1 (rotation) "
                         "or above 1 (rotation and scale in [1/k, k])")
    q, u, v = _draws(seed, "siglip", dim)
    s = 1.0 / k + (k - 1.0 / k) * u  # U[1/k, k]; all ones at k = 1
    return q * s, BIAS_SCALE * k * v


def write_affines(cfg: Config) -> list:
    """Write every configured distortion; returns the paths."""
    jobs = ([("vq", sigma, vq_affine) for sigma in cfg.encoders.affine.vq_sigmas]
            + [("siglip", k, siglip_affine) for k in cfg.encoders.affine.siglip_ks])
    written = []
    for space, strength, make in jobs:
        a, b = make(cfg.seed, space_info(cfg, space).feature_dim, strength)
        path = paths.affine_file(cfg, space, strength)
        save_tensors(path, {"A": torch.from_numpy(a).float().contiguous(),
                            "b": torch.from_numpy(b).float().contiguous()},
                     metadata={"space": space, "strength": f"{strength:g}"})
        sv = np.linalg.svd(a, compute_uv=False)
        print(f"affine {space} {strength:g}: singular values [{sv.min():.3f}, {sv.max():.3f}], "
              f"|b| max {np.abs(b).max():.3f} -> {path}")
        written.append(path)
    return written


def main(argv: list[str]) -> None:
    p = command_parser("uvlm encoders-affine", __doc__.split("\n")[0])
    args, cfg = parse_command(p, argv)
    write_affines(cfg)
    provenance.write(cfg, "encoders-affine")
