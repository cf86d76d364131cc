"""``precision: auto``: bf16 only where the device runs it natively (capabilities mocked)."""

import pytest
import torch

from uvlm import precision


def _cpu(monkeypatch, avx512_bf16: bool, amx: bool) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)


@pytest.mark.parametrize("avx512_bf16, amx, want", [
    (False, False, "fp32"), (True, False, "bf16"), (False, True, "bf16"), (True, True, "bf16")])
def test_auto_on_cpu_follows_native_bf16(monkeypatch, avx512_bf16, amx, want):
    _cpu(monkeypatch, avx512_bf16, amx)
    used, why = precision.resolve("auto", torch.device("cpu"))
    assert used == want
    assert why.startswith("auto: CPU has ")
    assert ("no AVX-512 BF16 or AMX" in why) == (want == "fp32")


def test_cpu_without_the_checks_counts_as_not_native(monkeypatch):
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")
    assert precision.resolve("auto", torch.device("cpu"))[0] == "fp32"


@pytest.mark.parametrize("native, want", [(True, "bf16"), (False, "fp32")])
def test_auto_on_cuda_follows_the_device(monkeypatch, native, want):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "Fake GPU")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: native)
    used, why = precision.resolve("auto", torch.device("cuda"))
    assert used == want and "Fake GPU" in why


def test_auto_elsewhere_is_fp32():
    assert precision.resolve("auto", torch.device("mps"))[0] == "fp32"


@pytest.mark.parametrize("explicit", ["fp32", "bf16"])
def test_an_explicit_choice_wins(monkeypatch, explicit):
    _cpu(monkeypatch, avx512_bf16=explicit == "fp32", amx=False)  # auto would pick the other
    assert precision.resolve(explicit, torch.device("cpu")) == (explicit, "set in the config")


def test_announce_prints_choice_and_reason(monkeypatch):
    _cpu(monkeypatch, avx512_bf16=False, amx=False)
    lines = []
    assert precision.announce("encoders-vq", "auto", torch.device("cpu"), lines.append) == "fp32"
    assert lines == ["encoders-vq: precision fp32 (auto: CPU has no AVX-512 BF16 or AMX "
                     f"({torch.backends.cpu.get_cpu_capability()}))"]


def test_every_tiny_training_defaults_to_auto():
    from uvlm.config import Config

    cfg = Config(name="t")
    assert {cfg.train.precision, cfg.encoders.siglip.precision, cfg.encoders.vq.precision,
            cfg.eval.judge_precision} == {"auto"}
