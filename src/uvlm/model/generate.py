"""Inference: greedy text and image generation, batched (left-padded) with a KV cache.

The paper's evaluation (docs/paper.md §2.1) decodes text greedily and, when the answer contains the
"<image>" marker, generates the T image tokens one by one without a cache, one prompt at a
time. ``reference_images`` is that loop (kept for tests and ``bench-generate``);
``generate_images`` produces the same tokens for a whole batch with one cached step per token.

VQ heads emit argmax codes (k^2 per slot with ``model.vq_merge`` k), fed back as codebook
embedding -> generation adapter; continuous heads emit feature vectors, fed back through the
generation adapter as they are.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache

from uvlm.model.batching import Prompt, Template
from uvlm.model.unified import UnifiedVLM, from_blocks


def left_pad(seqs: list[list[int]], pad: int):
    """-> ids (B, L), attention (B, L) bool, shift (B,) = left padding of each row."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    attention = torch.zeros((len(seqs), width), dtype=torch.bool)
    for i, s in enumerate(seqs):
        ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
        attention[i, width - len(s):] = True
    return ids, attention, width - attention.sum(1)


def _prefill(model: UnifiedVLM, prompts: list[Prompt], pad: int, images=None):
    """Run the prompts (understanding images scattered into their slots) through the LM.

    -> last hidden state (B, H), attention (B, L), positions (B, L), cache
    """
    device = model.image_head.weight.device
    ids, attention, shift = left_pad([p.ids for p in prompts], pad)
    ids, attention = ids.to(device), attention.to(device)
    x = model.embed_tokens(ids)  # (B, L, H)
    if images is not None:
        und = model.embed_und(images.to(device))  # (B, T, H)
        slot = torch.tensor([p.slot for p in prompts], device=device) + shift.to(device)
        pos = slot[:, None] + torch.arange(und.shape[1], device=device)
        x = x.index_put((torch.arange(len(prompts), device=device)[:, None], pos),
                        und.to(x.dtype))
    positions = (attention.cumsum(1) - 1).clamp(min=0)  # left padding does not count
    cache = DynamicCache(config=model.lm.config)
    h, cache = model.hidden(x, attention, positions, cache)
    return h[:, -1], attention, positions, cache


def _step(model: UnifiedVLM, x, attention, positions, cache):
    """Feed one new position per row: x (B, 1, H) -> last hidden (B, H)."""
    attention = torch.cat([attention, attention.new_ones(len(x), 1)], 1)
    positions = positions[:, -1:] + 1
    h, cache = model.hidden(x, attention, positions, cache)
    return h[:, -1], attention, positions, cache


@torch.no_grad()
def generate_text(model: UnifiedVLM, template: Template, prompts: list[Prompt],
                  max_new_tokens: int, images: torch.Tensor | None = None,
                  stop_at_marker: bool = False) -> list[list[int]]:
    """Greedy answers to ``prompts``; ``images`` (B, T, D) or (B, T) for understanding prompts.

    Each answer ends before </s>, or (``stop_at_marker``) right after the "<image>" marker.
    """
    h, attention, positions, cache = _prefill(model, prompts, template.pad, images)
    marker = torch.tensor(template.marker, device=h.device)
    out = torch.full((len(prompts), max_new_tokens), template.pad, device=h.device)
    end = torch.full((len(prompts),), max_new_tokens, device=h.device)  # answer length
    for t in range(max_new_tokens):
        token = model.text_logits(h).argmax(-1)  # (B,)
        out[:, t] = token
        running = end == max_new_tokens
        end[running & (token == template.eos)] = t
        if stop_at_marker and t + 1 >= len(marker):
            drew = (out[:, t + 1 - len(marker): t + 1] == marker).all(1)
            end[running & drew] = t + 1
        if (end < max_new_tokens).all() or t == max_new_tokens - 1:
            break
        h, attention, positions, cache = _step(model, model.embed_tokens(token[:, None]),
                                               attention, positions, cache)
    return [row[:n].tolist() for row, n in zip(out, end.tolist(), strict=True)]


def _emit(model: UnifiedVLM, h: torch.Tensor) -> torch.Tensor:
    """Image head on hidden states (B, H) -> one slot: codes (B, k^2) or features (B, 1, D)."""
    pred = model.predict_image(h)
    if model.gen.kind == "vq":
        return pred.view(len(h), model.gen_merge ** 2, -1).argmax(-1)
    return pred[:, None]


def _image(model: UnifiedVLM, slots: list[torch.Tensor]) -> torch.Tensor:
    """Emitted slots -> codes (B, T) in raster order, or features (B, T, D)."""
    x = torch.cat(slots, 1)
    return from_blocks(x, model.gen_merge) if model.gen.kind == "vq" else x


@torch.no_grad()
def generate_images(model: UnifiedVLM, template: Template, prefixes: list[list[int]]):
    """T image tokens after each prefix (a prompt plus an answer ending in the marker).

    -> codes (B, T) int64 for a vq head, features (B, T, D) for a continuous one.
    """
    h, attention, positions, cache = _prefill(model, [Prompt(p, None) for p in prefixes],
                                              template.pad)
    slots = [_emit(model, h)]  # slot 0 from the marker's last hidden state
    for _ in range(model.gen_slots - 1):
        x = model.embed_gen(slots[-1])  # (B, 1, H)
        h, attention, positions, cache = _step(model, x, attention, positions, cache)
        slots.append(_emit(model, h))
    return _image(model, slots)


@torch.no_grad()
def reference_images(model: UnifiedVLM, prefix: list[int]) -> torch.Tensor:
    """The paper's loop: one prefix, a full forward over the whole sequence per new token.

    -> codes (T,) or features (T, D)
    """
    device = model.image_head.weight.device
    ids = torch.tensor([prefix], device=device)
    slots: list[torch.Tensor] = []
    for _ in range(model.gen_slots):
        x = model.embed_tokens(ids)  # (1, L, H)
        if slots:
            x = torch.cat([x, model.embed_gen(torch.cat(slots, 1)).to(x.dtype)], 1)
        h, _ = model.hidden(x, torch.ones(x.shape[:2], dtype=torch.bool, device=device))
        slots.append(_emit(model, h[:, -1]))
    return _image(model, slots)[0]


@torch.no_grad()
def draw(model: UnifiedVLM, template: Template, prompts: list[Prompt], max_new_tokens: int):
    """Answer generation prompts: text, then images for the answers that emit the marker.

    -> (answers as token lists, images (B, T[, D]) with zeros where nothing was drawn,
        drew (B,) bool)
    """
    answers = generate_text(model, template, prompts, max_new_tokens, stop_at_marker=True)
    m = len(template.marker)
    drew = torch.tensor([a[-m:] == template.marker for a in answers])
    T = model.gen.num_tokens
    shape = (len(prompts), T) if model.gen.kind == "vq" else (len(prompts), T,
                                                              model.gen.feature_dim)
    images = torch.zeros(shape, dtype=torch.long if model.gen.kind == "vq" else torch.float32)
    rows = drew.nonzero()[:, 0].tolist()
    if rows:
        made = generate_images(model, template, [prompts[i].ids + answers[i] for i in rows])
        images[rows] = made.cpu().to(images.dtype)
    return answers, images, drew
