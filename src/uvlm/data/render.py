"""The smart-watch renderer (docs/paper.md §1.1) at any image size.

The paper draws 224x224 images; every length below is the paper's value at 224 px and is
scaled by ``size / 224``:

* white background, a round face of the watch's colour centred at ``size // 2`` with radius
  ``int(0.4 * size)``;
* white hour / minute / second hands of widths 6 / 4 / 2 px and lengths 0.5 / 0.7 / 0.9 x
  radius, at angles ``(h % 12 + m / 60) * 30 - 90``, ``m * 6 - 90`` and ``s * 6 - 90`` degrees
  (0 degrees = 3 o'clock, y grows downwards);
* a 30x30 weather icon and a 25x10 battery at two of the corner anchors (10, 10),
  (174, 10), (10, 194), (174, 194); the battery is a 1 px black outline with a green fill
  ``int(23 * p / 100)`` px long and the text ``"{p}%"`` at x + 30.

The paper pastes three PNG icons; ours are drawn from PIL primitives (``_ICONS``), so no
binary assets ship with the package. Widths and sizes never drop below 1 px, and the battery
text never below ``MIN_FONT_PX``, so 32 and 64 px images keep every element visible. Shapes
are drawn aliased at the target size, as the paper does (supersampling and box-filtering down
was tried at 32 and 64 px: smoother hands, but the icons and digits blur away).
"""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from uvlm.data.attributes import Watch

PAPER_SIZE = 224
#: top-left anchor of the weather icon or the battery, at 224 px
CORNERS = {"top-left": (10, 10), "top-right": (174, 10),
           "bottom-left": (10, 194), "bottom-right": (174, 194)}
#: (length / radius, width at 224 px) for the hour, minute and second hands
HANDS = ((0.5, 6), (0.7, 4), (0.9, 2))
WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
GREEN = (0, 128, 0)  # PIL's "green", the paper's battery fill
FONT_PX = 10  # size of Pillow's default font, which the paper uses at 224 px
MIN_FONT_PX = 6  # smallest battery text in output pixels that still reads as digits
#: deterministic PNG settings: no metadata chunks, fast zlib level (the images are flat)
PNG_OPTIONS = {"format": "PNG", "compress_level": 1}


def hand_angles(watch: Watch) -> tuple[float, float, float]:
    """Hour, minute and second hand angles in degrees (the paper's formulas)."""
    return ((watch.hour % 12 + watch.minute / 60) * 30 - 90,
            watch.minute * 6 - 90,
            watch.second * 6 - 90)


def load_font(path: str, px: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """``path`` = a TrueType file (config ``data.font``); empty = Pillow's bundled font."""
    if not path:
        return ImageFont.load_default(size=px)
    if not Path(path).is_file():
        raise FileNotFoundError(f"data.font: font file not found: {path}")
    try:
        return ImageFont.truetype(path, px)
    except OSError as e:
        raise OSError(f"data.font: cannot load font {path}: {e}") from None


# --------------------------------------------------------------------------- weather icons
# Each icon is drawn in a 30x30 design box; ``u`` maps design units to icon pixels.

def _cloud(draw: ImageDraw.ImageDraw, u: float, dy: float, color: tuple) -> None:
    """A flat-bottomed cloud: three puffs over a base bar."""
    def disk(cx, cy, r):
        draw.ellipse([(cx - r) * u, (cy - r + dy) * u, (cx + r) * u, (cy + r + dy) * u],
                     fill=color)
    disk(9.5, 17, 5)
    disk(16, 13, 6.5)
    disk(22, 17, 5)
    draw.rectangle([9.5 * u, (17 + dy) * u, 22 * u, (22 + dy) * u], fill=color)


def _sunny(draw: ImageDraw.ImageDraw, u: float) -> None:
    color = (250, 190, 0)
    draw.ellipse([8 * u, 8 * u, 22 * u, 22 * u], fill=color)
    width = max(1, round(2.5 * u))
    for k in range(8):
        a = math.radians(45 * k)
        draw.line([(15 + 10 * math.cos(a)) * u, (15 + 10 * math.sin(a)) * u,
                   (15 + 14 * math.cos(a)) * u, (15 + 14 * math.sin(a)) * u],
                  fill=color, width=width)


def _cloudy(draw: ImageDraw.ImageDraw, u: float) -> None:
    _cloud(draw, u, 1, (160, 165, 175))


def _raining(draw: ImageDraw.ImageDraw, u: float) -> None:
    _cloud(draw, u, -4, (95, 100, 115))
    width = max(1, round(2.5 * u))
    for x in (10, 16, 22):
        draw.line([x * u, 21 * u, (x - 2.5) * u, 28 * u], fill=(30, 110, 235), width=width)


_ICONS = {"sunny": _sunny, "cloudy": _cloudy, "raining": _raining}


def draw_icon(weather: str, px: int) -> Image.Image:
    """The ``weather`` icon as an RGBA image of ``px`` x ``px`` (transparent background)."""
    if weather not in _ICONS:
        raise KeyError(f"unknown weather {weather!r}; allowed: {', '.join(_ICONS)}")
    icon = Image.new("RGBA", (px, px), (0, 0, 0, 0))
    _ICONS[weather](ImageDraw.Draw(icon), px / 30)
    return icon


# --------------------------------------------------------------------------- renderer

class Renderer:
    """Draws ``Watch`` objects at ``size`` px. Build once per process (fonts, icons cached)."""

    def __init__(self, size: int, font: str = ""):
        self.size = size
        scale = size / PAPER_SIZE

        def length(v: float) -> int:  # a size in px, never below one pixel
            return max(1, round(v * scale))

        self.center = size // 2
        self.radius = int(0.4 * size)
        self.hands = [(f * self.radius, length(w)) for f, w in HANDS]
        self.corners = {k: (round(x * scale), round(y * scale)) for k, (x, y) in CORNERS.items()}
        icon_px = length(30)
        self.icons = {w: draw_icon(w, icon_px) for w in _ICONS}
        self.battery_inset = length(2)
        # tall enough for a fill row between the outlines at tiny sizes
        self.battery_box = (length(25), max(length(10), 2 * self.battery_inset))
        self.battery_outline = length(1)
        self.battery_fill = length(23)
        self.text_dx = round(30 * scale)
        self.font = load_font(font, max(round(FONT_PX * scale), MIN_FONT_PX))

    def render(self, watch: Watch) -> Image.Image:
        """The RGB image of ``watch``, ``size`` x ``size``."""
        img = Image.new("RGB", (self.size, self.size), WHITE)
        draw = ImageDraw.Draw(img)
        c, r = self.center, self.radius
        draw.ellipse([c - r, c - r, c + r, c + r], fill=watch.face_color)
        for (length, width), angle in zip(self.hands, hand_angles(watch), strict=True):
            a = math.radians(angle)
            draw.line([c, c, c + length * math.cos(a), c + length * math.sin(a)],
                      fill=WHITE, width=width)

        icon = self.icons[watch.weather]
        img.paste(icon, self.corners[watch.weather_pos], icon)

        x, y = self.corners[watch.battery_pos]
        w, h = self.battery_box
        draw.rectangle([x, y, x + w, y + h], outline=BLACK, width=self.battery_outline)
        # as in the paper the fill spans fill + 1 columns, so 0% still shows a sliver
        fill = int(self.battery_fill * watch.battery / 100)
        i = self.battery_inset
        draw.rectangle([x + i, y + i, x + i + fill, y + h - i], fill=GREEN)
        draw.text((x + self.text_dx, y), f"{watch.battery}%", fill=BLACK, font=self.font)
        return img
