"""DVC versions what Snakemake produces, for real: the repository's own DVC setup
(.dvc/config, .dvcignore, .gitignore, dvc.yaml) in a throwaway git repository, its default
local remote, `dvc add` of the stage folders, push, a fresh clone, pull. After a pull the
post-pull step (`snakemake --touch <stages>`) leaves nothing to retrain or re-evaluate and
the tables rebuild from the pulled files. Corrupted objects, unknown targets and missing
remotes fail loudly and delete nothing.

Every test runs once per entry of PRODUCERS, the workflows whose results are shared:
a stand-in with the real layout (results/<config>/{data,encoders,runs,eval,analysis,paper},
rules train_run/eval_run, stage rules data ... paper) that runs in seconds, and the smoke
grid (slow). The smoke grid is not run again here: its producer takes the results of the
session's smoke run (the `smoke_run` fixture in conftest.py, which goes through SLURM when
the test cluster is up) and versions those.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from uvlm.config import load
from uvlm.report import targets

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("data", "encoders", "runs", "eval", "analysis")  # what DVC versions
TABLES_NEED = ("eval", "analysis")  # plus runs/*/*/metrics.jsonl (training curves)
EVAL_NEEDS = ("data", "encoders", "runs")
REPO_FILES = (".dvc/config", ".dvcignore", ".gitignore", "dvc.yaml", "config")

STAND_IN = '''
R = "results/smoke"
RUN = "r1/seed0"

rule all:
    input: f"{R}/paper/table.csv"

rule data_split:
    output: f"{R}/data/train.json", f"{R}/data/images/train/000000.png"
    shell: "echo data > {output[0]}; echo png > {output[1]}"

rule features:
    input: f"{R}/data/train.json"
    output: f"{R}/encoders/features/vq_train.safetensors"
    shell: "(cat {input}; echo features) > {output}"

rule train_run:
    input: f"{R}/data/train.json", f"{R}/encoders/features/vq_train.safetensors"
    output:
        ckpt=f"{R}/runs/{RUN}/ckpt01/model.safetensors",
        metrics=f"{R}/runs/{RUN}/metrics.jsonl",
    shell:
        "mkdir -p {R}/runs/{RUN}/state; echo optimizer > {R}/runs/{RUN}/state/opt.pt;"
        "echo partial > {R}/runs/{RUN}/.model.safetensors.1.tmp;"
        "(cat {input}; echo weights) > {output.ckpt};"
        "echo '{{\\"loss\\": 1}}' > {output.metrics}"

rule eval_run:
    input: f"{R}/runs/{RUN}/ckpt01/model.safetensors", f"{R}/data/train.json"
    output: f"{R}/eval/{RUN}/ckpt01/metrics.json"
    shell: "(cat {input}; echo scored) > {output}"

rule analyze_adapters:
    input: f"{R}/runs/{RUN}/ckpt01/model.safetensors"
    output: f"{R}/analysis/adapters/{RUN}/probe.json"
    shell: "(cat {input}; echo probed) > {output}"

rule paper_table:
    input: rules.eval_run.output, rules.analyze_adapters.output, rules.train_run.output.metrics
    output: f"{R}/paper/table.csv"
    shell: "cat {input} > {output}"

rule data:
    input: rules.data_split.output
rule encoders:
    input: rules.features.output
rule train:
    input: rules.train_run.output
rule eval:
    input: rules.eval_run.output
rule analysis:
    input: rules.analyze_adapters.output
rule paper:
    input: rules.paper_table.output
'''


@dataclass(frozen=True)
class Producer:
    name: str
    install: Callable[[Path, pytest.FixtureRequest], None]  # workflow (and results) into a repo
    config_args: tuple[str, ...]     # selects the config (results/<cfg>/)
    cfg: str
    table_rules: frozenset[str]      # the only jobs left after pulling everything
    eval_rules: frozenset[str]       # the only jobs left after pulling what evaluation needs
    config_file: str | None          # for `python -m uvlm provenance`; None: no provenance

    @property
    def r(self) -> str:
        return f"results/{self.cfg}"


def install_stand_in(repo: Path, request: pytest.FixtureRequest) -> None:
    (repo / "workflow").mkdir()
    (repo / "workflow/Snakefile").write_text(STAND_IN)


def install_smoke(repo: Path, request: pytest.FixtureRequest) -> None:
    """The repository's workflow and the session's smoke results (mtimes kept), so that
    running the workflow in the repository finds everything up to date."""
    done = request.getfixturevalue("smoke_run")
    shutil.copytree(ROOT / "workflow", repo / "workflow")
    shutil.copytree(done / "results/smoke", repo / "results/smoke")


PRODUCERS = [
    Producer("stand-in", install_stand_in, (), "smoke", frozenset({"paper_table"}),
             frozenset({"eval_run"}), None),
    pytest.param(
        Producer("smoke", install_smoke, ("--configfile=config/smoke.yaml",), "smoke",
                 frozenset(f"paper_{name}" for name in targets(load(ROOT / "config/smoke.yaml"))),
                 frozenset({"eval_run", "eval_final", "judge"}), "config/smoke.yaml"),
        marks=pytest.mark.slow, id="smoke"),
]


def env() -> dict[str, str]:
    return dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        DVC_NO_ANALYTICS="1",
        GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@t",
    )


def run(cwd: Path, *cmd: str, ok: bool | None = True) -> subprocess.CompletedProcess:
    """Run a command; ok=True/False asserts success/failure, None asserts nothing."""
    p = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=300)
    if ok is not None:
        assert (p.returncode == 0) == ok, (
            f"{' '.join(cmd)} exited {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


def dvc(cwd: Path, *args: str, ok: bool | None = True) -> subprocess.CompletedProcess:
    return run(cwd, sys.executable, "-m", "dvc", *args, ok=ok)


def snakemake(cwd: Path, producer: Producer, *args: str, ok: bool | None = True):
    return run(cwd, sys.executable, "-m", "snakemake", "--workflow-profile", "none", "-c2",
               "--snakefile", str(cwd / "workflow/Snakefile"), *producer.config_args, *args, ok=ok)


def planned(output: str) -> dict[str, int]:
    """{rule: count} from the job table of a `snakemake -n` run."""
    counts, in_table = {}, False
    for line in output.splitlines():
        parts = line.split()
        if parts[:2] == ["job", "count"]:
            in_table = True
        elif in_table and len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
        elif in_table and parts and not set(parts[0]) <= {"-"}:
            in_table = False
    return counts


def tree(root: Path, sub: str = "results") -> dict[str, bytes]:
    """{relative path: content} of every file under root/sub (.dvc files excluded)."""
    base = root / sub
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(base.rglob("*"))
            if p.is_file() and p.suffix != ".dvc"} if base.exists() else {}


def object_path(store: Path, content: bytes) -> Path:
    """Where DVC 3 keeps a file's object in a cache or a local remote."""
    md5 = hashlib.md5(content).hexdigest()
    return store / "files" / "md5" / md5[:2] / md5[2:]


def corrupt(path: Path) -> None:
    path.chmod(0o644)
    path.write_bytes(b"bit rot\n")


@dataclass(frozen=True)
class Shared:
    """A producer's repository, its results versioned and pushed to the default remote."""
    src: Path
    producer: Producer

    @property
    def r(self) -> str:
        return self.producer.r

    def clone(self, name: str) -> Path:
        dest = self.src.parent / name
        run(self.src.parent, "git", "clone", "-q", str(self.src), str(dest))
        return dest

    def snakemake(self, repo: Path, *args: str, ok: bool | None = True):
        return snakemake(repo, self.producer, *args, ok=ok)

    def versioned(self) -> dict[str, bytes]:
        """What DVC should restore: the stage folders minus .dvcignore'd scratch."""
        return {p: c for p, c in tree(self.src).items()
                if p.split("/")[2] in STAGES and "/state/" not in p and ".tmp" not in p
                and not p.endswith("/trainer.lock")}


@pytest.fixture(scope="module", params=PRODUCERS, ids=lambda p: p.name)
def shared(request, tmp_path_factory) -> Shared:
    """The repository's DVC setup in a fresh git repository whose default remote
    (../../uvlm-dvc-remote from .dvc/, i.e. a sibling of the repository) lies in tmp."""
    producer = request.param
    top = tmp_path_factory.mktemp("dvc")
    src = top / "src"
    src.mkdir()
    run(src, "git", "init", "-q")
    for name in REPO_FILES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name)
        else:
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / name, src / name)
    producer.install(src, request)
    snakemake(src, producer, "all")
    dvc(src, "add", *(f"{producer.r}/{s}" for s in STAGES))
    run(src, "git", "add", "-A")
    run(src, "git", "commit", "-qm", f"{producer.cfg} artifacts")
    dvc(src, "push")
    assert (top / "uvlm-dvc-remote" / "files" / "md5").is_dir()
    return Shared(src, producer)


def private_remote(shared: Shared, repo: Path) -> Path:
    """A copy of the remote only `repo` uses (set with --local, as users do)."""
    remote = repo.parent / f"{repo.name}-remote"
    shutil.copytree(shared.src.parent / "uvlm-dvc-remote", remote)
    dvc(repo, "remote", "modify", "--local", "uvlm-local", "url", str(remote))
    return remote


# ------------------------------------------------------------------ setup of the repository

def test_repository_default_remote_is_local_and_verified():
    remotes = dvc(ROOT, "remote", "list").stdout
    assert "uvlm-local" in remotes and "(default)" in remotes
    assert dvc(ROOT, "config", "remote.uvlm-local.verify").stdout.strip() == "true"


def test_remote_moves_per_clone_without_editing_the_committed_config(shared):
    repo = shared.clone("moved")
    before = (repo / ".dvc/config").read_bytes()
    dvc(repo, "remote", "modify", "--local", "uvlm-local", "url", "/elsewhere/remote")
    assert (repo / ".dvc/config").read_bytes() == before
    assert "/elsewhere/remote" in dvc(repo, "remote", "list").stdout


def test_only_the_dvc_files_enter_git(shared):
    tracked = run(shared.src, "git", "ls-files", "results").stdout.split()
    assert tracked == sorted(f"{shared.r}/{s}.dvc" for s in STAGES)


# ------------------------------------------------------------------ round trips

def test_pull_everything_restores_the_versioned_files(shared):
    repo = shared.clone("everything")
    dvc(repo, "pull")
    got = tree(repo)
    assert got == shared.versioned()
    assert not any("/state/" in p or ".tmp" in p or p.endswith("/trainer.lock")
                   for p in got)  # .dvcignore'd scratch
    assert not (repo / shared.r / "paper").exists()  # tables are rebuilt, not versioned


def test_after_a_full_pull_the_post_pull_step_leaves_only_the_tables(shared):
    repo, r = shared.clone("post-pull"), shared.r
    dvc(repo, "pull")
    # checkout order decides mtimes: here the data came last, so everything looks stale
    for p in (repo / r / "data").rglob("*"):
        os.utime(p)
    assert "train_run" in planned(shared.snakemake(repo, "-n", "all").stdout)
    # the post-pull step: mark the pulled stages up to date, in DAG order
    shared.snakemake(repo, "--touch", "data", "encoders", "train", "eval", "analysis")
    plan = planned(shared.snakemake(repo, "-n", "all").stdout)
    assert set(plan) - {"all", "total"} <= shared.producer.table_rules, plan
    shared.snakemake(repo, "all")
    assert tree(repo, f"{r}/paper") == tree(shared.src, f"{r}/paper")


def test_pull_only_what_the_tables_need(shared):
    repo, r = shared.clone("tables"), shared.r
    listing = dvc(repo, "ls", "-R", "--dvc-only", ".", f"{r}/runs").stdout.split()
    curves = [f"{r}/runs/{p}" for p in listing if p.endswith("/metrics.jsonl")]
    assert curves
    dvc(repo, "pull", *(f"{r}/{s}" for s in TABLES_NEED), *curves)
    assert not (repo / r / "data").exists() and not (repo / r / "encoders").exists()
    assert not list((repo / r / "runs").rglob("*.safetensors"))  # no checkpoints
    plan = planned(shared.snakemake(repo, "-n", "paper").stdout)
    assert set(plan) - {"paper", "total"} <= shared.producer.table_rules, plan
    shared.snakemake(repo, "paper")
    assert tree(repo, f"{r}/paper") == tree(shared.src, f"{r}/paper")


def test_pull_only_what_evaluation_needs(shared):
    repo, r = shared.clone("evaluation"), shared.r
    dvc(repo, "pull", *(f"{r}/{s}" for s in EVAL_NEEDS))
    shared.snakemake(repo, "--touch", "data", "encoders", "train")
    plan = planned(shared.snakemake(repo, "-n", "eval").stdout)
    assert "eval_run" in plan, plan
    assert set(plan) - {"eval", "total"} <= shared.producer.eval_rules, plan


def test_provenance_travels_with_the_artifacts(shared):
    """Every versioned artifact's provenance.json is pulled with it: the check passes on the
    producer's config and names what another config invalidates."""
    if shared.producer.config_file is None:
        pytest.skip(f"the {shared.producer.name} workflow records no provenance")
    repo = shared.clone("provenance")
    dvc(repo, "pull")
    check = (sys.executable, "-m", "uvlm", "provenance", "--config", shared.producer.config_file)
    assert " 0 mismatch, 0 missing, 0 unreadable" in run(repo, *check).stdout
    p = run(repo, *check, "--set", "eval.bootstrap=7", ok=False)
    flagged = re.findall(r"^MISMATCH (\S+):", p.stdout, flags=re.M)
    assert flagged and all(f.startswith(("eval/", "analysis/")) for f in flagged), p.stdout
    assert "eval.bootstrap 100 -> 7" in p.stdout


# ------------------------------------------------------------------ corruption

def test_corrupted_object_in_the_remote_fails_the_pull_and_is_never_checked_out(shared):
    repo, r = shared.clone("bad-remote"), shared.r
    remote = private_remote(shared, repo)
    good = shared.versioned()
    victim = next(p for p in good if p.startswith(f"{r}/eval/"))
    corrupt(object_path(remote, good[victim]))

    p = dvc(repo, "pull", "-v", ok=False)
    assert f"{r}/eval" in p.stderr and "Checkout failed" in p.stderr
    assert "corrupted" in p.stdout + p.stderr  # the verbose log names the bad object
    got = tree(repo)
    assert victim not in got
    assert all(got[f] == good[f] for f in got)  # what was restored is intact
    assert {f for f in good if not f.startswith(f"{r}/eval/")} <= set(got)
    assert not object_path(repo / ".dvc/cache", good[victim]).exists()
    # fetch alone cannot tell; the object is re-hashed before any checkout uses it
    dvc(repo, "fetch")
    dvc(repo, "checkout", f"{r}/eval.dvc", ok=False)
    assert victim not in tree(repo)


def test_corrupted_object_in_the_cache_is_replaced_by_pull(shared):
    repo, r = shared.clone("bad-cache"), shared.r
    dvc(repo, "pull")
    good = shared.versioned()
    victim = next(p for p in good if p.startswith(f"{r}/runs/") and p.endswith(".safetensors"))
    corrupt(object_path(repo / ".dvc/cache", good[victim]))
    shutil.rmtree(repo / r / "runs")
    dvc(repo, "pull", f"{r}/runs")
    assert (repo / victim).read_bytes() == good[victim]
    assert object_path(repo / ".dvc/cache", good[victim]).read_bytes() == good[victim]


# ------------------------------------------------------------------ bad input

def test_pull_of_a_target_that_is_not_versioned_names_it(shared):
    repo = shared.clone("unversioned")
    for target in (f"{shared.r}/paper", "results/no-such-config/runs"):
        p = dvc(repo, "pull", target, ok=False)
        assert f"'{target}' does not exist as an output" in p.stderr


def test_missing_remote_is_an_error_and_a_failed_pull_deletes_nothing(shared):
    repo, r = shared.clone("no-remote"), shared.r
    dvc(repo, "pull", f"{r}/data", f"{r}/eval")
    # local work a failed pull must not touch: a rebuilt table
    (repo / r / "paper").mkdir()
    (repo / r / "paper/table.csv").write_text("local table\n")
    before = tree(repo)

    p = dvc(repo, "pull", "-r", "no-such-remote", ok=False)
    assert "remote 'no-such-remote' doesn't exist" in p.stderr
    assert tree(repo) == before

    # the default remote's folder is gone: the missing objects are listed, nothing else moves
    dvc(repo, "remote", "modify", "--local", "uvlm-local", "url", str(repo.parent / "gone"))
    p = dvc(repo, "pull", f"{r}/runs", ok=False)
    assert "Missing cache files" in p.stderr and f"{r}/runs" in p.stderr
    assert tree(repo) == before

    # a pull over local edits refuses instead of overwriting them
    dvc(repo, "remote", "modify", "--local", "uvlm-local", "url",
        str(shared.src.parent / "uvlm-dvc-remote"))
    edited = next((repo / r / "eval").rglob("metrics.json"))
    edited.write_text("edited locally\n")
    before = tree(repo)
    p = dvc(repo, "pull", ok=False)
    assert "Use `--force` to force" in p.stderr
    assert tree(repo) == before
