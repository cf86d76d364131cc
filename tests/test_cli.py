"""`python -m uvlm`: a user's mistake prints one line naming the file, key or value and exits
non-zero; --debug or UVLM_DEBUG=1 shows the traceback."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from uvlm import UvlmError
from uvlm.__main__ import main as uvlm

ROOT = Path(__file__).resolve().parents[1]
SMOKE = str(ROOT / "config" / "smoke.yaml")


def error_line(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as e:
        uvlm(argv)
    message = str(e.value.code)
    assert "\n" not in message and e.value.code != 0
    return message


@pytest.mark.parametrize("argv, says", [
    (["train", "--config", SMOKE, "--run", "vq-vq_mixed_affineX", "--seed", "0"],
     "uvlm train: error: run 'vq-vq_mixed_affineX': 'affineX' needs a number after 'affine'"),
    (["train", "--config", SMOKE, "--run", "vq-vx_mixed", "--seed", "0"],
     "unknown architecture 'vq-vx'"),
    (["provenance", "--config", SMOKE, "--set", "train.lrr=1"],
     "unknown key train.lrr; allowed keys under train:"),
    (["provenance", "--config", SMOKE, "--set", "train.lr"],
     "override 'train.lr': expected key=value"),
    (["provenance", "--config", "nope.yaml"], "nope.yaml: config file not found"),
])
def test_mistakes_print_one_line_naming_the_value(argv, says, capsys, monkeypatch):
    monkeypatch.delenv("UVLM_DEBUG", raising=False)
    assert says in error_line(argv, capsys)


def test_malformed_answers_file_names_file_and_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("UVLM_DEBUG", raising=False)
    answers = tmp_path / "answers.jsonl"
    answers.write_text("{not json\n")
    assert f"{answers}:1: not valid JSON" in error_line(["score-vqa", str(answers)], capsys)


def test_debug_flag_and_variable_show_the_traceback(monkeypatch):
    argv = ["provenance", "--config", "nope.yaml"]
    with pytest.raises(UvlmError, match="config file not found"):
        uvlm(["--debug", *argv])
    monkeypatch.setenv("UVLM_DEBUG", "1")
    with pytest.raises(UvlmError, match="config file not found"):
        uvlm(argv)


def test_exit_status_and_stderr_of_the_real_command(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "UVLM_DEBUG"}
    p = subprocess.run([sys.executable, "-m", "uvlm", "config-schema", "--check",
                        str(tmp_path / "nope.yaml")], capture_output=True, text=True, env=env)
    assert p.returncode == 1
    assert p.stderr.strip().splitlines() == [f"invalid: {tmp_path / 'nope.yaml'}: config file "
                                             f"not found"]
    p = subprocess.run([sys.executable, "-m", "uvlm", "score-vqa", str(tmp_path / "a.jsonl")],
                       capture_output=True, text=True, env=env)
    assert p.returncode == 1
    assert p.stderr.strip().splitlines() == [f"uvlm score-vqa: error: {tmp_path / 'a.jsonl'}: "
                                             f"answers file not found"]
