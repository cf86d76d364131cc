"""`python -m uvlm data-variants --config C`: the training files of the grid's other runs.

Writes ``R/data/variants/{name}.json`` for every name in ``uvlm.grid.data_variants(cfg)``:

* ``biased-weather``, ``biased-battery`` (transfer experiment, docs/paper.md §3.4): the train
  records, minus the understanding records (VQA and caption) of every image whose attribute
  lies outside the kept set of ``data.bias`` (default: sunny only; battery 0..49 %), unless
  that image is drawn with probability ``data.bias.other_fraction``. Every generation record
  is kept, so a mixed run still sees all values in its generation data while an
  understanding-only run never learns the missing ones. The paper's own bias scheme was not
  released; this one is the simplest that matches its reported u-only result (about 1/3
  weather accuracy, i.e. one weather value seen).
* ``extra-gen-{n}`` / ``extra-und-{n}`` (imbalance experiment, docs/paper.md §3.2): the records of
  the first ``n`` images of the ``extra`` split (generation only, or VQA and caption only)
  followed by all train records, as in the paper's ``33kg_180km`` files.
* ``summary``: per file, the record count per task and, for understanding and generation
  records separately, the counts per weather and per battery decile, so the bias is visible.
"""

from __future__ import annotations

import functools
from collections import Counter
from pathlib import Path

from uvlm import UvlmError, paths, provenance
from uvlm.cli import command_parser, parse_command
from uvlm.config import BiasConfig, Config
from uvlm.data.attributes import WEATHERS, Watch
from uvlm.data.records import load_attributes, load_records
from uvlm.grid import data_variants
from uvlm.utils import rng, write_json

UNDERSTANDING = ("vqa", "caption")


def keeps_weather(watch: Watch, bias: BiasConfig) -> bool:
    return watch.weather in bias.weather_keep


def keeps_battery(watch: Watch, bias: BiasConfig) -> bool:
    lo, hi = bias.battery_keep
    return lo <= watch.battery <= hi


#: biased attribute -> whether an image's understanding records stay in the biased file
BIASES = {"weather": keeps_weather, "battery": keeps_battery}
#: extra-data variant kind -> tasks whose extra records are added
EXTRA_TASKS = {"gen": ("generation",), "und": UNDERSTANDING}


def biased(cfg: Config, attribute: str, train: list[dict], watches: list[Watch]) -> list[dict]:
    """Train records with understanding data biased on ``attribute`` (generation complete)."""
    keep_fn, bias = BIASES[attribute], cfg.data.bias

    def kept(image_id: int) -> bool:
        if keep_fn(watches[image_id], bias):
            return True
        draw = rng(cfg.seed, "variants", f"biased-{attribute}", image_id).random()
        return bool(draw < bias.other_fraction)

    keep = [kept(i) for i in range(len(watches))]
    return [r for r in train if r["task"] not in UNDERSTANDING or keep[r["image_id"]]]


def extra(kind: str, n: int, train: list[dict], extra_records: list[dict],
          n_extra: int, extra_path: Path) -> list[dict]:
    """The first ``n`` extra images' records of the ``kind`` tasks, then the train records."""
    if n > n_extra:
        raise UvlmError(f"{extra_path}: has {n_extra} images; extra-{kind}-{n} needs {n}")
    tasks = EXTRA_TASKS[kind]
    return [r for r in extra_records if r["image_id"] < n and r["task"] in tasks] + train


def _battery_decile(battery: int) -> str:
    lo = min(battery // 10 * 10, 90)
    return f"{lo}-{lo + 9 if lo < 90 else 100}"


BATTERY_DECILES = tuple(dict.fromkeys(_battery_decile(b) for b in range(101)))


def summarize(records: list[dict], watches: dict[str, list[Watch]]) -> dict:
    """Counts per task, and per weather / battery decile for each task group."""
    tasks = Counter(r["task"] for r in records)
    groups = {"understanding": [r for r in records if r["task"] in UNDERSTANDING],
              "generation": [r for r in records if r["task"] == "generation"]}
    out: dict = {"records": len(records), "tasks": dict(sorted(tasks.items()))}
    for name, group in groups.items():
        ws = [watches[r["split"]][r["image_id"]] for r in group]
        weather = Counter(w.weather for w in ws)
        battery = Counter(_battery_decile(w.battery) for w in ws)
        out[name] = {"weather": {k: weather[k] for k in WEATHERS},
                     "battery": {k: battery[k] for k in BATTERY_DECILES}}
    return out


def build_variants(cfg: Config) -> tuple[dict[str, list[dict]], dict]:
    """The records of every variant the grid needs, by name, and their summary.

    The summary also covers ``train`` for reference. The ``extra`` split is read only when
    an extra-data variant is asked for.
    """
    train = load_records(paths.data_file(cfg, "train"))
    watches = {"train": load_attributes(paths.attributes_file(cfg, "train"))}
    extra_path = paths.data_file(cfg, "extra")

    @functools.cache
    def extra_records() -> list[dict]:
        watches["extra"] = load_attributes(paths.attributes_file(cfg, "extra"))
        return load_records(extra_path)

    def with_extra(kind: str, n: int) -> list[dict]:
        records = extra_records()
        return extra(kind, n, train, records, len(watches["extra"]), extra_path)

    builders = {f"biased-{a}": functools.partial(biased, cfg, a, train, watches["train"])
                for a in BIASES}
    builders |= {f"extra-gen-{n}": functools.partial(with_extra, "gen", n)
                 for n in cfg.data.extra_generation}
    builders |= {f"extra-und-{n}": functools.partial(with_extra, "und", n)
                 for n in cfg.data.extra_understanding}
    variants = {}
    for name in data_variants(cfg):
        if name == "summary":
            continue
        if name not in builders:
            raise ValueError(f"data variant {name!r} has no builder; known: "
                             f"{', '.join(builders)}")
        variants[name] = builders[name]()
    summary = {name: summarize(records, watches)
               for name, records in {"train": train, **variants}.items()}
    return variants, summary


def main(argv: list[str]) -> None:
    p = command_parser("uvlm data-variants", __doc__.split("\n")[0])
    args, cfg = parse_command(p, argv)
    variants, summary = build_variants(cfg)
    for name, records in variants.items():
        write_json(paths.variant_file(cfg, name), records)
    write_json(paths.variant_file(cfg, "summary"), summary)
    provenance.write(cfg, "data-variants")
    for name, s in summary.items():
        print(f"{name}: {s['records']} records {s['tasks']}; understanding weather "
              f"{s['understanding']['weather']}")
