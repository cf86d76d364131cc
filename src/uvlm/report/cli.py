"""`python -m uvlm paper --config C --target NAME`: build one table, figure or findings.md.

`--list` prints every target this config asks for with its inputs and outputs (JSON), the
same lists the Snakefile declares.
"""

from __future__ import annotations

import argparse
import json
import sys

from uvlm.cli import command_parser
from uvlm.config import ConfigError, load
from uvlm.report.registry import TARGETS, build, targets


def main(argv: list[str]) -> None:
    p = command_parser("python -m uvlm paper", __doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--target", choices=list(TARGETS), help="the target to build")
    what.add_argument("--list", action="store_true", help="print targets, inputs, outputs")
    args = p.parse_args(argv)
    try:
        cfg = load(args.config, args.set)
        if args.list:
            json.dump({name: {"inputs": [str(x) for x in t.inputs],
                              "outputs": [str(x) for x in t.outputs]}
                       for name, t in targets(cfg).items()}, sys.stdout, indent=1)
            sys.stdout.write("\n")
            return
        for path in build(cfg, args.target):
            print(f"wrote {path}")
    except (ConfigError, FileNotFoundError, ValueError) as e:
        sys.exit(f"uvlm paper: {e}")
