# Modified from:
#   LlamaGen: https://github.com/FoundationVision/LlamaGen/blob/edae19d61a0fbf732f6f4982498e2a8af50d42df/tokenizer/tokenizer_image/vq_model.py
#   (itself modified from taming-transformers and maskgit)
#   LlamaGen is MIT-licensed (Copyright (c) 2024 FoundationVision); its notice is in LICENSE.
# Local changes: same module tree, parameter names and shapes (a VQ-16 state dict loads
# strictly; tests/fixtures/llamagen_vq16_state_dict.json), rewritten as
# * explicit methods (encode -> codes, embed, decode_code, forward for training) instead of one
#   forward that returns loss tuples with None entries;
# * the GroupNorm group count as an argument (``norm_groups``; 32 upstream) so tiny widths
#   under 32 channels work;
# * attention through ``F.scaled_dot_product_attention`` (same math as the bmm/softmax code);
# * only what VQ-16 uses: no entropy loss (ratio 0), no batch norm, no conv shortcut, no
#   average-pool resampling; none of them changes the state dict of VQ-16;
# * the nearest-code search always in fp32 (also under bf16 autocast); ``decode_code`` clamps
#   its output to [-1, 1];
# * added: ``VectorQuantizer.revive`` (dead-code restart) for short tiny-scale training.
"""LlamaGen's VQ image tokenizer: conv encoder -> l2-normalised codebook -> conv decoder.

An image ``(B, 3, H, W)`` in [-1, 1] is encoded to a ``(B, d, h, w)`` latent with
``h = H / 2**(len(ch_mult) - 1)``; each latent vector is l2-normalised and replaced by the
nearest l2-normalised codebook row (cosine nearest neighbour). Codes are read row-major, so
``codes[:, i]`` is latent position ``(i // w, i % w)``. VQ-16 (the paper's tokenizer,
``vq_ds16_c2i.pt``) maps 256 px to 16 x 16 codes from a 16384 x 8 codebook.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from uvlm import UvlmError
from uvlm.utils import atomic_write, load_tensors, save_tensors

#: length of the rolling window of recently used codes (a buffer in LlamaGen's checkpoints)
USAGE_WINDOW = 65536


# --------------------------------------------------------------------------- leaf modules

def swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=groups, num_channels=channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, dropout: float, groups: int):
        super().__init__()
        self.norm1 = group_norm(c_in, groups)
        self.conv1 = nn.Conv2d(c_in, c_out, kernel_size=3, padding=1)
        self.norm2 = group_norm(c_out, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, kernel_size=3, padding=1)
        # a 1x1 projection only where the width changes (LlamaGen's ``nin_shortcut``)
        self.nin_shortcut = nn.Conv2d(c_in, c_out, kernel_size=1) if c_in != c_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, c_in, H, W) -> (B, c_out, H, W)
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(self.dropout(swish(self.norm2(h))))
        skip = x if self.nin_shortcut is None else self.nin_shortcut(x)
        return skip + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all positions of a feature map (1x1 conv q/k/v)."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.norm = group_norm(channels, groups)
        self.q = nn.Conv2d(channels, channels, kernel_size=1)
        self.k = nn.Conv2d(channels, channels, kernel_size=1)
        self.v = nn.Conv2d(channels, channels, kernel_size=1)
        self.proj_out = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        b, c, h, w = x.shape
        y = self.norm(x)
        # (B, C, H, W) -> (B, 1, HW, C): one head over the H*W positions
        q, k, v = (t(y).flatten(2).transpose(1, 2).unsqueeze(1) for t in (self.q, self.k, self.v))
        y = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(C)) v
        y = y.squeeze(1).transpose(1, 2).reshape(b, c, h, w)
        return x + self.proj_out(y)


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H/2, W/2)
        # asymmetric padding (right and bottom only), as taming-transformers trained it
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, 2H, 2W)
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Level(nn.Module):
    """One resolution of the encoder or decoder: res blocks (+ attention at the lowest
    resolution) and an optional resampler. Attribute names match LlamaGen's ``conv_block``."""

    def __init__(self, res: list[ResnetBlock], attn: list[AttnBlock],
                 downsample: Downsample | None = None, upsample: Upsample | None = None):
        super().__init__()
        self.res = nn.ModuleList(res)
        self.attn = nn.ModuleList(attn)
        self.downsample = downsample
        self.upsample = upsample

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.res):
            h = block(h)
            if self.attn:
                h = self.attn[i](h)
        if self.downsample is not None:
            h = self.downsample(h)
        if self.upsample is not None:
            h = self.upsample(h)
        return h


def middle(channels: int, dropout: float, groups: int) -> nn.ModuleList:
    return nn.ModuleList([ResnetBlock(channels, channels, dropout, groups),
                          AttnBlock(channels, groups),
                          ResnetBlock(channels, channels, dropout, groups)])


# --------------------------------------------------------------------------- config

@dataclass(frozen=True)
class VQArgs:
    codebook_size: int = 16384
    codebook_dim: int = 8
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    z_channels: int = 256
    num_res_blocks: int = 2
    dropout: float = 0.0
    norm_groups: int = 32
    commit_beta: float = 0.25

    def __post_init__(self):
        widths = {self.ch * m for m in self.ch_mult}
        bad = sorted(w for w in widths if w % self.norm_groups)
        if bad:
            raise ValueError(f"VQ norm_groups={self.norm_groups} does not divide the widths "
                             f"{bad} (ch={self.ch} x ch_mult={list(self.ch_mult)})")

    @property
    def downsample(self) -> int:
        """Pixels per latent position along each side."""
        return 2 ** (len(self.ch_mult) - 1)


# --------------------------------------------------------------------------- composite

class Encoder(nn.Module):
    def __init__(self, a: VQArgs):
        super().__init__()
        self.conv_in = nn.Conv2d(3, a.ch, kernel_size=3, padding=1)
        levels, c_in = [], a.ch
        last = len(a.ch_mult) - 1
        for i, mult in enumerate(a.ch_mult):
            c_out = a.ch * mult
            res = [ResnetBlock(c_in if j == 0 else c_out, c_out, a.dropout, a.norm_groups)
                   for j in range(a.num_res_blocks)]
            attn = [AttnBlock(c_out, a.norm_groups) for _ in res] if i == last else []
            levels.append(Level(res, attn, downsample=Downsample(c_out) if i != last else None))
            c_in = c_out
        self.conv_blocks = nn.ModuleList(levels)
        self.mid = middle(c_in, a.dropout, a.norm_groups)
        self.norm_out = group_norm(c_in, a.norm_groups)
        self.conv_out = nn.Conv2d(c_in, a.z_channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, z, h, w)
        h = self.conv_in(x)
        for level in self.conv_blocks:
            h = level(h)
        for block in self.mid:
            h = block(h)
        return self.conv_out(swish(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, a: VQArgs):
        super().__init__()
        c_in = a.ch * a.ch_mult[-1]
        self.conv_in = nn.Conv2d(a.z_channels, c_in, kernel_size=3, padding=1)
        self.mid = middle(c_in, a.dropout, a.norm_groups)
        levels = []
        last = len(a.ch_mult) - 1
        # lowest resolution first; one more res block per level than the encoder
        for i in reversed(range(len(a.ch_mult))):
            c_out = a.ch * a.ch_mult[i]
            res = [ResnetBlock(c_in if j == 0 else c_out, c_out, a.dropout, a.norm_groups)
                   for j in range(a.num_res_blocks + 1)]
            attn = [AttnBlock(c_out, a.norm_groups) for _ in res] if i == last else []
            levels.append(Level(res, attn, upsample=Upsample(c_out) if i != 0 else None))
            c_in = c_out
        self.conv_blocks = nn.ModuleList(levels)
        self.norm_out = group_norm(c_in, a.norm_groups)
        self.conv_out = nn.Conv2d(c_in, 3, kernel_size=3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (B, z, h, w) -> (B, 3, H, W)
        h = self.conv_in(z)
        for block in self.mid:
            h = block(h)
        for level in self.conv_blocks:
            h = level(h)
        return self.conv_out(swish(self.norm_out(h)))


class Quantized(NamedTuple):
    z_q: torch.Tensor  # (B, d, h, w) codebook vectors, straight-through gradient to the encoder
    codes: torch.Tensor  # (B, h*w) int64, row-major
    latents: torch.Tensor  # (B*h*w, d) the l2-normalised encoder vectors, detached
    codebook_loss: torch.Tensor  # scalar: pulls the codebook towards the encoder outputs
    commit_loss: torch.Tensor  # scalar, already x beta: pulls the encoder towards its codes


class VectorQuantizer(nn.Module):
    """Nearest codebook row by cosine similarity (both sides l2-normalised, LlamaGen's
    ``codebook_l2_norm=True``), straight-through estimator, VQ-VAE codebook/commit losses."""

    def __init__(self, size: int, dim: int, beta: float):
        super().__init__()
        self.beta = beta
        self.embedding = nn.Embedding(size, dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / size, 1.0 / size)
        with torch.no_grad():
            self.embedding.weight.copy_(F.normalize(self.embedding.weight, dim=-1))
        # the last USAGE_WINDOW codes chosen in training; only ever read for a usage statistic
        self.register_buffer("codebook_used", torch.zeros(USAGE_WINDOW))

    def codebook(self) -> torch.Tensor:  # (K, d), unit rows
        return F.normalize(self.embedding.weight, dim=-1)

    def forward(self, z: torch.Tensor) -> Quantized:  # z: (B, d, h, w)
        # nearest-code search in fp32 even under bf16 autocast, so codes do not depend on
        # the training precision
        with torch.autocast(device_type=z.device.type, enabled=False):
            return self._quantize(z.float())

    def _quantize(self, z: torch.Tensor) -> Quantized:
        b, d, h, w = z.shape
        z = F.normalize(z.permute(0, 2, 3, 1), dim=-1)  # (B, h, w, d)
        flat = z.reshape(-1, d)
        e = self.codebook()
        # squared distances ||z||^2 + ||e||^2 - 2 z.e, written out as LlamaGen does
        dist = (flat.pow(2).sum(1, keepdim=True) + e.pow(2).sum(1) - 2 * flat @ e.t())
        codes = dist.argmin(dim=1)  # (B*h*w,)
        z_q = e[codes].view(z.shape)
        if self.training:
            with torch.no_grad():
                n = min(codes.numel(), USAGE_WINDOW)
                self.codebook_used.copy_(torch.cat([self.codebook_used[n:],
                                                    codes[-n:].to(self.codebook_used.dtype)]))
        codebook_loss = torch.mean((z_q - z.detach()) ** 2)
        commit_loss = self.beta * torch.mean((z_q.detach() - z) ** 2)
        z_q = z + (z_q - z).detach()  # straight-through: forward z_q, backward identity
        return Quantized(z_q.permute(0, 3, 1, 2), codes.view(b, h * w), flat.detach(),
                         codebook_loss, commit_loss)

    def usage(self) -> float:
        """Fraction of the codebook among the last USAGE_WINDOW training codes."""
        return self.codebook_used.unique().numel() / self.embedding.num_embeddings

    @torch.no_grad()
    def revive(self, latents: torch.Tensor, generator: torch.Generator) -> int:
        """Dead-code restart (not in LlamaGen, whose long runs do without it): move every
        code absent from the usage window onto a random encoder vector of ``latents``
        (N, d). A short run from scratch otherwise collapses onto a handful of codes.
        Returns the number of codes moved."""
        w = self.embedding.weight
        dead = torch.ones(w.shape[0], dtype=torch.bool, device=w.device)
        dead[self.codebook_used.long().unique()] = False
        n = int(dead.sum())
        if n:  # the generator lives on the CPU so the draws do not depend on the device
            pick = torch.randint(len(latents), (n,), generator=generator).to(latents.device)
            w[dead] = latents[pick].to(w.dtype)
        return n


class VQModel(nn.Module):
    def __init__(self, args: VQArgs):
        super().__init__()
        self.args = args
        self.encoder = Encoder(args)
        self.decoder = Decoder(args)
        self.quantize = VectorQuantizer(args.codebook_size, args.codebook_dim, args.commit_beta)
        self.quant_conv = nn.Conv2d(args.z_channels, args.codebook_dim, kernel_size=1)
        self.post_quant_conv = nn.Conv2d(args.codebook_dim, args.z_channels, kernel_size=1)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, Quantized]:
        """Training pass. images: (B, 3, H, W) in [-1, 1] -> reconstruction, quantizer out."""
        q = self.quantize(self.quant_conv(self.encoder(images)))
        return self.decoder(self.post_quant_conv(q.z_q)), q

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images: (B, 3, H, W) in [-1, 1] -> codes (B, T), T = (H / downsample)^2."""
        return self.quantize(self.quant_conv(self.encoder(images))).codes

    def embed(self, codes: torch.Tensor) -> torch.Tensor:
        """codes: (B, T) -> (B, T, d), the l2-normalised codebook rows the decoder sees."""
        return self.quantize.codebook()[codes]

    def decode_code(self, codes: torch.Tensor) -> torch.Tensor:
        """codes: (B, T), T a square -> images (B, 3, H, W) clamped to [-1, 1]."""
        b, t = codes.shape
        side = math.isqrt(t)
        if side * side != t:
            raise ValueError(f"decode_code: {t} codes per image is not a square grid")
        z_q = self.embed(codes).view(b, side, side, -1).permute(0, 3, 1, 2)
        return self.decoder(self.post_quant_conv(z_q)).clamp(-1.0, 1.0)


# --------------------------------------------------------------------------- checkpoints

def check_state_dict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Raise ValueError naming every missing, unexpected or wrong-shaped key."""
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    problems = [f"missing key {k} {list(s)}" for k, s in want.items() if k not in got]
    problems += [f"unexpected key {k} {list(s)}" for k, s in got.items() if k not in want]
    problems += [f"key {k}: shape {list(got[k])}, expected {list(s)}"
                 for k, s in want.items() if k in got and got[k] != s]
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise ValueError(f"{source}: state dict does not fit the VQ model "
                         f"({len(problems)} problems):\n  {shown}{more}")


def load_llamagen_checkpoint(path: str | Path, args: VQArgs) -> VQModel:
    """A VQModel with the weights of a LlamaGen training checkpoint (its ``model`` entry)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: LlamaGen VQ checkpoint not found "
                                "(encoders.vq.path; e.g. vq_ds16_c2i.pt from LlamaGen's release)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several unrelated types for a bad file
        raise UvlmError(f"{path}: not a loadable torch checkpoint ({e})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        keys = list(ckpt)[:10] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise UvlmError(f"{path}: expected a dict with a 'model' entry, got {keys}")
    model = VQModel(args)
    check_state_dict(model, ckpt["model"], str(path))
    model.load_state_dict(ckpt["model"])
    return model


def save_vq(model: VQModel, out_dir: str | Path) -> None:
    """``model.safetensors`` + ``config.json`` (the VQArgs) in ``out_dir``."""
    out_dir = Path(out_dir)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_tensors(out_dir / "model.safetensors", state)
    with atomic_write(out_dir / "config.json") as fh:
        json.dump(dataclasses.asdict(model.args), fh, indent=1)
        fh.write("\n")


def load_vq_dir(path: str | Path) -> VQModel:
    """Inverse of ``save_vq``: an eval-mode VQModel."""
    path = Path(path)
    files = [path / "config.json", path / "model.safetensors"]
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"{f}: VQ model file not found")
    raw = json.loads(files[0].read_text())
    try:
        args = VQArgs(**{**raw, "ch_mult": tuple(raw["ch_mult"])})
    except (TypeError, KeyError) as e:
        raise UvlmError(f"{files[0]}: not a VQ config ({e})") from None
    model = VQModel(args)
    state = load_tensors(files[1])
    check_state_dict(model, state, str(files[1]))
    model.load_state_dict(state)
    return model.eval()


# --------------------------------------------------------------------------- presets

#: LlamaGen VQ-16 (vq_ds16_c2i.pt): 71.9M parameters, 256 px -> 16 x 16 codes
VQ_16 = VQArgs()
