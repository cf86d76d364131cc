"""The config loader rejects bad input with a message naming the key; schema stays in sync."""

from pathlib import Path

import jsonschema
import pytest
import yaml

from uvlm.cli import command_parser, parse_command
from uvlm.config import ConfigError, json_schema, load, to_dict

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "config").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_loads_strictly_and_matches_schema(path):
    cfg = load(path)
    assert cfg.name == yaml.safe_load(path.read_text())["name"]
    jsonschema.validate(yaml.safe_load(path.read_text()), json_schema())
    jsonschema.validate(to_dict(cfg), json_schema())


def test_config_names_are_distinct():
    names = [load(p).name for p in CONFIGS]
    assert len(names) == len(set(names))


def test_committed_schema_is_generated_from_the_dataclasses():
    committed = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    assert committed == json_schema(), (
        "regenerate: python -m uvlm config-schema > workflow/schemas/config.schema.yaml")


def config_keys(node: dict, prefix: str = "") -> list[str]:
    """Dotted paths of every leaf key of the schema (`data.bias.other_fraction`, ...)."""
    keys = []
    for name, sub in node.get("properties", {}).items():
        keys += (config_keys(sub, f"{prefix}{name}.") if "properties" in sub
                 else [f"{prefix}{name}"])
    return keys


def test_config_readme_describes_every_key():
    """config/README.md has a row for every key the schema knows, and none it does not."""
    readme = (ROOT / "config/README.md").read_text()
    keys = config_keys(json_schema())
    rows = {line.split("|")[1].strip().strip("`") for line in readme.splitlines()
            if line.startswith("| `")}
    assert not set(keys) - rows, f"describe in config/README.md: {sorted(set(keys) - rows)}"
    stale = rows - set(keys) - {f"{p.stem}.yaml" for p in CONFIGS}  # the table of files
    assert not stale, f"config/README.md describes keys the config lacks: {sorted(stale)}"


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.foo=1", "unknown key model.foo; allowed keys under model: llm, lora"),
        ("data.n_train=0", "data.n_train: 0 is out of range; allowed: [1, inf]"),
        ("data.image_size=abc", "data.image_size: expected int, got 'abc'"),
        ("train.precision=fp8",
         "train.precision: 'fp8' is not allowed; allowed values: 'auto', 'fp32', 'bf16'"),
        ("grid.architectures=[siglip-clip]", "grid.architectures[0]: 'siglip-clip' is not allowed"),
        ("grid.experiments=[mutal]",
         "grid.experiments[0]: 'mutal' is not allowed; allowed values: 'mutual'"),
        ("grid.seeds=[]", "grid.seeds: empty"),
        ("data.bias.battery_keep=[60,10]", "data.bias.battery_keep: expected [lo, hi]"),
        ("train.lr=-1", "train.lr: -1.0 is out of range"),
        ("name=a/b", "name: 'a/b' must be"),
        ("model.vq_merge=3", "model.vq_merge: 3 does not divide the VQ's 4 x 4 codes"),
    ],
)
def test_bad_values_name_the_key_and_allowed_values(override, message):
    with pytest.raises(ConfigError) as e:
        load(ROOT / "config/smoke.yaml", [override])
    assert message in str(e.value)
    assert "config/smoke.yaml" in str(e.value)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: config file not found"):
        load(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:2: not valid YAML: expected") as e:
        load(bad)
    assert "\n" not in str(e.value)  # one line


def test_overrides_are_typed_and_hash_changes():
    a, b = load(ROOT / "config/smoke.yaml"), load(ROOT / "config/smoke.yaml", ["seed=1"])
    assert b.seed == 1 and a.hash() != b.hash()
    assert load(ROOT / "config/smoke.yaml", ["train.lr=1"]).train.lr == 1.0


@pytest.mark.parametrize("argv", [["--set", "train.lr=0.004", "seed=3"],
                                  ["--set", "train.lr=0.004", "--set", "seed=3"],
                                  ["--set", "train.lr=4e-3", "--set", "seed=3"]])
def test_every_override_applies_however_set_is_repeated(argv):
    """`--set a=1 --set b=2` once kept only b; both spellings now apply both; 4e-3 is a
    float (PyYAML alone reads it as a string)."""
    smoke = str(ROOT / "config/smoke.yaml")
    _, cfg = parse_command(command_parser("t", None), ["--config", smoke, *argv])
    assert (cfg.train.lr, cfg.seed) == (0.004, 3)
