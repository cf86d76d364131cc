"""Judge: labels, scoring by hand, training on a learnable toy task, save/load round trip."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from uvlm.eval.judge import (
    HEADS,
    Judge,
    labels_of,
    load_judge,
    reading_ratios,
    save_judge,
    summary,
    train_judge,
)

GT = [
    {"hour": 12, "minute": 4, "second": 5, "weather": "sunny", "battery": 35,
     "weather_pos": "top-left", "battery_pos": "bottom-right"},
    {"hour": 3, "minute": 59, "second": 0, "weather": "raining", "battery": 100,
     "weather_pos": "bottom-left", "battery_pos": "top-right"},
]


def test_labels_wrap_hour_12_to_0():
    y = labels_of(GT)
    assert y["hour"].tolist() == [0, 3] and y["minute"].tolist() == [4, 59]
    assert y["weather"].tolist() == [0, 2] and y["battery"].tolist() == [35, 100]
    assert y["weather_pos"].tolist() == [0, 2] and y["battery_pos"].tolist() == [3, 1]


def test_generation_accuracy_scores_only_asked_attributes():
    pred = labels_of(GT)
    pred["minute"] = np.array([5, 59])  # item 0's minute is wrong
    pred["battery"] = np.array([45, 0])  # off by 10 and by 100
    pred["weather"] = np.array([1, 2])  # item 0's weather is wrong, but it was not asked
    asked = [["time", "battery"], ["weather", "battery_pos"]]
    out = summary(reading_ratios(pred, GT, asked, ["a", "b"]))
    assert out["hour"] == 1.0 and out["count_hour"] == 1
    assert out["minute"] == 0.0
    assert out["battery"] == pytest.approx(0.9) and out["count_battery"] == 1
    assert out["weather"] == 1.0 and out["count_weather"] == 1
    assert out["weather_pos"] is None
    # items: hour 1, minute 0, battery 0.9, weather 1, battery_pos 1 -> 3.9 / 5
    assert out["total"] == pytest.approx(3.9 / 5) and out["count_total"] == 5


def test_held_out_accuracy_scores_every_head():
    out = summary(reading_ratios(labels_of(GT), GT, None, ["a", "b"]))
    assert out["total"] == 1.0 and out["count_total"] == 2 * len(HEADS)


def _toy_features(n, gen):
    """(n, 4, 8) features whose token k one-hot-encodes a few attributes."""
    gt = [{"hour": int(gen.integers(13)), "minute": int(gen.integers(60)), "second": 0,
           "weather": ("sunny", "cloudy", "raining")[int(gen.integers(3))],
           "battery": int(gen.integers(101)), "weather_pos": "top-left",
           "battery_pos": "top-right"} for _ in range(n)]
    y = labels_of(gt)
    x = torch.randn(n, 4, 8, generator=torch.Generator().manual_seed(0)) * 0.1
    x[torch.arange(n), 0, torch.as_tensor(y["weather"])] += 3.0
    x[:, 1, 0] += torch.as_tensor(y["battery"]).float() / 50 - 1
    return x, gt


def test_feature_judge_learns_a_readable_rule():
    gen = np.random.default_rng(0)
    x, gt = _toy_features(256, gen)
    torch.manual_seed(0)
    judge = Judge("siglip", num_tokens=4, feature_dim=8)
    losses = train_judge(judge, x, labels_of(gt), steps=150, batch_size=64, lr=3e-3, seed=0)
    assert losses[-1] < losses[0]
    xt, gt_t = _toy_features(64, np.random.default_rng(1))
    out = summary(reading_ratios(judge.read(xt), gt_t, None, [str(i) for i in range(64)]))
    assert out["weather"] > 0.9 and out["battery"] > 0.85
    with pytest.raises(ValueError, match=r"expected \(B, 4, 8\) features"):
        judge.read(torch.zeros(2, 5, 8))


def test_pixel_judge_shapes_training_and_round_trip(tmp_path):
    torch.manual_seed(0)
    judge = Judge("pixels", image_size=32)
    images = torch.randint(0, 256, (16, 3, 40, 40), dtype=torch.uint8)  # resized to 32
    gt = GT * 8
    losses = train_judge(judge, images, labels_of(gt), steps=3, batch_size=4, lr=1e-3, seed=0)
    assert len(losses) == 3 and np.isfinite(losses).all()
    read = judge.read(images)
    assert set(read) == set(HEADS) and read["battery"].shape == (16,)
    assert 0 <= read["battery"].min() and read["battery"].max() <= 100
    assert judge.features(images[:5]).shape == (5, 64)
    # float input in [-1, 1] at another size reads the same images
    assert judge.read(images.float() / 127.5 - 1)["hour"].tolist() == read["hour"].tolist()

    cfg = SimpleNamespace(root=tmp_path)
    save_judge(judge, tmp_path / "eval" / "judge" / "pixels", {"steps": 3})
    again = load_judge(cfg, "pixels")
    for k, v in judge.state_dict().items():
        assert torch.equal(v, again.state_dict()[k])
    with pytest.raises(FileNotFoundError, match="judge-train"):
        load_judge(cfg, "siglip")
