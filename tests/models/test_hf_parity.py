"""Parity with transformers: random BERT/RoBERTa checkpoints and all-MiniLM-L6-v2, loaded into kexue."""

from __future__ import annotations

import json

import pytest
import torch

from kexue.models import Transformer, TransformerConfig, load_pretrained, save_pretrained

transformers = pytest.importorskip("transformers")

ATOL = 1e-5


def _batch(vocab: int, pad: int, type_vocab: int, seed: int = 0, lengths=(11, 7, 3, 11)):
    g = torch.Generator().manual_seed(seed)
    b, t = len(lengths), max(lengths)
    ids = torch.randint(pad + 1 if pad < 3 else 3, vocab, (b, t), generator=g)
    mask = torch.zeros(b, t, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    ids = ids.masked_fill(mask == 0, pad)
    types = torch.randint(0, max(type_vocab, 1), (b, t), generator=g) * mask
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


BERT_CONFIGS = {
    # odd sizes: 3 heads of 32, 5 layers, 4 token types
    "odd": dict(vocab_size=301, hidden_size=96, num_hidden_layers=5, num_attention_heads=3, intermediate_size=170,
                type_vocab_size=4, max_position_embeddings=40, hidden_act="gelu"),
    "tanh-gelu": dict(vocab_size=257, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=128, type_vocab_size=2, max_position_embeddings=32, hidden_act="gelu_new"),
    "relu-eps": dict(vocab_size=200, hidden_size=48, num_hidden_layers=3, num_attention_heads=6,
                     intermediate_size=100, type_vocab_size=1, max_position_embeddings=24, hidden_act="relu",
                     layer_norm_eps=1e-5),
}

BERT_CLASSES = ["BertModel", "BertForPreTraining", "BertForMaskedLM", "BertForNextSentencePrediction"]


def _hf_bert(name: str, cls_name: str, seed: int = 0):
    torch.manual_seed(seed)
    cfg = transformers.BertConfig(**BERT_CONFIGS[name], attn_implementation="sdpa")
    model = getattr(transformers, cls_name)(cfg).eval()
    with torch.no_grad():  # make LayerNorms and biases non-trivial so a swapped table entry cannot hide
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


def _compare(kx, hf_out, batch, cls_name: str, family: str = "bert"):
    with torch.no_grad():
        out = kx(**batch, output_hidden_states=True)
    base = hf_out
    if cls_name in ("BertModel", "RobertaModel"):
        last = base.last_hidden_state
        hidden = base.hidden_states
    else:
        hidden = base.hidden_states
        last = hidden[-1]
    assert (out.last_hidden_state - last).abs().max().item() <= ATOL
    assert len(out.hidden_states) == len(hidden)
    for a, b in zip(out.hidden_states, hidden):
        assert (a - b).abs().max().item() <= ATOL
    if cls_name in ("BertModel", "RobertaModel"):
        assert (out.pooler_output - base.pooler_output).abs().max().item() <= ATOL
    if cls_name in ("BertForPreTraining", "BertForMaskedLM", "RobertaForMaskedLM"):
        logits = base.prediction_logits if cls_name == "BertForPreTraining" else base.logits
        assert out.mlm_logits is not None
        assert (out.mlm_logits - logits).abs().max().item() <= ATOL
    else:
        assert out.mlm_logits is None
    if cls_name == "BertForPreTraining":
        assert (out.nsp_logits - base.seq_relationship_logits).abs().max().item() <= ATOL
    elif cls_name == "BertForNextSentencePrediction":
        assert (out.nsp_logits - base.logits).abs().max().item() <= ATOL
    else:
        assert out.nsp_logits is None


@pytest.mark.parametrize("cls_name", BERT_CLASSES)
@pytest.mark.parametrize("name", sorted(BERT_CONFIGS))
def test_random_bert_parity(tmp_path, name, cls_name):
    hf = _hf_bert(name, cls_name)
    hf.save_pretrained(tmp_path)
    kx = load_pretrained(tmp_path)
    assert kx.config.with_mlm == (cls_name in ("BertForPreTraining", "BertForMaskedLM"))
    assert kx.config.with_nsp == (cls_name in ("BertForPreTraining", "BertForNextSentencePrediction"))
    batch = _batch(hf.config.vocab_size, hf.config.pad_token_id, hf.config.type_vocab_size)
    with torch.no_grad():
        hf_out = hf(**batch, output_hidden_states=True)
    _compare(kx, hf_out, batch, cls_name)


@pytest.mark.parametrize("cls_name", ["RobertaModel", "RobertaForMaskedLM"])
def test_random_roberta_parity(tmp_path, cls_name):
    torch.manual_seed(1)
    cfg = transformers.RobertaConfig(vocab_size=311, hidden_size=80, num_hidden_layers=3, num_attention_heads=5,
                                     intermediate_size=144, max_position_embeddings=40, type_vocab_size=1,
                                     pad_token_id=1, attn_implementation="sdpa")
    hf = getattr(transformers, cls_name)(cfg).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    hf.save_pretrained(tmp_path)
    kx = load_pretrained(tmp_path)
    assert kx.config.family == "roberta" and kx.config.position_style == "roberta"
    batch = _batch(cfg.vocab_size, cfg.pad_token_id, 1)
    with torch.no_grad():
        hf_out = hf(**batch, output_hidden_states=True)
    _compare(kx, hf_out, batch, cls_name, family="roberta")


def test_pytorch_model_bin_is_read_weights_only(tmp_path):
    hf = _hf_bert("odd", "BertModel")
    hf.config.save_pretrained(tmp_path)
    torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")
    kx = load_pretrained(tmp_path)
    batch = _batch(hf.config.vocab_size, 0, 4)
    with torch.no_grad():
        assert (kx(**batch).last_hidden_state - hf(**batch).last_hidden_state).abs().max() <= ATOL


class _Evil:
    def __reduce__(self):  # would run code if unpickled without weights_only
        return (print, ("unpickled!",))


def test_pytorch_model_bin_refuses_arbitrary_objects(tmp_path):
    hf = _hf_bert("odd", "BertModel")
    hf.config.save_pretrained(tmp_path)
    state = dict(hf.state_dict())
    state["evil"] = _Evil()
    torch.save(state, tmp_path / "pytorch_model.bin")
    with pytest.raises(Exception, match="(?i)weights_only|unpickl|global"):
        load_pretrained(tmp_path)


def test_minilm_parity(minilm_dir, minilm, minilm_tokenizer):
    hf = transformers.AutoModel.from_pretrained(minilm_dir, attn_implementation="sdpa").eval()
    texts = ["A man is playing a guitar.", "Two dogs run through a snowy field toward the camera.",
             "ok", "The quick brown fox jumps over the lazy dog while the cat watches from the fence."]
    batch = minilm_tokenizer(texts)
    assert batch["attention_mask"].eq(0).any(), "the batch must carry padding"
    with torch.no_grad():
        hf_out = hf(**batch, output_hidden_states=True)
    _compare(minilm, hf_out, batch, "BertModel")


@pytest.mark.parametrize("cls_name", ["BertModel", "BertForPreTraining", "BertForMaskedLM"])
def test_round_trip_to_transformers(tmp_path, cls_name):
    cfg = TransformerConfig(vocab_size=150, hidden_size=64, num_layers=2, num_heads=2, intermediate_size=96,
                            max_position_embeddings=32, type_vocab_size=3, hidden_act="gelu_new",
                            with_mlm=cls_name != "BertModel", with_nsp=cls_name == "BertForPreTraining")
    torch.manual_seed(3)
    kx = Transformer(cfg).eval()
    with torch.no_grad():
        for p in kx.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    save_pretrained(kx, tmp_path)
    written = json.loads((tmp_path / "config.json").read_text())
    assert written["architectures"] == [cls_name]
    batch = _batch(150, 0, 3, seed=5)
    hf = getattr(transformers, cls_name).from_pretrained(tmp_path, attn_implementation="sdpa").eval()
    with torch.no_grad():
        hf_out = hf(**batch, output_hidden_states=True)
        base = transformers.AutoModel.from_pretrained(tmp_path, attn_implementation="sdpa").eval()(**batch)
        ours = kx(**batch)
    assert torch.equal(ours.last_hidden_state, base.last_hidden_state)
    assert torch.equal(ours.pooler_output, base.pooler_output)
    _compare(kx, hf_out, batch, cls_name)
    # and back into kexue, bit for bit
    again = load_pretrained(tmp_path)
    with torch.no_grad():
        assert torch.equal(again(**batch).last_hidden_state, ours.last_hidden_state)


def test_round_trip_roberta(tmp_path):
    cfg = TransformerConfig(vocab_size=120, hidden_size=48, num_layers=2, num_heads=4, intermediate_size=64,
                            max_position_embeddings=30, type_vocab_size=1, pad_token_id=1, family="roberta",
                            position_style="roberta", mlm_hidden_act="gelu", with_mlm=True, with_pooler=False)
    kx = Transformer(cfg).eval()
    save_pretrained(kx, tmp_path)
    hf = transformers.RobertaForMaskedLM.from_pretrained(tmp_path, attn_implementation="sdpa").eval()
    batch = _batch(120, 1, 1, seed=2)
    with torch.no_grad():
        assert torch.equal(kx(**batch).mlm_logits, hf(**batch).logits)
