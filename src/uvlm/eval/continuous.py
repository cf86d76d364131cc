"""Generation metrics for continuous heads (no pixel decoder; reviewers asked for these).

* cosine: per generated item, the mean over the T token positions of the cosine between the
  predicted feature and the ground-truth feature of the image the prompt was written for.
* top-1 retrieval: the generated sequence is matched against every ground-truth image of the
  test set by that same mean cosine; correct when the best match is its own image. Prompts
  never give the face colour and leave optional attributes out, so a perfect model does not
  reach 1; chance is 1/N.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def mean_cosine(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """pred, target: (M, T, D) -> (M,) mean over tokens of the per-token cosine."""
    if pred.shape != target.shape:
        raise ValueError(f"cosine: pred {tuple(pred.shape)} vs target {tuple(target.shape)}")
    return F.cosine_similarity(pred.float(), target.float(), dim=-1).mean(dim=-1)


def similarity_matrix(pred: torch.Tensor, gallery: torch.Tensor) -> torch.Tensor:
    """pred (M, T, D), gallery (N, T, D) -> (M, N) mean-over-tokens cosine."""
    if pred.shape[1:] != gallery.shape[1:]:
        raise ValueError(f"retrieval: pred {tuple(pred.shape)} vs gallery "
                         f"{tuple(gallery.shape)}")
    p = F.normalize(pred.float(), dim=-1)
    g = F.normalize(gallery.float(), dim=-1)
    return torch.einsum("mtd,ntd->mn", p, g) / pred.shape[1]


def retrieval_top1(pred: torch.Tensor, gallery: torch.Tensor,
                   target: torch.Tensor) -> torch.Tensor:
    """(M,) bool: is gallery row ``target[i]`` the nearest to ``pred[i]``?

    pred (M, T, D), gallery (N, T, D), target (M,) int indices into the gallery.
    """
    sims = similarity_matrix(pred, gallery)  # (M, N)
    return sims.argmax(dim=1) == target.long()
