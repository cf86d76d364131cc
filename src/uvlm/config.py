"""Typed, strict configuration.

One YAML file per scale (config/{smoke,config,paper,llava}.yaml) is loaded into the frozen
dataclasses below. The dataclasses are the only source of defaults and ranges:

* an unknown key, a wrong type or an out-of-range value raises ``ConfigError`` naming the
  dotted key and what is allowed;
* ``json_schema()`` derives the JSON schema that the Snakefile hands to Snakemake's
  ``validate`` (written to workflow/schemas/config.schema.yaml; a test keeps it in sync).

The resolved config (``to_dict``) is written where it is read back: the workflow writes
``results/<name>/config.yaml`` for its rules (workflow/rules/common.smk), every checkpoint
holds its own copy (``uvlm.model.checkpoint``), and each provenance record keeps the sections
its artifact depends on (``uvlm.provenance``).

Range and choice constraints live in field metadata (``bounds(lo, hi)``) and ``Literal`` types.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from uvlm import UvlmError


class ConfigError(UvlmError):
    """A config file or override is invalid; the message names the key."""


def _divides(key: str, divisor: int, values: dict[str, int]) -> None:
    """Raise unless ``divisor`` (the value of ``key``) divides every one of ``values``."""
    bad = {k: v for k, v in values.items() if v % divisor}
    if bad:
        raise ConfigError(f"{key}: {divisor} must divide "
                          + ", ".join(f"{k}={v}" for k, v in bad.items())
                          + f"; allowed: a divisor of {math.gcd(*values.values())}")


def bounds(lo: float | None = None, hi: float | None = None, **kw: Any) -> dict:
    """Field metadata: inclusive numeric bounds."""
    return {"min": lo, "max": hi, **kw}


def _f(default: Any, lo: float | None = None, hi: float | None = None, doc: str = ""):
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default),
                     metadata=bounds(lo, hi, doc=doc))
    return field(default=default, metadata=bounds(lo, hi, doc=doc))


def _sub(cls):
    return field(default_factory=cls)


# --------------------------------------------------------------------------- data

Weather = Literal["sunny", "cloudy", "raining"]


@dataclass(frozen=True)
class BiasConfig:
    """Understanding data biased on one attribute; generation data stays complete.

    An image whose attribute lies outside the kept set loses its understanding records
    (VQA and caption) unless drawn with probability ``other_fraction``; its generation
    record is always kept.
    """

    weather_keep: list[Weather] = _f(["sunny"], doc="weathers kept in understanding data")
    battery_keep: list[int] = _f([0, 49], 0, 100, doc="inclusive battery range kept")
    other_fraction: float = _f(0.0, 0.0, 1.0)

    def __post_init__(self):
        if len(self.battery_keep) != 2 or self.battery_keep[0] > self.battery_keep[1]:
            raise ConfigError(f"data.bias.battery_keep: expected [lo, hi] with lo <= hi, "
                              f"got {self.battery_keep}")
        if not self.weather_keep:
            raise ConfigError("data.bias.weather_keep: must name at least one weather")


@dataclass(frozen=True)
class DataConfig:
    image_size: int = _f(224, 16, 1024, doc="rendered image side in px (paper: 224)")
    n_train: int = _f(60000, 1)
    n_test: int = _f(200, 1)
    font: str = _f("", doc="TTF path for the battery text; empty = Pillow's default font")
    workers: int = _f(0, 0, 256, doc="render processes; 0 = all cores")
    bias: BiasConfig = _sub(BiasConfig)
    extra_generation: list[int] = _f([33000, 68000, 124000], 0,
                                     doc="extra generation-only images (imbalance)")
    extra_understanding: list[int] = _f([68000, 124000, 180000], 0,
                                        doc="extra understanding-only images (imbalance)")


# --------------------------------------------------------------------------- encoders

Source = Literal["pretrained", "train"]
Precision = Literal["auto", "fp32", "bf16"]
PRECISION_DOC = ("auto = bf16 autocast where the device runs bf16 natively (CUDA with bf16, a "
                 "CPU with AVX-512 BF16 or AMX), else fp32")


@dataclass(frozen=True)
class SiglipConfig:
    """SigLIP vision space. ``pretrained`` loads ``path`` with transformers; ``train``
    builds the same classes from the sizes below and trains them on the train split."""

    source: Source = "pretrained"
    path: str = "google/siglip-base-patch16-224"
    feature_layer: int = _f(-2, doc="hidden_states index the features come from")
    image_size: int = _f(224, 8)
    patch_size: int = _f(16, 1)
    hidden_size: int = _f(768, 8)
    layers: int = _f(12, 1)
    heads: int = _f(12, 1)
    intermediate_size: int = _f(3072, 8)
    text_layers: int = _f(12, 1)
    steps: int = _f(0, 0)
    batch_size: int = _f(64, 1)
    lr: float = _f(1e-3, 0.0)
    precision: Precision = _f("auto", doc="autocast of tiny-scale training; " + PRECISION_DOC)

    def __post_init__(self):
        if self.source == "train":  # a pretrained tower brings its own sizes
            _divides("encoders.siglip.heads", self.heads, {"hidden_size": self.hidden_size})
            _divides("encoders.siglip.patch_size", self.patch_size,
                     {"image_size": self.image_size})


@dataclass(frozen=True)
class VQConfig:
    """LlamaGen VQ-16 vision space. ``pretrained`` loads ``path`` (vq_ds16_c2i.pt);
    ``train`` trains the same class at the given size as a VQ autoencoder."""

    source: Source = "pretrained"
    path: str = "vq_ds16_c2i.pt"
    image_size: int = _f(256, 8)
    codebook_size: int = _f(16384, 2)
    codebook_dim: int = _f(8, 1)
    ch: int = _f(128, 4)
    ch_mult: list[int] = _f([1, 1, 2, 2, 4], 1)
    z_channels: int = _f(256, 4)
    num_res_blocks: int = _f(2, 1)
    norm_groups: int = _f(32, 1, doc="GroupNorm groups; must divide ch x every ch_mult")
    precision: Precision = _f("auto", doc="autocast of tiny-scale training (codes are always "
                                         "searched in fp32); " + PRECISION_DOC)
    steps: int = _f(0, 0)
    batch_size: int = _f(64, 1)
    lr: float = _f(1e-4, 0.0)

    def __post_init__(self):
        # the model is built from these sizes for both sources (a pretrained file is loaded
        # into it), so they must fit together either way
        _divides("encoders.vq.norm_groups", self.norm_groups,
                 {f"ch x ch_mult[{i}]": self.ch * m for i, m in enumerate(self.ch_mult)})
        if self.image_size % self.downsample:
            raise ConfigError(f"encoders.vq.image_size: {self.image_size} must be a multiple "
                              f"of {self.downsample} (2 ** (len(ch_mult) - 1) downsamplings)")

    @property
    def downsample(self) -> int:
        """Pixels per code along each side."""
        return 2 ** (len(self.ch_mult) - 1)

    @property
    def side(self) -> int:
        """Codes per image side: an image is side x side codes."""
        return self.image_size // self.downsample


@dataclass(frozen=True)
class ClipConfig:
    """CLIP vision space (llava config); the sizes are checked against the loaded model."""

    path: str = "openai/clip-vit-large-patch14-336"
    feature_layer: int = -2
    image_size: int = _f(336, 8)
    patch_size: int = _f(14, 1)
    hidden_size: int = _f(1024, 8)

    def __post_init__(self):
        _divides("encoders.clip.patch_size", self.patch_size, {"image_size": self.image_size})


@dataclass(frozen=True)
class TokenizerConfig:
    """``pretrained`` uses the LLM's own tokenizer; ``train`` fits a BPE on train text."""

    source: Source = "pretrained"
    vocab_size: int = _f(512, 260, doc="byte-level BPE: 256 bytes + 4 special tokens at least")


@dataclass(frozen=True)
class AffineConfig:
    """Input-space distortions for the alignment experiment (docs/paper.md §3.3)."""

    vq_sigmas: list[float] = _f([0.0, 0.1, 0.2, 0.3], 0.0, 0.99)
    siglip_ks: list[float] = _f([0.0, 1.0, 1.1, 1.2, 1.4], 0.0, 10.0)


@dataclass(frozen=True)
class EncodersConfig:
    feature_batch_size: int = _f(64, 1, doc="images per forward pass in encoders-features")
    feature_dtype: Literal["bfloat16", "float16", "float32"] = _f(
        "bfloat16", doc="dtype continuous features are stored in (codes stay int64); "
                        "training reads each batch's rows from the file, as float32")
    siglip: SiglipConfig = _sub(SiglipConfig)
    vq: VQConfig = _sub(VQConfig)
    clip: ClipConfig = _sub(ClipConfig)
    tokenizer: TokenizerConfig = _sub(TokenizerConfig)
    affine: AffineConfig = _sub(AffineConfig)


# --------------------------------------------------------------------------- model

@dataclass(frozen=True)
class LLMConfig:
    """``pretrained``: ``AutoModelForCausalLM.from_pretrained(path)``. ``config``: the
    architecture ``arch`` built from the sizes below with random init."""

    source: Literal["pretrained", "config"] = "pretrained"
    path: str = "lmsys/vicuna-7b-v1.5"
    arch: Literal["llama", "qwen2"] = "llama"
    hidden_size: int = _f(4096, 8)
    layers: int = _f(32, 1)
    heads: int = _f(32, 1)
    kv_heads: int = _f(32, 1)
    intermediate_size: int = _f(11008, 8)
    max_length: int = _f(2048, 16)
    attention: Literal["sdpa", "eager"] = _f(
        "sdpa", doc="attention kernel; eager is ~1.8x faster for short bf16 sequences on CPU")

    def __post_init__(self):
        if self.source != "config":  # a pretrained LLM brings its own sizes
            return
        _divides("model.llm.heads", self.heads, {"hidden_size": self.hidden_size})
        _divides("model.llm.kv_heads", self.kv_heads, {"heads": self.heads})
        if (self.hidden_size // self.heads) % 2:  # rotary embeddings rotate pairs
            raise ConfigError(f"model.llm.heads: hidden_size / heads = "
                              f"{self.hidden_size // self.heads} must be even (rotary "
                              f"embeddings rotate pairs of channels)")


@dataclass(frozen=True)
class LoraConfig:
    enabled: bool = True
    r: int = _f(128, 1)
    alpha: int = _f(256, 1)
    dropout: float = _f(0.05, 0.0, 1.0)


@dataclass(frozen=True)
class ModelConfig:
    llm: LLMConfig = _sub(LLMConfig)
    lora: LoraConfig = _sub(LoraConfig)
    siglip_adapter: Literal["mlp", "linear"] = "mlp"
    vq_adapter: Literal["mlp", "linear"] = "linear"
    vq_merge: int = _f(1, 1, doc="each k x k block of VQ codes fills one slot (T / k^2 "
                       "slots): understanding reads its k^2 codebook vectors side by side, "
                       "generation predicts its k^2 codes from one hidden state; 1 = one slot "
                       "per code (the paper)")
    clip_adapter: Literal["mlp", "linear"] = "mlp"
    alpha_continuous: float = _f(1.0, 0.0)
    alpha_vq: float = _f(0.2, 0.0)
    system_prompt: str = _f(
        "A chat between a curious user and an artificial intelligence assistant. "
        "The assistant gives helpful, detailed, and polite answers to the user's questions.",
        doc="vicuna_v1 system prompt; empty at tiny scales to keep sequences short")

    def merge(self, kind: str) -> int:
        """k of the k x k blocks of tokens a space of this kind is read and written in."""
        return self.vq_merge if kind == "vq" else 1


# --------------------------------------------------------------------------- train

@dataclass(frozen=True)
class TrainConfig:
    epochs: float = _f(1.0, 0.01)
    batch_size: int = _f(393, 1, doc="global batch")
    micro_batch_size: int = _f(0, 0, doc="per-process micro-batch (gradient accumulation); "
                                         "0 = batch_size / processes")
    lr: float = _f(2e-4, 0.0)
    adapter_lr: float = _f(1e-4, 0.0)
    warmup_ratio: float = _f(0.03, 0.0, 1.0)
    weight_decay: float = _f(0.0, 0.0)
    grad_clip: float = _f(1.0, 0.0)
    checkpoints: int = _f(10, 1, 100, doc="equal data fractions saved (the data-scale axis)")
    checkpoint_dtype: Literal["float32", "bfloat16"] = _f(
        "float32", doc="dtype of the floating-point tensors of the published checkpoints "
        "(ckpt*/model.safetensors, read by evaluation); bfloat16 halves them. The resume "
        "state stays float32, and LLaVA stage 1, which stage 2 trains on, always saves "
        "float32 (uvlm.llava.stage_config)")
    precision: Precision = _f("auto", doc=PRECISION_DOC)
    grad_checkpointing: bool = True
    log_every: int = _f(10, 1)
    accelerate_config: str = _f("workflow/accelerate/gpu.yaml",
                                doc="accelerate launch --config_file of training jobs")
    runtime_minutes: int = _f(60, 1, doc="time limit a training job declares (SLURM --time)")


# --------------------------------------------------------------------------- eval

@dataclass(frozen=True)
class EvalConfig:
    max_new_tokens: int = _f(128, 1)
    batch_size: int = _f(32, 1)
    bootstrap: int = _f(1000, 0, doc="bootstrap resamples for 95% intervals")
    inception_weights: str = _f("", doc="pt_inception weights; empty = stand-in extractor")
    judge_steps: int = _f(500, 1)
    judge_batch_size: int = _f(64, 1)
    judge_lr: float = _f(1e-3, 0.0, doc="AdamW peak lr of the judges (cosine decay to 0)")
    judge_precision: Precision = _f("auto", doc="autocast of the judges' training; "
                                                + PRECISION_DOC)
    judge_max_train: int = _f(10000, 2, doc="train images the judges read (memory bound)")
    judge_train_recon: bool = _f(True, doc="pixel judge also trains on VQ reconstructions "
                                 "of the train renders (the generated images' domain)")


# --------------------------------------------------------------------------- grid

Arch = Literal["siglip-siglip", "siglip-vq", "vq-siglip", "vq-vq", "clip-clip", "clip-vq"]
Experiment = Literal["mutual", "imbalance", "alignment", "transfer", "adapters", "llava"]


@dataclass(frozen=True)
class GridConfig:
    experiments: list[Experiment] = _f(["mutual", "imbalance", "alignment", "transfer",
                                        "adapters"])
    architectures: list[Arch] = _f(["siglip-siglip", "siglip-vq", "vq-siglip", "vq-vq"])
    seeds: list[int] = _f([0], 0, doc="seeds of every experiment")
    mutual_seeds: list[int] = _f([], 0, doc="seeds of the mutual experiment (the paper's "
                                 "curves over seeds); empty = grid.seeds")
    equal_compute: bool = _f(True, doc="add single-task runs with the mixed run's steps")
    imbalance_architectures: list[Arch] = _f(["siglip-vq", "vq-vq"])
    alignment_architectures: list[Literal["siglip-siglip", "vq-vq"]] = _f(
        ["siglip-siglip", "vq-vq"], doc="distorted with encoders.affine.siglip_ks / vq_sigmas")
    transfer_architectures: list[Arch] = _f(["siglip-siglip", "siglip-vq", "vq-siglip",
                                             "vq-vq"])
    transfer_attributes: list[Literal["weather", "battery"]] = _f(["weather", "battery"])
    adapters_architectures: list[Arch] = _f(["siglip-siglip", "vq-vq"])

    def __post_init__(self):
        for key in ("experiments", "architectures", "seeds"):
            if not getattr(self, key):
                raise ConfigError(f"grid.{key}: empty; the grid needs at least one entry")
        if "llava" in self.experiments and (len(self.experiments) > 1 or len(self.seeds) > 1):
            raise ConfigError(f"grid: experiments {self.experiments}, seeds {self.seeds}: the "
                              f"llava experiment trains on LLaVA's data with its own rules and "
                              f"one seed; give it a config of its own (config/llava.yaml)")


# --------------------------------------------------------------------------- llava

#: the lmms-eval tasks of the LLaVA table (``uvlm.report.collect.BENCHMARKS``)
LlavaTask = Literal["gqa", "mmbench_en_dev", "mme", "mmstar", "vizwiz_vqa_val", "pope",
                    "textvqa_val"]


@dataclass(frozen=True)
class LlavaPretrainConfig:
    """Stage 1 of the LLaVA recipe: ``train`` with these values, the LLM frozen, so only the
    adapters and the image head learn (at ``lr``). Stage 2 (SFT) trains with ``train``."""

    lr: float = _f(1e-3, 0.0, doc="peak lr of the adapters and image head")
    batch_size: int = _f(256, 1, doc="global batch (the paper's 32 per GPU x 8 GPUs)")
    micro_batch_size: int = _f(32, 0, doc="per-process micro-batch; 0 = batch_size / processes")
    runtime_minutes: int = _f(720, 1, doc="time limit the stage-1 job declares (SLURM --time)")


@dataclass(frozen=True)
class LlavaConfig:
    """The LLaVA-1.5 experiment (docs/paper.md §5): ShareGPT4V captions turned into text-to-image
    samples and mixed into LLaVA's two training stages; lmms-eval benchmarks.

    Image paths in every JSON are relative to ``image_folder``, ShareGPT4V's data layout
    (``coco/``, ``gqa/``, ``ocr_vqa/``, ``textvqa/``, ``vg/``, ``llava/llava_pretrain/images/``).
    """

    sharegpt4v_json: str = _f("resources/llava/share-captioner_coco_lcs_sam_1246k_1107.json",
                              doc="ShareGPT4V captions (share-captioner_coco_lcs_sam_1246k_1107)")
    pretrain_json: str = _f("resources/llava/blip_laion_cc_sbu_558k.json",
                            doc="LLaVA-1.5 stage-1 data (blip_laion_cc_sbu_558k.json)")
    sft_json: str = _f("resources/llava/llava_v1_5_mix665k.json",
                       doc="LLaVA-1.5 stage-2 data (llava_v1_5_mix665k.json)")
    image_folder: str = _f("resources/llava/images", doc="root every image path starts from")
    pretrain_image_folder: str = _f("llava/llava_pretrain/images",
                                    doc="folder of pretrain_json's images, within image_folder")
    pretrain_generation: int = _f(150000, 0, doc="generation samples added to stage 1")
    sft_generation: list[int] = _f([0, 50000, 100000, 200000], 0,
                                   doc="generation samples added to stage 2, one run each; the "
                                   "largest is the full recipe, 0 the understanding-only run")
    scaling_architectures: list[Arch] = _f(["clip-clip"], doc="architectures trained at every "
                                           "sft_generation amount (others: the largest only)")
    detach_architectures: list[Arch] = _f(["clip-clip"], doc="same-space architectures also "
                                          "trained with a separate generation adapter")
    pretrain: LlavaPretrainConfig = _sub(LlavaPretrainConfig)
    tasks: list[LlavaTask] = _f(["gqa", "mmbench_en_dev", "mme", "mmstar", "vizwiz_vqa_val",
                                 "pope", "textvqa_val"], doc="lmms-eval tasks (batch 1, greedy)")

    def __post_init__(self):
        amounts = self.sft_generation
        if not amounts or len(set(amounts)) != len(amounts) or max(amounts) == 0:
            raise ConfigError(f"llava.sft_generation: {amounts} must be distinct amounts, the "
                              f"largest above 0 (the full recipe)")
        for arch in self.detach_architectures:
            und, gen = arch.split("-")
            if und != gen:
                raise ConfigError(f"llava.detach_architectures: {arch!r} has two spaces, so "
                                  f"separate adapters already; only same-space ones detach")
        if not self.tasks:
            raise ConfigError("llava.tasks: empty; name at least one lmms-eval task")


# --------------------------------------------------------------------------- root

@dataclass(frozen=True)
class Config:
    name: str
    seed: int = _f(0, 0, doc="root of every random stream")
    data: DataConfig = _sub(DataConfig)
    encoders: EncodersConfig = _sub(EncodersConfig)
    model: ModelConfig = _sub(ModelConfig)
    train: TrainConfig = _sub(TrainConfig)
    eval: EvalConfig = _sub(EvalConfig)
    grid: GridConfig = _sub(GridConfig)
    llava: LlavaConfig = _sub(LlavaConfig)

    def __post_init__(self):
        if not self.name or not self.name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"name: {self.name!r} must be a non-empty [A-Za-z0-9_-] word")
        side, k = self.encoders.vq.side, self.model.vq_merge
        if side % k:
            raise ConfigError(f"model.vq_merge: {k} does not divide the VQ's {side} x {side} "
                              f"codes (encoders.vq.image_size / 2 ** (len(ch_mult) - 1))")

    @property
    def root(self) -> Path:
        """All outputs of this config live here."""
        from uvlm.paths import results_root

        return results_root(self.name)

    def hash(self) -> str:
        """Stable hash of the resolved config (provenance)."""
        return hashlib.sha256(json.dumps(to_dict(self), sort_keys=True).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- loading

def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def _check(value: Any, tp: Any, key: str, meta: dict) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return _build(tp, value, key)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{key}: {value!r} is not allowed; allowed values: "
                              + ", ".join(repr(a) for a in allowed))
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp)
        return [_check(v, item, f"{key}[{i}]", meta) for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        raise TypeError("unions are not used in configs")
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, int | float) and not isinstance(value, bool),
        str: isinstance(value, str),
    }[tp]
    if not ok:
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if tp is float:
        value = float(value)
        if not math.isfinite(value):  # NaN compares false with every bound, so say it here
            raise ConfigError(f"{key}: {value!r} is not allowed; allowed: a finite number")
    lo, hi = meta.get("min"), meta.get("max")
    if tp in (int, float) and ((lo is not None and value < lo) or (hi is not None and value > hi)):
        raise ConfigError(f"{key}: {value!r} is out of range; allowed: "
                          f"[{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]")
    return value


def _build(cls: type, raw: dict, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(f"unknown key {where}{unknown[0]!s}; allowed keys"
                          f"{' under ' + prefix if prefix else ''}: {', '.join(fields)}")
    kwargs = {}
    for name, f in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        if name in raw:
            kwargs[name] = _check(raw[name], hints[name], key, dict(f.metadata))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{key}: required key is missing")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:  # pragma: no cover - defensive
        raise ConfigError(f"{prefix or 'config'}: {e}") from e


def from_dict(raw: dict, source: str = "config") -> Config:
    """Build a validated Config; errors are prefixed with ``source`` (a file name)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: top level must be a mapping")
    try:
        return _build(Config, raw)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing duplicate keys (it keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


# YAML 1.1 (PyYAML) reads 1e-3 as a string, since its floats need a dot; YAML 1.2 and every
# user read it as a number, so the config and `--set train.lr=6e-3` take it as a float.
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def _yaml_error(where: str, e: yaml.YAMLError) -> ConfigError:
    """One line: where, line and what is wrong (PyYAML's own message spans several)."""
    mark = getattr(e, "problem_mark", None)
    line = f":{mark.line + 1}" if mark is not None else ""
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    return ConfigError(f"{where}{line}: not valid YAML: {problem}")


def read_yaml(path: str | Path) -> Any:
    """A YAML config file, refusing duplicate keys; errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        return yaml.load(path.read_text(), Loader=_StrictLoader)
    except yaml.YAMLError as e:
        raise _yaml_error(str(path), e) from None


def _set_dotted(raw: dict, dotted: str) -> None:
    if "=" not in dotted:
        raise ConfigError(f"override {dotted!r}: expected key=value")
    key, value = dotted.split("=", 1)
    node = raw
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted!r}: {p} is not a mapping")
    try:
        node[parts[-1]] = yaml.load(value, Loader=_StrictLoader)
    except yaml.YAMLError as e:
        raise _yaml_error(f"override {dotted!r}", e) from None


def load(path: str | Path, overrides: list[str] = ()) -> Config:
    """Load a YAML config and apply ``a.b=value`` overrides (values parsed as YAML)."""
    raw = read_yaml(path) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    for o in overrides:
        _set_dotted(raw, o)
    return from_dict(raw, str(path))


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


# --------------------------------------------------------------------------- schema

def _schema(tp: Any, meta: dict) -> dict:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        props, required = {}, []
        for f in dataclasses.fields(tp):
            props[f.name] = _schema(hints[f.name], dict(f.metadata))
            if f.metadata.get("doc"):
                props[f.name]["description"] = f.metadata["doc"]
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                required.append(f.name)
        out = {"type": "object", "additionalProperties": False, "properties": props}
        if required:
            out["required"] = required
        return out
    if origin is Literal:
        return {"enum": list(typing.get_args(tp))}
    if origin is list:
        return {"type": "array", "items": _schema(typing.get_args(tp)[0], meta)}
    out = {"type": {bool: "boolean", int: "integer", float: "number", str: "string"}[tp]}
    if tp in (int, float):
        if meta.get("min") is not None:
            out["minimum"] = meta["min"]
        if meta.get("max") is not None:
            out["maximum"] = meta["max"]
    return out


def json_schema() -> dict:
    """The JSON schema (draft 2020-12) equivalent of ``Config``."""
    s = _schema(Config, {})
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "description": "uvlm config; generated by `python -m uvlm config-schema`", **s}
