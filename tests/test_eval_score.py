"""metrics.json structure from answers rows; generated outputs are read or refused loudly."""

import numpy as np
import pytest
import torch
from PIL import Image

from uvlm.eval.answers import answer_rows
from uvlm.eval.fid import judge_extractor
from uvlm.eval.judge import Judge
from uvlm.eval.score import load_generated, score_answers

GT = {"hour": 1, "minute": 2, "second": 3, "weather": "cloudy", "battery": 50,
      "weather_pos": "top-right", "battery_pos": "bottom-left"}


def _records(i):
    rid = f"test-{i:06d}"
    return [
        {"id": f"{rid}-vqa", "image_id": i, "task": "vqa",
         "conversations": [{"from": "human", "value": "<image>\nWhat time is it?"},
                           {"from": "gpt", "value": "01:02:03"},
                           {"from": "human", "value": "What is the battery level?"},
                           {"from": "gpt", "value": "50%"}],
         "attributes": ["time", "battery"]},
        {"id": f"{rid}-generation", "image_id": i, "task": "generation",
         "conversations": [{"from": "human", "value": "Please show a smart watch, showing "
                                                      "cloudy weather."},
                           {"from": "gpt", "value": "Sure, here is the image. \n<image>"}],
         "attributes": ["time", "weather"]},
        {"id": f"{rid}-caption", "image_id": i, "task": "caption",
         "conversations": [{"from": "human", "value": "<image>\nDescribe this image."},
                           {"from": "gpt", "value": "A smart watch, showing the time 01:02:03."}],
         "attributes": ["time"]},
    ]


def _rows(n=4):
    rows = []
    for i in range(n):
        vqa, gen, cap = _records(i)
        rows += answer_rows(vqa, ["01:02:03", "40%"], GT)
        rows += answer_rows(gen, ["Sure"], GT, output_img_file=f"gen/{i}.png")
        rows += answer_rows(cap, ["A watch showing the time 01:02:03."], GT)
    return rows


def test_metrics_structure_with_a_feature_judge():
    rows = _rows()
    torch.manual_seed(0)
    judge = Judge("siglip", num_tokens=4, feature_dim=8).eval()
    gt_features = torch.randn(4, 4, 8)
    out = score_answers(rows, n_resamples=50, seed=0, judge=judge,
                        gen_outputs=gt_features.clone(), gt_features=gt_features)
    assert set(out) == {"vqa_official", "vqa_full", "caption", "generation"}
    assert out["vqa_official"]["time"] == 1.0 and out["vqa_official"]["count_total"] == 4
    assert out["vqa_full"]["battery"] == pytest.approx(0.9) and out["vqa_full"]["count_total"] == 8
    assert out["vqa_full"]["ci"]["battery"] == pytest.approx([0.9, 0.9])
    assert out["vqa_full"]["ci"]["weather"] is None
    assert out["caption"]["precision_time"] == 1.0 and out["caption"]["count_captions"] == 4
    gen = out["generation"]
    assert gen["judge_space"] == "siglip" and gen["count_hour"] == 4 and gen["count_weather"] == 4
    assert gen["count_battery"] == 0  # the prompts never asked for it
    assert gen["cosine"] == pytest.approx(1.0) and gen["retrieval_top1"] == 1.0
    assert gen["ci"]["cosine"] == pytest.approx([1.0, 1.0])


def test_pixel_outputs_get_fid_with_a_named_extractor():
    rows = _rows()
    torch.manual_seed(0)
    judge = Judge("pixels", image_size=16).eval()
    images = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    reference = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8)
    out = score_answers(rows, n_resamples=20, seed=0, judge=judge, gen_outputs=images,
                        fid_reference=reference,
                        fid_extractor=("standin-judge-pixels", judge_extractor(judge)))
    gen = out["generation"]
    assert gen["fid_extractor"] == "standin-judge-pixels" and np.isfinite(gen["fid"])
    assert (gen["count_fid_generated"], gen["count_fid_reference"]) == (4, 6)
    assert "cosine" not in gen


def test_generation_rows_need_outputs_and_a_judge():
    with pytest.raises(ValueError, match="4 generation rows but no judge"):
        score_answers(_rows(), n_resamples=10, seed=0)
    no_gen = [r for r in _rows() if r["task"] != "generation"]
    assert score_answers(no_gen, n_resamples=10, seed=0)["generation"] == {"count_total": 0}


def test_load_generated_reads_pngs_and_names_missing_files(tmp_path):
    rows = _rows(2)
    path = tmp_path / "answers.jsonl"
    (tmp_path / "gen").mkdir()
    Image.fromarray(np.full((8, 8, 3), 7, np.uint8)).save(tmp_path / "gen" / "0.png")
    with pytest.raises(FileNotFoundError, match=r"gen/1.png: generated output of "
                                                r"test-000001-generation"):
        load_generated(path, rows, "pixels")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "gen" / "1.png")
    images = load_generated(path, rows, "pixels")
    assert images.shape == (2, 3, 8, 8) and images.dtype == torch.uint8 and images[0].max() == 7



def test_oracle_answers_on_the_data_helpers_records_score_one():
    # Real records (uvlm.data.tasks) answered with their own ground truth: every VQA and
    # caption metric is 1, so scorer and templates agree.
    from dataclasses import asdict

    from uvlm.data.attributes import sample_watch
    from uvlm.data.tasks import make_records

    gen = np.random.default_rng(0)
    rows = []
    for i in range(30):
        watch = sample_watch(gen)
        gt = {k: v for k, v in asdict(watch).items() if k != "face_color"}
        for record in make_records(gen, watch, "test", i, f"images/test/{i:06d}.png"):
            if record["task"] != "generation":
                truth = [t["value"] for t in record["conversations"] if t["from"] == "gpt"]
                rows += answer_rows(record, truth, gt)
    out = score_answers(rows, n_resamples=10, seed=0)
    assert out["vqa_official"]["total"] == 1.0 and out["vqa_official"]["count_total"] == 30
    assert out["vqa_full"]["total"] == 1.0 and out["vqa_full"]["count_total"] >= 30
    assert out["caption"]["precision_total"] == 1.0 and out["caption"]["recall_total"] == 1.0
