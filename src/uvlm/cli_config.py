"""`python -m uvlm config-schema [--check CONFIG ...]`: print the JSON schema, or check
configs exactly as the Snakefile does before planning any job."""

from __future__ import annotations

import argparse
import sys

import yaml

from uvlm import preflight
from uvlm.config import ConfigError, json_schema, load


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="uvlm config-schema", description=__doc__)
    p.add_argument("--check", nargs="*", default=[], help="config files to validate")
    args = p.parse_args(argv)
    if not args.check:
        yaml.safe_dump(json_schema(), sys.stdout, sort_keys=False)
        return
    for path in args.check:
        try:
            cfg = load(path)
            preflight.check(cfg, path)
        except ConfigError as e:
            sys.exit(f"invalid: {e}")
        print(f"ok: {path} (name={cfg.name}, hash={cfg.hash()})")
