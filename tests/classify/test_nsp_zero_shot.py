"""NSP zero-shot mechanics (kexue.fm/archives/8671) with tiny randomly initialised transformers BERTs: scores equal
transformers' NSP softmax computed directly, A/B ordering, the index-0 convention, a planted prompt, quantile
bins, and the refusal of models without an NSP head."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kexue.classify.nsp_zero_shot import (
    NSPZeroShot,
    assign_by_thresholds,
    nsp_zero_shot,
    pair_scores,
    quantile_thresholds,
)

transformers = pytest.importorskip("transformers")

TEXTS = [
    "the match went to extra time before the home side scored",
    "shares fell sharply after the quarterly report",
    "a new chip promises faster phones",
    "leaders met to discuss the border dispute " * 6,  # long: truncated at max_len
]
WORDS = ["political", "sports", "business", "technology"]
TEMPLATES = ["The above news is about [label]", "This is a [label] news"]


def _tiny_config(layers: int = 2):
    return transformers.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                                   intermediate_size=64, max_position_embeddings=128, type_vocab_size=2,
                                   attn_implementation="sdpa")


@pytest.fixture(scope="module")
def hf_tokenizer(minilm_dir):
    return transformers.AutoTokenizer.from_pretrained(str(minilm_dir))


@pytest.fixture(scope="module")
def random_pretraining(tmp_path_factory):
    """A random BertForPreTraining (perturbed so every weight matters), saved as a Hugging Face folder."""
    torch.manual_seed(0)
    model = transformers.BertForPreTraining(_tiny_config()).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    folder = tmp_path_factory.mktemp("nsp_bert")
    model.save_pretrained(folder)
    return model, folder


def _hf_is_next(model, tokenizer, a, b, max_len):
    enc = tokenizer(a, b, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
    with torch.no_grad():
        out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                    token_type_ids=enc["token_type_ids"])
    logits = out.seq_relationship_logits if hasattr(out, "seq_relationship_logits") else out.logits
    return torch.softmax(logits.double(), dim=-1)[:, 0].numpy()


def test_kexue_nsp_logits_equal_transformers(random_pretraining, minilm_tokenizer):
    from kexue.models import load_pretrained

    hf, folder = random_pretraining
    kx = load_pretrained(folder)
    assert kx.nsp is not None
    batch = minilm_tokenizer(TEXTS[:3], ["It was great", "It was terrible", "news"], max_length=40)
    with torch.no_grad():
        ours = kx(batch["input_ids"], attention_mask=batch["attention_mask"],
                  token_type_ids=batch["token_type_ids"]).nsp_logits
        theirs = hf(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    token_type_ids=batch["token_type_ids"]).seq_relationship_logits
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("prompt_first", [True, False])
def test_scores_equal_transformers_nsp_softmax(random_pretraining, minilm_tokenizer, hf_tokenizer, prompt_first):
    from kexue.models import load_pretrained

    hf, folder = random_pretraining
    kx = load_pretrained(folder)
    nsp_only = transformers.BertForNextSentencePrediction.from_pretrained(folder).eval()
    max_len = 24
    clf = NSPZeroShot(kx, minilm_tokenizer, templates=TEMPLATES[0], label_words=WORDS, prompt_first=prompt_first,
                      max_len=max_len, batch_size=5)
    got = clf.scores(TEXTS)
    assert got.shape == (4, 4)
    prompts = [TEMPLATES[0].replace("[label]", w) for w in WORDS]
    texts = [t for t in TEXTS for _ in WORDS]
    ps = prompts * len(TEXTS)
    a, b = (ps, texts) if prompt_first else (texts, ps)
    want = _hf_is_next(hf, hf_tokenizer, a, b, max_len).reshape(4, 4)
    np.testing.assert_allclose(got, want, atol=1e-5)
    # the other order gives other scores: the segment that holds the prompt matters
    other = _hf_is_next(hf, hf_tokenizer, b, a, max_len).reshape(4, 4)
    assert np.abs(other - want).max() > 1e-5  # a random model barely cares, but far above float noise (1e-7)
    # transformers models and tokenizers work too
    via_hf = NSPZeroShot(nsp_only, hf_tokenizer, templates=TEMPLATES[0], label_words=WORDS,
                         prompt_first=prompt_first, max_len=max_len)
    np.testing.assert_allclose(via_hf.scores(TEXTS), want, atol=1e-6)
    np.testing.assert_array_equal(clf.predict(TEXTS), want.argmax(1))


def test_pairs_put_the_prompt_in_segment_a_when_prompt_first(minilm_tokenizer, random_pretraining):
    hf, _ = random_pretraining
    clf = NSPZeroShot(hf, minilm_tokenizer, templates="It was [label]", label_words=["terrible", "great"],
                      prompt_first=True)
    pairs = clf.pairs(["good film", "bad film"], "It was [label]")
    a, b = pairs
    assert (pairs.a, pairs.b) == (a, b)
    assert a == ["It was terrible", "It was great"] * 2
    assert b == ["good film", "good film", "bad film", "bad film"]
    enc = minilm_tokenizer(a[:1], b[:1])
    types = enc["token_type_ids"][0].tolist()
    tokens = [minilm_tokenizer.decode([i], skip_special_tokens=False) for i in enc["input_ids"][0].tolist()]
    assert tokens[1:4] == ["it", "was", "terrible"] and types[1:4] == [0, 0, 0]
    assert "film" in tokens and types[tokens.index("film")] == 1
    clf.prompt_first = False
    a2, b2 = clf.pairs(["good film"], "It was [label]")
    assert a2 == ["good film"] * 2 and b2 == ["It was terrible", "It was great"]


def _planted_model(planted_id: int, is_next_index: int = 0):
    """A 1-layer BERT whose NSP logit rises only when token ``planted_id`` is in the input.

    Word embeddings are 0 except the planted token's (10 on dim 0); q, k = 0 give uniform attention, v and the
    attention output are identities, the FFN is 0, so [CLS]'s state is LayerNorm(mean of the token vectors):
    dim 0 positive iff the token is present (LayerNorm is scale-invariant). The pooler is tanh(identity) and the
    NSP head puts 10·h₀ on logit ``is_next_index``.
    """
    torch.manual_seed(0)
    m = transformers.BertForPreTraining(_tiny_config(layers=1)).eval()
    eye = torch.eye(32)
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
        for mod in m.modules():
            if isinstance(mod, torch.nn.LayerNorm):
                mod.weight.fill_(1.0)
        m.bert.embeddings.word_embeddings.weight[planted_id, 0] = 10.0
        layer = m.bert.encoder.layer[0]
        layer.attention.self.value.weight.copy_(eye)
        layer.attention.output.dense.weight.copy_(eye)
        m.bert.pooler.dense.weight.copy_(eye)
        m.cls.seq_relationship.weight[is_next_index, 0] = 10.0
    return m


@pytest.mark.parametrize("prompt_first", [True, False])
def test_planted_prompt_wins(minilm_tokenizer, tmp_path, prompt_first):
    from kexue.models import load_pretrained

    planted = minilm_tokenizer.token_to_id("sports")
    hf = _planted_model(planted)
    hf.save_pretrained(tmp_path)
    kx = load_pretrained(tmp_path)
    texts = [t for t in TEXTS if "sports" not in t]
    for model in (hf, kx):
        clf = NSPZeroShot(model, minilm_tokenizer, templates=TEMPLATES, label_words=WORDS, prompt_first=prompt_first)
        s = clf.scores(texts)
        assert (clf.predict(texts) == WORDS.index("sports")).all()
        assert (s[:, 1] > 0.99).all() and np.allclose(np.delete(s, 1, axis=1), 0.5)
        # the ensemble is the mean over templates
        np.testing.assert_allclose(clf.ensemble(texts, TEMPLATES),
                                   np.mean([clf.scores(texts, template=t) for t in TEMPLATES], axis=0))
    np.testing.assert_array_equal(
        nsp_zero_shot(kx, minilm_tokenizer, texts, templates=TEMPLATES, label_words=WORDS), [1] * len(texts))


def test_index_zero_is_is_next(minilm_tokenizer):
    # the same evidence on logit 1 ("not next") makes the planted prompt the *least* likely continuation
    planted = minilm_tokenizer.token_to_id("sports")
    flipped = _planted_model(planted, is_next_index=1)
    clf = NSPZeroShot(flipped, minilm_tokenizer, templates=TEMPLATES[0], label_words=WORDS)
    s = clf.scores(TEXTS[:2])
    assert (s[:, 1] < 0.01).all()
    assert (clf.predict(TEXTS[:2]) != 1).all()
    direct = pair_scores(flipped, minilm_tokenizer, ["x"], ["sports"])
    assert direct[0] < 0.01


def test_quantile_thresholds_give_equal_count_bins():
    rng = np.random.default_rng(0)
    dev = rng.normal(size=120)
    th = quantile_thresholds(dev, 3)
    assert th.shape == (2,) and (np.diff(th) > 0).all()
    np.testing.assert_array_equal(np.bincount(assign_by_thresholds(dev, th), minlength=3), [40, 40, 40])
    th_prior = quantile_thresholds(dev, 3, prior=[0.5, 0.25, 0.25])
    np.testing.assert_array_equal(np.bincount(assign_by_thresholds(dev, th_prior), minlength=3), [60, 30, 30])
    # label 0 takes the lowest IsNext scores
    assert assign_by_thresholds([dev.min()], th)[0] == 0 and assign_by_thresholds([dev.max()], th)[0] == 2
    with pytest.raises(ValueError, match=r"expected prior to hold 3 positive values, got \[1.0, 1.0\]"):
        quantile_thresholds(dev, 3, prior=[1, 1])
    with pytest.raises(ValueError, match=r"expected at least n_labels = 3 dev scores \(one per bin\), got 2"):
        quantile_thresholds([0.1, 0.2], 3)
    with pytest.raises(ValueError, match="expected n_labels >= 2, got 1"):
        quantile_thresholds(dev, 1)
    with pytest.raises(ValueError, match="expected dev_scores to be a non-empty array of finite scores, got 0 scores"):
        quantile_thresholds([], 2)
    with pytest.raises(ValueError, match=r"expected thresholds to be a 1-D ascending array, got \[0.5, 0.1\]"):
        assign_by_thresholds(dev, [0.5, 0.1])


def test_models_without_an_nsp_head_are_refused(minilm, minilm_tokenizer):
    with pytest.raises(ValueError, match="expected a model with an NSP head, got a kexue Transformer without one.*"
                                         "all-MiniLM-L6-v2"):
        NSPZeroShot(minilm, minilm_tokenizer, templates="[label]", label_words=["a", "b"])
    roberta = transformers.RobertaForMaskedLM(transformers.RobertaConfig(
        vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32))
    with pytest.raises(ValueError, match="expected a model with an NSP head, got RobertaForMaskedLM, a RoBERTa-style"):
        pair_scores(roberta, minilm_tokenizer, ["a"], ["b"])
    bare = transformers.BertModel(_tiny_config(layers=1))
    with pytest.raises(ValueError, match="expected a model with an NSP head .*, got BertModel, which has none"):
        pair_scores(bare, minilm_tokenizer, ["a"], ["b"])


def test_bad_arguments(random_pretraining, minilm_tokenizer):
    hf, _ = random_pretraining
    with pytest.raises(ValueError, match=r"expected every template to hold the \[label\] slot, got 'It was'"):
        NSPZeroShot(hf, minilm_tokenizer, templates="It was", label_words=["a", "b"])
    with pytest.raises(ValueError, match="expected templates to name at least one template, got none"):
        NSPZeroShot(hf, minilm_tokenizer, templates=[], label_words=["a", "b"])
    with pytest.raises(ValueError, match=r"expected label_words to list at least 2 labels, got \['a'\]"):
        NSPZeroShot(hf, minilm_tokenizer, templates="[label]", label_words=["a"])
    with pytest.raises(ValueError, match="expected max_len >= 3, got 2"):
        NSPZeroShot(hf, minilm_tokenizer, templates="[label]", label_words=["a", "b"], max_len=2)
    with pytest.raises(ValueError, match="expected batch_size >= 1, got 0"):
        pair_scores(hf, minilm_tokenizer, ["a"], ["b"], batch_size=0)
    with pytest.raises(TypeError, match="expected a and b to be sequences of texts, got a single string"):
        pair_scores(hf, minilm_tokenizer, "a", ["b"])
    with pytest.raises(TypeError):
        NSPZeroShot(hf, minilm_tokenizer, "[label]", ["a", "b"])  # keyword-only
    with pytest.raises(ValueError, match="expected a and b of one length, got 2 and 1"):
        pair_scores(hf, minilm_tokenizer, ["a", "b"], ["c"])
    with pytest.raises(TypeError, match="expected texts to be a sequence of texts \\(wrap a single text in a list\\), "
                                        "got a string"):
        NSPZeroShot(hf, minilm_tokenizer, templates="[label]", label_words=["a", "b"]).scores("one text")
