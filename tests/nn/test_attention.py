"""Attention variants: neutral settings reproduce standard attention; each variant against a hand computation."""

from __future__ import annotations

import math

import pytest
import torch

from kexue.models import CheckpointError, Transformer, TransformerConfig, load_pretrained, save_pretrained
from kexue.nn.attention import Attention

H, NH = 48, 4


def _x(b=2, t=9, seed=0):
    return torch.randn(b, t, H, generator=torch.Generator().manual_seed(seed))


def _pad_mask(b=2, t=9):
    m = torch.ones(b, t, dtype=torch.bool)
    m[0, 6:] = False
    return m


def _copy(dst: Attention, src: Attention):
    for name in ("q", "k", "v", "o"):
        getattr(dst, name).load_state_dict(getattr(src, name).state_dict())


@pytest.mark.parametrize("variant", [
    dict(impl="math"), dict(talking_heads=True), dict(talking_heads=True, talking_heads_post_softmax=True),
    dict(residual_attention=True), dict(key_size=H // NH),
])
def test_neutral_settings_equal_standard(variant):
    torch.manual_seed(0)
    std = Attention(H, NH).eval()
    var = Attention(H, NH, **variant).eval()
    _copy(var, std)
    mask = _pad_mask()[:, None, None, :]
    prev = torch.zeros(2, NH, 9, 9) if variant.get("residual_attention") else None
    out = var(_x(), mask, prev_scores=prev).output
    torch.testing.assert_close(out, std(_x(), mask).output, atol=1e-6, rtol=0)


def test_standard_matches_transformers_self_attention():
    transformers = pytest.importorskip("transformers")
    from transformers.models.bert.modeling_bert import BertAttention

    cfg = transformers.BertConfig(hidden_size=H, num_attention_heads=NH, attention_probs_dropout_prob=0.0,
                                  attn_implementation="eager")
    torch.manual_seed(0)
    ref = BertAttention(cfg).eval()
    ours = Attention(H, NH, impl="math").eval()
    for a, b in (("q", ref.self.query), ("k", ref.self.key), ("v", ref.self.value), ("o", ref.output.dense)):
        getattr(ours, a).load_state_dict(b.state_dict())
    x = _x()
    bias = torch.zeros(2, 1, 1, 9).masked_fill(~_pad_mask()[:, None, None, :], torch.finfo(torch.float32).min)
    ctx = ref.self(x, attention_mask=bias)[0]
    expected = ref.output.dense(ctx)  # BertAttention adds the residual and LayerNorm after this
    torch.testing.assert_close(ours(x, _pad_mask()[:, None, None, :]).output, expected, atol=1e-5, rtol=0)


def test_key_size_shapes_and_scale():
    a = Attention(H, NH, key_size=20, impl="math").eval()
    assert a.q.weight.shape == (NH * 20, H) and a.v.weight.shape == (H, H)
    x = _x()
    q = a.q(x).view(2, 9, NH, 20).transpose(1, 2)
    k = a.k(x).view(2, 9, NH, 20).transpose(1, 2)
    v = a.v(x).view(2, 9, NH, H // NH).transpose(1, 2)
    p = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(20), dim=-1)  # 1/√key_size, not 1/√head_size
    expected = a.o((p @ v).transpose(1, 2).reshape(2, 9, H))
    torch.testing.assert_close(a(x).output, expected, atol=1e-6, rtol=0)
    sdpa = Attention(H, NH, key_size=20).eval()
    sdpa.load_state_dict(a.state_dict())
    torch.testing.assert_close(sdpa(x).output, expected, atol=1e-6, rtol=0)


def test_unscaled_attention():
    a = Attention(H, NH, scale=False).eval()
    m = Attention(H, NH, scale=False, impl="math").eval()
    m.load_state_dict(a.state_dict())
    x = _x()
    torch.testing.assert_close(a(x).output, m(x).output, atol=1e-6, rtol=0)
    q = a.q(x).view(2, 9, NH, 12).transpose(1, 2)
    k = a.k(x).view(2, 9, NH, 12).transpose(1, 2)
    v = a.v(x).view(2, 9, NH, 12).transpose(1, 2)
    expected = a.o((torch.softmax(q @ k.transpose(-1, -2), -1) @ v).transpose(1, 2).reshape(2, 9, H))
    torch.testing.assert_close(a(x).output, expected, atol=1e-6, rtol=0)


def test_talking_heads_mix_before_mask_and_no_nan():
    torch.manual_seed(1)
    a = Attention(H, NH, talking_heads=True, talking_heads_post_softmax=True).eval()
    with torch.no_grad():
        a.pre_mix.copy_(torch.randn(NH, NH))
        a.post_mix.copy_(torch.randn(NH, NH))
    x, pad = _x(), _pad_mask()
    out = a(x, pad[:, None, None, :]).output
    assert torch.isfinite(out).all()
    q = a.q(x).view(2, 9, NH, 12).transpose(1, 2)
    k = a.k(x).view(2, 9, NH, 12).transpose(1, 2)
    v = a.v(x).view(2, 9, NH, 12).transpose(1, 2)
    logits = torch.einsum("bhij,gh->bgij", q @ k.transpose(-1, -2) / math.sqrt(12), a.pre_mix)
    logits = logits.masked_fill(~pad[:, None, None, :], float("-inf"))
    p = torch.einsum("bhij,gh->bgij", torch.softmax(logits, -1), a.post_mix)
    expected = a.o((p @ v).transpose(1, 2).reshape(2, 9, H))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    # padded keys get no weight: changing them leaves the real positions of sample 0 unchanged
    x2 = x.clone()
    x2[0, 6:] = torch.randn(3, H)
    torch.testing.assert_close(a(x2, pad[:, None, None, :]).output[0, :6], out[0, :6], atol=1e-5, rtol=0)


def _model(**kw):
    cfg = TransformerConfig(vocab_size=50, hidden_size=H, num_layers=3, num_heads=NH, intermediate_size=64,
                            max_position_embeddings=16, hidden_dropout=0.0, attention_dropout=0.0, **kw)
    torch.manual_seed(0)
    return Transformer(cfg).eval()


def test_realformer_carries_the_running_sum():
    model = _model(residual_attention=True)
    ids = torch.randint(1, 50, (2, 9), generator=torch.Generator().manual_seed(3))
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[0, 6:] = 0
    # hand loop: A_n = Σ_{k≤n} Q_k K_kᵀ/√d, the mask added freshly in each layer
    x = model.embeddings(ids, None, None)
    total = torch.zeros(2, NH, 9, 9)
    bool_mask = mask.bool()[:, None, None, :]
    for block in model.blocks:
        a = block.attn
        q = a.q(x).view(2, 9, NH, 12).transpose(1, 2)
        k = a.k(x).view(2, 9, NH, 12).transpose(1, 2)
        v = a.v(x).view(2, 9, NH, 12).transpose(1, 2)
        total = total + q @ k.transpose(-1, -2) / math.sqrt(12)
        _, carried = block(x, bool_mask, total - q @ k.transpose(-1, -2) / math.sqrt(12))
        torch.testing.assert_close(carried, total, atol=1e-5, rtol=0)
        p = torch.softmax(total.masked_fill(~bool_mask, float("-inf")), -1)
        h = block.attn_norm(x + a.o((p @ v).transpose(1, 2).reshape(2, 9, H)))
        x = block.ffn_norm(h + block.ffn(h))
    out = model(ids, attention_mask=mask).last_hidden_state
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)


def test_realformer_matches_scores_passed_to_sdpa():
    """A second implementation: each layer's carried scores given to SDPA as an additive float mask."""
    model = _model(residual_attention=True)
    ids = torch.randint(1, 50, (2, 9), generator=torch.Generator().manual_seed(4))
    pad = torch.ones(2, 9, dtype=torch.bool)
    pad[1, 5:] = False
    x = model.embeddings(ids, None, None)
    prev = torch.zeros(2, NH, 9, 9)
    neg = torch.zeros(2, 1, 1, 9).masked_fill(~pad[:, None, None, :], torch.finfo(torch.float32).min)
    for block in model.blocks:
        a = block.attn
        q = a.q(x).view(2, 9, NH, 12).transpose(1, 2)
        k = a.k(x).view(2, 9, NH, 12).transpose(1, 2)
        v = a.v(x).view(2, 9, NH, 12).transpose(1, 2)
        o = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=prev + neg)
        prev = prev + q @ k.transpose(-1, -2) / math.sqrt(12)
        h = block.attn_norm(x + a.o(o.transpose(1, 2).reshape(2, 9, H)))
        x = block.ffn_norm(h + block.ffn(h))
    torch.testing.assert_close(model(ids, attention_mask=pad.long()).last_hidden_state, x, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["linear", "performer", "taylor", "exp_limit"])
def test_linear_kinds_in_the_model(kind):
    model = _model(attention=kind, performer_features=64)
    ids = torch.randint(1, 50, (2, 9), generator=torch.Generator().manual_seed(5))
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[0, 6:] = 0
    out = model(ids, attention_mask=mask).last_hidden_state
    alone = model(ids[:1, :6]).last_hidden_state
    torch.testing.assert_close(out[:1, :6], alone, atol=1e-5, rtol=0)  # padding changes nothing
    causal = _model(attention=kind, mask_type="lm", performer_features=64)
    changed = ids.clone()
    changed[:, 7:] = 3
    a, b = causal(ids).last_hidden_state, causal(changed).last_hidden_state
    torch.testing.assert_close(a[:, :7], b[:, :7], atol=1e-5, rtol=0)
    assert (a[:, 7:] - b[:, 7:]).abs().max() > 1e-4


def test_variants_train_and_state_dict_round_trip():
    model = _model(talking_heads=True, talking_heads_post_softmax=True, residual_attention=True,
                   attention_key_size=20).train()
    ids = torch.randint(1, 50, (2, 9))
    model(ids).last_hidden_state.sum().backward()
    assert model.blocks[0].attn.pre_mix.grad is not None
    again = _model(talking_heads=True, talking_heads_post_softmax=True, residual_attention=True,
                   attention_key_size=20)
    again.load_state_dict(model.state_dict())
    torch.testing.assert_close(again.eval()(ids).last_hidden_state, model.eval()(ids).last_hidden_state)
    assert torch.equal(_model(talking_heads=True).blocks[1].attn.pre_mix, torch.eye(NH))


#: (config fields, Attention arguments, the message with the config's names, with Attention's names): one rule each,
#: checked once by check_attention and named as each caller writes it.
ATTENTION_RULES = [
    (dict(talking_heads=True, attn_impl="sdpa"), dict(talking_heads=True, impl="sdpa"),
     r"expected attn_impl 'auto' or 'math' with talking_heads or residual_attention \(they need the score matrix, "
     r"which fused SDPA does not expose\), got attn_impl='sdpa'",
     r"expected impl 'auto' or 'math' with talking_heads or residual_attention .*got impl='sdpa'"),
    (dict(residual_attention=True, attention="linear"), dict(residual_attention=True, kind="linear"),
     r"expected attention='softmax' with talking_heads or residual_attention .*, got attention='linear'",
     r"expected kind='softmax' with talking_heads or residual_attention .*, got kind='linear'"),
    (dict(attention="taylor", linear_attention_order=3), dict(kind="taylor", feature_order=3),
     r"expected an even linear_attention_order .*got linear_attention_order=3",
     r"expected an even feature_order .*got feature_order=3"),
    (dict(attention="exp_limit", linear_attention_order=0), dict(kind="exp_limit", feature_order=0),
     r"expected linear_attention_order >= 1, got 0", r"expected feature_order >= 1, got 0"),
    (dict(attention="cosine"), dict(kind="cosine"),
     r"expected attention to be one of \['softmax', 'linear', 'performer', 'taylor', 'exp_limit'\], got 'cosine'",
     r"expected kind to be one of \['softmax', .*\], got 'cosine'"),
    (dict(attn_impl="flash"), dict(impl="flash"),
     r"expected attn_impl to be one of \['auto', 'sdpa', 'math'\], got 'flash'",
     r"expected impl to be one of \['auto', 'sdpa', 'math'\], got 'flash'"),
    (dict(talking_heads_post_softmax=True), dict(talking_heads_post_softmax=True),
     r"expected talking_heads=True with talking_heads_post_softmax=True .*got talking_heads=False",
     r"expected talking_heads=True with talking_heads_post_softmax=True .*got talking_heads=False"),
    (dict(attention_key_size=0), dict(key_size=0), r"expected attention_key_size >= 1, got 0",
     r"expected key_size >= 1, got 0"),
    (dict(performer_features=0), dict(num_features=0), r"expected performer_features >= 1, got 0",
     r"expected num_features >= 1, got 0"),
    (dict(attention_dropout=1.0), dict(dropout=1.0), r"expected attention_dropout < 1.0, got 1.0",
     r"expected dropout < 1.0, got 1.0"),
    (dict(hidden_size=50), dict(hidden_size=50), r"expected hidden_size divisible by num_heads \(50 % 4 = 2\)",
     r"expected hidden_size divisible by num_heads \(50 % 4 = 2\)"),
]


@pytest.mark.parametrize("config_kw,attention_kw,config_pattern,attention_pattern", ATTENTION_RULES)
def test_config_and_attention_refuse_with_one_rule(config_kw, attention_kw, config_pattern, attention_pattern):
    with pytest.raises(ValueError, match=config_pattern):
        TransformerConfig(**{"vocab_size": 50, "hidden_size": H, "num_heads": NH, **config_kw})
    with pytest.raises(ValueError, match=attention_pattern):
        Attention(**{"hidden_size": H, "num_heads": NH, **attention_kw})


def test_check_attention_is_the_one_check(monkeypatch):
    """TransformerConfig and Attention both call nn.attention.check_attention (so neither has a rule of its own)."""
    from kexue.models import config as config_module
    from kexue.nn import attention as attention_module

    calls = []

    def spy(*args, **kwargs):
        calls.append(kwargs.get("names"))

    monkeypatch.setattr(config_module, "check_attention", spy)
    monkeypatch.setattr(attention_module, "check_attention", spy)
    TransformerConfig(vocab_size=50, hidden_size=H, num_heads=NH, attention="cosine")  # not refused: the spy
    Attention(H, NH, kind="cosine")
    assert calls[0]["kind"] == "attention" and calls[1] is None


@pytest.mark.parametrize("kw,pattern", [
    (dict(attention="linear", mask_type="unilm"),
     r"expected mask_type 'bidirectional' or 'lm' with attention='linear' .*got mask_type='unilm'"),
    (dict(qk_init="t5_sym"), r"expected attention_scale=False with qk_init='t5_sym' .*got attention_scale=True"),
    (dict(init="he"), r"expected init to be one of \['bert_hf', 'bert_tf', 'trunc_normal', 'fan_in', .*\], got 'he'"),
    (dict(qk_init="t5"), r"expected qk_init to be one of \['default', 't5_hf', 't5_sym'\], got 't5'"),
])
def test_config_refuses_bad_combinations(kw, pattern):
    with pytest.raises(ValueError, match=pattern):
        TransformerConfig(vocab_size=50, hidden_size=H, num_heads=NH, **kw)


def test_attention_output_is_one_type():
    """forward returns an AttentionOutput whatever the path: scores from the explicit path, None after SDPA."""
    from kexue.nn.attention import AttentionOutput

    x = _x()
    sdpa, explicit = Attention(H, NH).eval(), Attention(H, NH, residual_attention=True).eval()
    a, b = sdpa(x), explicit(x)
    assert isinstance(a, AttentionOutput) and isinstance(b, AttentionOutput)
    assert a.scores is None and b.scores is not None and b.scores.shape == (2, NH, 9, 9)
    out, scores = b
    assert out is b.output and scores is b.scores


def test_non_standard_attention_cannot_be_saved_as_hf(tmp_path):
    with pytest.raises(ValueError, match="standard softmax attention"):
        save_pretrained(_model(talking_heads=True), tmp_path)
    assert not (tmp_path / "model.safetensors").exists()


def test_loading_a_standard_checkpoint_with_another_key_size_fails_loudly(tmp_path):
    save_pretrained(_model(), tmp_path)
    with pytest.raises(CheckpointError, match=r"attention\.self\.query\.weight \(48, 48\) \(expected \(80, 48\)\)"):
        load_pretrained(tmp_path, attention_key_size=20)


def test_init_schemes():
    m = _model(init="fan_avg")
    w = m.blocks[0].ffn.up.weight
    assert w.std().item() == pytest.approx(math.sqrt(2 / (H + 64)), rel=0.1)
    big = Transformer(TransformerConfig(vocab_size=100, hidden_size=768, num_heads=12, num_layers=1,
                                        intermediate_size=3072, init="bert_tf"))
    assert big.blocks[0].ffn.up.weight.std().item() == pytest.approx(0.0176, rel=0.01)


@pytest.mark.parametrize("qk_init", ["t5_hf", "t5_sym"])
def test_t5_qk_init_gives_unit_logit_variance(qk_init):
    cfg = TransformerConfig(hidden_size=256, num_heads=4, num_layers=1, intermediate_size=64,
                            attention_scale=False, qk_init=qk_init)
    torch.manual_seed(0)
    a = Transformer(cfg).blocks[0].attn
    x = torch.randn(4096, 256)
    q, k = a.q(x).view(-1, 4, 64), a.k(x).view(-1, 4, 64)
    logits = (q[:2048] * k[2048:]).sum(-1)  # q·k of independent tokens
    assert logits.var().item() == pytest.approx(1.0, rel=0.15)


@pytest.mark.parametrize("kw,uses_sdpa", [
    (dict(), True), (dict(key_size=20), True), (dict(scale=False), True), (dict(impl="math"), False),
    (dict(talking_heads=True), False), (dict(residual_attention=True), False),
])
def test_sdpa_fast_path_is_taken_when_no_scores_are_needed(monkeypatch, kw, uses_sdpa):
    calls = []
    real = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    Attention(H, NH, **kw)(_x())
    assert bool(calls) == uses_sdpa
