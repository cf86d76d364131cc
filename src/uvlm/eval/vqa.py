"""VQA scores of docs/paper.md §6.1 (the authors' ``calculate-sw.ipynb``), two protocols.

Per turn, with the ground-truth answer string ``truth`` and the model's ``answer``:

* time: ``1 - (min(dh, 12-dh)/6 + min(dm, 60-dm)/30 + min(ds, 60-ds)/30) / 3`` where the
  differences are taken modulo 12 (hours) and 60 (minutes, seconds). Both strings are read
  with ``(\\d{2}):(\\d{2}):(\\d{2})`` (first match); no match in the answer scores 0. Hour 12
  and hour 0 are the same dial position (the generator samples hours 0..12).
* battery: ``1 - |p_answer - p_truth| / 100``, read with ``\\b(100|[1-9]\\d?|0)%``; no match 0.
* weather, position: 1 if the truth string is a substring of the answer, else 0.

Per category (time, weather, position = weather_pos + battery_pos pooled, battery) the score
is the mean; ``total`` is the micro average, sum of scores / sum of counts.

Difference from the authors' script, on purpose: they compute ``min(|dh|, 12-|dh|)`` without
the modulo, which equals ours for every reading on a real dial (hour 0..12, minute and
second 0..59) but turns negative for out-of-range readings such as ``15:75:00``, giving
scores above 1. We reduce modulo 12/60 first, so every score lies in [0, 1].

Protocols over an answers file (rows as in ``uvlm.eval.answers``):

* ``official``: the authors' pipeline. Records in file order; the evaluation loop stops when
  its counter reaches 500, so only the first 499 records count. Of those, a record is scored
  when its prompt starts with ``<`` (an understanding sample) and its ground truth has no
  space (a VQA answer, not a caption); only the first turn exists in their answers file.
  The category comes from the ground-truth string exactly as their script decides it:
  ``:`` -> time, a weather word -> weather, ``-`` -> position, ``%`` -> battery.
* ``full``: every turn of every VQA record; the category comes from the row's ``attribute``
  and is checked against the ground-truth string.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence

from uvlm.eval.bootstrap import Ratios

TIME_RE = re.compile(r"(\d{2}):(\d{2}):(\d{2})")
BATTERY_RE = re.compile(r"\b(100|[1-9]\d?|0)%")
#: The authors' scorer tests the ground truth for these words (its own literal list).
WEATHER_WORDS = ("sunny", "raining", "cloudy")
CATEGORIES = ("time", "weather", "position", "battery")
METRICS = (*CATEGORIES, "total")
#: VQA attribute (data records) -> reported category; the two positions pool.
CATEGORY_OF = {"time": "time", "weather": "weather", "battery": "battery",
               "weather_pos": "position", "battery_pos": "position"}
#: the authors' cut: ``count += 1; if count == 500: break``
OFFICIAL_RECORD_LIMIT = 500


# --------------------------------------------------------------------------- parsing

def parse_time(text: str) -> tuple[int, int, int] | None:
    """First ``HH:MM:SS`` in ``text`` as integers, or None."""
    m = TIME_RE.search(text)
    return None if m is None else (int(m.group(1)), int(m.group(2)), int(m.group(3)))


def parse_battery(text: str) -> int | None:
    """First battery percentage (0..100) in ``text``, or None."""
    m = BATTERY_RE.search(text)
    return None if m is None else int(m.group(1))


def _truth(parse: Callable[[str], object], truth: str, what: str):
    value = parse(truth)
    if value is None:
        raise ValueError(f"ground truth {truth!r} contains no {what}")
    return value


# --------------------------------------------------------------------------- scores

def _wrapped(a: int, b: int, period: int) -> int:
    d = abs(a - b) % period
    return min(d, period - d)


def time_error(answer: tuple[int, int, int], truth: tuple[int, int, int]) -> float:
    """Mean wrapped error of (hour, minute, second), each normalised to [0, 1]."""
    return (_wrapped(answer[0], truth[0], 12) / 6.0
            + _wrapped(answer[1], truth[1], 60) / 30.0
            + _wrapped(answer[2], truth[2], 60) / 30.0) / 3.0


def time_score(answer: str, truth: str) -> float:
    gt = _truth(parse_time, truth, "HH:MM:SS time")
    ans = parse_time(answer)
    return 0.0 if ans is None else 1.0 - time_error(ans, gt)


def battery_score(answer: str, truth: str) -> float:
    gt = _truth(parse_battery, truth, "battery percentage")
    ans = parse_battery(answer)
    return 0.0 if ans is None else 1.0 - abs(ans - gt) / 100.0


def contains_score(answer: str, truth: str) -> float:
    return 1.0 if truth in answer else 0.0


SCORERS: dict[str, Callable[[str, str], float]] = {
    "time": time_score,
    "weather": contains_score,
    "position": contains_score,
    "battery": battery_score,
}


def category_of_truth(truth: str) -> str:
    """The authors' rule for which category a ground-truth answer belongs to."""
    if ":" in truth:
        return "time"
    if any(w in truth for w in WEATHER_WORDS):
        return "weather"
    if "-" in truth:
        return "position"
    if "%" in truth:
        return "battery"
    raise ValueError(f"unknown ground truth format: {truth!r}")


def score_turn(category: str, answer: str, truth: str) -> float:
    if category not in SCORERS:
        raise ValueError(f"unknown VQA category {category!r}; allowed: {', '.join(SCORERS)}")
    return SCORERS[category](answer, truth)


# --------------------------------------------------------------------------- protocols

def _is_first_turn(row: dict) -> bool:
    # Files in the authors' format have no "turn": each line is a record's first turn.
    return row.get("turn", 0) == 0


def official_items(rows: Sequence[dict]) -> list[tuple[str, float, str]]:
    """(category, score, cluster) of every turn the authors' pipeline scores."""
    items = []
    count = 0
    for i, row in enumerate(rows):
        if not _is_first_turn(row):
            continue
        count += 1
        if count == OFFICIAL_RECORD_LIMIT:
            break
        prompt, truth = row["prompt"], row["groun_truth"]
        if not prompt.startswith("<") or " " in truth:
            continue
        category = category_of_truth(truth)
        items.append((category, score_turn(category, row["answer"], truth),
                      str(row.get("question_id", i))))
    return items


def full_items(rows: Sequence[dict]) -> list[tuple[str, float, str]]:
    """(category, score, cluster) of every VQA turn; turns of one record share a cluster."""
    items = []
    for row in rows:
        if row["task"] != "vqa":
            continue
        category = CATEGORY_OF[row["attribute"]]
        derived = category_of_truth(row["groun_truth"])
        if derived != category:
            raise ValueError(f"answers row {row['question_id']}: attribute "
                             f"{row['attribute']!r} but ground truth {row['groun_truth']!r} "
                             f"reads as {derived!r}")
        items.append((category, score_turn(category, row["answer"], row["groun_truth"]),
                      row["record_id"]))
    return items


PROTOCOLS: dict[str, Callable[[Sequence[dict]], list[tuple[str, float, str]]]] = {
    "official": official_items,
    "full": full_items,
}


def vqa_ratios(items: Sequence[tuple[str, float, str]]) -> Ratios:
    """Per-cluster sums and counts of each category and of the micro-averaged total."""
    terms = []
    for category, score, cluster in items:
        terms += [(cluster, category, score, 1.0), (cluster, "total", score, 1.0)]
    return Ratios.from_terms(terms, METRICS)


def aggregate(items: Sequence[tuple[str, float, str]]) -> dict:
    """Per-category means, micro-averaged total and ``count_*`` of each.

    A category with no items gets value None (the authors' script would divide by zero).
    """
    ratios = vqa_ratios(items)
    values, counts = ratios.values(), ratios.counts()
    out: dict = {}
    for name in METRICS:
        out[name] = values[name]
        out[f"count_{name}"] = counts[name]
    return out


def score_vqa(rows: Sequence[dict], protocol: str) -> dict:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; allowed: {', '.join(PROTOCOLS)}")
    return aggregate(PROTOCOLS[protocol](rows))


# --------------------------------------------------------------------------- CLI

def main(argv: list[str]) -> None:
    from uvlm.eval.answers import read_answers

    p = argparse.ArgumentParser(prog="python -m uvlm score-vqa",
                                description="VQA scores of an answers file (docs/paper.md §6.1)")
    p.add_argument("answers", help="answers .jsonl (ours or the authors' format)")
    p.add_argument("--protocol", choices=list(PROTOCOLS), default="official")
    args = p.parse_args(argv)
    # The official protocol reads only the fields the authors' scorer reads, so it also
    # scores their files; the full protocol needs our per-turn fields.
    rows = read_answers(args.answers, official_only=args.protocol == "official")
    json.dump(score_vqa(rows, args.protocol), sys.stdout, indent=1)
    sys.stdout.write("\n")
