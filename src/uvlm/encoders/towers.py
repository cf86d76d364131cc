"""Frozen vision towers with one interface: ``tower(images) -> features or codes``.

``images`` are float ``(B, 3, H, W)`` in [0, 1] at any size; each tower resizes and
normalises them itself, so the same pixels reach the model whether it was trained here or
downloaded. Continuous towers return ``(B, T, D)`` float features, the VQ tower ``(B, T)``
int64 codes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn as nn

from uvlm import UvlmError
from uvlm.encoders.images import resize
from uvlm.encoders.vq import VQModel


def freeze(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class HFVisionTower(nn.Module):
    """A transformers vision model (SigLIP, CLIP) read at one hidden layer.

    Features are ``hidden_states[feature_layer]`` (LLaVA's ``mm_vision_select_layer``, -2 in
    the paper), i.e. before the final layer norm and pooling head. ``skip_tokens`` leading
    tokens are dropped (1 = CLIP's CLS token; SigLIP has none).
    """

    def __init__(self, model: nn.Module, feature_layer: int, image_size: int,
                 mean: Sequence[float], std: Sequence[float], skip_tokens: int):
        super().__init__()
        layers = model.config.num_hidden_layers
        if not -(layers + 1) <= feature_layer <= layers:
            raise ValueError(f"feature_layer {feature_layer} is out of range for a model with "
                             f"{layers} layers (hidden_states has {layers + 1} entries)")
        self.model = freeze(model)
        self.feature_layer = feature_layer
        self.image_size = image_size
        self.skip_tokens = skip_tokens
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> model input (B, 3, S, S): the image processor's
        resize, rescale and normalise."""
        return (resize(images, self.image_size) - self.mean) / self.std

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # -> (B, T, D)
        out = self.model(pixel_values=self.preprocess(images), output_hidden_states=True)
        return out.hidden_states[self.feature_layer][:, self.skip_tokens:]


class VQTower(nn.Module):
    """LlamaGen preprocessing (resize, map to [-1, 1]) + ``VQModel.encode``."""

    def __init__(self, model: VQModel, image_size: int):
        super().__init__()
        self.model = freeze(model)
        self.image_size = image_size

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # -> (B, T) int64
        return self.model.encode(resize(images, self.image_size) * 2.0 - 1.0)


class _DropLoadReport(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "LOAD REPORT" not in record.getMessage()


def load_hf_vision(cls: type, path: str, checks: dict[str, tuple[str, int]]) -> nn.Module:
    """``cls.from_pretrained(path)``, refusing a model whose vision weights did not all load
    (transformers would silently initialise them) or whose sizes differ from the config.

    ``checks``: model config attribute -> (config key, expected value).
    """
    # transformers logs a table of unused, missing and mis-shaped keys; unused ones are
    # expected (e.g. SigLIP's text tower), the other two are raised below with their names.
    logger = logging.getLogger("transformers.modeling_utils")
    drop_report = _DropLoadReport()
    logger.addFilter(drop_report)
    try:
        model, info = cls.from_pretrained(path, output_loading_info=True,
                                          ignore_mismatched_sizes=True)
    except OSError as e:
        raise FileNotFoundError(f"{path}: cannot load {cls.__name__} ({e})") from None
    finally:
        logger.removeFilter(drop_report)
    problems = ([f"missing {k}" for k in sorted(info["missing_keys"])]
                + [f"{k} has shape {list(got)}, expected {list(want)}"
                   for k, got, want in sorted(info["mismatched_keys"])])
    if problems:
        more = f" and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise UvlmError(f"{path}: {cls.__name__} weights do not fit: "
                         f"{'; '.join(problems[:10])}{more}")
    for attr, (key, want) in checks.items():
        got = getattr(model.config, attr)
        if got != want:
            raise UvlmError(f"{path}: {attr} is {got} but the config says {key}={want}")
    return model
