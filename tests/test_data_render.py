"""The renderer draws the paper's geometry (docs/paper.md §1.1) at 224 px and at tiny sizes."""

import math

import numpy as np
import pytest

from uvlm.data.attributes import Watch, sample_watch
from uvlm.data.render import CORNERS, Renderer, draw_icon, hand_angles
from uvlm.utils import rng

FACE = (200, 30, 60)
WHITE = (255, 255, 255)


def watch(hour, minute, second, weather="raining", battery=60, weather_pos="top-left",
          battery_pos="bottom-right"):
    return Watch(hour, minute, second, weather, battery, weather_pos, battery_pos, FACE)


def pixel_at(img, r, angle_deg, size):
    c = size // 2
    a = math.radians(angle_deg)
    return tuple(img[round(c + r * math.sin(a)), round(c + r * math.cos(a))])


def test_hand_angles_are_the_papers():
    assert hand_angles(watch(3, 30, 45)) == (15.0, 90.0, 180.0)
    assert hand_angles(watch(12, 0, 0)) == hand_angles(watch(0, 0, 0)) == (-90.0, -90.0, -90.0)


@pytest.mark.parametrize("size", [224, 64, 32])
def test_axis_aligned_hands_have_the_papers_lengths(size):
    # 03:00:45 -> hour hand right (0 deg), minute hand up (-90), second hand left (180)
    img = np.asarray(Renderer(size).render(watch(3, 0, 45)))
    r = int(0.4 * size)
    for angle, length in ((0, 0.5), (-90, 0.7), (180, 0.9)):
        for f in np.linspace(0.2, length - 0.05, 5):
            assert pixel_at(img, f * r, angle, size) == WHITE, (angle, f)
        if size >= 64:  # at 32 px the end is within a pixel of the next sample
            assert pixel_at(img, (length + 0.08) * r, angle, size) == FACE, (angle, length)
    for angle in (90, 45, 135, -45, -135):  # no hand points there
        for f in (0.3, 0.6, 0.85):
            assert pixel_at(img, f * r, angle, size) == FACE, (angle, f)


def test_hand_widths_at_224():
    img = np.asarray(Renderer(224).render(watch(3, 0, 45)))
    c, r = 112, 89
    col = img[:, c + int(0.3 * r)]  # a column crossing the hour hand (width 6)
    assert sum(tuple(p) == WHITE for p in col[c - 10:c + 10]) in (6, 7)
    row = img[c - int(0.4 * r)]  # a row crossing the minute hand (width 4)
    assert sum(tuple(p) == WHITE for p in row[c - 10:c + 10]) in (4, 5)


@pytest.mark.parametrize("hms", [(10, 10, 30), (7, 42, 13), (12, 59, 59)])
def test_oblique_hands_follow_the_papers_angles(hms):
    w = watch(*hms)
    img = np.asarray(Renderer(224).render(w))
    r = 89
    for angle, length in zip(hand_angles(w), (0.5, 0.7, 0.9), strict=True):
        for f in np.linspace(0.25, length - 0.05, 6):
            c, a = 112, math.radians(angle)
            y, x = round(c + f * r * math.sin(a)), round(c + f * r * math.cos(a))
            near = img[y - 1:y + 2, x - 1:x + 2].reshape(-1, 3)
            assert (near == WHITE).all(axis=1).any(), (hms, angle, f)


def test_icon_and_battery_sit_at_the_corner_anchors():
    img = np.asarray(Renderer(224).render(watch(3, 0, 45, "sunny", 100, "top-right",
                                                "bottom-left")))
    nonwhite = (img != 255).any(axis=2)
    x, y = CORNERS["top-right"]
    box = nonwhite[y:y + 30, x:x + 30]
    assert box.any() and not nonwhite[0:y, x:x + 30].any()  # nothing above the icon
    assert not nonwhite[y:y + 30, x + 30:].any()  # nor right of it
    x, y = CORNERS["bottom-left"]
    assert tuple(img[y, x]) == (0, 0, 0) and tuple(img[y + 10, x + 25]) == (0, 0, 0)
    assert tuple(img[y + 5, x + 2]) == (0, 128, 0)  # green fill starts 2 px in
    assert tuple(img[y + 5, x + 2 + 22]) == (0, 128, 0)  # 100% fills int(23) columns
    assert (img[y:y + 11, x + 30:x + 60] != 255).any()  # the "100%" text at x + 30
    assert not nonwhite[y:y + 11, x + 27:x + 29].any()


@pytest.mark.parametrize("battery, cols", [(0, 1), (50, 12), (100, 24)])
def test_battery_fill_length_is_the_papers(battery, cols):
    img = np.asarray(Renderer(224).render(watch(3, 0, 45, battery=battery,
                                                battery_pos="top-left",
                                                weather_pos="bottom-right")))
    x, y = CORNERS["top-left"]
    green = (img[y + 5, x:x + 26] == (0, 128, 0)).all(axis=1)
    assert green.sum() == cols  # int(23 * p / 100) + 1 columns, as the paper draws it


@pytest.mark.parametrize("size", [32, 64])
def test_tiny_images_keep_every_element(size):
    for i in range(20):
        w = sample_watch(rng(1, "tiny", i))
        img = np.asarray(Renderer(size).render(w))
        scale = size / 224
        for pos in (w.weather_pos, w.battery_pos):
            x, y = (round(v * scale) for v in CORNERS[pos])
            n = round(30 * scale)  # icon side; the battery box fits in it too
            assert (img[y:y + n, x:x + n] != 255).any()
        assert (img == (0, 128, 0)).all(axis=2).any()  # battery fill, even at 0 %


def test_icons_differ_and_are_transparent_outside():
    icons = {w: np.asarray(draw_icon(w, 30)) for w in ("sunny", "cloudy", "raining")}
    for a in icons.values():
        assert a.shape == (30, 30, 4) and a[0, 0, 3] == 0 and (a[..., 3] == 255).any()
    assert len({a.tobytes() for a in icons.values()}) == 3


def test_missing_font_names_the_path(tmp_path):
    missing = tmp_path / "nope.ttf"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        Renderer(64, str(missing))
    bad = tmp_path / "bad.ttf"
    bad.write_text("not a font")
    with pytest.raises(OSError, match=str(bad)):
        Renderer(64, str(bad))
