"""`python -m uvlm analyze-adapters`: finding 3's adapter analysis for one run (docs/paper.md §3.5).

The authors take the input-adapter output of the first (top-left) image token of images whose
weather icon sits top-left, then draw a t-SNE coloured by weather and fit a linear probe. We
do the same on the train split's images with the weather icon top-left, using the run's final
checkpoint, and write ``R/analysis/adapters/{run}/seed{s}/probe.json``.
"""

from __future__ import annotations

import numpy as np
import torch

from uvlm import paths, provenance
from uvlm.cli import command_parser, parse_command
from uvlm.config import Config
from uvlm.grid import Run, parse_run
from uvlm.utils import stream_seed, write_json


def adapter_features(cfg: Config, run: Run, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """-> features (N, H) of the first image token after the input adapter, weather (N,)."""
    from uvlm import encoders
    from uvlm.data.records import load_attributes
    from uvlm.data.tasks import WEATHERS
    from uvlm.model.checkpoint import load_trained

    model, _, _, _ = load_trained(paths.ckpt_dir(cfg, run, seed, cfg.train.checkpoints))
    attributes = paths.attributes_file(cfg, "train")
    watches = load_attributes(attributes)
    ids = [i for i, w in enumerate(watches) if w.weather_pos == "top-left"]
    if not ids:
        raise ValueError(f"{attributes}: no image with the weather icon top-left")
    inputs = encoders.open_features(cfg, run.und_space, "train")[torch.tensor(ids)]
    with torch.no_grad():
        feats = torch.cat([model.embed_und(inputs[i:i + 256])[:, 0].float()
                           for i in range(0, len(ids), 256)])
    labels = np.array([WEATHERS.index(watches[i].weather) for i in ids])
    return feats.numpy(), labels


def main(argv: list[str]) -> None:
    from uvlm.eval.analysis import linear_probe, tsne_embedding

    p = command_parser("python -m uvlm analyze-adapters", __doc__)
    p.add_argument("--run", required=True)
    p.add_argument("--seed", required=True, type=int)
    args, cfg = parse_command(p, argv)
    run = parse_run(args.run)
    feats, labels = adapter_features(cfg, run, args.seed)
    s = stream_seed(cfg.seed, "analysis", run.name, args.seed) % 2**31
    probe = linear_probe(feats, labels, seed=s)
    tsne = tsne_embedding(feats, seed=s, perplexity=min(30.0, (len(labels) - 1) / 3))
    write_json(paths.adapter_probe(cfg, run, args.seed),
               {"probe_accuracy": probe["test_accuracy"], **probe,
                "tsne": np.round(tsne, 4).tolist(), "labels": labels.tolist()})
    provenance.write(cfg, "analyze-adapters", run=run.name, seed=args.seed)
