"""Caption attributes parsed back from text; precision / recall by hand."""

import numpy as np
import pytest

from uvlm.data.attributes import Watch
from uvlm.data.tasks import CAPTION_OPENERS, describe
from uvlm.eval.caption import caption_ratios, parse_caption

GT = {"hour": 0, "minute": 4, "second": 5, "weather": "sunny", "battery": 35,
      "weather_pos": "top-left", "battery_pos": "bottom-right"}


def test_parse_template_phrasings():
    text = ("The image shows a smart watch, showing the time 03:04:05, with a cloudy weather "
            "icon, with 7% battery, with the weather icon at top-right, battery shown at the "
            "bottom-left.")
    assert parse_caption(text) == {"time": (3, 4, 5), "weather": "cloudy", "battery": 7,
                                   "weather_pos": "top-right", "battery_pos": "bottom-left"}


def test_parse_free_phrasings_and_missing_attributes():
    assert parse_caption("A watch. The battery indicator sits bottom-right")["battery_pos"] == (
        "bottom-right")
    assert parse_caption("top-left: the weather icon")["weather_pos"] == "top-left"
    out = parse_caption("A watch with something at top-left.")
    assert out == dict.fromkeys(["time", "weather", "battery", "weather_pos", "battery_pos"])


def test_parser_recovers_every_generated_template():
    # Round trip over the data helper's own clause templates.
    gen = np.random.default_rng(0)
    for i in range(200):
        watch = Watch(hour=i % 13, minute=i % 60, second=(7 * i) % 60,
                      weather=("sunny", "cloudy", "raining")[i % 3], battery=i % 101,
                      weather_pos="top-left", battery_pos=("top-right", "bottom-left")[i % 2],
                      face_color=(1, 2, 3))
        text, mentioned = describe(gen, watch, CAPTION_OPENERS[i % 3])
        parsed = parse_caption(text)
        for a in mentioned:
            expected = {"time": (watch.hour, watch.minute, watch.second)}.get(
                a, getattr(watch, a))
            assert parsed[a] == expected, (text, a)
        for a in set(parsed) - set(mentioned):
            assert parsed[a] is None, (text, a)


def _cap(i, answer, ref):
    return {"task": "caption", "record_id": f"c{i}", "answer": answer, "gt_attributes": GT,
            "ref_attributes": ref}


def test_precision_recall_by_hand():
    rows = [
        # time correct (12 == 0 on the dial), weather wrong, battery off by 5
        _cap(0, "A watch, showing the time 12:04:05, showing cloudy weather, with 40% battery.",
             ["time", "weather"]),
        # time wrong by one hour; weather correct; mentions nothing else
        _cap(1, "A watch, showing the time 01:04:05, with a sunny weather icon.",
             ["time", "battery"]),
        {"task": "vqa", "record_id": "v", "answer": "", "gt_attributes": GT,
         "ref_attributes": []},
    ]
    ratios = caption_ratios(rows)  # what uvlm.eval.score reports for the caption section
    assert ratios.num.shape[0] == 2  # one cluster per caption; the VQA row is ignored
    out = ratios.values()
    assert out["precision_time"] == 0.5 and out["recall_time"] == 0.5
    assert out["mention_rate_time"] == 1.0
    assert out["precision_weather"] == 0.5  # one right, one wrong
    assert out["recall_weather"] == 0.0  # the caption whose reference says weather is wrong
    assert out["precision_battery"] == 0.0 and out["recall_battery"] == 0.0
    assert out["mention_rate_battery"] == 0.5
    assert out["precision_weather_pos"] is None and out["recall_weather_pos"] is None
    # partial credit: 12 vs 0 -> 1; 01 vs 00 -> 1 - (1/6)/3
    assert out["score_time"] == pytest.approx((1 + 1 - 1 / 18) / 2)
    # battery stated only in caption 0 (ref: no) -> caption 1's ref asks, says nothing -> 0
    assert out["score_battery"] == 0.0
    # micro: mentioned 5 (2 time, 2 weather, 1 battery), correct 2
    assert out["precision_total"] == pytest.approx(2 / 5)
    # in_ref 4 (time x2, weather, battery), correct among them: time in caption 0
    assert out["recall_total"] == pytest.approx(1 / 4)


def test_empty_input():
    ratios = caption_ratios([])
    assert ratios.num.shape[0] == 0 and ratios.values()["precision_time"] is None
