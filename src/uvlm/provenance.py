"""Provenance of the versioned artifacts: which config, code and packages made each one.

Artifacts pulled with DVC carry no Snakemake metadata, so a config change would not rerun
them. Every command that writes a versioned artifact therefore ends with
``provenance.write(cfg, command, **fields)``, which records, in a small JSON beside the
artifact (``UNITS``), the config sections the artifact depends on (the same sections as its
rule's ``params.depends``, a test keeps them equal) with their hash, the root seed, the git
commit and the package versions.

``python -m uvlm provenance --config C`` compares every record with the current config:

    MISMATCH runs/vq-vq_und/seed0/provenance.json: sections train differ: train.lr 0.001 -> 0.01
    MISSING  eval/vq-vq_gen/seed0/provenance.json: no provenance for eval/vq-vq_gen/seed0/ckpt01/...
    NOTE     3 artifacts: made at git commit 1a2b... (now 9f8e...)

and exits with status 1 on any MISMATCH, MISSING or UNREADABLE record, and when it finds no
record at all (a config name without results, an empty pull): it is the safety gate of the
DVC recipes, and checking nothing must not pass. Git commits and package versions differing
from the current ones are reported as NOTE only.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uvlm import UvlmError, paths
from uvlm.cli import command_parser, parse_command
from uvlm.config import Config, to_dict
from uvlm.utils import read_json, write_json

SCHEMA = 1
STAGES = paths.STAGES  # the DVC-versioned folders


@dataclass(frozen=True)
class Unit:
    """What one command writes. Paths are under ``cfg.root`` with ``{field}`` placeholders;
    a record's fields must name every placeholder of ``record``."""

    sections: tuple[str, ...]  # config sections it depends on (the rule's params.depends)
    artifact: str              # a file that exists exactly when the artifact does
    record: str                # its provenance JSON


TRAIN = ("data", "encoders", "model", "train")
_R = ""  # paths relative to the results root; {run}, {seed}, ... are a record's fields
UNITS: dict[str, Unit] = {
    "data": Unit(("data",), paths.data_file(_R, "{split}"),
                 paths.stage_record(_R, "data", "{split}")),
    "data-variants": Unit(("data",), paths.variant_file(_R, "{name}"),
                          paths.stage_record(_R, "data", "variants")),
    "encoders-tokenizer": Unit(("data", "encoders", "model"), paths.tokenizer_file(_R),
                               paths.stage_record(_R, "encoders", "tokenizer")),
    "encoders-siglip": Unit(("data", "encoders"), paths.encoder_weights(_R, "siglip"),
                            paths.stage_record(_R, "encoders", "siglip")),
    "encoders-vq": Unit(("data", "encoders"), paths.encoder_weights(_R, "vq"),
                        paths.stage_record(_R, "encoders", "vq")),
    "encoders-features": Unit(("data", "encoders"), paths.features_file(_R, "{space}", "{split}"),
                              paths.stage_record(_R, "encoders", "features_{space}_{split}")),
    "encoders-affine": Unit(("encoders",), paths.affine_file(_R, "{space}", "{strength}"),
                            paths.stage_record(_R, "encoders", "affine")),
    "train": Unit(TRAIN, paths.train_log(_R, "{run}", "{seed}"),
                  paths.record(paths.run_dir(_R, "{run}", "{seed}"))),
    "judge-train": Unit(("data", "encoders", "eval"), paths.judge_weights(_R, "{judge}"),
                        paths.record(paths.judge_dir(_R, "{judge}"))),
    "evaluate": Unit((*TRAIN, "eval"), paths.eval_metrics(_R, "{run}", "{seed}", "{ckpt}"),
                     paths.record(paths.eval_run_dir(_R, "{run}", "{seed}"))),
    "probe-spaces": Unit(("data", "encoders", "eval"), paths.space_probe(_R),
                         paths.record(paths.space_probe_dir(_R))),
    "analyze-adapters": Unit((*TRAIN, "eval"), paths.adapter_probe(_R, "{run}", "{seed}"),
                             paths.record(paths.adapter_probe_dir(_R, "{run}", "{seed}"))),
}

_FIELD = re.compile(r"\{(\w+)\}")


def _placeholders(template: str) -> set[str]:
    return set(_FIELD.findall(template))


def _glob(template: str, fields: dict[str, Any]) -> str:
    """The template with the given fields filled in and every other placeholder as ``*``."""
    return _FIELD.sub(lambda m: str(fields[m[1]]) if m[1] in fields else "*", template)


def _regex(template: str) -> re.Pattern:
    parts = _FIELD.split(template)  # literal, name, literal, name, ..., literal
    return re.compile("".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>[^/]+?)"
                              for i, p in enumerate(parts)) + "$")


# --------------------------------------------------------------------------- writing

def section_config(cfg: Config, sections: tuple[str, ...]) -> dict:
    """The config an artifact depends on; its JSON is the rule's ``params.depends``."""
    d = to_dict(cfg)
    return {name: d[name] for name in sections} | {"seed": cfg.seed}


def config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


@functools.cache
def git_state() -> dict:
    """Commit and dirtiness of the checkout the uvlm package runs from (null outside git)."""
    src = Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            p = subprocess.run(["git", "-C", str(src), *args], capture_output=True, text=True,
                               timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return p.stdout.strip() if p.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status)}


@functools.cache
def package_versions() -> dict[str, str]:
    """uvlm and every pinned runtime dependency, as installed."""
    names = ["uvlm"] + [re.split(r"[=<>!~;\[ ]", r, maxsplit=1)[0]
                        for r in importlib.metadata.requires("uvlm") or []
                        if "extra ==" not in r]
    return {n: importlib.metadata.version(n) for n in names}


def write(cfg: Config, command: str, *, precision: str | None = None,
          **fields: str | int) -> Path | None:
    """Record the provenance of what ``command`` just wrote (``UNITS[command]``).

    ``precision``: what a training job actually ran in (``auto`` resolves per machine, and
    results differ in the last bits between fp32 and bf16).

    Call it last, after the artifact is complete. Under accelerate/torchrun only rank 0
    writes (returns None elsewhere).
    """
    if command not in UNITS:
        raise KeyError(f"provenance: unknown command {command!r}; known: {', '.join(UNITS)}")
    unit = UNITS[command]
    if set(fields) != _placeholders(unit.record):
        raise ValueError(f"provenance of {command}: expected fields "
                         f"{sorted(_placeholders(unit.record))}, got {sorted(fields)}")
    if os.environ.get("RANK", "0") != "0":
        return None
    if not any(cfg.root.glob(_glob(unit.artifact, fields))):
        raise FileNotFoundError(f"provenance of {command}: no artifact "
                                f"{cfg.root / _glob(unit.artifact, fields)}; write it first")
    config = section_config(cfg, unit.sections)
    path = cfg.root / unit.record.format(**fields)
    write_json(path, {
        "schema": SCHEMA, "command": command, "fields": fields,
        "config_name": cfg.name, "sections": list(unit.sections),
        "config_hash": config_hash(config), "config": config, "seed": cfg.seed,
        "git": git_state(), "packages": package_versions(),
        "python": platform.python_version(),
        **({"precision": precision} if precision else {}),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    })
    return path


# --------------------------------------------------------------------------- checking

def _flatten(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, dict):
        return {k: v for key, sub in value.items()
                for k, v in _flatten(sub, f"{prefix}.{key}" if prefix else key).items()}
    return {prefix: value}


def config_diff(recorded: dict, current: dict) -> list[tuple[str, Any, Any]]:
    """(dotted key, recorded value, current value) for every key whose value differs."""
    old, new = _flatten(recorded, ""), _flatten(current, "")
    absent = "(absent)"
    return [(k, old.get(k, absent), new.get(k, absent)) for k in sorted(set(old) | set(new))
            if old.get(k, absent) != new.get(k, absent)]


@dataclass(frozen=True)
class Finding:
    kind: str  # MISMATCH, MISSING, UNREADABLE
    path: str  # the provenance record, relative to cfg.root
    detail: str

    def __str__(self) -> str:
        return f"{self.kind:<8} {self.path}: {self.detail}"


def _read_record(path: Path) -> dict:
    rec = read_json(path)  # its error names the file
    if not isinstance(rec, dict):
        raise UvlmError(f"{path}: expected a JSON object")
    for key in ("command", "sections", "config_hash", "config", "git", "packages"):
        if key not in rec:
            raise UvlmError(f"{path}: missing key {key!r}")
    if rec["command"] not in UNITS:
        raise UvlmError(f"{path}: unknown command {rec['command']!r}")
    return rec


def _compare(rel: str, rec: dict, cfg: Config) -> Finding | None:
    unit = UNITS[rec["command"]]
    if list(unit.sections) != rec["sections"]:
        return Finding("MISMATCH", rel, f"recorded sections {', '.join(rec['sections'])}; "
                       f"{rec['command']} now depends on {', '.join(unit.sections)}")
    current = section_config(cfg, unit.sections)
    if config_hash(current) == rec["config_hash"]:
        return None
    diff = config_diff(rec["config"], current)
    sections = sorted({key.split(".")[0] for key, _, _ in diff})
    shown = [f"{key} {json.dumps(old)} -> {json.dumps(new)}" for key, old, new in diff[:6]]
    more = f"; ... {len(diff) - 6} more" if len(diff) > 6 else ""
    return Finding("MISMATCH", rel, f"sections {', '.join(sections) or '(none)'} differ: "
                   + ("; ".join(shown) + more if diff else "recorded hash does not match"))


def _notes(rec: dict) -> list[str]:
    """Differences that do not make an artifact wrong but are worth knowing."""
    git_now, packages_now = git_state(), package_versions()
    notes = []
    if rec["git"].get("commit") != git_now["commit"]:
        notes.append(f"made at git commit {rec['git'].get('commit')} (now {git_now['commit']})")
    if rec["git"].get("dirty"):
        notes.append("made from a checkout with uncommitted changes")
    changed = [f"{n} {v} (now {packages_now.get(n, 'not installed')})"
               for n, v in sorted(rec["packages"].items()) if packages_now.get(n) != v]
    if changed:
        notes.append("made with " + ", ".join(changed))
    return notes


def check(cfg: Config, stages: tuple[str, ...] = STAGES) -> tuple[list[Finding], list[str], int]:
    """(problems, notes, records read) for the artifacts of ``stages`` under cfg.root."""
    root = cfg.root
    records: dict[Path, str] = {}  # provenance record -> the first artifact it covers
    for unit in UNITS.values():
        if unit.artifact.split("/")[0] not in stages:
            continue
        pattern = _regex(unit.artifact)
        for artifact in sorted(root.glob(_glob(unit.artifact, {}))):
            rel = artifact.relative_to(root).as_posix()
            if m := pattern.match(rel):
                records.setdefault(root / unit.record.format(**m.groupdict()), rel)
    problems: list[Finding] = []
    notes: dict[str, int] = {}
    read = 0
    for record, artifact in sorted(records.items()):
        rel = record.relative_to(root).as_posix()
        if not record.is_file():
            problems.append(Finding("MISSING", rel, f"no provenance for {artifact}"))
            continue
        try:
            rec = _read_record(record)
        except ValueError as e:
            problems.append(Finding("UNREADABLE", rel, str(e)))
            continue
        read += 1
        if finding := _compare(rel, rec, cfg):
            problems.append(finding)
        for note in _notes(rec):
            notes[note] = notes.get(note, 0) + 1
    return problems, [f"{n} artifact{'s' * (n > 1)}: {note}" for note, n in notes.items()], read


def main(argv: list[str]) -> None:
    p = command_parser("python -m uvlm provenance", __doc__.split("\n")[0])
    p.add_argument("--stage", nargs="+", choices=STAGES, default=list(STAGES),
                   help="folders under results/<name>/ to check (default: all)")
    args, cfg = parse_command(p, argv)
    problems, notes, checked = check(cfg, tuple(args.stage))
    if not checked and not problems:
        sys.exit(f"provenance {cfg.root}: nothing to check: no artifact of "
                 f"{', '.join(args.stage)} there (is the config name {cfg.name!r} right, "
                 f"and were its artifacts built or pulled?)")
    for f in problems:
        print(f)
    for note in notes:
        print(f"NOTE     {note}")
    counts = {k: sum(f.kind == k for f in problems) for k in ("MISMATCH", "MISSING", "UNREADABLE")}
    print(f"provenance {cfg.root}: {checked} records checked, "
          + ", ".join(f"{n} {k.lower()}" for k, n in counts.items()))
    if problems:
        sys.exit(1)
