"""The answers file: one JSON object per line, per evaluated turn.

Official fields (the authors' names, so their scorer reads our files unchanged):

    question_id      str   unique in the file: "<record_id>-<turn>" for VQA, else record_id
    prompt           str   the human turn (understanding prompts start with "<image>\\n")
    groun_truth      str   the reference gpt turn (their spelling)
    answer           str   the model's text output
    output_img_file  str | null  generation rows: the generated image (PNG, VQ heads) or
                           features (.safetensors with key "features" (T, D), continuous
                           heads), relative to the answers file's folder; null otherwise

Our fields:

    record_id        str   the data record's "id"
    image_id         int   row of the split's images / attributes / features
    task             "vqa" | "caption" | "generation"
    turn             int   0-based turn of the dialogue (always 0 for caption / generation)
    attribute        str | null  VQA: the attribute asked in this turn; else null
    gt_attributes    dict  the image's true hour, minute, second, weather, battery,
                           weather_pos, battery_pos
    prompt_attributes list generation: the attributes the prompt asks for; else []
    ref_attributes   list caption: the attributes the reference caption mentions; else []

Rows are written in the order of the data records (and turns), so the authors' 500-record
cut (``vqa.official_items``) sees the records in the order their loop would.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from uvlm import UvlmError
from uvlm.data.tasks import ATTRIBUTES, POSITIONS, TASKS, WEATHERS
from uvlm.utils import atomic_write

#: gt_attributes key -> (type, allowed values or inclusive range)
GT_SCHEMA: dict[str, tuple[type, tuple]] = {
    "hour": (int, (0, 12)),
    "minute": (int, (0, 59)),
    "second": (int, (0, 59)),
    "weather": (str, WEATHERS),
    "battery": (int, (0, 100)),
    "weather_pos": (str, POSITIONS),
    "battery_pos": (str, POSITIONS),
}
OFFICIAL_REQUIRED = ("prompt", "groun_truth", "answer")
FIELDS: dict[str, tuple[type, ...]] = {
    "question_id": (str,),
    "prompt": (str,),
    "groun_truth": (str,),
    "answer": (str,),
    "output_img_file": (str, type(None)),
    "record_id": (str,),
    "image_id": (int,),
    "task": (str,),
    "turn": (int,),
    "attribute": (str, type(None)),
    "gt_attributes": (dict,),
    "prompt_attributes": (list,),
    "ref_attributes": (list,),
}


class AnswersError(UvlmError):
    """An answers row is malformed; the message names the file/line or question."""


def _check_gt(gt: dict, where: str) -> None:
    if set(gt) != set(GT_SCHEMA):
        raise AnswersError(f"{where}: gt_attributes keys {sorted(gt)}; expected "
                           f"{sorted(GT_SCHEMA)}")
    for key, (tp, allowed) in GT_SCHEMA.items():
        v = gt[key]
        ok = isinstance(v, tp) and not isinstance(v, bool)
        if ok and tp is int:
            ok = allowed[0] <= v <= allowed[1]
        elif ok:
            ok = v in allowed
        if not ok:
            raise AnswersError(f"{where}: gt_attributes.{key} = {v!r} is not allowed")


def validate_row(row: dict, where: str, official_only: bool = False) -> None:
    """Raise AnswersError (message starts with ``where``) unless ``row`` is well-formed."""
    if not isinstance(row, dict):
        raise AnswersError(f"{where}: expected a JSON object, got {type(row).__name__}")
    if official_only:
        for key in OFFICIAL_REQUIRED:
            if not isinstance(row.get(key), str):
                raise AnswersError(f"{where}: field {key!r} missing or not a string")
        return
    missing = [k for k in FIELDS if k not in row]
    unknown = [k for k in row if k not in FIELDS]
    if missing or unknown:
        raise AnswersError(f"{where}: missing fields {missing}, unknown fields {unknown}")
    for key, types in FIELDS.items():
        if not isinstance(row[key], types) or isinstance(row[key], bool):
            raise AnswersError(f"{where}: field {key!r} = {row[key]!r} has the wrong type")
    task = row["task"]
    if task not in TASKS:
        raise AnswersError(f"{where}: task {task!r} not in {TASKS}")
    if (row["attribute"] is None) == (task == "vqa") or (
            task == "vqa" and row["attribute"] not in ATTRIBUTES):
        raise AnswersError(f"{where}: attribute {row['attribute']!r} does not fit task {task!r}")
    if row["turn"] < 0 or (task != "vqa" and row["turn"] != 0):
        raise AnswersError(f"{where}: turn {row['turn']} does not fit task {task!r}")
    for key, own_task in (("prompt_attributes", "generation"), ("ref_attributes", "caption")):
        attrs = row[key]
        if task != own_task and attrs:
            raise AnswersError(f"{where}: {key} must be [] for task {task!r}")
        bad = [a for a in attrs if a not in ATTRIBUTES]
        if bad:
            raise AnswersError(f"{where}: {key} has unknown attributes {bad}")
    if task == "generation" and row["output_img_file"] is None:
        raise AnswersError(f"{where}: generation row without output_img_file")
    _check_gt(row["gt_attributes"], where)


def read_answers(path: str | Path, official_only: bool = False) -> list[dict]:
    """Read and validate an answers file.

    ``official_only`` checks only the fields the authors' scorer reads (prompt, groun_truth,
    answer), so files in their format can be scored with the official protocol.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: answers file not found")
    rows = []
    seen: set[str] = set()
    # blank lines at the end are an editor's trailing newline; one in the middle is a
    # row lost, so it is refused (split on "\n" only: JSON strings may hold U+2028)
    lines = path.read_text().split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise AnswersError(f"{path}: empty answers file (no rows to score)")
    for lineno, line in enumerate(lines, 1):
        where = f"{path}:{lineno}"
        if not line.strip():
            raise AnswersError(f"{where}: empty line")
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise AnswersError(f"{where}: not valid JSON ({e.msg})") from None
        validate_row(row, where, official_only)
        if not official_only:
            if row["question_id"] in seen:
                raise AnswersError(f"{where}: duplicate question_id {row['question_id']!r}")
            seen.add(row["question_id"])
        rows.append(row)
    return rows


def write_answers(path: str | Path, rows: Iterable[dict]) -> None:
    """Validate every row and write the file atomically."""
    rows = list(rows)
    seen: set[str] = set()
    for i, row in enumerate(rows):
        validate_row(row, f"{path}: row {i}")
        if row["question_id"] in seen:
            raise AnswersError(f"{path}: row {i}: duplicate question_id {row['question_id']!r}")
        seen.add(row["question_id"])
    with atomic_write(path) as fh:
        for row in rows:
            fh.write(json.dumps(row, sort_keys=True) + "\n")


def gt_attributes(row: dict) -> dict:
    """The scored attributes of one ``attributes/{split}.csv`` row (strings or ints)."""
    out = {}
    for key, (tp, _) in GT_SCHEMA.items():
        if key not in row:
            raise AnswersError(f"attributes row {row.get('id')!r}: missing column {key!r}")
        out[key] = tp(row[key])
    _check_gt(out, f"attributes row {row.get('id')!r}")
    return out


def answer_rows(record: dict, answers: Sequence[str], gt: dict,
                output_img_file: str | None = None) -> list[dict]:
    """The answers rows of one data record (format of ``R/data/{split}.json``).

    answers: the model's text output per human turn (one per turn for VQA, one otherwise).
    """
    conv = record["conversations"]
    human = [t["value"] for t in conv if t["from"] == "human"]
    gpt = [t["value"] for t in conv if t["from"] == "gpt"]
    task = record["task"]
    if len(human) != len(gpt) or len(answers) != len(human):
        raise AnswersError(f"record {record['id']}: {len(human)} human turns, {len(gpt)} gpt "
                           f"turns, {len(answers)} answers")
    rows = []
    for turn, (prompt, truth, answer) in enumerate(zip(human, gpt, answers, strict=True)):
        rows.append({
            "question_id": f"{record['id']}-{turn}" if task == "vqa" else record["id"],
            "prompt": prompt,
            "groun_truth": truth,
            "answer": answer,
            "output_img_file": output_img_file if task == "generation" else None,
            "record_id": record["id"],
            "image_id": record["image_id"],
            "task": task,
            "turn": turn,
            "attribute": record["attributes"][turn] if task == "vqa" else None,
            "gt_attributes": dict(gt),
            "prompt_attributes": list(record["attributes"]) if task == "generation" else [],
            "ref_attributes": list(record["attributes"]) if task == "caption" else [],
        })
    for i, row in enumerate(rows):
        validate_row(row, f"record {record['id']} turn {i}")
    return rows
