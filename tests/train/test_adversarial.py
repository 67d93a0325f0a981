"""FGM (kexue.fm/archives/7234): the perturbation against a hand-built reference model, both named forms, the
first-order equivalence with the gradient penalty (central finite difference in ε, float64), exact restore (also
after an exception), gradient accumulation, GradScaler, bf16 autocast, kexue against transformers on the same weights.
"""

from __future__ import annotations

import copy
from typing import Any, get_args

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kexue.models import Transformer, TransformerConfig
from kexue.train import (
    FGM,
    FGM_PRESETS,
    FGMLosses,
    FGMPreset,
    embedding_gradient_penalty,
    fgm_step,
    find_input_embedding,
    input_grad_penalty,
    perturbation,
)


class Bag(nn.Module):
    """Embedding -> masked mean pool -> MLP."""

    def __init__(self, vocab: int = 20, dim: int = 6, hidden: int = 8, classes: int = 3) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim, padding_idx=0)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, classes))

    def head(self, e: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1).to(e.dtype)
        return self.mlp((e * m).sum(1) / m.sum(1))

    def forward(self, batch) -> torch.Tensor:
        ids, mask, _ = batch
        return self.head(self.emb(ids), mask)


def loss_fn(model: nn.Module, batch) -> torch.Tensor:
    return F.cross_entropy(model(batch), batch[2])


def _setup(seed: int = 0, dtype=torch.float64):
    torch.manual_seed(seed)
    model = Bag().to(dtype)
    g = torch.Generator().manual_seed(seed + 1)
    ids = torch.randint(1, 20, (4, 7), generator=g)
    ids[1, :3] = ids[0, :3]  # repeated tokens
    ids[2, 4] = ids[2, 5]
    mask = torch.ones(4, 7, dtype=torch.long)
    mask[3, 5:] = 0
    ids = ids.masked_fill(mask == 0, 0)
    y = torch.randint(0, 3, (4,), generator=g)
    return model, (ids, mask, y)


def _grads(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _manual_weight_fgm(model: Bag, batch, epsilon: float, norm: str, clean_too: bool) -> dict[str, torch.Tensor]:
    """A copy of the model with E + δ built by hand (bert4keras: δ = ε·G/(‖G‖_F + 1e-8), G = ∂L/∂E)."""
    ref = copy.deepcopy(model)
    G = torch.autograd.grad(loss_fn(ref, batch), ref.emb.weight)[0]
    if norm == "l2":
        delta = epsilon * G / (G.pow(2).sum().sqrt() + 1e-8)
    elif norm == "row":
        delta = epsilon * G / (G.pow(2).sum(-1, keepdim=True).sqrt() + 1e-8)
    else:
        delta = epsilon * G.sign()
    ref.zero_grad()
    if clean_too:
        loss_fn(ref, batch).backward()
    with torch.no_grad():
        ref.emb.weight += delta
    loss_fn(ref, batch).backward()
    return _grads(ref)


@pytest.mark.parametrize("norm", ["l2", "row", "sign"])
@pytest.mark.parametrize("update", ["adv_only", "clean+adv"])
def test_weight_scope_matches_hand_built_perturbation(norm, update):
    model, batch = _setup()
    before = model.emb.weight.detach().clone()
    want = _manual_weight_fgm(model, batch, 0.3, norm, clean_too=update == "clean+adv")
    fgm = FGM(model, epsilon=0.3, norm=norm, scope="weight", update=update)
    fgm_step(model, batch, loss_fn, None, fgm)
    assert torch.equal(model.emb.weight, before)  # restored bit for bit
    got = _grads(model)
    assert got.keys() == want.keys()
    for n in want:
        torch.testing.assert_close(got[n], want[n], rtol=1e-12, atol=1e-14, msg=n)


def test_named_forms():
    model, _ = _setup()
    post, common = FGM.preset("post", model), FGM.preset("pytorch", model, epsilon=2.0)
    assert (post.epsilon, post.norm, post.scope, post.update) == (0.5, "l2", "weight", "adv_only")
    assert (common.epsilon, common.update) == (2.0, "clean+adv")
    assert FGM_PRESETS.keys() == set(get_args(FGMPreset))
    bad: Any = "keras"
    with pytest.raises(ValueError, match=r"^expected name to be one of \['post', 'pytorch'\], got 'keras'$"):
        FGM.preset(bad, model)


def test_delta_inside_the_block_and_perturbation_norms():
    model, batch = _setup(1)
    before = model.emb.weight.detach().clone()
    fgm = FGM(model, epsilon=0.7, norm="l2")
    with fgm.perturbed(loss_fn(model, batch)):
        delta = model.emb.weight.detach() - before
    touched = delta.ne(0).any(-1)
    assert set(touched.nonzero().flatten().tolist()) <= set(batch[0].unique().tolist()) - {0}
    assert float(delta.norm()) == pytest.approx(0.7, rel=1e-6)
    assert fgm.last_delta_norm == pytest.approx(float(delta.norm()), rel=1e-12)  # 0.7 up to the 1e-8 guard
    g = torch.randn(5, 4, dtype=torch.float64)
    g[2] = 0
    rows = perturbation(g, 0.5, "row").norm(dim=-1)
    torch.testing.assert_close(rows[[0, 1, 3, 4]], torch.full((4,), 0.5, dtype=torch.float64))
    assert float(rows[2]) == 0.0
    torch.testing.assert_close(perturbation(g, 0.5, "sign"), 0.5 * g.sign())


def test_output_scope_matches_hand_built_and_masks_padding():
    model, batch = _setup(2)
    ids, mask, y = batch
    ref = copy.deepcopy(model)
    e = ref.emb(ids)
    G = torch.autograd.grad(F.cross_entropy(ref.head(e, mask), y), e)[0] * mask.unsqueeze(-1)
    delta = 0.4 * G / (G.norm() + 1e-8)
    F.cross_entropy(ref.head(ref.emb(ids) + delta, mask), y).backward()
    fgm = FGM(model, epsilon=0.4, scope="output")
    fgm_step(model, batch, loss_fn, None, fgm, mask=mask)
    got = _grads(model)
    assert got.keys() == _grads(ref).keys()
    for n, want in _grads(ref).items():
        torch.testing.assert_close(got[n], want, rtol=1e-12, atol=1e-14, msg=n)
    fgm.remove()
    assert not model.emb._forward_hooks
    with pytest.raises(ValueError, match=r"^expected mask=None with scope='weight' .*got a mask$"):
        with FGM(model).perturbed(loss_fn(model, batch), mask=mask):
            pass


def test_output_scope_perturbs_each_position_not_each_token():
    """With the row norm on the output scope every real position moves by exactly ε, repeated tokens separately."""
    model, batch = _setup(3)
    ids, mask, _ = batch
    fgm = FGM(model, epsilon=0.25, norm="row", scope="output", eps=0.0)
    clean_out = model.emb(ids).detach()
    loss = loss_fn(model, batch)
    with fgm.perturbed(loss, mask=mask):
        moved = model.emb(ids).detach()
    norms = (moved - clean_out).norm(dim=-1)
    torch.testing.assert_close(norms[mask.bool()], torch.full((int(mask.sum()),), 0.25, dtype=torch.float64))
    assert float(norms[~mask.bool()].abs().max()) == 0.0
    assert not torch.allclose(moved[1, 0] - clean_out[1, 0], moved[0, 0] - clean_out[0, 0])  # same token, own δ


def _fd_check(make_fgm, penalty_fn, seed: int):
    """d/dε ∇_θ L(x + ε·ĝ) at ε = 0 (central difference of FGM gradients) against ∇_θ of the matching
    penalty ‖g‖ alone (the first-order equivalence of the post: ∇_θ L(x + εĝ) ≈ ∇_θ[L + ε‖g‖]), in float64: the
    error shrinks as O(ε²)."""
    model, batch = _setup(seed)
    model.zero_grad()
    penalty_fn(model, batch).backward()
    want = _grads(model)

    def fgm_grads(eps: float) -> dict[str, torch.Tensor]:
        model.zero_grad()
        fgm = make_fgm(model, eps)
        fgm_step(model, batch, loss_fn, None, fgm)
        if hasattr(fgm, "remove"):
            fgm.remove()
        return _grads(model)

    errs = []
    for h in (1e-2, 1e-3):
        plus = fgm_grads(h)
        # ε → −ε: the same direction, the opposite step (FGM's ε must be ≥ 0, so flip through the loss sign)
        minus = _fgm_grads_negative(model, batch, make_fgm, h)
        fd = {n: (plus[n] - minus[n]) / (2 * h) for n in want}
        errs.append(max(float((fd[n] - want[n]).abs().max()) for n in want))
    scale = max(float(v.abs().max()) for v in want.values())
    assert scale > 1e-4
    assert errs[1] < 1e-6 * scale, errs
    assert errs[1] < errs[0] / 50, errs


def _fgm_grads_negative(model, batch, make_fgm, h):
    """The gradient at x − h·ĝ: FGM with ε = h on a flipped clean loss (−L has gradient −g), then the real loss."""
    model.zero_grad()
    fgm = make_fgm(model, h)
    with fgm.perturbed(-loss_fn(model, batch)):
        loss_fn(model, batch).backward()
    if hasattr(fgm, "remove"):
        fgm.remove()
    return _grads(model)


def test_output_scope_fgm_is_first_order_the_norm_penalty():
    def penalty(model, batch):
        ids, mask, y = batch
        e = model.emb(ids)
        loss = F.cross_entropy(model.head(e, mask), y)
        return embedding_gradient_penalty(loss, e, epsilon=1.0, form="norm")

    _fd_check(lambda m, eps: FGM(m, epsilon=eps, scope="output", eps=0.0), penalty, seed=4)


def test_weight_scope_fgm_is_first_order_the_matrix_norm_penalty():
    """The weight scope pairs with the penalty on the *matrix* gradient (repeated tokens summed), not the output one."""
    def penalty(model, batch):
        loss = loss_fn(model, batch)
        return input_grad_penalty(loss, model.emb.weight, weight=1.0, form="norm")

    _fd_check(lambda m, eps: FGM(m, epsilon=eps, scope="weight", eps=0.0), penalty, seed=5)


def test_restored_after_an_exception_and_refusals():
    model, batch = _setup(6)
    before = model.emb.weight.detach().clone()
    fgm = FGM(model)
    with pytest.raises(KeyError, match="boom"):
        with fgm.perturbed(loss_fn(model, batch)):
            assert not torch.equal(model.emb.weight, before)
            raise KeyError("boom")
    assert torch.equal(model.emb.weight, before)
    with pytest.raises(RuntimeError, match=r"^expected FGM.perturbed\(\) blocks one after another, got one inside"):
        with fgm.perturbed(loss_fn(model, batch)):
            with fgm.perturbed(loss_fn(model, batch)):
                pass
    assert torch.equal(model.emb.weight, before)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(RuntimeError, match=r"^expected the embedding weight unchanged inside FGM.perturbed"):
        with fgm.perturbed(loss_fn(model, batch)):
            loss_fn(model, batch).backward()
            opt.step()
    assert not torch.equal(model.emb.weight, before)  # the step's change is kept (δ taken back off)


def test_error_messages():
    model, batch = _setup()
    for kw, msg in ((dict(norm="l1"), r"expected norm to be one of \['l2', 'row', 'sign'\], got 'l1'"),
                    (dict(scope="table"), r"expected scope to be one of \['weight', 'output'\], got 'table'"),
                    (dict(update="adv"), r"expected update to be one of \['adv_only', 'clean\+adv'\], got 'adv'"),
                    (dict(epsilon=-1.0), r"expected epsilon >= 0.0, got -1.0"),
                    (dict(eps=-1e-8), r"expected eps >= 0.0, got -1e-08")):
        with pytest.raises(ValueError, match=f"^{msg}$"):
            FGM(model, **kw)
    with pytest.raises(ValueError, match=r"^expected norm to be one of \['l2', 'row', 'sign'\], got 'l1'$"):
        bad_norm: Any = "l1"
        perturbation(torch.ones(2), 0.5, bad_norm)
    model.emb.weight.requires_grad_(False)
    with pytest.raises(ValueError, match="^expected an embedding weight that requires grad for scope='weight', got a"):
        with FGM(model).perturbed(loss_fn(model, batch)):
            pass
    model.emb.weight.requires_grad_(True)
    other = nn.Embedding(3, 2)
    with pytest.raises(ValueError, match="^expected model to contain the FGM's embedding, got a Bag without it$"):
        fgm_step(model, batch, loss_fn, None, FGM(other))
    with pytest.raises(RuntimeError, match="^expected a clean loss that depends on the FGM's embedding"):
        with FGM(other).perturbed(loss_fn(model, batch)):
            pass
    with pytest.raises(ValueError, match="expected loss to be a scalar tensor \\(the clean loss\\)"):
        with FGM(model).perturbed(torch.ones(2, requires_grad=True)):
            pass


def test_gradient_accumulation_uses_each_micro_batch_own_delta():
    model, batch = _setup(7)
    halves = [tuple(t[:2] for t in batch), tuple(t[2:] for t in batch)]
    fgm = FGM.preset("pytorch", model)  # clean + adv: the copied code would read .grad, which holds both halves

    def half_loss(m, b):
        return loss_fn(m, b) / 2

    want: dict[str, torch.Tensor] = {}
    for h in halves:
        model.zero_grad()
        fgm_step(model, h, half_loss, None, fgm)
        for n, g in _grads(model).items():
            want[n] = want.get(n, 0) + g
    model.zero_grad()
    for h in halves:
        fgm_step(model, h, half_loss, None, fgm)
    for n, g in _grads(model).items():
        torch.testing.assert_close(g, want[n], rtol=1e-12, atol=1e-15, msg=n)


def test_grad_scaler_gives_the_unscaled_step():
    model, batch = _setup(8, dtype=torch.float32)
    ref = copy.deepcopy(model)
    for m, scaler in ((ref, None), (model, torch.amp.GradScaler("cpu", init_scale=2.0 ** 12))):
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        for _ in range(2):
            fgm_step(m, batch, loss_fn, opt, FGM(m, epsilon=0.5), scaler=scaler)
    for a, b in zip(ref.parameters(), model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def _tiny_kexue(**kw) -> Transformer:
    torch.manual_seed(0)
    cfg = TransformerConfig(vocab_size=60, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64,
                            max_position_embeddings=16, hidden_dropout=0.0, attention_dropout=0.0,
                            with_pooler=False, **kw)
    return Transformer(cfg)


def test_bf16_autocast_restores_exactly_and_stays_close_to_float32():
    model = _tiny_kexue()
    head = nn.Linear(32, 2)
    ids = torch.randint(1, 60, (4, 9), generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 0, 1])

    def lf(m, b):
        return F.cross_entropy(head(m(b).last_hidden_state.mean(1)).float(), y)

    before = model.embeddings.word.weight.detach().clone()
    grads = {}
    for dt in (None, torch.bfloat16):
        model.zero_grad()
        head.zero_grad()
        out = fgm_step(model, ids, lf, None, FGM(model, epsilon=1.0), autocast_dtype=dt)
        assert isinstance(out, FGMLosses) and out._fields == ("clean", "adversarial")
        clean, adv = out
        assert torch.equal(model.embeddings.word.weight, before)
        assert float(adv) > float(clean) - 0.05
        grads[dt] = torch.cat([p.grad.flatten() for p in model.blocks.parameters()])
    assert F.cosine_similarity(grads[None], grads[torch.bfloat16], dim=0) > 0.98


def test_kexue_and_transformers_models_give_the_same_fgm_step(tmp_path):
    transformers = pytest.importorskip("transformers")
    from kexue.models import load_pretrained

    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=64, max_position_embeddings=16, hidden_dropout_prob=0.0,
                                  attention_probs_dropout_prob=0.0)
    hf = transformers.BertModel(cfg).double()
    hf.save_pretrained(tmp_path)
    kx = load_pretrained(tmp_path).double().train()
    hf.train()
    assert find_input_embedding(hf) is hf.embeddings.word_embeddings
    assert find_input_embedding(kx) is kx.embeddings.word
    ids = torch.randint(1, 60, (3, 8), generator=torch.Generator().manual_seed(2))
    y = torch.tensor([1, 0, 1])
    heads = {}
    out = {}
    for name, model in (("hf", hf), ("kx", kx)):
        torch.manual_seed(5)
        heads[name] = nn.Linear(32, 2).double()

        def lf(m, b, head=heads[name]):
            return F.cross_entropy(head(m(b).last_hidden_state.mean(1)), y)

        for scope in ("weight", "output"):
            model.zero_grad()
            heads[name].zero_grad()
            clean, adv = fgm_step(model, ids, lf, None, FGM(model, epsilon=0.5, scope=scope))
            emb = find_input_embedding(model)
            out[name, scope] = (clean, adv, emb.weight.grad.clone(), heads[name].weight.grad.clone())
    for scope in ("weight", "output"):
        for a, b in zip(out["hf", scope], out["kx", scope]):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_find_input_embedding_by_module_reference():
    kx = _tiny_kexue()

    class Wrapper(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.word_embeddings = nn.Embedding(5, 3)  # a decoy named like an embedding: names are not used
            self.backbone = kx

    assert find_input_embedding(Wrapper()) is kx.embeddings.word
    seq = nn.Sequential(nn.Embedding(4, 2), nn.Linear(2, 2))
    assert find_input_embedding(seq) is seq[0]
    with pytest.raises(ValueError, match=r"^expected one nn.Embedding in Sequential \(it holds no kexue Transformer "
                                         r"or transformers model\), got 2"):
        find_input_embedding(nn.Sequential(nn.Embedding(4, 2), nn.Embedding(4, 2)))
    with pytest.raises(ValueError, match=r"^expected one backbone in ModuleList, got 2 \(Transformer, Transformer\)"):
        find_input_embedding(nn.ModuleList([_tiny_kexue(), _tiny_kexue()]))


def test_find_input_embedding_refuses_a_transformers_model_without_an_embedding_table():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=8, max_position_embeddings=8)

    class Odd(transformers.BertModel):
        def get_input_embeddings(self):
            return nn.Linear(2, 2)

    with pytest.raises(ValueError, match=r"^expected the input embedding of Odd to be an nn.Embedding, got Linear"):
        find_input_embedding(Odd(cfg))


def test_gradient_release_post_preset_steps_as_without_release_and_pytorch_preset_is_refused_first():
    """With gradient release (one backward per micro-step) the 'post' preset takes the clean gradient with
    autograd.grad, so its steps equal the ordinary path's; 'pytorch' (clean+adv, two backward passes) is refused by
    fgm_step before anything runs: parameters and optimizer state unchanged."""
    from kexue.optim import AccumAdam

    model, batch = _setup()
    released = copy.deepcopy(model)
    opt, opt_released = AccumAdam(model.parameters(), lr=1e-2, k=2), AccumAdam(released.parameters(), lr=1e-2, k=2)
    handle = opt_released.release_gradients()
    for _ in range(4):
        fgm_step(model, batch, loss_fn, opt, FGM.preset("post", model))
        fgm_step(released, batch, loss_fn, opt_released, FGM.preset("post", released))
    for (n, p), q in zip(model.named_parameters(), released.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-12, atol=1e-14, msg=n)

    before = copy.deepcopy(released.state_dict()), copy.deepcopy(opt_released.state_dict())
    with pytest.raises(ValueError, match=r"expected fgm\.update='adv_only' with gradient release on .*"
                                         r"got 'clean\+adv': use FGM\.preset\('post'\)"):
        fgm_step(released, batch, loss_fn, opt_released, FGM.preset("pytorch", released))
    after = released.state_dict(), opt_released.state_dict()
    for k, v in before[0].items():
        assert torch.equal(after[0][k], v), k
    assert repr(after[1]) == repr(before[1])
    handle.remove()
    fgm_step(released, batch, loss_fn, opt_released, FGM.preset("pytorch", released))  # without release: runs
