"""Recompute (kexue.fm/archives/7367): gradients equal to the plain model's with dropout on (the RNG state is
restored), on a kexue Transformer (its config switch, the generic per-block wrapper, every other block), on a
transformers BERT (against its own ``gradient_checkpointing_enable``), with a frozen embedding; skipped in eval mode
and without autograd; autograd keeps far fewer tensors; tail_once never re-runs the FFN down projection;
refusals and undo."""

from __future__ import annotations

import copy
import importlib

import pytest
import torch
from torch import nn

from kexue.models import Transformer, TransformerConfig
from kexue.train import disable_recompute, enable_recompute, find_blocks, is_recomputed, recompute

R = importlib.import_module("kexue.train.recompute")  # the module (kexue.train.recompute is the function)

CFG = dict(vocab_size=80, hidden_size=64, num_layers=4, num_heads=4, intermediate_size=128,
           max_position_embeddings=32, hidden_dropout=0.2, attention_dropout=0.2, with_mlm=True)


def _kexue(**kw) -> Transformer:
    torch.manual_seed(0)
    return Transformer(TransformerConfig(**{**CFG, **kw})).train()


def _batch():
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(1, 80, (4, 16), generator=g)
    mask = torch.ones(4, 16, dtype=torch.long)
    mask[0, 11:] = 0
    return ids, mask


def _kexue_grads(model: Transformer) -> dict[str, torch.Tensor]:
    ids, mask = _batch()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(123)  # the same dropout masks in every run
    model(ids, attention_mask=mask).mlm_logits.logsumexp(-1).mean().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _assert_same(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert got.keys() == want.keys()
    for n in want:
        torch.testing.assert_close(got[n], want[n], atol=1e-6, rtol=1e-5, msg=n)


@pytest.mark.parametrize("how", ["config", "config_block", "module_list", "every_2"])
def test_kexue_gradients_equal_with_dropout(how):
    want = _kexue_grads(_kexue())
    model = _kexue()
    if how.startswith("config"):
        blocks = enable_recompute(model, policy="block" if how == "config_block" else None)
        assert model.config.gradient_checkpointing and blocks == list(model.blocks)
        assert model.config.recompute_policy == ("block" if how == "config_block" else "tail_once")
    elif how == "module_list":
        blocks = enable_recompute(model.blocks)
        assert all(is_recomputed(b) for b in model.blocks)
    else:
        blocks = enable_recompute(model, every=2)
        assert [is_recomputed(b) for b in model.blocks] == [True, False, True, False]
    _assert_same(_kexue_grads(model), want)
    assert sorted(model.state_dict()) == sorted(_kexue().state_dict())  # the wrapper adds no keys


def test_dropout_is_really_on_and_the_rng_really_matters():
    """Guard for the test above: two different dropout draws give different gradients."""
    model = _kexue()
    a = _kexue_grads(model)
    ids, mask = _batch()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(7)
    model(ids, attention_mask=mask).mlm_logits.logsumexp(-1).mean().backward()
    assert not torch.allclose(model.blocks[0].ffn.up.weight.grad, a["blocks.0.ffn.up.weight"])


def test_frozen_embedding_still_gives_block_gradients():
    """Block inputs that do not require grad: the reentrant form would return no gradient; ours does."""
    ref = _kexue()
    ref.embeddings.requires_grad_(False)
    want = _kexue_grads(ref)
    model = _kexue()
    model.embeddings.requires_grad_(False)
    enable_recompute(model.blocks)
    got = _kexue_grads(model)
    assert any(n.startswith("blocks.0.") for n in got)
    _assert_same(got, want)


def test_recompute_keeps_far_fewer_tensors_for_backward(saved_bytes):
    ids, mask = _batch()
    plain, ckpt = _kexue(), _kexue()
    enable_recompute(ckpt.blocks)
    b_plain = saved_bytes(lambda: plain(ids, attention_mask=mask))
    b_ckpt = saved_bytes(lambda: ckpt(ids, attention_mask=mask))
    assert b_ckpt < b_plain / 4, (b_plain, b_ckpt)


def test_both_policies_keep_one_tensor_per_block(saved_bytes):
    """The post's recompute keeps each block's input; tail_once each block's pre-norm sum instead (the last
    post-norm block is checkpointed whole): the same bytes, far below the plain model's."""
    ids, mask = _batch()
    plain, tail, block = _kexue(), _kexue(), _kexue()
    enable_recompute(tail)
    enable_recompute(block, policy="block")
    b_plain, b_tail, b_block = (saved_bytes(lambda m=m: m(ids, attention_mask=mask)) for m in (plain, tail, block))
    assert b_tail == b_block < b_plain / 4, (b_plain, b_tail, b_block)


class _OpCount(torch.utils._python_dispatch.TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[str(func)] = self.counts.get(str(func), 0) + 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("norm", ["post", "pre", "none"])
def test_tail_once_never_reruns_the_down_projection(norm):
    """Backward re-runs q, k, v, o and the FFN up projection of each block (5 fused products) under tail_once, all
    six under the post's recompute of a post-norm block, none without recompute."""
    ids, mask = _batch()
    counts = {}
    for policy in ("tail_once", "block", None):
        model = _kexue(norm=norm, with_mlm=False)
        if policy:
            enable_recompute(model, policy=policy)
        out = model(ids, attention_mask=mask).last_hidden_state.pow(2).mean()
        with _OpCount() as c:
            out.backward()
        counts[policy] = (c.counts.get("aten.addmm.default", 0), c.counts.get("aten.random_.from", 0))
    n = 4  # blocks
    # random draws in backward, per block: the seeded FFN-output mask drawn again (all policies); the attention
    # probability and attention output masks (recomputes); the block recompute also the seed and the seeded mask
    # A pre-norm (or norm-free) block ends with its tail, which keeps nothing: there the post's checkpoint stops
    # early before the down projection too; a post-norm block ends with a norm that keeps its input.
    # tail_once checkpoints the last post-norm block whole: it re-runs that block's down projection and draws two
    # masks more.
    block, tail = ((6 * n, 5 * n), (5 * n + 1, 3 * n + 2)) if norm == "post" else ((5 * n, 3 * n), (5 * n, 3 * n))
    assert counts == {"tail_once": tail, "block": block, None: (0, n)}


def test_skipped_in_eval_mode_and_without_grad(monkeypatch):
    calls = []
    real = R.checkpoint
    monkeypatch.setattr(R, "checkpoint", lambda *a, **k: calls.append(1) or real(*a, **k))
    model = _kexue()
    enable_recompute(model.blocks)
    ids, mask = _batch()
    with torch.no_grad():
        model(ids, attention_mask=mask)
    model.eval()
    model(ids, attention_mask=mask)
    assert calls == []
    model.train()
    model(ids, attention_mask=mask).last_hidden_state.sum().backward()
    assert len(calls) == 4


def test_incremental_decoding_with_a_cache_runs_blocks_plainly():
    """A kexue block given its key/value cache (a dict) must not be recomputed (it would append twice)."""
    model = _kexue(mask_type="lm", hidden_dropout=0.0, attention_dropout=0.0)
    enable_recompute(model.blocks)
    ids, _ = _batch()
    full = model(ids).mlm_logits
    cache = model.new_cache()
    parts = [model(ids[:, :6], cache=cache).mlm_logits] + [model(ids[:, t:t + 1], cache=cache).mlm_logits
                                                         for t in range(6, 16)]
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=0)


def _hf_model():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=80, hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                                  intermediate_size=128, max_position_embeddings=32, hidden_dropout_prob=0.2,
                                  attention_probs_dropout_prob=0.2)
    return transformers.BertModel(cfg).train()


def _hf_grads(model) -> dict[str, torch.Tensor]:
    ids, mask = _batch()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(321)
    model(input_ids=ids, attention_mask=mask).last_hidden_state.pow(2).mean().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_transformers_bert_equal_to_plain_and_to_its_own_checkpointing():
    want = _hf_grads(_hf_model())
    ours = _hf_model()
    blocks = enable_recompute(ours)
    assert blocks == list(ours.encoder.layer)
    _assert_same(_hf_grads(ours), want)
    theirs = _hf_model()
    if hasattr(theirs, "activation_checkpointing_enable"):  # transformers >= 5
        theirs.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        theirs.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    _assert_same(_hf_grads(theirs), want)
    with pytest.raises(ValueError, match="transformers' own gradient checkpointing is on"):
        enable_recompute(theirs)


def test_recompute_a_function():
    torch.manual_seed(0)
    lin = nn.Linear(8, 8)
    drop = nn.Dropout(0.3)

    def f(x):
        return drop(torch.tanh(lin(x))).sum(-1)

    x = torch.randn(5, 8)
    grads = []
    for fn in (f, recompute(f)):
        lin.zero_grad()
        torch.manual_seed(9)
        fn(x).sum().backward()
        grads.append(lin.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1], atol=1e-7, rtol=0)
    with pytest.raises(TypeError, match="got int"):
        recompute(3)


def test_refusals_undo_and_copies():
    with pytest.raises(ValueError, match="BatchNorm with running statistics"):
        enable_recompute(nn.ModuleList([nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)) for _ in range(2)]))
    with pytest.raises(ValueError, match="every >= 1, got 0"):
        enable_recompute(_kexue(), every=0)
    with pytest.raises(ValueError, match="unknown policy 'layer'"):
        enable_recompute(_kexue(), policy="layer")
    with pytest.raises(ValueError, match="policy='tail_once' is a kexue Transformer's own"):
        enable_recompute(_kexue().blocks, policy="tail_once")
    with pytest.raises(ValueError, match="unknown recompute_policy 'layer'"):
        TransformerConfig(**CFG, recompute_policy="layer")
    with pytest.raises(ValueError, match="found no stack of blocks in Linear"):
        enable_recompute(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="no module of type Conv1d"):
        find_blocks(_kexue(), block_types=[nn.Conv1d])
    model = _kexue()
    enable_recompute(model.blocks)
    twin = copy.deepcopy(model)
    assert all(b.forward.module is b for b in twin.blocks)  # the copy's wrappers call the copy
    assert disable_recompute(model) == 4
    assert not any(is_recomputed(b) for b in model.blocks) and "forward" not in model.blocks[0].__dict__
    m2 = _kexue()
    enable_recompute(m2)
    assert disable_recompute(m2) == 4 and not m2.config.gradient_checkpointing
    shared = TransformerConfig(**CFG)
    a, b = Transformer(shared), Transformer(shared)
    enable_recompute(a)
    assert not b.config.gradient_checkpointing  # the switch went to a copy of the shared config
