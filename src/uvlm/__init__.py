"""uvlm: a reproducibility package for arXiv 2505.23043 (unified vision-language models)."""

__version__ = "0.1.0"
