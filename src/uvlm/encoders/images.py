"""Reading the data stage's rendered images as tensors.

Image ``i`` of a split is ``R/data/images/{split}/{i:06d}.png``; a split has ``split_size``
images. Every error names the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from uvlm import UvlmError, paths
from uvlm.config import Config
from uvlm.data.build import SPLITS, split_size

__all__ = ["SPLITS", "check_split", "image_path", "read_images", "resize", "split_size"]


def image_path(cfg: Config, split: str, image_id: int) -> Path:
    return paths.image_file(cfg, split, image_id)


def check_split(cfg: Config, split: str) -> int:
    """Fail before any model work if an image of the split is missing; returns its size."""
    n = split_size(cfg, split)
    missing = [i for i in range(n) if not image_path(cfg, split, i).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{image_path(cfg, split, missing[0])}: image not found ({len(missing)} of {n} "
            f"{split} images missing); run `python -m uvlm data --split {split}` first")
    return n


def read_image(path: Path, size: int) -> np.ndarray:
    """(size, size, 3) uint8; a corrupt file or wrong size raises ValueError naming it."""
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError) as e:
        raise UvlmError(f"{path}: corrupt or unreadable image ({e})") from None
    if arr.shape != (size, size, 3):
        raise UvlmError(f"{path}: image is {arr.shape[1]}x{arr.shape[0]}, "
                         f"expected {size}x{size} (data.image_size)")
    return arr


def read_images(cfg: Config, split: str, ids: range | list[int]) -> torch.Tensor:
    """Images ``ids`` of ``split`` as uint8 (B, 3, H, W)."""
    arrs = [read_image(image_path(cfg, split, i), cfg.data.image_size) for i in ids]
    return torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).contiguous()


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """float (B, 3, H, W) in [0, 1] -> (B, 3, size, size); bicubic and antialiased, as the
    SigLIP/CLIP processors resize, and a no-op when the size already matches."""
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bicubic", align_corners=False,
                         antialias=True).clamp(0.0, 1.0)
