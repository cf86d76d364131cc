"""SigLIP and CLIP towers: tiny local models saved and read back through the paper-scale
loading code; our preprocessing equals the transformers image processors; tiny SigLIP
training runs and is seeded."""

import dataclasses
import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from transformers import (
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    CLIPVisionModel,
    SiglipImageProcessorPil,
    SiglipModel,
)

from uvlm.config import ClipConfig, SiglipConfig
from uvlm.encoders.clip import load_clip
from uvlm.encoders.siglip import (
    captions_by_image,
    encode_captions,
    load_siglip,
    siglip_config,
    train_siglip,
)
from uvlm.encoders.tokenizer import train_bpe

SIGLIP = SiglipConfig(source="train", image_size=32, patch_size=8, hidden_size=32, layers=2,
                      heads=2, intermediate_size=64, text_layers=1, steps=3, batch_size=4,
                      lr=1e-3)
CLIP = ClipConfig(path="unused", image_size=28, patch_size=14, hidden_size=32)


def random_images(n, size, seed=0):
    gen = np.random.default_rng(seed)
    return gen.integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def as_unit_tensor(arr):
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 255.0


@pytest.fixture(scope="module")
def siglip_dir(tmp_path_factory):
    torch.manual_seed(0)
    tok = train_bpe(["a smart watch at 01:02:03"] * 4, vocab_size=300)
    model = SiglipModel(siglip_config(SIGLIP, tok, text_length=12)).eval()
    path = tmp_path_factory.mktemp("siglip")
    model.save_pretrained(path)
    return path, model


def test_siglip_round_trip_through_the_paper_loader(siglip_dir):
    path, model = siglip_dir
    tower = load_siglip(path, SIGLIP)
    x = as_unit_tensor(random_images(2, 32))
    with torch.no_grad():
        feats = tower(x)
        pixels = (x - 0.5) / 0.5
        want = model.vision_model(pixel_values=pixels, output_hidden_states=True).hidden_states[-2]
    assert feats.shape == (2, (32 // 8) ** 2, 32)
    assert torch.equal(feats, want)
    assert not any(p.requires_grad for p in tower.parameters())


def test_siglip_preprocessing_matches_the_image_processor(siglip_dir):
    path, _ = siglip_dir
    tower = load_siglip(path, SIGLIP)
    arr = random_images(2, 32, seed=1)
    proc = SiglipImageProcessorPil(size={"height": 32, "width": 32})
    want = proc([Image.fromarray(a) for a in arr], return_tensors="pt").pixel_values
    got = tower.preprocess(as_unit_tensor(arr))
    assert torch.allclose(got, want, atol=1e-6)


def test_siglip_loader_rejects_a_size_mismatch_naming_the_key(siglip_dir):
    path, _ = siglip_dir
    with pytest.raises(ValueError, match="hidden_size is 32 but the config says "
                                         "encoders.siglip.hidden_size=768"):
        load_siglip(path, dataclasses.replace(SIGLIP, hidden_size=768))


@pytest.mark.parametrize("edit, message", [
    ("drop", "missing post_layernorm.weight"),
    ("reshape", "post_layernorm.weight has shape [3], expected [32]"),
])
def test_siglip_loader_names_missing_or_misshaped_weights(tmp_path, siglip_dir, edit, message):
    # transformers would silently initialise missing weights; we refuse
    path, _ = siglip_dir
    shutil.copytree(path, tmp_path, dirs_exist_ok=True)
    state = load_file(tmp_path / "model.safetensors")
    if edit == "drop":
        del state["vision_model.post_layernorm.weight"]
    else:
        state["vision_model.post_layernorm.weight"] = torch.zeros(3)
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=re.escape(message)):
        load_siglip(tmp_path, SIGLIP)


def test_missing_model_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        load_siglip(tmp_path / "nothing-here", SIGLIP)


def test_clip_round_trip_drops_the_cls_token(tmp_path):
    torch.manual_seed(0)
    model = CLIPVisionModel(CLIPVisionConfig(
        image_size=28, patch_size=14, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64)).eval()
    model.save_pretrained(tmp_path)
    tower = load_clip(tmp_path, CLIP)
    arr = random_images(2, 28)
    proc = CLIPImageProcessorPil(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28})
    pixels = proc([Image.fromarray(a) for a in arr], return_tensors="pt").pixel_values
    x = as_unit_tensor(arr)
    assert torch.allclose(tower.preprocess(x), pixels, atol=1e-5)
    with torch.no_grad():
        feats = tower(x)
        hidden = model(pixel_values=pixels, output_hidden_states=True).hidden_states[-2]
    assert feats.shape == (2, (28 // 14) ** 2, 32)
    assert torch.allclose(feats, hidden[:, 1:], atol=1e-5)


def test_tiny_siglip_training_is_seeded_and_finite():
    images = torch.from_numpy(random_images(8, 32)).permute(0, 3, 1, 2).contiguous()
    captions = [f"a watch showing {i:02d}:{3 * i:02d}" for i in range(8)]
    tok = train_bpe(captions * 5, vocab_size=300)
    a, metrics = train_siglip(SIGLIP, images, captions, tok, seed=0)
    b, _ = train_siglip(SIGLIP, images, captions, tok, seed=0)
    assert np.isfinite(metrics["final_loss"]) and metrics["steps"] == 3
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    assert a.config.text_config.vocab_size == len(tok)


def test_captions_by_image_needs_one_caption_per_image():
    records = [{"task": "caption", "image_id": 1, "conversations": [{}, {"value": "b"}]},
               {"task": "vqa", "image_id": 0, "conversations": [{}, {"value": "x"}]},
               {"task": "caption", "image_id": 0, "conversations": [{}, {"value": "a"}]}]
    assert captions_by_image(records, 2, "f.json") == ["a", "b"]
    with pytest.raises(ValueError, match="f.json: no caption record for image 2"):
        captions_by_image(records, 3, "f.json")


def test_captions_end_in_eos_at_the_pooled_last_position():
    tok = train_bpe(["a smart watch at 01:02:03"] * 4, vocab_size=300)
    ids, mask = encode_captions(tok, ["a", "a smart watch"])
    assert ids.shape == mask.shape and ids.shape[0] == 2
    assert ids[:, -1].tolist() == [tok.eos_token_id] * 2
    n = mask.sum(1)
    assert n[0] < n[1] and mask[0, : ids.shape[1] - n[0]].sum() == 0  # left padding
    assert ids[0, ids.shape[1] - n[0]] == tok.bos_token_id
    assert (ids[mask == 0] == tok.pad_token_id).all()
