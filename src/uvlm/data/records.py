"""Reading and writing the data stage's files, with validation.

* ``R/data/{split}.json`` and ``R/data/variants/*.json``: LLaVA records (``load_records``);
* ``R/data/attributes/{split}.csv``: one ground-truth row per image (``load_attributes``).

Every error names the file and the record index or CSV line.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from uvlm import UvlmError, paths
from uvlm.data.attributes import ATTRIBUTES, POSITIONS, WEATHERS, Watch
from uvlm.data.tasks import IMAGE_TOKEN, RECORD_ORDER, TASKS
from uvlm.utils import atomic_write, read_json

RECORD_KEYS = ("attributes", "conversations", "id", "image", "image_id", "split", "task")
CSV_COLUMNS = ("id", "file", "hour", "minute", "second", "weather", "battery", "weather_pos",
               "battery_pos", "face_color")


def image_file(split: str, image_id: int) -> str:
    """An image's ``image`` field: its path relative to ``R/data`` (``uvlm.paths``)."""
    return paths.image_relpath(split, image_id)


def record_problem(r: object) -> str | None:
    """What is wrong with one record, or None if it is well formed."""
    if not isinstance(r, dict):
        return f"expected an object, got {type(r).__name__}"
    if sorted(r) != list(RECORD_KEYS):
        return f"keys {sorted(r)}; expected {list(RECORD_KEYS)}"
    task, split, image_id = r["task"], r["split"], r["image_id"]
    if task not in TASKS:
        return f"task {task!r}; allowed: {', '.join(TASKS)}"
    if split not in RECORD_ORDER:
        return f"split {split!r}; allowed: {', '.join(RECORD_ORDER)}"
    if not isinstance(image_id, int) or image_id < 0:
        return f"image_id {image_id!r} is not a non-negative integer"
    if r["id"] != f"{split}-{image_id:06d}-{task}":
        return f"id {r['id']!r} does not match split, image_id and task"
    if r["image"] != image_file(split, image_id):
        return f"image {r['image']!r}; expected {image_file(split, image_id)!r}"
    conv = r["conversations"]
    if not isinstance(conv, list) or not conv or len(conv) % 2:
        return "conversations must be a non-empty list of human/gpt pairs"
    for i, turn in enumerate(conv):
        want = "human" if i % 2 == 0 else "gpt"
        if (not isinstance(turn, dict) or sorted(turn) != ["from", "value"]
                or turn["from"] != want or not isinstance(turn["value"], str)):
            return f"conversations[{i}] must be {{'from': {want!r}, 'value': str}}"
    values = [t["value"] for t in conv]
    if task == "generation":
        if len(conv) != 2 or IMAGE_TOKEN in values[0] or not values[1].endswith(IMAGE_TOKEN):
            return "generation: one turn, a text prompt and an answer ending in <image>"
    else:
        if not values[0].startswith(IMAGE_TOKEN + "\n"):
            return "understanding: the first human turn must start with '<image>\\n'"
        if sum(v.count(IMAGE_TOKEN) for v in values) != 1:
            return "understanding: <image> must appear exactly once"
    attrs = r["attributes"]
    if not isinstance(attrs, list) or any(a not in ATTRIBUTES for a in attrs):
        return f"attributes {attrs!r}; each must be one of {', '.join(ATTRIBUTES)}"
    if task == "vqa" and len(attrs) != len(conv) // 2:
        return f"vqa: {len(attrs)} attributes for {len(conv) // 2} turns"
    if task != "vqa" and "time" not in attrs:
        return f"{task}: attributes must include 'time'"
    return None


def load_records(path: str | Path) -> list[dict]:
    """The records of a data JSON file, validated (ValueError names file and index)."""
    records = read_json(path)
    if not isinstance(records, list):
        raise UvlmError(f"{path}: expected a JSON list of records")
    for i, r in enumerate(records):
        problem = record_problem(r)
        if problem:
            rid = r.get("id") if isinstance(r, dict) else None
            raise UvlmError(f"{path}: record {i} ({rid!r}): {problem}")
    return records


def write_attributes(path: str | Path, split: str, watches: list[Watch]) -> None:
    """The ground-truth table of a split; row i is image id i."""
    with atomic_write(path, "w") as fh:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(CSV_COLUMNS)
        for i, w in enumerate(watches):
            out.writerow([i, image_file(split, i), w.hour, w.minute, w.second, w.weather,
                          w.battery, w.weather_pos, w.battery_pos, w.face_hex])


def _watch(row: dict, index: int) -> Watch:
    def integer(key, lo, hi):
        v = int(row[key])
        if not lo <= v <= hi:
            raise ValueError(f"{key}={v} outside [{lo}, {hi}]")
        return v

    if integer("id", index, index) != index:
        raise ValueError(f"id {row['id']} is not the row index {index}")
    for key, allowed in (("weather", WEATHERS), ("weather_pos", POSITIONS),
                         ("battery_pos", POSITIONS)):
        if row[key] not in allowed:
            raise ValueError(f"{key}={row[key]!r}; allowed: {', '.join(allowed)}")
    if row["weather_pos"] == row["battery_pos"]:
        raise ValueError("weather_pos and battery_pos must differ")
    if not re.fullmatch(r"#[0-9a-f]{6}", row["face_color"]):
        raise ValueError(f"face_color={row['face_color']!r} is not #rrggbb")
    face = tuple(int(row["face_color"][i:i + 2], 16) for i in (1, 3, 5))
    return Watch(integer("hour", 0, 12), integer("minute", 0, 59), integer("second", 0, 59),
                 row["weather"], integer("battery", 0, 100), row["weather_pos"],
                 row["battery_pos"], face)


def load_attributes(path: str | Path) -> list[Watch]:
    """The ground truth of a split; element i is image id i (ValueError names file and line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != CSV_COLUMNS:
            raise UvlmError(f"{path}: columns {reader.fieldnames}; expected {list(CSV_COLUMNS)}")
        watches = []
        for i, row in enumerate(reader):
            try:
                watches.append(_watch(row, i))
            except (ValueError, TypeError) as e:
                raise UvlmError(f"{path}: line {i + 2}: {e}") from None
    return watches
