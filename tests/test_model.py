"""UnifiedVLM: sequence layout, loss masks, heads, adapters, checkpoints, bad input.

Self-contained: a tiny BPE tokenizer, synthetic records and random features stand in for the
data and encoders stages (uvlm.model.synthetic).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

from uvlm.config import ConfigError, from_dict
from uvlm.encoders.space import Space
from uvlm.grid import Run, parse_run
from uvlm.model import synthetic
from uvlm.model.batching import Batcher, Template
from uvlm.model.checkpoint import load_trained, load_weights, save_weights, write_checkpoint
from uvlm.model.unified import (
    ModelContext,
    build_model,
    cosine_loss,
    from_blocks,
    merge_blocks,
    saved_keys,
    to_blocks,
)

# different T and D per space, so a slot or shape mix-up cannot go unnoticed
SPACES = {"siglip": Space("siglip", "continuous", 4, 12),
          "vq": Space("vq", "vq", 5, 3, 17),
          "clip": Space("clip", "continuous", 6, 10)}
ARCHS = ["siglip-siglip", "siglip-vq", "vq-siglip", "vq-vq", "clip-clip", "clip-vq"]
N_IMAGES = 4


def tiny_cfg(**over):
    raw = {"name": "t", "model": {
        "llm": {"source": "config", "arch": "llama", "hidden_size": 32, "layers": 1, "heads": 2,
                "kv_heads": 2, "intermediate_size": 64, "max_length": 256},
        "lora": {"enabled": False}, "system_prompt": ""},
        "train": {"precision": "fp32", "grad_checkpointing": False}}
    for key, value in over.items():
        node = raw
        *path, last = key.split(".")
        for p in path:
            node = node.setdefault(p, {})
        node[last] = value
    return from_dict(raw)


@pytest.fixture(scope="module")
def recs():
    return synthetic.records(N_IMAGES, seed=1)


@pytest.fixture(scope="module")
def tok(recs):
    return synthetic.tokenizer(synthetic.texts(recs), 300)


def make_ctx(tok, run: Run, affine=None, spaces=SPACES, merge=1) -> ModelContext:
    """``merge``: model.vq_merge, applied to the VQ spaces as ``load_context`` does."""
    und, gen = spaces[run.und_space], spaces[run.gen_space]
    codebook = torch.randn(17, 3, generator=torch.Generator().manual_seed(0))
    return ModelContext(tok, und, gen, codebook, affine, merge if und.kind == "vq" else 1,
                        merge if gen.kind == "vq" else 1)


def feats(run: Run, n_images: int, spaces=SPACES):
    return {s: {"train": synthetic.features(spaces[s], n_images, split="train")}
            for s in {run.und_space, run.gen_space}}


def setup(tok, recs, arch="siglip-vq", cfg=None, detach=False, affine=None, seed=0,
          spaces=SPACES, merge=1):
    cfg = tiny_cfg() if cfg is None else cfg
    run = Run(arch, "mixed", detach=detach)
    ctx = make_ctx(tok, run, affine, spaces, merge)
    torch.manual_seed(seed)
    model = build_model(cfg, run, ctx)
    tpl = Template.of(cfg, ctx)
    n_images = 1 + max(r["image_id"] for r in recs)
    data = Batcher(tpl.encode(recs), feats(run, n_images, spaces), ctx.und, ctx.gen)
    return model, tpl, data, cfg, run, ctx


def supervised_text(r: dict) -> str:
    answers = [t["value"] for t in r["conversations"][1::2]]
    return "".join(f" {a}</s>" for a in answers)


@pytest.mark.parametrize("arch", ARCHS)
def test_layout_loss_masks_and_shapes(tok, recs, arch):
    model, tpl, data, _, _, ctx = setup(tok, recs, arch)
    enc = data.enc
    for i, r in enumerate(recs):
        ids, sup, n = enc.ids[i].long(), enc.targets[i], int(enc.length[i])
        # text loss only on the assistant pieces: answers, the <image> marker, </s>
        assert tok.decode(ids[sup]) == supervised_text(r)
        assert not sup[n:].any()
        slot, gen = int(enc.slot[i]), bool(enc.gen[i])
        T = (ctx.gen if gen else ctx.und).num_tokens
        assert (ids[slot: slot + T] == tpl.pad).all() and not sup[slot: slot + T].any()
        if gen:  # the slots follow the marker and precede the closing </s>
            assert ids[slot - len(tpl.marker): slot].tolist() == tpl.marker
            assert ids[slot + T] == tpl.eos and slot + T + 1 == n
        else:  # the slots replace <image> at the start of the first human turn
            assert tok.decode(ids[:slot]) == "<s>USER: "
            assert tok.decode(ids[slot + T: slot + T + 1]).startswith("\n")
    batch = data.batch(torch.arange(len(data)))
    parts = model(batch)
    assert parts.text_tokens == int(enc.targets[:, 1:].sum())
    assert parts.image_tokens == int(enc.gen.sum()) * ctx.gen.num_tokens
    assert batch.und_input.shape[:2] == (int((~enc.gen).sum()), ctx.und.num_tokens)
    assert torch.isfinite(parts.loss())
    out = ctx.gen.feature_dim if ctx.gen.kind == "continuous" else ctx.gen.codebook_size
    assert model.image_head.out_features == out
    assert model.alpha == {"continuous": 1.0, "vq": 0.2}[ctx.gen.kind]


def test_cosine_loss():
    x = torch.randn(2, 3, 5)
    assert torch.allclose(cosine_loss(x, 2 * x), torch.zeros(2, 3), atol=1e-6)
    assert torch.allclose(cosine_loss(x, -x), torch.full((2, 3), 2.0), atol=1e-6)


def record_hidden(model, monkeypatch) -> list[torch.Tensor]:
    """The last hidden states of each forward, to read image predictions off (the VQ loss
    never builds all the logits: ``uvlm.model.linear_ce``)."""
    preds, hidden = [], model.hidden

    def spy(embeds, attention, *args, **kw):
        out = hidden(embeds, attention, *args, **kw)
        preds.append(out[0].detach())
        return out

    monkeypatch.setattr(model, "hidden", spy)
    return preds


def _predict(model, batch, h):
    pos = batch.gen_slot[:, None] - 1 + torch.arange(model.gen.num_tokens)
    return model.predict_image(h[batch.gen_rows[:, None], pos])


def test_vq_image_loss_is_the_cross_entropy_of_the_head(tok, recs, monkeypatch):
    """The model's chunked VQ loss equals F.cross_entropy over the head's logits."""
    model, _, data, *_ = setup(tok, recs, "siglip-vq")
    batch = data.batch(torch.arange(len(data)))
    hidden = record_hidden(model, monkeypatch)
    parts = model(batch)
    logits = _predict(model, batch, hidden[0])
    want = F.cross_entropy(logits.flatten(0, 1), batch.gen_target.flatten(), reduction="sum")
    assert parts.image_tokens == batch.gen_target.numel() > 0
    assert torch.allclose(parts.image_sum, want, rtol=1e-5)


@pytest.mark.parametrize("arch", ["siglip-siglip", "vq-vq"])
def test_image_token_i_sees_only_tokens_before_i(tok, recs, arch, monkeypatch):
    model, _, data, *_ = setup(tok, recs, arch)
    batch = data.batch(data.enc.gen.nonzero()[:1, 0])  # one generation record
    hidden = record_hidden(model, monkeypatch)
    model(batch)
    before = _predict(model, batch, hidden[0])
    j = 2
    if model.gen.kind == "vq":
        batch.gen_target[0, j] = (batch.gen_target[0, j] + 1) % model.gen.codebook_size
    else:
        batch.gen_target[0, j] += 1.0
    model(batch)
    after = _predict(model, batch, hidden[1])
    assert torch.equal(before[:, : j + 1], after[:, : j + 1])  # tokens 0..j: unchanged
    assert not torch.allclose(before[:, j + 1], after[:, j + 1])  # token j+1 reads slot j


def _grads(module):
    return [p.grad for p in module.parameters()]


@pytest.mark.parametrize("arch,detach,shared", [
    ("siglip-siglip", False, True), ("vq-vq", False, True), ("siglip-siglip", True, False),
    ("vq-vq", True, False), ("siglip-vq", False, False), ("clip-clip", True, False)])
def test_generation_adapter_shared_or_separate(tok, recs, arch, detach, shared):
    model, _, data, *_ = setup(tok, recs, arch, detach=detach)
    assert (model.gen_adapter is None) == shared
    if not shared:
        a = {p.data_ptr() for p in model.input_adapter.parameters()}
        b = {p.data_ptr() for p in model.gen_adapter.parameters()}
        assert a.isdisjoint(b)
    # the image loss of generation records trains the adapter that feeds images back
    model(data.batch(data.enc.gen.nonzero()[:, 0])).image_sum.backward()
    fed_back = model.input_adapter if shared else model.gen_adapter
    assert all(g is not None and g.abs().sum() > 0 for g in _grads(fed_back))
    if not shared:
        assert all(g is None or g.abs().sum() == 0 for g in _grads(model.input_adapter))


@pytest.mark.parametrize("arch", ["siglip-vq", "vq-siglip"])
def test_padded_batch_loss_is_token_weighted_mean_of_samples(tok, recs, arch):
    """Text CE is averaged over all supervised tokens of the batch (token-weighted), the image
    loss over all its image tokens; so batch loss = sum_i n_i l_i / sum_i n_i for text."""
    model, _, data, *_ = setup(tok, recs, arch)
    idx = torch.arange(len(data))
    whole = model(data.batch(idx))
    singles = [model(data.batch(i[None])) for i in idx]
    text = sum(s.text_sum for s in singles) / sum(s.text_tokens for s in singles)
    gens = [s for s in singles if s.image_tokens]
    image = torch.stack([s.image_sum / s.image_tokens for s in gens]).mean()
    assert whole.text_tokens == sum(s.text_tokens for s in singles)
    assert torch.allclose(whole.loss(), text + whole.alpha * image, rtol=1e-5)
    # sharded: parts normalised by the whole batch's counts add up to the batch loss
    halves = [model(data.batch(h)) for h in idx.chunk(2)]
    total = sum(h.loss(whole.text_tokens, whole.image_tokens) for h in halves)
    assert torch.allclose(total, whole.loss(), rtol=1e-5)


def test_affine_distorts_understanding_inputs_only(tok, recs):
    A, b = torch.randn(12, 12), torch.randn(12)
    plain, *_ = setup(tok, recs, "siglip-siglip")
    bent, *_ = setup(tok, recs, "siglip-siglip", affine=(A, b))
    x = torch.randn(2, 4, 12)
    assert torch.allclose(bent.embed_und(x), plain.input_adapter(x @ A + b), atol=1e-5)
    assert torch.allclose(bent.embed_gen(x), plain.embed_gen(x))
    assert "affine_A" not in bent.state_dict()  # fixed input, reloaded from encoders


def test_merge_blocks_puts_each_block_in_one_token():
    x = torch.arange(16.0).view(1, 16, 1)  # a 4 x 4 grid, row-major
    assert merge_blocks(x, 2)[0].tolist() == [[0, 1, 4, 5], [2, 3, 6, 7],
                                              [8, 9, 12, 13], [10, 11, 14, 15]]
    assert merge_blocks(x, 4)[0].tolist() == [list(range(16))]
    y = torch.randn(2, 16, 3)
    assert torch.equal(merge_blocks(y, 1), y)
    assert torch.equal(merge_blocks(y, 2)[:, 0, 3:6], y[:, 1])  # block 0 = tokens 0, 1, 4, 5


# 4 x 4 codes, so 2 x 2 blocks of them fill 4 slots
GRID_SPACES = SPACES | {"vq": Space("vq", "vq", 16, 3, 17)}


def test_blocks_order_codes_block_by_block_and_back():
    codes = torch.arange(16).view(1, 16)  # a 4 x 4 grid, row-major
    assert to_blocks(codes, 2)[0].tolist() == [0, 1, 4, 5, 2, 3, 6, 7,
                                               8, 9, 12, 13, 10, 11, 14, 15]
    assert torch.equal(to_blocks(codes, 1), codes)
    x = torch.randint(100, (3, 64))
    for k in (1, 2, 4, 8):
        assert torch.equal(from_blocks(to_blocks(x, k), k), x)


def test_merged_vq_reads_and_writes_blocks(tok, recs):
    model, tpl, data, _, _, ctx = setup(tok, recs, "vq-vq", spaces=GRID_SPACES, merge=2)
    assert ctx.und_tokens == 4 and ctx.gen_tokens == 4 and ctx.gen.num_tokens == 16
    enc = data.enc
    und = (~enc.gen).nonzero()[0, 0]
    slot = int(enc.slot[und])
    assert tok.decode(enc.ids[und, slot + 4: slot + 5].long()).startswith("\n")
    gen = enc.gen.nonzero()[0, 0]
    slot, n = int(enc.slot[gen]), int(enc.length[gen])
    assert slot + 4 + 1 == n  # 4 slots, then </s>
    codes = torch.randint(17, (2, 16))
    x = model.codebook[codes]
    assert torch.allclose(model.embed_und(codes), model.input_adapter(merge_blocks(x, 2)))
    # a code changes the slot of its block only: code 6 is in block 1 (columns 2-3, rows 0-1)
    other = codes.clone()
    other[:, 6] = (codes[:, 6] + 1) % 17
    changed = (model.embed_und(other) != model.embed_und(codes)).any(-1)
    assert changed.tolist() == [[False, True, False, False]] * 2
    # both paths read 2 x 2 blocks of the same space: one shared adapter, as with k = 1;
    # the head has one 17-way output per code of a block
    assert model.gen_adapter is None and model.input_adapter.in_features == 12
    assert torch.allclose(model.embed_gen(to_blocks(codes, 2)), model.embed_und(codes))
    assert model.image_head.out_features == 4 * 17

    # the image loss is the CE of each code of each block, from the hidden state of the slot
    # before the block (block 0 from the marker), summed over the codes
    batch = data.batch(gen[None])
    parts = model(batch)
    assert parts.image_tokens == 16 and torch.isfinite(parts.loss())
    target = to_blocks(batch.gen_target, 2)  # (1, 16)
    e = model.embed_tokens(batch.ids)
    e[0, slot: slot + 4] = model.embed_gen(target)[0]
    h, _ = model.hidden(e, batch.attention)
    logits = model.predict_image(h[0, slot - 1: slot + 3]).view(4, 4, 17)  # (slot, code, K)
    expected = F.cross_entropy(logits.flatten(0, 1), target[0], reduction="sum")
    assert torch.allclose(parts.image_sum, expected, rtol=1e-4)
    parts.loss().backward()
    assert model.input_adapter.weight.grad.abs().sum() > 0


def test_merge_needs_a_square_grid_it_divides(tok):
    run = Run("vq-vq", "mixed")
    with pytest.raises(ValueError, match="5 tokens are not a square grid"):
        build_model(tiny_cfg(), run, make_ctx(tok, run, merge=2))
    with pytest.raises(ValueError, match="16 tokens are not a square grid"):
        build_model(tiny_cfg(), run, make_ctx(tok, run, spaces=GRID_SPACES, merge=3))


def test_checkpoint_round_trip(tok, recs, tmp_path):
    model, _, data, cfg, run, ctx = setup(tok, recs, "vq-vq")
    batch = data.batch(torch.arange(len(data)))
    write_checkpoint(tmp_path / "ckpt01", model, cfg, run, {"seed": 0, "step": 1})
    assert "codebook" not in saved_keys(model, lora=False)  # never stored with the weights
    loaded, cfg2, run2, _ = load_trained(tmp_path / "ckpt01", ctx)
    assert run2 == run and cfg2 == cfg
    assert torch.equal(loaded(batch).loss(), model(batch).loss())


def test_bf16_checkpoint_is_the_model_rounded_to_bf16(tok, recs, tmp_path):
    from safetensors.torch import load_file

    cfg = tiny_cfg(**{"train.checkpoint_dtype": "bfloat16"})
    model, _, data, cfg, run, ctx = setup(tok, recs, "siglip-vq", cfg=cfg)
    batch = data.batch(torch.arange(len(data)))
    write_checkpoint(tmp_path / "bf16", model, cfg, run, {"seed": 0})
    write_checkpoint(tmp_path / "fp32", model, tiny_cfg(), run, {"seed": 0})
    on_disk = load_file(str(tmp_path / "bf16" / "model.safetensors"))
    assert on_disk.keys() == set(saved_keys(model, lora=False))
    assert {t.dtype for t in on_disk.values()} == {torch.bfloat16}
    assert {t.dtype for t in load_file(str(tmp_path / "fp32" / "model.safetensors")).values()} \
        == {torch.float32}
    # a float32 model loads it cast: the same outputs as the weights rounded to bf16
    loaded, *_ = load_trained(tmp_path / "bf16", ctx)
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    rounded, *_ = setup(tok, recs, "siglip-vq", seed=1)
    rounded.load_state_dict(model.state_dict())
    with torch.no_grad():
        for p in rounded.parameters():
            p.copy_(p.to(torch.bfloat16))
        assert torch.equal(loaded(batch).loss(), rounded(batch).loss())
        assert not torch.equal(loaded(batch).loss(), model(batch).loss())
    # ... and a float32 file goes into a bfloat16 model the other way round
    half = setup(tok, recs, "siglip-vq", seed=1)[0].to(torch.bfloat16)
    load_weights(half, tmp_path / "fp32" / "model.safetensors", lora=False)
    state = half.state_dict()
    assert all(torch.equal(state[k], on_disk[k]) for k in on_disk)


def _save_llm(path, arch):
    conf = {"llama": LlamaConfig, "qwen2": Qwen2Config}[arch](
        vocab_size=300, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, intermediate_size=64, tie_word_embeddings=False)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(conf).save_pretrained(path)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_paper_path_pretrained_lora_round_trip(tok, recs, tmp_path, arch):
    _save_llm(tmp_path / "llm", arch)
    cfg = tiny_cfg(**{"model.llm.source": "pretrained", "model.llm.path": str(tmp_path / "llm"),
                      "model.lora.enabled": True, "model.lora.r": 4, "model.lora.alpha": 8,
                      "model.lora.dropout": 0.0, "train.precision": "bf16"})
    model, _, data, cfg, run, ctx = setup(tok, recs, "siglip-vq", cfg=cfg)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or not n.startswith("lm.") for n in trainable)
    assert {"input_adapter.0.weight", "gen_adapter.weight", "image_head.weight"} <= trainable
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert any("embed_tokens" in n for n in frozen) and any("lm_head" in n for n in frozen)
    assert not any("lm_head" in n for n in trainable)  # LoRA leaves the output layer alone
    assert model.lm.get_input_embeddings().weight.dtype == torch.bfloat16  # frozen base
    batch = data.batch(torch.arange(len(data)))
    model(batch).loss().backward()  # give LoRA B non-zero values
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p -= 0.1 * p.grad.sign()
    write_checkpoint(tmp_path / "ckpt", model, cfg, run, {"seed": 0})
    assert set(load_file_keys(tmp_path / "ckpt" / "model.safetensors")) == trainable
    loaded, *_ = load_trained(tmp_path / "ckpt", ctx)
    with torch.no_grad():
        assert torch.equal(loaded(batch).loss(), model(batch).loss())


def load_file_keys(path):
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return list(f.keys())


# ---------------------------------------------------------------------- bad input

def test_unknown_architecture(tok, recs):
    with pytest.raises(ConfigError, match="unknown architecture 'foo-vq'"):
        build_model(tiny_cfg(), parse_run("foo-vq_mixed"), make_ctx(tok, Run("vq-vq", "mixed")))


def test_missing_llm_path(tok, tmp_path):
    cfg = tiny_cfg(**{"model.llm.source": "pretrained", "model.llm.path": str(tmp_path / "nope")})
    with pytest.raises(FileNotFoundError, match="model.llm.path.*nope"):
        build_model(cfg, Run("vq-vq", "mixed"), make_ctx(tok, Run("vq-vq", "mixed")))


def test_checkpoint_errors_name_file_and_key(tok, recs, tmp_path):
    model, *_ = setup(tok, recs, "siglip-vq")
    other, *_ = setup(tok, recs, "siglip-vq", cfg=tiny_cfg(**{"model.llm.hidden_size": 48}))
    save_weights(other, tmp_path / "w.safetensors", lora=False)
    with pytest.raises(ValueError, match=r"w\.safetensors: key '[^']+' has shape"):
        load_weights(model, tmp_path / "w.safetensors", lora=False)
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        load_weights(model, tmp_path / "missing.safetensors", lora=False)
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="bad.safetensors"):
        load_weights(model, tmp_path / "bad.safetensors", lora=False)
    vq_vq, *_ = setup(tok, recs, "vq-vq")
    save_weights(vq_vq, tmp_path / "vqvq.safetensors", lora=False)
    with pytest.raises(ValueError, match=r"vqvq\.safetensors: key 'input_adapter\.0\.weight' "
                                         r"is missing"):
        load_weights(model, tmp_path / "vqvq.safetensors", lora=False)


def test_codebook_shape_checked(tok):
    run = Run("vq-vq", "mixed")
    ctx = ModelContext(tok, SPACES["vq"], SPACES["vq"], torch.randn(16, 3))
    with pytest.raises(ValueError, match=r"codebook of shape \(17, 3\) needed, got \(16, 3\)"):
        build_model(tiny_cfg(), run, ctx)


def test_bad_records_and_features_are_named(tok, recs):
    tpl = Template(tok, "", 4, 5, 256)
    gen = next(r for r in recs if r["task"] == "generation")
    broken = {**gen, "conversations": [gen["conversations"][0],
                                       {"from": "gpt", "value": "no image here"}]}
    with pytest.raises(ValueError, match=f"record {gen['id']}"):
        tpl.encode([broken])
    with pytest.raises(ValueError, match="exceed model.llm.max_length=20"):
        Template(tok, "", 4, 5, 20).encode(recs)
    enc = tpl.encode(recs)
    bad = {"siglip": {"train": torch.randn(N_IMAGES, 4, 11)},
           "vq": {"train": torch.randint(17, (N_IMAGES, 5))}}
    with pytest.raises(ValueError, match="features siglip_train: shape"):
        Batcher(enc, bad, SPACES["siglip"], SPACES["vq"])
    with pytest.raises(FileNotFoundError, match="space 'vq', split 'train'"):
        Batcher(enc, {"siglip": {"train": torch.randn(N_IMAGES, 4, 12)}}, SPACES["siglip"],
                SPACES["vq"])
    short = {"siglip": {"train": torch.randn(2, 4, 12)}, "vq": bad["vq"]}
    with pytest.raises(ValueError, match="beyond the 2 rows of features siglip_train"):
        Batcher(enc, short, SPACES["siglip"], SPACES["vq"])
