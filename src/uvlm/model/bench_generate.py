"""`python -m uvlm bench-generate --config C`: cached batched image generation vs the paper's.

The paper's evaluation (docs/paper.md §2.1) generates one image at a time and runs the whole
sequence through the model for every new image token. ``uvlm.model.generate`` keeps a KV
cache and generates a batch at once. Both run here on the same random-init tiny model (a
Llama of --layers x --hidden, a VQ head over the config's codebook, --tokens image tokens)
from the same generation prompts; the tokens must be identical. Prints images/s of the
reference loop, of the cache alone (batch 1) and of cached batches, and the ratios; writes
``R/bench/generate.json``.
"""

from __future__ import annotations

import time

import torch

from uvlm.config import command_parser, load
from uvlm.grid import parse_run
from uvlm.model import synthetic
from uvlm.model.batching import Template
from uvlm.model.generate import generate_images, reference_images
from uvlm.model.unified import ModelContext, Space, build_model
from uvlm.utils import write_json


def _rate(fn, n_images: int) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return n_images / (time.perf_counter() - t), out


def main(argv: list[str]) -> None:
    p = command_parser("uvlm bench-generate", __doc__.split("\n")[0])
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--tokens", type=int, default=256, help="image tokens per image")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--images", type=int, default=64, help="images for the cached generator")
    p.add_argument("--reference-images", type=int, default=3,
                   help="images for the (slow) reference loop")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    heads = max(args.hidden // 64, 1)
    cfg = load(args.config, args.set + [
        "model.llm.source=config", "model.llm.arch=llama", f"model.llm.layers={args.layers}",
        f"model.llm.hidden_size={args.hidden}", f"model.llm.heads={heads}",
        f"model.llm.kv_heads={heads}", f"model.llm.intermediate_size={args.hidden * 8 // 3}",
        f"model.llm.max_length={args.tokens + 256}", "model.lora.enabled=false"])
    run = parse_run("vq-vq_gen")
    records = [r for r in synthetic.records(args.images, cfg.seed) if r["task"] == "generation"]
    vq = cfg.encoders.vq
    space = Space("vq", "vq", args.tokens, vq.codebook_dim, vq.codebook_size)
    tok = synthetic.tokenizer(synthetic.texts(records), cfg.encoders.tokenizer.vocab_size)
    g = torch.Generator().manual_seed(cfg.seed)
    ctx = ModelContext(tok, space, space, torch.randn(vq.codebook_size, vq.codebook_dim,
                                                      generator=g))
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, run, ctx).eval()
    tpl = Template(tok, cfg.model.system_prompt, args.tokens, args.tokens,
                   cfg.model.llm.max_length)
    prefixes = [tpl.prompt(r).ids + tpl.marker for r in records]
    refs = prefixes[: args.reference_images]

    with torch.autocast("cpu", torch.bfloat16, enabled=args.precision == "bf16"):
        reference, ref_codes = _rate(lambda: [reference_images(model, q) for q in refs],
                                     len(refs))
        cache_only, single = _rate(lambda: [generate_images(model, tpl, [q]) for q in refs],
                                   len(refs))
        batched, codes = _rate(lambda: torch.cat([
            generate_images(model, tpl, prefixes[i: i + args.batch])
            for i in range(0, len(prefixes), args.batch)]), len(prefixes))
    same = bool(torch.equal(torch.stack(ref_codes), codes[: len(refs)])
                and torch.equal(torch.cat(single), codes[: len(refs)]))
    result = {"layers": args.layers, "hidden": args.hidden, "image_tokens": args.tokens,
              "codebook": vq.codebook_size, "batch": args.batch, "precision": args.precision,
              "threads": args.threads, "reference_images_per_s": reference,
              "cached_batch1_images_per_s": cache_only, "cached_batched_images_per_s": batched,
              "speedup_cache": cache_only / reference, "speedup": batched / reference,
              "identical_tokens": same}
    print(f"{args.layers}-layer {args.hidden}-wide Llama, {args.tokens} image tokens, "
          f"{args.precision}, {args.threads} thread(s)")
    rows = [("reference (batch 1, no cache)", reference, f"{len(refs)} images"),
            ("KV cache, batch 1", cache_only, f"{cache_only / reference:.1f}x"),
            (f"KV cache, batch {args.batch}", batched,
             f"{batched / reference:.1f}x, {len(prefixes)} images")]
    for label, rate, note in rows:
        print(f"{label + ':':<32}{rate:8.3f} images/s ({note})")
    print(f"identical tokens: {same}")
    write_json(cfg.root / "bench" / "generate.json", result)
    if not same:
        raise SystemExit("bench-generate: cached and reference tokens differ")
