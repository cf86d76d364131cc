"""Model FLOPs, GPU peaks and the paper-shape LLM of the benchmarks (``bench-train``,
``bench-generate`` with ``--device cuda``).

Model FLOP utilisation (MFU) = model FLOPs per token x tokens/s / the GPU's peak. Model
FLOPs count the matrix multiplies of the weights a token passes through, 2 per weight
forward; every parameter except the input embedding table (a lookup) counts, for every
token (text and image positions alike: the adapters and the image head are under 2% of a
7B model). Not counted: attention's own score and value products (grow with the sequence),
and the forward that gradient checkpointing recomputes (hardware work, not model work).

* training: 2N forward + 2N backward to the activations + 2N backward to the weights, for
  the weights that get gradients: ``4 x N_frozen + 6 x N_trainable`` per token; full
  training is the usual ``6N``. Under LoRA the frozen 7B base still costs 4N (its
  activations' gradients flow through it to the LoRA weights); the LoRA weights' own
  gradients are tiny.
* generation: ``2N`` per generated token (forward only).
"""

from __future__ import annotations

import torch
from torch import nn

#: dense bf16 tensor-core peak in TFLOP/s per GPU, keyed by ``torch.cuda.get_device_name``
#: (NVIDIA's data sheets, without sparsity); other GPUs: pass ``--peak-tflops``
PEAK_BF16_TFLOPS = {
    "NVIDIA H100 80GB HBM3": 989.0,  # H100 SXM
    "NVIDIA H200": 989.0,
    "NVIDIA A100-SXM4-80GB": 312.0,
    "NVIDIA A100-SXM4-40GB": 312.0,
    "NVIDIA A100 80GB PCIe": 312.0,
    "NVIDIA A100-PCIE-40GB": 312.0,
}

TRAIN_FORMULA = ("model FLOPs/token = 4 x N_frozen + 6 x N_trainable (N: parameters without "
                 "the input embeddings; attention scores and recomputation not counted)")
GENERATE_FORMULA = ("model FLOPs/token = 2 x N (N: parameters without the input embeddings; "
                    "attention scores not counted)")

#: lmsys/vicuna-7b-v1.5's config.json (a LlamaConfig): the paper's LLM, with random weights
VICUNA_7B = {"vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008,
             "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32,
             "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "hidden_act": "silu",
             "tie_word_embeddings": False}


def param_counts(model: nn.Module, embeddings: nn.Module) -> tuple[int, int]:
    """(N_frozen, N_trainable) of ``model``, without the ``embeddings`` table."""
    skip = {id(p) for p in embeddings.parameters()}
    frozen = sum(p.numel() for p in model.parameters()
                 if id(p) not in skip and not p.requires_grad)
    trainable = sum(p.numel() for p in model.parameters()
                    if id(p) not in skip and p.requires_grad)
    return frozen, trainable


def train_flops_per_token(frozen: int, trainable: int) -> int:
    return 4 * frozen + 6 * trainable


def generate_flops_per_token(frozen: int, trainable: int) -> int:
    return 2 * (frozen + trainable)


def peak_tflops(name: str, override: float | None = None) -> float | None:
    """The GPU's dense bf16 peak: ``override`` if given, else the table's, else None."""
    return override if override is not None else PEAK_BF16_TFLOPS.get(name)


def paper_lm(device: torch.device) -> nn.Module:
    """Vicuna-7B's architecture with random bf16 weights, made on ``device`` (no download;
    on the GPU, initialising 7B weights takes seconds, on the CPU minutes). bf16, as
    ``uvlm.model.unified.build_lm`` loads the frozen base under LoRA."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    with torch.device(device):
        return AutoModelForCausalLM.from_config(LlamaConfig(**VICUNA_7B), dtype=torch.bfloat16,
                                                attn_implementation="sdpa")
