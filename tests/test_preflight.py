"""Every bad config is refused before any job runs, naming the key(s) and what is allowed;
`config-schema --check` and the Snakefile run the same checks (tests/test_workflow.py)."""

from pathlib import Path

import pytest

from uvlm import preflight
from uvlm.cli_config import main as config_schema
from uvlm.config import ConfigError, load

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "config" / "smoke.yaml"

#: override -> what the message says (the smoke config is otherwise valid)
BAD = {
    "train.lr=.nan": "train.lr: nan is not allowed; allowed: a finite number",
    "train.epochs=.inf": "train.epochs: inf is not allowed; allowed: a finite number",
    "encoders.vq.norm_groups=3":
        "encoders.vq.norm_groups: 3 must divide ch x ch_mult[0]=8, ch x ch_mult[1]=8, "
        "ch x ch_mult[2]=16, ch x ch_mult[3]=16; allowed: a divisor of 8",
    "encoders.vq.image_size=36": "encoders.vq.image_size: 36 must be a multiple of 8",
    "model.llm.heads=3": "model.llm.heads: 3 must divide hidden_size=32; allowed: a divisor "
                         "of 32",
    "model.llm.kv_heads=3": "model.llm.kv_heads: 3 must divide heads=2",
    "model.llm.heads=32": "model.llm.heads: hidden_size / heads = 1 must be even",
    "encoders.siglip.heads=3": "encoders.siglip.heads: 3 must divide hidden_size=32",
    "encoders.siglip.patch_size=5": "encoders.siglip.patch_size: 5 must divide image_size=32",
    "train.checkpoints=100": "train.checkpoints: 100 checkpoints do not fit the 6 optimizer "
                             "steps of run siglip-siglip_gen (train.epochs=1, "
                             "train.batch_size=16, data.n_train=96); allowed: at most 6",
    "train.batch_size=200": "train.batch_size: 200 is larger than the 96 records of run "
                            "siglip-siglip_gen (data.n_train=96); allowed: at most 96",
    "train.micro_batch_size=5": "train.micro_batch_size: 5 must divide train.batch_size=16",
    "grid.imbalance_architectures=[]": "grid: experiment 'imbalance' has no runs with this "
                                       "config; give grid.imbalance_architectures at least "
                                       "one entry",
    "grid.transfer_attributes=[]": "give grid.transfer_architectures, "
                                   "grid.transfer_attributes at least one entry",
    "train.accelerate_config=workflow/accelerate/nope.yaml":
        "train.accelerate_config: file 'workflow/accelerate/nope.yaml' not found",
}


def refusal(override: str) -> str:
    with pytest.raises(ConfigError) as e:
        preflight.check(load(SMOKE, [override]), str(SMOKE))
    return str(e.value)


@pytest.mark.parametrize("override", BAD)
def test_bad_configs_are_refused_naming_the_key_and_the_allowed_values(override, monkeypatch):
    monkeypatch.chdir(ROOT)  # relative paths start at the workflow's root
    message = refusal(override)
    assert BAD[override] in message and str(SMOKE) in message


@pytest.mark.parametrize("name", ["smoke", "config", "paper", "llava"])
def test_committed_configs_pass(name, monkeypatch):
    monkeypatch.chdir(ROOT)
    preflight.check(load(ROOT / "config" / f"{name}.yaml"))


def test_pretrained_models_bring_their_own_sizes():
    # sizes of a pretrained LLM or SigLIP are the loaded model's; the config's are unused
    load(SMOKE, ["model.llm.source=pretrained", "model.llm.heads=3"])
    load(SMOKE, ["encoders.siglip.source=pretrained", "encoders.siglip.heads=3"])


def test_config_schema_check_runs_the_workflow_checks(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    bad = tmp_path / "bad.yaml"
    bad.write_text(SMOKE.read_text().replace("checkpoints: 2", "checkpoints: 100"))
    with pytest.raises(SystemExit) as e:
        config_schema(["--check", str(bad)])
    assert str(e.value).startswith(f"invalid: {bad}: train.checkpoints: 100 checkpoints")
    config_schema(["--check", str(SMOKE)])
    assert capsys.readouterr().out.startswith(f"ok: {SMOKE}")


def test_duplicate_keys_are_refused_naming_file_and_line(tmp_path):
    dup = tmp_path / "dup.yaml"
    dup.write_text("name: a\ntrain:\n  lr: 1.0e-3\n  lr: 1.0e-2\n")
    with pytest.raises(ConfigError, match=f"{dup}:4: not valid YAML: duplicate key 'lr'"):
        load(dup)
    with pytest.raises(ConfigError, match="duplicate key 'lr'"):
        load(SMOKE, ["train={lr: 1, lr: 2}"])
