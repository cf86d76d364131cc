"""The `data` and `data-variants` commands: files, determinism, variants, bad input."""

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from uvlm.config import load
from uvlm.data import bench, build, variants
from uvlm.data.records import load_attributes, load_records
from uvlm.data.render import Renderer

TINY = """\
name: tiny
data: {image_size: 32, n_train: 40, n_test: 6, extra_generation: [4], extra_understanding: [6]}
"""


@pytest.fixture
def cfg_path(tmp_path):
    """A tiny config file (everything but ``data`` at its defaults) in the test's folder."""
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


def tiny(cfg_path, *overrides):
    return load(cfg_path, list(overrides))


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_split_files_match_the_contract(tmp_path, cfg_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = tiny(cfg_path)
    build.build_split(cfg, "test", progress=False)
    data = tmp_path / "results/tiny/data"
    records = load_records(data / "test.json")
    watches = load_attributes(data / "attributes/test.csv")
    assert len(records) == 3 * len(watches) == 18
    assert [r["task"] for r in records[:3]] == ["vqa", "generation", "caption"]
    assert sorted(p.name for p in (data / "images/test").iterdir()) == [
        f"{i:06d}.png" for i in range(6)]
    header = (data / "attributes/test.csv").read_text().splitlines()[0]
    assert header == "id,file,hour,minute,second,weather,battery,weather_pos,battery_pos,face_color"
    img = Image.open(data / "images/test/000003.png")
    assert img.mode == "RGB" and img.size == (32, 32)
    assert np.array_equal(np.asarray(img), np.asarray(Renderer(32).render(watches[3])))
    assert not list((data / "images").glob(".*"))  # no partial folder left behind


def test_same_config_gives_identical_bytes_whatever_the_workers(tmp_path, cfg_path,
                                                                monkeypatch):
    hashes = []
    for run, workers in (("a", 1), ("b", 2), ("c", 2)):
        (tmp_path / run).mkdir()
        monkeypatch.chdir(tmp_path / run)
        build.build_split(tiny(cfg_path, f"data.workers={workers}"), "train", progress=False)
        hashes.append(digest(tmp_path / run / "results/tiny/data"))
    assert hashes[0] == hashes[1] == hashes[2]
    assert len(hashes[0]) == 40 + 2

    (tmp_path / "d").mkdir()
    monkeypatch.chdir(tmp_path / "d")
    build.build_split(tiny(cfg_path, "seed=1"), "train", progress=False)
    other = digest(tmp_path / "d/results/tiny/data")
    assert other["train.json"] != hashes[0]["train.json"]
    assert other["attributes/train.csv"] != hashes[0]["attributes/train.csv"]
    assert other["images/train/000000.png"] != hashes[0]["images/train/000000.png"]


def test_variants(tmp_path, cfg_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = tiny(cfg_path, "data.bias.weather_keep=[sunny]", "data.bias.battery_keep=[0,49]")
    for split in ("train", "extra"):
        build.build_split(cfg, split, progress=False)
    variants.main(["--config", str(cfg_path), "--set", "data.bias.weather_keep=[sunny]",
                   "data.bias.battery_keep=[0,49]"])
    out = tmp_path / "results/tiny/data/variants"
    assert sorted(p.stem for p in out.glob("*.json")) == sorted(
        ["biased-weather", "biased-battery", "extra-gen-4", "extra-und-6", "summary"])
    train = load_records(tmp_path / "results/tiny/data/train.json")
    watches = load_attributes(tmp_path / "results/tiny/data/attributes/train.csv")

    for name, keep in (("biased-weather", lambda w: w.weather == "sunny"),
                       ("biased-battery", lambda w: w.battery <= 49)):
        recs = load_records(out / f"{name}.json")
        gen = [r for r in recs if r["task"] == "generation"]
        und = [r for r in recs if r["task"] != "generation"]
        assert gen == [r for r in train if r["task"] == "generation"]  # all of it
        assert und == [r for r in train if r["task"] != "generation"
                       and keep(watches[r["image_id"]])]
        assert 0 < len(und) < 2 * len(watches)

    gen4 = load_records(out / "extra-gen-4.json")
    assert gen4[len(gen4) - len(train):] == train
    extra = gen4[:len(gen4) - len(train)]
    assert [(r["split"], r["image_id"], r["task"]) for r in extra] == [
        ("extra", i, "generation") for i in range(4)]
    und6 = load_records(out / "extra-und-6.json")
    assert [(r["image_id"], r["task"]) for r in und6[:12]] == [
        (i, t) for i in range(6) for t in ("vqa", "caption")]

    summary = json.loads((out / "summary.json").read_text())
    assert summary["biased-weather"]["understanding"]["weather"]["cloudy"] == 0
    assert summary["biased-weather"]["generation"]["weather"] == \
        summary["train"]["generation"]["weather"]
    assert sum(summary["biased-battery"]["understanding"]["battery"][k]
               for k in ("50-59", "60-69", "70-79", "80-89", "90-100")) == 0
    assert summary["extra-gen-4"]["tasks"]["generation"] == 40 + 4


def test_other_fraction_keeps_some_biased_out_images(tmp_path, cfg_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = tiny(cfg_path, "data.bias.other_fraction=0.5", "data.n_train=200")
    build.build_split(cfg, "train", progress=False)
    train = load_records(tmp_path / "results/tiny/data/train.json")
    watches = load_attributes(tmp_path / "results/tiny/data/attributes/train.csv")
    recs = variants.biased(cfg, "weather", train, watches)
    kept_other = {r["image_id"] for r in recs
                  if r["task"] == "vqa" and watches[r["image_id"]].weather != "sunny"}
    others = sum(w.weather != "sunny" for w in watches)
    assert 0.3 < len(kept_other) / others < 0.7


def test_cli_writes_a_split(tmp_path, cfg_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    build.main(["--config", str(cfg_path), "--split", "extra"])
    assert "data extra: 6 images" in capsys.readouterr().out
    assert len(load_records(tmp_path / "results/tiny/data/extra.json")) == 18


def test_missing_font_fails_before_writing(tmp_path, cfg_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "fonts/missing.ttf"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        build.build_split(tiny(cfg_path, f"data.font={missing}"), "test", progress=False)
    assert not (tmp_path / "results").exists()


def test_unwritable_output_names_the_path(tmp_path, cfg_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results").mkdir()
    (tmp_path / "results/tiny").write_text("a file where the output folder should be")
    with pytest.raises(OSError, match="results/tiny"):
        build.build_split(tiny(cfg_path), "test", progress=False)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permissions")
def test_read_only_output_names_the_path(tmp_path, cfg_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results").mkdir(mode=0o500)
    try:
        with pytest.raises(OSError, match="results"):
            build.build_split(tiny(cfg_path), "test", progress=False)
    finally:
        (tmp_path / "results").chmod(0o700)


def test_interrupted_build_leaves_no_complete_looking_split(tmp_path, cfg_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = tiny(cfg_path, "data.workers=1")
    build.build_split(cfg, "test", progress=False)
    data = tmp_path / "results/tiny/data"
    calls = []

    def render_then_fail(self, watch):
        calls.append(1)
        if len(calls) > 3:
            raise KeyboardInterrupt
        return Image.new("RGB", (32, 32))

    monkeypatch.setattr(Renderer, "render", render_then_fail)
    build._renderer.cache_clear()
    with pytest.raises(KeyboardInterrupt):
        build.build_split(cfg, "test", progress=False)
    build._renderer.cache_clear()
    assert not (data / "test.json").exists()
    assert not (data / "attributes/test.csv").exists()
    assert not (data / "images/.test.partial").exists()


def test_bad_records_name_file_and_index(tmp_path):
    good = {"id": "test-000000-vqa", "image_id": 0, "split": "test", "task": "vqa",
            "image": "images/test/000000.png",
            "conversations": [{"from": "human", "value": "<image>\nWhat time is it?"},
                              {"from": "gpt", "value": "01:02:03"}],
            "attributes": ["time"]}
    path = tmp_path / "r.json"
    path.write_text(json.dumps([good]))
    assert load_records(path) == [good]
    bad = {**good, "conversations": [{"from": "human", "value": "What time is it?"},
                                     {"from": "gpt", "value": "01:02:03"}]}
    path.write_text(json.dumps([good, bad]))
    with pytest.raises(ValueError, match=r"r\.json: record 1 \('test-000000-vqa'\).*<image>"):
        load_records(path)
    gen = {**good, "id": "test-000000-generation", "task": "generation",
           "conversations": [{"from": "human", "value": "Draw a watch."},
                             {"from": "gpt", "value": "Sure."}]}
    path.write_text(json.dumps([gen]))
    with pytest.raises(ValueError, match="record 0.*ending in <image>"):
        load_records(path)


def test_bad_attributes_name_file_and_line(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("id,file,hour,minute,second,weather,battery,weather_pos,battery_pos,"
                    "face_color\n0,images/test/000000.png,1,2,3,sunny,50,top-left,top-right,"
                    "#00ff00\n1,images/test/000001.png,1,2,3,foggy,50,top-left,top-right,"
                    "#00ff00\n")
    with pytest.raises(ValueError, match=r"a\.csv: line 3: weather='foggy'"):
        load_attributes(path)


def test_bench_prints_rates(tmp_path, capsys):
    bench.main(["--n", "8", "--dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "8 images at 224 px" in out and out.count("images/s") == 3
    assert list(tmp_path.iterdir()) == []  # its temporary folders are gone
