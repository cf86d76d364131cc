"""Vision spaces, tokenizer and affine distortions: what the ``encoders`` stage makes and
every later stage reads (R = results/<config name>):

* ``R/encoders/tokenizer/``: the LLM tokenizer (``load_tokenizer``);
* ``R/encoders/siglip/``: tiny scales' trained SigLIP (paper scale: ``encoders.siglip.path``);
* ``R/encoders/vq/``: the VQ tokenizer, trained or converted from LlamaGen (``load_vq``);
* ``R/encoders/features/{space}_{split}.safetensors``: per-image features (continuous
  spaces, key ``features``, (N, T, D) in ``encoders.feature_dtype``: bf16 by default, fp32 at
  the tiny scales) or codes (VQ, key ``codes``, int64 (N, T)); row i is image i of the split
  (``load_features`` reads it whole, ``open_features`` reads it
  row by row, for training);
* ``R/encoders/affine/{space}_{strength:g}.safetensors``: ``A`` (D, D), ``b`` (D,), applied
  as ``x @ A + b`` to understanding features only (``load_affine``).

``SPACES`` maps each space name to how its ``Space`` (``uvlm.encoders.space``) is derived
from the config and how its tower is loaded; ``space_info`` loads no weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from uvlm import paths
from uvlm.config import Config
from uvlm.encoders.rows import FeatureFile
from uvlm.encoders.space import HeadKind, Space
from uvlm.encoders.towers import VQTower, freeze
from uvlm.encoders.vq import VQModel, load_vq_dir
from uvlm.utils import load_tensors

#: ``encoders.feature_dtype`` -> the torch dtype features are stored in
FEATURE_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16,
                  "float32": torch.float32}

# transformers is imported inside the loaders below: the Snakefile imports this package to
# build the DAG and should not pay for it.

STAGE_HINT = "run `snakemake encoders` (or the encoders-* commands) for this config first"


def _siglip_info(cfg: Config) -> Space:
    s = cfg.encoders.siglip
    return Space("siglip", "continuous", (s.image_size // s.patch_size) ** 2, s.hidden_size)


def _clip_info(cfg: Config) -> Space:
    c = cfg.encoders.clip
    return Space("clip", "continuous", (c.image_size // c.patch_size) ** 2, c.hidden_size)


def _vq_info(cfg: Config) -> Space:
    v = cfg.encoders.vq
    return Space("vq", "vq", v.side * v.side, v.codebook_dim, v.codebook_size)


def _siglip_tower(cfg: Config) -> torch.nn.Module:
    from uvlm.encoders.siglip import load_siglip

    s = cfg.encoders.siglip
    return load_siglip(paths.encoder_dir(cfg, "siglip") if s.source == "train" else s.path, s)


def _clip_tower(cfg: Config) -> torch.nn.Module:
    from uvlm.encoders.clip import load_clip

    return load_clip(cfg.encoders.clip.path, cfg.encoders.clip)


def _vq_tower(cfg: Config) -> torch.nn.Module:
    return VQTower(load_vq(cfg), cfg.encoders.vq.image_size)


@dataclass(frozen=True)
class SpaceEntry:
    """How a space's ``Space`` is derived from the config and how its tower is loaded."""

    kind: HeadKind
    info: Callable[[Config], Space]
    tower: Callable[[Config], torch.nn.Module]  # frozen: images in [0, 1] -> features/codes

    @property
    def features_key(self) -> str:
        """Name of the tensor in the features file."""
        return {"continuous": "features", "vq": "codes"}[self.kind]


SPACES: dict[str, SpaceEntry] = {
    "siglip": SpaceEntry("continuous", _siglip_info, _siglip_tower),
    "vq": SpaceEntry("vq", _vq_info, _vq_tower),
    "clip": SpaceEntry("continuous", _clip_info, _clip_tower),
}


def _space(name: str) -> SpaceEntry:
    if name not in SPACES:
        raise KeyError(f"unknown vision space {name!r}; choose from: {', '.join(SPACES)}")
    return SPACES[name]


def space_info(cfg: Config, name: str) -> Space:
    """Token count and widths of a space, from the config alone."""
    return _space(name).info(cfg)


def load_vision_model(cfg: Config, space: str) -> torch.nn.Module:
    """The frozen tower: float images (B, 3, H, W) in [0, 1] -> features (B, T, D) or codes
    (B, T)."""
    return _space(space).tower(cfg)


# --------------------------------------------------------------------------- files

def _need(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found; {STAGE_HINT}")
    return path


def load_features(cfg: Config, space: str, split: str) -> torch.Tensor:
    """Features float32 (N, T, D) or codes int64 (N, T) of every image of ``split``, read
    whole (features stored in bf16 or fp16 are converted: 2x their file size in memory)."""
    path = _need(paths.features_file(cfg, space, split))
    key = _space(space).features_key
    tensors = load_tensors(path)
    if key not in tensors:
        raise KeyError(f"{path}: no tensor {key!r} (has {', '.join(tensors)})")
    t = tensors[key]
    return t.float() if t.is_floating_point() else t


def open_features(cfg: Config, space: str, split: str) -> FeatureFile:
    """The features or codes of ``split``, read lazily: ``f[rows]`` reads those rows only
    (float32 or int64), so a training process holds the batches it gathers, not the file
    (``uvlm.encoders.rows``)."""
    return FeatureFile(_need(paths.features_file(cfg, space, split)), _space(space).features_key)


def load_codebook(cfg: Config) -> torch.Tensor:
    """The VQ codebook as the model embeds codes: (K, d), l2-normalised rows."""
    path = _need(paths.encoder_weights(cfg, "vq"))
    return F.normalize(load_tensors(path)["quantize.embedding.weight"], dim=-1)


def load_affine(cfg: Config, space: str, strength: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(A (D, D), b (D,)): the distortion ``x @ A + b`` of the alignment experiment."""
    tensors = load_tensors(_need(paths.affine_file(cfg, space, strength)))
    return tensors["A"], tensors["b"]


def load_vq(cfg: Config) -> VQModel:
    """The frozen VQ model; ``.decode_code(codes (B, T)) -> images (B, 3, H, W) in [-1, 1]``."""
    return freeze(load_vq_dir(_need(paths.encoder_dir(cfg, "vq"))))


def decode_to_pixels(vq: VQModel, codes: torch.Tensor, batch_size: int) -> torch.Tensor:
    """VQ codes (B, T) -> uint8 images (B, 3, H, W) through the VQ decoder, in batches."""
    out = []
    with torch.no_grad():
        for i in range(0, codes.shape[0], batch_size):
            img = vq.decode_code(codes[i:i + batch_size])  # (b, 3, H, W) in [-1, 1]
            out.append(((img.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8))
    return torch.cat(out)


def load_tokenizer(cfg: Config):
    """The LLM tokenizer saved by ``encoders-tokenizer`` (a ``PreTrainedTokenizerFast``)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(_need(paths.encoder_dir(cfg, "tokenizer")))
