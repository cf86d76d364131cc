"""`python -m uvlm encoders-vq --config C`: the VQ tokenizer, in R/encoders/vq/.

* ``encoders.vq.source: train`` (tiny scales): ``VQModel`` at the ``encoders.vq`` size,
  trained from scratch as a VQ autoencoder on the train images (seeded init and batches,
  Adam with LlamaGen's betas (0.9, 0.95), warm-up + cosine lr).
  Loss = L2 + L1 reconstruction + codebook + 0.25 x commitment. LlamaGen trains VQ-16 with
  L2 reconstruction, the VQ losses, an LPIPS perceptual loss and a PatchGAN loss; we skip
  the last two at tiny scale (LPIPS needs pretrained VGG weights, and the adversarial game
  needs far more steps than a minutes-long CPU budget); the L1 term keeps thin clock hands
  sharper than L2 alone. Every ``REVIVE_EVERY`` steps in the first ``REVIVE_UNTIL`` of
  training, codes unused in the recent window restart on random encoder vectors
  (``VectorQuantizer.revive``); without it a short run collapses onto a few codes.
* ``source: pretrained`` (paper scale): converts LlamaGen's checkpoint ``encoders.vq.path``
  (``vq_ds16_c2i.pt``, read with ``torch.load(weights_only=True)``, its ``model`` entry,
  every key and shape checked) to safetensors.

Both write ``model.safetensors`` + ``config.json``, then encode and decode the first
``EVAL_IMAGES`` train images (``CONVERTED_EVAL_IMAGES`` for VQ-16, about 0.4 TFLOP per
image, on CPU when no GPU) through the saved model (the path every later stage uses) and
write the reconstruction MSE (pixels in [0, 1]) to ``metrics.json`` and the first 8
originals (top row) and reconstructions (bottom row) to ``reconstruction.png``.
"""

from __future__ import annotations

import contextlib
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from uvlm import paths, provenance
from uvlm.cli import command_parser, parse_command
from uvlm.config import VQConfig
from uvlm.device import job_gpu
from uvlm.encoders import load_vq
from uvlm.encoders.common import index_batches, warmup_steps
from uvlm.encoders.images import check_split, read_images, resize
from uvlm.encoders.vq import VQArgs, VQModel, load_llamagen_checkpoint, save_vq
from uvlm.precision import announce
from uvlm.utils import atomic_path, lr_at, stream_seed, write_json

EVAL_IMAGES = 256
CONVERTED_EVAL_IMAGES = 16
LOG_EVERY = 100
REVIVE_EVERY = 50
REVIVE_UNTIL = 0.75


def vq_args(vc: VQConfig) -> VQArgs:
    return VQArgs(codebook_size=vc.codebook_size, codebook_dim=vc.codebook_dim, ch=vc.ch,
                  ch_mult=tuple(vc.ch_mult), z_channels=vc.z_channels,
                  num_res_blocks=vc.num_res_blocks, norm_groups=vc.norm_groups)


def to_model_range(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float (B, 3, size, size) in [-1, 1], LlamaGen's input range."""
    return resize(images.float() / 255.0, size) * 2.0 - 1.0


def train_vq(vc: VQConfig, images: torch.Tensor, seed: int,
             device: torch.device | str = "cpu") -> tuple[VQModel, dict]:
    """Train the VQ autoencoder on uint8 images (N, 3, H, W) (kept on the CPU)."""
    torch.manual_seed(stream_seed(seed, "encoders", "vq", "init"))
    model = VQModel(vq_args(vc)).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=vc.lr, betas=(0.9, 0.95))
    bf16 = announce("encoders-vq", vc.precision, torch.device(device)) == "bf16"
    start, cpu_start = time.perf_counter(), time.process_time()
    batches = index_batches(len(images), vc.batch_size, vc.steps,
                            stream_seed(seed, "encoders", "vq", "batches"))
    revive_gen = torch.Generator().manual_seed(stream_seed(seed, "encoders", "vq", "revive"))
    revived = 0
    warmup = warmup_steps(vc.steps)
    for step, idx in enumerate(batches):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, vc.steps, vc.lr, warmup)
        x = to_model_range(images[idx].to(device), vc.image_size)
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16,
                            enabled=bf16):
            recon, q = model(x)
        recon = recon.float()
        rec = F.mse_loss(recon, x) + F.l1_loss(recon, x)
        loss = rec + q.codebook_loss + q.commit_loss
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"encoders-vq: loss is {loss.item()} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % REVIVE_EVERY == 0 and step < REVIVE_UNTIL * vc.steps:
            revived += model.quantize.revive(q.latents, revive_gen)
        if step % LOG_EVERY == 0 or step == vc.steps - 1:
            print(f"vq step {step:5d}/{vc.steps}  rec {rec.item():.4f}  "
                  f"codebook {q.codebook_loss.item():.4f}  commit {q.commit_loss.item():.4f}  "
                  f"usage {model.quantize.usage():.2f}  revived {revived}", flush=True)
    metrics = {"steps": vc.steps, "precision": "bf16" if bf16 else "fp32",
               "train_seconds": time.perf_counter() - start,
               "train_cpu_seconds": time.process_time() - cpu_start,
               "codebook_usage_last_window": model.quantize.usage(), "codes_revived": revived}
    return model.eval(), metrics


@torch.no_grad()
def reconstruct(model: VQModel, images: torch.Tensor, size: int, batch: int = 64
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode to codes and decode (the inference path). uint8 (B, 3, H, W) -> (originals,
    reconstructions), both float (B, 3, size, size) in [0, 1]."""
    outs, recs = [], []
    for i in range(0, len(images), batch):
        x = to_model_range(images[i:i + batch], size)
        recs.append(model.decode_code(model.encode(x)))
        outs.append(x)
    return (torch.cat(outs) + 1) / 2, (torch.cat(recs) + 1) / 2


def save_grid(top: torch.Tensor, bottom: torch.Tensor, path) -> None:
    """Two rows of images (B, 3, H, W) in [0, 1] as one PNG."""
    rows = [torch.cat(list(t), dim=2) for t in (top, bottom)]  # (3, H, B*W) each
    grid = (torch.cat(rows, dim=1).permute(1, 2, 0).clamp(0, 1) * 255).round()
    with atomic_path(path) as tmp:
        Image.fromarray(grid.to(torch.uint8).numpy().astype(np.uint8)).save(tmp, format="PNG")


def main(argv: list[str]) -> None:
    p = command_parser("uvlm encoders-vq", __doc__.split("\n")[0])
    args, cfg = parse_command(p, argv)
    vc = cfg.encoders.vq
    out = paths.encoder_dir(cfg, "vq")
    # converting LlamaGen's checkpoint and its reconstruction check are light CPU work (the
    # rule asks for no GPU); training follows the config's device (uvlm.device)
    claim = job_gpu(cfg, "encoders-vq") if vc.source == "train" else \
        contextlib.nullcontext(torch.device("cpu"))
    with claim as device:
        n = check_split(cfg, "train")
        if vc.source == "train":
            images = read_images(cfg, "train", range(n))
            model, metrics = train_vq(vc, images, cfg.seed, device)
        else:
            model = load_llamagen_checkpoint(vc.path, vq_args(vc))
            images = read_images(cfg, "train", range(min(n, CONVERTED_EVAL_IMAGES)))
            metrics = {"converted_from": vc.path}
        save_vq(model, out)

        model = load_vq(cfg).to(device)
        probe = images[:EVAL_IMAGES].to(device)
        originals, recons = reconstruct(model, probe, vc.image_size)
        codes_per_image = (vc.image_size // model.args.downsample) ** 2
        metrics |= {"recon_mse": F.mse_loss(recons, originals).item(),
                    "recon_images": len(probe), "codes_per_image": codes_per_image,
                    "source": vc.source}
        write_json(out / "metrics.json", metrics)
        save_grid(originals[:8].cpu(), recons[:8].cpu(), out / "reconstruction.png")
        provenance.write(cfg, "encoders-vq", precision=metrics.get("precision"))
        print(f"encoders-vq ({vc.source}): {codes_per_image} codes per image, reconstruction "
              f"MSE {metrics['recon_mse']:.5f} on {len(probe)} train images (pixels in [0, 1])"
              f" -> {out}")
