"""Conversation layout, tokenization and batches.

A records file is tokenized ONCE into padded tensors (``Encoded``); a batch is then an
index-select of rows plus a lookup of their image features, with no per-sample Python.

Layout (vicuna_v1, as the paper's LLaVA fork builds it), one image per record:

    <s>{system} USER: [und slots]\\n{q1} ASSISTANT: {a1}</s>USER: {q2} ASSISTANT: {a2}</s>
    <s>{system} USER: {prompt} ASSISTANT: {text}<image>[gen slots]</s>

A ``text`` record (LLaVA's text-only conversations) has no image at all.
Pieces are tokenized separately and concatenated (as LLaVA's ``tokenizer_image_token``
splits on ``<image>``), so a prompt built for inference tokenizes exactly as in training.
Supervised text = every assistant piece (answers, the "<image>" marker, the closing </s>);
prompts and image slots are not.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from uvlm.config import Config
from uvlm.encoders.space import Space
from uvlm.model.unified import Batch, ModelContext

IMAGE = "<image>"
#: the vicuna_v1 role markers around each human turn (the answer follows ASSISTANT)
USER, ASSISTANT = "USER: ", " ASSISTANT:"
UND_TASKS = ("vqa", "caption")
GEN_TASKS = ("generation",)
TEXT_TASKS = ("text",)  # no image (LLaVA's SFT data has some); trained as understanding data
MODE_TASKS = {"mixed": UND_TASKS + TEXT_TASKS + GEN_TASKS, "und": UND_TASKS + TEXT_TASKS,
              "gen": GEN_TASKS}


@dataclass(frozen=True)
class Prompt:
    """An inference prompt: token ids ending in "ASSISTANT:", and its image slot (if any)."""

    ids: list[int]
    slot: int | None  # first understanding slot; None for text-only (generation) prompts


@dataclass
class Encoded:
    """A records file as padded tensors (N records, L = longest sequence)."""

    ids: torch.Tensor  # (N, L) int32, pad id after the end and in image slots
    targets: torch.Tensor  # (N, L) bool, supervised text tokens
    length: torch.Tensor  # (N,) int64
    slot: torch.Tensor  # (N,) int64, first image slot (0 for text records)
    gen: torch.Tensor  # (N,) bool, generation record (else understanding)
    text: torch.Tensor  # (N,) bool, text-only record (no image)
    split: torch.Tensor  # (N,) int64 index into ``splits``
    image: torch.Tensor  # (N,) int64 image id within its split
    splits: list[str]
    record_ids: list[str]


class Template:
    """The vicuna_v1 template over one tokenizer; ``encode`` for training, ``prompt`` for
    inference."""

    def __init__(self, tokenizer, system: str, und_tokens: int, gen_tokens: int,
                 max_length: int):
        if tokenizer.eos_token_id is None:
            raise ValueError("tokenizer: needs an eos token (the vicuna_v1 turn separator)")
        self.tokenizer, self.system, self.max_length = tokenizer, system, max_length
        self.und_tokens, self.gen_tokens = und_tokens, gen_tokens
        self.bos = [] if tokenizer.bos_token_id is None else [tokenizer.bos_token_id]
        self.eos = tokenizer.eos_token_id
        self.pad = self.eos if tokenizer.pad_token_id is None else tokenizer.pad_token_id
        # the text tokens of "<image>": the "generate now" marker the model learns to emit
        self.marker = self._tokenize([IMAGE])[0]

    @classmethod
    def of(cls, cfg: Config, ctx: ModelContext) -> Template:
        """The template of a model: the config's system prompt and length limit, the
        context's tokenizer and slot counts (merged VQ blocks count one slot each)."""
        return cls(ctx.tokenizer, cfg.model.system_prompt, ctx.und_tokens, ctx.gen_tokens,
                   cfg.model.llm.max_length)

    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"]

    def _segments(self, record: dict, upto_turn: int | None = None) -> list[tuple]:
        """A record as (kind, payload, supervised) pieces; kinds: text, ids, und, gen.

        With ``upto_turn`` the pieces stop after that turn's question (an inference prompt).
        """
        rid, conv = record.get("id", "?"), record["conversations"]
        roles = [t["from"] for t in conv]
        if len(conv) < 2 or len(conv) % 2 or roles != ["human", "gpt"] * (len(conv) // 2):
            raise ValueError(f"record {rid}: conversations must alternate human/gpt, got {roles}")
        gen = record["task"] in GEN_TASKS
        und_image = record["task"] in UND_TASKS
        out: list[tuple] = [("ids", self.bos, False)]
        for turn in range(len(conv) // 2):
            q, a = conv[2 * turn]["value"], conv[2 * turn + 1]["value"]
            head = f"{self.system} {USER}" if self.system and turn == 0 else USER
            q_parts = (head + q + ASSISTANT).split(IMAGE)
            want = 2 if turn == 0 and und_image else 1
            if len(q_parts) != want:
                raise ValueError(f"record {rid}: turn {turn} question has {len(q_parts) - 1} "
                                 f"{IMAGE} placeholders, expected {want - 1}")
            out.append(("text", q_parts[0], False))
            if want == 2:
                out += [("und", None, False), ("text", q_parts[1], False)]
            if turn == upto_turn:
                return out
            a_parts = (" " + a).split(IMAGE)
            if (len(a_parts) == 2) != gen or (gen and (turn or a_parts[1].strip())):
                raise ValueError(f"record {rid}: task {record['task']!r} answer {a!r}; only a "
                                 f"generation answer has {IMAGE}, once, at its end")
            out.append(("text", a_parts[0], True))
            if gen:
                out += [("ids", self.marker, True), ("gen", None, False)]
            out.append(("ids", [self.eos], True))
        if upto_turn is not None:
            raise ValueError(f"record {rid}: has no turn {upto_turn}")
        return out

    def _assemble(self, segments: list[tuple], table: dict[str, list[int]]):
        ids: list[int] = []
        sup: list[bool] = []
        slot = None
        for kind, payload, supervised in segments:
            if kind in ("und", "gen"):
                slot = len(ids)
                n = self.und_tokens if kind == "und" else self.gen_tokens
                ids += [self.pad] * n
                sup += [False] * n
            else:
                piece = table[payload] if kind == "text" else payload
                ids += piece
                sup += [supervised] * len(piece)
        return ids, sup, slot

    def _table(self, all_segments: list[list[tuple]]) -> dict[str, list[int]]:
        texts = sorted({p for segs in all_segments for k, p, _ in segs if k == "text"})
        return dict(zip(texts, self._tokenize(texts), strict=True))

    def encode(self, records: list[dict], drop_long: bool = False) -> Encoded:
        """Tokenize records (each: id, task, split, image_id, conversations) once.

        A record longer than ``max_length`` raises, or with ``drop_long`` is left out.
        """
        segments = [self._segments(r) for r in records]
        table = self._table(segments)
        rows = [self._assemble(s, table) for s in segments]
        too_long = [(r["id"], len(ids)) for r, (ids, _, _) in zip(records, rows, strict=True)
                    if len(ids) > self.max_length]
        if too_long and not drop_long:
            raise ValueError(f"record {too_long[0][0]}: {too_long[0][1]} tokens exceed "
                             f"model.llm.max_length={self.max_length} ({len(too_long)} records)")
        if too_long:
            kept = [(r, row) for r, row in zip(records, rows, strict=True)
                    if len(row[0]) <= self.max_length]
            records, rows = [r for r, _ in kept], [row for _, row in kept]
        n, width = len(rows), max(len(ids) for ids, _, _ in rows)
        ids = torch.full((n, width), self.pad, dtype=torch.int32)
        targets = torch.zeros((n, width), dtype=torch.bool)
        for i, (row_ids, row_sup, _) in enumerate(rows):
            ids[i, : len(row_ids)] = torch.tensor(row_ids, dtype=torch.int32)
            targets[i, : len(row_sup)] = torch.tensor(row_sup)
        splits = sorted({r["split"] for r in records})
        return Encoded(
            ids=ids, targets=targets,
            length=torch.tensor([len(r[0]) for r in rows]),
            slot=torch.tensor([0 if r[2] is None else r[2] for r in rows]),
            gen=torch.tensor([r["task"] in GEN_TASKS for r in records]),
            text=torch.tensor([r["task"] in TEXT_TASKS for r in records], dtype=torch.bool),
            split=torch.tensor([splits.index(r["split"]) for r in records]),
            image=torch.tensor([int(r["image_id"]) for r in records]),
            splits=splits, record_ids=[r["id"] for r in records])

    def prompt(self, record: dict, turn: int = 0) -> Prompt:
        """The prompt for ``turn`` (earlier turns with their reference answers)."""
        segments = self._segments(record, upto_turn=turn)
        ids, _, slot = self._assemble(segments, self._table([segments]))
        return Prompt(ids, slot)


def rendered_turns(records: list[dict]) -> list[str]:
    """Every turn of ``records`` as the template writes it (role markers included, image
    slots left out): the text a tiny tokenizer is fitted on, so " ASSISTANT:" is two tokens
    instead of eleven."""
    out = []
    for r in records:
        conv = r["conversations"]
        for q, a in zip(conv[::2], conv[1::2], strict=True):
            out += [USER + q["value"] + ASSISTANT, " " + a["value"]]
    return out


class FeatureTable:
    """The feature rows of several splits end to end: ``table[rows]`` gathers (R, T, D)
    float32 features or (R, T) int64 codes.

    A part is an in-memory tensor or a ``uvlm.encoders.rows.FeatureFile`` (read lazily,
    stored in bf16, fp16 or fp32); only the gathered rows are read and converted.
    """

    def __init__(self, parts: list, shape: tuple[int, ...], dtype: torch.dtype):
        self.parts, self.shape, self.dtype = parts, shape, dtype
        self.starts = [sum(len(p) for p in parts[:i]) for i in range(len(parts))]

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)

    def __getitem__(self, rows: torch.Tensor) -> torch.Tensor:
        if len(self.parts) == 1:
            return self.parts[0][rows].to(self.dtype)
        out = torch.empty((len(rows), *self.shape), dtype=self.dtype)
        for part, start in zip(self.parts, self.starts, strict=True):
            mine = (rows >= start) & (rows < start + len(part))
            if mine.any():
                out[mine] = part[rows[mine] - start].to(self.dtype)
        return out


class Batcher:
    """Batches of an ``Encoded`` file: rows by index, images from per-space feature tables.

    ``features[space][split]`` is ``(N_images, T, D)`` float features (a tensor, or a
    ``FeatureFile`` read row by row, of bf16, fp16 or fp32 features) for a continuous space and
    ``(N_images, T)`` int64 codes for a vq space; only the spaces and splits the records use
    are needed. A batch's features are gathered and converted to float32 when it is built.
    """

    def __init__(self, enc: Encoded, features: dict[str, dict], und: Space, gen: Space):
        self.enc, self.gen_tokens = enc, gen.num_tokens
        row = torch.zeros_like(enc.image)
        self.und_table = self._table(enc, ~enc.gen & ~enc.text, features, und, row)
        self.gen_table = self._table(enc, enc.gen, features, gen, row)
        self.row = row  # (N,) row of each record's image in its space's table

    @staticmethod
    def _table(enc: Encoded, use: torch.Tensor, features, space: Space,
               row: torch.Tensor) -> FeatureTable:
        shape = (space.num_tokens,) + ((space.feature_dim,) if space.kind == "continuous" else ())
        continuous = space.kind == "continuous"
        dtype = torch.float32 if continuous else torch.int64
        parts, offset = [], 0
        for s, split in enumerate(enc.splits):
            mine = use & (enc.split == s)
            if not mine.any():
                continue
            if split not in features.get(space.name, {}):
                raise FileNotFoundError(f"features of space {space.name!r}, split {split!r} "
                                        f"are needed by {int(mine.sum())} records")
            t = features[space.name][split]
            if tuple(t.shape[1:]) != shape or t.dtype.is_floating_point != continuous:
                raise ValueError(f"features {space.name}_{split}: shape {tuple(t.shape)} "
                                 f"{t.dtype}, expected (N, {', '.join(map(str, shape))}) {dtype}")
            bad = mine & (enc.image >= len(t))
            if bad.any():
                i = int(bad.nonzero()[0, 0])
                raise ValueError(f"record {enc.record_ids[i]}: image {int(enc.image[i])} is "
                                 f"beyond the {len(t)} rows of features {space.name}_{split}")
            row[mine] = enc.image[mine] + offset
            parts.append(t)
            offset += len(t)
        return FeatureTable(parts or [torch.zeros((0, *shape), dtype=dtype)], shape, dtype)

    def __len__(self) -> int:
        return len(self.enc.ids)

    def und_images(self, idx: torch.Tensor) -> torch.Tensor:
        """Understanding images of records ``idx`` (U,): (U, T, D) features or (U, T) codes."""
        return self.und_table[self.row[idx]]

    def gen_images(self, idx: torch.Tensor) -> torch.Tensor:
        """Generation targets of records ``idx`` (G,): (G, T, D) features or (G, T) codes."""
        return self.gen_table[self.row[idx]]

    def batch(self, idx: torch.Tensor) -> Batch:
        """Rows ``idx`` (b,) as a batch trimmed to its longest sequence."""
        enc = self.enc
        length = enc.length[idx]
        L = int(length.max())
        gen = enc.gen[idx]
        und_rows, gen_rows = (~gen & ~enc.text[idx]).nonzero()[:, 0], gen.nonzero()[:, 0]
        return Batch(
            ids=enc.ids[idx, :L].long(),
            attention=torch.arange(L) < length[:, None],
            targets=enc.targets[idx, :L],
            und_rows=und_rows, und_slot=enc.slot[idx][und_rows],
            und_input=self.und_images(idx[und_rows]),
            gen_rows=gen_rows, gen_slot=enc.slot[idx][gen_rows],
            gen_target=self.gen_images(idx[gen_rows]))

    def counts(self, idx: torch.Tensor) -> tuple[int, int]:
        """(supervised text tokens, image tokens) of rows ``idx``, as ``LossParts`` counts."""
        return (int(self.enc.targets[idx, 1:].sum()),
                int(self.enc.gen[idx].sum()) * self.gen_tokens)

    def tokens(self, idx: torch.Tensor) -> int:
        """Sequence positions (text + image slots) of rows ``idx``."""
        return int(self.enc.length[idx].sum())
