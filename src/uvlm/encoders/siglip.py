"""SigLIP vision space: load a SigLIP vision tower; `python -m uvlm encoders-siglip` trains one.

Paper scale (``encoders.siglip.source: pretrained``) loads
``SiglipVisionModel.from_pretrained(encoders.siglip.path)`` (google/siglip-base-patch16-224):
features are ``hidden_states[-2]`` for all 14 x 14 patches, 768-d, frozen. The image
processor's work (bicubic resize to ``image_size``, rescale to [0, 1], normalise with mean
and std 0.5) is done by ``HFVisionTower``.

Tiny scales (``source: train``) build ``SiglipModel`` (vision + text tower) from a small
``SiglipConfig`` with the ``encoders.siglip`` sizes (the text tower reuses the vision widths,
has ``text_layers`` layers, and the vocabulary of our tokenizer), train it on the train
split's image/caption pairs with SigLIP's sigmoid loss (``return_loss=True``), and
``save_pretrained`` it to ``R/encoders/siglip/``. Features are then read through the
paper-scale path, ``SiglipVisionModel.from_pretrained(R/encoders/siglip)``.

Training notes (tiny scale): SigLIP's initial temperature 10 and bias -10; captions are
``<s> text </s>``, left-padded with an attention mask so the pooled last position is
``</s>``. With batch 64 the sigmoid loss first sits at the "all pairs alike" plateau
(about 5.15) for several hundred steps before image/caption matching takes off, so the
mini config trains 1500 steps. The text tower is dropped after training.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from transformers import (
    PreTrainedTokenizerBase,
    SiglipConfig,
    SiglipModel,
    SiglipVisionModel,
)
from transformers.image_utils import IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD

from uvlm import paths, provenance
from uvlm.cli import command_parser, parse_command
from uvlm.config import SiglipConfig as SiglipSection
from uvlm.data.records import load_records
from uvlm.device import job_gpu
from uvlm.encoders import load_tokenizer
from uvlm.encoders.common import atomic_dir, index_batches, warmup_steps
from uvlm.encoders.images import check_split, read_images, resize
from uvlm.encoders.towers import HFVisionTower, load_hf_vision
from uvlm.precision import announce
from uvlm.utils import lr_at, stream_seed, write_json

#: SigLIP's initial logit temperature and bias (Zhai et al. 2023, sec. 3.2): with B-1
#: negatives per positive, a large negative bias keeps the first steps from being dominated
#: by pushing every pair apart. (transformers initialises both to 0.)
INIT_LOGIT_SCALE = math.log(10.0)
INIT_LOGIT_BIAS = -10.0
LOG_EVERY = 50


def load_siglip(path: str | Path, sc: SiglipSection) -> HFVisionTower:
    """The frozen SigLIP tower at ``path`` (hub id or folder), checked against the config."""
    model = load_hf_vision(SiglipVisionModel, str(path), {
        "image_size": ("encoders.siglip.image_size", sc.image_size),
        "patch_size": ("encoders.siglip.patch_size", sc.patch_size),
        "hidden_size": ("encoders.siglip.hidden_size", sc.hidden_size),
    })
    return HFVisionTower(model, sc.feature_layer, sc.image_size, IMAGENET_STANDARD_MEAN,
                         IMAGENET_STANDARD_STD, skip_tokens=0)


def pixel_values(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> SigLIP input (B, 3, size, size), as ``HFVisionTower`` prepares it."""
    mean = torch.tensor(IMAGENET_STANDARD_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STANDARD_STD, device=images.device).view(1, 3, 1, 1)
    return (resize(images.float() / 255.0, size) - mean) / std


def siglip_config(sc: SiglipSection, tokenizer: PreTrainedTokenizerBase, text_length: int
                  ) -> SiglipConfig:
    """Vision tower at the configured size; text tower as wide, with the tokenizer's
    vocabulary and special ids, reading ``text_length`` tokens."""
    width = dict(hidden_size=sc.hidden_size, num_attention_heads=sc.heads,
                 intermediate_size=sc.intermediate_size)
    return SiglipConfig(
        vision_config=dict(image_size=sc.image_size, patch_size=sc.patch_size,
                           num_hidden_layers=sc.layers, **width),
        text_config=dict(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id,
                         max_position_embeddings=text_length, num_hidden_layers=sc.text_layers,
                         **width))


def encode_captions(tokenizer: PreTrainedTokenizerBase, captions: list[str]
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask (N, L): ``<s> caption </s>``, padded on the left so that
    the last position, which SigLIP's text tower pools, is always ``</s>``."""
    ids = [x + [tokenizer.eos_token_id] for x in tokenizer(captions).input_ids]
    length = max(map(len, ids))
    tokens = torch.full((len(ids), length), tokenizer.pad_token_id)
    mask = torch.zeros((len(ids), length), dtype=torch.long)
    for i, x in enumerate(ids):
        tokens[i, length - len(x):] = torch.tensor(x)
        mask[i, length - len(x):] = 1
    return tokens, mask


def train_siglip(sc: SiglipSection, images: torch.Tensor, captions: list[str],
                 tokenizer: PreTrainedTokenizerBase, seed: int,
                 device: torch.device | str = "cpu") -> tuple[SiglipModel, dict]:
    """Contrastive training on pairs. images: uint8 (N, 3, H, W) (kept on the CPU);
    captions: N strings."""
    if len(captions) != len(images):
        raise ValueError(f"{len(images)} images but {len(captions)} captions")
    tokens, mask = encode_captions(tokenizer, captions)  # (N, L) each
    torch.manual_seed(stream_seed(seed, "encoders", "siglip", "init"))
    model = SiglipModel(siglip_config(sc, tokenizer, tokens.shape[1])).to(device)
    with torch.no_grad():
        model.logit_scale.fill_(INIT_LOGIT_SCALE)
        model.logit_bias.fill_(INIT_LOGIT_BIAS)
    opt = torch.optim.AdamW(model.parameters(), lr=sc.lr, weight_decay=1e-4)
    bf16 = announce("encoders-siglip", sc.precision, torch.device(device)) == "bf16"
    model.train()
    start, cpu_start, losses = time.perf_counter(), time.process_time(), []
    batches = index_batches(len(images), sc.batch_size, sc.steps,
                            stream_seed(seed, "encoders", "siglip", "batches"))
    warmup = warmup_steps(sc.steps)
    for step, idx in enumerate(batches):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, sc.steps, sc.lr, warmup)
        with torch.autocast(torch.device(device).type, torch.bfloat16, enabled=bf16):
            loss = model(input_ids=tokens[idx].to(device), attention_mask=mask[idx].to(device),
                         pixel_values=pixel_values(images[idx].to(device), sc.image_size),
                         return_loss=True).loss
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"encoders-siglip: loss is {loss.item()} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step % LOG_EVERY == 0 or step == sc.steps - 1:
            print(f"siglip step {step:5d}/{sc.steps}  loss {loss.item():.4f}  "
                  f"t {model.logit_scale.exp().item():.1f}  b {model.logit_bias.item():.2f}",
                  flush=True)
    model.cpu().eval()
    tail = losses[-max(1, len(losses) // 10):]
    metrics = {"steps": sc.steps, "precision": "bf16" if bf16 else "fp32",
               "final_loss": sum(tail) / len(tail),
               "seconds": time.perf_counter() - start,
               "cpu_seconds": time.process_time() - cpu_start}
    return model, metrics


@torch.no_grad()
def retrieval_accuracy(model: SiglipModel, images: torch.Tensor, captions: list[str],
                       tokenizer: PreTrainedTokenizerBase, sc: SiglipSection) -> float:
    """Image -> caption top-1 accuracy among the given pairs (a sanity number)."""
    tokens, mask = encode_captions(tokenizer, captions)
    logits = model(input_ids=tokens, attention_mask=mask,
                   pixel_values=pixel_values(images, sc.image_size)).logits_per_image
    return (logits.argmax(1) == torch.arange(len(images))).float().mean().item()


def captions_by_image(records: list[dict], n: int, source: str) -> list[str]:
    """The caption answer of each of the ``n`` images (one caption record per image)."""
    caps: dict[int, str] = {}
    for r in records:
        if r["task"] == "caption":
            caps[r["image_id"]] = r["conversations"][1]["value"]
    missing = [i for i in range(n) if i not in caps]
    if missing:
        raise ValueError(f"{source}: no caption record for image {missing[0]} "
                         f"({len(missing)} of {n} missing)")
    return [caps[i] for i in range(n)]


def main(argv: list[str]) -> None:
    p = command_parser("uvlm encoders-siglip", __doc__.split("\n")[0])
    args, cfg = parse_command(p, argv)
    sc = cfg.encoders.siglip
    if sc.source == "pretrained":
        tower = load_siglip(sc.path, sc)
        print(f"encoders-siglip: pretrained {sc.path} loads and matches the config "
              f"({tower.model.config.num_hidden_layers} layers); nothing to train or write")
        return
    with job_gpu(cfg, "encoders-siglip") as device:  # before reading the images
        n = check_split(cfg, "train")
        records_file = paths.data_file(cfg, "train")
        captions = captions_by_image(load_records(records_file), n, str(records_file))
        tokenizer = load_tokenizer(cfg)
        images = read_images(cfg, "train", range(n))
        model, metrics = train_siglip(sc, images, captions, tokenizer, cfg.seed, device)
    model = model.cpu()  # the checks below compare with the CPU loader's features
    probe = slice(0, min(n, 256))
    metrics["train_retrieval_top1_256"] = retrieval_accuracy(
        model, images[probe], captions[probe], tokenizer, sc)

    out = paths.encoder_dir(cfg, "siglip")
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        write_json(tmp / "metrics.json", metrics)
    # the saved folder must give the trained features through the paper-scale loader
    tower = load_siglip(out, sc)
    x = images[:8].float() / 255.0
    with torch.no_grad():
        direct = model.vision_model(pixel_values=tower.preprocess(x), output_hidden_states=True)
        if not torch.equal(tower(x), direct.hidden_states[sc.feature_layer]):
            raise RuntimeError(f"{out}: reloaded SigLIP gives different features")
    provenance.write(cfg, "encoders-siglip", precision=metrics["precision"])
    print(f"encoders-siglip: {sc.steps} steps in {metrics['seconds']:.1f} s, final loss "
          f"{metrics['final_loss']:.4f}, train image->caption top-1 (256) "
          f"{metrics['train_retrieval_top1_256']:.3f} -> {out}")
