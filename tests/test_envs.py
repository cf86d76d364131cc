"""Environments and the local profile: the conda env files parse and pin exactly what
pyproject.toml pins, the rules' env installs the package, and the default workflow profile
caps `gpu` at the GPUs present (at least 1)."""

import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from snakemake.profiles import ProfileConfigFileParser

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
ENVIRONMENT_YML = ROOT / "environment.yml"
RULE_ENV = ROOT / "workflow/envs/uvlm.yaml"
POST_DEPLOY = ROOT / "workflow/envs/uvlm.post-deploy.sh"
DEFAULT_PROFILE = ROOT / "workflow/profiles/default/config.yaml"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][A-Za-z0-9.+!-]*)$")


def canonical(name: str) -> str:
    """PEP 503 name normalization."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(requirements: list[str], source: str) -> dict[str, str]:
    """{canonical name: version} of `name==version` lines; anything else is an error."""
    out = {}
    for req in requirements:
        m = PIN.match(req.strip())
        assert m, f"{source}: {req!r} is not an exact pin (name==version)"
        out[canonical(m[1])] = m[2]
    return out


def pyproject_pins(*extras: str) -> dict[str, str]:
    out = pins(PYPROJECT["project"]["dependencies"], "pyproject.toml [project].dependencies")
    for extra in extras:
        reqs = PYPROJECT["project"]["optional-dependencies"][extra]
        out |= pins(reqs, f"pyproject.toml optional-dependencies.{extra}")
    return out


def conda_env(path: Path) -> tuple[list[str], list[str]]:
    """(conda dependencies, pip requirements) of an environment file."""
    env = yaml.safe_load(path.read_text())
    assert isinstance(env, dict) and "dependencies" in env, f"{path}: no dependencies"
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
    assert len(pip_sections) == 1, f"{path}: expected one pip section"
    assert "nodefaults" in env["channels"], f"{path}: channels must exclude defaults"
    return conda, pip_sections[0]


def test_every_pyproject_requirement_is_an_exact_pin():
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert pyproject_pins(*extras)


@pytest.mark.parametrize("path", [ENVIRONMENT_YML, RULE_ENV], ids=lambda p: p.name)
def test_env_files_give_python_3_11_and_pip(path):
    conda, _ = conda_env(path)
    assert "python=3.11" in conda and "pip" in conda, conda
    assert PYPROJECT["project"]["requires-python"] == ">=3.11"


def test_environment_yml_pins_everything_pyproject_pins():
    _, pip = conda_env(ENVIRONMENT_YML)
    assert "-e ." in pip, "environment.yml must install the package itself (-e .)"
    got = pins([r for r in pip if r != "-e ."], "environment.yml")
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert got == pyproject_pins(*extras)


def test_rule_env_pins_the_package_dependencies():
    _, pip = conda_env(RULE_ENV)
    assert pins(pip, "workflow/envs/uvlm.yaml") == pyproject_pins()


def test_tested_venv_has_the_pinned_versions():
    """The venv the tests run in is the reference the env files copy."""
    from importlib.metadata import PackageNotFoundError, version

    wrong = {}
    for name, want in pyproject_pins(*PYPROJECT["project"]["optional-dependencies"]).items():
        try:
            have = version(name)
        except PackageNotFoundError:
            have = "not installed"
        # torch's local version label (+cpu, +cu126) names the build, not the release
        if have.split("+")[0] != want:
            wrong[name] = (have, want)
    assert not wrong, f"installed != pinned: {wrong}"


def test_rules_reference_env_files_that_exist():
    rule_files = sorted((ROOT / "workflow/rules").glob("*.smk"))
    referenced = set()
    for smk in rule_files:
        for env in re.findall(r'^\s*conda:\s*\n\s*"([^"]+)"', smk.read_text(), flags=re.M):
            path = (smk.parent / env).resolve()
            assert path.is_file(), f"{smk.name}: conda env {env} does not exist"
            referenced.add(path)
    if rule_files:
        assert referenced == {RULE_ENV.resolve()}, referenced


def fake_python(tmp_path: Path) -> tuple[Path, Path]:
    """A `python` on PATH that records its arguments instead of installing anything."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "args.txt"
    script = bin_dir / "python"
    script.write_text(f'#!/bin/sh\necho "$@" > {record}\n')
    script.chmod(0o755)
    return bin_dir, record


def test_post_deploy_installs_the_checkout_editable_without_deps(tmp_path):
    bin_dir, record = fake_python(tmp_path)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    env.pop("UVLM_SRC", None)
    p = subprocess.run(["bash", str(POST_DEPLOY)], cwd=ROOT / "workflow", env=env,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert record.read_text().split() == ["-m", "pip", "install", "--no-deps", "-e", str(ROOT)]


def test_post_deploy_outside_the_repository_says_what_to_set(tmp_path):
    bin_dir, record = fake_python(tmp_path)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    env.pop("UVLM_SRC", None)
    p = subprocess.run(["bash", str(POST_DEPLOY)], cwd=tmp_path, env=env,
                       capture_output=True, text=True)
    assert p.returncode == 1
    assert "UVLM_SRC" in p.stderr and "is not the uvlm package" in p.stderr
    assert not record.exists()


# ------------------------------------------------------------------ the default profile

def render_default_profile(monkeypatch, env: dict[str, str], path: str | None = None) -> dict:
    for name in ("UVLM_GPUS", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if path is not None:
        monkeypatch.setenv("PATH", path)
    with DEFAULT_PROFILE.open() as fh:
        return dict(ProfileConfigFileParser().parse(fh))


@pytest.mark.parametrize(("env", "gpus"), [
    ({"UVLM_GPUS": "3"}, 3),
    ({"UVLM_GPUS": "0"}, os.cpu_count()),  # CPU only: model jobs run side by side
    ({"CUDA_VISIBLE_DEVICES": "0,1"}, 2),
    ({"CUDA_VISIBLE_DEVICES": ""}, os.cpu_count()),
    ({"CUDA_VISIBLE_DEVICES": "1,-1,0"}, 1),
])
def test_default_profile_caps_gpu_at_the_gpus_present(monkeypatch, env, gpus):
    profile = render_default_profile(monkeypatch, env)
    assert profile["resources"] == [f"gpu={gpus}"]
    assert profile["cores"] == "all"
    assert profile["keep-going"] == "False" and profile["rerun-incomplete"] == "True"


def test_default_profile_counts_gpus_with_nvidia_smi(monkeypatch, tmp_path):
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: H100 (UUID: a)'\necho 'GPU 1: H100 (UUID: b)'\n")
    smi.chmod(0o755)
    profile = render_default_profile(monkeypatch, {}, path=f"{tmp_path}:{os.environ['PATH']}")
    assert profile["resources"] == ["gpu=2"]


def test_default_profile_rejects_a_bad_gpu_count(monkeypatch):
    with pytest.raises(Exception, match=r"UVLM_GPUS='two': expected a number of GPUs"):
        render_default_profile(monkeypatch, {"UVLM_GPUS": "two"})


def test_default_profile_is_found_for_the_repository_snakefile():
    """Snakemake looks for `profiles/default` next to the Snakefile (and in the working
    directory); a Snakefile at the repository root would never see workflow/profiles/."""
    from snakemake.cli import resolve_snakefile

    cwd = os.getcwd()
    try:
        os.chdir(ROOT)
        snakefile = Path(resolve_snakefile(None)).resolve()
    finally:
        os.chdir(cwd)
    candidates = [ROOT / "profiles/default", snakefile.parent / "profiles/default"]
    assert any(c.resolve() == DEFAULT_PROFILE.parent.resolve() for c in candidates if
               c.exists()), (
        f"snakemake would not apply {DEFAULT_PROFILE.parent.relative_to(ROOT)} for "
        f"{snakefile.relative_to(ROOT)}: move the Snakefile to workflow/Snakefile or link "
        "profiles -> workflow/profiles")



def test_citation_matches_the_package():
    """CITATION.cff ("cite this repository") states pyproject.toml's version and licence."""
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["version"] == PYPROJECT["project"]["version"]
    assert cff["license"] == PYPROJECT["project"]["license"]
    assert "arXiv:2505.23043" in str(cff["preferred-citation"]["identifiers"])


def test_uvlm_console_script_is_the_module_entry_point():
    """`uvlm ...` runs what `python -m uvlm ...` runs."""
    import importlib

    module, func = PYPROJECT["project"]["scripts"]["uvlm"].split(":")
    assert getattr(importlib.import_module(module), func) is importlib.import_module(
        "uvlm.__main__").main
