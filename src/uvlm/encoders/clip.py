"""CLIP vision space (the llava config): ``CLIPVisionModel.from_pretrained(encoders.clip.path)``
(openai/clip-vit-large-patch14-336), features ``hidden_states[-2]`` without the CLS token
(LLaVA's ``mm_vision_select_feature: patch``): 24 x 24 = 576 patches, 1024-d, frozen.
Preprocessing as CLIPImageProcessor on square images: bicubic resize to ``image_size``,
rescale, normalise with OpenAI's CLIP mean and std.
"""

from __future__ import annotations

from pathlib import Path

from transformers import CLIPVisionModel
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from uvlm.config import ClipConfig
from uvlm.encoders.towers import HFVisionTower, load_hf_vision

#: CLIP's vision transformer prepends one CLS token to the patch tokens
CLS_TOKENS = 1


def load_clip(path: str | Path, cc: ClipConfig) -> HFVisionTower:
    """The frozen CLIP tower at ``path`` (hub id or folder), checked against the config."""
    model = load_hf_vision(CLIPVisionModel, str(path), {
        "image_size": ("encoders.clip.image_size", cc.image_size),
        "patch_size": ("encoders.clip.patch_size", cc.patch_size),
        "hidden_size": ("encoders.clip.hidden_size", cc.hidden_size),
    })
    return HFVisionTower(model, cc.feature_layer, cc.image_size, OPENAI_CLIP_MEAN,
                         OPENAI_CLIP_STD, skip_tokens=CLS_TOKENS)
