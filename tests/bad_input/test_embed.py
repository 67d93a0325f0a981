"""Bad-input rows: kexue.embed (encoding, pooling, STS evaluation, whitening)."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from _matrix import Bad, check

from kexue.data.datasets import STSPairs
from kexue.embed import (
    Whitening,
    cosine_scores,
    encode,
    evaluate,
    masked_mean,
    pool,
    rankdata,
    spearman,
    spearman_eval,
    whitening_matrix,
)
from kexue.env import minilm_path
from kexue.models import Tokenizer, Transformer, TransformerConfig


@functools.cache
def _tok() -> Tokenizer:
    """all-MiniLM-L6-v2's tokenizer (vocabulary 30522)."""
    return Tokenizer.from_pretrained(minilm_path())


@functools.cache
def _model(with_pooler: bool = True) -> Transformer:
    """A two-block Transformer over the tokenizer's vocabulary, hidden size 8, in eval mode."""
    return Transformer(TransformerConfig(vocab_size=30522, hidden_size=8, num_heads=2, num_layers=2,
                                         intermediate_size=8, with_pooler=with_pooler)).eval()


def _encode(texts, **kw):
    return encode(texts, _model(), _tok(), **kw)


def _states(n: int = 3) -> tuple[torch.Tensor, ...]:
    """A hidden_states tuple: embeddings and n - 1 blocks, batch 2, 4 tokens, width 3."""
    return tuple(torch.randn(2, 4, 3) for _ in range(n))


def _fitted(rows: int = 10, dim: int = 3) -> Whitening:
    return Whitening().fit(torch.randn(rows, dim), progress=False)


def _one_row() -> Whitening:
    w = Whitening()
    w.partial_fit(torch.randn(1, 3))
    return w


def _bag(texts: list[str]) -> np.ndarray:
    """A toy encoder: letter counts."""
    out = np.zeros((len(texts), 26))
    for i, t in enumerate(texts):
        for ch in t:
            if ch.isalpha():
                out[i, ord(ch.lower()) - 97] += 1
    return out


S1, S2, GOLD = ["a cat", "dogs bark", "the sun"], ["the cat", "cats purr", "sunlight"], [4.0, 1.0, 3.0]
STS = STSPairs("toy", "test", S1, S2, np.array(GOLD))
W = "kexue.embed.Whitening"

ROWS = [
    # -- encode and pooling -------------------------------------------------------------------------------------------
    Bad("kexue.embed.encode", "None among the texts", lambda: _encode([None]), TypeError,
        r"^expected texts to be a sequence of str, got None at index 0$"),
    Bad("kexue.embed.encode", "a single str", lambda: _encode("a single str"), TypeError,
        r"^expected texts to be a sequence of str, got a single str; wrap it in a list$"),
    Bad("kexue.embed.encode", "a number among the texts", lambda: _encode(["a", 2.5]), TypeError,
        r"^expected texts to be a sequence of str, got float at index 1$"),
    Bad("kexue.embed.encode", "unknown pooling", lambda: _encode(["a"], pooling="avg"), ValueError,
        r"^expected pooling to be one of \['cls', 'pooler', 'mean', .*\], got 'avg'$"),
    Bad("kexue.embed.encode", "pooling a number", lambda: _encode(["a"], pooling=1), TypeError,
        r"^expected pooling to be a str, got 1 \(int\)$"),
    Bad("kexue.embed.encode", "batch_size 0", lambda: _encode(["a"], batch_size=0), ValueError,
        r"^expected batch_size >= 1, got 0$"),
    Bad("kexue.embed.encode", "unknown kernel", lambda: _encode(["a"], kernel="cuda"), ValueError,
        r"^expected kernel to be one of \['auto', 'torch', 'onednn'\], got 'cuda'$"),
    Bad("kexue.embed.encode", "pooler pooling without a pooler",
        lambda: encode(["a"], _model(with_pooler=False), _tok(), pooling="pooler"), ValueError,
        r"^expected a model with a pooler for pooling 'pooler', got one without \(with_pooler=False\)$"),
    Bad("kexue.embed.encode", "layers with cls pooling", lambda: _encode(["a"], pooling="cls", layers=(1, -1)),
        ValueError, r"^expected pooling 'mean' or 'layers' with layers=\(1, -1\), got 'cls'$"),
    Bad("kexue.embed.encode", "a layer past the model", lambda: _encode(["a"], layers=(0, 5)), ValueError,
        r"^expected layer indices in \[-3, 3\) for 3 hidden states \(embeddings \+ 2 blocks\), got 5$"),
    Bad("kexue.embed.encode", "max_length 0", lambda: _encode(["a"], max_length=0), ValueError,
        r"^expected max_length >= 1, got 0$"),
    Bad("kexue.embed.encode", "no tokenizer", lambda: encode(["a"], _model(), None), TypeError,
        r"^expected tokenizer to be a kexue\.models\.Tokenizer \(Tokenizer\.from_pretrained\(folder\)\), got "
        r"NoneType$"),
    Bad("kexue.embed.encode", "a model name for the model", lambda: encode(["a"], "all-MiniLM-L6-v2", _tok()),
        TypeError, r"^expected model to be an nn\.Module \(a kexue Transformer, say\), got str$"),
    Bad("kexue.embed.pool", "unknown pooling", lambda: pool(_states(), None, "max"), ValueError,
        r"^expected pooling to be one of \[.*\], got 'max'$"),
    Bad("kexue.embed.pool", "pooling None", lambda: pool(_states(), None, None), TypeError,
        r"^expected pooling to be a str, got None \(NoneType\)$"),
    Bad("kexue.embed.pool", "layers with cls pooling", lambda: pool(_states(), None, "cls", layers=(0,)), ValueError,
        r"^expected pooling 'mean' or 'layers' with layers=\(0,\), got 'cls'$"),
    Bad("kexue.embed.pool", "no layers", lambda: pool(_states(), None, "layers", layers=()), ValueError,
        r"^expected layers to name at least one hidden_states index, got an empty sequence$"),
    Bad("kexue.embed.pool", "layers pooling without layers", lambda: pool(_states(), None, "layers"), ValueError,
        r"^expected layers=\(i, j, \.\.\.\), the hidden_states indices to average, with pooling 'layers', got "
        r"layers=None$"),
    Bad("kexue.embed.pool", "pooler pooling without pooler_output", lambda: pool(_states(), None, "pooler"),
        ValueError, r"^expected pooler_output with pooling 'pooler', got None"),
    Bad("kexue.embed.pool", "a layer index past the states", lambda: pool(_states(), None, "mean", layers=(3,)),
        ValueError, r"^expected layer indices in \[-3, 3\) for 3 hidden states .*got 3$"),
    Bad("kexue.embed.pool", "one tensor for first_last_avg", lambda: pool(torch.randn(2, 4, 3), None,
                                                                        "first_last_avg"),
        ValueError, r"^expected the hidden_states tuple for pooling 'first_last_avg' \(layers \(1, -1\)\), got a "
                    r"single tensor$"),
    Bad("kexue.embed.pool", "an empty tuple", lambda: pool((), None, "mean"), ValueError,
        r"^expected at least one tensor in hidden_states, got an empty sequence$"),
    Bad("kexue.embed.pool", "cls of (batch, hidden) vectors", lambda: pool(torch.randn(2, 4), None, "cls"),
        ValueError, r"^expected hidden_states of shape \(batch, seq, hidden\), got shape \(2, 4\)$"),
    Bad("kexue.embed.pool", "mean of (batch, hidden) vectors", lambda: pool(torch.randn(2, 4), torch.ones(2, 4)),
        ValueError, r"^expected hidden_states of shape \(batch, seq, hidden\), got shape \(2, 4\)$"),
    Bad("kexue.embed.pool", "attention_mask of another shape",
        lambda: pool(_states(), torch.ones(2, 5), "first_last_avg"), ValueError,
        r"^expected attention_mask of the hidden states' \(batch, seq\) shape \(2, 4\), got \(2, 5\)$"),
    Bad("kexue.embed.masked_mean", "(batch, hidden) vectors", lambda: masked_mean(torch.randn(2, 5), torch.ones(2, 5)),
        ValueError, r"^expected hidden of shape \(batch, seq, hidden\), got shape \(2, 5\)$"),
    Bad("kexue.embed.masked_mean", "attention_mask of another shape",
        lambda: masked_mean(torch.randn(2, 5, 3), torch.ones(2, 4)), ValueError,
        r"^expected attention_mask of the hidden states' \(batch, seq\) shape \(2, 5\), got \(2, 4\)$"),
    Bad("kexue.embed.masked_mean", "attention_mask with a trailing axis",
        lambda: masked_mean(torch.randn(2, 5, 3), torch.ones(2, 5, 1)), ValueError,
        r"^expected attention_mask of the hidden states' \(batch, seq\) shape \(2, 5\), got \(2, 5, 1\)$"),
    Bad("kexue.embed.masked_mean", "hidden a list", lambda: masked_mean([[1.0]], None), TypeError,
        r"^expected hidden to be a \(batch, seq, hidden\) Tensor, got list$"),
    # -- STS ----------------------------------------------------------------------------------------------------------
    Bad("kexue.embed.cosine_scores", "rows of another count", lambda: cosine_scores(torch.ones(3, 2), torch.ones(2, 2)),
        ValueError, r"^expected a and b of one shape, got \(3, 2\) and \(2, 2\)$"),
    Bad("kexue.embed.cosine_scores", "vectors of another width",
        lambda: cosine_scores(torch.ones(3, 2), torch.ones(3, 4)), ValueError,
        r"^expected a and b of one shape, got \(3, 2\) and \(3, 4\)$"),
    Bad("kexue.embed.cosine_scores", "0-d tensors", lambda: cosine_scores(torch.tensor(1.0), torch.tensor(2.0)),
        ValueError, r"^expected a and b of shape \(n, d\), got 0-d tensors$"),
    Bad("kexue.embed.rankdata", "2-D", lambda: rankdata(np.zeros((2, 2))), ValueError,
        r"^expected x to be 1-D, got shape \(2, 2\)$"),
    Bad("kexue.embed.rankdata", "NaN", lambda: rankdata([1.0, float("nan"), 2.0]), ValueError,
        r"^expected x without NaN to rank, got 1 NaN of 3$"),
    Bad("kexue.embed.rankdata", "None", lambda: rankdata(None), ValueError, r"^expected x to be 1-D, got shape \(\)$"),
    Bad("kexue.embed.rankdata", "strings", lambda: rankdata(["a", "b"]), TypeError,
        r"^expected x to hold real numbers, got list \(could not convert string to float: 'a'\)$"),
    Bad("kexue.embed.spearman", "unequal lengths", lambda: spearman([1, 2, 3], [1, 2]), ValueError,
        r"^expected x and y of one length, got 3 and 2$"),
    Bad("kexue.embed.spearman", "one pair", lambda: spearman([1], [2]), ValueError,
        r"^expected at least 2 pairs for Spearman's correlation, got 1$"),
    Bad("kexue.embed.spearman", "constant x", lambda: spearman([1, 1, 1], [1, 2, 3]), ValueError,
        r"^expected x to vary \(Spearman's correlation of a constant is undefined\), got 3 equal values$"),
    Bad("kexue.embed.spearman", "constant y", lambda: spearman([1, 2, 3, 4], [0.5] * 4), ValueError,
        r"^expected y to vary \(Spearman's correlation of a constant is undefined\), got 4 equal values$"),
    Bad("kexue.embed.spearman", "NaN in y", lambda: spearman([1, 2], [1, float("nan")]), ValueError,
        r"^expected y without NaN to rank, got 1 NaN of 2$"),
    Bad("kexue.embed.spearman", "y 2-D", lambda: spearman([1, 2], [[1, 2], [3, 4]]), ValueError,
        r"^expected y to be 1-D, got shape \(2, 2\)$"),
    Bad("kexue.embed.spearman_eval", "pairs without gold", lambda: spearman_eval(_bag, (S1, S2)), ValueError,
        r"^expected gold scores with pairs given as \(sentences1, sentences2\), got gold=None$"),
    Bad("kexue.embed.spearman_eval", "fewer second sentences", lambda: spearman_eval(_bag, (S1, S2[:2]), GOLD),
        ValueError, r"^expected as many second sentences as first ones \(3\), got 2$"),
    Bad("kexue.embed.spearman_eval", "fewer gold scores than pairs", lambda: spearman_eval(_bag, (S1, S2), GOLD[:2]),
        ValueError, r"^expected one gold score per pair, shape \(3,\), got shape \(2,\)$"),
    Bad("kexue.embed.spearman_eval", "one number for the gold scores", lambda: spearman_eval(_bag, (S1, S2), 4.0),
        ValueError, r"^expected one gold score per pair, shape \(3,\), got shape \(\)$"),
    Bad("kexue.embed.spearman_eval", "encode_fn returns one vector",
        lambda: spearman_eval(lambda t: np.zeros((1, 3)), (S1, S2), GOLD), ValueError,
        r"^expected encode_fn to return one vector per sentence \(6\), got 1$"),
    Bad("kexue.embed.spearman_eval", "encode_fn not callable", lambda: spearman_eval("mean", (S1, S2), GOLD),
        TypeError, r"^expected encode_fn to be a callable texts -> vectors, got str$"),
    Bad("kexue.embed.spearman_eval", "constant encodings", lambda: spearman_eval(lambda t: np.ones((len(t), 3)), STS),
        ValueError, r"^expected x to vary \(Spearman's correlation of a constant is undefined\), got 3 equal values$"),
    Bad("kexue.embed.evaluate", "pairs for the dataset", lambda: evaluate(_model(), _tok(), (S1, S2)), TypeError,
        r"^expected an STSPairs \(see kexue\.data\.datasets\.load_sts\), got tuple$"),
    Bad("kexue.embed.evaluate", "unknown pooling", lambda: evaluate(_model(), _tok(), STS, pooling="avg"), ValueError,
        r"^expected pooling to be one of \[.*\], got 'avg'$"),
    Bad("kexue.embed.evaluate", "batch_size 0", lambda: evaluate(_model(), _tok(), STS, batch_size=0), ValueError,
        r"^expected batch_size >= 1, got 0$"),
    Bad("kexue.embed.evaluate", "a model name for the model", lambda: evaluate("all-MiniLM-L6-v2", _tok(), STS),
        TypeError, r"^expected model to be an nn\.Module .*got str$"),
    # -- whitening ----------------------------------------------------------------------------------------------------
    Bad(W, "n_components 0", lambda: Whitening(n_components=0), ValueError, r"^expected n_components >= 1, got 0$"),
    Bad(W, "n_components a float", lambda: Whitening(n_components=2.5), TypeError,
        r"^expected n_components to be an integer, got 2\.5 \(float\)$"),
    Bad(W, "eps negative", lambda: Whitening(eps=-1), ValueError, r"^expected eps >= 0\.0, got -1$"),
    Bad(W, "eps nan", lambda: Whitening(eps=float("nan")), ValueError, r"^expected eps to be finite, got nan$"),
    Bad(f"{W}.fit", "one row", lambda: Whitening().fit(torch.randn(1, 4), progress=False), ValueError,
        r"^expected at least 2 vectors to fit the whitening map \(a covariance needs two\), got 1$"),
    Bad(f"{W}.fit", "no rows", lambda: Whitening().fit(iter([]), progress=False), ValueError,
        r"^expected at least 2 vectors to fit the whitening map \(a covariance needs two\), got 0$"),
    Bad(f"{W}.fit", "3-D data", lambda: Whitening().fit(torch.randn(2, 3, 4), progress=False), ValueError,
        r"^expected data to be a 2-D \(samples, dim\) array, got shape \(2, 3, 4\)$"),
    Bad(f"{W}.fit", "NaN", lambda: Whitening().fit(torch.tensor([[1.0, float("nan")], [0.0, 1.0]]), progress=False),
        ValueError, r"^expected data to be finite, got 1 NaN or infinite values$"),
    Bad(f"{W}.fit", "a str", lambda: Whitening().fit("vectors.npy", progress=False), TypeError,
        r"^expected data to be a \(N, d\) tensor or array, or an iterable of \(n, d\) batches, got str$"),
    Bad(f"{W}.fit", "batch_size 0", lambda: Whitening().fit(torch.randn(10, 3), batch_size=0, progress=False),
        ValueError, r"^expected batch_size >= 1, got 0$"),
    Bad(f"{W}.fit", "n_components past the width", lambda: Whitening(5).fit(torch.randn(10, 3), progress=False),
        ValueError, r"^expected n_components <= 3, got 5$"),
    Bad(f"{W}.fit", "batches of two widths",
        lambda: Whitening().fit([torch.randn(3, 4), torch.randn(3, 5)], progress=False), ValueError,
        r"^expected data of dimension 4 \(as fitted so far\), got 5$"),
    Bad(f"{W}.fit", "batches of text", lambda: Whitening().fit([["a", "b"]], progress=False), TypeError,
        r"^expected data to be a 2-D \(samples, dim\) array of numbers, got list$"),
    Bad(f"{W}.partial_fit", "1-D", lambda: Whitening().partial_fit(torch.zeros(3)), ValueError,
        r"^expected x to be a 2-D \(samples, dim\) array, got shape \(3,\)$"),
    Bad(f"{W}.partial_fit", "bool", lambda: Whitening().partial_fit(torch.zeros(2, 2, dtype=torch.bool)), TypeError,
        r"^expected x to hold numbers, got dtype torch\.bool$"),
    Bad(f"{W}.partial_fit", "infinite", lambda: Whitening().partial_fit(torch.tensor([[1.0, float("inf")]])),
        ValueError, r"^expected x to be finite, got 1 NaN or infinite values$"),
    Bad(f"{W}.partial_fit", "another width", lambda: _fitted().partial_fit(torch.randn(5, 4)), ValueError,
        r"^expected x of dimension 3 \(as fitted so far\), got 4$"),
    Bad(f"{W}.partial_fit", "a str", lambda: Whitening().partial_fit("abc"), TypeError,
        r"^expected x to be a 2-D \(samples, dim\) array of numbers, got str$"),
    Bad(f"{W}.transform", "before fit", lambda: Whitening().transform(torch.zeros(2, 3)), RuntimeError,
        r"^expected a fitted Whitening, got one with no statistics: call fit\(\.\.\.\) or partial_fit\(\.\.\.\) "
        r"first$"),
    Bad(f"{W}.transform", "another width", lambda: _fitted().transform(torch.randn(2, 4)), ValueError,
        r"^expected x of dimension 3 \(as fitted\), got shape \(2, 4\)$"),
    Bad(f"{W}.transform", "fitted on one row", lambda: _one_row().transform(torch.randn(2, 3)), ValueError,
        r"^expected at least 2 vectors to fit the whitening map \(a covariance needs two\), got 1$"),
    Bad(f"{W}.transform", "a str", lambda: _fitted().transform("vectors"), TypeError,
        r"^expected x to be a \(\.\.\., d\) tensor of numbers, got str$"),
    Bad(f"{W}.transform", "a 0-d tensor", lambda: _fitted().transform(torch.tensor(1.0)), ValueError,
        r"^expected x of dimension 3 \(as fitted\), got shape \(\)$"),
    Bad(f"{W}.forward", "before fit", lambda: Whitening()(torch.zeros(2, 3)), RuntimeError,
        r"^expected a fitted Whitening, got one with no statistics"),
    Bad(f"{W}.forward", "another width", lambda: _fitted(dim=4)(torch.randn(2, 3)), ValueError,
        r"^expected x of dimension 4 \(as fitted\), got shape \(2, 3\)$"),
    Bad(f"{W}.forward", "fitted on one row", lambda: _one_row()(torch.randn(2, 3)), ValueError,
        r"^expected at least 2 vectors to fit the whitening map"),
    Bad("kexue.embed.whitening_matrix", "not square", lambda: whitening_matrix(torch.zeros(3, 4)), ValueError,
        r"^expected cov to be a square matrix, got shape \(3, 4\)$"),
    Bad("kexue.embed.whitening_matrix", "1-D", lambda: whitening_matrix(torch.ones(3)), ValueError,
        r"^expected cov to be a square matrix, got shape \(3,\)$"),
    Bad("kexue.embed.whitening_matrix", "n_components 0", lambda: whitening_matrix(torch.eye(3), 0), ValueError,
        r"^expected n_components >= 1, got 0$"),
    Bad("kexue.embed.whitening_matrix", "n_components past the width", lambda: whitening_matrix(torch.eye(3), 4),
        ValueError, r"^expected n_components <= 3, got 4$"),
    Bad("kexue.embed.whitening_matrix", "eps negative", lambda: whitening_matrix(torch.eye(3), eps=-1e-3),
        ValueError, r"^expected eps >= 0\.0, got -0\.001$"),
    Bad("kexue.embed.whitening_matrix", "NaN entries", lambda: whitening_matrix(torch.full((3, 3), float("nan"))),
        ValueError, r"^expected cov to be finite, got 9 NaN or infinite entries$"),
    Bad("kexue.embed.whitening_matrix", "a singular cov with eps 0",
        lambda: whitening_matrix(torch.zeros(3, 3), eps=0.0), ValueError,
        r"^expected positive eigenvalues among the 3 kept directions, got 3 zero eigenvalues with eps = 0"),
]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_refuses(row):
    check(row)
