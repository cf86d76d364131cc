"""End to end at smoke scale: data -> every encoders command -> the API reads the outputs."""

from pathlib import Path

import pytest
import torch

from uvlm.__main__ import main as uvlm
from uvlm.config import load
from uvlm.encoders import (
    load_affine,
    load_features,
    load_tokenizer,
    load_vision_model,
    load_vq,
    space_info,
)
from uvlm.encoders.images import read_images
from uvlm.utils import read_json

ROOT = Path(__file__).resolve().parents[1]
SETS = ["data.n_train=64", "data.n_test=8", "data.extra_generation=[8]",
        "data.extra_understanding=[8]", "data.workers=1", "encoders.siglip.steps=4",
        "encoders.vq.steps=4"]


@pytest.mark.slow
def test_smoke_encoders_stage(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = str(ROOT / "config" / "smoke.yaml")
    cfg = load(config, SETS)
    for split in ("train", "test"):
        uvlm(["data", "--config", config, "--set", *SETS, "--split", split])
    for command in ("encoders-tokenizer", "encoders-vq", "encoders-siglip", "encoders-affine"):
        uvlm([command, "--config", config, "--set", *SETS])
    for space in ("siglip", "vq"):
        for split in ("train", "test"):
            uvlm(["encoders-features", "--config", config, "--set", *SETS, "--space", space,
                  "--split", split])

    assert len(load_tokenizer(cfg)) == cfg.encoders.tokenizer.vocab_size
    metrics = read_json(cfg.root / "encoders" / "vq" / "metrics.json")
    assert metrics["recon_mse"] >= 0 and metrics["steps"] == 4
    assert (cfg.root / "encoders" / "vq" / "reconstruction.png").is_file()
    assert (cfg.root / "encoders" / "siglip" / "model.safetensors").is_file()

    sig = space_info(cfg, "siglip")
    feats = load_features(cfg, "siglip", "test")
    assert feats.shape == (8, sig.num_tokens, sig.feature_dim) and feats.dtype == torch.float32
    codes = load_features(cfg, "vq", "train")
    assert codes.shape == (64, space_info(cfg, "vq").num_tokens) and codes.dtype == torch.int64
    # features files hold exactly what the towers give for those images
    images = read_images(cfg, "test", range(8)).float() / 255
    with torch.no_grad():
        assert torch.allclose(load_vision_model(cfg, "siglip")(images), feats, atol=1e-6)
        assert torch.equal(load_vision_model(cfg, "vq")(images),
                           load_features(cfg, "vq", "test"))
        assert load_vq(cfg).decode_code(codes[:2]).shape == (2, 3, 32, 32)
    a, b = load_affine(cfg, "siglip", 1.4)
    assert a.shape == (sig.feature_dim, sig.feature_dim)
