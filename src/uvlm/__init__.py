"""uvlm: a reproducibility package for arXiv 2505.23043 (unified vision-language models)."""

__version__ = "0.1.0"


class UvlmError(ValueError):
    """A mistake in what the user gave: a config key or value, a run name, an input file, a
    run directory another trainer holds. The message names the file, key or value, so
    ``python -m uvlm`` prints it as one line instead of a traceback."""
