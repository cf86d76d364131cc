"""Answers file: rows built from data records, writer/reader round trip, errors name the line."""

import json

import pytest

from uvlm.eval.answers import AnswersError, answer_rows, gt_attributes, read_answers, write_answers

GT = {"hour": 12, "minute": 4, "second": 5, "weather": "sunny", "battery": 35,
      "weather_pos": "top-left", "battery_pos": "bottom-right"}

VQA = {"id": "test-000003-vqa", "image_id": 3, "split": "test", "task": "vqa",
       "image": "images/test/000003.png",
       "conversations": [{"from": "human", "value": "<image>\nWhat time is it?"},
                         {"from": "gpt", "value": "12:04:05"},
                         {"from": "human", "value": "Where is the weather icon?"},
                         {"from": "gpt", "value": "top-left"}],
       "attributes": ["time", "weather_pos"]}
GEN = {"id": "test-000003-generation", "image_id": 3, "split": "test", "task": "generation",
       "image": "images/test/000003.png",
       "conversations": [{"from": "human", "value": "Please show a smart watch, with 35% battery."},
                         {"from": "gpt", "value": "Sure, here is the image. \n<image>"}],
       "attributes": ["time", "battery"]}
CAP = {"id": "test-000003-caption", "image_id": 3, "split": "test", "task": "caption",
       "image": "images/test/000003.png",
       "conversations": [{"from": "human", "value": "<image>\nDescribe this image."},
                         {"from": "gpt", "value": "The image shows a smart watch, showing the "
                                                  "time 12:04:05."}],
       "attributes": ["time"]}


def _rows():
    return (answer_rows(VQA, ["12:04:05", "top-left"], GT)
            + answer_rows(GEN, ["Sure"], GT, output_img_file="images/test-000003.png")
            + answer_rows(CAP, ["A watch showing 12:04:05."], GT))


def test_rows_from_records_carry_official_and_own_fields():
    rows = _rows()
    assert [r["question_id"] for r in rows] == ["test-000003-vqa-0", "test-000003-vqa-1",
                                                 "test-000003-generation", "test-000003-caption"]
    assert rows[0]["prompt"].startswith("<image>") and rows[0]["groun_truth"] == "12:04:05"
    assert rows[1]["turn"] == 1 and rows[1]["attribute"] == "weather_pos"
    assert rows[2]["prompt_attributes"] == ["time", "battery"] and rows[2]["attribute"] is None
    assert rows[3]["ref_attributes"] == ["time"] and rows[3]["output_img_file"] is None


def test_write_read_round_trip(tmp_path):
    path = tmp_path / "answers.jsonl"
    write_answers(path, _rows())
    assert read_answers(path) == _rows()
    assert len(path.read_text().splitlines()) == 4


def test_reader_names_file_and_line(tmp_path):
    path = tmp_path / "answers.jsonl"
    lines = [json.dumps(r) for r in _rows()]
    bad = dict(_rows()[1], attribute="colour")
    lines[1] = json.dumps(bad)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(AnswersError, match=f"{path}:2: attribute 'colour'"):
        read_answers(path)
    path.write_text(lines[0] + "\nnot json\n")
    with pytest.raises(AnswersError, match=f"{path}:2: not valid JSON"):
        read_answers(path)


def test_reader_rejects_missing_fields_and_bad_truth(tmp_path):
    path = tmp_path / "answers.jsonl"
    row = _rows()[0]
    del row["gt_attributes"]
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(AnswersError, match=r":1: missing fields \['gt_attributes'\]"):
        read_answers(path)
    row = dict(_rows()[0], gt_attributes=dict(GT, battery=101))
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(AnswersError, match="gt_attributes.battery = 101"):
        read_answers(path)
    # the authors' own format passes the official-only check
    path.write_text(json.dumps({"prompt": "<image>\nQ", "groun_truth": "1%", "answer": "2%",
                                "model_id": "x", "metadata": {}}) + "\n")
    assert read_answers(path, official_only=True)[0]["answer"] == "2%"
    with pytest.raises(AnswersError, match="missing fields"):
        read_answers(path)


def test_missing_file_and_generation_without_output(tmp_path):
    with pytest.raises(FileNotFoundError, match="answers file not found"):
        read_answers(tmp_path / "nope.jsonl")
    with pytest.raises(AnswersError, match="generation row without output_img_file"):
        answer_rows(GEN, ["Sure"], GT)


def test_writer_rejects_duplicates_and_turn_mismatch(tmp_path):
    with pytest.raises(AnswersError, match="duplicate question_id"):
        write_answers(tmp_path / "a.jsonl", _rows() + _rows()[:1])
    with pytest.raises(AnswersError, match="2 human turns, 2 gpt turns, 1 answers"):
        answer_rows(VQA, ["12:04:05"], GT)


def test_gt_attributes_from_csv_strings():
    row = {"id": "3", "file": "images/test/000003.png", "hour": "12", "minute": "4",
           "second": "5", "weather": "sunny", "battery": "35", "weather_pos": "top-left",
           "battery_pos": "bottom-right", "face_color": "#102030"}
    assert gt_attributes(row) == GT


def test_empty_file_is_an_error_and_trailing_blank_lines_are_accepted(tmp_path):
    path = tmp_path / "answers.jsonl"
    for empty in ("", "\n", "\n\n"):
        path.write_text(empty)
        with pytest.raises(AnswersError, match=f"{path}: empty answers file"):
            read_answers(path)
    lines = [json.dumps(r) for r in _rows()]
    path.write_text("\n".join(lines) + "\n\n")  # a trailing blank line
    assert read_answers(path) == _rows()
    path.write_text("\n".join(lines))  # no final newline
    assert read_answers(path) == _rows()
    path.write_text(lines[0] + "\n\n" + lines[1] + "\n")  # a blank line in the middle
    with pytest.raises(AnswersError, match=f"{path}:2: empty line"):
        read_answers(path)
