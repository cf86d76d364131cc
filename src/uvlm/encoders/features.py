"""`python -m uvlm encoders-features --config C --space S --split X`: encode every image of a
split once, so training and evaluation never run a vision tower.

Writes ``R/encoders/features/{space}_{split}.safetensors``: continuous spaces store
``features`` (N, T, D) in ``encoders.feature_dtype`` (the tower runs in fp32; its output is
rounded to bf16 or fp16 when stored), VQ stores ``codes`` int64 (N, T); row i is image i. The
file metadata records the space, split and config hash. Runs where the config says
(``uvlm.device``: the CPU for a ``use_cpu: true`` launch config, else a CUDA GPU, required).
"""

from __future__ import annotations

import time

import torch

from uvlm import paths, provenance
from uvlm.cli import command_parser, parse_command
from uvlm.config import Config
from uvlm.device import job_gpu
from uvlm.encoders import FEATURE_DTYPES, SPACES, load_vision_model, space_info
from uvlm.encoders.images import SPLITS, check_split, read_images
from uvlm.progress import progress_bar
from uvlm.utils import save_tensors


@torch.inference_mode()
def encode_split(cfg: Config, space: str, split: str, tower: torch.nn.Module,
                 device: torch.device, progress: bool = True) -> torch.Tensor:
    """Features (N, T, D) in ``encoders.feature_dtype`` or codes (N, T) int64 of every image
    of ``split``."""
    n = check_split(cfg, split)
    info = space_info(cfg, space)
    shape = (n, info.num_tokens) if info.kind == "vq" else (n, info.num_tokens, info.feature_dim)
    dtype = torch.int64 if info.kind == "vq" else FEATURE_DTYPES[cfg.encoders.feature_dtype]
    out = torch.empty(shape, dtype=dtype)
    bs = cfg.encoders.feature_batch_size
    for start in progress_bar(range(0, n, bs), desc=f"{space} {split}", disable=not progress):
        ids = range(start, min(n, start + bs))
        images = read_images(cfg, split, ids).to(device).float() / 255.0
        y = tower(images)
        if y.shape[1:] != out.shape[1:]:
            raise ValueError(f"{space} tower gives {tuple(y.shape[1:])} per image, the config "
                             f"implies {tuple(out.shape[1:])} (encoders.{space} sizes)")
        out[start:start + len(ids)] = y.to(out.dtype).cpu()
    return out


def main(argv: list[str]) -> None:
    p = command_parser("uvlm encoders-features", __doc__.split("\n")[0])
    p.add_argument("--space", required=True, choices=list(SPACES))
    p.add_argument("--split", required=True, choices=SPLITS)
    args, cfg = parse_command(p, argv)
    with job_gpu(cfg, f"encoders-features {args.space} {args.split}") as device:
        check_split(cfg, args.split)  # before loading any weights
        start = time.perf_counter()
        tower = load_vision_model(cfg, args.space).to(device)
        out = encode_split(cfg, args.space, args.split, tower, device)
        path = paths.features_file(cfg, args.space, args.split)
        save_tensors(path, {SPACES[args.space].features_key: out},
                     metadata={"space": args.space, "split": args.split, "config_hash": cfg.hash()})
        provenance.write(cfg, "encoders-features", space=args.space, split=args.split)
        print(f"encoders-features: {args.space} {args.split} {tuple(out.shape)} {out.dtype} -> "
              f"{path} in {time.perf_counter() - start:.1f} s on {device}")
