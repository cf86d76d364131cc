"""Frechet distance between feature sets (FID), with Inception or a named stand-in extractor.

``frechet_distance`` follows pytorch-fid 0.3.0 (``calculate_frechet_distance``) line by line:
scipy's ``sqrtm`` of the covariance product, a 1e-6 diagonal offset when that product is
singular, and the imaginary part dropped when it is numerically zero.

Extractors (``FID_EXTRACTORS``):

* ``inception``: pytorch-fid's FID InceptionV3 (pool3, 2048-d) with the weights file named by
  ``eval.inception_weights`` (``pt_inception-2015-12-05-6726825d.pth``): the paper's
  protocol. pytorch-fid needs torchvision, which does not install next to this package's
  CPU torch pin; paper-scale FID therefore needs ``pip install pytorch-fid==0.3.0`` in a
  CUDA environment that has torchvision.
* ``standin-judge-pixels``: the penultimate layer of our pixel judge (``uvlm.eval.judge``),
  trained on ground-truth renders. Numbers from it are not comparable with Inception FIDs;
  every result carries ``fid_extractor`` so tables can say which one was used.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from scipy import linalg

INCEPTION_WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                     sigma2: np.ndarray, eps: float = 1e-6) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) (pytorch-fid's computation)."""
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"frechet_distance: shapes differ: mu {mu1.shape} vs {mu2.shape}, "
                         f"sigma {sigma1.shape} vs {sigma2.shape}")
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        # Product might be almost singular: pytorch-fid adds eps to both diagonals.
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"frechet_distance: imaginary component "
                             f"{np.max(np.abs(covmean.imag))}")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """features (N, D) -> mean (D,), covariance (D, D) (rows are samples, as pytorch-fid)."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"FID needs (N >= 2, D) features, got {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def fid_from_features(f1: np.ndarray, f2: np.ndarray) -> float:
    """FID between two feature sets (N1, D) and (N2, D)."""
    return frechet_distance(*feature_stats(f1), *feature_stats(f2))


# --------------------------------------------------------------------------- extractors

@contextlib.contextmanager
def _hub_dir_with(weights: Path):
    """A temporary torch hub dir whose checkpoints/ holds ``weights`` under pytorch-fid's
    expected file name, so its ``load_state_dict_from_url`` loads it instead of downloading."""
    old = torch.hub.get_dir()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "checkpoints").mkdir()
        os.symlink(weights.resolve(), Path(tmp) / "checkpoints" / INCEPTION_WEIGHTS_NAME)
        torch.hub.set_dir(tmp)
        try:
            yield
        finally:
            torch.hub.set_dir(old)


def inception_extractor(weights_path: str | Path) -> Callable[[torch.Tensor], np.ndarray]:
    """pytorch-fid's FID InceptionV3 pool3 features; images (B, 3, H, W) uint8 pixels or
    float in [-1, 1] (the judge's convention)."""
    weights = Path(weights_path)
    if not weights.is_file():
        raise FileNotFoundError(f"eval.inception_weights: {weights} not found (pytorch-fid's "
                                f"{INCEPTION_WEIGHTS_NAME})")
    try:
        from pytorch_fid.inception import InceptionV3
    except ImportError as e:
        raise ImportError("eval.inception_weights is set but pytorch-fid is not importable "
                          f"({e}); paper-scale FID needs `pip install pytorch-fid==0.3.0` "
                          "(with torchvision)") from e
    with _hub_dir_with(weights):
        model = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()

    @torch.no_grad()
    def extract(images: torch.Tensor) -> np.ndarray:
        # pytorch-fid wants [0, 1]; it resizes to 299 and normalises to [-1, 1] itself.
        unit = images.float() / 255 if images.dtype == torch.uint8 else (images.float() + 1) / 2
        out = model(unit.clamp(0, 1))[0]  # (B, 2048, 1, 1)
        return out.squeeze(-1).squeeze(-1).cpu().numpy()

    return extract


def judge_extractor(judge) -> Callable[[torch.Tensor], np.ndarray]:
    """Penultimate features of a pixel judge; images (B, 3, H, W) uint8 or float in [-1, 1]."""
    if judge.space != "pixels":
        raise ValueError(f"FID stand-in needs the pixel judge, got the {judge.space!r} judge")
    return lambda images: judge.features(images).numpy()


FID_EXTRACTORS = {"inception": "pytorch-fid InceptionV3 pool3 (paper protocol)",
                  "standin-judge-pixels": "penultimate layer of the pixel judge (stand-in)"}


def make_extractor(inception_weights: str, judge) -> tuple[str, Callable]:
    """(name, extractor): Inception when ``eval.inception_weights`` is set, else the judge."""
    if inception_weights:
        return "inception", inception_extractor(inception_weights)
    return "standin-judge-pixels", judge_extractor(judge)


def extract_in_batches(extract: Callable[[torch.Tensor], np.ndarray], images: torch.Tensor,
                       batch_size: int) -> np.ndarray:
    """Run ``extract`` over ``images`` (N, 3, H, W) in batches -> (N, D)."""
    return np.concatenate([extract(images[i:i + batch_size])
                           for i in range(0, images.shape[0], batch_size)])
