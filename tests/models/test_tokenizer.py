"""The tokenizer wrapper against transformers' own tokenizer for all-MiniLM-L6-v2."""

from __future__ import annotations

import shutil

import pytest
import tokenizers
import torch

from kexue.models import Tokenizer
from kexue.models.tokenizer import pad_encodings

transformers = pytest.importorskip("transformers")

TEXTS = ["A man is playing a guitar.", "Ünïcödé and 中文 text, with punctuation!!", "", "x " * 300]
PAIRS = ["A woman plays the violin.", "short", "nothing on the left", "y"]


@pytest.fixture(scope="module")
def hf_tok(minilm_dir):
    return transformers.AutoTokenizer.from_pretrained(minilm_dir)


def _check(ours: dict, theirs) -> None:
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert torch.equal(ours[key], theirs[key]), key


def test_single_texts_match(minilm_tokenizer, hf_tok):
    ours = minilm_tokenizer(TEXTS, max_length=128)
    _check(ours, hf_tok(TEXTS, padding=True, truncation=True, max_length=128, return_tensors="pt"))
    assert ours["input_ids"].shape[1] == 128  # the long text was cut to max_length


def test_pairs_match(minilm_tokenizer, hf_tok):
    ours = minilm_tokenizer(TEXTS, PAIRS, max_length=64)
    _check(ours, hf_tok(TEXTS, PAIRS, padding=True, truncation="longest_first", max_length=64,
                        return_tensors="pt"))
    assert ours["token_type_ids"].max() == 1


def test_default_max_length_is_sentence_transformers(minilm_tokenizer):
    assert minilm_tokenizer.max_length == 256
    assert minilm_tokenizer(["x " * 1000])["input_ids"].shape[1] == 256


def test_no_truncation_raises_naming_the_text(minilm_tokenizer):
    with pytest.raises(ValueError, match=r"expected at most max_length=100 tokens per text, got \d+ in text 3"):
        minilm_tokenizer(TEXTS, max_length=100, truncation=False)


def test_decode_round_trip(minilm_tokenizer, hf_tok):
    enc = minilm_tokenizer(TEXTS[:2])
    assert minilm_tokenizer.decode_batch(enc["input_ids"]) == hf_tok.batch_decode(enc["input_ids"],
                                                                                   skip_special_tokens=True)
    assert minilm_tokenizer.decode(enc["input_ids"][0]) == "a man is playing a guitar."


def test_vocab_txt_fallback(tmp_path, minilm_dir, minilm_tokenizer):
    for name in ("vocab.txt", "tokenizer_config.json"):
        shutil.copy(minilm_dir / name, tmp_path / name)
    tok = Tokenizer.from_pretrained(tmp_path)
    assert tok.max_length == 512  # from tokenizer_config.json's model_max_length
    _check(tok(TEXTS[:3], PAIRS[:3]), minilm_tokenizer(TEXTS[:3], PAIRS[:3]))


def test_bad_input(minilm_tokenizer, tmp_path):
    with pytest.raises(TypeError, match="single str"):
        minilm_tokenizer("one text")
    with pytest.raises(ValueError, match=r"expected as many pairs as texts \(2\), got 1 pairs"):
        minilm_tokenizer(["a", "b"], ["c"])
    with pytest.raises(FileNotFoundError, match="expected tokenizer.json or vocab.txt in .*, found neither"):
        Tokenizer.from_pretrained(tmp_path)


def test_pad_encodings_match_data_collator_with_padding(minilm_tokenizer, hf_tok):
    encs = minilm_tokenizer.encode_raw(TEXTS, PAIRS, max_length=64)
    ours = pad_encodings(encs, minilm_tokenizer.pad_token_id)
    features = [{"input_ids": e.ids, "token_type_ids": e.type_ids, "attention_mask": e.attention_mask} for e in encs]
    theirs = transformers.DataCollatorWithPadding(hf_tok, return_tensors="pt")(features)
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert ours[key].dtype == torch.int64
        assert torch.equal(ours[key], theirs[key]), key
    assert torch.equal(minilm_tokenizer.collate(encs)["input_ids"], ours["input_ids"])


def test_pad_encodings_match_the_tokenizers_own_padding(minilm_dir):
    tok = tokenizers.Tokenizer.from_file(str(minilm_dir / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    encs = tok.encode_batch(list(zip(TEXTS, PAIRS, strict=True)))
    tok.enable_padding(pad_id=5, pad_type_id=0, pad_token="[unused5]")  # a padding id that is not 0
    padded = tok.encode_batch(list(zip(TEXTS, PAIRS, strict=True)))
    ours = pad_encodings(encs, 5)
    assert torch.equal(ours["input_ids"], torch.tensor([e.ids for e in padded]))
    assert torch.equal(ours["attention_mask"], torch.tensor([e.attention_mask for e in padded]))
    assert torch.equal(ours["token_type_ids"], torch.tensor([e.type_ids for e in padded]))
    assert set(pad_encodings(encs, 5, with_types=False)) == {"input_ids", "attention_mask"}
