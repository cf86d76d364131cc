"""Text tasks: the paper's templates, answer formats and probabilities (docs/paper.md §1.2)."""

import re
from collections import Counter

import pytest

from uvlm.data import tasks
from uvlm.data.attributes import ATTRIBUTES, POSITIONS, WEATHERS, sample_watch
from uvlm.data.records import image_file, record_problem
from uvlm.utils import rng

ANSWER = {
    "time": re.compile(r"(0\d|1[0-2]):[0-5]\d:[0-5]\d"),
    "battery": re.compile(r"(\d|[1-9]\d|100)%"),
    "weather": re.compile("|".join(WEATHERS)),
    "weather_pos": re.compile("|".join(POSITIONS)),
    "battery_pos": re.compile("|".join(POSITIONS)),
}


@pytest.fixture(scope="module")
def samples():
    out = []
    for i in range(3000):
        gen = rng(0, "tasks-test", i)
        w = sample_watch(gen)
        out.append((w, tasks.make_records(gen, w, "train", i, image_file("train", i))))
    return out


def test_template_counts_are_the_papers():
    assert {k: len(v) for k, v in tasks.QUESTIONS.items()} == {
        "weather": 9, "time": 10, "battery": 10, "battery_pos": 10, "weather_pos": 10}
    assert len(tasks.CAPTION_PROMPTS) == 10
    assert all(p.startswith("<image>\n") for p in tasks.CAPTION_PROMPTS)
    assert len(tasks.CAPTION_OPENERS) == len(tasks.GENERATION_OPENERS) == 3
    assert all(3 <= len(v) <= 4 for v in tasks.CLAUSES.values())
    assert tasks.GENERATION_ANSWERS == ("Sure, here is the image. \n<image>",
                                        "The image is shown as you wish. \n<image>",
                                        "The image is generated. \n<image>")
    for templates in tasks.QUESTIONS.values():
        assert len(set(templates)) == len(templates)
        assert not any("<image>" in t for t in templates)


def test_records_are_well_formed_and_ordered(samples):
    for i, (_, records) in enumerate(samples[:200]):
        assert [r["task"] for r in records] == ["generation", "vqa", "caption"]
        for r in records:
            assert record_problem(r) is None, r
            assert r["id"] == f"train-{i:06d}-{r['task']}"
    gen = rng(0, "order")
    w = sample_watch(gen)
    test = tasks.make_records(gen, w, "test", 5, image_file("test", 5))
    assert [r["task"] for r in test] == ["vqa", "generation", "caption"]


def test_vqa_answers_have_the_papers_formats(samples):
    for w, records in samples:
        vqa = records[1]
        conv = vqa["conversations"]
        assert conv[0]["value"].startswith("<image>\n")
        assert all("<image>" not in t["value"] for t in conv[1:])
        pairs = zip(conv[::2], conv[1::2], strict=True)
        for attr, (q, a) in zip(vqa["attributes"], pairs, strict=True):
            assert ANSWER[attr].fullmatch(a["value"]), (attr, a)
            assert a["value"] == w.answer(attr)
            assert q["value"].removeprefix("<image>\n") in tasks.QUESTIONS[attr]
    assert any(w.hour == 0 for w, _ in samples) and any(w.hour == 12 for w, _ in samples)


def test_vqa_turns_and_question_types_follow_the_papers_probabilities(samples):
    turns = Counter(len(r[1]["attributes"]) for _, r in samples)
    binom = {1: 0.216, 2: 0.432, 3: 0.288, 4: 0.064}  # 1 + Binomial(3, 0.4)
    for k, p in binom.items():
        assert abs(turns[k] / len(samples) - p) < 0.03, (k, turns)
    asked = Counter(a for _, r in samples for a in r[1]["attributes"])
    total = sum(asked.values())
    for attr in ATTRIBUTES:
        assert abs(asked[attr] / total - 0.2) < 0.02, asked


def test_caption_and_generation_texts(samples):
    mentions = Counter()
    for w, records in samples:
        gen, cap = records[0], records[2]
        assert cap["conversations"][0]["value"] in tasks.CAPTION_PROMPTS
        assert gen["conversations"][1]["value"] in tasks.GENERATION_ANSWERS
        assert "<image>" not in gen["conversations"][0]["value"]
        for r, openers in ((cap, tasks.CAPTION_OPENERS), (gen, tasks.GENERATION_OPENERS)):
            text = r["conversations"][1 if r is cap else 0]["value"]
            assert any(text.startswith(o + ",") for o in openers) and text.endswith(".")
            assert r["attributes"][0] == "time" and w.time in text
            assert r["attributes"] == [a for a in ATTRIBUTES if a in r["attributes"]]
            assert text.count(",") == len(r["attributes"])  # one clause per attribute
            assert (w.weather in text) == ("weather" in r["attributes"])
            assert (f"{w.battery}%" in text) == ("battery" in r["attributes"])
            assert w.face_hex not in text
            mentions.update(r["attributes"])
    n = 2 * len(samples)
    assert mentions["time"] == n
    for attr in ("weather", "battery", "weather_pos", "battery_pos"):
        assert abs(mentions[attr] / n - 0.5) < 0.03, mentions


def test_watch_sampling_matches_the_paper(samples):
    watches = [w for w, _ in samples]
    assert {w.hour for w in watches} == set(range(13))
    assert {w.minute for w in watches} == set(range(60))
    assert {w.battery for w in watches} == set(range(101))
    assert all(w.weather_pos != w.battery_pos for w in watches)
    assert set(Counter((w.weather_pos, w.battery_pos) for w in watches)) == {
        (a, b) for a in POSITIONS for b in POSITIONS if a != b}
    assert len({w.face_color for w in watches}) > 2900
