"""`python -m uvlm llava-data --config C [--only NAME]`: the LLaVA experiment's training JSONs.

docs/paper.md §5 (the authors' caption-to-image-generation.ipynb): every ShareGPT4V caption whose
image is not from SAM becomes a text-to-image sample. Its human turn is one of three openers
followed by the caption, its answer one of three sentences ending in "<image>", its image the
generation target. A seeded permutation of the samples gives two disjoint pools: the first
``llava.pretrain_generation`` go into stage 1 (``R/data/pretrain.json``, after the 558k
LLaVA pretraining records), the next ``max(llava.sft_generation)`` into stage 2
(``R/data/sft-gen-{N}.json``, after the 665k LLaVA SFT records, for each amount N). The file
with N samples takes the first N of the SFT pool, so a smaller amount is a subset of a larger.

Deviation: this follows the HEAD notebook, which splits one 350k list into 150k + 200k. The
executed notebook took ``[:150000]`` and ``[:200000]`` of the same list, so its two stages
shared 150k generation samples.

Image paths in the output are relative to ``llava.image_folder``: those of the pretraining
JSON (relative to LLaVA's pretraining image folder) get ``llava.pretrain_image_folder`` in
front. Same config, same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

from uvlm import UvlmError
from uvlm.cli import command_parser, parse_command
from uvlm.config import Config, ConfigError
from uvlm.data.tasks import GENERATION_ANSWERS
from uvlm.llava import data_file, data_names
from uvlm.utils import rng, write_json

#: docs/paper.md §5; the caption follows the opener
OPENERS = ("Can you generate a image of the following: ",
           "Can you draw a image of the following: ",
           "Please show a image of the following: ")
#: the answers: docs/paper.md §5 gives their shape ("...\n<image>") but not their words, so
#: these are the authors' smart-watch generation answers (uvlm.data.tasks), ending in
#: "\n<image>"
ANSWERS = GENERATION_ANSWERS
#: first folder of the ShareGPT4V images that are left out (the authors skip SAM's)
SKIPPED_FOLDERS = ("sam",)


def read_llava_json(path: str | Path, key: str) -> list[dict]:
    """The LLaVA-format JSON at ``path`` (config key ``llava.<key>``): records with
    conversations."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"llava.{key}: {path} not found; download it (README, "
                                f"\"LLaVA experiment\") or point the config at it")
    try:
        records = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UvlmError(f"llava.{key}: {path} is not valid JSON ({e})") from None
    if not isinstance(records, list):
        raise UvlmError(f"llava.{key}: {path} must hold a list of records")
    for i, r in enumerate(records):
        if not isinstance(r, dict) or not isinstance(r.get("conversations"), list):
            raise UvlmError(f"llava.{key}: {path} record {i} has no conversations list")
    return records


def captions(records: list[dict], source: str) -> list[tuple[int, str, str]]:
    """(index, image, caption) of every ShareGPT4V record outside ``SKIPPED_FOLDERS``."""
    out = []
    for i, r in enumerate(records):
        image, conv = r.get("image"), r["conversations"]
        if not isinstance(image, str) or len(conv) < 2 or conv[1].get("from") != "gpt":
            raise ValueError(f"{source}: record {i} needs an image and a gpt caption turn")
        if image.split("/", 1)[0] not in SKIPPED_FOLDERS:
            out.append((i, image, conv[1]["value"]))
    return out


def generation_pools(cfg: Config, samples: list[tuple[int, str, str]]):
    """(stage-1 pool, stage-2 pool) of generation records, disjoint, in a seeded order."""
    ll = cfg.llava
    need = ll.pretrain_generation + max(ll.sft_generation)
    if len(samples) < need:
        raise ConfigError(f"llava: {len(samples)} ShareGPT4V captions outside "
                          f"{'/'.join(SKIPPED_FOLDERS)}, but pretrain_generation + "
                          f"max(sft_generation) = {need} are asked for")
    g = rng(cfg.seed, "llava", "generation")
    order = g.permutation(len(samples))[:need]
    # drawn for the whole ordered list, so a sample's prompt is the same in every file
    opener, answer = g.integers(len(OPENERS), size=need), g.integers(len(ANSWERS), size=need)
    pool = []
    for k, j in enumerate(order):
        i, image, caption = samples[j]
        pool.append({"id": f"t2i-{i:07d}", "image": image, "conversations": [
            {"from": "human", "value": OPENERS[opener[k]] + caption},
            {"from": "gpt", "value": ANSWERS[answer[k]]}]})
    return pool[:ll.pretrain_generation], pool[ll.pretrain_generation:]


def build(cfg: Config, name: str, pools: tuple[list, list], llava_records: list[dict]):
    """The records of one output file: LLaVA's own records, then the generation samples."""
    pretrain, sft = pools
    if name == "pretrain":
        folder = cfg.llava.pretrain_image_folder.rstrip("/")
        own = [r | {"image": f"{folder}/{r['image']}"} if "image" in r else r
               for r in llava_records]
        return own + pretrain
    return llava_records + sft[:int(name.removeprefix("sft-gen-"))]


def main(argv: list[str]) -> None:
    p = command_parser("uvlm llava-data", __doc__.split("\n")[0])
    p.add_argument("--only", help="one file: pretrain or sft-gen-N (default: every file)")
    args, cfg = parse_command(p, argv)
    names = data_names(cfg)
    if args.only is not None and args.only not in names:
        raise SystemExit(f"uvlm llava-data: --only {args.only!r}; this config writes "
                         f"{', '.join(names)}")
    names = names if args.only is None else [args.only]
    ll = cfg.llava
    sharegpt4v = read_llava_json(ll.sharegpt4v_json, "sharegpt4v_json")
    samples = captions(sharegpt4v, ll.sharegpt4v_json)
    print(f"llava-data: {len(samples)} ShareGPT4V captions, "
          f"{len(sharegpt4v) - len(samples)} {'/'.join(SKIPPED_FOLDERS)} images left out")
    pools = generation_pools(cfg, samples)
    del sharegpt4v, samples
    sources = {"pretrain": (ll.pretrain_json, "pretrain_json"), "sft": (ll.sft_json, "sft_json")}
    for stage, (path, key) in sources.items():
        wanted = [n for n in names if n.split("-")[0] == stage]
        if not wanted:
            continue
        llava_records = read_llava_json(path, key)
        for name in wanted:
            records = build(cfg, name, pools, llava_records)
            write_json(data_file(cfg, name), records)
            print(f"llava-data: {data_file(cfg, name)}: {len(llava_records)} LLaVA records + "
                  f"{len(records) - len(llava_records)} generation samples")
