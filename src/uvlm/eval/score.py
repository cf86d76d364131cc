"""One checkpoint's metrics.json from its answers rows (and generated outputs).

``score_answers`` is pure: rows, tensors and a judge in, the metrics dict out::

    {"vqa_official": {time, weather, position, battery, total, count_*, ci},
     "vqa_full":     {... same keys ...},
     "caption":      {precision_*, recall_*, mention_rate_*, score_time, score_battery,
                      precision_total, recall_total, count_captions, ci},
     "generation":   {judge_space, hour, minute, weather, battery, weather_pos, battery_pos,
                      total, count_*, ci, [fid, fid_extractor, count_fid_generated,
                      count_fid_reference] (pixel outputs), [cosine, retrieval_top1]
                      (feature outputs)}}

``ci`` maps each metric to its bootstrap 95% interval over test items ([lo, hi], or None
where the metric has no items). FID gets no interval (it is not a mean over items; its
spread across seeds is reported by the aggregation over seeds instead).

``load_generated`` and ``write_metrics`` are the file-facing helpers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from uvlm.eval.bootstrap import Ratios, bootstrap_mean_ci
from uvlm.eval.caption import caption_ratios
from uvlm.eval.continuous import mean_cosine, retrieval_top1
from uvlm.eval.fid import extract_in_batches, fid_from_features
from uvlm.eval.judge import Judge, reading_ratios
from uvlm.eval.vqa import PROTOCOLS, vqa_ratios
from uvlm.utils import load_tensors, stream_seed


def _table(ratios: Ratios, n_resamples: int, seed: int) -> dict:
    """A section of metrics.json: values, counts and bootstrap intervals."""
    values, counts = ratios.values(), ratios.counts()
    out: dict = {}
    for name in ratios.names:
        out[name] = values[name]
        out[f"count_{name}"] = counts[name]
    out["ci"] = ratios.intervals(n_resamples=n_resamples, seed=seed)
    return out


def score_generation(rows: Sequence[dict], *, judge: Judge, outputs: torch.Tensor,
                     n_resamples: int, seed: int, gt_features: torch.Tensor | None = None,
                     fid_reference: torch.Tensor | None = None,
                     fid_extractor: tuple[str, Callable] | None = None,
                     batch_size: int = 64, items: dict | None = None) -> dict:
    """Generation metrics of the generation rows, ``outputs[i]`` being row i's output.

    outputs: (M, 3, H, W) images (pixel judge) or (M, T, D) features (feature judge).
    gt_features (N_test, T, D): the test set's ground-truth features, indexed by image_id
    (feature outputs: cosine and retrieval). fid_reference (N_ref, 3, H, W) and
    fid_extractor (name, fn): FID of the outputs against the reference images.
    """
    if outputs.shape[0] != len(rows):
        raise ValueError(f"generation: {outputs.shape[0]} outputs for {len(rows)} rows")
    clusters = [r["record_id"] for r in rows]
    ratios = reading_ratios(judge.read(outputs, batch_size), [r["gt_attributes"] for r in rows],
                            [r["prompt_attributes"] for r in rows], clusters)
    out = {"judge_space": judge.space,
           **_table(ratios, n_resamples, stream_seed(seed, "bootstrap", "generation"))}
    if items is not None:
        items["generation"] = ratios
    if judge.space == "pixels" and fid_extractor is not None:
        if fid_reference is None:
            raise ValueError("generation: an FID extractor needs the reference images")
        name, extract = fid_extractor
        gen_f = extract_in_batches(extract, outputs, batch_size)
        ref_f = extract_in_batches(extract, fid_reference, batch_size)
        out.update(fid=fid_from_features(gen_f, ref_f), fid_extractor=name,
                   count_fid_generated=int(gen_f.shape[0]), count_fid_reference=int(ref_f.shape[0]))
    if judge.space != "pixels" and gt_features is not None:
        target = torch.tensor([r["image_id"] for r in rows])
        per_item = {"cosine": mean_cosine(outputs, gt_features[target]).numpy(),
                    "retrieval_top1": retrieval_top1(outputs, gt_features, target).float().numpy()}
        for name, values in per_item.items():
            out[name] = float(values.mean())
            out["ci"][name] = list(bootstrap_mean_ci(
                values, clusters=np.array(clusters), n_resamples=n_resamples,
                seed=stream_seed(seed, "bootstrap", name)))
    return out


def score_answers(rows: Sequence[dict], *, n_resamples: int, seed: int,
                  judge: Judge | None = None, gen_outputs: torch.Tensor | None = None,
                  items: dict | None = None, **generation_kwargs) -> dict:
    """metrics.json of one checkpoint (see the module docstring).

    ``items``, if given, receives each section's per-cluster terms (section -> Ratios), so
    that two runs scored on the same test items can be compared item by item.

    gen_outputs are aligned with the rows whose task is "generation", in row order; a file
    with generation rows needs both them and the judge (nothing is scored as missing).
    ``generation_kwargs`` go to ``score_generation`` (gt_features, fid_reference, ...).
    """
    out = {}
    items = {} if items is None else items
    for protocol, select in PROTOCOLS.items():
        items[f"vqa_{protocol}"] = ratios = vqa_ratios(select(rows))
        out[f"vqa_{protocol}"] = _table(ratios, n_resamples,
                                        stream_seed(seed, "bootstrap", "vqa", protocol))
    items["caption"] = captions = caption_ratios(rows)
    out["caption"] = {**_table(captions, n_resamples, stream_seed(seed, "bootstrap", "caption")),
                      "count_captions": int(captions.num.shape[0])}
    gen_rows = [r for r in rows if r["task"] == "generation"]
    if not gen_rows:
        out["generation"] = {"count_total": 0}
    elif judge is None or gen_outputs is None:
        raise ValueError(f"{len(gen_rows)} generation rows but no "
                         f"{'judge' if judge is None else 'generated outputs'} to score them")
    else:
        out["generation"] = score_generation(gen_rows, judge=judge, outputs=gen_outputs,
                                             n_resamples=n_resamples, seed=seed, items=items,
                                             **generation_kwargs)
    return out


# --------------------------------------------------------------------------- files

def load_generated(answers_path: str | Path, rows: Sequence[dict], kind: str) -> torch.Tensor:
    """Generated outputs of the generation rows, from their ``output_img_file``.

    kind "pixels": PNG images -> uint8 (M, 3, H, W); kind "features": safetensors files with
    key "features" (T, D) -> float (M, T, D). A missing file raises naming it and the row.
    """
    from PIL import Image

    base = Path(answers_path).parent
    out = []
    for r in rows:
        if r["task"] != "generation":
            continue
        path = base / r["output_img_file"]
        if not path.is_file():
            raise FileNotFoundError(f"{path}: generated output of {r['question_id']} "
                                    f"(listed in {answers_path}) not found")
        if kind == "pixels":
            with Image.open(path) as im:
                out.append(torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1))
        elif kind == "features":
            out.append(load_tensors(path)["features"])
        else:
            raise ValueError(f"generated output kind {kind!r}; allowed: pixels, features")
    return torch.stack(out)


def write_metrics(path: str | Path, metrics: dict) -> None:
    from uvlm.utils import write_json

    write_json(path, metrics)


def write_items(path: str | Path, items: dict[str, Ratios]) -> None:
    """``items.json`` beside metrics.json (``uvlm.paths.eval_items``): each section's
    per-cluster terms."""
    import json

    from uvlm.utils import atomic_write

    with atomic_write(path) as fh:  # compact: a few hundred clusters x metrics per section
        json.dump({section: r.to_json() for section, r in sorted(items.items())}, fh,
                  separators=(",", ":"), sort_keys=True)
        fh.write("\n")
