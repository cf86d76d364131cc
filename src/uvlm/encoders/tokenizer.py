"""`python -m uvlm encoders-tokenizer --config C`: the LLM's tokenizer, in R/encoders/tokenizer/.

* ``tokenizer.source: train`` (tiny scales): a byte-level BPE fitted with the ``tokenizers``
  library on every turn of every train record as the chat template writes it (questions with
  their ``USER:``/``ASSISTANT:`` markers, answers, captions, prompts and the ``<image>``
  marker text, which BPE learns like any other word), ``vocab_size`` entries
  including the special tokens ``<unk> <s> </s> <pad>`` (ids 0-3). Like Llama's tokenizer it
  prepends ``<s>`` to every encoded text. Byte-level means every string round-trips; ``<unk>``
  exists for parity with Llama and never occurs.
* ``tokenizer.source: pretrained``: ``AutoTokenizer.from_pretrained(model.llm.path)``. A
  tokenizer without a pad token (Vicuna's) gets ``<unk>`` as pad, as LLaVA's training does.

Either way the result is ``save_pretrained`` output that ``load_tokenizer`` reads back.
Training is deterministic: the same records give byte-identical files.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from uvlm import paths, provenance
from uvlm.cli import command_parser, parse_command
from uvlm.config import Config
from uvlm.data.records import load_records
from uvlm.encoders.common import atomic_dir
from uvlm.model.batching import rendered_turns

SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "<pad>")
#: the smallest byte-level vocabulary: 256 byte symbols plus the special tokens
MIN_VOCAB = 256 + len(SPECIAL_TOKENS)


def train_bpe(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE with ``vocab_size`` entries (<unk>=0, <s>=1, </s>=2, <pad>=3)."""
    if vocab_size < MIN_VOCAB:
        raise ValueError(f"encoders.tokenizer.vocab_size={vocab_size}: a byte-level BPE needs "
                         f"at least {MIN_VOCAB} (256 bytes + {len(SPECIAL_TOKENS)} specials)")
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    bpe.train_from_iterator(texts, trainer)
    bos = SPECIAL_TOKENS[1]
    bpe.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bpe.token_to_id(bos))])
    return PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>", pad_token="<pad>")


def pretrained_tokenizer(path: str) -> PreTrainedTokenizerFast:
    try:
        tok = AutoTokenizer.from_pretrained(path)
    except OSError as e:
        raise FileNotFoundError(f"model.llm.path={path}: cannot load its tokenizer ({e})") from None
    if tok.pad_token is None:
        tok.pad_token = tok.unk_token
    return tok


def save_tokenizer(tok: PreTrainedTokenizerFast, out_dir: Path) -> None:
    """``save_pretrained`` into a scratch folder renamed over ``out_dir`` when complete."""
    with atomic_dir(out_dir) as tmp:
        tok.save_pretrained(tmp)


def build_tokenizer(cfg: Config) -> PreTrainedTokenizerFast:
    if cfg.encoders.tokenizer.source == "pretrained":
        return pretrained_tokenizer(cfg.model.llm.path)
    records = load_records(paths.data_file(cfg, "train"))
    return train_bpe(rendered_turns(records), cfg.encoders.tokenizer.vocab_size)


def main(argv: list[str]) -> None:
    p = command_parser("uvlm encoders-tokenizer", __doc__.split("\n")[0])
    args, cfg = parse_command(p, argv)
    start = time.perf_counter()
    tok = build_tokenizer(cfg)
    out = paths.encoder_dir(cfg, "tokenizer")
    save_tokenizer(tok, out)
    provenance.write(cfg, "encoders-tokenizer")
    print(f"encoders-tokenizer ({cfg.encoders.tokenizer.source}): {len(tok)} tokens -> {out} "
          f"in {time.perf_counter() - start:.1f} s")
