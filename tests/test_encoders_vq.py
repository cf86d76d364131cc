"""The VQ tokenizer: LlamaGen VQ-16 state-dict layout, shapes, checkpoint errors, save/load."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from uvlm.encoders.vq import (
    VQ_16,
    VQArgs,
    VQModel,
    load_llamagen_checkpoint,
    load_vq_dir,
    save_vq,
)

FIXTURE = Path(__file__).parent / "fixtures" / "llamagen_vq16_state_dict.json"
TINY = VQArgs(codebook_size=32, codebook_dim=8, ch=8, ch_mult=(1, 2, 2), z_channels=16,
              num_res_blocks=1, norm_groups=4)


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return VQModel(TINY).eval()


def test_vq16_state_dict_has_exactly_llamagens_keys_and_shapes():
    upstream = json.loads(FIXTURE.read_text())["shapes"]
    ours = {k: list(v.shape) for k, v in VQModel(VQ_16).state_dict().items()}
    assert sorted(set(upstream) - set(ours)) == []
    assert sorted(set(ours) - set(upstream)) == []
    assert ours == upstream
    assert ours["quantize.embedding.weight"] == [16384, 8]


def test_encode_embed_decode_shapes_and_ranges():
    model = tiny_model()
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        codes = model.encode(x)
        assert codes.shape == (3, (32 // TINY.downsample) ** 2) and codes.dtype == torch.int64
        assert codes.min() >= 0 and codes.max() < TINY.codebook_size
        emb = model.embed(codes)
        assert emb.shape == (3, 64, 8)
        assert torch.allclose(emb.norm(dim=-1), torch.ones(3, 64), atol=1e-5)
        images = model.decode_code(codes)
    assert images.shape == (3, 3, 32, 32)
    assert images.min() >= -1 and images.max() <= 1


def test_codes_are_the_cosine_nearest_codebook_rows():
    model = tiny_model()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        z = model.quant_conv(model.encoder(x))  # (B, d, h, w)
        flat = F.normalize(z.permute(0, 2, 3, 1).reshape(-1, 8), dim=-1)
        want = (flat @ model.quantize.codebook().t()).argmax(1).view(2, -1)
        assert torch.equal(model.encode(x), want)


def test_decode_code_rejects_a_non_square_token_count():
    with pytest.raises(ValueError, match="15 codes per image is not a square"):
        tiny_model().decode_code(torch.zeros(1, 15, dtype=torch.long))


def test_straight_through_gives_the_encoder_reconstruction_gradients():
    model = tiny_model().train()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    recon, q = model(x)
    assert recon.shape == x.shape
    F.mse_loss(recon, x).backward()
    assert model.encoder.conv_in.weight.grad.abs().sum() > 0
    assert model.quantize.embedding.weight.grad is None  # only the codebook loss moves codes
    q.codebook_loss.backward()
    assert model.quantize.embedding.weight.grad.abs().sum() > 0


def test_revive_moves_unused_codes_onto_encoder_vectors():
    model = tiny_model().train()
    model.quantize.codebook_used.fill_(3)  # pretend only code 3 was used recently
    latents = F.normalize(torch.randn(10, 8), dim=-1)
    moved = model.quantize.revive(latents, torch.Generator().manual_seed(0))
    assert moved == TINY.codebook_size - 1
    w = model.quantize.embedding.weight
    assert all(any(torch.allclose(w[i], v) for v in latents) for i in range(32) if i != 3)


def test_checkpoint_with_a_wrong_shape_names_the_key(tmp_path):
    state = tiny_model().state_dict()
    state["decoder.conv_out.weight"] = torch.zeros(3, 8, 1, 1)
    del state["quant_conv.bias"]
    path = tmp_path / "vq.pt"
    torch.save({"model": state, "steps": 1}, path)
    with pytest.raises(ValueError) as err:
        load_llamagen_checkpoint(path, TINY)
    msg = str(err.value)
    assert "decoder.conv_out.weight: shape [3, 8, 1, 1], expected [3, 8, 3, 3]" in msg
    assert "missing key quant_conv.bias" in msg and str(path) in msg


def test_checkpoint_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_llamagen_checkpoint(tmp_path / "nope.pt", TINY)
    torch.save({"state": {}}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="expected a dict with a 'model' entry"):
        load_llamagen_checkpoint(tmp_path / "bad.pt", TINY)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt: not a loadable torch checkpoint"):
        load_llamagen_checkpoint(tmp_path / "junk.pt", TINY)


def test_llamagen_checkpoint_and_safetensors_round_trip(tmp_path):
    model = tiny_model(seed=1)
    torch.save({"model": model.state_dict()}, tmp_path / "vq.pt")
    loaded = load_llamagen_checkpoint(tmp_path / "vq.pt", TINY).eval()
    save_vq(loaded, tmp_path / "vq")
    again = load_vq_dir(tmp_path / "vq")
    assert again.args == TINY
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        codes = model.encode(x)
        assert torch.equal(again.encode(x), codes)
        assert torch.equal(again.decode_code(codes), model.decode_code(codes))


def test_norm_groups_must_divide_every_width():
    with pytest.raises(ValueError, match="norm_groups=32 does not divide the widths \\[8, 16\\]"):
        VQArgs(ch=8, ch_mult=(1, 2), norm_groups=32)
