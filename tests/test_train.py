"""Training: schedule, parameter groups, checkpoints, resume after SIGKILL, distributed."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from uvlm.config import from_dict, load
from uvlm.grid import Run, parse_run
from uvlm.model import synthetic
from uvlm.model.checkpoint import load_trained
from uvlm.model.context import mode_records
from uvlm.model.unified import build_model
from uvlm.train import param_groups, plan, train
from uvlm.utils import lr_at

REPO = Path(__file__).resolve().parents[1]


def raw_cfg(**train) -> dict:
    return {
        "name": "t",
        "encoders": {
            "siglip": {"source": "train", "image_size": 32, "patch_size": 16, "hidden_size": 16,
                       "heads": 2},
            "vq": {"source": "train", "image_size": 16, "ch_mult": [1, 1, 2, 2],
                   "codebook_size": 32, "codebook_dim": 4},
            "tokenizer": {"source": "train", "vocab_size": 300}},
        "model": {"llm": {"source": "config", "arch": "llama", "hidden_size": 32, "layers": 1,
                          "heads": 2, "kv_heads": 2, "intermediate_size": 64,
                          "max_length": 256},
                  "lora": {"enabled": False}, "system_prompt": ""},
        "train": {"epochs": 2.0, "batch_size": 8, "lr": 3e-3, "adapter_lr": 3e-3,
                  "checkpoints": 3, "precision": "fp32", "grad_checkpointing": False,
                  "log_every": 1, "accelerate_config": "workflow/accelerate/cpu.yaml",
                  **train},
    }


def run_inputs(cfg, run: Run, n_images: int):
    return synthetic.inputs(cfg, run, n_images, cfg.seed)


def test_lr_schedule():
    total, peak = 100, 2.0
    warmup = math.ceil(0.03 * total)  # 3 steps
    lrs = [lr_at(s, total, peak, warmup) for s in range(total)]
    assert lrs[:3] == pytest.approx([peak / 3, 2 * peak / 3, peak])  # linear, no zero step
    assert lrs[warmup] == pytest.approx(peak)
    mid = warmup + (total - warmup) // 2
    assert lrs[mid] == pytest.approx(peak * 0.5 * (1 + math.cos(math.pi * 48 / 97)))
    assert all(a >= b for a, b in zip(lrs[warmup:], lrs[warmup + 1:], strict=False))
    assert 0 < lrs[-1] < 1e-3 * peak
    assert lr_at(0, 10, 1.0, 0) == pytest.approx(1.0)  # no warm-up


def test_plan_equal_compute_and_checkpoint_steps():
    cfg = from_dict(raw_cfg(checkpoints=10, batch_size=64, epochs=4.0))
    n = 3000  # images
    mixed, ckpts = plan(cfg, parse_run("vq-vq_mixed"), 3 * n)
    assert mixed == math.ceil(4 * 3 * n / 64) and sorted(ckpts.values()) == list(range(1, 11))
    assert max(ckpts) == mixed and min(ckpts) == round(mixed / 10)
    assert plan(cfg, parse_run("vq-vq_und-eq"), 2 * n)[0] == mixed
    assert plan(cfg, parse_run("vq-vq_gen-eq"), n)[0] == mixed
    assert plan(cfg, parse_run("vq-vq_und"), 2 * n)[0] < mixed


def test_mode_filters_records():
    recs = synthetic.records(3)
    assert {r["task"] for r in mode_records(recs, parse_run("vq-vq_und"), "x")} == \
        {"vqa", "caption"}
    assert {r["task"] for r in mode_records(recs, parse_run("vq-vq_gen-eq"), "x")} == \
        {"generation"}
    assert len(mode_records(recs, parse_run("vq-vq_mixed"), "x")) == 9


def test_param_groups_split_llm_from_adapters_and_head():
    cfg = from_dict(raw_cfg(lr=1e-3, adapter_lr=5e-4))
    run = parse_run("siglip-vq_mixed")
    ctx, _, _ = run_inputs(cfg, run, 2)
    model = build_model(cfg, run, ctx)
    llm, rest = param_groups(model, cfg)
    assert (llm["lr"], rest["lr"]) == (1e-3, 5e-4)
    outside = {id(p) for m in (model.input_adapter, model.gen_adapter, model.image_head)
               for p in m.parameters()}
    assert {id(p) for p in rest["params"]} == outside
    assert len(llm["params"]) == len(list(model.lm.parameters()))


def test_train_writes_checkpoints_metrics_and_cleans_state(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg, run = from_dict(raw_cfg()), parse_run("vq-vq_mixed")
    ctx, recs, feats = run_inputs(cfg, run, 8)  # 24 records, 3 steps an epoch, 6 steps
    out = train(cfg, run, 1, ctx, recs, feats, progress=False)
    assert out == Path("results/t/runs/vq-vq_mixed/seed1")
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == list(range(1, 7))
    assert {"loss", "text_loss", "image_loss", "lr", "adapter_lr", "tokens_per_s"} <= set(lines[0])
    assert lines[-1]["loss"] < lines[0]["loss"]
    assert not (out / "state").exists()
    for k, step in ((1, 2), (2, 4), (3, 6)):
        info = yaml.safe_load((out / f"ckpt{k:02d}" / "config.yaml").read_text())["checkpoint"]
        assert (info["step"], info["total_steps"], info["seed"]) == (step, 6, 1)
        assert info["fraction"] == pytest.approx(k / 3)
        assert info["precision"] == cfg.train.precision  # what it ran in (explicit here)
    model, cfg2, run2, _ = load_trained(out / "ckpt03", ctx)
    assert (cfg2, run2) == (cfg, run)


def test_micro_batches_accumulate_to_the_full_batch(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = parse_run("siglip-siglip_mixed")
    weights = []
    for micro in (0, 2):
        cfg = from_dict(raw_cfg(micro_batch_size=micro, checkpoints=1) | {"name": f"m{micro}"})
        ctx, recs, feats = run_inputs(cfg, run, 8)
        out = train(cfg, run, 0, ctx, recs, feats, progress=False)
        weights.append(load_file(str(out / "ckpt01" / "model.safetensors")))
    for k in weights[0]:
        assert torch.allclose(weights[0][k], weights[1][k], atol=1e-5), k


def test_bf16_training_on_cpu(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg, run = from_dict(raw_cfg(precision="bf16", checkpoints=1)), parse_run("vq-siglip_und")
    ctx, recs, feats = run_inputs(cfg, run, 8)
    out = train(cfg, run, 0, ctx, recs, feats, progress=False)
    losses = [json.loads(x)["loss"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]


def test_stale_resume_state_is_discarded(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cfg, run = from_dict(raw_cfg(checkpoints=1)), parse_run("vq-vq_gen")
    state = Path("results/t/runs/vq-vq_gen/seed0/state")
    state.mkdir(parents=True)
    (state / "latest.json").write_text(json.dumps({"step": 3, "key": "other", "dir": "x"}))
    ctx, recs, feats = run_inputs(cfg, run, 8)
    train(cfg, run, 0, ctx, recs, feats, progress=False)
    assert "resume state of another config or run; starting afresh" in capsys.readouterr().out


class Killed(Exception):
    pass


def test_bf16_checkpoints_keep_a_float32_resume_state_and_exact_resume(tmp_path, monkeypatch,
                                                                        capsys):
    import uvlm.train as train_module

    cfg, run = from_dict(raw_cfg(checkpoint_dtype="bfloat16")), parse_run("siglip-vq_mixed")
    inputs = run_inputs(cfg, run, 8)  # 24 records: 6 steps, checkpoints at 2, 4, 6
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
    monkeypatch.chdir(tmp_path / "a")
    a = train(cfg, run, 0, *inputs, progress=False)

    def save_then_die(state, *args, **kw):  # killed right after its first resume state
        save_state(state, *args, **kw)
        kept.update(load_file(str(next(state.glob("step*")) / "model.safetensors")))
        kept.update(load_file(str(next(state.glob("step*")) / "optimizer.safetensors")))
        raise Killed

    kept: dict = {}
    save_state = train_module.save_state
    monkeypatch.chdir(tmp_path / "b")
    monkeypatch.setattr(train_module, "save_state", save_then_die)
    with pytest.raises(Killed):
        train(cfg, run, 0, *inputs, progress=False)
    assert kept and {t.dtype for t in kept.values()} == {torch.float32}
    monkeypatch.setattr(train_module, "save_state", save_state)
    b = train(cfg, run, 0, *inputs, progress=False)
    assert "resuming at step 2" in capsys.readouterr().out
    for k in range(1, 4):
        wa = load_file(str(tmp_path / "a" / a / f"ckpt{k:02d}" / "model.safetensors"))
        wb = load_file(str(tmp_path / "b" / b / f"ckpt{k:02d}" / "model.safetensors"))
        assert {t.dtype for t in wa.values()} == {torch.bfloat16}
        assert wa.keys() == wb.keys() and all(torch.equal(wa[n], wb[n]) for n in wa), k
    la, lb = ([json.loads(x)["loss"] for x in (root / out / "metrics.jsonl").read_text()
               .splitlines()] for root, out in ((tmp_path / "a", a), (tmp_path / "b", b)))
    assert la == lb


# ---------------------------------------------------------------------- subprocesses

def _cli(tmp: Path, raw: dict, run: str, images: int, launcher=(sys.executable, "-m")):
    (tmp / "cfg.yaml").write_text(yaml.safe_dump(raw))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [*launcher, "uvlm", "train", "--config", "cfg.yaml", "--run", run, "--seed", "0",
           "--synthetic", str(images), "--no-progress"]
    return subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _finish(p) -> str:
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0, out
    return out


def test_sigkill_and_restart_gives_the_uninterrupted_weights(tmp_path, monkeypatch):
    raw = raw_cfg(epochs=6.0, batch_size=4, checkpoints=8)  # 48 records: 72 steps
    run, images = "siglip-vq_mixed", 16
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")  # the uninterrupted run, in this process (one thread)
    cfg = from_dict(raw)
    train(cfg, parse_run(run), 0, *run_inputs(cfg, parse_run(run), images), progress=False)

    out = tmp_path / "b" / "results/t/runs" / run / "seed0"
    p = _cli(tmp_path / "b", raw, run, images)
    deadline = time.time() + 240
    while not (out / "state" / "latest.json").exists():
        assert p.poll() is None and time.time() < deadline, "run ended before its first state"
        time.sleep(0.005)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert not (out / "ckpt08").exists(), "killed too late to test resuming"
    # a workflow manager deletes the outputs of a failed job; the restart restores them
    for f in (out / "ckpt01").iterdir():
        f.unlink()
    log = _finish(_cli(tmp_path / "b", raw, run, images))
    assert "resuming at step" in log
    a = tmp_path / "a" / "results/t/runs" / run / "seed0"
    for k in range(1, 9):
        wa = load_file(str(a / f"ckpt{k:02d}" / "model.safetensors"))
        wb = load_file(str(out / f"ckpt{k:02d}" / "model.safetensors"))
        assert all(torch.equal(wa[n], wb[n]) for n in wa), f"ckpt{k:02d} differs"
    la = [json.loads(x)["loss"] for x in (a / "metrics.jsonl").read_text().splitlines()]
    lb = [json.loads(x)["loss"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert la == lb


@pytest.mark.slow
def test_accelerate_two_cpu_processes_match_one(tmp_path):
    """2-process DDP (gloo) vs one process, same global batch: each shard's loss is divided
    by the global token counts, so the curves agree to float rounding (measured ~1e-7
    relative); the stated tolerance is 1e-4 relative over the whole run."""
    smoke = load(REPO / "config/smoke.yaml")
    raw = yaml.safe_load((REPO / "config/smoke.yaml").read_text())
    raw["train"]["log_every"] = 1
    curves = []
    for name, launcher in (("one", (sys.executable, "-m")),
                           ("two", (sys.executable, "-m", "accelerate.commands.launch",
                                    "--config_file",
                                    str(REPO / "workflow/accelerate/cpu2.yaml"), "-m"))):
        (tmp_path / name).mkdir()
        log = _finish(_cli(tmp_path / name, raw, "vq-vq_mixed", smoke.data.n_train,
                           launcher=launcher))
        assert f"= {1 if name == 'one' else 2} processes" in log
        metrics = tmp_path / name / "results" / smoke.name / "runs/vq-vq_mixed/seed0/metrics.jsonl"
        curves.append([json.loads(x)["loss"] for x in metrics.read_text().splitlines()])
    assert len(curves[0]) == len(curves[1]) > 5
    assert curves[0] == pytest.approx(curves[1], rel=1e-4)


HOLD = """
import sys, time
from uvlm.utils import run_lock
with run_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_a_second_trainer_on_one_run_directory_refuses_naming_the_holder(tmp_path,
                                                                        monkeypatch):
    import socket

    from uvlm import UvlmError

    monkeypatch.chdir(tmp_path)
    cfg, run = from_dict(raw_cfg()), parse_run("vq-vq_mixed")
    out = Path("results/t/runs/vq-vq_mixed/seed0")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        ctx, recs, feats = run_inputs(cfg, run, 8)
        with pytest.raises(UvlmError, match=f"{out}: another trainer \\(pid {holder.pid} on "
                                            f"{socket.gethostname()}\\) is training this run"):
            train(cfg, run, 0, ctx, recs, feats, progress=False)
        assert sorted(p.name for p in out.iterdir()) == ["trainer.lock"]  # nothing touched
    finally:
        holder.kill()
        holder.wait()
    # the kernel dropped the killed holder's lock: training goes ahead
    train(cfg, run, 0, ctx, recs, feats, progress=False)
    assert (out / "ckpt03" / "model.safetensors").is_file()


def test_checkpoints_deleted_during_the_run_are_back_at_its_end(tmp_path, monkeypatch):
    """A workflow manager deletes a failed job's outputs, also when the failed job was a
    second trainer refused by the lock: the trainer that holds it restores them."""
    import shutil

    from uvlm import train as train_module

    monkeypatch.chdir(tmp_path)
    keep = train_module.keep_checkpoint

    def keep_then_lose(ckpt, state):
        keep(ckpt, state)
        if ckpt.name == "ckpt01":
            shutil.rmtree(ckpt)

    monkeypatch.setattr(train_module, "keep_checkpoint", keep_then_lose)
    cfg, run = from_dict(raw_cfg()), parse_run("vq-vq_mixed")
    ctx, recs, feats = run_inputs(cfg, run, 8)
    out = train(cfg, run, 0, ctx, recs, feats, progress=False)
    assert (out / "ckpt01" / "model.safetensors").is_file()
