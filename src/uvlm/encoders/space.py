"""A vision space as every stage sees it: its name, head kind, token count and widths.

The encoders derive one from the config (``uvlm.encoders.space_info``), and the model reads
it as it is (``uvlm.model.unified.ModelContext``); tests and benchmarks build one directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

HeadKind = Literal["continuous", "vq"]


@dataclass(frozen=True)
class Space:
    name: str
    kind: HeadKind  # continuous: features (regression head); vq: codes (codebook classes)
    num_tokens: int  # T: tokens per image, the image slots in a sequence
    feature_dim: int  # D of a continuous space; the codebook dim d of a vq space
    codebook_size: int | None = None  # K of a vq space: classes of the image head
