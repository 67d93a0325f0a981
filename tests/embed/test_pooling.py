"""Poolings against hand computations and against transformers' ``output_hidden_states``."""

from __future__ import annotations

from typing import Any, get_args

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.embed import encode
from kexue.embed.pooling import POOLINGS, Pooling, _canonical, _layers, _needs_hidden_states, masked_mean, pool
from kexue.nn.frozen_linear import onednn_available

SENTENCES = [
    "A man is playing a guitar.",
    "Two dogs run across a snowy field while a child watches from the porch.",
    "Hi.",
    "The stock market fell sharply on Tuesday after the central bank raised interest rates again.",
    "A woman slices an onion.",
]


def _toy(seed: int = 0, layers: int = 4, batch: int = 3, seq: int = 5, hidden: int = 6):
    g = torch.Generator().manual_seed(seed)
    states = tuple(torch.randn(batch, seq, hidden, generator=g, dtype=torch.float64) for _ in range(layers))
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]])
    return states, mask


def _loop_mean(h, mask):
    """Token mean by an explicit loop over sentences and their real tokens."""
    out = []
    for b in range(h.shape[0]):
        n = int(mask[b].sum())
        out.append(sum(h[b, t] for t in range(n)) / n)
    return torch.stack(out)


def test_mean_is_token_mean_of_last_layer():
    states, mask = _toy()
    torch.testing.assert_close(pool(states, mask, "mean"), _loop_mean(states[-1], mask))
    torch.testing.assert_close(pool(states[-1], mask, "mean"), _loop_mean(states[-1], mask))
    torch.testing.assert_close(pool(states, mask, "last-avg"), _loop_mean(states[-1], mask))


def test_emb_avg_is_token_mean_of_embeddings():
    states, mask = _toy()
    torch.testing.assert_close(pool(states, mask, "emb_avg"), _loop_mean(states[0], mask))


def test_first_last_avg_uses_first_block_not_embeddings():
    """(mean of hidden_states[1] + mean of hidden_states[-1]) / 2, per specs/05-embeddings-stats.md §1."""
    states, mask = _toy()
    want = (_loop_mean(states[1], mask) + _loop_mean(states[-1], mask)) / 2
    got = pool(states, mask, "first-last-avg")
    torch.testing.assert_close(got, want)
    wrong = (_loop_mean(states[0], mask) + _loop_mean(states[-1], mask)) / 2
    assert not torch.allclose(got, wrong)
    torch.testing.assert_close(pool(states, mask, "mean", layers=(1, -1)), want)


def test_explicit_layers_average_their_token_means():
    states, mask = _toy()
    want = (_loop_mean(states[0], mask) + _loop_mean(states[2], mask) + _loop_mean(states[3], mask)) / 3
    torch.testing.assert_close(pool(states, mask, "layers", layers=(0, 2, -1)), want)


def test_cls_and_pooler():
    states, mask = _toy()
    assert torch.equal(pool(states, mask, "cls"), states[-1][:, 0])
    p = torch.randn(3, 6)
    assert pool(states, mask, "pooler", pooler_output=p) is p


def test_no_mask_means_all_tokens():
    states, _ = _toy()
    torch.testing.assert_close(pool(states, None, "mean"), states[-1].mean(dim=1))


@settings(max_examples=40, deadline=None)
@given(lengths=st.lists(st.integers(1, 7), min_size=1, max_size=5), seed=st.integers(0, 2**16))
def test_mean_ignores_padding_values(lengths, seed):
    """Whatever sits at padded positions, the masked mean is the mean of the real tokens."""
    g = torch.Generator().manual_seed(seed)
    width = max(lengths)
    h = torch.randn(len(lengths), width, 4, generator=g, dtype=torch.float64)
    mask = torch.tensor([[1] * n + [0] * (width - n) for n in lengths])
    garbage = h.clone()
    garbage[mask == 0] = 1e6 * torch.randn(int((mask == 0).sum()), 4, generator=g, dtype=torch.float64)
    torch.testing.assert_close(masked_mean(garbage, mask), _loop_mean(h, mask))


def test_names_and_layers_helpers():
    assert _canonical("First-Last-Avg") == "first_last_avg"
    assert _canonical("last_avg") == "mean"
    assert _layers("first_last_avg") == (1, -1)
    assert _layers("emb-avg") == (0,)
    assert _layers("cls") is None
    assert not _needs_hidden_states("mean") and not _needs_hidden_states("cls")
    assert not _needs_hidden_states("pooler")
    assert _needs_hidden_states("first_last_avg") and _needs_hidden_states("mean", layers=(2,))
    assert POOLINGS == get_args(Pooling)
    assert set(POOLINGS) >= {"cls", "pooler", "mean", "emb_avg", "first_last_avg"}


def test_bad_input_raises():
    states, mask = _toy()
    bad: Any = "Max-Pool"
    with pytest.raises(ValueError, match=r"^expected pooling to be one of \['cls', 'pooler', .*\], got 'Max-Pool'$"):
        pool(states, mask, bad)
    with pytest.raises(ValueError, match=r"^expected pooler_output with pooling 'pooler', got None"):
        pool(states, mask, "pooler")
    with pytest.raises(ValueError, match=r"^expected layer indices in \[-4, 4\) for 4 hidden states .*, got 4$"):
        pool(states, mask, "layers", layers=(1, 4))
    with pytest.raises(ValueError, match=r"^expected layers=\(i, j, ...\), .* with pooling 'layers', got layers=None$"):
        pool(states, mask, "layers")
    with pytest.raises(ValueError, match=r"^expected pooling 'mean' or 'layers' with layers=\(1,\), got 'cls'$"):
        pool(states, mask, "cls", layers=(1,))
    with pytest.raises(ValueError, match=r"^expected the hidden_states tuple for pooling 'first_last_avg'"):
        pool(states[-1], mask, "first_last_avg")
    with pytest.raises(ValueError, match="^expected layers to name at least one hidden_states index, got an empty"):
        pool(states, mask, "mean", layers=())
    with pytest.raises(ValueError, match="^expected at least one tensor in hidden_states, got an empty sequence$"):
        pool([], mask, "mean")
    with pytest.raises(ValueError, match=r"^expected attention_mask of the hidden states' \(batch, seq\) shape"):
        pool(states, mask[:, :4], "mean")
    none: Any = None
    with pytest.raises(TypeError, match=r"^expected pooling to be a str, got None \(NoneType\)$"):
        pool(states, mask, none)


# -- against transformers' BertModel with output_hidden_states=True ---------------------------------------------


@pytest.fixture(scope="module")
def hf_outputs(minilm_dir):
    transformers = pytest.importorskip("transformers")
    tok = transformers.AutoTokenizer.from_pretrained(minilm_dir)
    model = transformers.AutoModel.from_pretrained(minilm_dir, attn_implementation="sdpa").eval()
    batch = tok(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True)
    return out, batch["attention_mask"]


def _hf_mean(h, mask):
    m = mask.unsqueeze(-1).float()
    return (h * m).sum(1) / m.sum(1)


@pytest.mark.parametrize(
    "pooling,layers,reference",
    [
        ("mean", None, lambda hs, m, out: _hf_mean(hs[-1], m)),
        ("emb_avg", None, lambda hs, m, out: _hf_mean(hs[0], m)),
        ("first_last_avg", None, lambda hs, m, out: (_hf_mean(hs[1], m) + _hf_mean(hs[-1], m)) / 2),
        ("layers", (0, 3, 6), lambda hs, m, out: (_hf_mean(hs[0], m) + _hf_mean(hs[3], m) + _hf_mean(hs[6], m)) / 3),
        ("cls", None, lambda hs, m, out: hs[-1][:, 0]),
        ("pooler", None, lambda hs, m, out: out.pooler_output),
    ],
)
@pytest.mark.parametrize("kernel", ["torch", pytest.param("onednn", marks=pytest.mark.skipif(
    not onednn_available(), reason="this torch build has no oneDNN linear kernel"))])
def test_encode_poolings_match_transformers(minilm, minilm_tokenizer, hf_outputs, pooling, layers, reference, kernel):
    out, mask = hf_outputs
    assert len(out.hidden_states) == 7  # embeddings + 6 blocks
    want = reference(out.hidden_states, mask, out)
    got = encode(SENTENCES, minilm, minilm_tokenizer, pooling=pooling, layers=layers, batch_size=2, kernel=kernel)
    assert got.dtype == torch.float32 and got.shape == (len(SENTENCES), 384)
    # 'torch': float rounding from batching alone; 'onednn': a few more ulps of the hidden states.
    torch.testing.assert_close(got, want, atol=1e-5 if kernel == "torch" else 5e-5, rtol=0)


def test_pool_on_kexue_hidden_states_matches_transformers(minilm, minilm_tokenizer, hf_outputs):
    out, mask = hf_outputs
    batch = minilm_tokenizer(SENTENCES)
    assert torch.equal(batch["attention_mask"], mask)
    with torch.no_grad():
        kx = minilm(**batch, output_hidden_states=True)
    for kind in ("mean", "emb_avg", "first_last_avg", "cls"):
        torch.testing.assert_close(pool(kx.hidden_states, mask, kind),
                                   pool(out.hidden_states, mask, kind), atol=1e-6, rtol=0)
