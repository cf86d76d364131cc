"""uvlm.model.linear_ce: the chunked cross-entropy of the VQ head equals F.cross_entropy."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from uvlm.model.linear_ce import chunk_rows, linear_cross_entropy_sum


def _inputs(m=11, hidden=6, k=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(m, hidden, generator=g, requires_grad=True)
    w = torch.randn(k, hidden, generator=g, requires_grad=True)
    b = torch.randn(k, generator=g, requires_grad=True)
    return h, w, b, torch.randint(k, (m,), generator=g)


def _grads(loss, *ts):
    return torch.autograd.grad(loss, ts)


@pytest.mark.parametrize("rows", [1, 4, 11, 64])
def test_value_and_gradients_equal_the_reference(rows):
    h, w, b, y = _inputs()
    want = F.cross_entropy(F.linear(h, w, b), y, reduction="sum")
    got = linear_cross_entropy_sum(h, w, b, y, rows=rows)
    assert got.dtype == torch.float32 and got.shape == ()
    assert torch.allclose(got, want, atol=1e-5)
    # a scale on the loss reaches every gradient (the backward only scales what forward saved)
    for g_want, g_got in zip(_grads(2.5 * want, h, w, b), _grads(2.5 * got, h, w, b),
                             strict=True):
        assert torch.allclose(g_got, g_want, atol=1e-5)


def test_a_hand_computed_case():
    # one row, two classes with logits (0, log 3): CE of class 0 = log(1 + 3) = log 4
    h = torch.tensor([[1.0]], requires_grad=True)
    w = torch.tensor([[0.0], [1.0]])
    b = torch.tensor([0.0, torch.log(torch.tensor(3.0)) - 1])
    loss = linear_cross_entropy_sum(h, w, b, torch.tensor([0]))
    assert loss.item() == pytest.approx(torch.log(torch.tensor(4.0)).item(), abs=1e-6)
    # d/dh = sum_k (p_k - y_k) w_k = 0.75 * 1 - 0 = 0.75
    (gh,) = torch.autograd.grad(loss, h)
    assert gh.item() == pytest.approx(0.75, abs=1e-6)


def test_only_the_gradients_asked_for_are_made():
    h, w, b, y = _inputs()
    w, b = w.detach(), b.detach()
    got = linear_cross_entropy_sum(h, w, b, y, rows=4)
    (gh,) = torch.autograd.grad(got, h)
    want = torch.autograd.grad(F.cross_entropy(F.linear(h, w, b), y, reduction="sum"), h)[0]
    assert torch.allclose(gh, want, atol=1e-5)
    with torch.no_grad():
        assert torch.allclose(linear_cross_entropy_sum(h, w, b, y), got)


def test_bf16_autocast_runs_the_matmuls_in_bf16_like_the_reference():
    h, w, b, y = _inputs(m=40, hidden=16, k=33)
    with torch.autocast("cpu", torch.bfloat16):
        want = F.cross_entropy(F.linear(h, w, b).float(), y, reduction="sum")
        got = linear_cross_entropy_sum(h, w, b, y, rows=8)
    assert torch.allclose(got, want, rtol=2e-2)
    grads = zip(_grads(want, h, w, b), _grads(got, h, w, b), strict=True)
    for (g_want, g_got), t in zip(grads, (h, w, b), strict=True):
        assert g_got.dtype == t.dtype
        assert torch.allclose(g_got, g_want, rtol=5e-2, atol=5e-2)
    # the compute dtype really changed: outside autocast the loss is the float32 one
    fp32 = linear_cross_entropy_sum(h, w, b, y, rows=8)
    assert not torch.equal(got, fp32)
    assert torch.allclose(fp32, F.cross_entropy(F.linear(h, w, b), y, reduction="sum"),
                          atol=1e-4)


def test_chunk_rows_and_bad_shapes():
    assert chunk_rows(4096, torch.device("cpu")) == 256
    assert chunk_rows(1 << 22, torch.device("cpu")) == 1
    h, w, b, y = _inputs()
    with pytest.raises(ValueError, match="targets"):
        linear_cross_entropy_sum(h, w, b, y[:-1])
