"""`python -m uvlm evaluate`: answer and score every checkpoint of one training run.

Per checkpoint ``ckptKK`` of ``R/runs/{run}/seed{s}/`` this writes, under
``R/eval/{run}/seed{s}/ckptKK/``:

* ``answers.jsonl``: one row per evaluated turn, with the authors' fields (``prompt``,
  ``groun_truth``, ``answer``, ``output_img_file``) so their scorer reads it, plus ours;
* ``images/*.png`` (VQ heads, decoded to pixels) or ``features/*.safetensors`` (continuous
  heads: the predicted output-space features; the paper has no pixel decoder for them);
* ``metrics.json``: VQA (official and full protocols), captions, generation (judge
  accuracy, FID, feature cosine and retrieval), each with bootstrap 95% intervals;
* ``items.json``: each section's per-item terms, so that the report compares two runs item
  by item on the same test items (``uvlm.report.stats``).

Understanding-only runs answer only the understanding records and generation-only runs
only the generation records; what a run was not trained for is absent, never zero.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from uvlm import encoders, paths, provenance
from uvlm.cli import command_parser, parse_command
from uvlm.config import Config
from uvlm.device import job_gpu
from uvlm.grid import JUDGE_OF_SPACE, Run, parse_run
from uvlm.model.batching import MODE_TASKS, Template
from uvlm.model.checkpoint import load_trained
from uvlm.model.context import load_context
from uvlm.model.generate import draw, generate_text
from uvlm.progress import progress_bar
from uvlm.utils import atomic_path, save_tensors, stream_seed


def checkpoint_dirs(cfg: Config, run: Run, seed: int, which: str = "all") -> list[Path]:
    """The checkpoint directories to evaluate: ``all``, or only the ``final`` one (for runs
    that no table or figure reads earlier: ``uvlm.report.read_checkpoints``)."""
    first = cfg.train.checkpoints if which == "final" else 1
    ks = range(first, cfg.train.checkpoints + 1)
    missing = [w for k in ks if not (w := paths.ckpt_weights(cfg, run, seed, k)).is_file()]
    if missing:
        raise FileNotFoundError(f"{missing[0]}: checkpoint not found ({len(missing)} of "
                                f"{len(ks)} missing); train the run first")
    return [paths.ckpt_dir(cfg, run, seed, k) for k in ks]


def _batches(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def answer_understanding(model, template: Template, tokenizer, records: list[dict],
                         und_features: torch.Tensor, cfg: Config) -> dict[tuple[str, int], str]:
    """Greedy answers to every human turn of the understanding records.

    Turn t's prompt holds the earlier turns with their reference answers (teacher-forced
    history), so each turn is scored on its own. -> {(record id, turn): answer}
    """
    jobs = [(r, t) for r in records
            for t in range(sum(c["from"] == "human" for c in r["conversations"]))]
    out = {}
    for chunk in _batches(jobs, cfg.eval.batch_size):
        prompts = [template.prompt(r, turn=t) for r, t in chunk]
        images = und_features[torch.tensor([r["image_id"] for r, _ in chunk])]
        ids = generate_text(model, template, prompts, cfg.eval.max_new_tokens, images=images)
        for (r, t), a in zip(chunk, ids, strict=True):
            out[(r["id"], t)] = tokenizer.decode(a, skip_special_tokens=True).strip()
    return out


def generate(model, template: Template, tokenizer, records: list[dict], cfg: Config, vq):
    """Answer the generation prompts. -> (answers, outputs, drew): outputs are uint8 pixels
    (B, 3, H, W) for a VQ head, features (B, T, D) for a continuous one."""
    answers, outputs, drew = [], [], []
    for chunk in _batches(records, cfg.eval.batch_size):
        prompts = [template.prompt(r, turn=0) for r in chunk]
        ids, images, d = draw(model, template, prompts, cfg.eval.max_new_tokens)
        answers += [tokenizer.decode(a, skip_special_tokens=True).strip() for a in ids]
        outputs.append(encoders.decode_to_pixels(vq, images, cfg.eval.batch_size)
                       if vq is not None else images)
        drew.append(d)
    return answers, torch.cat(outputs), torch.cat(drew)


def save_output(out_dir: Path, record_id: str, output: torch.Tensor) -> str:
    """Write one generated output; returns its path relative to ``out_dir``."""
    if output.dtype == torch.uint8:
        rel = f"images/{record_id}.png"
        with atomic_path(out_dir / rel) as tmp:
            Image.fromarray(output.permute(1, 2, 0).numpy()).save(tmp, format="PNG")
    else:
        rel = f"features/{record_id}.safetensors"
        save_tensors(out_dir / rel, {"features": output.contiguous()})
    return rel


def evaluate_run(cfg: Config, run: Run, seed: int, which: str = "all",
                 device: torch.device | None = None) -> None:
    """Answer, generate and score every checkpoint of ``which``; the model runs on
    ``device`` (default the CPU), decoding and scoring on the CPU."""
    from uvlm.data.records import load_attributes, load_records
    from uvlm.encoders.images import read_images
    from uvlm.eval.answers import answer_rows, gt_attributes, write_answers
    from uvlm.eval.fid import make_extractor
    from uvlm.eval.judge import load_judge
    from uvlm.eval.score import score_answers, write_items, write_metrics

    ckpts = checkpoint_dirs(cfg, run, seed, which)  # fail before loading anything else
    tasks = MODE_TASKS[run.mode]
    records = [r for r in load_records(paths.data_file(cfg, "test")) if r["task"] in tasks]
    # element i of the attributes table is image id i
    gt = dict(enumerate(gt_attributes(vars(w))
                        for w in load_attributes(paths.attributes_file(cfg, "test"))))
    und_records = [r for r in records if r["task"] != "generation"]
    gen_records = [r for r in records if r["task"] == "generation"]

    ctx = load_context(cfg, run)
    und_features = encoders.load_features(cfg, run.und_space, "test") if und_records else None
    score_kw: dict = {}
    vq = None
    if gen_records:
        judge = load_judge(cfg, JUDGE_OF_SPACE[run.gen_space])
        score_kw["judge"] = judge
        if ctx.gen.kind == "vq":
            vq = encoders.load_vq(cfg).eval()
            score_kw["fid_reference"] = read_images(cfg, "test", range(cfg.data.n_test))
            score_kw["fid_extractor"] = make_extractor(cfg.eval.inception_weights, judge)
        else:
            score_kw["gt_features"] = encoders.load_features(cfg, run.gen_space, "test")

    for ckpt in progress_bar(ckpts, desc=f"eval {run.name} seed{seed}", unit="ckpt"):
        model, _, _, _ = load_trained(ckpt, ctx)
        model = model.to(device or torch.device("cpu"))
        template = Template.of(cfg, ctx)
        out_dir = paths.eval_dir(cfg, run, seed, ckpt.name)
        und = (answer_understanding(model, template, ctx.tokenizer, und_records,
                                    und_features, cfg) if und_records else {})
        gen_outputs = None
        gen_answers: dict[str, tuple[str, str]] = {}
        drew = None
        if gen_records:
            answers, gen_outputs, drew = generate(model, template, ctx.tokenizer, gen_records,
                                                  cfg, vq)
            for r, a, o in zip(gen_records, answers, gen_outputs, strict=True):
                gen_answers[r["id"]] = (a, save_output(out_dir, r["id"], o))
        rows = []
        for r in records:  # data-file order, as the authors' loop reads it
            if r["task"] == "generation":
                answer, file = gen_answers[r["id"]]
                rows += answer_rows(r, [answer], gt[r["image_id"]], file)
            else:
                n = sum(c["from"] == "human" for c in r["conversations"])
                rows += answer_rows(r, [und[(r["id"], t)] for t in range(n)], gt[r["image_id"]])
        items: dict = {}
        metrics = score_answers(rows, n_resamples=cfg.eval.bootstrap,
                                seed=stream_seed(cfg.seed, "eval", run.name, seed, ckpt.name),
                                gen_outputs=gen_outputs, items=items, **score_kw)
        if drew is not None:
            # answers that never emitted the "<image>" marker still get a (blank-code) image
            # scored as generated; this says how often that happened
            metrics["generation"]["drew_rate"] = float(drew.float().mean())
        write_answers(paths.eval_answers(cfg, run, seed, ckpt.name), rows)
        write_items(paths.eval_items(cfg, run, seed, ckpt.name), items)
        write_metrics(paths.eval_metrics(cfg, run, seed, ckpt.name), metrics)


def main(argv: list[str]) -> None:
    p = command_parser("python -m uvlm evaluate", __doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="run name, e.g. vq-vq_mixed")
    p.add_argument("--seed", required=True, type=int)
    p.add_argument("--checkpoints", choices=["all", "final"], default="all",
                   help="evaluate every checkpoint, or only the final one")
    args, cfg = parse_command(p, argv)
    with job_gpu(cfg, f"evaluate {args.run} seed {args.seed}") as device:  # before any input
        torch.manual_seed(stream_seed(cfg.seed, "eval", args.run, args.seed))
        np.random.seed(stream_seed(cfg.seed, "eval", args.run, args.seed) % 2**32)
        evaluate_run(cfg, parse_run(args.run), args.seed, args.checkpoints, device)
        provenance.write(cfg, "evaluate", run=args.run, seed=args.seed)
