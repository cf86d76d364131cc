"""Evaluation: answers files, VQA / caption / generation scores, judges, FID, bootstrap.

Metric functions are pure (arrays or rows in, numbers out); file reading and writing lives
in thin functions at the bottom of each module (``main``, ``read_*``, ``load_*``). The stage
drivers: ``run`` (``python -m uvlm evaluate``: answer and score a run's checkpoints) and
``adapters`` (``python -m uvlm analyze-adapters``: finding 3's adapter analysis).
"""
