"""`python -m uvlm bench-generate --config C`: cached batched image generation vs the paper's.

The paper's evaluation (docs/paper.md §2.1) generates one image at a time and runs the whole
sequence through the model for every new image token. ``uvlm.model.generate`` keeps a KV
cache and generates a batch at once. Both run here on the same random-init tiny model (a
Llama of --layers x --hidden, a VQ head over the config's codebook, --tokens image tokens)
from the same generation prompts; the tokens must be identical. Prints images/s of the
reference loop, of the cache alone (batch 1) and of cached batches, and the ratios, the
cached generator's image tokens/s and model FLOP utilisation (formula:
``uvlm.model.flops``); writes ``R/bench/generate.json``.

``--device cuda``: the paper-shape model instead of the tiny Llama: Vicuna-7B's architecture
with random bf16 weights (nothing downloaded), the config's LoRA (``config/paper.yaml``:
r=128, unmerged, as evaluation runs it) and VQ codebook (16,384 codes), bf16 autocast, and
the peak GPU memory. On a GPU, batched bf16 kernels do not give bit-identical argmaxes, so
there the share of identical tokens is reported instead of required.
"""

from __future__ import annotations

import time

import torch

from uvlm import paths
from uvlm.cli import command_parser
from uvlm.config import load
from uvlm.device import require_cuda
from uvlm.encoders.space import Space
from uvlm.grid import parse_run
from uvlm.model import synthetic
from uvlm.model.batching import Template
from uvlm.model.flops import (
    GENERATE_FORMULA,
    VICUNA_7B,
    generate_flops_per_token,
    paper_lm,
    param_counts,
    peak_tflops,
)
from uvlm.model.generate import generate_images, reference_images
from uvlm.model.unified import ModelContext, build_model
from uvlm.precision import cpu_model
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
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="cuda: the paper-shape model (Vicuna-7B, random weights) on a GPU; "
                        "--layers and --hidden then play no part")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="the device's peak TFLOP/s for the utilisation (default: the table "
                        "of uvlm.model.flops for known GPUs)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cuda = args.device == "cuda"
    if cuda:
        require_cuda("bench-generate --device cuda", "--device cuda", "leave out --device cuda")
        # room for the config's system prompt (vicuna's at paper scale) besides the image
        cfg = load(args.config, args.set + [f"model.llm.max_length={args.tokens + 1024}"])
        args.precision = "bf16"
    else:
        heads = max(args.hidden // 64, 1)
        cfg = load(args.config, args.set + [
            "model.llm.source=config", "model.llm.arch=llama",
            f"model.llm.layers={args.layers}", f"model.llm.hidden_size={args.hidden}",
            f"model.llm.heads={heads}", f"model.llm.kv_heads={heads}",
            f"model.llm.intermediate_size={args.hidden * 8 // 3}",
            f"model.llm.max_length={args.tokens + 256}", "model.lora.enabled=false"])
    device = torch.device(args.device)
    run = parse_run("vq-vq_gen")
    records = [r for r in synthetic.records(args.images, cfg.seed) if r["task"] == "generation"]
    vq = cfg.encoders.vq
    space = Space("vq", "vq", args.tokens, vq.codebook_dim, vq.codebook_size)
    tok = synthetic.tokenizer(synthetic.texts(records), cfg.encoders.tokenizer.vocab_size)
    g = torch.Generator().manual_seed(cfg.seed)
    # one slot per code (the paper's loop, whatever model.vq_merge says): --tokens need not be
    # a square grid
    ctx = ModelContext(tok, space, space, torch.randn(vq.codebook_size, vq.codebook_dim,
                                                      generator=g))
    torch.manual_seed(cfg.seed)
    with torch.device(device):
        model = build_model(cfg, run, ctx, lm=paper_lm(device) if cuda else None).eval()
    frozen, trainable = param_counts(model, model.lm.get_input_embeddings())
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    tpl = Template(tok, cfg.model.system_prompt, args.tokens, args.tokens,
                   cfg.model.llm.max_length)
    prefixes = [tpl.prompt(r).ids + tpl.marker for r in records]
    refs = prefixes[: args.reference_images]

    with torch.autocast(device.type, torch.bfloat16, enabled=args.precision == "bf16"):
        reference, ref_codes = _rate(lambda: [reference_images(model, q) for q in refs],
                                     len(refs))
        cache_only, single = _rate(lambda: [generate_images(model, tpl, [q]) for q in refs],
                                   len(refs))
        batched, codes = _rate(lambda: torch.cat([
            generate_images(model, tpl, prefixes[i: i + args.batch])
            for i in range(0, len(prefixes), args.batch)]), len(prefixes))
    ref_codes, single, codes = (torch.stack(ref_codes).cpu(), torch.cat(single).cpu(),
                                codes.cpu())
    same = bool(torch.equal(ref_codes, codes[: len(refs)])
                and torch.equal(single, codes[: len(refs)]))
    agree = float((ref_codes == codes[: len(refs)]).float().mean())
    name = torch.cuda.get_device_name() if cuda else cpu_model()
    peak = peak_tflops(name, args.peak_tflops)
    tokens_per_s = batched * args.tokens  # image tokens of the cached, batched generator
    tflops = tokens_per_s * generate_flops_per_token(frozen, trainable) / 1e12
    peak_gpu = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    if cuda:
        args.layers, args.hidden = VICUNA_7B["num_hidden_layers"], VICUNA_7B["hidden_size"]
    result = {"device": args.device, "name": name, "params": frozen + trainable,
              "lora": cfg.model.lora.enabled and cuda, "image_tokens_per_s": tokens_per_s,
              "model_tflops_per_s": tflops, "peak_tflops": peak,
              "mfu": tflops / peak if peak else None, "peak_gpu_mib": peak_gpu,
              "flop_formula": GENERATE_FORMULA, "identical_share": agree,
              "layers": args.layers, "hidden": args.hidden, "image_tokens": args.tokens,
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
    mfu = f"MFU {tflops / peak:.1%}" if peak else "MFU not computed (pass --peak-tflops)"
    memory = f", peak GPU memory {peak_gpu / 1024:,.1f} GiB" if cuda else ""
    print(f"cached batches: {tokens_per_s:,.0f} image tokens/s, {tflops:.3g} model TFLOP/s, "
          f"{mfu}{memory}; {GENERATE_FORMULA}, N = {frozen + trainable:,}; peak "
          f"{peak if peak else 'unknown'} TFLOP/s ({name})")
    print(f"identical tokens: {same} ({agree:.1%} of the reference loop's)")
    write_json(paths.bench_dir(cfg) / f"generate{'_cuda' if cuda else ''}.json", result)
    if not same and not cuda:
        raise SystemExit("bench-generate: cached and reference tokens differ")
