"""Recompute (kexue.fm/archives/7367): gradients equal to the plain model's with dropout on (the RNG state is
restored), on a kexue Transformer (its run-time switch with either policy, the generic per-block wrapper, every other
block), on a transformers BERT (against its own ``gradient_checkpointing_enable``), with a frozen embedding; skipped
in eval mode and without autograd; autograd keeps far fewer tensors; tail_once never re-runs the FFN down
projection; the switch leaves the config alone; refusals and undo."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from kexue.models import (
    Transformer,
    TransformerConfig,
    disable_recompute,
    enable_recompute,
    find_blocks,
    is_recomputed,
    save_pretrained,
)
from kexue.models import recompute as R
from kexue.models.recompute import recompute

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


@pytest.mark.parametrize("how", ["switch", "switch_block", "module_list", "every_2"])
def test_kexue_gradients_equal_with_dropout(how):
    want = _kexue_grads(_kexue())
    model = _kexue()
    if how.startswith("switch"):
        blocks = enable_recompute(model, policy="block" if how == "switch_block" else None)
        assert model.is_gradient_checkpointing and blocks == list(model.blocks)
        assert model.checkpointing_policy == ("block" if how == "switch_block" else "tail_once")
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
    with pytest.raises(ValueError, match="expected a model without transformers' own gradient checkpointing .*, "
                                         "got one with it on"):
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
    with pytest.raises(ValueError, match="expected Sequential without BatchNorm running statistics .*got a BatchNorm "
                                         r"with them \(1\)"):
        enable_recompute(nn.ModuleList([nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)) for _ in range(2)]))
    with pytest.raises(ValueError, match="expected every >= 1, got 0"):
        enable_recompute(_kexue(), every=0)
    with pytest.raises(ValueError, match=r"expected policy to be one of \['tail_once', 'block'\], got 'layer'"):
        enable_recompute(_kexue(), policy="layer")
    with pytest.raises(ValueError, match="expected policy to be one of"):
        _kexue().gradient_checkpointing_enable(policy="layer")
    with pytest.raises(ValueError, match="got 'tail_once': it is a kexue Transformer's own"):
        enable_recompute(_kexue().blocks, policy="tail_once")
    with pytest.raises(ValueError, match="checkpointing for every > 1"):
        m1 = _kexue()
        m1.gradient_checkpointing_enable()
        enable_recompute(m1, every=2)
    with pytest.raises(ValueError, match=r"got blocks \[0, 2\] wrapped by enable_recompute"):
        m1 = _kexue()
        enable_recompute(m1, every=2)
        m1.gradient_checkpointing_enable()
    with pytest.raises(ValueError, match="expected a stack of blocks in Linear .*, found none"):
        enable_recompute(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="expected a module of type Conv1d in Transformer, found none"):
        find_blocks(_kexue(), block_types=[nn.Conv1d])
    model = _kexue()
    enable_recompute(model.blocks)
    twin = copy.deepcopy(model)
    assert all(b.forward.module is b for b in twin.blocks)  # the copy's wrappers call the copy
    assert disable_recompute(model) == 4
    assert not any(is_recomputed(b) for b in model.blocks) and "forward" not in model.blocks[0].__dict__
    m2 = _kexue()
    enable_recompute(m2)
    assert disable_recompute(m2) == 4 and not m2.is_gradient_checkpointing and m2.checkpointing_policy is None
    assert disable_recompute(m2) == 0
    shared = TransformerConfig(**CFG)
    a, b = Transformer(shared), Transformer(shared)
    enable_recompute(a)
    assert a.is_gradient_checkpointing and not b.is_gradient_checkpointing  # a switch on the model, not the config
    twin = copy.deepcopy(a)
    assert twin.checkpointing_policy == "tail_once"


@pytest.mark.parametrize("policy", ["tail_once", "block"])
def test_the_switch_leaves_the_config_and_config_json_alone(tmp_path, policy):
    """Checkpointing is a run-time switch: the model keeps the same config object, equal to a fresh one, and
    config.json is written the same with it on as off."""
    model = _kexue(with_mlm=False)
    config, before = model.config, TransformerConfig(**{**CFG, "with_mlm": False})
    save_pretrained(model, tmp_path / "off")
    model.gradient_checkpointing_enable(policy=policy)
    assert model.config is config and config == before
    save_pretrained(model, tmp_path / "on")
    off, on = ((tmp_path / d / "config.json").read_text() for d in ("off", "on"))
    assert on == off
    assert not {"gradient_checkpointing", "recompute_policy"} & set(json.loads(on))
    assert not {"gradient_checkpointing", "recompute_policy"} & set(config.to_dict())
    model.gradient_checkpointing_disable()
    assert model.config is config and not model.is_gradient_checkpointing


def test_a_config_with_the_former_fields_names_the_switch():
    for key, value in (("gradient_checkpointing", True), ("recompute_policy", "block")):
        with pytest.raises(TypeError, match=rf"expected no {key} in a TransformerConfig, got {key}=.*"
                                            r"model\.gradient_checkpointing_enable"):
            TransformerConfig(**{**CFG, key: value})
        with pytest.raises(TypeError, match=f"expected no {key}"):
            TransformerConfig(**CFG).replace(**{key: value})
        with pytest.raises(TypeError, match=f"expected no {key}"):
            TransformerConfig.from_hf({"model_type": "bert", "vocab_size": 80, "hidden_size": 64,
                                       "num_hidden_layers": 2, "num_attention_heads": 4,
                                       "intermediate_size": 128}, **{key: value})
