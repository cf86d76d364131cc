"""`python -m uvlm COMMAND ...`: one entry point for every stage.

Each command lives in its own module exposing ``main(argv: list[str]) -> None``; modules are
imported lazily so ``--help`` and light commands start fast.

A user's mistake (``UvlmError``: a bad config key or value, run name or input file) or an
OS error (a missing file, a full disk) prints one line naming the file, key or value and
exits with status 1; ``--debug`` before the command, or ``UVLM_DEBUG=1``, shows the
traceback instead.
"""

from __future__ import annotations

import importlib
import os
import sys

from uvlm import UvlmError

COMMANDS: dict[str, tuple[str, str]] = {
    "config-schema": ("uvlm.cli_config", "print the config JSON schema / validate a config"),
    "data": ("uvlm.data.build", "render images and write the text tasks for one split"),
    "data-variants": ("uvlm.data.variants", "write biased and extra-data training variants"),
    "bench-data": ("uvlm.data.bench", "benchmark: rendered images per second"),
    "encoders-tokenizer": ("uvlm.encoders.tokenizer", "train or copy the LLM tokenizer"),
    "encoders-vq": ("uvlm.encoders.vq_train", "train (tiny) or convert (paper) the VQ tokenizer"),
    "encoders-siglip": ("uvlm.encoders.siglip", "train the tiny SigLIP (contrastive)"),
    "encoders-features": ("uvlm.encoders.features", "encode one split into features or codes"),
    "encoders-affine": ("uvlm.encoders.affine", "write the seeded affine distortions"),
    "train": ("uvlm.train", "train one run of the grid (checkpoints at data fractions)"),
    "bench-train": ("uvlm.model.bench_train", "benchmark: training tokens/s and memory, fp32/bf16"),
    "bench-generate": ("uvlm.model.bench_generate", "benchmark: cached batched image generation"),
    "score-vqa": ("uvlm.eval.vqa", "VQA scores of an answers file (official / full protocol)"),
    "judge-train": ("uvlm.eval.judge", "train the generation judge (pixels or features)"),
    "paper": ("uvlm.report.cli", "build one paper table, figure or findings.md (--target)"),
    "evaluate": ("uvlm.eval.run", "answer and score every checkpoint of one run"),
    "analyze-adapters": ("uvlm.eval.adapters", "adapter t-SNE and linear probe of one run"),
    "probe-spaces": ("uvlm.eval.probe", "what each frozen vision space keeps (linear readouts)"),
    "timing": ("uvlm.timing", "time per stage from Snakemake's benchmark files (Markdown)"),
    "provenance": ("uvlm.provenance", "check artifacts' provenance against the config"),
    "llava-data": ("uvlm.llava.data", "llava: ShareGPT4V text-to-image samples in LLaVA's JSONs"),
    "llava-train": ("uvlm.llava.train", "llava: one training stage (pretrain or sft) of one run"),
    "lmms-eval": ("uvlm.llava.lmms", "llava: lmms-eval's command line with the model 'uvlm'"),
    "llava-results": ("uvlm.llava.results", "llava: lmms-eval's results where the report reads"),
}


def show_progress_in_logs() -> None:
    """Snakemake sends each job's output to a log file, where Python buffers stdout in blocks
    of 8 KB: a job would look idle for minutes. Flush every line as it is written instead;
    the Hugging Face libraries' progress bars (weight loading, downloads) redraw in place,
    so they are off outside a terminal (uvlm's own bars: uvlm.progress)."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):  # a TextIOWrapper, unless a test replaced it
            stream.reconfigure(line_buffering=True)
    if not sys.stderr.isatty():
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    debug = os.environ.get("UVLM_DEBUG", "") not in ("", "0")
    if argv[:1] == ["--debug"]:
        debug, argv = True, argv[1:]
    show_progress_in_logs()
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m uvlm [--debug] COMMAND [args]\n\n--debug (or UVLM_DEBUG=1) "
              "shows the traceback of an error\n\ncommands:")
        for name, (_, doc) in COMMANDS.items():
            print(f"  {name:<16} {doc}")
        sys.exit(0 if argv else 2)
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        sys.exit(f"uvlm: unknown command {name!r}; choose from: {', '.join(COMMANDS)}")
    try:
        module = importlib.import_module(COMMANDS[name][0])
        module.main(rest)
    except (UvlmError, OSError) as e:
        if debug:
            raise
        # one line, even when a library's message spans several
        message = "; ".join(line.strip() for line in str(e).splitlines() if line.strip())
        sys.exit(f"uvlm {name}: error: {message or type(e).__name__}")


if __name__ == "__main__":
    main()
