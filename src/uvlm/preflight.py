"""What a config must satisfy before any job runs, beyond its keys one by one.

``config.load`` / ``config.from_dict`` check every key's type and range and the keys of one
section together (e.g. ``model.llm.heads`` divides ``hidden_size``). ``check`` adds what needs
the grid, several sections or the file system: every experiment has runs, every run's
optimizer steps hold its checkpoints, the global batch fits the data, and the files the
jobs read exist. The Snakefile and ``python -m uvlm config-schema --check`` both call it, so
a config one accepts the other accepts too, and a bad value fails before the first job
instead of inside the tenth.
"""

from __future__ import annotations

from pathlib import Path

from uvlm import grid
from uvlm.config import Config, ConfigError


def check(cfg: Config, source: str = "config") -> None:
    """Raise ConfigError naming ``source`` (the file), the key(s) and what is allowed;
    relative paths are read from the working directory (the workflow's root)."""
    try:
        _check(cfg)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


def _check(cfg: Config) -> None:
    runs = grid.all_runs(cfg)  # an experiment without runs names its keys
    if "llava" not in cfg.grid.experiments:  # llava's data comes from its JSON files
        _check_steps(cfg, runs)
    _check_micro_batch("train", cfg.train.batch_size, cfg.train.micro_batch_size)
    if "llava" in cfg.grid.experiments:
        p = cfg.llava.pretrain
        _check_micro_batch("llava.pretrain", p.batch_size, p.micro_batch_size)
    # (resources/ files such as eval.inception_weights have a rule of their own that names
    # where to get them, so a dry run still plans them)
    for key, path in (("train.accelerate_config", cfg.train.accelerate_config),
                      ("data.font", cfg.data.font)):
        if path and not Path(path).is_file():
            raise ConfigError(f"{key}: file {path!r} not found (relative paths start at "
                              f"{Path.cwd()})")
    from uvlm.report import targets  # the rule `all` reads them; they check their inputs

    targets(cfg)


def _check_steps(cfg: Config, runs: list[grid.Run]) -> None:
    """The run with the fewest records bounds train.batch_size and train.checkpoints.

    ``grid.max_records`` is exact for the plain train data and an upper bound for a biased
    variant, so what is refused here would certainly fail in ``train``."""
    tc = cfg.train
    fewest = min(runs, key=lambda r: (grid.max_records(cfg, r), r.name))
    n = grid.max_records(cfg, fewest)
    if tc.batch_size > n:
        raise ConfigError(f"train.batch_size: {tc.batch_size} is larger than the {n} records "
                          f"of run {fewest.name} (data.n_train={cfg.data.n_train}); allowed: "
                          f"at most {n}")
    steps = {r.name: grid.optimizer_steps(cfg, r, grid.max_records(cfg, r)) for r in runs}
    name = min(steps, key=steps.get)
    if steps[name] < tc.checkpoints:
        raise ConfigError(f"train.checkpoints: {tc.checkpoints} checkpoints do not fit the "
                          f"{steps[name]} optimizer steps of run {name} (train.epochs="
                          f"{tc.epochs:g}, train.batch_size={tc.batch_size}, data.n_train="
                          f"{cfg.data.n_train}); allowed: at most {steps[name]}")


def _check_micro_batch(section: str, batch: int, micro: int) -> None:
    if micro and batch % micro:
        raise ConfigError(f"{section}.micro_batch_size: {micro} must divide "
                          f"{section}.batch_size={batch}; allowed: 0 (batch_size / processes) "
                          f"or a divisor of {batch}")
