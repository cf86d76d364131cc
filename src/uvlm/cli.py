"""The command-line plumbing every ``python -m uvlm COMMAND`` shares: the ``--config`` and
``--set`` options and loading the config they name (``uvlm.config.load``)."""

from __future__ import annotations

import argparse
from typing import Any

from uvlm.config import Config, load


def command_parser(prog: str, description: str | None, **kw: Any) -> argparse.ArgumentParser:
    """A command's parser with the shared ``--config`` and ``--set`` options."""
    p = argparse.ArgumentParser(prog=prog, description=description, **kw)
    p.add_argument("--config", required=True, help="config YAML")
    # extend: `--set a=1 b=2` and `--set a=1 --set b=2` both apply every override (with
    # nargs alone a repeated --set would silently drop the earlier ones)
    p.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="config overrides: dotted.key=value")
    return p


def parse_command(parser: argparse.ArgumentParser,
                  argv: list[str]) -> tuple[argparse.Namespace, Config]:
    """Parse ``argv`` and load its ``--config`` with the ``--set`` overrides."""
    args = parser.parse_args(argv)
    return args, load(args.config, args.set)
