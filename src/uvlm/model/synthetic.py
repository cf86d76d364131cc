"""Synthetic stand-ins for the data and encoders stages.

Benchmarks (``bench-train``, ``bench-generate``) and the model tests run the real model and
training code on these, without rendering images or training encoders. Records follow the
LLaVA format of ``R/data/*.json`` with smart-watch-like text of realistic length (within ~10%
of the real records' token counts); features and codes are random; spaces take the sizes the
config gives the encoders.
"""

from __future__ import annotations

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from uvlm.config import Config
from uvlm.encoders.space import Space
from uvlm.grid import Run
from uvlm.model.unified import ModelContext
from uvlm.utils import rng, stream_seed

WEATHERS = ("sunny", "cloudy", "raining")
CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")
QUESTIONS = {
    "time": "What time is shown on the smart watch?",
    "weather": "What is the weather shown on the watch?",
    "battery": "How much battery is left on the watch?",
    "weather_pos": "Where is the weather icon on the watch?",
    "battery_pos": "Where is the battery indicator located?",
}


def _watch(g: np.random.Generator) -> dict[str, str]:
    w, b = g.choice(len(CORNERS), size=2, replace=False)
    return {"time": f"{g.integers(0, 13):02d}:{g.integers(0, 60):02d}:{g.integers(0, 60):02d}",
            "weather": WEATHERS[g.integers(3)], "battery": f"{g.integers(0, 101)}%",
            "weather_pos": CORNERS[w], "battery_pos": CORNERS[b]}


def records(n_images: int, seed: int = 0, split: str = "train") -> list[dict]:
    """Three records per image (vqa with 1-4 turns, caption, generation)."""
    g = rng(seed, "synthetic", "records", split)
    out = []
    for i in range(n_images):
        a = _watch(g)
        asked = g.choice(list(QUESTIONS), size=1 + g.binomial(3, 0.4))
        vqa = []
        for k, attr in enumerate(asked):
            vqa += [{"from": "human", "value": ("<image>\n" if k == 0 else "") + QUESTIONS[attr]},
                    {"from": "gpt", "value": a[attr]}]
        text = (f"a smart watch showing the time {a['time']}, with {a['battery']} battery and "
                f"a {a['weather']} icon at the {a['weather_pos']}")
        base = {"image_id": i, "split": split, "image": f"images/{split}/{i:06d}.png"}
        out += [
            {**base, "id": f"{split}-{i:06d}-vqa", "task": "vqa", "conversations": vqa,
             "attributes": [str(x) for x in asked]},
            {**base, "id": f"{split}-{i:06d}-caption", "task": "caption",
             "attributes": ["time", "battery", "weather", "weather_pos"],
             "conversations": [{"from": "human", "value": "<image>\nDescribe the image."},
                               {"from": "gpt", "value": f"The image shows {text}."}]},
            {**base, "id": f"{split}-{i:06d}-generation", "task": "generation",
             "attributes": ["time", "battery", "weather", "weather_pos"],
             "conversations": [{"from": "human", "value": f"Can you draw {text}?"},
                               {"from": "gpt", "value": "Sure, here is the image. \n<image>"}]},
        ]
    return out


def tokenizer(texts: list[str], vocab_size: int = 256) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on ``texts``, with <pad>, <s>, </s>, <unk>."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    special = ["<pad>", "<s>", "</s>", "<unk>"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>",
                                   eos_token="</s>", unk_token="<unk>")


def texts(recs: list[dict]) -> list[str]:
    return [t["value"] for r in recs for t in r["conversations"]] + ["<image>"]


def spaces(cfg: Config) -> dict[str, Space]:
    """Every space at the config's encoder sizes (``uvlm.encoders.space_info``, no weights)."""
    from uvlm.encoders import SPACES, space_info

    return {n: space_info(cfg, n) for n in SPACES}


def features(space: Space, n_images: int, seed: int = 0, split: str = "train") -> torch.Tensor:
    """(N, T, D) unit-scale features, or (N, T) codes."""
    g = torch.Generator().manual_seed(stream_seed(seed, "synthetic", space.name, split))
    if space.kind == "vq":
        return torch.randint(space.codebook_size, (n_images, space.num_tokens), generator=g)
    return torch.randn(n_images, space.num_tokens, space.feature_dim, generator=g)


def context(cfg: Config, run: Run, recs: list[dict], seed: int = 0) -> ModelContext:
    """Tokenizer trained on ``recs``, the run's spaces, a random codebook and affine map."""
    sp = spaces(cfg)
    und, gen = sp[run.und_space], sp[run.gen_space]
    g = torch.Generator().manual_seed(stream_seed(seed, "synthetic", "frozen"))
    codebook = torch.randn(cfg.encoders.vq.codebook_size, cfg.encoders.vq.codebook_dim,
                           generator=g)
    affine = None
    if run.affine:
        d = und.feature_dim
        q, _ = torch.linalg.qr(torch.randn(d, d, generator=g))
        affine = (q * (1 + run.affine * (2 * torch.rand(d, generator=g) - 1)), torch.zeros(d))
    vocab = cfg.encoders.tokenizer.vocab_size
    return ModelContext(tokenizer(texts(recs), vocab), und, gen,
                        codebook if "vq" in (und.kind, gen.kind) else None, affine,
                        cfg.model.merge(und.kind), cfg.model.merge(gen.kind))


def inputs(cfg: Config, run: Run, n_images: int, seed: int = 0):
    """(context, records, features) for a run, as ``uvlm.model.context.load_train_inputs``."""
    recs = records(n_images, seed)
    ctx = context(cfg, run, recs, seed)
    feats = {s.name: {"train": features(s, n_images, seed)} for s in (ctx.und, ctx.gen)}
    return ctx, recs, feats
