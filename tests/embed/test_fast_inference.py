"""The inference path ``encode`` runs on: ``Transformer.fast_inference`` (fused Q/K/V, oneDNN kernels) and
``FrozenLinear``, against the plain forward and transformers' BertModel."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kexue.models import Transformer, TransformerConfig
from kexue.nn import frozen_linear
from kexue.nn.frozen_linear import FrozenLinear, OneDNNFallbackWarning, onednn_available

needs_onednn = pytest.mark.skipif(not onednn_available(), reason="this torch build has no oneDNN linear kernel")

SENTENCES = [
    "A man is playing a guitar.",
    "Two dogs run across a snowy field while a child watches from the porch.",
    "Hi.",
    "The stock market fell sharply on Tuesday after the central bank raised interest rates again.",
]


@pytest.fixture(scope="module")
def hf_minilm(minilm_dir):
    transformers = pytest.importorskip("transformers")
    return transformers.AutoModel.from_pretrained(minilm_dir, attn_implementation="sdpa").eval()


@pytest.fixture(scope="module")
def batch(minilm_tokenizer):
    b = minilm_tokenizer(SENTENCES)
    assert not bool(b["attention_mask"].all()), "the batch must carry padding"
    return b


def _run(model, batch):
    return model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], output_hidden_states=True)


def test_torch_kernel_is_bit_identical(minilm, batch):
    with torch.no_grad():
        plain = _run(minilm, batch)
        with minilm.fast_inference("torch"):
            fast = _run(minilm, batch)
    assert torch.equal(plain.last_hidden_state, fast.last_hidden_state)
    assert all(torch.equal(a, b) for a, b in zip(plain.hidden_states, fast.hidden_states))
    assert torch.equal(plain.pooler_output, fast.pooler_output)


def test_torch_kernel_odd_sizes_bit_identical():
    """3 heads of 32, 5 layers, padding: the fused Q/K/V product changes no bit."""
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=300, hidden_size=96, num_layers=5, num_heads=3,
                                          intermediate_size=200, type_vocab_size=4)).eval()
    ids = torch.randint(1, 300, (3, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    types = torch.randint(0, 4, (3, 9))
    with torch.inference_mode():
        plain = model(ids, mask, types).last_hidden_state
        with model.fast_inference("torch"):
            fast = model(ids, mask, types).last_hidden_state
    assert torch.equal(plain, fast)


@needs_onednn
def test_onednn_kernel_matches_transformers(minilm, hf_minilm, batch):
    with torch.no_grad():
        ref = hf_minilm(**batch, output_hidden_states=True)
        with minilm.fast_inference("onednn"):
            fast = _run(minilm, batch)
    # oneDNN sums in another order than MKL: float rounding only, well under 1e-5 relative to the values.
    scale = ref.last_hidden_state.abs().max()
    for a, b in zip(fast.hidden_states, ref.hidden_states):
        assert (a - b).abs().max() <= 1e-5 * scale
    torch.testing.assert_close(fast.pooler_output, ref.pooler_output, atol=1e-5, rtol=0)


def test_snapshot_dropped_on_exit_and_nested_restored(minilm):
    blk = minilm.blocks[0]
    assert blk.attn._frozen is None and blk.ffn._frozen is None
    with minilm.fast_inference("torch"):
        outer = blk.attn._frozen
        assert outer is not None
        with minilm.fast_inference("torch"):
            assert blk.attn._frozen is not outer
        assert blk.attn._frozen is outer
    assert blk.attn._frozen is None and blk.ffn._frozen is None


def test_snapshot_dropped_when_the_body_raises(minilm):
    with pytest.raises(RuntimeError, match="boom"), minilm.fast_inference("torch"):
        raise RuntimeError("boom")
    assert all(b.attn._frozen is None and b.ffn._frozen is None for b in minilm.blocks)


def test_grad_forward_ignores_snapshot_and_trains():
    """With autograd on, the live weights are used (and get gradients); the no-grad forward keeps the snapshot."""
    torch.manual_seed(1)
    model = Transformer(TransformerConfig(vocab_size=100, hidden_size=32, num_layers=2, num_heads=4,
                                          intermediate_size=64, hidden_dropout=0.0, attention_dropout=0.0))
    ids = torch.randint(1, 100, (2, 5))
    with torch.no_grad():
        before = model(ids).last_hidden_state
    kernel = "onednn" if onednn_available() else "torch"
    with model.fast_inference(kernel):
        with torch.no_grad():
            # random changes: a constant shift would vanish against the zero-sum LayerNorm output
            model.blocks[0].attn.q.weight.add_(torch.randn(32, 32))
            model.blocks[1].ffn.up.weight.add_(torch.randn(64, 32))
            snap = model(ids).last_hidden_state
        out = model(ids).last_hidden_state
        out.sum().backward()
    with torch.no_grad():
        after = model(ids).last_hidden_state
    torch.testing.assert_close(snap, before, atol=1e-5, rtol=0)  # snapshot taken before the change
    assert torch.equal(out.detach(), after)  # live weights
    assert not torch.allclose(after, before, atol=1e-3)
    assert model.blocks[0].attn.q.weight.grad is not None and model.blocks[1].ffn.up.weight.grad is not None


def test_unknown_kernel_raises(minilm):
    with pytest.raises(ValueError, match=r"expected kernel to be one of \['auto', 'torch', 'onednn'\], got 'mkl'"):
        with minilm.fast_inference("mkl"):
            pass


@pytest.mark.parametrize("kernel", ["torch", pytest.param("onednn", marks=needs_onednn)])
def test_frozen_linear_fuses_outputs(kernel):
    torch.manual_seed(2)
    layers = [nn.Linear(24, n) for n in (8, 16, 8)]
    layers[1].bias = None
    x = torch.randn(3, 5, 24)
    with torch.no_grad():
        ref = torch.cat([lin(x) for lin in layers], dim=-1)
        out = FrozenLinear(layers, kernel)(x)
    assert out.shape == (3, 5, 32)
    # Float rounding only: BLAS may pick another kernel for another output width (bit-identity at BERT's shapes
    # is checked on whole models above).
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_frozen_linear_rejects_bad_input():
    with pytest.raises(ValueError, match="expected at least one nn.Linear in linears, got none"):
        FrozenLinear([])
    with pytest.raises(ValueError, match=r"expected linears that share in_features, got in_features \[4, 5\]"):
        FrozenLinear([nn.Linear(4, 2), nn.Linear(5, 2)])
    with pytest.raises(ValueError, match=r"expected kernel to be one of \['torch', 'onednn'\], got 'cuda'"):
        FrozenLinear([nn.Linear(4, 2)], "cuda")
    if onednn_available():
        with pytest.raises(ValueError, match="expected fp32 CPU weights for kernel='onednn', got torch.float64"):
            FrozenLinear([nn.Linear(4, 2).double()], "onednn")


@needs_onednn
@pytest.mark.parametrize("act,approximate", [("gelu", "none"), ("gelu_new", "tanh"), ("gelu_pytorch_tanh", "tanh")])
def test_frozen_linear_fuses_gelu(act, approximate):
    torch.manual_seed(3)
    lin = nn.Linear(48, 96)
    x = 2 * torch.randn(4, 7, 48)
    with torch.no_grad():
        plain = FrozenLinear([lin], "onednn")(x)
        fused = FrozenLinear([lin], "onednn", gelu=act)(x)
    want = torch.nn.functional.gelu(plain, approximate=approximate)
    if approximate == "none":
        assert torch.equal(fused, want)  # oneDNN's erf GELU gives torch's bits
    else:
        torch.testing.assert_close(fused, want, atol=1e-6, rtol=1e-6)
    with pytest.raises(ValueError, match="got gelu='gelu' with kernel='torch'"):
        FrozenLinear([lin], "torch", gelu="gelu")
    with pytest.raises(ValueError, match="got gelu='relu' with kernel='onednn'"):
        FrozenLinear([lin], "onednn", gelu="relu")


@needs_onednn
@pytest.mark.parametrize("act", ["gelu_new", "relu"])
def test_onednn_fast_path_other_activations(act):
    """Fused (gelu_new) and unfused (relu) activations on the oneDNN path agree with the plain forward."""
    torch.manual_seed(4)
    model = Transformer(TransformerConfig(vocab_size=200, hidden_size=64, num_layers=2, num_heads=4,
                                          intermediate_size=128, hidden_act=act)).eval()
    ids = torch.randint(1, 200, (3, 10))
    mask = torch.ones_like(ids)
    mask[2, 6:] = 0
    with torch.inference_mode():
        plain = model(ids, mask).last_hidden_state
        with model.fast_inference("onednn"):
            fast = model(ids, mask).last_hidden_state
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=0)


@pytest.fixture
def onednn_broken(monkeypatch):
    """oneDNN's private operators as if they had failed the capability check (a build without them, or a torch
    release that changed them); the once-per-process warning is re-armed for the test."""
    monkeypatch.setattr(frozen_linear, "_onednn_probe", lambda: False)
    frozen_linear._warn_fallback.cache_clear()
    yield
    frozen_linear._warn_fallback.cache_clear()


@pytest.mark.parametrize("broken", [None, "no_onednn", "raises", "wrong"])
def test_capability_check_catches_a_changed_operator(monkeypatch, broken):
    """The check runs the private operators and compares them with F.linear: the real ones pass; a build without
    oneDNN, an operator that raises or one that computes something else fails it (``__wrapped__``: the check
    itself, without its per-process cache)."""
    if not torch.backends.mkldnn.is_available():
        pytest.skip("this torch build has no oneDNN")
    real = torch.ops.mkldnn._linear_pointwise

    def fake(*args):
        if broken == "raises":
            raise RuntimeError("mkldnn: unsupported")
        return real(*args) + 1.0

    if broken == "no_onednn":
        monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    elif broken is not None:
        monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", fake)
    assert frozen_linear._onednn_probe.__wrapped__() is (broken is None)


def test_onednn_falls_back_to_the_public_path_with_one_warning(onednn_broken):
    torch.manual_seed(5)
    model = Transformer(TransformerConfig(vocab_size=200, hidden_size=64, num_layers=3, num_heads=4,
                                          intermediate_size=128, hidden_act="gelu_new")).eval()
    ids = torch.randint(1, 200, (2, 9))
    import warnings

    with torch.inference_mode():
        plain = model(ids).last_hidden_state
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with model.fast_inference("onednn"):  # 3 blocks, 9 FrozenLinear snapshots: one warning
                fast = model(ids).last_hidden_state
            with model.fast_inference("onednn"):
                model(ids)
            with model.fast_inference("auto"):  # auto picks the public path silently
                auto = model(ids).last_hidden_state
    fallbacks = [w for w in caught if issubclass(w.category, OneDNNFallbackWarning)]
    assert len(fallbacks) == 1, [str(w.message) for w in caught]
    assert "public F.linear path" in str(fallbacks[0].message)
    assert torch.equal(fast, plain)  # the fallback is the public path: same bits as the plain forward
    assert torch.equal(auto, plain)
    assert all(b.ffn._frozen is None for b in model.blocks)


@pytest.mark.parametrize("act", ["gelu", "gelu_new"])
def test_fused_gelu_fallback_applies_the_activation(onednn_broken, act):
    from kexue.nn.activations import get_activation

    torch.manual_seed(6)
    lin = nn.Linear(16, 32)
    x = torch.randn(3, 16)
    with pytest.warns(OneDNNFallbackWarning):
        frozen = FrozenLinear([lin], "onednn", gelu=act)
    assert frozen.kernel == "torch"
    with torch.no_grad():
        assert torch.equal(frozen(x), get_activation(act)(lin(x)))
