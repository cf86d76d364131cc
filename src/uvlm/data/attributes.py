"""What one smart-watch image shows, and how the paper samples it (docs/paper.md §1.1).

A ``Watch`` is the ground truth of one image: the renderer draws it, the text tasks describe
it, the attributes CSV stores it and evaluation scores answers against it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WEATHERS = ("sunny", "cloudy", "raining")
POSITIONS = ("top-left", "top-right", "bottom-left", "bottom-right")
#: the attributes a question or a caption clause can be about, in the paper's clause order
ATTRIBUTES = ("time", "weather", "battery", "weather_pos", "battery_pos")


@dataclass(frozen=True)
class Watch:
    hour: int  # 0..12 as the paper samples it; 0 and 12 draw the same dial
    minute: int
    second: int
    weather: str
    battery: int  # percent, 0..100
    weather_pos: str
    battery_pos: str
    face_color: tuple[int, int, int]

    @property
    def time(self) -> str:
        return f"{self.hour:02d}:{self.minute:02d}:{self.second:02d}"

    @property
    def face_hex(self) -> str:
        return "#{:02x}{:02x}{:02x}".format(*self.face_color)

    def answer(self, attribute: str) -> str:
        """The paper's answer string for ``attribute`` (HH:MM:SS, N%, a weather, a corner)."""
        values = {
            "time": self.time,
            "weather": self.weather,
            "battery": f"{self.battery}%",
            "weather_pos": self.weather_pos,
            "battery_pos": self.battery_pos,
        }
        if attribute not in values:
            raise KeyError(f"unknown attribute {attribute!r}; allowed: {', '.join(values)}")
        return values[attribute]


def sample_watch(gen: np.random.Generator) -> Watch:
    """Draw one watch with the paper's distributions (notebook cell 7).

    Python's ``randint(a, b)`` is inclusive, hence the ``+ 1`` upper bounds; the face colour
    is drawn first and the two corners are distinct (``random.sample`` of 2 out of 4).
    """
    face = tuple(int(c) for c in gen.integers(0, 256, size=3))
    hour = int(gen.integers(0, 13))
    minute = int(gen.integers(0, 60))
    second = int(gen.integers(0, 60))
    weather = WEATHERS[int(gen.integers(len(WEATHERS)))]
    battery = int(gen.integers(0, 101))
    weather_pos, battery_pos = (POSITIONS[int(i)] for i in gen.choice(4, size=2, replace=False))
    return Watch(hour, minute, second, weather, battery, weather_pos, battery_pos, face)
