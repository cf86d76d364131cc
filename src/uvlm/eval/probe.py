"""`python -m uvlm probe-spaces --config C`: what each frozen vision space keeps.

A trained model can only answer from what its input space holds. For every vision space of
the config (continuous features, or VQ codes one-hot per position) and for the raw pixels
(the ceiling: everything the renderer drew), linear readouts are fitted on the train split
and read the test split's attributes:

* weather, weather position, battery position, hour (mod 12): multinomial logistic
  regression;
* battery, minute, second: ridge regression (battery on the percentage, the two hands on the
  cosine and sine of their angle, decoded with atan2 and rounded).

The readings are written as the paper's answer strings and scored with the paper's VQA
formulas (``uvlm.eval.vqa``, one item per image and attribute, positions pooled), so the
probe's total sits on the same scale as a model's VQA total. Writes
``R/analysis/spaces/probe.json`` (``uvlm.paths.space_probe``):
``{space: {time, weather, position, battery, total, count_*, ci, readout}}``.

Linear readouts are a lower bound on what a space keeps (a deeper reader may find more).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import sparse
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.preprocessing import StandardScaler

from uvlm.data.attributes import Watch
from uvlm.eval.vqa import CATEGORY_OF, score_turn, vqa_ratios

PIXELS = "pixels"
PIXEL_POOL = 2  # raw pixels are 2x2 mean-pooled: the ceiling without 12k dense inputs
CLASS_ATTRIBUTES = ("weather", "weather_pos", "battery_pos")
RIDGE_ALPHA = 1.0
LOGISTIC_C = 1.0


def design(x: np.ndarray, codebook_size: int | None = None):
    """(N, ...) inputs -> a 2-D design matrix: codes (N, T) one-hot per position (sparse),
    anything else flattened."""
    x = np.asarray(x)
    if codebook_size is None:
        return x.reshape(len(x), -1).astype(np.float64)
    n, t = x.shape
    cols = (np.arange(t) * codebook_size + x).ravel()
    return sparse.csr_matrix((np.ones(n * t), (np.repeat(np.arange(n), t), cols)),
                             shape=(n, t * codebook_size))


def _angle(values: np.ndarray, period: int) -> np.ndarray:
    a = 2 * math.pi * np.asarray(values, float) / period
    return np.stack([np.cos(a), np.sin(a)], 1)


def _from_angle(cs: np.ndarray, period: int) -> np.ndarray:
    a = np.arctan2(cs[:, 1], cs[:, 0]) % (2 * math.pi)
    return np.rint(a / (2 * math.pi) * period).astype(int) % period


def fit_readouts(x_train, train: list[Watch], seed: int) -> dict:
    """Every attribute's readout, fitted on the train split's design matrix."""
    def logistic(y):
        return LogisticRegression(C=LOGISTIC_C, max_iter=2000,
                                  random_state=seed % 2**32).fit(x_train, y)

    def ridge(y):
        return Ridge(alpha=RIDGE_ALPHA).fit(x_train, y)

    out = {a: logistic([getattr(w, a) for w in train]) for a in CLASS_ATTRIBUTES}
    out["hour"] = logistic([w.hour % 12 for w in train])
    out["battery"] = ridge(np.array([w.battery for w in train], float))
    out["minute"] = ridge(_angle([w.minute for w in train], 60))
    out["second"] = ridge(_angle([w.second for w in train], 60))
    return out


def read(readouts: dict, x) -> list[dict[str, str]]:
    """Each image's answer strings (the paper's formats) from the fitted readouts."""
    classes = {a: readouts[a].predict(x) for a in CLASS_ATTRIBUTES}
    hour = readouts["hour"].predict(x)
    minute = _from_angle(readouts["minute"].predict(x), 60)
    second = _from_angle(readouts["second"].predict(x), 60)
    battery = np.clip(np.rint(readouts["battery"].predict(x)), 0, 100).astype(int)
    return [{**{a: str(classes[a][i]) for a in CLASS_ATTRIBUTES},
             "time": f"{int(hour[i]):02d}:{int(minute[i]):02d}:{int(second[i]):02d}",
             "battery": f"{int(battery[i])}%"} for i in range(len(hour))]


def score(answers: list[dict[str, str]], truth: list[Watch]):
    """``Ratios`` of the paper's VQA categories: one item per image and attribute."""
    items = [(CATEGORY_OF[a], score_turn(CATEGORY_OF[a], ans[a], w.answer(a)), str(i))
             for i, (ans, w) in enumerate(zip(answers, truth, strict=True)) for a in CATEGORY_OF]
    return vqa_ratios(items)


def probe(x_train, train: list[Watch], x_test, test: list[Watch], seed: int,
          n_resamples: int) -> dict:
    """One space's probe: the scores of its readouts on the test split, with intervals."""
    if not isinstance(x_train, sparse.spmatrix):  # one-hot codes are already on one scale
        scaler = StandardScaler().fit(x_train)
        x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
    ratios = score(read(fit_readouts(x_train, train, seed), x_test), test)
    values, counts = ratios.values(), ratios.counts()
    return {**values, **{f"count_{k}": v for k, v in counts.items()},
            "ci": ratios.intervals(n_resamples=n_resamples, seed=seed)}


def pooled_pixels(images) -> np.ndarray:
    """uint8 (N, 3, H, W) -> (N, 3 * H/2 * W/2) floats in [0, 1]."""
    x = np.asarray(images, np.float64) / 255.0
    n, c, h, w = x.shape
    p = PIXEL_POOL
    return x.reshape(n, c, h // p, p, w // p, p).mean((3, 5)).reshape(n, -1)


def spaces_of(cfg) -> list[str]:
    """The vision spaces the config's runs read or write."""
    from uvlm.grid import all_runs

    return sorted({s for r in all_runs(cfg) for s in (r.und_space, r.gen_space)})


def main(argv: list[str]) -> None:
    from uvlm import encoders, paths, provenance
    from uvlm.cli import command_parser, parse_command
    from uvlm.data.records import load_attributes
    from uvlm.encoders.images import read_images
    from uvlm.utils import stream_seed, write_json

    p = command_parser("python -m uvlm probe-spaces", __doc__.split("\n")[0])
    args, cfg = parse_command(p, argv)
    train = load_attributes(paths.attributes_file(cfg, "train"))
    test = load_attributes(paths.attributes_file(cfg, "test"))
    out = {}
    for space in [*spaces_of(cfg), PIXELS]:
        seed = stream_seed(cfg.seed, "probe-spaces", space)
        if space == PIXELS:
            x = {s: pooled_pixels(read_images(cfg, s, range(len(w))))
                 for s, w in (("train", train), ("test", test))}
            readout = f"raw pixels, {PIXEL_POOL}x{PIXEL_POOL} mean-pooled"
        else:
            k = encoders.space_info(cfg, space).codebook_size  # None: continuous features
            x = {s: design(encoders.load_features(cfg, space, s).numpy(), k)
                 for s in ("train", "test")}
            readout = "codes one-hot per position" if k else "features flattened"
        out[space] = {**probe(x["train"], train, x["test"], test, seed, cfg.eval.bootstrap),
                      "readout": readout, "n_train": len(train), "n_test": len(test)}
        print(f"probe-spaces {space}: total {out[space]['total']:.3f} ({readout})", flush=True)
    write_json(paths.space_probe(cfg), out)
    provenance.write(cfg, "probe-spaces")
