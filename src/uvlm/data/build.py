"""`python -m uvlm data --config C --split {train,test,extra}`: render one split.

Writes, under ``R/data`` (R = results/<config name>):

* ``images/{split}/{id:06d}.png``: the rendered watches;
* ``attributes/{split}.csv``: the ground truth, one row per image;
* ``{split}.json``: three LLaVA records per image (``uvlm.data.tasks``).

Image ``i`` of a split draws all its randomness (watch, question, caption, prompt) from
``rng(seed, "data", split, i)``, so the output does not depend on the number of worker
processes, and the same config gives byte-identical files. Images are rendered into a hidden
``.{split}.partial`` folder that is renamed into place when complete; the CSV and then the
JSON (the last file written) follow, so an interrupted run never leaves a complete-looking
split behind.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import os
import shutil
import sys
import time
from pathlib import Path

from uvlm import paths, provenance
from uvlm.cli import command_parser, parse_command
from uvlm.config import Config
from uvlm.data.attributes import Watch, sample_watch
from uvlm.data.records import image_file, write_attributes
from uvlm.data.render import PNG_OPTIONS, Renderer
from uvlm.data.tasks import make_records
from uvlm.progress import progress_bar
from uvlm.utils import rng, write_json

SPLITS = ("train", "test", "extra")


def split_size(cfg: Config, split: str) -> int:
    """Images in a split; ``extra`` is the pool the imbalance variants take from."""
    sizes = {"train": cfg.data.n_train, "test": cfg.data.n_test,
             "extra": max([*cfg.data.extra_generation, *cfg.data.extra_understanding],
                          default=0)}
    if split not in sizes:
        raise ValueError(f"--split {split!r}; allowed: {', '.join(sizes)}")
    return sizes[split]


def available_cores() -> int:
    """CPUs this process may run on (a SLURM or taskset allocation, not the whole node)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@functools.cache
def _renderer(size: int, font: str) -> Renderer:
    """One renderer per process (fonts and icons are built once)."""
    return Renderer(size, font)


def render_images(seed: int, split: str, ids: range, size: int, font: str,
                  out_dir: str) -> list[tuple[Watch, list[dict]]]:
    """Sample, render and save images ``ids``; return their watches and records."""
    renderer = _renderer(size, font)
    out = []
    for image_id in ids:
        gen = rng(seed, "data", split, image_id)
        watch = sample_watch(gen)
        records = make_records(gen, watch, split, image_id, image_file(split, image_id))
        renderer.render(watch).save(os.path.join(out_dir, f"{image_id:06d}.png"), **PNG_OPTIONS)
        out.append((watch, records))
    return out


def _render_job(job: tuple) -> list[tuple[Watch, list[dict]]]:
    return render_images(*job)


def render_all(seed: int, split: str, n: int, size: int, font: str, out_dir: Path,
               workers: int, progress: bool = True) -> list[tuple[Watch, list[dict]]]:
    """Render images 0..n-1 into ``out_dir`` with ``workers`` processes, in id order."""
    chunk = max(16, min(256, n // (workers * 8) or 1))
    jobs = [(seed, split, range(i, min(i + chunk, n)), size, font, str(out_dir))
            for i in range(0, n, chunk)]
    results: list[tuple[Watch, list[dict]]] = []
    with contextlib.ExitStack() as stack:
        bar = stack.enter_context(progress_bar(total=n, unit="img", desc=f"data {split}",
                                       file=sys.stderr, disable=not progress))
        if workers == 1:
            parts = map(_render_job, jobs)
        else:
            pool = stack.enter_context(multiprocessing.get_context().Pool(workers))
            parts = pool.imap(_render_job, jobs)  # imap keeps job order: ids stay sorted
        for part in parts:
            results += part
            bar.update(len(part))
    return results


def build_split(cfg: Config, split: str, progress: bool = True) -> Path:
    """Render ``split`` of ``cfg`` under ``R/data``; returns that folder."""
    n = split_size(cfg, split)
    _renderer(cfg.data.image_size, cfg.data.font)  # a bad font fails here, before any work
    data_dir = paths.data_dir(cfg)
    final = paths.images_dir(cfg, split)
    partial = paths.partial_images_dir(cfg, split)
    json_path = paths.data_file(cfg, split)
    csv_path = paths.attributes_file(cfg, split)
    try:
        # the JSON marks a split complete: drop the old one before touching its images
        json_path.unlink(missing_ok=True)
        csv_path.unlink(missing_ok=True)
        if partial.exists():
            shutil.rmtree(partial)
        partial.mkdir(parents=True)
    except OSError as e:
        raise OSError(f"cannot write the {split} split: {e.filename or data_dir}: "
                      f"{e.strerror}") from None

    workers = cfg.data.workers or available_cores()
    try:
        results = render_all(cfg.seed, split, n, cfg.data.image_size, cfg.data.font, partial,
                             min(workers, max(1, n // 16)), progress)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(final)
    os.replace(partial, final)
    write_attributes(csv_path, split, [w for w, _ in results])
    write_json(json_path, [r for _, recs in results for r in recs])
    return data_dir


def main(argv: list[str]) -> None:
    p = command_parser("uvlm data", __doc__.split("\n")[0])
    p.add_argument("--split", required=True, choices=SPLITS)
    args, cfg = parse_command(p, argv)
    start = time.perf_counter()
    out = build_split(cfg, args.split)
    provenance.write(cfg, "data", split=args.split)
    n = split_size(cfg, args.split)
    seconds = time.perf_counter() - start
    print(f"data {args.split}: {n} images, {3 * n} records at {cfg.data.image_size} px -> "
          f"{out} in {seconds:.1f} s ({n / max(seconds, 1e-9):.0f} images/s)")
