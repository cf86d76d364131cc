"""VQA scores (docs/paper.md §6.1): hand-computed values of each formula, edge cases, protocols."""

import json
import subprocess
import sys

import pytest

from uvlm.eval.vqa import (
    aggregate,
    battery_score,
    category_of_truth,
    contains_score,
    full_items,
    official_items,
    score_vqa,
    time_score,
)


def test_time_exact_and_extra_words():
    assert time_score("03:04:05", "03:04:05") == 1.0
    assert time_score("It is 03:04:05 now.", "03:04:05") == 1.0


def test_time_hand_computed():
    # dh = 2 -> 2/6, dm = 10 -> 10/30, ds = 0; error = (1/3 + 1/3 + 0) / 3 = 2/9
    assert time_score("05:14:05", "03:04:05") == pytest.approx(1 - 2 / 9)


def test_time_hour_wraps_12_and_0_as_the_same_dial():
    assert time_score("00:10:20", "12:10:20") == 1.0
    assert time_score("12:10:20", "00:10:20") == 1.0
    # |11 - 0| = 11 -> min(11, 1) = 1 -> error (1/6) / 3
    assert time_score("11:00:00", "00:00:00") == pytest.approx(1 - 1 / 18)


def test_time_minute_and_second_wrap_59_to_0():
    # |59 - 0| = 59 -> min(59, 1) = 1 for both -> error (1/30 + 1/30) / 3
    assert time_score("01:59:59", "01:00:00") == pytest.approx(1 - 2 / 90)
    # the worst reading: 6 h, 30 min, 30 s away -> 0
    assert time_score("06:30:30", "00:00:00") == pytest.approx(0.0)


def test_time_out_of_range_readings_stay_in_0_1():
    # The authors' min(|d|, 12-|d|) would give 14 -> -2 and a score above 1; modulo 12: 2.
    assert time_score("15:00:00", "01:00:00") == pytest.approx(1 - 2 / 18)
    assert 0.0 <= time_score("99:99:99", "00:00:00") <= 1.0


def test_time_no_match_and_first_match():
    assert time_score("three o'clock", "03:00:00") == 0.0
    assert time_score("3:04:05", "03:04:05") == 0.0  # needs two digits
    assert time_score("01:00:00 or 03:00:00", "03:00:00") == pytest.approx(1 - 2 / 18)


def test_time_bad_truth_raises():
    with pytest.raises(ValueError, match="contains no HH:MM:SS"):
        time_score("03:00:00", "three")


def test_battery_scores():
    assert battery_score("35%", "35%") == 1.0
    assert battery_score("The battery is at 40% now", "35%") == pytest.approx(0.95)
    assert battery_score("100%", "0%") == pytest.approx(0.0)
    assert battery_score("0%", "100%") == pytest.approx(0.0)
    assert battery_score("100%", "100%") == 1.0
    assert battery_score("0%", "0%") == 1.0
    assert battery_score("thirty percent", "35%") == 0.0
    # the number needs a word boundary before it, so "101%" matches neither 100 nor "01"
    assert battery_score("101%", "1%") == 0.0


def test_contains_score_is_a_substring_match():
    assert contains_score("sunny", "sunny") == 1.0
    assert contains_score("It looks sunny today", "sunny") == 1.0
    assert contains_score("cloudy", "sunny") == 0.0
    assert contains_score("top-left corner", "top-left") == 1.0
    assert contains_score("top left", "top-left") == 0.0


def test_category_of_truth_follows_the_authors_order():
    assert category_of_truth("03:04:05") == "time"
    assert category_of_truth("raining") == "weather"
    assert category_of_truth("bottom-right") == "position"
    assert category_of_truth("7%") == "battery"
    with pytest.raises(ValueError, match="unknown ground truth"):
        category_of_truth("blue")


def _row(i, prompt, truth, answer, turn=0, task="vqa", attribute="time"):
    return {"question_id": f"r{i}-{turn}", "record_id": f"r{i}", "prompt": prompt,
            "groun_truth": truth, "answer": answer, "turn": turn, "task": task,
            "attribute": attribute}


def test_micro_average_total():
    items = [("time", 0.5, "a"), ("time", 1.0, "b"), ("weather", 0.0, "c"),
             ("battery", 0.9, "d")]
    out = aggregate(items)
    assert out["time"] == pytest.approx(0.75) and out["count_time"] == 2
    assert out["weather"] == 0.0 and out["battery"] == pytest.approx(0.9)
    assert out["position"] is None and out["count_position"] == 0
    # micro: (0.5 + 1 + 0 + 0.9) / 4, not the mean of category means (0.55)
    assert out["total"] == pytest.approx(2.4 / 4) and out["count_total"] == 4


def test_official_protocol_filters_like_the_authors():
    rows = [
        _row(0, "<image>\nWhat time?", "03:04:05", "03:04:05"),
        _row(0, "And the weather?", "sunny", "cloudy", turn=1, attribute="weather"),
        _row(1, "Draw a watch", "Sure, here is the image. \n<image>", "ok", task="generation",
             attribute=None),
        _row(2, "<image>\nDescribe.", "The image shows a smart watch.", "x", task="caption",
             attribute=None),
        _row(3, "<image>\nWhere is the battery?", "top-left", "top-left",
             attribute="battery_pos"),
    ]
    out = score_vqa(rows, "official")
    assert out["count_total"] == 2 and out["count_time"] == 1 and out["count_position"] == 1
    assert out["total"] == 1.0 and out["weather"] is None


def test_official_protocol_stops_before_the_500th_record():
    rows = [_row(i, "<image>\nQ", "50%", "50%", attribute="battery") for i in range(600)]
    # later turns do not count as records
    rows.insert(10, _row(9, "Q2", "50%", "0%", turn=1, attribute="battery"))
    items = official_items(rows)
    assert len(items) == 499
    assert score_vqa(rows, "official")["battery"] == 1.0


def test_official_protocol_reads_files_in_the_authors_format():
    rows = [{"prompt": "<image>\nQ", "groun_truth": "sunny", "answer": "sunny"}] * 3
    assert score_vqa(rows, "official")["count_weather"] == 3


def test_full_protocol_scores_every_turn_and_checks_attribute():
    rows = [
        _row(0, "<image>\nWhat time?", "03:04:05", "03:04:05"),
        _row(0, "And the weather?", "sunny", "cloudy", turn=1, attribute="weather"),
        _row(0, "Where is the weather?", "top-left", "top-left", turn=2,
             attribute="weather_pos"),
    ]
    out = score_vqa(rows, "full")
    assert out["count_total"] == 3 and out["weather"] == 0.0
    assert out["total"] == pytest.approx(2 / 3)
    assert [c for _, _, c in full_items(rows)] == ["r0"] * 3  # one dialogue, one cluster
    rows[1]["attribute"] = "battery"
    with pytest.raises(ValueError, match="r0-1: attribute 'battery'"):
        score_vqa(rows, "full")


def test_score_vqa_command(tmp_path):
    path = tmp_path / "answers.jsonl"
    rows = [{"prompt": "<image>\nQ", "groun_truth": "03:00:00", "answer": "05:00:00"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = subprocess.run([sys.executable, "-m", "uvlm", "score-vqa", str(path), "--protocol",
                          "official"], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    assert result["time"] == pytest.approx(1 - 2 / 18) and result["count_time"] == 1
    assert set(result) >= {"time", "weather", "position", "battery", "total", "count_time",
                           "count_weather", "count_position", "count_battery"}


def test_score_vqa_command_names_a_malformed_line(tmp_path):
    path = tmp_path / "answers.jsonl"
    path.write_text(json.dumps({"prompt": "<", "groun_truth": "1%", "answer": "1%"}) + "\n{oops\n")
    out = subprocess.run([sys.executable, "-m", "uvlm", "score-vqa", str(path)],
                         capture_output=True, text=True)
    assert out.returncode != 0
    assert f"{path}:2: not valid JSON" in out.stderr
