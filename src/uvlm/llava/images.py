"""LLaVA records and their images, encoded by the frozen towers while batches are built;
``load_parts`` loads the towers and the rest of a run's model context.

CLIP features of the 700k training images cannot be precomputed as the smart-watch scales do
(700k x 576 x 1024 floats is 1.6 TB), so ``TowerBatcher`` reads each batch's image files and
runs them through the towers on the training device. Pixels are prepared as LLaVA-1.5 does with
``image_aspect_ratio pad`` (the authors' setting): padded to a square with the CLIP processor's
mean colour, then resized by each tower to its own input size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from PIL import Image, UnidentifiedImageError
from transformers.image_utils import OPENAI_CLIP_MEAN

from uvlm import UvlmError
from uvlm.config import Config
from uvlm.data.tasks import IMAGE_TOKEN
from uvlm.encoders import load_vision_model, space_info
from uvlm.encoders.images import resize
from uvlm.encoders.space import Space
from uvlm.encoders.tokenizer import pretrained_tokenizer
from uvlm.encoders.towers import VQTower, freeze
from uvlm.encoders.vq import load_llamagen_checkpoint
from uvlm.encoders.vq_train import vq_args
from uvlm.grid import Run
from uvlm.llava import check_config
from uvlm.model.batching import Batcher, Encoded
from uvlm.model.unified import ModelContext

#: LLaVA's expand2square fills with the image processor's mean, as 0-255 integers
PAD_COLOUR = tuple(int(255 * m) for m in OPENAI_CLIP_MEAN)
SPLIT = "llava"  # the one "split" of the records (uvlm.model.batching keys images by split)


# --------------------------------------------------------------------------- records

def image_first(turn: str) -> str:
    """LLaVA's preprocess_multimodal: a turn with "<image>" anywhere starts with "<image>\\n"."""
    if IMAGE_TOKEN not in turn:
        return turn
    return IMAGE_TOKEN + "\n" + turn.replace(IMAGE_TOKEN, "").strip()


def is_generation(record: dict) -> bool:
    """A text-to-image record: its (last) answer ends with "<image>" (``uvlm.llava.data``)."""
    return record["conversations"][-1]["value"].endswith(IMAGE_TOKEN)


def to_records(llava: list[dict]) -> tuple[list[dict], list[str]]:
    """LLaVA-format records -> (records for ``Template``, image paths).

    Tasks: ``generation`` (the image is the target), ``vqa`` (an understanding image) or
    ``text`` (no image). ``image_id`` indexes the returned paths (-1: no image).
    """
    index: dict[str, int] = {}
    out = []
    for i, r in enumerate(llava):
        conv = r["conversations"]
        task = "generation" if is_generation(r) else "vqa" if "image" in r else "text"
        if task == "vqa":
            conv = [t | {"value": image_first(t["value"])} if t["from"] == "human" else t
                    for t in conv]
        image_id = index.setdefault(r["image"], len(index)) if "image" in r else -1
        out.append({"id": str(r.get("id", i)), "task": task, "split": SPLIT,
                    "image_id": image_id, "conversations": conv})
    return out, list(index)


def check_images(folder: Path, paths: list[str]) -> None:
    """Fail before any training if an image file is missing."""
    missing = [p for p in paths if not (folder / p).is_file()]
    if missing:
        raise FileNotFoundError(f"llava.image_folder: {folder / missing[0]} not found "
                                f"({len(missing)} of {len(paths)} images missing)")


# --------------------------------------------------------------------------- pixels

def load_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, UnidentifiedImageError) as e:
        raise UvlmError(f"{path}: unreadable image ({e})") from None


def pad_to_square(image: Image.Image) -> Image.Image:
    """LLaVA's expand2square: the image centred on a square of ``PAD_COLOUR``."""
    w, h = image.size
    if w == h:
        return image
    square = Image.new("RGB", (max(w, h), max(w, h)), PAD_COLOUR)
    square.paste(image, ((max(w, h) - w) // 2, (max(w, h) - h) // 2))
    return square


def pixels(images: list[Image.Image], size: int) -> torch.Tensor:
    """Padded, resized images: float (B, 3, size, size) in [0, 1]."""
    out = []
    for im in images:
        x = torch.from_numpy(np.array(pad_to_square(im))).permute(2, 0, 1).float() / 255.0
        out.append(resize(x[None], size)[0])  # one by one: the images differ in size
    return torch.stack(out)


@torch.no_grad()
def encode(tower: nn.Module, images: list[Image.Image], device: torch.device) -> torch.Tensor:
    """Images through a frozen tower, in fp32 whatever the caller's autocast (VQ codes must
    not depend on the training precision): (B, T, D) features or (B, T) codes."""
    with torch.autocast(device.type, enabled=False):
        return tower(pixels(images, tower.image_size).to(device))


class TowerBatcher(Batcher):
    """``Batcher`` whose images are read from ``folder`` and encoded by the towers as each
    batch is built (``Batcher`` looks them up in precomputed feature tables).

    ``towers[space]``: the frozen tower of each space of the run, on ``device``.
    """

    def __init__(self, enc: Encoded, folder: Path, paths: list[str],
                 towers: dict[str, nn.Module], und: Space, gen: Space, device: torch.device):
        self.enc, self.gen_tokens = enc, gen.num_tokens
        self.folder, self.paths, self.device = Path(folder), paths, device
        self.und, self.gen, self.towers = und, gen, towers

    def _images(self, space: Space, idx: torch.Tensor) -> torch.Tensor:
        if not len(idx):
            shape = (0, space.num_tokens) + ((space.feature_dim,) if space.kind == "continuous"
                                             else ())
            dtype = torch.float32 if space.kind == "continuous" else torch.int64
            return torch.zeros(shape, dtype=dtype, device=self.device)
        files = [self.folder / self.paths[i] for i in self.enc.image[idx].tolist()]
        return encode(self.towers[space.name], [load_image(f) for f in files], self.device)

    def und_images(self, idx: torch.Tensor) -> torch.Tensor:
        return self._images(self.und, idx)

    def gen_images(self, idx: torch.Tensor) -> torch.Tensor:
        return self._images(self.gen, idx)


# --------------------------------------------------------------------------- towers

def load_parts(cfg: Config, run: Run) -> tuple[ModelContext, dict[str, nn.Module]]:
    """The model context (the LLM's tokenizer, the run's spaces, the VQ codebook) and the
    frozen tower of each space (images in [0, 1] -> features or codes), on the CPU."""
    check_config(cfg)
    towers: dict[str, nn.Module] = {}
    codebook = None
    for space in sorted({run.und_space, run.gen_space}):
        if space == "vq":  # LlamaGen's checkpoint itself: no encoders stage at this scale
            vq = freeze(load_llamagen_checkpoint(cfg.encoders.vq.path, vq_args(cfg.encoders.vq)))
            towers[space] = VQTower(vq, cfg.encoders.vq.image_size)
            codebook = vq.quantize.codebook()
        else:
            towers[space] = load_vision_model(cfg, space)
    und, gen = space_info(cfg, run.und_space), space_info(cfg, run.gen_space)
    ctx = ModelContext(pretrained_tokenizer(cfg.model.llm.path), und, gen, codebook,
                       und_merge=cfg.model.merge(und.kind), gen_merge=cfg.model.merge(gen.kind))
    return ctx, towers
