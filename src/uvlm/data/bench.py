"""`python -m uvlm bench-data [--config C] [--n N]`: rendered images per second.

Times the data stage's real path (sample a watch, write its three records, render, save a
PNG) at 224 px into a temporary folder, in one process and with every core, next to a
re-creation of the authors' notebook pipeline (RGBA face pasted through a mask, an icon
decoded from PNG and resized for every image, PNG at Pillow's default zlib level 6), which
the issue measured at about 260 images/s in one process on the 2-core reference machine.
The images go to a temporary folder under ``--dir`` (default ``results/``, the file system the
data stage writes to: creating files in /tmp is 25x slower on the reference machine), which
is removed afterwards.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw

from uvlm.config import load
from uvlm.data.attributes import sample_watch
from uvlm.data.build import available_cores, render_all
from uvlm.data.render import (
    BLACK,
    CORNERS,
    GREEN,
    HANDS,
    WHITE,
    draw_icon,
    hand_angles,
    load_font,
)
from uvlm.utils import rng

SIZE = 224  # the paper's image size; the notebook baseline only exists at this size


def notebook_style(n: int, out_dir: Path, font_path: str) -> None:
    """Render ``n`` watches at 224 px the way the authors' notebook does (the baseline)."""
    size = (SIZE, SIZE)
    c, r = SIZE // 2, int(0.4 * SIZE)
    font = load_font(font_path, 10)
    icon_png = {}
    for w in ("sunny", "cloudy", "raining"):  # the notebook reads a PNG file per image
        buf = io.BytesIO()
        draw_icon(w, 128).save(buf, format="PNG")
        icon_png[w] = buf.getvalue()
    for i in range(n):
        watch = sample_watch(rng(0, "bench", i))
        base = Image.new("RGBA", size, (255, 255, 255, 255))
        draw = ImageDraw.Draw(base)
        mask = Image.new("L", size, 0)
        ImageDraw.Draw(mask).ellipse([c - r, c - r, c + r, c + r], fill=255)
        face = Image.new("RGBA", size, (*watch.face_color, 255))
        face.putalpha(mask)
        face.putalpha(face.getchannel("A").point(lambda x: x))
        base.paste(face, (0, 0), mask=face.getchannel("A"))
        for ((f, width), angle) in zip(HANDS, hand_angles(watch), strict=True):
            a = math.radians(angle)
            draw.line([c, c, c + f * r * math.cos(a), c + f * r * math.sin(a)], fill=WHITE,
                      width=width)
        icon = Image.open(io.BytesIO(icon_png[watch.weather])).resize((30, 30))
        base.paste(icon, CORNERS[watch.weather_pos], icon)
        x, y = CORNERS[watch.battery_pos]
        draw.rectangle([x, y, x + 25, y + 10], outline=BLACK, width=1)
        draw.rectangle([x + 2, y + 2, x + 2 + int(23 * watch.battery / 100), y + 8], fill=GREEN)
        draw.text((x + 30, y), f"{watch.battery}%", fill=BLACK, font=font)
        base.convert("RGB").save(out_dir / f"{i}.png", format="PNG")


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the pool's workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _measure(fn, n: int, where: Path) -> tuple[float, float]:
    """(images per wall-clock second, images per CPU-second) of ``fn(folder)``."""
    where.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".bench-", dir=where) as tmp:
        wall, cpu = time.perf_counter(), _cpu_seconds()
        fn(Path(tmp))
        # a tiny n can finish within the CPU clock's resolution
        cpu = max(_cpu_seconds() - cpu, 1e-6)
        return n / (time.perf_counter() - wall), n / cpu


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="uvlm bench-data", description=__doc__.split("\n")[0])
    p.add_argument("--config", help="config YAML (its data.font and seed); default font")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    p.add_argument("--n", type=int, default=3000, help="images per measurement")
    p.add_argument("--dir", type=Path, default=Path("results"),
                   help="where the temporary image folder goes")
    args = p.parse_args(argv)
    font, seed = "", 0
    if args.config:
        cfg = load(args.config, args.set)
        font, seed = cfg.data.font, cfg.seed
    cores = available_cores()
    n = args.n
    rates = {
        "notebook-style pipeline, 1 process": _measure(
            lambda d: notebook_style(n, d, font), n, args.dir),
        "uvlm data, 1 process": _measure(
            lambda d: render_all(seed, "train", n, SIZE, font, d, 1, False), n, args.dir),
        f"uvlm data, {cores} processes": _measure(
            lambda d: render_all(seed, "train", n, SIZE, font, d, cores, False), n,
            args.dir),
    }
    base = rates["notebook-style pipeline, 1 process"][0]
    print(f"{n} images at {SIZE} px with PNG output ({cores} cores; load average "
          f"{os.getloadavg()[0]:.1f}: other processes slow the wall-clock rates down):")
    for name, (rate, per_cpu) in rates.items():
        print(f"  {name:<36} {rate:7.0f} images/s ({rate / base:.1f}x notebook-style), "
              f"{per_cpu:5.0f} images per CPU-second")
