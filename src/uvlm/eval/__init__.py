"""Evaluation: answers files, VQA / caption / generation scores, judges, FID, bootstrap.

Metric functions are pure (arrays or rows in, numbers out); file reading and writing lives
in thin functions at the bottom of each module (``main``, ``read_*``, ``load_*``).
"""
