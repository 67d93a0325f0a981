"""Bad-input rows: kexue.train (FGM, gradient penalties, MLM masking and DropToken, exposure bias, UniLM batches).

The models are tiny: a bag-of-embeddings classifier and a two-head, one-layer kexue Transformer (hidden 8)."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F
from _matrix import Bad, check
from torch import nn

from kexue.models import Transformer, TransformerConfig
from kexue.optim import AccumAdam
from kexue.train import (
    FGM,
    DropToken,
    MLMMasking,
    RandomTokenReplacement,
    batch_param_grad_penalty,
    embedding_gradient_penalty,
    expected_embedding_correction_,
    fgm_step,
    find_input_embedding,
    gradient_penalty_loss,
    input_grad_penalty,
    input_gradients,
    pack_unilm,
    param_grad_penalty,
    penalized_unilm_loss,
    perturbation,
    record_output,
    unilm_seq2seq_loss,
)

NAN = float("nan")


class Bag(nn.Module):
    """Embedding (vocab 10, dim 4) -> mean over the sequence -> linear to 3 classes."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(10, 4)
        self.out = nn.Linear(4, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(self.emb(ids).mean(1))


IDS = torch.tensor([[1, 2, 3], [4, 5, 6]])
TARGET = torch.tensor([0, 2])


def bag_loss(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(ids), TARGET)


def _bag_loss_and_output() -> tuple[torch.Tensor, torch.Tensor]:
    model = Bag()
    with record_output(model.emb) as rec:
        loss = bag_loss(model, IDS)
    return loss, rec.output


def _transformer(**kw) -> Transformer:
    torch.manual_seed(0)
    cfg = TransformerConfig(**{**dict(vocab_size=24, hidden_size=8, num_layers=1, num_heads=2, intermediate_size=8,
                                      max_position_embeddings=16, hidden_dropout=0.0, attention_dropout=0.0,
                                      with_mlm=True, with_pooler=False, mask_type="unilm"), **kw})
    return Transformer(cfg).eval()


def _unilm_batch() -> dict[str, torch.Tensor]:
    return pack_unilm([[5, 6]], [[7, 8, 9]], cls_id=1, sep_id=2)


def _fgm_step(fgm_or_preset, model=None, loss_fn=bag_loss, optimizer=None, **kw):
    model = model if model is not None else Bag()
    fgm = FGM.preset(fgm_or_preset, model) if isinstance(fgm_or_preset, str) else fgm_or_preset(model)
    return fgm_step(model, IDS, loss_fn, optimizer, fgm, **kw)


def _fgm_step_with_release(preset: str):
    model = Bag()
    opt = AccumAdam(model.parameters(), lr=1e-3)
    opt.release_gradients()
    return fgm_step(model, IDS, bag_loss, opt, FGM.preset(preset, model))


def _perturbed_with_release():
    model = Bag()
    opt = AccumAdam(model.parameters(), lr=1e-3)
    opt.release_gradients()
    fgm = FGM.preset("pytorch", model)
    with fgm.perturbed(bag_loss(model, IDS)):
        bag_loss(model, IDS).backward()


def _perturbed(fgm_kw: dict, loss=None, **kw):
    model = Bag()
    fgm = FGM(model, **fgm_kw)
    with fgm.perturbed(bag_loss(model, IDS) if loss is None else loss(model), **kw):
        pass


def _nested_perturbed():
    model = Bag()
    fgm = FGM(model)
    with fgm.perturbed(bag_loss(model, IDS)), fgm.perturbed(bag_loss(model, IDS)):
        pass


class TwoEmbeddings(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Embedding(5, 2), nn.Embedding(5, 2)


def _masking(**kw) -> MLMMasking:
    return MLMMasking(**{**dict(mask_id=3, vocab_size=10), **kw})


def _rtr(**kw) -> RandomTokenReplacement:
    return RandomTokenReplacement(**kw)


def _load(obj, state):
    obj.load_state_dict(state)


def _per_sample_loss(params, x):
    return (x @ params["w"]).pow(2).sum()


W = {"w": torch.ones(3, 2, requires_grad=True)}


@functools.cache
def _param():
    return nn.Parameter(torch.ones(3))


def _scalar_loss_of(*xs: torch.Tensor) -> torch.Tensor:
    return sum((x * x).sum() for x in xs)


def _leaf() -> torch.Tensor:
    return torch.ones(2, 3, requires_grad=True)


def _seq2seq(logits=None, target=None, token_type_ids=None, attention_mask=None, **kw):
    target = torch.tensor([[1, 5, 2, 7, 2]]) if target is None else target
    logits = torch.zeros(1, 5, 24) if logits is None else logits
    tt = torch.tensor([[0, 0, 0, 1, 1]]) if token_type_ids is None else token_type_ids
    return unilm_seq2seq_loss(logits, target, tt, attention_mask, **kw)


def _penalized(model=None, batch=None, **kw):
    return penalized_unilm_loss(_transformer() if model is None else model, _unilm_batch() if batch is None else batch,
                                **kw)


ROWS = [
    # ---------------------------------------------------------------------------------------------- FGM
    Bad("kexue.train.FGM", "epsilon NaN", lambda: FGM(Bag(), epsilon=NAN), ValueError,
        r"expected epsilon to be finite, got nan"),
    Bad("kexue.train.FGM", "epsilon negative", lambda: FGM(Bag(), epsilon=-0.5), ValueError,
        r"expected epsilon >= 0\.0, got -0\.5"),
    Bad("kexue.train.FGM", "epsilon a string", lambda: FGM(Bag(), epsilon="0.5"), TypeError,
        r"expected epsilon to be a real number, got '0\.5'"),
    Bad("kexue.train.FGM", "eps negative", lambda: FGM(Bag(), eps=-1e-8), ValueError, r"expected eps >= 0\.0"),
    Bad("kexue.train.FGM", "unknown norm", lambda: FGM(Bag(), norm="l1"), ValueError,
        r"expected norm to be one of \['l2', 'row', 'sign'\], got 'l1'"),
    Bad("kexue.train.FGM", "unknown scope", lambda: FGM(Bag(), scope="matrix"), ValueError,
        r"expected scope to be one of .*got 'matrix'"),
    Bad("kexue.train.FGM", "unknown update", lambda: FGM(Bag(), update="adv"), ValueError,
        r"expected update to be one of .*got 'adv'"),
    Bad("kexue.train.FGM", "a model without an input embedding", lambda: FGM(nn.Linear(3, 2)), ValueError,
        r"expected one nn\.Embedding in Linear .*got 0"),
    Bad("kexue.train.FGM", "a model with two embeddings", lambda: FGM(TwoEmbeddings()), ValueError,
        r"expected one nn\.Embedding in TwoEmbeddings .*got 2"),
    Bad("kexue.train.FGM", "a tensor, not a module", lambda: FGM(torch.zeros(3, 2)), TypeError,
        r"expected model_or_embedding to be an nn\.Module, got Tensor"),
    Bad("kexue.train.FGM.preset", "unknown preset", lambda: FGM.preset("keras", Bag()), ValueError,
        r"expected name to be one of \['post', 'pytorch'\], got 'keras'"),
    Bad("kexue.train.FGM.preset", "override out of range", lambda: FGM.preset("post", Bag(), epsilon=NAN),
        ValueError, r"expected epsilon to be finite, got nan"),
    Bad("kexue.train.FGM.preset", "unknown override", lambda: FGM.preset("post", Bag(), epsilom=1.0), TypeError,
        r"epsilom"),
    Bad("kexue.train.FGM.preset", "name None", lambda: FGM.preset(None, Bag()), ValueError,
        r"expected name to be one of \['post', 'pytorch'\], got None"),
    Bad("kexue.train.FGM.perturbed", "'pytorch' preset by hand with gradient release", _perturbed_with_release,
        RuntimeError, r"expected one backward\(\) per micro-step with gradient release on"),
    Bad("kexue.train.FGM.perturbed", "loss not a scalar",
        lambda: _perturbed({}, loss=lambda m: F.cross_entropy(m(IDS), TARGET, reduction="none")), ValueError,
        r"expected loss to be a scalar tensor .*got shape \(2,\)"),
    Bad("kexue.train.FGM.perturbed", "loss without grad", lambda: _perturbed({}, loss=lambda m: torch.tensor(1.0)),
        ValueError, r"expected a clean loss that requires grad"),
    Bad("kexue.train.FGM.perturbed", "loss a float", lambda: _perturbed({}, loss=lambda m: 1.5), ValueError,
        r"expected loss to be a scalar tensor .*got float"),
    Bad("kexue.train.FGM.perturbed", "mask with scope='weight'",
        lambda: _perturbed({}, mask=torch.ones(2, 3)), ValueError, r"expected mask=None with scope='weight'"),
    Bad("kexue.train.FGM.perturbed", "mask of the wrong shape",
        lambda: _perturbed({"scope": "output"}, mask=torch.ones(2, 4)), ValueError,
        r"expected mask in the embedding output's shape \(2, 3\), got \(2, 4\)"),
    Bad("kexue.train.FGM.perturbed", "loss that does not use the embedding",
        lambda: _perturbed({}, loss=lambda m: m.out.weight.sum()), RuntimeError,
        r"expected a clean loss that depends on the FGM's embedding"),
    Bad("kexue.train.FGM.perturbed", "blocks nested", _nested_perturbed, RuntimeError,
        r"expected FGM\.perturbed\(\) blocks one after another, got one inside another"),
    Bad("kexue.train.fgm_step", "model without the FGM's embedding",
        lambda: fgm_step(Bag(), IDS, bag_loss, None, FGM(nn.Embedding(10, 4))), ValueError,
        r"expected model to contain the FGM's embedding, got a Bag without it"),
    Bad("kexue.train.fgm_step", "loss_fn returns per-sample losses",
        lambda: _fgm_step("post", loss_fn=lambda m, b: F.cross_entropy(m(b), TARGET, reduction="none")), ValueError,
        r"expected loss to be a scalar tensor .*got shape \(2,\)"),
    Bad("kexue.train.fgm_step", "mask with scope='weight'", lambda: _fgm_step("post", mask=torch.ones(2, 3)),
        ValueError, r"expected mask=None with scope='weight'"),
    Bad("kexue.train.fgm_step", "fgm not an FGM", lambda: fgm_step(Bag(), IDS, bag_loss, None, "post"), TypeError,
        r"expected fgm to be an FGM, got 'post'"),
    Bad("kexue.train.fgm_step", "'pytorch' preset with gradient release", lambda: _fgm_step_with_release("pytorch"),
        ValueError, r"expected fgm\.update='adv_only' with gradient release .*got 'clean\+adv'"),
    Bad("kexue.train.perturbation", "unknown norm", lambda: perturbation(torch.ones(3), 1.0, "linf"), ValueError,
        r"expected norm to be one of \['l2', 'row', 'sign'\], got 'linf'"),
    Bad("kexue.train.perturbation", "epsilon NaN", lambda: perturbation(torch.ones(3), NAN, "l2"), ValueError,
        r"expected epsilon to be finite, got nan"),
    Bad("kexue.train.perturbation", "eps negative", lambda: perturbation(torch.ones(3), 1.0, "l2", eps=-1.0),
        ValueError, r"expected eps >= 0\.0, got -1\.0"),
    Bad("kexue.train.perturbation", "grad a list", lambda: perturbation([1.0, 2.0], 1.0, "l2"), TypeError,
        r"expected grad to be a floating-point tensor, got list"),
    Bad("kexue.train.perturbation", "integer grad", lambda: perturbation(torch.ones(3, dtype=torch.long), 1.0, "l2"),
        TypeError, r"expected grad to be a floating-point tensor, got torch\.int64"),
    # --------------------------------------------------------------------------------- finding / recording
    Bad("kexue.train.find_input_embedding", "no embedding", lambda: find_input_embedding(nn.Linear(2, 2)),
        ValueError, r"expected one nn\.Embedding in Linear .*got 0"),
    Bad("kexue.train.find_input_embedding", "two embeddings", lambda: find_input_embedding(TwoEmbeddings()),
        ValueError, r"expected one nn\.Embedding in TwoEmbeddings .*got 2"),
    Bad("kexue.train.find_input_embedding", "two backbones",
        lambda: find_input_embedding(nn.ModuleList([_transformer(), _transformer()])), ValueError,
        r"expected one backbone in ModuleList, got 2"),
    Bad("kexue.train.find_input_embedding", "not a module", lambda: find_input_embedding("bert"), TypeError,
        r"expected model to be an nn\.Module, got str"),
    Bad("kexue.train.record_output", "not a module", lambda: record_output("emb").__enter__(), TypeError,
        r"expected module to be an nn\.Module, got str"),
    Bad("kexue.train.record_output", "a module returning a tuple",
        lambda: _record_twice_or_tuple("tuple"), TypeError, r"expected LSTM to return a tensor .*got tuple"),
    Bad("kexue.train.record_output", ".output after two runs", lambda: _record_twice_or_tuple("twice"),
        RuntimeError, r"expected the module to run once inside record_output\(\), got 2 runs"),
    # ----------------------------------------------------------------------------------------- penalties
    Bad("kexue.train.input_gradients", "loss not a scalar", lambda: input_gradients(_leaf() * 2, [_leaf()]),
        ValueError, r"expected loss to be a scalar tensor, got shape \(2, 3\)"),
    Bad("kexue.train.input_gradients", "input without grad",
        lambda: input_gradients(_scalar_loss_of(_leaf()), [torch.ones(2)]), ValueError,
        r"expected inputs\[0\] to be a tensor that requires grad .*got a tensor that does not"),
    Bad("kexue.train.input_gradients", "input outside the graph",
        lambda: input_gradients(_scalar_loss_of(_leaf()), [_leaf()]), ValueError,
        r"expected inputs\[0\] to be part of the loss's graph"),
    Bad("kexue.train.input_gradients", "no inputs", lambda: input_gradients(_scalar_loss_of(_leaf()), []),
        ValueError, r"expected at least one tensor in inputs, got none"),
    Bad("kexue.train.input_gradients", "loss without grad", lambda: input_gradients(torch.tensor(1.0), [_leaf()]),
        ValueError, r"expected a loss that requires grad"),
    Bad("kexue.train.input_grad_penalty", "weight NaN",
        lambda: input_grad_penalty(*_loss_and_leaf(), weight=NAN), ValueError,
        r"expected weight to be finite, got nan"),
    Bad("kexue.train.input_grad_penalty", "weight negative",
        lambda: input_grad_penalty(*_loss_and_leaf(), weight=-1.0), ValueError,
        r"expected weight >= 0\.0, got -1\.0"),
    Bad("kexue.train.input_grad_penalty", "unknown form", lambda: input_grad_penalty(*_loss_and_leaf(), form="abs"),
        ValueError, r"expected form to be one of \['squared', 'norm'\], got 'abs'"),
    Bad("kexue.train.input_grad_penalty", "mask of the wrong shape",
        lambda: input_grad_penalty(*_loss_and_leaf(), mask=torch.ones(3)), ValueError,
        r"expected mask in the leading dimensions of the gradient \(2, 3\).*got \(3,\)"),
    Bad("kexue.train.embedding_gradient_penalty", "epsilon NaN",
        lambda: embedding_gradient_penalty(*_bag_loss_and_output(), epsilon=NAN), ValueError,
        r"expected epsilon to be finite, got nan"),
    Bad("kexue.train.embedding_gradient_penalty", "unknown form",
        lambda: embedding_gradient_penalty(*_bag_loss_and_output(), form="cube"), ValueError,
        r"expected form to be one of \['squared', 'norm'\], got 'cube'"),
    Bad("kexue.train.embedding_gradient_penalty", "mask of the wrong shape",
        lambda: embedding_gradient_penalty(*_bag_loss_and_output(), mask=torch.ones(3, 2)), ValueError,
        r"expected mask in the leading dimensions of the gradient \(2, 3, 4\).*got \(3, 2\)"),
    Bad("kexue.train.embedding_gradient_penalty", "embed_out not from the loss",
        lambda: embedding_gradient_penalty(_bag_loss_and_output()[0], _bag_loss_and_output()[1]), ValueError,
        r"expected inputs\[0\] to be part of the loss's graph"),
    Bad("kexue.train.gradient_penalty_loss", "epsilon negative",
        lambda: gradient_penalty_loss(Bag(), IDS, bag_loss, epsilon=-1.0), ValueError,
        r"expected epsilon >= 0\.0, got -1\.0"),
    Bad("kexue.train.gradient_penalty_loss", "model without an embedding",
        lambda: gradient_penalty_loss(nn.Linear(3, 3), torch.ones(2, 3), lambda m, b: m(b).sum()), ValueError,
        r"expected one nn\.Embedding in Linear .*got 0"),
    Bad("kexue.train.gradient_penalty_loss", "embedding not used by loss_fn",
        lambda: gradient_penalty_loss(Bag(), IDS, bag_loss, embedding=nn.Embedding(10, 4)), RuntimeError,
        r"expected the module to run once inside record_output\(\), got 0 runs"),
    Bad("kexue.train.gradient_penalty_loss", "loss_fn returns per-sample losses",
        lambda: gradient_penalty_loss(Bag(), IDS, lambda m, b: F.cross_entropy(m(b), TARGET, reduction="none")),
        ValueError, r"expected loss to be a scalar tensor, got shape \(2,\)"),
    Bad("kexue.train.gradient_penalty_loss", "mask of the wrong shape",
        lambda: gradient_penalty_loss(Bag(), IDS, bag_loss, mask=torch.ones(2, 5)), ValueError,
        r"expected mask in the leading dimensions of the gradient \(2, 3, 4\).*got \(2, 5\)"),
    Bad("kexue.train.batch_param_grad_penalty", "weight NaN",
        lambda: batch_param_grad_penalty(_scalar_loss_of(_param()), [_param()], weight=NAN), ValueError,
        r"expected weight to be finite, got nan"),
    Bad("kexue.train.batch_param_grad_penalty", "no parameters",
        lambda: batch_param_grad_penalty(_scalar_loss_of(_param()), []), ValueError,
        r"expected at least one tensor in params, got none"),
    Bad("kexue.train.batch_param_grad_penalty", "a frozen parameter",
        lambda: batch_param_grad_penalty(_scalar_loss_of(_param()), [torch.ones(3)]), ValueError,
        r"expected params\[0\] to be a tensor that requires grad"),
    Bad("kexue.train.param_grad_penalty", "weight negative",
        lambda: param_grad_penalty(_per_sample_loss, W, [torch.ones(4, 3)], weight=-2.0), ValueError,
        r"expected weight >= 0\.0, got -2\.0"),
    Bad("kexue.train.param_grad_penalty", "no inputs", lambda: param_grad_penalty(_per_sample_loss, W, []),
        ValueError, r"expected at least one batched input tensor, got none"),
    Bad("kexue.train.param_grad_penalty", "inputs with different sample counts",
        lambda: param_grad_penalty(lambda p, x, y: _per_sample_loss(p, x) * y, W, [torch.ones(4, 3), torch.ones(5)]),
        ValueError, r"expected inputs\[1\] to have the 4 samples of inputs\[0\], got 5"),
    Bad("kexue.train.param_grad_penalty", "an input not a tensor",
        lambda: param_grad_penalty(_per_sample_loss, W, [[1.0, 2.0, 3.0]]), TypeError,
        r"expected inputs\[0\] to be a tensor with a sample dimension, got list"),
    # --------------------------------------------------------------------------------------- MLM, DropToken
    Bad("kexue.train.MLMMasking", "mask_id outside the vocabulary", lambda: _masking(mask_id=10), ValueError,
        r"expected mask_id <= 9, got 10"),
    Bad("kexue.train.MLMMasking", "vocab_size 0", lambda: _masking(mask_id=0, vocab_size=0), ValueError,
        r"expected vocab_size >= 1, got 0"),
    Bad("kexue.train.MLMMasking", "select above 1", lambda: _masking(select=1.5), ValueError,
        r"expected select <= 1\.0, got 1\.5"),
    Bad("kexue.train.MLMMasking", "select NaN", lambda: _masking(select=NAN), ValueError,
        r"expected select to be finite, got nan"),
    Bad("kexue.train.MLMMasking", "split not summing to 1", lambda: _masking(p_mask=0.8, p_keep=0.1, p_random=0.2),
        ValueError, r"expected p_mask \+ p_keep \+ p_random = 1, got 0\.8 \+ 0\.1 \+ 0\.2"),
    Bad("kexue.train.MLMMasking", "negative p_keep", lambda: _masking(p_mask=1.1, p_keep=-0.1, p_random=0.0),
        ValueError, r"expected p_mask <= 1\.0, got 1\.1"),
    Bad("kexue.train.MLMMasking", "protect_ids outside the vocabulary", lambda: _masking(protect_ids=[0, 12]),
        ValueError, r"expected protect_ids in the vocabulary \[0, 10\), got \[12\]"),
    Bad("kexue.train.MLMMasking", "random_dist of the wrong length", lambda: _masking(random_dist=torch.ones(9)),
        ValueError, r"expected random_dist of shape \(10,\), got \(9,\)"),
    Bad("kexue.train.MLMMasking", "random_dist negative",
        lambda: _masking(random_dist=torch.tensor([1.0] * 9 + [-1.0])), ValueError,
        r"expected random_dist to be finite and non-negative with a positive sum, got minimum -1"),
    Bad("kexue.train.MLMMasking", "random_dist NaN",
        lambda: _masking(random_dist=torch.tensor([1.0] * 9 + [NAN])), ValueError,
        r"expected random_dist to be finite and non-negative with a positive sum, got minimum nan"),
    Bad("kexue.train.MLMMasking.__call__", "1-D input_ids", lambda: _masking()(torch.tensor([1, 2, 3])), ValueError,
        r"expected input_ids of shape \(batch, seq\), got \(3,\)"),
    Bad("kexue.train.MLMMasking.__call__", "attention_mask of the wrong shape",
        lambda: _masking()(IDS, torch.ones(2, 4)), ValueError,
        r"expected attention_mask in the shape of input_ids, \(2, 3\), got \(2, 4\)"),
    Bad("kexue.train.MLMMasking.__call__", "float input_ids", lambda: _masking()(IDS.float()), TypeError,
        r"expected input_ids to hold integer token ids, got torch\.float32"),
    Bad("kexue.train.MLMMasking.__call__", "ids outside the vocabulary",
        lambda: _masking()(torch.tensor([[1, 2, 10]])), ValueError,
        r"expected input_ids in the vocabulary \[0, 10\), got 10"),
    Bad("kexue.train.MLMMasking.collate", "no examples", lambda: _masking().collate([]), ValueError,
        r"expected at least one example to collate, got none"),
    Bad("kexue.train.MLMMasking.collate", "a 2-D example", lambda: _masking().collate([[1, 2], [[1, 2]]]),
        ValueError, r"expected example 1 to be a 1-D list of token ids, got shape \(1, 2\)"),
    Bad("kexue.train.MLMMasking.collate", "pad_id a float", lambda: _masking().collate([[1, 2], [3]], pad_id=0.5),
        TypeError, r"expected pad_id to be an integer, got 0\.5"),
    Bad("kexue.train.MLMMasking.collate", "dict without input_ids",
        lambda: _masking().collate([{"ids": [1, 2]}]), KeyError, r"expected example 0 to hold 'input_ids'"),
    Bad("kexue.train.MLMMasking.correct_embeddings_", "a 1-D weight",
        lambda: _masking().correct_embeddings_(torch.zeros(10)), ValueError,
        r"expected weight to be a \(vocab, dim\) embedding weight, got \(10,\)"),
    Bad("kexue.train.MLMMasking.correct_embeddings_", "a table smaller than the masking's vocabulary",
        lambda: _masking().correct_embeddings_(torch.zeros(8, 2)), ValueError,
        r"expected weight with the masking's 10 rows .*got 8"),
    Bad("kexue.train.MLMMasking.correct_embeddings_", "exclude_ids outside the vocabulary",
        lambda: _masking().correct_embeddings_(torch.zeros(10, 2), exclude_ids=[-1]), ValueError,
        r"expected exclude_ids in the vocabulary \[0, 10\), got \[-1\]"),
    Bad("kexue.train.MLMMasking.load_state_dict", "a RandomTokenReplacement state",
        lambda: _load(_masking(), RandomTokenReplacement().state_dict()), KeyError,
        r"expected an MLMMasking state_dict with 'mask_id', got keys"),
    Bad("kexue.train.MLMMasking.load_state_dict", "a state with a bad rate",
        lambda: _load(_masking(), {**_masking().state_dict(), "select": 2.0}), ValueError,
        r"expected select <= 1\.0, got 2\.0"),
    Bad("kexue.train.MLMMasking.load_state_dict", "not a dict", lambda: _load(_masking(), [1, 2]), TypeError,
        r"expected state to be a dict \(an MLMMasking state_dict\), got list"),
    Bad("kexue.train.expected_embedding_correction_", "a 3-D weight",
        lambda: expected_embedding_correction_(torch.zeros(2, 3, 4), 0), ValueError,
        r"expected weight to be a \(vocab, dim\) embedding weight, got \(2, 3, 4\)"),
    Bad("kexue.train.expected_embedding_correction_", "mask_id beyond the table",
        lambda: expected_embedding_correction_(torch.zeros(5, 2), 5), ValueError, r"expected mask_id <= 4, got 5"),
    Bad("kexue.train.expected_embedding_correction_", "select negative",
        lambda: expected_embedding_correction_(torch.zeros(5, 2), 1, select=-0.1), ValueError,
        r"expected select >= 0\.0, got -0\.1"),
    Bad("kexue.train.expected_embedding_correction_", "split not summing to 1",
        lambda: expected_embedding_correction_(torch.zeros(5, 2), 1, p_mask=0.5), ValueError,
        r"expected p_mask \+ p_keep \+ p_random = 1, got 0\.5 \+ 0\.1 \+ 0\.1"),
    Bad("kexue.train.expected_embedding_correction_", "random_dist of the wrong length",
        lambda: expected_embedding_correction_(torch.zeros(5, 2), 1, random_dist=torch.ones(6)), ValueError,
        r"expected random_dist of shape \(5,\), got \(6,\)"),
    Bad("kexue.train.expected_embedding_correction_", "non-finite weight",
        lambda: expected_embedding_correction_(torch.tensor([[0.0, NAN], [1.0, 2.0]]), 1), ValueError,
        r"expected weight to be finite"),
    Bad("kexue.train.expected_embedding_correction_", "an integer weight",
        lambda: expected_embedding_correction_(torch.zeros(5, 2, dtype=torch.long), 1), TypeError,
        r"expected weight to be a floating-point tensor, got torch\.int64"),
    Bad("kexue.train.DropToken", "rate 1", lambda: DropToken(rate=1.0), ValueError, r"expected rate < 1\.0, got 1\.0"),
    Bad("kexue.train.DropToken", "rate NaN", lambda: DropToken(rate=NAN), ValueError,
        r"expected rate to be finite, got nan"),
    Bad("kexue.train.DropToken", "min_keep negative", lambda: DropToken(min_keep=-1), ValueError,
        r"expected min_keep >= 0, got -1"),
    Bad("kexue.train.DropToken", "pad_id a float", lambda: DropToken(pad_id=0.0), TypeError,
        r"expected pad_id to be an integer, got 0\.0"),
    Bad("kexue.train.DropToken", "protect_ids not integers", lambda: DropToken(protect_ids=["[CLS]"]), TypeError,
        r"expected protect_ids to hold integer token ids, got '\[CLS\]'"),
    Bad("kexue.train.DropToken.forward", "1-D input_ids", lambda: DropToken().train()(torch.tensor([1, 2])),
        ValueError, r"expected input_ids of shape \(batch, seq\), got \(2,\)"),
    Bad("kexue.train.DropToken.forward", "attention_mask of the wrong shape",
        lambda: DropToken()(IDS, attention_mask=torch.ones(3, 3)), ValueError,
        r"expected attention_mask in the shape of input_ids, \(2, 3\), got \(3, 3\)"),
    Bad("kexue.train.DropToken.forward", "token_type_ids of the wrong shape",
        lambda: DropToken()(IDS, token_type_ids=torch.zeros(2, 2)), ValueError,
        r"expected token_type_ids in the shape of input_ids, \(2, 3\), got \(2, 2\)"),
    Bad("kexue.train.DropToken.forward", "position_ids of the wrong shape",
        lambda: DropToken()(IDS, position_ids=torch.zeros(3, 3, dtype=torch.long)), ValueError,
        r"expected position_ids of shape \(2, 3\) or \(1, 3\) for input_ids \(2, 3\), got \(3, 3\)"),
    Bad("kexue.train.DropToken.forward", "float input_ids", lambda: DropToken()(IDS.float()), TypeError,
        r"expected input_ids to hold integer token ids, got torch\.float32"),
    # ------------------------------------------------------------------------------- exposure bias, UniLM
    Bad("kexue.train.RandomTokenReplacement", "apply_prob above 1", lambda: _rtr(apply_prob=1.5), ValueError,
        r"expected apply_prob <= 1\.0, got 1\.5"),
    Bad("kexue.train.RandomTokenReplacement", "token_prob NaN", lambda: _rtr(token_prob=NAN), ValueError,
        r"expected token_prob to be finite, got nan"),
    Bad("kexue.train.RandomTokenReplacement", "unknown pool", lambda: _rtr(pool="source"), ValueError,
        r"expected pool to be one of \['target', 'sequence', 'vocab'\], got 'source'"),
    Bad("kexue.train.RandomTokenReplacement", "pool='vocab' without vocab_size", lambda: _rtr(pool="vocab"),
        ValueError, r"expected vocab_size \(an integer\) with pool='vocab', got None"),
    Bad("kexue.train.RandomTokenReplacement", "protect_ids outside the vocabulary",
        lambda: _rtr(pool="vocab", vocab_size=5, protect_ids=[7]), ValueError,
        r"expected protect_ids in the vocabulary \[0, 5\), got \[7\]"),
    Bad("kexue.train.RandomTokenReplacement", "vocab_size all protected",
        lambda: _rtr(pool="vocab", vocab_size=2, protect_ids=[0, 1]), ValueError, r"expected vocab_size >= 3, got 2"),
    Bad("kexue.train.RandomTokenReplacement", "protect_ids not integers", lambda: _rtr(protect_ids=[1.5]),
        TypeError, r"expected protect_ids to hold integer token ids, got 1\.5"),
    Bad("kexue.train.RandomTokenReplacement.__call__", "target_mask of the wrong shape",
        lambda: _rtr()(IDS, torch.ones(2, 4)), ValueError,
        r"expected target_mask in the shape of input_ids, \(2, 3\), got \(2, 4\)"),
    Bad("kexue.train.RandomTokenReplacement.__call__", "1-D input_ids",
        lambda: _rtr()(torch.tensor([1, 2, 3]), torch.ones(3)), ValueError,
        r"expected input_ids of shape \(batch, seq\), got \(3,\)"),
    Bad("kexue.train.RandomTokenReplacement.__call__", "attention_mask of the wrong shape",
        lambda: _rtr()(IDS, torch.ones(2, 3), torch.ones(1, 3)), ValueError,
        r"expected attention_mask in the shape of input_ids, \(2, 3\), got \(1, 3\)"),
    Bad("kexue.train.RandomTokenReplacement.__call__", "float input_ids",
        lambda: _rtr()(IDS.float(), torch.ones(2, 3)), TypeError,
        r"expected input_ids to hold integer token ids, got torch\.float32"),
    Bad("kexue.train.RandomTokenReplacement.unilm", "token_type_ids of the wrong shape",
        lambda: _rtr().unilm(IDS, torch.ones(2, 2, dtype=torch.long)), ValueError,
        r"expected token_type_ids in the shape of input_ids, \(2, 3\), got \(2, 2\)"),
    Bad("kexue.train.RandomTokenReplacement.unilm", "float input_ids",
        lambda: _rtr().unilm(IDS.float(), torch.ones(2, 3, dtype=torch.long)), TypeError,
        r"expected input_ids to hold integer token ids, got torch\.float32"),
    Bad("kexue.train.RandomTokenReplacement.load_state_dict", "an MLMMasking state",
        lambda: _load(_rtr(), _masking().state_dict()), KeyError,
        r"expected a RandomTokenReplacement state_dict with 'apply_prob', got keys"),
    Bad("kexue.train.RandomTokenReplacement.load_state_dict", "a state without the generator",
        lambda: _load(_rtr(), {k: v for k, v in _rtr().state_dict().items() if k != "generator"}), KeyError,
        r"expected a RandomTokenReplacement state_dict with 'generator', got keys"),
    Bad("kexue.train.RandomTokenReplacement.load_state_dict", "a state with an unknown pool",
        lambda: _load(_rtr(), {**_rtr().state_dict(), "pool": "all"}), ValueError,
        r"expected pool to be one of .*got 'all'"),
    Bad("kexue.train.RandomTokenReplacement.load_state_dict", "a generator that is not a state tensor",
        lambda: _load(_rtr(), {**_rtr().state_dict(), "generator": 1234}), TypeError,
        r"expected the state's generator to be a generator state tensor or None, got int"),
    Bad("kexue.train.MLMMasking.load_state_dict", "a generator that is not a state tensor",
        lambda: _load(_masking(), {**_masking().state_dict(), "generator": "seed"}), TypeError,
        r"expected the state's generator to be a generator state tensor or None, got str"),
    Bad("kexue.train.RandomTokenReplacement.load_state_dict", "not a dict", lambda: _load(_rtr(), None), TypeError,
        r"expected state to be a dict \(a RandomTokenReplacement state_dict\), got NoneType"),
    Bad("kexue.train.pack_unilm", "more targets than sources", lambda: pack_unilm([[5]], [[6], [7]], 1, 2),
        ValueError, r"expected as many targets as sources \(1\), got 2"),
    Bad("kexue.train.pack_unilm", "no sources", lambda: pack_unilm([], None, 1, 2), ValueError,
        r"expected at least one source, got none"),
    Bad("kexue.train.pack_unilm", "target_start negative", lambda: pack_unilm([[5]], [[6]], 1, 2, target_start=-1),
        ValueError, r"expected target_start >= 0, got -1"),
    Bad("kexue.train.pack_unilm", "cls_id a string", lambda: pack_unilm([[5]], [[6]], "[CLS]", 2), TypeError,
        r"expected cls_id to be an integer, got '\[CLS\]'"),
    Bad("kexue.train.pack_unilm", "a source that is text", lambda: pack_unilm(["hello"], None, 1, 2), TypeError,
        r"expected sources\[0\] to be a sequence of integer token ids, got 'hello'"),
    Bad("kexue.train.pack_unilm", "a target holding floats", lambda: pack_unilm([[5]], [[6.5]], 1, 2), TypeError,
        r"expected targets\[0\] to be a sequence of integer token ids, got \[6\.5\]"),
    Bad("kexue.train.unilm_seq2seq_loss", "unknown reduction", lambda: _seq2seq(reduction="avg"), ValueError,
        r"expected reduction to be one of \['mean', 'sum', 'none'\], got 'avg'"),
    Bad("kexue.train.unilm_seq2seq_loss", "logits of the wrong length",
        lambda: _seq2seq(logits=torch.zeros(1, 4, 24)), ValueError,
        r"expected logits \(batch, seq, vocab\) matching target \(1, 5\), got \(1, 4, 24\)"),
    Bad("kexue.train.unilm_seq2seq_loss", "token_type_ids of the wrong shape",
        lambda: _seq2seq(token_type_ids=torch.zeros(1, 4, dtype=torch.long)), ValueError,
        r"expected token_type_ids in the shape of target, \(1, 5\), got \(1, 4\)"),
    Bad("kexue.train.unilm_seq2seq_loss", "attention_mask of the wrong shape",
        lambda: _seq2seq(attention_mask=torch.ones(2, 5)), ValueError,
        r"expected attention_mask in the shape of target, \(1, 5\), got \(2, 5\)"),
    Bad("kexue.train.unilm_seq2seq_loss", "float target", lambda: _seq2seq(target=torch.ones(1, 5)), TypeError,
        r"expected target to hold integer token ids, got torch\.float32"),
    Bad("kexue.train.unilm_seq2seq_loss", "target beyond the vocabulary",
        lambda: _seq2seq(target=torch.tensor([[1, 5, 2, 30, 2]])), ValueError,
        r"expected target ids in \[0, 24\) \(the logits' vocabulary\) where the loss counts, got 30"),
    Bad("kexue.train.penalized_unilm_loss", "batch without token_type_ids",
        lambda: _penalized(batch={"input_ids": IDS, "attention_mask": torch.ones(2, 3)}), KeyError,
        r"expected batch to hold 'token_type_ids', got keys \['attention_mask', 'input_ids'\]"),
    Bad("kexue.train.penalized_unilm_loss", "epsilon NaN", lambda: _penalized(epsilon=NAN), ValueError,
        r"expected epsilon to be finite, got nan"),
    Bad("kexue.train.penalized_unilm_loss", "model without an MLM head",
        lambda: _penalized(model=_transformer(with_mlm=False)), ValueError,
        r"expected model to return mlm_logits \(a model with an MLM head\), got None"),
    Bad("kexue.train.penalized_unilm_loss", "model without an input embedding",
        lambda: _penalized(model=nn.Linear(2, 2)), ValueError, r"expected one nn\.Embedding in Linear .*got 0"),
]


def _loss_and_leaf() -> tuple[torch.Tensor, torch.Tensor]:
    x = _leaf()
    return _scalar_loss_of(x), x


def _record_twice_or_tuple(how: str):
    if how == "tuple":
        lstm = nn.LSTM(2, 2)
        with record_output(lstm):
            lstm(torch.zeros(1, 1, 2))
        return None
    emb = nn.Embedding(4, 2)
    with record_output(emb) as rec:
        emb(torch.tensor([1]))
        emb(torch.tensor([2]))
    return rec.output


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_refuses(row):
    check(row)


def test_a_failed_load_state_dict_changes_nothing():
    """A state that is refused leaves the masking as it was (the settings were validated before any was set)."""
    masking = _masking(select=0.2)
    before = masking.state_dict()
    with pytest.raises(ValueError):
        masking.load_state_dict({**before, "select": 0.3, "p_mask": 2.0})
    assert masking.state_dict() == before
    rtr = RandomTokenReplacement(apply_prob=0.4, generator=torch.Generator().manual_seed(3))
    kept = rtr.state_dict()
    for bad in ({**kept, "apply_prob": 0.9, "pool": "all"}, {**kept, "token_prob": 0.1, "generator": 7}):
        with pytest.raises((ValueError, TypeError)):
            rtr.load_state_dict(bad)
        now = rtr.state_dict()
        assert torch.equal(now.pop("generator"), kept["generator"])
        assert now == {k: v for k, v in kept.items() if k != "generator"}
