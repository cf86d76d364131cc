"""The unified vision-language model (docs/paper.md §2.1, docs/design.md §5).

One causal LM reads one sequence in which an image fills T consecutive slots:

    understanding  USER: [T slots] \\n question ASSISTANT: answer</s>
    generation     USER: prompt ASSISTANT: text <image> [T slots] </s>

Understanding slots hold ``input_adapter(features)``. Generation slots hold the
teacher-forced image tokens fed back through ``gen_adapter``; the text tokens of "<image>"
before them are a "generate now" marker. The image in slot i is predicted by ``image_head``
from the hidden state at slot i-1, so slot 0 comes from the marker's last token.

A VQ space may fill one slot with each k x k block of codes (``model.vq_merge``): read as
their codebook vectors side by side, and written as k^2 codes predicted from one hidden state
(the head has one K-way output per code of the block). The model orders a generated image's
codes block by block (``to_blocks``); ``from_blocks`` gives the raster order back.

Loss = text CE over assistant tokens + alpha x image loss, with the image loss chosen by the
head kind: ``continuous`` regresses features (1 - cosine), ``vq`` classifies codebook indices
(cross-entropy, computed in row chunks by ``uvlm.model.linear_ce``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, get_args

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedModel, Qwen2Config

from uvlm.config import Arch, Config, ConfigError
from uvlm.encoders.space import Space
from uvlm.model.linear_ce import linear_cross_entropy_sum
from uvlm.precision import resolve


class RunSpec(Protocol):
    """What the model reads of a training run (``uvlm.grid.Run`` is one; the model does not
    depend on the experiment grid)."""

    @property
    def name(self) -> str: ...
    @property
    def arch(self) -> str: ...
    @property
    def und_space(self) -> str: ...
    @property
    def gen_space(self) -> str: ...
    @property
    def detach(self) -> bool: ...


@dataclass(frozen=True)
class ModelContext:
    """What the model needs besides the config: built by the encoders stage (or by tests)."""

    tokenizer: object  # a PreTrainedTokenizerFast
    und: Space
    gen: Space
    codebook: torch.Tensor | None = None  # (K, d) frozen VQ codebook, when a space is vq
    affine: tuple[torch.Tensor, torch.Tensor] | None = None  # (A (D, D), b (D,)) on und inputs
    und_merge: int = 1  # k: understanding reads k x k blocks of tokens (cfg.model.merge)
    gen_merge: int = 1  # k: generation writes k x k blocks of codes

    @property
    def und_tokens(self) -> int:
        """Slots an understanding image fills."""
        return self.und.num_tokens // self.und_merge ** 2

    @property
    def gen_tokens(self) -> int:
        """Slots a generated image fills."""
        return self.gen.num_tokens // self.gen_merge ** 2


@dataclass
class LossParts:
    """Loss sums and the token counts they cover, so shards of a batch add up exactly."""

    text_sum: torch.Tensor  # () summed CE over supervised text tokens
    text_tokens: int
    image_sum: torch.Tensor  # () summed image loss over image tokens
    image_tokens: int
    alpha: float

    def loss(self, text_tokens: int | None = None, image_tokens: int | None = None):
        """Token-weighted mean text CE + alpha x mean image loss per image token.

        Pass the counts of the whole (global) batch when these parts cover one shard of it:
        the shards' losses then sum to the batch loss.
        """
        nt = max(self.text_tokens if text_tokens is None else text_tokens, 1)
        ni = max(self.image_tokens if image_tokens is None else image_tokens, 1)
        return self.text_sum / nt + self.alpha * self.image_sum / ni


@dataclass
class Batch:
    """A padded batch (see ``uvlm.model.batching``). U understanding and G generation rows."""

    ids: torch.Tensor  # (B, L) token ids; image slots hold the pad id
    attention: torch.Tensor  # (B, L) bool, False on right padding
    targets: torch.Tensor  # (B, L) bool, True on supervised (assistant) text tokens
    und_rows: torch.Tensor  # (U,) batch rows with an understanding image
    und_slot: torch.Tensor  # (U,) position of their first image slot
    und_input: torch.Tensor  # (U, T, D) features or (U, T) codes
    gen_rows: torch.Tensor  # (G,)
    gen_slot: torch.Tensor  # (G,)
    gen_target: torch.Tensor  # (G, T, D) features or (G, T) codes, also fed back as input

    def to(self, device) -> Batch:
        return Batch(**{k: v.to(device) for k, v in vars(self).items()})


def mlp_adapter(d_in: int, d_out: int) -> nn.Module:
    return nn.Sequential(nn.Linear(d_in, d_out), nn.GELU(), nn.Linear(d_out, d_out))


ADAPTERS = {"mlp": mlp_adapter, "linear": nn.Linear}


def merge_blocks(x: torch.Tensor, k: int) -> torch.Tensor:
    """(N, S*S, D) tokens of an S x S grid, row-major -> (N, (S/k)^2, k*k*D): each k x k block
    as one token, its tokens side by side in row-major order (space-to-depth)."""
    if k == 1:
        return x
    n, t, d = x.shape
    s = math.isqrt(t)
    x = x.view(n, s // k, k, s // k, k, d).transpose(2, 3)  # (N, S/k, S/k, k, k, D)
    return x.reshape(n, t // (k * k), k * k * d)


def to_blocks(codes: torch.Tensor, k: int) -> torch.Tensor:
    """(N, S*S) codes in raster order -> (N, S*S) in block order: each k x k block's codes
    consecutive, blocks in row-major order (what one generation slot writes)."""
    return merge_blocks(codes[..., None], k).flatten(1)


def from_blocks(codes: torch.Tensor, k: int) -> torch.Tensor:
    """Inverse of ``to_blocks``."""
    if k == 1:
        return codes
    n, t = codes.shape
    s = math.isqrt(t)
    x = codes.view(n, s // k, s // k, k, k).transpose(2, 3)  # (N, S/k, k, S/k, k)
    return x.reshape(n, t)


def cosine_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(N, T, D), (N, T, D) -> (N, T): 1 - cos, the paper's continuous image loss."""
    return 1 - F.cosine_similarity(pred, target, dim=-1)


class UnifiedVLM(nn.Module):
    def __init__(self, lm: PreTrainedModel, ctx: ModelContext, *, und_adapter: str,
                 gen_adapter: str, detach: bool, alpha: float):
        super().__init__()
        self.lm = lm
        self.und, self.gen, self.alpha = ctx.und, ctx.gen, alpha
        hidden = lm.config.hidden_size
        for space in (self.und, self.gen):
            if space.kind == "vq" and (ctx.codebook is None or tuple(ctx.codebook.shape)
                                       != (space.codebook_size, space.feature_dim)):
                got = None if ctx.codebook is None else tuple(ctx.codebook.shape)
                raise ValueError(f"space {space.name!r}: codebook of shape "
                                 f"{(space.codebook_size, space.feature_dim)} needed, got {got}")
        # Frozen inputs, not trained and not saved: they are reloaded from the encoders stage.
        self.register_buffer("codebook", ctx.codebook, persistent=False)  # (K, d)
        A, b = ctx.affine if ctx.affine is not None else (None, None)
        D = self.und.feature_dim
        if A is not None and (tuple(A.shape), tuple(b.shape)) != ((D, D), (D,)):
            raise ValueError(f"space {self.und.name!r}: affine A {tuple(A.shape)}, b "
                             f"{tuple(b.shape)}; expected ({D}, {D}) and ({D},)")
        self.register_buffer("affine_A", A, persistent=False)  # (D, D)
        self.register_buffer("affine_b", b, persistent=False)  # (D,)
        self.und_merge, self.gen_merge = ku, kg = ctx.und_merge, ctx.gen_merge
        for space, k in ((self.und, ku), (self.gen, kg)):
            side = math.isqrt(space.num_tokens)
            if k > 1 and (side * side != space.num_tokens or side % k):
                raise ValueError(f"space {space.name!r}: {space.num_tokens} tokens are not a "
                                 f"square grid of side divisible by {k} (model.vq_merge)")
        if kg > 1 and self.gen.kind != "vq":
            raise ValueError(f"space {self.gen.name!r}: only a VQ space generates merged blocks")

        # understanding path: one slot per token, or per k x k block of tokens
        self.input_adapter = ADAPTERS[und_adapter](self.und.feature_dim * ku * ku, hidden)
        # generation path: a same-space architecture reuses the input adapter (the paper's
        # default) unless `detach` asks for a separate one; a different space, or different
        # blocks, need their own.
        shared = self.und.name == self.gen.name and not detach and ku == kg
        self.gen_adapter = None if shared else ADAPTERS[gen_adapter](
            self.gen.feature_dim * kg * kg, hidden)
        out = (self.gen.feature_dim if self.gen.kind == "continuous"
               else self.gen.codebook_size * kg * kg)
        self.image_head = nn.Linear(hidden, out)

    @property
    def gen_slots(self) -> int:
        """Slots a generated image fills (T / k^2)."""
        return self.gen.num_tokens // self.gen_merge ** 2

    # ------------------------------------------------------------------ embeddings

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, L) -> (B, L, H)"""
        return self.lm.get_input_embeddings()(ids)

    def embed_und(self, x: torch.Tensor) -> torch.Tensor:
        """Understanding input: (U, T, D) features or (U, T) codes -> (U, T / k^2, H)."""
        if self.und.kind == "vq":
            x = self.codebook[x]  # (U, T, d)
        if self.affine_A is not None:
            x = x @ self.affine_A + self.affine_b  # the alignment experiment's fixed distortion
        return self.input_adapter(merge_blocks(x, self.und_merge))

    def embed_gen(self, x: torch.Tensor) -> torch.Tensor:
        """Generated image tokens fed back: (G, S, D) features -> (G, S, H), or (G, S k^2)
        codes in block order -> (G, S, H)."""
        if self.gen.kind == "vq":
            x = self.codebook[x]  # (G, S k^2, d)
            n, t, d = x.shape
            kk = self.gen_merge ** 2
            x = x.view(n, t // kk, kk * d)  # (G, S, k^2 d)
        adapter = self.input_adapter if self.gen_adapter is None else self.gen_adapter
        return adapter(x)

    def hidden(self, embeds: torch.Tensor, attention: torch.Tensor,
               position_ids: torch.Tensor | None = None, cache=None):
        """Run the LM body: (B, L, H) -> (B, L, H) last hidden states and the KV cache.

        ``attention`` (B, L_past + L) covers the cached positions too.
        """
        # adapters run in fp32; a LoRA base may be bf16 (autocast makes this a no-op)
        embeds = embeds.to(self.lm.get_input_embeddings().weight.dtype)
        out = self.lm.get_decoder()(inputs_embeds=embeds, attention_mask=attention,
                                    position_ids=position_ids, cache=cache,
                                    use_cache=cache is not None)
        return out.last_hidden_state, out.cache

    def text_logits(self, h: torch.Tensor) -> torch.Tensor:
        """(..., H) -> (..., V)"""
        return self.lm.get_output_embeddings()(h)

    def predict_image(self, h: torch.Tensor) -> torch.Tensor:
        """(..., H) -> (..., D) features or (..., k^2 K) code logits, in fp32."""
        return self.image_head(h.to(self.image_head.weight.dtype)).float()

    # ------------------------------------------------------------------ training loss

    def forward(self, batch: Batch) -> LossParts:
        T, S = self.gen.num_tokens, self.gen_slots
        target = batch.gen_target  # (G, T, D) features or (G, T) codes
        if self.gen.kind == "vq":
            target = to_blocks(target, self.gen_merge)
        x = self.embed_tokens(batch.ids)  # (B, L, H)
        # Scatter images into their slots; empty (U or G = 0) index sets are fine and keep
        # every parameter in the graph, which DDP needs.
        und = self.embed_und(batch.und_input)  # (U, Tu, H)
        pos = batch.und_slot[:, None] + torch.arange(und.shape[1], device=x.device)
        x = x.index_put((batch.und_rows[:, None], pos), und.to(x.dtype))
        gen = self.embed_gen(target)  # (G, S, H)
        pos = batch.gen_slot[:, None] + torch.arange(S, device=x.device)
        x = x.index_put((batch.gen_rows[:, None], pos), gen.to(x.dtype))

        h, _ = self.hidden(x, batch.attention)  # (B, L, H)

        # text: the token at t+1 is predicted from the hidden state at t
        supervised = batch.targets[:, 1:]  # (B, L-1)
        logits = self.text_logits(h[:, :-1][supervised]).float()  # (N, V)
        text_sum = F.cross_entropy(logits, batch.ids[:, 1:][supervised], reduction="sum")

        # image: slot i from the hidden state at slot i-1 (slot 0 from the marker)
        pos = batch.gen_slot[:, None] - 1 + torch.arange(S, device=x.device)  # (G, S)
        h_img = h[batch.gen_rows[:, None], pos].flatten(0, 1)  # (G S, H)
        if self.gen.kind == "vq":  # never all G x T x K logits at once; one K-way head per
            K, kk = self.gen.codebook_size, self.gen_merge ** 2  # code of a block
            codes = target.view(-1, kk)  # (G S, k^2)
            image_sum = sum(linear_cross_entropy_sum(
                h_img, self.image_head.weight[j * K:(j + 1) * K],
                self.image_head.bias[j * K:(j + 1) * K], codes[:, j]) for j in range(kk))
        else:
            image_sum = cosine_loss(self.predict_image(h_img), target.flatten(0, 1)).sum()
        return LossParts(text_sum, int(supervised.sum()), image_sum,
                         batch.gen_rows.numel() * T, self.alpha)


# ---------------------------------------------------------------------- building

LLM_CONFIGS = {"llama": LlamaConfig, "qwen2": Qwen2Config}


def build_lm(cfg: Config, vocab_size: int) -> PreTrainedModel:
    """``model.llm``: random init from a small config, or ``from_pretrained(path)``."""
    llm = cfg.model.llm
    if llm.source == "config":
        conf = LLM_CONFIGS[llm.arch](
            vocab_size=vocab_size, hidden_size=llm.hidden_size, num_hidden_layers=llm.layers,
            num_attention_heads=llm.heads, num_key_value_heads=llm.kv_heads,
            intermediate_size=llm.intermediate_size, max_position_embeddings=llm.max_length,
            tie_word_embeddings=False)
        return AutoModelForCausalLM.from_config(conf, attn_implementation=llm.attention)
    # LoRA leaves the base frozen, so it can live in bf16; full training keeps fp32 masters.
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # accelerate's pick
    bf16 = resolve(cfg.train.precision, device)[0] == "bf16"
    dtype = torch.bfloat16 if bf16 and cfg.model.lora.enabled else torch.float32
    try:
        lm = AutoModelForCausalLM.from_pretrained(llm.path, dtype=dtype,
                                                  attn_implementation=llm.attention)
    except (OSError, ValueError) as e:  # a missing dir, or a hub id that cannot be fetched
        raise FileNotFoundError(f"model.llm.path: cannot load {llm.path!r}: {e}") from None
    if lm.get_input_embeddings().num_embeddings < vocab_size:
        raise ConfigError(f"model.llm.path: {llm.path} has "
                          f"{lm.get_input_embeddings().num_embeddings} token embeddings, the "
                          f"tokenizer {vocab_size}")
    return lm


def apply_lora(lm: PreTrainedModel, cfg: Config) -> nn.Module:
    """LoRA on every linear layer of the LLM except lm_head; everything else in it frozen."""
    import peft

    lora = cfg.model.lora
    conf = peft.LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                           target_modules="all-linear")  # peft leaves out the output layer
    return peft.get_peft_model(lm, conf)


def check_arch(run: RunSpec) -> None:
    if run.arch not in get_args(Arch):
        raise ConfigError(f"run {run.name}: unknown architecture {run.arch!r}; allowed: "
                          + ", ".join(get_args(Arch)))


def build_model(cfg: Config, run: RunSpec, ctx: ModelContext,
                lm: PreTrainedModel | None = None) -> UnifiedVLM:
    """The model of one run: LLM (+ LoRA), adapters and head, random init where not loaded.

    Seed torch before calling: the initial weights come from its global generator. ``lm``:
    an LLM made elsewhere instead of ``model.llm``'s (the benchmarks' paper-shape LLM).
    """
    check_arch(run)
    for role, space, name in (("und", ctx.und, run.und_space), ("gen", ctx.gen, run.gen_space)):
        if space.name != name:
            raise ConfigError(f"run {run.name}: {role} space is {name!r}, context has "
                              f"{space.name!r}")
    adapter_kind = {"siglip": cfg.model.siglip_adapter, "vq": cfg.model.vq_adapter,
                    "clip": cfg.model.clip_adapter}
    alpha = {"continuous": cfg.model.alpha_continuous, "vq": cfg.model.alpha_vq}
    lm = build_lm(cfg, len(ctx.tokenizer)) if lm is None else lm
    if cfg.model.lora.enabled:
        lm = apply_lora(lm, cfg)
    return UnifiedVLM(lm, ctx, und_adapter=adapter_kind[ctx.und.name],
                      gen_adapter=adapter_kind[ctx.gen.name], detach=run.detach,
                      alpha=alpha[ctx.gen.kind])


def saved_keys(model: UnifiedVLM, lora: bool) -> list[str]:
    """State-dict keys a checkpoint holds: everything at full training; with LoRA only the
    trained tensors (LoRA weights, adapters, head), since the base comes from model.llm.path."""
    if lora:
        return [n for n, p in model.named_parameters() if p.requires_grad]
    return list(model.state_dict())
