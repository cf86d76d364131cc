"""Generation judges: small networks that read the watch attributes from an image.

The paper has no generation-attribute metric (docs/paper.md §6.3); reviewers asked for
one. A judge is trained by a fixed rule on ground truth only, never on model outputs:

* ``pixels``: a small CNN on RGB images, for VQ heads (their codes decode to pixels). It
  trains on the train renders and, with ``eval.judge_train_recon``, also on their VQ
  reconstructions (decode of the train codes), the domain generated images come from.
  Held-out accuracy is always reported on both the test renders and their reconstructions:
  the second says what a VQ decoder can show at all (a tokenizer that loses the hands makes
  time unreadable in every generated image, whatever the LLM does).
* ``siglip`` / ``clip``: a per-token MLP + spatial readout on ground-truth output-space
  features (N, T, D), for continuous heads (no pixel decoder in the paper).

Each reads hour (hour mod 12, 12 classes), minute (60), weather (3), battery (regression,
scored ``1 - |error|/100`` like the VQA battery score), weather_pos (4), battery_pos (4).
Generation accuracy = the judge's reading of a generated output vs the attributes its prompt
asked for (``prompt_attributes``; "time" asks hour and minute; the second hand is not
judged). A judge's own held-out accuracy on ground truth bounds what it can certify
(``gt``, and ``vq_recon`` for pixels); its accuracy on the test images shuffled against
their ground truth (``shuffled_gt``) is the floor, a generator that ignores its prompt.

Command: ``python -m uvlm judge-train --config C --space {pixels,siglip,clip}`` writes
``R/eval/judge/{space}/{model.safetensors,config.json,accuracy.json}``.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from uvlm import paths
from uvlm.data.tasks import POSITIONS, WEATHERS
from uvlm.eval.bootstrap import Ratios
from uvlm.precision import announce

#: head name -> number of outputs (battery is one regression output)
HEADS = {"hour": 12, "minute": 60, "weather": 3, "battery": 1, "weather_pos": 4,
         "battery_pos": 4}
METRICS = (*HEADS, "total")
#: a prompt attribute -> the heads that check it
CHECKS = {"time": ("hour", "minute"), "weather": ("weather",), "battery": ("battery",),
          "weather_pos": ("weather_pos",), "battery_pos": ("battery_pos",)}
FEATURE_DIM = 64  # penultimate width: the FID stand-in's feature size
#: pixel noise added in training (images in [-1, 1]) so decoded images' artefacts are not
#: all new to the judge
TRAIN_NOISE = 0.03
BATTERY_LOSS_WEIGHT = 10.0


# --------------------------------------------------------------------------- networks

class PixelTrunk(nn.Module):
    """(B, 3, S, S) in [-1, 1] -> (B, FEATURE_DIM). Four stride-2 convs keep a coarse map
    (4x4 after pooling) so corners and hand directions stay readable."""

    def __init__(self, image_size: int):
        super().__init__()
        self.image_size = image_size
        chans = (32, 32, 64, 64, 128)
        layers: list[nn.Module] = [nn.Conv2d(3, chans[0], 3, padding=1), nn.GELU()]
        for cin, cout in zip(chans[:-1], chans[1:], strict=True):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.GroupNorm(8, cout),
                       nn.GELU()]
        self.convs = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(4))
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(chans[-1] * 16, 256), nn.GELU(),
                                 nn.Linear(256, FEATURE_DIM), nn.GELU())

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 pixels (0..255) or float in [-1, 1], any size -> float at ``image_size``."""
        if x.dtype == torch.uint8:
            x = x.float() / 127.5 - 1.0
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"pixel judge: expected (B, 3, H, W) images, got {tuple(x.shape)}")
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x.float(), size=(self.image_size, self.image_size),
                              mode="bilinear", align_corners=False, antialias=True)
        return x.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.convs(x))


class FeatureTrunk(nn.Module):
    """(B, T, D) output-space features -> (B, FEATURE_DIM): a per-token MLP, then a readout
    over the flattened token grid (keeps which token, i.e. where, each feature came from)."""

    def __init__(self, num_tokens: int, feature_dim: int):
        super().__init__()
        self.num_tokens, self.feature_dim = num_tokens, feature_dim
        self.token = nn.Sequential(nn.LayerNorm(feature_dim), nn.Linear(feature_dim, 64),
                                   nn.GELU(), nn.Linear(64, 32), nn.GELU())
        self.readout = nn.Sequential(nn.Flatten(), nn.Linear(num_tokens * 32, 256), nn.GELU(),
                                     nn.Linear(256, FEATURE_DIM), nn.GELU())

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != (self.num_tokens, self.feature_dim):
            raise ValueError(f"feature judge: expected (B, {self.num_tokens}, "
                             f"{self.feature_dim}) features, got {tuple(x.shape)}")
        return x.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.token(x))


#: judge space -> trunk constructor (keyword arguments are saved in config.json)
TRUNKS = {"pixels": PixelTrunk, "siglip": FeatureTrunk, "clip": FeatureTrunk}


class Judge(nn.Module):
    def __init__(self, space: str, **trunk_kwargs):
        super().__init__()
        if space not in TRUNKS:
            raise ValueError(f"judge space {space!r}; allowed: {', '.join(TRUNKS)}")
        self.space, self.trunk_kwargs = space, trunk_kwargs
        self.trunk = TRUNKS[space](**trunk_kwargs)
        self.heads = nn.ModuleDict({k: nn.Linear(FEATURE_DIM, n) for k, n in HEADS.items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Prepared inputs -> raw head outputs; battery is a fraction in (0, 1)."""
        h = self.trunk(x)
        out = {k: head(h) for k, head in self.heads.items()}
        out["battery"] = torch.sigmoid(out["battery"].squeeze(-1))
        return out

    @torch.no_grad()
    def features(self, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Penultimate features (N, FEATURE_DIM) (the FID stand-in)."""
        self.eval()
        return torch.cat([self.trunk(self.trunk.prepare(x[i:i + batch_size]))
                          for i in range(0, x.shape[0], batch_size)])

    @torch.no_grad()
    def read(self, x: torch.Tensor, batch_size: int = 256) -> dict[str, np.ndarray]:
        """Attribute readings, each (N,) int: class index, or battery percent 0..100."""
        self.eval()
        parts: dict[str, list] = {k: [] for k in HEADS}
        for i in range(0, x.shape[0], batch_size):
            out = self(self.trunk.prepare(x[i:i + batch_size]))
            for k in HEADS:
                parts[k].append(torch.round(out[k] * 100).long() if k == "battery"
                                else out[k].argmax(-1))
        return {k: torch.cat(v).numpy() for k, v in parts.items()}


# --------------------------------------------------------------------------- labels, loss

def labels_of(gt: Sequence[dict]) -> dict[str, np.ndarray]:
    """gt_attributes dicts (or Watch-like mappings) -> per-head integer targets (N,)."""
    return {
        "hour": np.array([g["hour"] % 12 for g in gt]),
        "minute": np.array([g["minute"] for g in gt]),
        "weather": np.array([WEATHERS.index(g["weather"]) for g in gt]),
        "battery": np.array([g["battery"] for g in gt]),
        "weather_pos": np.array([POSITIONS.index(g["weather_pos"]) for g in gt]),
        "battery_pos": np.array([POSITIONS.index(g["battery_pos"]) for g in gt]),
    }


def judge_loss(out: dict[str, torch.Tensor], y: dict[str, torch.Tensor]) -> torch.Tensor:
    loss = BATTERY_LOSS_WEIGHT * F.l1_loss(out["battery"], y["battery"].float() / 100)
    for k in HEADS:
        if k != "battery":
            loss = loss + F.cross_entropy(out[k], y[k])
    return loss


def train_judge(judge: Judge, inputs: torch.Tensor, labels: dict[str, np.ndarray], *,
                steps: int, batch_size: int, lr: float, seed: int,
                precision: str = "fp32") -> list[float]:
    """AdamW with a cosine decay to 0; batches drawn with a seeded generator.

    inputs: (N, 3, H, W) uint8/float images or (N, T, D) features; labels from ``labels_of``.
    Returns the loss of every step.
    """
    gen = torch.Generator().manual_seed(seed)
    y_all = {k: torch.as_tensor(v) for k, v in labels.items()}
    opt = torch.optim.AdamW(judge.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    judge.train()
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, inputs.shape[0], (batch_size,), generator=gen)
        x = judge.trunk.prepare(inputs[idx])
        if judge.space == "pixels":
            x = x + TRAIN_NOISE * torch.randn(x.shape, generator=gen)
        with torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16"):
            out = judge(x)
        loss = judge_loss({k: v.float() for k, v in out.items()},
                          {k: v[idx] for k, v in y_all.items()})
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    return losses


# --------------------------------------------------------------------------- scoring

def reading_terms(pred: dict[str, np.ndarray], target: dict[str, np.ndarray],
                  asked: Sequence[Sequence[str]] | None,
                  clusters: Sequence[str]) -> list[tuple[str, str, float, float]]:
    """(cluster, metric, num, den) terms of judge readings vs targets.

    asked[i]: the prompt attributes of item i (None: every attribute, e.g. for held-out
    ground truth). Classes score 1 when equal; battery scores ``1 - |error| / 100``.
    """
    terms = []
    for i, cluster in enumerate(clusters):
        heads = list(HEADS) if asked is None else [h for a in asked[i] for h in CHECKS[a]]
        for h in heads:
            if h == "battery":
                s = 1.0 - abs(int(pred[h][i]) - int(target[h][i])) / 100.0
            else:
                s = float(pred[h][i] == target[h][i])
            terms += [(cluster, h, s, 1.0), (cluster, "total", s, 1.0)]
    return terms


def reading_ratios(pred: dict[str, np.ndarray], gt: Sequence[dict],
                   asked: Sequence[Sequence[str]] | None, clusters: Sequence[str]) -> Ratios:
    return Ratios.from_terms(reading_terms(pred, labels_of(gt), asked, clusters), METRICS)


def summary(ratios: Ratios) -> dict:
    values, counts = ratios.values(), ratios.counts()
    out: dict = {}
    for k in METRICS:
        out[k], out[f"count_{k}"] = values[k], counts[k]
    return out


# --------------------------------------------------------------------------- files

def save_judge(judge: Judge, out_dir: Path, meta: dict) -> None:
    from uvlm.utils import save_tensors, write_json

    save_tensors(out_dir / paths.WEIGHTS,
                 {k: v.contiguous() for k, v in judge.state_dict().items()})
    write_json(out_dir / "config.json", {"space": judge.space, "trunk": judge.trunk_kwargs,
                                         "heads": HEADS, "feature_dim": FEATURE_DIM, **meta})


def load_judge(cfg, space: str) -> Judge:
    """The trained judge of ``space``; its config must match this package's heads."""
    from uvlm.utils import load_tensors, read_json

    d = paths.judge_dir(cfg, space)
    if not (d / paths.WEIGHTS).is_file():
        raise FileNotFoundError(f"{d / paths.WEIGHTS}: judge not trained; run "
                                f"`python -m uvlm judge-train --config ... --space {space}`")
    meta = read_json(d / "config.json")
    if meta["space"] != space or meta["heads"] != HEADS or meta["feature_dim"] != FEATURE_DIM:
        raise ValueError(f"{d / 'config.json'}: judge built for space {meta['space']!r}, "
                         f"heads {meta['heads']}; expected {space!r}, {HEADS}")
    judge = Judge(space, **meta["trunk"])
    judge.load_state_dict(load_tensors(d / paths.WEIGHTS))
    return judge.eval()


def _ground_truth(cfg, split: str, n: int) -> list[dict]:
    from uvlm.data.records import load_attributes

    path = paths.attributes_file(cfg, split)
    watches = load_attributes(path)
    if len(watches) < n:
        raise ValueError(f"{path}: "
                         f"{len(watches)} rows, expected at least {n}")
    return [vars(w) for w in watches[:n]]


def _vq_reconstructions(cfg, split: str, n: int) -> torch.Tensor:
    """uint8 (n, 3, H, W): the VQ decoder's rendering of the split's first n codes."""
    from uvlm.encoders import decode_to_pixels, load_vq, open_features

    codes = open_features(cfg, "vq", split)[:n]
    return decode_to_pixels(load_vq(cfg).eval(), codes, cfg.eval.batch_size)


def _inputs(cfg, space: str, split: str, n: int, recon: bool) -> dict[str, torch.Tensor]:
    """Named input sets of a split: ground truth, plus VQ reconstructions for pixels."""
    if space == "pixels":
        from uvlm.encoders.images import check_split, read_images

        check_split(cfg, split)
        sets = {"gt": read_images(cfg, split, range(n))}
        if recon:
            sets["vq_recon"] = _vq_reconstructions(cfg, split, n)
        return sets
    from uvlm.encoders import open_features

    return {"gt": open_features(cfg, space, split)[:n]}


def train_and_evaluate(cfg, space: str) -> dict:
    """Train the judge of ``space`` on the train split, write it and its test accuracy."""
    from uvlm.utils import stream_seed, write_json

    n_train = min(cfg.data.n_train, cfg.eval.judge_max_train)
    train_sets = _inputs(cfg, space, "train", n_train, cfg.eval.judge_train_recon)
    gt_train = _ground_truth(cfg, "train", n_train)
    inputs = torch.cat(list(train_sets.values()))
    labels = {k: np.concatenate([v] * len(train_sets)) for k, v in labels_of(gt_train).items()}
    trunk = ({"image_size": cfg.data.image_size} if space == "pixels"
             else {"num_tokens": inputs.shape[1], "feature_dim": inputs.shape[2]})
    torch.manual_seed(stream_seed(cfg.seed, "judge", space, "init"))  # nn init draws globally
    judge = Judge(space, **trunk)
    precision = announce(f"judge-train {space}", cfg.eval.judge_precision, torch.device("cpu"))
    losses = train_judge(judge, inputs, labels, steps=cfg.eval.judge_steps,
                         batch_size=cfg.eval.judge_batch_size, lr=cfg.eval.judge_lr,
                         seed=stream_seed(cfg.seed, "judge", space, "batches"),
                         precision=precision)

    n_test = cfg.data.n_test
    gt_test = _ground_truth(cfg, "test", n_test)
    clusters = [str(i) for i in range(n_test)]
    tests = _inputs(cfg, space, "test", n_test, recon=True)
    accuracy = {name: summary(reading_ratios(judge.read(x), gt_test, None, clusters))
                for name, x in tests.items()}
    # the floor: a real test image drawn at random for each item (a seeded shuffle) scores
    # what a generator that ignores its prompt would
    order = np.random.default_rng(stream_seed(cfg.seed, "judge", space, "shuffle")
                                  ).permutation(n_test)
    accuracy["shuffled_gt"] = summary(reading_ratios(judge.read(tests["gt"][order]), gt_test,
                                                     None, clusters))
    out_dir = paths.judge_dir(cfg, space)
    save_judge(judge, out_dir, {"train_sets": list(train_sets), "n_train_images": n_train,
                                "steps": cfg.eval.judge_steps, "final_loss": losses[-1],
                                "precision": precision,
                                "config_hash": cfg.hash()})
    write_json(paths.judge_accuracy(cfg, space), {"space": space, "split": "test", **accuracy})
    return accuracy


def main(argv: list[str]) -> None:
    from uvlm import provenance
    from uvlm.cli import command_parser, parse_command

    p = command_parser("python -m uvlm judge-train", __doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", required=True, choices=list(TRUNKS))
    args, cfg = parse_command(p, argv)
    print(json.dumps(train_and_evaluate(cfg, args.space), indent=1))
    used = json.loads((paths.judge_dir(cfg, args.space) / "config.json").read_text())["precision"]
    provenance.write(cfg, "judge-train", judge=args.space, precision=used)
