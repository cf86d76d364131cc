"""The tiny-scale BPE tokenizer: deterministic, lossless, Llama-like special tokens."""

import pytest
from transformers import AutoTokenizer

from uvlm.encoders.tokenizer import MIN_VOCAB, save_tokenizer, train_bpe
from uvlm.model.batching import rendered_turns

TEXTS = [
    "<image>\nWhat time is it on the watch?", "03:15:42",
    "Can you draw a smart watch, with the time 11:02:09, showing sunny weather.",
    "The image is generated. \n<image>", "<image>\nWhere is the battery?", "bottom-left",
    "The image shows a smart watch, with 57% battery, with the weather in the top-right corner.",
] * 20


def test_training_twice_gives_identical_files(tmp_path):
    for name in ("a", "b"):
        save_tokenizer(train_bpe(TEXTS, 300), tmp_path / name)
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert "tokenizer.json" in files
    assert files == sorted(p.name for p in (tmp_path / "b").iterdir())
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_saved_tokenizer_round_trips_any_text(tmp_path):
    save_tokenizer(train_bpe(TEXTS, 300), tmp_path / "tok")
    tok = AutoTokenizer.from_pretrained(tmp_path / "tok")
    assert len(tok) == 300
    assert [tok.unk_token_id, tok.bos_token_id, tok.eos_token_id, tok.pad_token_id] == [0, 1, 2, 3]
    for text in [*TEXTS[:7], "unseen: Zürich ☀ 99%\t\n  spaces", ""]:
        ids = tok(text).input_ids
        assert ids[0] == tok.bos_token_id  # prepended like Llama's tokenizer
        assert tok.decode(ids, skip_special_tokens=True) == text
    assert tok.unk_token_id not in tok("ünïcödé ✓").input_ids


def test_vocabulary_below_the_byte_alphabet_is_refused():
    with pytest.raises(ValueError, match=f"vocab_size=256: a byte-level BPE needs at least "
                                         f"{MIN_VOCAB}"):
        train_bpe(TEXTS, 256)


def test_rendered_turns_take_every_turn_in_order_with_the_role_markers():
    records = [{"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]},
               {"conversations": [{"from": "human", "value": "c"}, {"from": "gpt", "value": "d"}]}]
    assert rendered_turns(records) == ["USER: a ASSISTANT:", " b", "USER: c ASSISTANT:", " d"]


def test_role_markers_become_single_tokens_when_fitted_on_rendered_turns():
    records = [{"conversations": [{"from": "human", "value": TEXTS[i]},
                                  {"from": "gpt", "value": TEXTS[i + 1]}]}
               for i in range(0, len(TEXTS) - 1, 2)]
    tok = train_bpe(rendered_turns(records), 400)
    # the byte-level pre-tokenizer splits punctuation off, so each marker is a word and ":"
    assert len(tok(" ASSISTANT:", add_special_tokens=False).input_ids) == 2
    assert len(tok("USER:", add_special_tokens=False).input_ids) == 2
