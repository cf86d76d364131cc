"""The `paper` stage: tables, figures and findings.md from the evaluation outputs.

``targets(cfg)`` is what the Snakefile reads (one rule per target, exact inputs and
outputs); ``python -m uvlm paper --config C --target NAME`` builds one target.
"""

from uvlm.report.registry import TARGETS, build, experiment_targets, read_checkpoints, targets

__all__ = ["TARGETS", "build", "experiment_targets", "read_checkpoints", "targets"]
