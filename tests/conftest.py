"""Shared test setup."""

import torch

# Tiny models on a 2-core machine: one intra-op thread is faster and keeps parallel test
# processes (and other jobs) from oversubscribing the cores.
torch.set_num_threads(1)
