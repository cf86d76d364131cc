"""The benchmarks' CPU paths at tiny size, their FLOP counts, and --device cuda without a GPU
(a clear error; nothing here needs a GPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from uvlm.__main__ import main as uvlm
from uvlm.config import from_dict, load
from uvlm.grid import parse_run
from uvlm.model import flops, synthetic
from uvlm.model.unified import build_model

ROOT = Path(__file__).resolve().parents[1]
SMOKE = str(ROOT / "config" / "smoke.yaml")
PAPER = str(ROOT / "config" / "paper.yaml")


def test_flops_count_every_weight_but_the_input_embeddings():
    raw = {"name": "t", "encoders": {"tokenizer": {"source": "train", "vocab_size": 300}},
           "model": {"llm": {"source": "config", "arch": "llama", "hidden_size": 32,
                             "layers": 1, "heads": 2, "kv_heads": 2, "intermediate_size": 64,
                             "max_length": 128},
                     "lora": {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0}}}
    cfg, run = from_dict(raw), parse_run("siglip-vq_mixed")
    recs = synthetic.records(2)
    model = build_model(cfg, run, synthetic.context(cfg, run, recs))
    embeddings = model.lm.get_input_embeddings()
    frozen, trainable = flops.param_counts(model, embeddings)
    total = sum(p.numel() for p in model.parameters())
    assert frozen + trainable == total - embeddings.weight.numel()
    assert trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable > 0 and frozen > 0  # LoRA, adapters and head; the frozen base
    assert flops.train_flops_per_token(frozen, trainable) == 4 * frozen + 6 * trainable
    assert flops.generate_flops_per_token(frozen, trainable) == 2 * (frozen + trainable)


def test_peak_table_and_override():
    assert flops.peak_tflops("NVIDIA H100 80GB HBM3") == flops.peak_tflops("NVIDIA H200") == 989
    assert flops.peak_tflops("NVIDIA A100-SXM4-80GB") == 312
    assert flops.peak_tflops("Some GPU") is None
    assert flops.peak_tflops("NVIDIA H200", 700.0) == 700.0


def test_vicuna_shape_is_seven_billion_parameters():
    from transformers import LlamaConfig

    with torch.device("meta"):  # sizes only, no memory
        lm = __import__("transformers").AutoModelForCausalLM.from_config(
            LlamaConfig(**flops.VICUNA_7B))
    assert sum(p.numel() for p in lm.parameters()) == 6_738_415_616  # Vicuna-7B v1.5


def test_bench_train_cpu_path(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    uvlm(["bench-train", "--config", SMOKE, "--steps", "4", "--images", "16"])
    out = capsys.readouterr().out
    assert "fp32: " in out and "bf16: " in out and "model TFLOP/s" in out
    assert "MFU not computed (pass --peak-tflops)" in out and flops.TRAIN_FORMULA in out
    result = json.loads(Path("results/smoke/bench/train.json").read_text())
    for precision in ("fp32", "bf16"):
        r = result[precision]
        assert r["tokens_per_s"] > 0 and r["mfu"] is None and r["peak_gpu_mib"] is None
        assert r["model_tflops_per_s"] == pytest.approx(
            r["tokens_per_s"] * (4 * r["params_frozen"] + 6 * r["params_trainable"]) / 1e12)


def test_bench_generate_cpu_path(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    uvlm(["bench-generate", "--config", SMOKE, "--layers", "1", "--hidden", "64", "--tokens",
          "8", "--images", "4", "--batch", "2", "--reference-images", "1",
          "--peak-tflops", "1.0"])
    out = capsys.readouterr().out
    assert "identical tokens: True (100.0% of the reference loop's)" in out
    assert "image tokens/s" in out and "MFU " in out and flops.GENERATE_FORMULA in out
    result = json.loads(Path("results/smoke/bench/generate.json").read_text())
    assert result["mfu"] == pytest.approx(result["model_tflops_per_s"])  # peak 1 TFLOP/s
    assert result["device"] == "cpu" and result["peak_gpu_mib"] is None


@pytest.mark.parametrize("command", ["bench-train", "bench-generate"])
def test_device_cuda_without_a_gpu_is_a_clear_error(command, tmp_path, monkeypatch):
    monkeypatch.delenv("UVLM_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.version, "cuda", None)  # a CPU wheel, whatever this machine has
    with pytest.raises(SystemExit) as e:
        uvlm([command, "--config", PAPER, "--device", "cuda"])
    assert str(e.value.code) == (
        f"uvlm {command}: error: {command} --device cuda: needs a CUDA GPU (--device cuda), "
        f"but torch {torch.__version__} is a build without CUDA (a CPU wheel); install a CUDA "
        f"build (README, 'Installing torch'). To run it on the CPU on purpose, leave out "
        f"--device cuda")
    assert not Path("results").exists()  # nothing was built or written


def test_paper_config_loads_for_the_gpu_bench():
    cfg = load(PAPER)
    assert cfg.model.lora.enabled and cfg.model.lora.r == 128
    assert cfg.encoders.vq.codebook_size == 16384
