"""The ``uvlm.encoders`` API and the features/affine commands on synthetic images."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from uvlm.config import load
from uvlm.encoders import (
    SPACES,
    load_affine,
    load_codebook,
    load_features,
    load_vq,
    space_info,
    vq_train,
)
from uvlm.encoders import affine as affine_cmd
from uvlm.encoders import features as features_cmd
from uvlm.encoders.common import index_batches, warmup_steps
from uvlm.encoders.images import check_split, read_images
from uvlm.encoders.tokenizer import build_tokenizer, train_bpe
from uvlm.encoders.vq import VQModel, save_vq
from uvlm.encoders.vq_train import vq_args
from uvlm.utils import lr_at, read_json

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "config" / "smoke.yaml"
SETS = ["data.n_train=6", "data.n_test=3", "data.extra_generation=[2]",
        "data.extra_understanding=[2]", "encoders.feature_batch_size=4"]


@pytest.mark.parametrize("name, space, want", [
    ("paper", "siglip", ("continuous", 196, 768, None)),
    ("paper", "vq", ("vq", 256, 8, 16384)),
    ("llava", "clip", ("continuous", 576, 1024, None)),
    ("config", "siglip", ("continuous", (64 // 16) ** 2, 96, None)),
    ("smoke", "vq", ("vq", (32 // 2 ** 3) ** 2, 8, 64)),
])
def test_space_info_from_the_config_alone(name, space, want):
    cfg = load(ROOT / "config" / f"{name}.yaml")
    if name in ("config", "smoke") and space == "vq":
        v = cfg.encoders.vq
        want = ("vq", (v.image_size // 2 ** (len(v.ch_mult) - 1)) ** 2, v.codebook_dim,
                v.codebook_size)
    info = space_info(cfg, space)
    assert (info.kind, info.num_tokens, info.feature_dim, info.codebook_size) == want


def test_unknown_space_lists_the_known_ones():
    with pytest.raises(KeyError, match="unknown vision space 'dino'; choose from: siglip, vq"):
        space_info(load(SMOKE), "dino")
    assert set(SPACES) == {"siglip", "vq", "clip"}


@pytest.fixture
def smoke(tmp_path, monkeypatch):
    """A smoke config whose results/ lives in tmp_path, with random train/test images."""
    monkeypatch.chdir(tmp_path)
    cfg = load(SMOKE, SETS)
    gen = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 3)):
        d = cfg.root / "data" / "images" / split
        d.mkdir(parents=True)
        for i in range(n):
            arr = gen.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(arr).save(d / f"{i:06d}.png")
    return cfg


def test_missing_and_corrupt_images_are_named(smoke):
    with pytest.raises(FileNotFoundError, match="images/extra/000000.png: image not found"):
        check_split(smoke, "extra")
    bad = smoke.root / "data" / "images" / "test" / "000001.png"
    bad.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="000001.png: corrupt or unreadable image"):
        read_images(smoke, "test", range(3))


def test_vq_features_codebook_and_loading(smoke):
    torch.manual_seed(0)
    model = VQModel(vq_args(smoke.encoders.vq)).eval()
    save_vq(model, smoke.root / "encoders" / "vq")
    features_cmd.main(["--config", str(SMOKE), "--set", *SETS, "--space", "vq",
                       "--split", "test"])
    codes = load_features(smoke, "vq", "test")
    info = space_info(smoke, "vq")
    assert codes.shape == (3, info.num_tokens) and codes.dtype == torch.int64
    images = read_images(smoke, "test", range(3)).float() / 127.5 - 1
    with torch.no_grad():
        assert torch.equal(codes, model.encode(images))  # row i = image i
    book = load_codebook(smoke)
    assert book.shape == (info.codebook_size, info.feature_dim)
    assert torch.allclose(book[codes], model.embed(codes))
    vq = load_vq(smoke)
    assert not any(p.requires_grad for p in vq.parameters())
    assert vq.decode_code(codes).shape == (3, 3, 32, 32)
    path = smoke.root / "encoders" / "features" / "vq_test.safetensors"
    with safe_open(path, framework="pt") as fh:
        assert fh.metadata()["config_hash"] == smoke.hash()


def test_missing_outputs_point_to_the_encoders_stage(smoke):
    with pytest.raises(FileNotFoundError, match="siglip_train.safetensors: not found; run "
                                                "`snakemake encoders`"):
        load_features(smoke, "siglip", "train")
    with pytest.raises(FileNotFoundError, match="encoders/vq: not found"):
        load_vq(smoke)


def test_affine_command_writes_every_strength(smoke):
    affine_cmd.main(["--config", str(SMOKE)])
    for space, strengths in (("vq", smoke.encoders.affine.vq_sigmas),
                             ("siglip", smoke.encoders.affine.siglip_ks)):
        dim = space_info(smoke, space).feature_dim
        for s in strengths:
            a, b = load_affine(smoke, space, s)
            assert a.shape == (dim, dim) and b.shape == (dim,) and a.dtype == torch.float32
    a, b = load_affine(smoke, "vq", 0.3)
    assert torch.linalg.matrix_rank(a) == a.shape[0] and torch.all(b == 0)


def test_vq_config_json_is_the_model_args(smoke):
    model = VQModel(vq_args(smoke.encoders.vq))
    save_vq(model, smoke.root / "encoders" / "vq")
    raw = json.loads((smoke.root / "encoders" / "vq" / "config.json").read_text())
    assert raw["codebook_size"] == smoke.encoders.vq.codebook_size
    assert raw["ch_mult"] == smoke.encoders.vq.ch_mult


def test_encoders_vq_converts_a_llamagen_checkpoint(smoke, tmp_path):
    torch.manual_seed(0)
    model = VQModel(vq_args(smoke.encoders.vq)).eval()
    torch.save({"model": model.state_dict(), "optimizer": {}}, tmp_path / "vq.pt")
    sets = [*SETS, "encoders.vq.source=pretrained", f"encoders.vq.path={tmp_path / 'vq.pt'}"]
    vq_train.main(["--config", str(SMOKE), "--set", *sets])
    out = smoke.root / "encoders" / "vq"
    assert read_json(out / "metrics.json")["source"] == "pretrained"
    converted = load_vq(smoke)
    for name, tensor in model.state_dict().items():
        assert torch.equal(converted.state_dict()[name], tensor), name


def test_pretrained_tokenizer_is_copied_and_gets_a_pad_token(smoke, tmp_path):
    llm = tmp_path / "llm"
    tok = train_bpe(["a smart watch"] * 4, vocab_size=300)
    tok.pad_token = None
    tok.save_pretrained(llm)
    cfg = load(SMOKE, [*SETS, "encoders.tokenizer.source=pretrained", f"model.llm.path={llm}"])
    built = build_tokenizer(cfg)
    assert built.pad_token == built.unk_token == "<unk>"
    with pytest.raises(FileNotFoundError, match="model.llm.path=.*nowhere"):
        build_tokenizer(load(SMOKE, ["encoders.tokenizer.source=pretrained",
                                     f"model.llm.path={tmp_path / 'nowhere'}"]))


def test_schedule_and_batches():
    assert warmup_steps(100) == 5 and warmup_steps(10) == 1
    assert lr_at(0, 100, 1.0, 5) == pytest.approx(1 / 5)  # 5 warm-up steps
    assert lr_at(4, 100, 1.0, 5) == pytest.approx(1.0)
    assert lr_at(99, 100, 1.0, 5) < 1e-3
    batches = list(index_batches(10, 4, 5, seed=0))
    assert len(batches) == 5 and all(len(b) == 4 for b in batches)
    assert sorted(torch.cat(batches[:2]).tolist()) == sorted(set(torch.cat(batches[:2]).tolist()))
    again = list(index_batches(10, 4, 5, seed=0))
    assert all(torch.equal(a, b) for a, b in zip(batches, again, strict=True))
