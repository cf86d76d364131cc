"""Caption scores: attributes read back from a generated caption and checked against truth.

The paper trains captions but never scores them (docs/paper.md §6.2; a reviewer noticed). We read
the five caption attributes back from the generated text:

* time: the first ``HH:MM:SS`` (the VQA regex); battery: the first ``N%`` (the VQA regex);
* weather: the first of the weather words;
* weather_pos / battery_pos: each corner word (``top-left`` ...) belongs to the subject named
  in its clause (text between commas or full stops): the nearest subject word before it in
  the clause (``weather``/a weather word/``forecast`` -> weather_pos; ``battery``/``charge``/
  ``power`` -> battery_pos), else the nearest after it. This covers every clause template
  of ``uvlm.data.tasks.CLAUSES`` ("with the weather icon at top-left", "battery shown at the
  bottom-right", ...). A corner with no subject in its clause is not counted as a mention.

Definitions, per attribute ``a`` over N captions (a caption = one test image):

* mentioned: the parser finds a value for ``a`` in the generated caption;
* correct: mentioned and equal to the image's truth (time: hour modulo 12, minute and
  second all equal; battery: the same integer);
* in_ref: the reference caption mentions ``a`` (the record's ``attributes``).

* ``precision_a`` = #correct / #mentioned: when the model states ``a``, how often it is right;
* ``recall_a`` = #(in_ref and correct) / #in_ref: of the attributes the reference states,
  how many the model states correctly (captions mention optional attributes at random, so
  even a perfect model's recall of an optional attribute is about its mention rate);
* ``mention_rate_a`` = #mentioned / N;
* ``score_time`` / ``score_battery``: the VQA formula (partial credit, 0 if not mentioned)
  averaged over the captions whose reference states it, comparable to the VQA scores;
* ``precision_total`` / ``recall_total``: micro averages over the five attributes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from uvlm.data.tasks import ATTRIBUTES
from uvlm.eval.bootstrap import Ratios
from uvlm.eval.vqa import parse_battery, parse_time, time_error

WEATHER_RE = re.compile(r"\b(sunny|cloudy|raining)\b")
POSITION_RE = re.compile(r"\b(?:top|bottom)-(?:left|right)\b")
CLAUSE_RE = re.compile(r"[^,.;]+")
#: subject words that say which icon a corner word in the same clause is about
SUBJECT_RES = {
    "weather_pos": re.compile(r"\b(?:weather|forecast|sunny|cloudy|raining)\b"),
    "battery_pos": re.compile(r"\b(?:battery|charge|power)\b"),
}
SOFT_SCORED = ("time", "battery")


def _position_subject(clause: str, at: int) -> str | None:
    """Which position attribute the corner word at offset ``at`` of ``clause`` belongs to."""
    before: list[tuple[int, str]] = []
    after: list[tuple[int, str]] = []
    for attr, pattern in SUBJECT_RES.items():
        for m in pattern.finditer(clause):
            if m.end() <= at:
                before.append((at - m.end(), attr))
            elif m.start() >= at:
                after.append((m.start() - at, attr))
    if before:
        return min(before)[1]
    if after:
        return min(after)[1]
    return None


def parse_caption(text: str) -> dict:
    """Attribute values stated in ``text`` (None where not stated).

    time -> (h, m, s); weather -> str; battery -> int; weather_pos / battery_pos -> str.
    """
    text = text.lower()
    weather = WEATHER_RE.search(text)
    out = {"time": parse_time(text), "weather": weather.group(1) if weather else None,
           "battery": parse_battery(text), "weather_pos": None, "battery_pos": None}
    for clause in CLAUSE_RE.finditer(text):
        for m in POSITION_RE.finditer(clause.group(0)):
            attr = _position_subject(clause.group(0), m.start())
            if attr is not None and out[attr] is None:
                out[attr] = m.group(0)
    return out


def _truth_value(attr: str, gt: dict):
    if attr == "time":
        return (gt["hour"], gt["minute"], gt["second"])
    return gt[attr]


def is_correct(attr: str, value, gt: dict) -> bool:
    if value is None:
        return False
    truth = _truth_value(attr, gt)
    if attr == "time":
        return value[0] % 12 == truth[0] % 12 and value[1:] == truth[1:]
    return value == truth


def soft_score(attr: str, value, gt: dict) -> float:
    """The VQA formula's partial credit for a stated time or battery (0 if not stated)."""
    if value is None:
        return 0.0
    if attr == "time":
        return 1.0 - time_error(value, _truth_value("time", gt))
    return 1.0 - abs(value - gt["battery"]) / 100.0


METRICS = (
    *(f"{kind}_{a}" for a in ATTRIBUTES for kind in ("precision", "recall", "mention_rate")),
    *(f"score_{a}" for a in SOFT_SCORED),
    "precision_total", "recall_total",
)


def caption_terms(cluster: str, caption: str, gt: dict,
                  ref_attributes: Sequence[str]) -> list[tuple[str, str, float, float]]:
    """(cluster, metric, num, den) terms of one generated caption."""
    parsed = parse_caption(caption)
    terms = []
    for a in ATTRIBUTES:
        mentioned = parsed[a] is not None
        correct = float(is_correct(a, parsed[a], gt))
        in_ref = float(a in ref_attributes)
        terms += [
            (cluster, f"precision_{a}", correct, float(mentioned)),
            (cluster, "precision_total", correct, float(mentioned)),
            (cluster, f"recall_{a}", in_ref * correct, in_ref),
            (cluster, "recall_total", in_ref * correct, in_ref),
            (cluster, f"mention_rate_{a}", float(mentioned), 1.0),
        ]
        if a in SOFT_SCORED:
            terms.append((cluster, f"score_{a}", in_ref * soft_score(a, parsed[a], gt), in_ref))
    return terms


def caption_ratios(rows: Sequence[dict]) -> Ratios:
    """Caption metrics of the caption rows of an answers file (other rows are ignored)."""
    terms = []
    for row in rows:
        if row["task"] == "caption":
            terms += caption_terms(row["record_id"], row["answer"], row["gt_attributes"],
                                   row["ref_attributes"])
    return Ratios.from_terms(terms, METRICS)
