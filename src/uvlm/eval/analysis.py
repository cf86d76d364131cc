"""Adapter analysis (docs/paper.md §3.5, the authors' ``adapter_analysis.ipynb``).

Input-adapter features (N, D) of images labelled with their weather are

* embedded for the t-SNE panels: StandardScaler -> PCA(min(50, N, D)) -> t-SNE (2-d,
  perplexity 30, learning rate 200, 1000 iterations, seeded);
* read by a linear probe D -> 3 (theirs: 4096 -> 3): StandardScaler on all features (as
  theirs), a seeded 80/20 split (theirs: 4,500 / 1,085 of 5,585), SGD lr 0.01, momentum 0.9,
  weight decay 1e-4, StepLR(20, 0.1), 50 epochs, batch 64 (test batch 128 only batches
  evaluation). We report the final test accuracy and, as the notebook printed, the best
  test accuracy over epochs (optimistic: it selects on the test set).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.preprocessing import StandardScaler

PCA_DIMS = 50
PERPLEXITY = 30.0
TSNE_LR = 200.0
TSNE_ITERS = 1000
PROBE = {"lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4, "step_size": 20, "gamma": 0.1,
         "epochs": 50, "batch_size": 64, "train_fraction": 0.8}


def tsne_embedding(features: np.ndarray, seed: int, perplexity: float = PERPLEXITY) -> np.ndarray:
    """features (N, D) -> (N, 2) t-SNE coordinates after scaling and PCA."""
    features = np.asarray(features, dtype=np.float64)
    n, d = features.shape
    if n <= perplexity:
        raise ValueError(f"t-SNE: {n} samples; perplexity {perplexity} needs more")
    scaled = StandardScaler().fit_transform(features)
    reduced = PCA(n_components=min(PCA_DIMS, n, d), random_state=seed).fit_transform(scaled)
    tsne = TSNE(n_components=2, perplexity=perplexity, learning_rate=TSNE_LR,
                max_iter=TSNE_ITERS, random_state=seed)
    return tsne.fit_transform(reduced)


def linear_probe(features: np.ndarray, labels: np.ndarray, seed: int,
                 n_classes: int = 3) -> dict:
    """Train the paper's linear probe; returns test accuracies and split sizes."""
    x = torch.tensor(StandardScaler().fit_transform(np.asarray(features, dtype=np.float64)),
                     dtype=torch.float32)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    n = x.shape[0]
    n_train = int(round(PROBE["train_fraction"] * n))
    if not 0 < n_train < n:
        raise ValueError(f"linear probe: {n} samples are too few for an 80/20 split")
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=gen)
    train, test = order[:n_train], order[n_train:]

    probe = torch.nn.Linear(x.shape[1], n_classes)
    with torch.no_grad():  # seeded init (nn.Linear's default draws from the global RNG)
        bound = 1 / np.sqrt(x.shape[1])
        probe.weight.uniform_(-bound, bound, generator=gen)
        probe.bias.uniform_(-bound, bound, generator=gen)
    opt = torch.optim.SGD(probe.parameters(), lr=PROBE["lr"], momentum=PROBE["momentum"],
                          weight_decay=PROBE["weight_decay"])
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=PROBE["step_size"],
                                            gamma=PROBE["gamma"])
    best = 0.0
    for _ in range(PROBE["epochs"]):
        perm = train[torch.randperm(n_train, generator=gen)]
        for i in range(0, n_train, PROBE["batch_size"]):
            idx = perm[i:i + PROBE["batch_size"]]
            loss = F.cross_entropy(probe(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
        with torch.no_grad():
            acc = float((probe(x[test]).argmax(1) == y[test]).float().mean())
        best = max(best, acc)
    return {"test_accuracy": acc, "best_test_accuracy": best, "n_train": n_train,
            "n_test": n - n_train}
