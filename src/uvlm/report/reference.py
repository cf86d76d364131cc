"""The authors' raw numbers (``paper_numbers.yaml``), loaded and checked.

Every entry names its source file and commit; :func:`short_source` formats that citation
for the tables. The numbers are a reference column only: no verdict reads them.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from uvlm import UvlmError
from uvlm.report.collect import BENCHMARKS
from uvlm.report.spec import VQA_METRICS, VQA_SECTIONS

REFERENCE_PATH = Path(__file__).with_name("paper_numbers.yaml")
ENTRIES = ("vqvq_mixed_curve", "weather_biased", "adapter_probe", "llava")


def _need(d: dict, keys: tuple[str, ...], where: str) -> None:
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected a mapping")
    missing = [k for k in keys if k not in d]
    if missing:
        raise ValueError(f"{where}: missing key {missing[0]!r}")


def _scores(scores: dict, allowed, where: str) -> None:
    unknown = sorted(set(scores) - set(allowed))
    if unknown:
        raise ValueError(f"{where}: unknown metric {unknown[0]!r}; allowed: {', '.join(allowed)}")


def load_reference(path: Path = REFERENCE_PATH) -> dict:
    ref = yaml.safe_load(Path(path).read_text())
    _need(ref, ENTRIES, str(path))
    curve = ref["vqvq_mixed_curve"]
    where = f"{path}: vqvq_mixed_curve"
    _need(curve, ("source", "commit", "arch", "mode", "protocol", "fractions", "scores"), where)
    _scores(curve["scores"], VQA_METRICS, f"{where}.scores")
    for metric, values in curve["scores"].items():
        if len(values) != len(curve["fractions"]):
            raise ValueError(f"{where}.scores.{metric}: {len(values)} values for "
                             f"{len(curve['fractions'])} fractions")
    biased = ref["weather_biased"]
    where = f"{path}: weather_biased"
    _need(biased, ("arch", "attribute", "protocol", "runs"), where)
    _need(biased["runs"], ("und", "mixed"), f"{where}.runs")
    for mode, run in biased["runs"].items():
        _need(run, ("source", "commit", "verified", "scores"), f"{where}.runs.{mode}")
        _scores(run["scores"], VQA_METRICS, f"{where}.runs.{mode}.scores")
    for entry in (curve, biased):
        if entry["protocol"] not in VQA_SECTIONS:
            raise UvlmError(f"{path}: protocol {entry['protocol']!r} is not one of "
                             f"{', '.join(VQA_SECTIONS)}")
    _need(ref["adapter_probe"], ("source", "commit", "arch", "mode", "probe_accuracy"),
          f"{path}: adapter_probe")
    llava = ref["llava"]
    _need(llava, ("source", "commit", "rows"), f"{path}: llava")
    for i, row in enumerate(llava["rows"]):
        _need(row, ("run", "config", "scores"), f"{path}: llava.rows[{i}]")
        _scores(row["scores"], BENCHMARKS, f"{path}: llava.rows[{i}].scores")
    return ref


def short_source(entry: dict) -> str:
    """A table-cell citation: ``authors @ 4608171``."""
    return f"authors @ {entry['commit']}" + (", unverified" if entry.get("verified") is False
                                            else "")
