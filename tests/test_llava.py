"""The llava experiment without models: its config, runs, generation data and records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from uvlm.config import ConfigError, from_dict, load
from uvlm.grid import all_runs, llava_generation, parse_run
from uvlm.llava import data as llava_data
from uvlm.llava import (
    data_depends,
    eval_depends,
    pretrain_run,
    stage_config,
    stage_dir,
    train_depends,
)
from uvlm.llava.images import image_first, pad_to_square, pixels, to_records
from uvlm.model import synthetic
from uvlm.model.batching import Batcher, Template

ROOT = Path(__file__).resolve().parents[1]
LLAVA = load(ROOT / "config/llava.yaml")


# --------------------------------------------------------------------------- runs

def test_llava_runs_are_the_papers_table():
    names = [r.name for r in all_runs(LLAVA)]
    assert names == ["clip-clip_und", "clip-clip_mixed_gen-50000", "clip-clip_mixed_gen-100000",
                     "clip-clip_mixed", "clip-clip_mixed_detach", "clip-vq_mixed"]
    assert all(parse_run(n).name == n for n in names)
    assert [llava_generation(LLAVA, parse_run(n)) for n in names] == \
        [0, 50000, 100000, 200000, 200000, 200000]
    # one stage-1 run per architecture and adapter layout, shared by the SFT runs
    assert sorted({pretrain_run(r).name for r in all_runs(LLAVA)}) == \
        ["clip-clip_mixed", "clip-clip_mixed_detach", "clip-vq_mixed"]
    run = parse_run("clip-clip_mixed_gen-50000")
    assert stage_dir(LLAVA, "pretrain", run, 0) == Path("results/llava/runs/clip-clip_mixed/"
                                                        "seed0/pretrain")
    assert stage_dir(LLAVA, "sft", run, 0) == Path("results/llava/runs/"
                                                   "clip-clip_mixed_gen-50000/seed0/sft")


def test_stage_one_config_replaces_batch_lr_and_time_only():
    s1, s2 = stage_config(LLAVA, "pretrain").train, stage_config(LLAVA, "sft").train
    assert (s1.adapter_lr, s1.batch_size, s1.micro_batch_size) == (1e-3, 256, 32)
    assert (s2.lr, s2.adapter_lr, s2.batch_size, s2.micro_batch_size) == (2e-5, 2e-5, 128, 16)
    assert s1.runtime_minutes == LLAVA.llava.pretrain.runtime_minutes
    assert (s1.epochs, s1.warmup_ratio, s1.precision) == (s2.epochs, s2.warmup_ratio, "bf16")
    # stage 2 trains from stage 1's checkpoint: that stays float32; stage 2's is bf16
    assert (s1.checkpoint_dtype, s2.checkpoint_dtype) == ("float32", "bfloat16")


def test_rule_params_change_only_with_what_the_job_reads():
    run = parse_run("clip-clip_mixed_gen-50000")
    other = load(ROOT / "config/llava.yaml", ["llava.tasks=[gqa]"])
    assert train_depends(other, "sft", run) == train_depends(LLAVA, "sft", run)
    assert eval_depends(other, run) != eval_depends(LLAVA, run)
    more = load(ROOT / "config/llava.yaml", ["llava.sft_generation=[0,25000,50000,100000,200000]"])
    assert data_depends(more, "sft-gen-50000") == data_depends(LLAVA, "sft-gen-50000")
    assert train_depends(more, "sft", run) == train_depends(LLAVA, "sft", run)
    fp32 = load(ROOT / "config/llava.yaml", ["train.checkpoint_dtype=float32"])
    assert train_depends(fp32, "pretrain", run) == train_depends(LLAVA, "pretrain", run)
    assert train_depends(fp32, "sft", run) != train_depends(LLAVA, "sft", run)
    lr = load(ROOT / "config/llava.yaml", ["llava.pretrain.lr=0.002"])
    assert train_depends(lr, "sft", run) != train_depends(LLAVA, "sft", run)  # via stage 1
    assert data_depends(lr, "pretrain") == data_depends(LLAVA, "pretrain")


@pytest.mark.parametrize("override, message", [
    (["llava.sft_generation=[0, 0]"], "llava.sft_generation"),
    (["llava.sft_generation=[0]"], "llava.sft_generation"),
    (["llava.detach_architectures=[clip-vq]"], "only same-space ones detach"),
    (["grid.experiments=[llava, mutual]"], "give it a config of its own"),
    (["grid.seeds=[0, 1]"], "one seed"),
    (["llava.tasks=[gqa, mmvet]"], "llava.tasks[1]: 'mmvet' is not allowed"),
])
def test_bad_llava_configs_are_refused(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load(ROOT / "config/llava.yaml", override)


# --------------------------------------------------------------------------- data

def write(path: Path, obj) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return str(path)


def sharegpt4v(n: int) -> list[dict]:
    """Captions of coco, llava-pretrain and (every third) SAM images."""
    folders = ["coco/train2017", "llava/llava_pretrain/images/00000", "sam/images"]
    return [{"id": f"s{i}", "image": f"{folders[i % 3]}/{i:06d}.jpg", "conversations": [
        {"from": "human", "value": "<image>\nWhat do you see happening in this image?"},
        {"from": "gpt", "value": f"caption number {i}."}]} for i in range(n)]


@pytest.fixture
def data_cfg(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = tmp_path / "res"
    raw = {"name": "lt", "grid": {"experiments": ["llava"], "architectures": ["clip-clip"]},
           "llava": {
               "sharegpt4v_json": write(res / "sg4v.json", sharegpt4v(30)),
               "pretrain_json": write(res / "pre.json", [
                   {"id": "p0", "image": "00000/p0.jpg", "conversations": [
                       {"from": "human", "value": "Describe the photo.\n<image>"},
                       {"from": "gpt", "value": "a dog"}]}]),
               "sft_json": write(res / "sft.json", [
                   {"id": "q0", "image": "coco/train2017/q0.jpg", "conversations": [
                       {"from": "human", "value": "<image>\nWhat is it?"},
                       {"from": "gpt", "value": "A cat."}]},
                   {"id": "t0", "conversations": [{"from": "human", "value": "Hi"},
                                                  {"from": "gpt", "value": "Hello!"}]}]),
               "pretrain_generation": 5, "sft_generation": [0, 4, 8]}}
    return raw


def generated(path: Path) -> list[dict]:
    return [r for r in json.loads(path.read_text()) if r["id"].startswith("t2i-")]


def test_generation_data(data_cfg):
    cfg = from_dict(data_cfg)
    llava_data.main(["--config", _dump(data_cfg)])
    root = cfg.root / "data"
    assert sorted(p.name for p in root.glob("*.json")) == \
        ["pretrain.json", "sft-gen-0.json", "sft-gen-4.json", "sft-gen-8.json"]
    pre = json.loads((root / "pretrain.json").read_text())
    # LLaVA's pretraining records first, their images moved under pretrain_image_folder
    assert pre[0]["image"] == "llava/llava_pretrain/images/00000/p0.jpg"
    assert pre[0]["conversations"][0]["value"] == "Describe the photo.\n<image>"
    gen = {n: generated(root / f"{n}.json") for n in
           ("pretrain", "sft-gen-0", "sft-gen-4", "sft-gen-8")}
    assert [len(g) for g in gen.values()] == [5, 0, 4, 8]
    assert len(json.loads((root / "sft-gen-8.json").read_text())) == 2 + 8
    every = [r for g in gen.values() for r in g]
    assert not any(r["image"].startswith("sam/") for r in every)  # SAM is left out
    for r in every:
        (human, gpt) = r["conversations"]
        caption = next(c for c in sharegpt4v(30) if c["image"] == r["image"])
        opener = human["value"].removesuffix(caption["conversations"][1]["value"])
        assert opener in llava_data.OPENERS
        assert gpt["value"] in llava_data.ANSWERS and gpt["value"].endswith("\n<image>")
    # disjoint pools; smaller SFT amounts are subsets of larger ones
    ids = {n: [r["id"] for r in g] for n, g in gen.items()}
    assert not set(ids["pretrain"]) & set(ids["sft-gen-8"])
    assert ids["sft-gen-4"] == ids["sft-gen-8"][:4]
    assert len({r["conversations"][0]["value"].split(":")[0] for r in every}) > 1  # openers vary


def _dump(raw: dict) -> str:
    import yaml

    Path("cfg.yaml").write_text(yaml.safe_dump(raw))
    return "cfg.yaml"


def test_generation_data_is_seeded(data_cfg):
    config = _dump(data_cfg)
    llava_data.main(["--config", config])
    first = Path("results/lt/data/sft-gen-8.json").read_bytes()
    llava_data.main(["--config", config, "--only", "sft-gen-8"])
    assert Path("results/lt/data/sft-gen-8.json").read_bytes() == first
    llava_data.main(["--config", config, "--set", "seed=1", "--only", "sft-gen-8"])
    assert Path("results/lt/data/sft-gen-8.json").read_bytes() != first


def test_generation_data_errors_name_the_key(data_cfg):
    data_cfg["llava"]["sft_json"] = "res/missing.json"
    with pytest.raises(FileNotFoundError, match="llava.sft_json: res/missing.json not found"):
        llava_data.main(["--config", _dump(data_cfg)])
    data_cfg["llava"]["sft_generation"] = [0, 16]  # 20 non-SAM captions < 5 + 16
    with pytest.raises(ConfigError, match="20 ShareGPT4V captions outside sam"):
        llava_data.main(["--config", _dump(data_cfg), "--only", "pretrain"])
    with pytest.raises(SystemExit, match="--only 'sft-gen-3'"):
        llava_data.main(["--config", _dump(data_cfg), "--only", "sft-gen-3"])


# --------------------------------------------------------------------------- records

def test_llava_records_become_template_records():
    llava = [
        {"id": "a", "image": "x.jpg", "conversations": [
            {"from": "human", "value": "What is it?\n<image>"}, {"from": "gpt", "value": "A"},
            {"from": "human", "value": "And?"}, {"from": "gpt", "value": "B"}]},
        {"id": "t", "conversations": [{"from": "human", "value": "Hi"},
                                      {"from": "gpt", "value": "Hello"}]},
        {"id": "g", "image": "x.jpg", "conversations": [
            {"from": "human", "value": "Please show a image of the following: a cat"},
            {"from": "gpt", "value": "Sure, here is the image. \n<image>"}]},
    ]
    records, paths = to_records(llava)
    assert paths == ["x.jpg"]
    assert [(r["task"], r["image_id"]) for r in records] == \
        [("vqa", 0), ("text", -1), ("generation", 0)]
    assert records[0]["conversations"][0]["value"] == "<image>\nWhat is it?"  # LLaVA's order
    assert image_first("no image here") == "no image here"
    tok = synthetic.tokenizer(synthetic.texts(records), 300)
    tpl = Template(tok, "", und_tokens=3, gen_tokens=2, max_length=64)
    enc = tpl.encode(records)
    assert enc.text.tolist() == [False, True, False] and enc.gen.tolist() == [False, False, True]
    feats = {"u": {"llava": torch.randn(1, 3, 4)}, "g": {"llava": torch.randn(1, 2, 4)}}
    from uvlm.encoders.space import Space

    data = Batcher(enc, feats, Space("u", "continuous", 3, 4), Space("g", "continuous", 2, 4))
    batch = data.batch(torch.arange(3))
    assert batch.und_rows.tolist() == [0] and batch.gen_rows.tolist() == [2]  # not the text
    assert (enc.ids[1, :int(enc.length[1])] != tpl.pad).all()  # a text record has no slots
    short = Template(tok, "", und_tokens=3, gen_tokens=2, max_length=int(enc.length[1]))
    with pytest.raises(ValueError, match="exceed model.llm.max_length"):
        short.encode(records)
    kept = short.encode(records, drop_long=True)
    assert kept.record_ids == ["t"]


def test_images_are_padded_with_the_clip_mean_like_llava():
    from PIL import Image

    wide = Image.new("RGB", (8, 4), (255, 0, 0))
    square = pad_to_square(wide)
    assert square.size == (8, 8)
    assert square.getpixel((0, 0)) == (122, 116, 104) and square.getpixel((4, 4)) == (255, 0, 0)
    x = pixels([wide, Image.new("RGB", (3, 3))], 6)
    assert x.shape == (2, 3, 6, 6) and 0 <= x.min() and x.max() <= 1
