"""The experiment grid: which training runs each experiment needs.

A run is identified by what it trains, not by the experiment that asked for it, so two
experiments that need the same model (e.g. ``alignment`` at distortion 0 and ``mutual``'s
mixed run) share one training job. A single-task run uses one vision space, so a crossed
architecture's single-task cell is trained once as the same-space architecture's run
(``siglip-vq_und`` reads ``siglip-siglip_und``; see :func:`single_task`). Run names join
their parts with underscores, ``ARCH_MODE[_VARIANT][_OPTION...]``:

    vq-vq_mixed                  siglip-vq_und-eq           (equal compute to mixed)
    vq-vq_und_affine0.2          siglip-siglip_mixed_biased-weather
    vq-vq_mixed_extra-gen-1000   siglip-siglip_mixed_detach
    clip-clip_mixed_gen-50000    (llava: 50000 generation samples in SFT; see ``_llava``)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from uvlm.config import Config, ConfigError

MODES = ("mixed", "und", "gen")
#: the generation judge that reads a generation space's outputs: VQ codes are decoded to
#: pixels, continuous heads are read in their feature space (``uvlm.eval.judge``)
JUDGE_OF_SPACE = {"vq": "pixels", "siglip": "siglip"}
#: records per image a mode trains on (vqa + caption + generation); equal-compute runs scale
#: their epochs by mixed/single so they take as many optimizer steps as the mixed run.
RECORDS_PER_IMAGE = {"mixed": 3, "und": 2, "gen": 1}


def equal_compute_scale(mode: str) -> float:
    """Multiplier on ``train.epochs`` that gives a ``mode`` run the mixed run's optimizer
    steps (records per image of mixed / of ``mode``: x1.5 und-only, x3 gen-only)."""
    return RECORDS_PER_IMAGE["mixed"] / RECORDS_PER_IMAGE[mode]


@dataclass(frozen=True)
class Run:
    arch: str  # "<understanding space>-<generation space>", e.g. "siglip-vq"
    mode: str  # mixed | und | gen
    variant: str = "train"  # data: train | biased-<attr> | extra-{gen,und}-<n> | gen-<n> (llava)
    affine: float = 0.0  # strength of the input-space distortion (0 = identity)
    detach: bool = False  # separate generation adapter for same-space architectures
    equal_compute: bool = False  # single-task run given the mixed run's optimizer steps
    # the run trained for this cell when that is another run (a crossed architecture's
    # single-task cell, :func:`single_task`); None: this run itself
    source: Run | None = None

    @property
    def name(self) -> str:
        parts = [self.arch, self.mode + ("-eq" if self.equal_compute else "")]
        if self.variant != "train":
            parts.append(self.variant)
        if self.affine:
            parts.append(f"affine{self.affine:g}")
        if self.detach:
            parts.append("detach")
        return "_".join(parts)

    @property
    def trained(self) -> Run:
        """The run whose checkpoints and evaluations this cell reads (``uvlm.paths``)."""
        return self.source or self

    @property
    def und_space(self) -> str:
        return self.arch.split("-")[0]

    @property
    def gen_space(self) -> str:
        return self.arch.split("-")[1]

    @property
    def epoch_scale(self) -> float:
        """Multiplier on ``train.epochs`` (equal-compute runs match the mixed run's steps)."""
        return equal_compute_scale(self.mode) if self.equal_compute else 1.0


def parse_run(name: str) -> Run:
    """Inverse of ``Run.name``; raises ConfigError naming the bad part."""
    parts = name.split("_")
    if len(parts) < 2:
        raise ConfigError(f"run {name!r}: expected ARCH_MODE[_VARIANT][_affineX][_detach]")
    arch, mode = parts[0], parts[1]
    eq = mode.endswith("-eq")
    mode = mode.removesuffix("-eq")
    if mode not in MODES:
        raise ConfigError(f"run {name!r}: unknown mode {mode!r}; allowed: {', '.join(MODES)}")
    kw: dict = {}
    for p in parts[2:]:
        if p == "detach":
            kw["detach"] = True
        elif p.startswith("affine"):
            try:
                kw["affine"] = float(p.removeprefix("affine"))
            except ValueError:
                raise ConfigError(f"run {name!r}: {p!r} needs a number after 'affine', "
                                  f"e.g. affine0.2") from None
        elif p.startswith(("biased-", "extra-", "gen-")):
            kw["variant"] = p
        else:
            raise ConfigError(f"run {name!r}: unknown part {p!r}")
    return Run(arch, mode, equal_compute=eq, **kw)


def single_task(arch: str, mode: str, equal_compute: bool = False) -> Run:
    """The ``mode`` ("und" or "gen") cell of ``arch``, trained as the same-space
    architecture's run: an understanding-only run never trains its generation head and a
    generation-only run never reads an understanding image, so ``siglip-vq_und`` would be
    ``siglip-siglip_und`` up to its random draws (init order, data order). Training it once
    saves a training per crossed architecture and task, and the crossed and shared cells of
    a comparison then share their single-task baseline exactly.

    Not for the llava runs: there a run's stage 1 trains its architecture's adapters on
    both tasks (``uvlm.llava.pretrain_run``), so the generation side is not unused."""
    run = Run(arch, mode, equal_compute=equal_compute)
    space = run.und_space if mode == "und" else run.gen_space
    same = Run(f"{space}-{space}", mode, equal_compute=equal_compute)
    return run if same == run else dataclasses.replace(run, source=same)


def _mutual(cfg: Config) -> list[Run]:
    out = []
    for arch in cfg.grid.architectures:
        out += [Run(arch, "mixed"), single_task(arch, "und"), single_task(arch, "gen")]
        if cfg.grid.equal_compute:
            out += [single_task(arch, "und", True), single_task(arch, "gen", True)]
    return out


def _imbalance(cfg: Config) -> list[Run]:
    out = []
    for arch in cfg.grid.imbalance_architectures:
        out.append(Run(arch, "mixed"))
        out += [Run(arch, "mixed", f"extra-gen-{n}") for n in cfg.data.extra_generation]
        out += [Run(arch, "mixed", f"extra-und-{n}") for n in cfg.data.extra_understanding]
    return out


def _alignment(cfg: Config) -> list[Run]:
    strengths = {"vq-vq": cfg.encoders.affine.vq_sigmas,
                 "siglip-siglip": cfg.encoders.affine.siglip_ks}
    return [Run(arch, m, affine=v) for arch in cfg.grid.alignment_architectures
            for v in strengths[arch] for m in ("mixed", "und")]


def _transfer(cfg: Config) -> list[Run]:
    out = []
    for arch in cfg.grid.transfer_architectures:
        for attr in cfg.grid.transfer_attributes:
            out += [Run(arch, m, f"biased-{attr}") for m in ("mixed", "und")]
    return out


def _adapters(cfg: Config) -> list[Run]:
    return [r for arch in cfg.grid.adapters_architectures
            for r in (Run(arch, "mixed"), single_task(arch, "und"))]


def llava_run(arch: str, generation: int, full: int) -> Run:
    """The llava run whose SFT data holds ``generation`` text-to-image samples: 0 is the
    understanding-only run, ``full`` (the largest amount) the plain mixed run."""
    if generation == 0:
        return Run(arch, "und")
    return Run(arch, "mixed", "train" if generation == full else f"gen-{generation}")


def llava_generation(cfg: Config, run: Run) -> int:
    """Generation samples in the SFT data of a llava run (the inverse of ``llava_run``)."""
    if run.mode == "und":
        return 0
    if run.variant == "train":
        return max(cfg.llava.sft_generation)
    return int(run.variant.removeprefix("gen-"))


def _llava(cfg: Config) -> list[Run]:
    ll = cfg.llava
    full, out = max(ll.sft_generation), []
    for arch in cfg.grid.architectures:
        amounts = sorted(ll.sft_generation) if arch in ll.scaling_architectures else [full]
        out += [llava_run(arch, n, full) for n in amounts]
        if arch in ll.detach_architectures:
            out.append(Run(arch, "mixed", detach=True))
    return out


EXPERIMENTS = {
    "mutual": _mutual,
    "imbalance": _imbalance,
    "alignment": _alignment,
    "transfer": _transfer,
    "adapters": _adapters,
    "llava": _llava,
}


#: the config keys an experiment's runs come from (named when it has none)
EXPERIMENT_KEYS = {
    "mutual": "grid.architectures",
    "imbalance": "grid.imbalance_architectures",
    "alignment": "grid.alignment_architectures, encoders.affine.vq_sigmas / siglip_ks",
    "transfer": "grid.transfer_architectures, grid.transfer_attributes",
    "adapters": "grid.adapters_architectures",
    "llava": "grid.architectures, llava.sft_generation",
}


def experiment_runs(cfg: Config, experiment: str) -> list[Run]:
    if experiment not in EXPERIMENTS:
        raise ConfigError(f"grid.experiments: unknown experiment {experiment!r}; "
                          f"allowed: {', '.join(EXPERIMENTS)}")
    runs = EXPERIMENTS[experiment](cfg)
    if not runs:
        raise ConfigError(f"grid: experiment {experiment!r} has no runs with this config; "
                          f"give {EXPERIMENT_KEYS[experiment]} at least one entry, or drop "
                          f"it from grid.experiments")
    return runs


def experiment_seeds(cfg: Config, experiment: str) -> list[int]:
    if experiment == "mutual" and cfg.grid.mutual_seeds:
        return list(cfg.grid.mutual_seeds)
    return list(cfg.grid.seeds)


def all_runs(cfg: Config) -> list[Run]:
    """Every distinct run (cell) of every configured experiment, in a stable order."""
    return list(dict.fromkeys(r for exp in cfg.grid.experiments
                              for r in experiment_runs(cfg, exp)))


def _run_seeds(cfg: Config) -> dict[Run, list[int]]:
    """Trained run -> its seeds: those of every experiment with a cell that reads it."""
    seeds: dict[Run, set[int]] = {}
    for exp in cfg.grid.experiments:
        for r in experiment_runs(cfg, exp):
            seeds.setdefault(r.trained, set()).update(experiment_seeds(cfg, exp))
    return {r: sorted(s) for r, s in seeds.items()}


def run_seeds(cfg: Config, run: Run) -> list[int]:
    """Seeds a run is trained with: every seed of every experiment that uses it (a run
    shared by ``mutual`` and ``alignment`` has mutual's seeds everywhere it is read)."""
    seeds = _run_seeds(cfg).get(run.trained)
    if seeds is None:
        raise ConfigError(f"run {run.name!r} is in no configured experiment")
    return seeds


def shared_seeds(cfg: Config, experiment: str) -> list[int]:
    """Seeds every run of an experiment was trained with: the experiment's comparisons pair
    runs on these (a run it shares with ``mutual`` has mutual's extra seeds too)."""
    runs = experiment_runs(cfg, experiment)
    return sorted(set.intersection(*(set(run_seeds(cfg, r)) for r in runs)))


def jobs(cfg: Config) -> list[tuple[Run, int]]:
    """Every (run, seed) pair the grid trains and evaluates (trained runs, not cells)."""
    return [(r, s) for r, seeds in _run_seeds(cfg).items() for s in seeds]


def extra_images(run: Run) -> dict[str, int]:
    """Images an ``extra-{gen,und}-N`` variant adds, by task kind: {kind: N}; {} otherwise."""
    if not run.variant.startswith("extra-"):
        return {}
    _, kind, count = run.variant.split("-")
    return {kind: int(count)}


def max_records(cfg: Config, run: Run) -> int:
    """Records a run trains on at most: exactly this many for the plain train data; a biased
    variant drops some understanding records (how many, only its data file knows)."""
    n = cfg.data.n_train * RECORDS_PER_IMAGE[run.mode]
    for kind, count in extra_images(run).items():
        if run.mode in ("mixed", kind):
            n += count * RECORDS_PER_IMAGE[kind]
    return n


def optimizer_steps(cfg: Config, run: Run, n_records: int) -> int:
    """Optimizer steps of a run over ``n_records`` (equal-compute runs scale the epochs)."""
    return math.ceil(cfg.train.epochs * run.epoch_scale * n_records / cfg.train.batch_size)


#: one generated VQ image's training compute in understanding records: 16 slots of 2 x 2
#: codes through a 4 x 512-way head at mini (the mini grid's siglip-vq mixed runs took 365
#: CPU-seconds against siglip-siglip's 305: 6,000 understanding records + 3,000 images)
VQ_IMAGE_COST = 1.6


def training_cost(cfg: Config, run: Run) -> float:
    """A run's estimated training compute, in understanding-record passes: the train rule's
    priority, so that a local run starts its longest trainings first instead of ending on
    one (longest-first scheduling). From the config alone, since planning reads no data: a
    biased variant counts its records whole."""
    extra = extra_images(run)
    n_und = 0 if run.mode == "gen" else RECORDS_PER_IMAGE["und"] * (cfg.data.n_train
                                                                   + extra.get("und", 0))
    n_gen = 0 if run.mode == "und" else cfg.data.n_train + extra.get("gen", 0)
    image = VQ_IMAGE_COST if run.gen_space == "vq" else 1.0
    return cfg.train.epochs * run.epoch_scale * (n_und + image * n_gen)


def data_variants(cfg: Config) -> list[str]:
    """Names of the files under data/variants/ that the data stage writes."""
    return (["biased-weather", "biased-battery"]
            + [f"extra-gen-{n}" for n in cfg.data.extra_generation]
            + [f"extra-und-{n}" for n in cfg.data.extra_understanding]
            + ["summary"])
