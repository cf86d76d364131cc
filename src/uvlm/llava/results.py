"""`python -m uvlm llava-results --config C --run RUN --raw DIR`: lmms-eval's results of a run
where the report reads them.

lmms-eval writes ``DIR/<model>/<date>_results.json`` (DIR: its ``--output_path``). This copies
that file to ``R/eval/llava/{run}/results.json`` (``uvlm.paths.llava_results``)
after checking that it is an lmms-eval results file holding every task of ``llava.tasks``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from uvlm import UvlmError, paths
from uvlm.cli import command_parser, parse_command
from uvlm.config import Config
from uvlm.grid import Run, parse_run
from uvlm.report.collect import read_lmms_eval
from uvlm.utils import atomic_path, read_json


def results_file(raw: Path) -> Path:
    """The one ``*_results.json`` lmms-eval wrote under ``raw``."""
    found = sorted(Path(raw).rglob("*_results.json"))
    if len(found) != 1:
        raise FileNotFoundError(f"{raw}: expected one lmms-eval *_results.json, found "
                                f"{len(found)}{': ' + ', '.join(map(str, found)) if found else ''}")
    return found[0]


def collect(cfg: Config, run: Run, raw: Path) -> Path:
    """Copy lmms-eval's results of ``run`` to ``uvlm.paths.llava_results`` (atomically)."""
    src = results_file(raw)
    read_lmms_eval(src)  # refuses a file that is not lmms-eval's
    missing = [t for t in cfg.llava.tasks if t not in read_json(src)["results"]]
    if missing:
        raise UvlmError(f"{src}: no results for llava.tasks {', '.join(missing)}")
    out = paths.llava_results(cfg, run)
    with atomic_path(out) as tmp:
        shutil.copyfile(src, tmp)
    return out


def main(argv: list[str]) -> None:
    p = command_parser("uvlm llava-results", __doc__.split("\n")[0])
    p.add_argument("--run", required=True)
    p.add_argument("--raw", required=True, help="lmms-eval's --output_path")
    args, cfg = parse_command(p, argv)
    out = collect(cfg, parse_run(args.run), Path(args.raw))
    print(f"llava-results: {out}")
