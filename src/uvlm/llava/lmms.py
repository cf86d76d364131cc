"""Evaluating LLaVA-scale checkpoints with lmms-eval (docs/paper.md §5), an external tool.

* ``UVLM``: lmms-eval's model API for a checkpoint of ours (``--model uvlm --model_args
  checkpoint=R/runs/{run}/seed0/sft/ckpt01``): one prompt at a time, greedy, one image per
  prompt placed as LLaVA's evaluation places it.
* `python -m uvlm lmms-eval ARGS...`: lmms-eval's own command line (lmms-eval 0.7) with the
  model ``uvlm`` registered first; ARGS are lmms-eval's (``--model uvlm --tasks ...``).
* ``uvlm.llava.results``: lmms-eval's results file copied to where the report reads it.

lmms-eval is not a dependency of the package: it downloads its benchmarks from the Hugging
Face Hub. Install it beside uvlm where the evaluation runs (README, "LLaVA experiment").
"""

from __future__ import annotations

import sys

import torch
from accelerate import PartialState

from uvlm.device import job_device, require_cuda
from uvlm.llava.images import encode, image_first, load_parts
from uvlm.model.batching import Template
from uvlm.model.checkpoint import load_trained, read_checkpoint_config
from uvlm.model.generate import generate_text
from uvlm.precision import resolve
from uvlm.progress import progress_bar

try:
    from lmms_eval.api.model import lmms as LMMs
    from lmms_eval.api.registry import register_model
except ImportError:  # lmms-eval absent: the adapter still works for direct (and test) calls
    LMMs = object

    def register_model(*names):
        return lambda cls: cls

MODEL_NAME = "uvlm"


@register_model(MODEL_NAME)
class UVLM(LMMs):
    """A uvlm checkpoint as an lmms-eval model (``generate_until`` only)."""

    def __init__(self, checkpoint: str, batch_size: int | str = 1, device: str | None = None,
                 max_batch_size: int | None = None):
        """``checkpoint``: a ``ckpt{k}`` folder of stage 2. lmms-eval also passes
        ``batch_size`` (must be 1), ``device`` and ``max_batch_size`` (unused at batch 1)."""
        super().__init__()
        if int(batch_size) != 1:
            raise ValueError(f"uvlm: batch_size={batch_size}; the paper evaluates one prompt "
                             f"at a time (batch_size=1)")
        cfg, run, _ = read_checkpoint_config(checkpoint)
        job = f"lmms-eval {checkpoint}"
        if device:  # lmms-eval's --device wins; else the checkpoint's config says
            self._device = torch.device(device)
            if self._device.type == "cuda":
                require_cuda(job, f"lmms-eval --device {device}")
        else:
            self._device = PartialState(cpu=job_device(cfg, job).type == "cpu").device
        ctx, towers = load_parts(cfg, run)
        self.model, self.cfg, self.run, self.ctx = load_trained(checkpoint, ctx)
        self.model.to(self._device)
        self.tower = towers[run.und_space].to(self._device)
        self.template = Template.of(cfg, ctx)
        self.task_dict: dict = {}  # lmms-eval puts each task's documents here
        self._rank, self._world_size = 0, 1  # lmms-eval overrides both when distributed

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def rank(self) -> int:
        return self._rank

    @property
    def world_size(self) -> int:
        return self._world_size

    def answer(self, context: str, gen_kwargs: dict, doc_to_visual, doc_id, task: str,
               split: str) -> str:
        """One request: ``context`` (the question) about the document's image(s)."""
        visuals = doc_to_visual(self.task_dict[task][split][doc_id]) or []
        if len(visuals) > 1:
            raise NotImplementedError(f"uvlm: {task} document {doc_id} has {len(visuals)} "
                                      f"images; the model reads one image per prompt")
        if visuals:  # as LLaVA's evaluation: the image first unless the context places it
            question = image_first(context if "<image>" in context else f"<image>\n{context}")
            record = {"id": f"{task}-{doc_id}", "task": "vqa"}
        else:
            question, record = context, {"id": f"{task}-{doc_id}", "task": "text"}
        record["conversations"] = [{"from": "human", "value": question},
                                   {"from": "gpt", "value": ""}]
        prompt = self.template.prompt(record)
        images = encode(self.tower, visuals, self._device) if visuals else None
        until = gen_kwargs.get("until") or []
        until = [until] if isinstance(until, str) else until
        # on a GPU, the precision the model was trained in
        bf16 = (self._device.type == "cuda"
                and resolve(self.cfg.train.precision, self._device)[0] == "bf16")
        with torch.autocast(self._device.type, torch.bfloat16, enabled=bf16):
            (ids,) = generate_text(self.model, self.template, [prompt],
                                   int(gen_kwargs.get("max_new_tokens",
                                                      self.cfg.eval.max_new_tokens)), images)
        text = self.ctx.tokenizer.decode(ids, skip_special_tokens=True)
        for stop in until:  # lmms-eval's stop strings end the answer
            text = text.split(stop)[0]
        return text.strip()

    def generate_until(self, requests) -> list[str]:
        """Greedy answers (temperature and sampling settings are ignored: the paper decodes
        greedily), ``max_new_tokens`` from the task or ``eval.max_new_tokens``."""
        return [self.answer(*r.args) for r in progress_bar(requests, disable=self._rank != 0,
                                                   desc="uvlm answering")]

    def loglikelihood(self, requests):
        raise NotImplementedError("uvlm: loglikelihood is not implemented; the LLaVA table's "
                                  "benchmarks are all generate_until tasks")

    def generate_until_multi_round(self, requests):
        raise NotImplementedError("uvlm: multi-round generation is not implemented; the LLaVA "
                                  "table's benchmarks are single-round")


# --------------------------------------------------------------------------- commands

def register() -> None:
    """Make ``--model uvlm`` known to lmms-eval's model registry (lmms-eval >= 0.5)."""
    from lmms_eval.models import MODEL_REGISTRY_V2
    from lmms_eval.models.registry_v2 import ModelManifest

    MODEL_REGISTRY_V2.register_manifest(
        ModelManifest(model_id=MODEL_NAME, simple_class_path=f"{__name__}.UVLM"), overwrite=True)


def main(argv: list[str]) -> None:
    """`uvlm lmms-eval ARGS`: lmms-eval's command line, with ``uvlm`` registered."""
    from lmms_eval.__main__ import cli_evaluate

    register()
    sys.argv = ["lmms-eval", *argv]
    cli_evaluate()
