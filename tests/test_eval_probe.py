"""probe-spaces: linear readouts of the attributes, scored with the paper's formulas."""

import numpy as np
import pytest

from uvlm.data.attributes import Watch
from uvlm.eval import probe


def watches(n, seed):
    rng = np.random.default_rng(seed)
    corners = ["top-left", "top-right", "bottom-left", "bottom-right"]
    return [Watch(int(rng.integers(0, 13)), int(rng.integers(0, 60)), int(rng.integers(0, 60)),
                  str(rng.choice(["sunny", "cloudy", "raining"])), int(rng.integers(0, 101)),
                  *[str(c) for c in rng.choice(corners, 2, replace=False)], (0, 0, 0))
            for _ in range(n)]


def encode(ws):
    """Features that hold every attribute linearly (one-hot classes, hands as cos/sin)."""
    rows = []
    for w in ws:
        one = [float(w.weather == x) for x in ("sunny", "cloudy", "raining")]
        for pos in (w.weather_pos, w.battery_pos):
            one += [float(pos == c) for c in ("top-left", "top-right", "bottom-left",
                                              "bottom-right")]
        one += [float(w.hour % 12 == h) for h in range(12)]
        for v in (w.minute, w.second):
            a = 2 * np.pi * v / 60
            one += [np.cos(a), np.sin(a)]
        rows.append(one + [w.battery / 100])
    return np.array(rows)


def test_readouts_of_a_space_that_holds_everything_are_perfect():
    train, test = watches(600, 0), watches(100, 1)
    out = probe.probe(encode(train), train, encode(test), test, seed=0, n_resamples=50)
    assert out["weather"] == 1.0 and out["position"] == 1.0
    assert out["time"] > 0.99 and out["battery"] > 0.99
    assert out["count_position"] == 200 and out["count_total"] == 500  # 5 items per image


def test_a_space_without_the_attribute_reads_at_chance():
    train, test = watches(600, 0), watches(300, 1)
    noise = np.random.default_rng(2)
    out = probe.probe(noise.normal(size=(600, 8)), train, noise.normal(size=(300, 8)), test,
                      seed=0, n_resamples=50)
    assert out["weather"] < 0.5 and out["position"] < 0.4


def test_score_uses_the_vqa_formulas():
    w = Watch(3, 15, 0, "sunny", 40, "top-left", "bottom-right", (0, 0, 0))
    answers = [{"time": "03:15:30", "weather": "cloudy", "battery": "50%",
                "weather_pos": "top-left", "battery_pos": "bottom-right"}]
    r = probe.score(answers, [w]).values()
    # time: 1 - (0 + 0 + 30/30) / 3; battery 1 - 10/100; weather wrong; both positions right
    assert r["time"] == pytest.approx(2 / 3) and r["battery"] == pytest.approx(0.9)
    assert r["weather"] == 0.0 and r["position"] == 1.0
    assert r["total"] == pytest.approx((2 / 3 + 0.9 + 0 + 2) / 5)


def test_codes_are_one_hot_per_position():
    x = probe.design(np.array([[0, 2], [1, 0]]), codebook_size=3).toarray()
    assert x.tolist() == [[1, 0, 0, 0, 0, 1], [0, 1, 0, 1, 0, 0]]
    assert probe.design(np.ones((2, 3, 4))).shape == (2, 12)


def test_hands_round_trip_through_their_angle():
    v = np.arange(60)
    assert np.array_equal(probe._from_angle(probe._angle(v, 60), 60), v)


def test_pixels_are_mean_pooled():
    img = np.zeros((1, 3, 4, 4), np.uint8)
    img[0, :, :2, :2] = 255
    x = probe.pooled_pixels(img)
    assert x.shape == (1, 12) and x[0, 0] == 1.0 and x[0, 1] == 0.0
