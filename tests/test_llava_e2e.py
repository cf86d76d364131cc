"""The llava experiment end to end with tiny models: generation data from fixture JSONs, both
training stages on a handful of PNGs (tiny CLIP, tiny Llama, tiny LlamaGen VQ, saved and
loaded as the real ones are), and the lmms-eval adapter answering requests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, CLIPVisionConfig, CLIPVisionModel, LlamaConfig

from uvlm.config import VQConfig, load
from uvlm.encoders.vq import VQModel
from uvlm.encoders.vq_train import vq_args
from uvlm.grid import parse_run
from uvlm.llava import data as llava_data
from uvlm.llava import stage_dir
from uvlm.llava import train as llava_train
from uvlm.llava.images import encode, load_image, load_parts
from uvlm.llava.lmms import UVLM
from uvlm.llava.results import collect
from uvlm.model import synthetic
from uvlm.model.generate import generate_text

ROOT = Path(__file__).resolve().parents[1]
VQ = {"source": "pretrained", "image_size": 16, "codebook_size": 32, "codebook_dim": 4, "ch": 8,
      "ch_mult": [1, 2, 2], "z_channels": 8, "num_res_blocks": 1, "norm_groups": 4}
CAPTIONS = ["a red square on a white wall", "two blue circles", "a green field at noon",
            "a yellow car", "a black cat on a mat", "a grey sky over the sea"]


def png(path: Path, size: tuple[int, int], seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    arr = torch.randint(0, 256, (size[1], size[0], 3), generator=g, dtype=torch.uint8)
    Image.fromarray(arr.numpy()).save(path)


def turn(human: str, gpt: str) -> list[dict]:
    return [{"from": "human", "value": human}, {"from": "gpt", "value": gpt}]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Resources as config/llava.yaml expects them, at toy sizes; returns the config path."""
    root = tmp_path_factory.mktemp("llava")
    res, images = root / "resources", root / "resources/images"
    coco = [f"coco/train2017/{i:03d}.png" for i in range(6)]
    lcs = [f"{i:03d}.png" for i in range(3)]
    for i, p in enumerate(coco):
        png(images / p, (20 + 4 * i, 16), i)  # not square: padded as LLaVA pads
    for i, p in enumerate(lcs):
        png(images / "llava/llava_pretrain/images" / p, (16, 16), 10 + i)
    sharegpt4v = [{"id": f"s{i}", "image": p, "conversations": turn("<image>\nDescribe.", c)}
                  for i, (p, c) in enumerate(zip(coco, CAPTIONS, strict=True))]
    sharegpt4v.append({"id": "sam", "image": "sam/images/sa_1.jpg",  # skipped, not on disk
                       "conversations": turn("<image>\nDescribe.", "a SAM image")})
    pretrain = [{"id": f"p{i}", "image": p, "conversations": turn("Caption it.\n<image>", c)}
                for i, (p, c) in enumerate(zip(lcs, CAPTIONS, strict=False))]
    sft = [{"id": "q0", "image": coco[0], "conversations": turn("<image>\nWhat colour?", "Red.")
            + turn("How many?", "One.")},
           {"id": "q1", "image": coco[1], "conversations": turn("Count them.\n<image>", "Two.")},
           {"id": "t0", "conversations": turn("Say hi.", "Hi!")}]
    for name, obj in (("sg4v.json", sharegpt4v), ("pre.json", pretrain), ("sft.json", sft)):
        (res / name).write_text(json.dumps(obj))

    texts = [t["value"] for r in sharegpt4v + pretrain + sft for t in r["conversations"]]
    tok = synthetic.tokenizer(texts + [*llava_data.OPENERS, *llava_data.ANSWERS], 300)
    torch.manual_seed(0)
    lm = AutoModelForCausalLM.from_config(LlamaConfig(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, intermediate_size=64, tie_word_embeddings=False))
    lm.save_pretrained(res / "llm")
    tok.save_pretrained(res / "llm")
    CLIPVisionModel(CLIPVisionConfig(image_size=28, patch_size=14, hidden_size=16,
                                     num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=32)).save_pretrained(res / "clip")
    torch.save({"model": VQModel(vq_args(VQConfig(**VQ))).state_dict()}, res / "vq.pt")

    raw = {
        "name": "llavatiny",
        "encoders": {"clip": {"path": str(res / "clip"), "image_size": 28, "patch_size": 14,
                              "hidden_size": 16},
                     "vq": VQ | {"path": str(res / "vq.pt")},
                     "tokenizer": {"source": "pretrained"}},
        "model": {"llm": {"source": "pretrained", "path": str(res / "llm"), "max_length": 96},
                  "lora": {"enabled": False}, "system_prompt": ""},
        "train": {"epochs": 1.0, "batch_size": 4, "lr": 1e-2, "adapter_lr": 1e-2,
                  "checkpoints": 1, "checkpoint_dtype": "bfloat16", "precision": "fp32",
                  "grad_checkpointing": False, "log_every": 1,
                  "accelerate_config": "workflow/accelerate/cpu.yaml"},
        "eval": {"max_new_tokens": 6},
        "grid": {"experiments": ["llava"], "architectures": ["clip-clip", "clip-vq"]},
        "llava": {"sharegpt4v_json": str(res / "sg4v.json"), "pretrain_json": str(res / "pre.json"),
                  "sft_json": str(res / "sft.json"), "image_folder": str(images),
                  "pretrain_generation": 2, "sft_generation": [0, 3],
                  "pretrain": {"lr": 1e-2, "batch_size": 2, "micro_batch_size": 0}},
    }
    (root / "llavatiny.yaml").write_text(yaml.safe_dump(raw))
    return root


@pytest.fixture
def in_workspace(workspace, monkeypatch):
    monkeypatch.chdir(workspace)
    return load("llavatiny.yaml")


def weights(ckpt_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(ckpt_dir / "ckpt01" / "model.safetensors"))


def lm_state(tensors: dict) -> dict:
    return {k: v for k, v in tensors.items() if k.startswith("lm.")}


@pytest.mark.parametrize("name", ["clip-vq_mixed", "clip-clip_mixed"])
def test_both_stages(in_workspace, name):
    cfg, run = in_workspace, parse_run(name)
    llava_data.main(["--config", "llavatiny.yaml"])
    llava_train.main(["--config", "llavatiny.yaml", "--stage", "pretrain", "--run", name,
                      "--seed", "0", "--no-progress"])
    s1 = weights(stage_dir(cfg, "pretrain", run, 0))
    # float32 whatever train.checkpoint_dtype says (bfloat16 here, as in llava.yaml)
    assert {t.dtype for t in s1.values() if t.is_floating_point()} == {torch.float32}
    base = AutoModelForCausalLM.from_pretrained(cfg.model.llm.path).state_dict()
    # stage 1: the LLM is frozen, the adapters and the head learn
    for k, v in lm_state(s1).items():
        assert torch.equal(v, base[k.removeprefix("lm.")]), k
    ctx, _ = load_parts(cfg, run)
    torch.manual_seed(0)
    from uvlm.llava import stage_config
    from uvlm.model.unified import build_model

    fresh = build_model(stage_config(cfg, "pretrain"), run, ctx).state_dict()
    assert not torch.equal(s1["image_head.weight"], fresh["image_head.weight"])
    assert not torch.equal(s1["input_adapter.0.weight"], fresh["input_adapter.0.weight"])
    logged = [json.loads(line) for line in
              (stage_dir(cfg, "pretrain", run, 0) / "metrics.jsonl").read_text().splitlines()]
    # 3 pretrain + 2 generation records, 2 per step; the image loss is trained too
    assert logged[-1]["step"] == 3 and any(line["image_loss"] > 0 for line in logged)

    # stage 2 starts from stage 1: with lr 0 it leaves every weight as stage 1 left it, and
    # saves them in bf16 (train.checkpoint_dtype)
    llava_train.main(["--config", "llavatiny.yaml", "--set", "train.lr=0", "train.adapter_lr=0",
                      "--stage", "sft", "--run", name, "--seed", "0", "--no-progress"])
    s2 = weights(stage_dir(cfg, "sft", run, 0))
    s1_bf16 = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in s1.items()}
    assert {t.dtype for t in s2.values() if t.is_floating_point()} == {torch.bfloat16}
    assert s2.keys() == s1.keys() and all(torch.equal(s2[k], s1_bf16[k]) for k in s1)
    # ... and with its lr it trains the LLM
    llava_train.main(["--config", "llavatiny.yaml", "--stage", "sft", "--run", name, "--seed",
                      "0", "--no-progress"])
    s2 = weights(stage_dir(cfg, "sft", run, 0))
    changed = [k for k, v in lm_state(s2).items() if not torch.equal(v, s1_bf16[k])]
    assert len(changed) == len(lm_state(s1))
    with pytest.raises(Exception, match="no pretrain run"):
        llava_train.main(["--config", "llavatiny.yaml", "--stage", "pretrain", "--run",
                          "clip-clip_und", "--seed", "0"])


class Request:
    """What lmms-eval hands ``generate_until``: an Instance with ``args``."""

    def __init__(self, *args):
        self.args = args


def test_lmms_eval_adapter_answers(in_workspace):
    cfg, run = in_workspace, parse_run("clip-vq_mixed")
    ckpt = stage_dir(cfg, "sft", run, 0) / "ckpt01"
    if not ckpt.is_dir():  # the stages test made it; alone, train it here
        test_both_stages(in_workspace, "clip-vq_mixed")
    model = UVLM(checkpoint=str(ckpt))
    image = load_image(Path(cfg.llava.image_folder) / "coco/train2017/002.png")
    model.task_dict = {"gqa": {"val": [{"image": image, "question": "What colour?"}]}}
    doc_to_visual = lambda doc: [doc["image"]]  # noqa: E731 (lmms-eval's callback)
    ask = Request("What colour?", {"max_new_tokens": 5, "until": []}, doc_to_visual, 0, "gqa",
                  "val")
    (answer,) = model.generate_until([ask])
    # the same greedy decode by hand: "<image>\n" first, the image through the CLIP tower
    record = {"id": "x", "task": "vqa", "conversations": [
        {"from": "human", "value": "<image>\nWhat colour?"}, {"from": "gpt", "value": ""}]}
    prompt = model.template.prompt(record)
    ids = generate_text(model.model, model.template, [prompt], 5,
                        encode(model.tower, [image], model.device))[0]
    assert answer == model.ctx.tokenizer.decode(ids, skip_special_tokens=True).strip()
    assert len(ids) <= 5
    if answer:  # lmms-eval's stop strings cut the answer
        stop = answer[len(answer) // 2:]
        cut = model.generate_until([Request("What colour?", {"max_new_tokens": 5,
                                                             "until": [stop]},
                                            doc_to_visual, 0, "gqa", "val")])[0]
        assert cut == answer.split(stop)[0].strip()
    text_only = Request("Say hi.", {}, lambda doc: [], 0, "gqa", "val")
    assert isinstance(model.generate_until([text_only])[0], str)
    two = Request("Compare.", {}, lambda doc: [image, image], 0, "gqa", "val")
    with pytest.raises(NotImplementedError, match="2 images"):
        model.generate_until([two])
    with pytest.raises(NotImplementedError, match="loglikelihood"):
        model.loglikelihood([ask])
    with pytest.raises(ValueError, match="batch_size=2"):
        UVLM(checkpoint=str(ckpt), batch_size=2)


def test_lmms_eval_registers_the_adapter():
    pytest.importorskip("lmms_eval", reason="lmms-eval is not installed (an external tool)")
    from lmms_eval.api.model import lmms
    from lmms_eval.models import get_model

    from uvlm.llava.lmms import register

    register()
    assert get_model("uvlm") is UVLM and issubclass(UVLM, lmms)


def test_results_are_copied_where_the_report_reads(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load(ROOT / "config/llava.yaml")
    run = parse_run("clip-vq_mixed")
    raw = tmp_path / "raw"
    with pytest.raises(FileNotFoundError, match="found 0"):
        collect(cfg, run, raw)
    (raw / "uvlm").mkdir(parents=True)
    fixture = (ROOT / "tests/fixtures/lmms_eval_results.json").read_text()
    (raw / "uvlm/20250101_000000_results.json").write_text(fixture)
    with pytest.raises(ValueError, match="no results for llava.tasks vizwiz_vqa_val, "
                                         "textvqa_val"):
        collect(cfg, run, raw)
    cfg = load(ROOT / "config/llava.yaml", ["llava.tasks=[gqa, mme, pope]"])
    out = collect(cfg, run, raw)
    assert out == Path("results/llava/eval/llava/clip-vq_mixed/results.json")
    assert out.read_text() == fixture
    (raw / "uvlm/20250102_000000_results.json").write_text(fixture)
    with pytest.raises(FileNotFoundError, match="found 2"):
        collect(cfg, run, raw)
