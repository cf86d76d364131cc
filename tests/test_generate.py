"""Inference: KV-cached batched generation equals the paper's uncached one-at-a-time loop."""

from __future__ import annotations

import pytest
import torch

from test_model import GRID_SPACES, setup, tiny_cfg
from uvlm.model import generate as gen_mod
from uvlm.model.batching import Prompt
from uvlm.model.generate import generate_images, generate_text, reference_images


@pytest.fixture(scope="module")
def recs():
    from uvlm.model import synthetic

    return synthetic.records(6, seed=2)


@pytest.fixture(scope="module")
def tok(recs):
    from uvlm.model import synthetic

    return synthetic.tokenizer(synthetic.texts(recs), 300)


def _gen_prefixes(tpl, recs):
    # prompts of different lengths, so the batch is left-padded
    return [tpl.prompt(r).ids + tpl.marker for r in recs if r["task"] == "generation"]


@pytest.mark.parametrize("arch,attention,merge", [
    ("siglip-vq", "sdpa", 1), ("vq-siglip", "sdpa", 1), ("vq-vq", "sdpa", 1),
    ("vq-vq", "eager", 1), ("siglip-vq", "sdpa", 2)])
def test_cached_batched_images_equal_reference_loop(tok, recs, arch, attention, merge):
    model, tpl, *_ = setup(tok, recs, arch, cfg=tiny_cfg(**{"model.llm.attention": attention}),
                           spaces=GRID_SPACES, merge=merge)
    prefixes = _gen_prefixes(tpl, recs)
    assert len({len(p) for p in prefixes}) > 1
    batched = generate_images(model, tpl, prefixes)
    reference = torch.stack([reference_images(model, p) for p in prefixes])
    singles = torch.cat([generate_images(model, tpl, [p]) for p in prefixes])
    T = model.gen.num_tokens
    if model.gen.kind == "vq":
        assert batched.shape == (len(prefixes), T) and batched.dtype == torch.long
        assert torch.equal(batched, reference) and torch.equal(batched, singles)
    else:
        assert batched.shape == (len(prefixes), T, model.gen.feature_dim)
        assert torch.allclose(batched, reference, atol=1e-5)
        assert torch.allclose(batched, singles, atol=1e-5)


def _greedy_uncached(model, tpl, prompt: Prompt, image, n: int) -> list[int]:
    """Text decoding without cache: the whole sequence through the model for every token."""
    ids = list(prompt.ids)
    for _ in range(n):
        x = model.embed_tokens(torch.tensor([ids]))
        und = model.embed_und(image[None])
        x[0, prompt.slot: prompt.slot + und.shape[1]] = und[0]
        h, _ = model.hidden(x, torch.ones(1, len(ids), dtype=torch.bool))
        token = int(model.text_logits(h[0, -1]).argmax())
        if token == tpl.eos:
            break
        ids.append(token)
    return ids[len(prompt.ids):]


@pytest.mark.parametrize("arch,attention", [("siglip-vq", "sdpa"), ("vq-vq", "eager")])
def test_text_batched_cached_equals_single_uncached(tok, recs, arch, attention):
    model, tpl, data, *_ = setup(tok, recs, arch,
                                 cfg=tiny_cfg(**{"model.llm.attention": attention}))
    und = [i for i, r in enumerate(recs) if r["task"] != "generation"]
    prompts = [tpl.prompt(recs[i], turn=0) for i in und]
    images = data.und_table[data.row[und]]
    # a later turn too: the prompt then carries the earlier answer
    multi = [i for i in und if len(recs[i]["conversations"]) > 2]
    if multi:
        prompts.append(tpl.prompt(recs[multi[0]], turn=1))
        images = torch.cat([images, data.und_table[data.row[multi[:1]]]])
    with torch.no_grad():
        batched = generate_text(model, tpl, prompts, 10, images=images)
        for p, img, out in zip(prompts, images, batched, strict=True):
            assert out == _greedy_uncached(model, tpl, p, img, 10)
            assert generate_text(model, tpl, [p], 10, images=img[None])[0] == out


def test_draw_generates_images_only_after_the_marker(tok, recs, monkeypatch):
    model, tpl, *_ = setup(tok, recs, "siglip-vq")
    prompts = [tpl.prompt(r) for r in recs if r["task"] == "generation"][:2]
    answers = [tok("Sure", add_special_tokens=False)["input_ids"] + tpl.marker, [5, 6]]
    monkeypatch.setattr(gen_mod, "generate_text", lambda *a, **k: answers)
    got, images, drew = gen_mod.draw(model, tpl, prompts, 8)
    assert got == answers and drew.tolist() == [True, False]
    want = generate_images(model, tpl, [prompts[0].ids + answers[0]])
    assert torch.equal(images[0], want[0]) and not images[1].any()


def test_generate_text_stops_at_marker(tok, recs):
    model, tpl, *_ = setup(tok, recs, "siglip-vq")
    prompt = [tpl.prompt(r) for r in recs if r["task"] == "generation"][0]
    # make the LM head prefer the marker tokens in turn: bias each step's argmax
    seq = tpl.marker + [tpl.eos]
    state = {"t": 0}
    head = model.lm.get_output_embeddings()

    def forced(module, inputs, out):
        out = out.clone()
        out[..., seq[min(state["t"], len(seq) - 1)]] += 1e4
        state["t"] += 1
        return out

    head.register_forward_hook(forced)
    assert generate_text(model, tpl, [prompt], 8, stop_at_marker=True)[0] == tpl.marker
    state["t"] = 0
    assert generate_text(model, tpl, [prompt], 8)[0] == tpl.marker  # then </s> ends it
