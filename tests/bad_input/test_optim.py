"""Bad-input rows: kexue.optim (the accumulating optimizers, AdaFactor, ChildTuning and the Fisher mask, gradient
release, the learning-rate schedules).

Rows that name torch's own message (an empty parameter list, a non-leaf or non-tensor parameter, a parameter in two
groups) pin that torch still refuses these before any kexue code runs; everything else is kexue's check.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from _matrix import Bad, check
from torch import nn

from kexue.optim import (
    AccumAdam,
    AccumAdamW,
    AccumSGDM,
    AdaFactor,
    ChildTuning,
    GradientRelease,
    factored_axes,
    fisher_information,
    fisher_mask,
    piecewise_linear,
    piecewise_linear_factor,
    warmup_linear,
    warmup_linear_factor,
)

# torch warns about a repeated parameter before kexue refuses it
pytestmark = pytest.mark.filterwarnings("ignore:optimizer contains a parameter group with duplicate parameters")

ACCUM = (AccumSGDM, AccumAdam, AccumAdamW)
NAN = float("nan")


def _p(*shape: int, dtype: torch.dtype = torch.float32) -> nn.Parameter:
    return nn.Parameter(torch.randn(*shape, dtype=dtype))


def _accum(cls: type, params: Any, **kw: Any) -> Any:
    return cls(params, **{"lr": 0.1, **kw})


def _with_grad(make: Any, grad: torch.Tensor, shape: tuple[int, ...] = (3,)) -> Any:
    """``make([p]).step()`` with ``p.grad`` set to ``grad``: through ``.data`` for a dense one (torch checks shape
    and dtype only on ``p.grad = ...``), directly for a sparse one."""
    p = _p(*shape)
    opt = make([p])
    if grad.is_sparse:
        p.grad = grad
    else:
        p.grad = torch.zeros(shape)
        p.grad.data = grad
    return opt.step()


def _second_backward(cls: type) -> None:
    p = _p(3)
    opt = _accum(cls, [p])
    opt.release_gradients()
    p.sum().backward()
    (2 * p).sum().backward()  # a second backward() before step()


def _stepped(make: Any, shape: tuple[int, ...] = (3,), groups: int = 1) -> dict[str, Any]:
    """The state dict of ``make(params)`` after one step, a deep copy."""
    params = [_p(*shape) for _ in range(groups)]
    opt = make([{"params": [p]} for p in params])
    for p in params:
        p.grad = torch.ones(shape)
    opt.step()
    return copy.deepcopy(opt.state_dict())


def _edited(sd: dict[str, Any], edit: Any) -> dict[str, Any]:
    edit(sd)
    return sd


def _load(make: Any, sd: Any, shape: tuple[int, ...] = (3,)) -> None:
    make([_p(*shape)]).load_state_dict(sd)


def _accum_rows(cls: type) -> list[Bad]:
    name = f"kexue.optim.{cls.__name__}"
    other = AccumAdam if cls is not AccumAdam else AccumAdamW
    p = _p(2)
    rows = [
        # constructor
        Bad(name, "lr negative", lambda: _accum(cls, [_p(2)], lr=-1), ValueError, r"expected lr >= 0\.0, got -1"),
        Bad(name, "lr nan", lambda: _accum(cls, [_p(2)], lr=NAN), ValueError, r"expected lr to be finite, got nan"),
        Bad(name, "weight_decay negative", lambda: _accum(cls, [_p(2)], weight_decay=-0.1), ValueError,
            r"expected weight_decay >= 0\.0, got -0\.1"),
        Bad(name, "weight_decay a string in a group",
            lambda: _accum(cls, [{"params": [_p(2)], "weight_decay": "x"}]), TypeError,
            r"expected weight_decay to be a real number, got 'x'"),
        Bad(name, "lr negative in a group", lambda: _accum(cls, [{"params": [_p(2)], "lr": -1.0}]), ValueError,
            r"expected lr >= 0\.0, got -1\.0"),
        Bad(name, "k = 0", lambda: _accum(cls, [_p(2)], k=0), ValueError, r"expected k >= 1, got 0"),
        Bad(name, "k a float", lambda: _accum(cls, [_p(2)], k=2.0), TypeError,
            r"expected k to be an integer, got 2\.0"),
        Bad(name, "unknown mode", lambda: _accum(cls, [_p(2)], mode="exact"), ValueError,
            r"expected mode to be one of \['exact_m', 'tilde_beta', 'plain'\], got 'exact'"),
        Bad(name, "update_every_k not a bool", lambda: _accum(cls, [_p(2)], update_every_k=1), TypeError,
            r"expected update_every_k to be a bool, got 1"),
        Bad(name, "exact_m without update_every_k", lambda: _accum(cls, [_p(2)], k=2, update_every_k=False),
            ValueError, r"expected mode='tilde_beta' or 'plain' with update_every_k=False.*got mode='exact_m'"),
        Bad(name, "max_update_norm 0", lambda: _accum(cls, [_p(2)], max_update_norm=0.0), ValueError,
            r"expected max_update_norm > 0\.0, got 0\.0"),
        Bad(name, "empty params", lambda: _accum(cls, []), ValueError, r"empty parameter list"),
        Bad(name, "a parameter twice", lambda: _accum(cls, [p, p]), ValueError,
            r"expected each parameter once, got the \(2,\) parameter at index 0 of param group 0 again at index 1"),
        Bad(name, "a parameter in two groups", lambda: _accum(cls, [{"params": [p]}, {"params": [p]}]), ValueError,
            r"some parameters appear in more than one parameter group"),
        Bad(name, "a non-leaf tensor", lambda: _accum(cls, [_p(2) * 2]), ValueError, r"non-leaf Tensor"),
        Bad(name, "a float among the params", lambda: _accum(cls, [1.0]), TypeError,
            r"can only optimize Tensors, but one of the params is float"),
        Bad(name, "one tensor, not an iterable", lambda: _accum(cls, _p(2)), TypeError,
            r"should be an iterable of Tensors or dicts, but got torch\.FloatTensor"),
        Bad(name, "a complex parameter", lambda: _accum(cls, [_p(2), _p(2, dtype=torch.complex64)]), ValueError,
            r"expected real parameters, got a complex \(2,\) one \(torch\.complex64\) at index 1 of param group 0"),
    ]
    if cls is AccumSGDM:
        rows += [
            Bad(name, "momentum 1", lambda: _accum(cls, [_p(2)], momentum=1.0), ValueError,
                r"expected momentum < 1\.0, got 1\.0"),
            Bad(name, "momentum 2 in a group", lambda: _accum(cls, [{"params": [_p(2)], "momentum": 2.0}]),
                ValueError, r"expected momentum < 1\.0, got 2\.0"),
        ]
    else:
        rows += [
            Bad(name, "beta2 = 1", lambda: _accum(cls, [_p(2)], betas=(0.9, 1.0)), ValueError,
                r"expected betas\[1\] < 1\.0, got 1\.0"),
            Bad(name, "beta1 negative", lambda: _accum(cls, [_p(2)], betas=(-0.1, 0.9)), ValueError,
                r"expected betas\[0\] >= 0\.0, got -0\.1"),
            Bad(name, "betas a number", lambda: _accum(cls, [_p(2)], betas=0.9), TypeError,
                r"expected betas to be a pair \(beta1, beta2\), got 0\.9"),
            Bad(name, "three betas", lambda: _accum(cls, [_p(2)], betas=(0.9, 0.9, 0.9)), ValueError,
                r"expected betas to be a pair \(beta1, beta2\), got 3 values"),
            Bad(name, "beta2 1.5 in a group", lambda: _accum(cls, [{"params": [_p(2)], "betas": (0.9, 1.5)}]),
                ValueError, r"expected betas\[1\] < 1\.0, got 1\.5"),
            Bad(name, "eps = 0", lambda: _accum(cls, [_p(2)], eps=0.0), ValueError, r"expected eps > 0\.0, got 0\.0"),
            Bad(name, "eps negative in a group", lambda: _accum(cls, [{"params": [_p(2)], "eps": -1.0}]),
                ValueError, r"expected eps > 0\.0, got -1\.0"),
            Bad(name, "eps_inside_root a string", lambda: _accum(cls, [_p(2)], eps_inside_root="yes"), TypeError,
                r"expected eps_inside_root to be a bool, got 'yes'"),
        ]

    def make(params: Any, **kw: Any) -> Any:
        return _accum(cls, params, **kw)

    opt = make([_p(2)])
    apg = f"{name}.add_param_group"
    rows += [
        Bad(apg, "lr negative", lambda: make([_p(2)]).add_param_group({"params": [_p(2)], "lr": -1.0}), ValueError,
            r"expected lr >= 0\.0, got -1\.0"),
        Bad(apg, "a complex parameter",
            lambda: make([_p(2)]).add_param_group({"params": [_p(3, dtype=torch.complex64)]}), ValueError,
            r"expected real parameters, got a complex \(3,\) one \(torch\.complex64\) at index 0 of param group 1"),
        Bad(apg, "a parameter twice", lambda: make([_p(2)]).add_param_group({"params": [p, p]}), ValueError,
            r"expected each parameter once, got the \(2,\) parameter at index 0 of param group 1 again at index 1"),
        Bad(apg, "a parameter already in a group",
            lambda: opt.add_param_group({"params": opt.param_groups[0]["params"]}), ValueError,
            r"some parameters appear in more than one parameter group"),
        Bad(apg, "a list, not a dict", lambda: make([_p(2)]).add_param_group([_p(2)]), TypeError,
            r"param_group must be a dict, but got <class 'list'>"),
    ]
    step = f"{name}.step"
    rows += [
        Bad(step, "closure not callable", lambda: make([_p(2)]).step(3), TypeError,
            r"expected closure to be a callable that re-evaluates the loss, or None, got int"),
        Bad(step, "sparse gradient", lambda: _with_grad(make, torch.ones(3).to_sparse()), RuntimeError,
            rf"expected dense gradients \({cls.__name__} keeps dense state\), got sparse gradients for a \(3,\) "),
        Bad(step, "gradient of another shape", lambda: _with_grad(make, torch.ones(4)), RuntimeError,
            r"expected the gradient of a \(3,\) parameter to have its shape, got \(4,\)"),
        Bad(step, "integer gradient", lambda: _with_grad(make, torch.ones(3, dtype=torch.int64)), RuntimeError,
            r"expected a real floating-point gradient for a \(3,\) parameter, got torch\.int64"),
        Bad(step, "complex gradient of a real parameter",
            lambda: _with_grad(make, torch.ones(3, dtype=torch.complex64)), RuntimeError,
            r"expected a real floating-point gradient for a \(3,\) parameter, got torch\.complex64"),
        Bad(step, "a second backward() per micro-step with gradient release", lambda: _second_backward(cls),
            RuntimeError, r"expected one backward\(\) per micro-step with gradient release on, got a second"),
    ]
    lsd = f"{name}.load_state_dict"
    rows += [
        Bad(lsd, "an AdaFactor state", lambda: _load(make, _stepped(AdaFactor)), ValueError,
            rf"expected a state dict saved by an accumulating optimizer .*{cls.__name__}.*got one without it"),
        Bad(lsd, f"an {other.__name__} state", lambda: _load(make, _stepped(lambda ps: _accum(other, ps))),
            ValueError, rf"expected a state dict saved by {cls.__name__}, got one saved by {other.__name__}"),
        Bad(lsd, "saved with another k", lambda: _load(make, _stepped(lambda ps: make(ps, k=2))), ValueError,
            r"expected a state dict saved with this optimizer's \{'k': 1, .*got one saved with \{'k': 2"),
        Bad(lsd, "an int", lambda: _load(make, 3), TypeError,
            r"expected a state dict \(a mapping with 'state' and 'param_groups' entries\), got int"),
        Bad(lsd, "two groups for one", lambda: _load(make, _stepped(make, groups=2)), ValueError,
            rf"expected a state dict with 1 parameter groups \(as this {cls.__name__} has\), got 2"),
        Bad(lsd, "a parameter of another shape", lambda: _load(make, _stepped(make, shape=(4,))), ValueError,
            r"expected state 'exp_avg' of shape \(3,\) for the \(3,\) parameter at index 0 of parameter group 0, "
            r"got \(4,\)"),
        Bad(lsd, "a state key missing",
            lambda: _load(make, _edited(_stepped(make), lambda sd: sd["state"][0].pop("micro"))), ValueError,
            r"expected state keys \[.*\] for the \(3,\) parameter .*\(missing \['micro'\], unexpected \[\]\)"),
        Bad(lsd, "micro_step negative",
            lambda: _load(make, _edited(_stepped(make), lambda sd: sd["accumulate"].update(micro_step=-3))),
            ValueError, r"expected micro_step >= 0, got -3"),
        Bad(lsd, "a saved group with a negative lr",
            lambda: _load(make, _edited(_stepped(make), lambda sd: sd["param_groups"][0].update(lr=-5.0))),
            ValueError, r"expected lr >= 0\.0, got -5\.0"),
    ]
    return rows


def _ada_rows() -> list[Bad]:
    name = "kexue.optim.AdaFactor"
    p = _p(2)
    group = AdaFactor([_p(2)]).param_groups[0]
    rows = [
        Bad(name, "lr negative", lambda: AdaFactor([_p(2)], lr=-1.0), ValueError, r"expected lr >= 0\.0, got -1\.0"),
        Bad(name, "lr negative in a group", lambda: AdaFactor([{"params": [_p(2)], "lr": -1.0}]), ValueError,
            r"expected lr >= 0\.0, got -1\.0"),
        Bad(name, "beta1 = 1", lambda: AdaFactor([_p(2)], beta1=1.0), ValueError, r"expected beta1 < 1\.0, got 1\.0"),
        Bad(name, "decay_exponent = 1", lambda: AdaFactor([_p(2)], decay_exponent=1.0), ValueError,
            r"expected decay_exponent < 1\.0, got 1\.0"),
        Bad(name, "beta2 nan", lambda: AdaFactor([_p(2)], beta2=NAN), ValueError,
            r"expected beta2 to be finite, got nan"),
        Bad(name, "eps1 = 0", lambda: AdaFactor([_p(2)], eps1=0.0), ValueError, r"expected eps1 > 0\.0, got 0\.0"),
        Bad(name, "clip_threshold = 0", lambda: AdaFactor([_p(2)], clip_threshold=0.0), ValueError,
            r"expected clip_threshold > 0\.0, got 0\.0"),
        Bad(name, "min_dim_size_to_factor negative", lambda: AdaFactor([_p(2)], min_dim_size_to_factor=-1),
            ValueError, r"expected min_dim_size_to_factor >= 0, got -1"),
        Bad(name, "unknown factor_dims", lambda: AdaFactor([_p(2)], factor_dims="first"), ValueError,
            r"expected factor_dims to be one of \['largest', 'last'\], got 'first'"),
        Bad(name, "unknown eps1_mode", lambda: AdaFactor([_p(2)], eps1_mode="root"), ValueError,
            r"expected eps1_mode to be one of \['add', 'add_and_root', 'floor'\], got 'root'"),
        Bad(name, "warmup_init with a constant lr", lambda: AdaFactor([_p(2)], warmup_init=True), ValueError,
            r"expected relative_step=True or lr=None with warmup_init=True .*got relative_step=False"),
        Bad(name, "scale_parameter a string", lambda: AdaFactor([_p(2)], scale_parameter="no"), TypeError,
            r"expected scale_parameter to be a bool, got 'no'"),
        Bad(name, "relative_step an int", lambda: AdaFactor([_p(2)], relative_step=1), TypeError,
            r"expected relative_step to be a bool, got 1"),
        Bad(name, "foreach a string", lambda: AdaFactor([_p(2)], foreach="yes"), TypeError,
            r"expected foreach to be a bool or None, got 'yes'"),
        Bad(name, "exclude_from_parameter_scale holds an int",
            lambda: AdaFactor([_p(2)], exclude_from_parameter_scale=[3]), TypeError,
            r"expected exclude_from_parameter_scale to hold parameters or name patterns, got 3"),
        Bad(name, "exclude_from_parameter_scale a bad regular expression",
            lambda: AdaFactor([("w", _p(2))], exclude_from_parameter_scale=["("]), ValueError,
            r"expected exclude_from_parameter_scale to hold regular expressions, got '\('"),
        Bad(name, "name patterns for unnamed parameters",
            lambda: AdaFactor([_p(2)], exclude_from_parameter_scale=["bias"]), ValueError,
            r"expected named parameters .*got exclude_from_parameter_scale name patterns"),
        Bad(name, "an unknown option", lambda: AdaFactor([_p(2)], betas=(0.9, 0.99)), TypeError,
            r"unexpected keyword argument 'betas'"),
        Bad(name, "empty params", lambda: AdaFactor([]), ValueError, r"empty parameter list"),
        Bad(name, "a parameter twice", lambda: AdaFactor([p, p]), ValueError,
            r"expected each parameter once, got the \(2,\) parameter at index 0 of param group 0 again at index 1"),
        Bad(name, "a non-leaf tensor", lambda: AdaFactor([_p(2) * 2]), ValueError, r"non-leaf Tensor"),
        Bad(name, "a complex parameter", lambda: AdaFactor([_p(2, dtype=torch.complex64)]), ValueError,
            r"expected real parameters, got a complex \(2,\) one \(torch\.complex64\) at index 0 of param group 0"),
    ]
    preset = f"{name}.preset"
    rows += [
        Bad(preset, "unknown name", lambda: AdaFactor.preset("adam", [_p(2)]), ValueError,
            r"expected name to be one of \['bert4keras', 'paper', 'transformers', 't5', 'torch'\], got 'adam'"),
        Bad(preset, "an int for the name", lambda: AdaFactor.preset(3, [_p(2)]), ValueError,
            r"expected name to be one of .*got 3"),
        Bad(preset, "a bad override", lambda: AdaFactor.preset("torch", [_p(2)], lr=-1.0), ValueError,
            r"expected lr >= 0\.0, got -1\.0"),
        Bad(preset, "an unknown override", lambda: AdaFactor.preset("torch", [_p(2)], momentum=0.9), TypeError,
            r"unexpected keyword argument 'momentum'"),
    ]
    size = f"{name}.step_size"
    rows += [
        Bad(size, "t = 0", lambda: AdaFactor.step_size(group, 0), ValueError, r"expected t >= 1, got 0"),
        Bad(size, "t negative, relative step", lambda: AdaFactor.step_size({**group, "relative_step": True}, -1),
            ValueError, r"expected t >= 1, got -1"),
        Bad(size, "t a float", lambda: AdaFactor.step_size(group, 1.5), TypeError,
            r"expected t to be an integer, got 1\.5"),
        Bad(size, "group not a dict", lambda: AdaFactor.step_size(3, 1), TypeError,
            r"expected group to be a parameter group of an AdaFactor \(a dict\), got int"),
        Bad(size, "group without AdaFactor's options", lambda: AdaFactor.step_size({"lr": 0.1}, 1), ValueError,
            r"expected group to be a parameter group of an AdaFactor .*got one without \['relative_step'"),
    ]
    apg = f"{name}.add_param_group"
    rows += [
        Bad(apg, "lr negative", lambda: AdaFactor([_p(2)]).add_param_group({"params": [_p(2)], "lr": -1.0}),
            ValueError, r"expected lr >= 0\.0, got -1\.0"),
        Bad(apg, "a complex parameter",
            lambda: AdaFactor([_p(2)]).add_param_group({"params": [_p(3, dtype=torch.complex64)]}), ValueError,
            r"expected real parameters, got a complex \(3,\) one \(torch\.complex64\) at index 0 of param group 1"),
        Bad(apg, "a parameter twice", lambda: AdaFactor([_p(2)]).add_param_group({"params": [p, p]}), ValueError,
            r"expected each parameter once, got the \(2,\) parameter at index 0 of param group 1 again at index 1"),
        Bad(apg, "unknown factor_dims",
            lambda: AdaFactor([_p(2)]).add_param_group({"params": [_p(2)], "factor_dims": "all"}), ValueError,
            r"expected factor_dims to be one of \['largest', 'last'\], got 'all'"),
    ]
    step = f"{name}.step"
    rows += [
        Bad(step, "closure not callable", lambda: AdaFactor([_p(2)]).step("loss"), TypeError,
            r"expected closure to be a callable that re-evaluates the loss, or None, got str"),
        Bad(step, "sparse gradient", lambda: _with_grad(AdaFactor, torch.ones(3).to_sparse()), RuntimeError,
            r"expected dense gradients \(AdaFactor keeps dense state\), got sparse gradients for a \(3,\) "),
        Bad(step, "gradient of another shape", lambda: _with_grad(AdaFactor, torch.ones(4)), RuntimeError,
            r"expected the gradient of a \(3,\) parameter to have its shape, got \(4,\)"),
        Bad(step, "integer gradient", lambda: _with_grad(AdaFactor, torch.ones(3, dtype=torch.int64)), RuntimeError,
            r"expected a real floating-point gradient for a \(3,\) parameter, got torch\.int64"),
        Bad(step, "complex gradient of a real parameter",
            lambda: _with_grad(AdaFactor, torch.ones(3, dtype=torch.complex64)), RuntimeError,
            r"expected a real floating-point gradient for a \(3,\) parameter, got torch\.complex64"),
    ]
    lsd = f"{name}.load_state_dict"
    rows += [
        Bad(lsd, "an AccumAdamW state", lambda: _load(AdaFactor, _stepped(AccumAdamW)), ValueError,
            r"expected a state dict saved by AdaFactor \(parameter groups with options \[.*\]\), got parameter "
            r"group 0 with options \['betas'"),
        Bad(lsd, "an int", lambda: _load(AdaFactor, 3), TypeError,
            r"expected a state dict \(a mapping with 'state' and 'param_groups' entries\), got int"),
        Bad(lsd, "no 'state' entry", lambda: _load(AdaFactor, {"param_groups": []}), ValueError,
            r"expected a state dict with 'state' and 'param_groups' entries, got \['param_groups'\]"),
        Bad(lsd, "two groups for one", lambda: _load(AdaFactor, _stepped(AdaFactor, groups=2)), ValueError,
            r"expected a state dict with 1 parameter groups \(as this AdaFactor has\), got 2"),
        Bad(lsd, "a parameter of another shape", lambda: _load(AdaFactor, _stepped(AdaFactor, shape=(4,))),
            ValueError, r"expected state 'exp_avg_sq' of shape \(3,\) for the \(3,\) parameter .*got \(4,\)"),
        Bad(lsd, "factored state of a parameter of another shape",
            lambda: _load(AdaFactor, _stepped(lambda ps: AdaFactor(ps, min_dim_size_to_factor=0), shape=(3, 4)),
                          shape=(4, 3)),
            ValueError, r"expected state 'exp_avg_sq_row' of shape \(1, 3\) for the \(4, 3\) parameter .*got "
                        r"\(3, 1\)"),
        Bad(lsd, "a state key missing",
            lambda: _load(AdaFactor, _edited(_stepped(AdaFactor), lambda sd: sd["state"][0].pop("step"))),
            ValueError, r"expected state keys \['exp_avg_sq', 'step'\] .*\(missing \['step'\], unexpected \[\]\)"),
        Bad(lsd, "state for a parameter it does not have",
            lambda: _load(AdaFactor, _edited(_stepped(AdaFactor), lambda sd: sd["state"].update({7: {}}))),
            ValueError, r"expected state only for the saved parameters \[0\], got state for \[7\]"),
        Bad(lsd, "a negative step count",
            lambda: _load(AdaFactor, _edited(_stepped(AdaFactor), lambda sd: sd["state"][0].update(step=-3))),
            ValueError, r"expected step >= 0, got -3"),
        Bad(lsd, "a saved group with a negative lr",
            lambda: _load(AdaFactor, _edited(_stepped(AdaFactor), lambda sd: sd["param_groups"][0].update(lr=-5.0))),
            ValueError, r"expected lr >= 0\.0, got -5\.0"),
    ]
    return rows


def _child_rows() -> list[Bad]:
    name = "kexue.optim.ChildTuning"

    def base() -> AccumAdamW:
        return AccumAdamW([_p(3)])

    def ct(**kw: Any) -> ChildTuning:
        return ChildTuning(base(), **kw)

    def d_masks(mask: Any) -> ChildTuning:
        b = base()
        return ChildTuning(b, mode="D", masks={b.param_groups[0]["params"][0]: mask})

    def released() -> None:
        c = ct()
        c.base.release_gradients()
        c.step()

    def bad_grad(grad: torch.Tensor) -> None:
        c = ct(reserve_p=1.0)
        p = c.param_groups[0]["params"][0]
        p.grad = torch.zeros(3)
        p.grad.data = grad
        c.step()

    def saved(make: Any = ct) -> dict[str, Any]:
        c = make()
        for g in c.param_groups:
            for p in g["params"]:
                p.grad = torch.ones_like(p)
        c.step()
        return copy.deepcopy(c.state_dict())

    def load(sd: Any, make: Any = ct) -> None:
        make().load_state_dict(sd)

    gen = torch.Generator()
    rows = [
        Bad(name, "base not an optimizer", lambda: ChildTuning([_p(3)]), TypeError,
            r"expected base to be a torch\.optim\.Optimizer, got list"),
        Bad(name, "unknown mode", lambda: ct(mode="G"), ValueError,
            r"expected mode to be one of \['F', 'D'\], got 'G'"),
        Bad(name, "reserve_p = 0", lambda: ct(reserve_p=0), ValueError, r"expected reserve_p > 0\.0, got 0"),
        Bad(name, "reserve_p > 1", lambda: ct(reserve_p=1.5), ValueError, r"expected reserve_p <= 1\.0, got 1\.5"),
        Bad(name, "reserve_p nan", lambda: ct(reserve_p=NAN), ValueError, r"expected reserve_p to be finite, got nan"),
        Bad(name, "unknown mask_on", lambda: ct(mask_on="param"), ValueError,
            r"expected mask_on to be one of \['grad', 'update'\], got 'param'"),
        Bad(name, "D without masks", lambda: ct(mode="D"), ValueError, r"expected masks with mode='D' .*got None"),
        Bad(name, "F with masks", lambda: ct(masks={}), ValueError,
            r"expected masks=None with mode='F' .*got masks for 0 parameters"),
        Bad(name, "masks a list", lambda: ct(mode="D", masks=[torch.ones(3, dtype=torch.bool)]), TypeError,
            r"expected masks to be a \{parameter: bool mask\} mapping \(see fisher_mask\), got list"),
        Bad(name, "a mask of another shape", lambda: d_masks(torch.ones(4, dtype=torch.bool)), ValueError,
            r"expected a bool mask of shape \(3,\), got torch\.bool \(4,\)"),
        Bad(name, "a float mask", lambda: d_masks(torch.ones(3)), ValueError,
            r"expected a bool mask of shape \(3,\), got torch\.float32 \(3,\)"),
        Bad(name, "a mask for a tensor the base does not optimize",
            lambda: ct(mode="D", masks={_p(3): torch.ones(3, dtype=torch.bool)}), ValueError,
            r"expected masks keyed by parameters of the base optimizer, got a \(3,\) tensor that is not one"),
        Bad(name, "param_filter with D",
            lambda: ChildTuning(base(), mode="D", masks={}, param_filter=lambda n, p: True), ValueError,
            r"expected param_filter=None with mode='D' .*got a filter"),
        Bad(name, "param_filter not callable", lambda: ct(param_filter=3), TypeError,
            r"expected param_filter to be a callable \(name, parameter\) -> bool, or None, got int"),
        Bad(name, "rescale a string", lambda: ct(rescale="no"), TypeError, r"expected rescale to be a bool, got 'no'"),
        Bad(name, "mask_weight_decay an int", lambda: ct(mask_weight_decay=1), TypeError,
            r"expected mask_weight_decay to be a bool, got 1"),
        Bad(name, "generator an int", lambda: ct(generator=3), TypeError,
            r"expected generator to be a torch\.Generator or None, got int"),
        Bad(name, "mask_weight_decay with mask_on='update'", lambda: ct(mask_on="update", mask_weight_decay=True),
            ValueError, r"expected mask_on='grad' with mask_weight_decay=True .*got mask_on='update'"),
        Bad(name, "mask_weight_decay over a base whose decay rule is unknown",
            lambda: ChildTuning(AdaFactor([_p(3)], weight_decay=0.1), mask_weight_decay=True), ValueError,
            r"expected a base whose weight decay rule is known with mask_weight_decay=True .*got AdaFactor"),
    ]
    step = f"{name}.step"
    rows += [
        Bad(step, "closure not callable", lambda: ct().step(3), TypeError,
            r"expected closure to be a callable that re-evaluates the loss, or None, got int"),
        Bad(step, "gradient of another shape", lambda: bad_grad(torch.ones(4)), RuntimeError,
            r"expected the gradient of a \(3,\) parameter to have its shape, got \(4,\)"),
        Bad(step, "integer gradient", lambda: bad_grad(torch.ones(3, dtype=torch.int64)), RuntimeError,
            r"expected a real floating-point gradient for a \(3,\) parameter, got torch\.int64"),
        Bad(step, "a base that releases gradients", released, RuntimeError,
            r"expected a base optimizer on the ordinary path .*got one that releases gradients"),
    ]
    lsd = f"{name}.load_state_dict"
    rows += [
        Bad(lsd, "the base's own state", lambda: load(_stepped(AccumAdamW)), ValueError,
            r"expected a state dict saved by ChildTuning \(with a 'child_tuning' entry\), got one without it"),
        Bad(lsd, "an int", lambda: load(3), TypeError,
            r"expected a state dict \(a mapping with 'state' and 'param_groups' entries\), got int"),
        Bad(lsd, "saved with another reserve_p", lambda: load(saved(lambda: ct(reserve_p=0.5))), ValueError,
            r"expected a state dict saved with this ChildTuning's \{'mode': 'F', 'reserve_p': 0\.2.*got one saved "
            r"with \{'mode': 'F', 'reserve_p': 0\.5"),
        Bad(lsd, "saved over another base", lambda: load(saved(lambda: ChildTuning(AccumSGDM([_p(3)], lr=0.1)))),
            ValueError, r"expected a state dict saved by ChildTuning over AccumAdamW \(parameter groups with options"),
        Bad(lsd, "two groups for one",
            lambda: load(saved(lambda: ChildTuning(AccumAdamW([{"params": [_p(3)]}, {"params": [_p(3)]}])))),
            ValueError, r"expected a state dict with 1 parameter groups \(as this ChildTuning over AccumAdamW has\), "
                        r"got 2"),
        Bad(lsd, "a parameter of another shape", lambda: load(saved(lambda: ChildTuning(AccumAdamW([_p(4)])))),
            ValueError, r"expected the f_masks entry of parameter 0 to have its shape \(3,\), got \(4,\)"),
        Bad(lsd, "a mask index out of range",
            lambda: load(_edited(saved(), lambda sd: sd["child_tuning"]["f_masks"].update(
                {5: torch.ones(3, dtype=torch.bool)}))),
            ValueError, r"expected f_masks for parameter indices 0\.\.0, got index 5"),
        Bad(lsd, "a generator state without a generator", lambda: load(saved(lambda: ct(generator=gen))), ValueError,
            r"expected a ChildTuning with a generator to load a state dict that holds a generator state, "
            r"got generator=None"),
    ]
    return rows


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x)


def _loss(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    return model(batch).pow(2).mean()


BATCHES = [torch.randn(4, 2)]


def _fisher_rows() -> list[Bad]:
    fi, fm = "kexue.optim.fisher_information", "kexue.optim.fisher_mask"
    return [
        Bad(fi, "model not a module", lambda: fisher_information(3, BATCHES, _loss), TypeError,
            r"expected model to be a torch\.nn\.Module, got int"),
        Bad(fi, "loader not iterable", lambda: fisher_information(_Tiny(), 3, _loss), TypeError,
            r"expected loader to be an iterable of batches, got int"),
        Bad(fi, "loss_fn not callable", lambda: fisher_information(_Tiny(), BATCHES, "nll"), TypeError,
            r"expected loss_fn to be a callable \(model, batch\) -> loss, got str"),
        Bad(fi, "param_filter not callable", lambda: fisher_information(_Tiny(), BATCHES, _loss, param_filter="lin"),
            TypeError, r"expected param_filter to be a callable \(name, parameter\) -> bool, or None, got str"),
        Bad(fi, "a loss that is not a scalar", lambda: fisher_information(_Tiny(), BATCHES, lambda m, b: m(b)),
            ValueError, r"expected loss_fn to return a scalar tensor, got a \(4, 1\) tensor for batch 0"),
        Bad(fi, "a loss that is a float", lambda: fisher_information(_Tiny(), BATCHES, lambda m, b: 1.0),
            ValueError, r"expected loss_fn to return a scalar tensor, got float for batch 0"),
        Bad(fi, "an empty loader", lambda: fisher_information(_Tiny(), [], _loss), ValueError,
            r"expected a loader that yields batches, got one that yielded none"),
        Bad(fi, "max_grad_norm = 0", lambda: fisher_information(_Tiny(), BATCHES, _loss, max_grad_norm=0), ValueError,
            r"expected max_grad_norm > 0\.0, got 0"),
        Bad(fi, "param_filter accepts nothing",
            lambda: fisher_information(_Tiny(), BATCHES, _loss, param_filter=lambda n, p: False), ValueError,
            r"expected at least one trainable parameter that param_filter accepts, got none"),
        Bad(fi, "a nan loss", lambda: fisher_information(_Tiny(), BATCHES, lambda m, b: _loss(m, b) * NAN),
            ValueError, r"expected finite Fisher information, got non-finite scores for 'lin\.weight'"),
        Bad(fm, "reserve_p = 0", lambda: fisher_mask(_Tiny(), BATCHES, _loss, 0), ValueError,
            r"expected reserve_p > 0\.0, got 0"),
        Bad(fm, "reserve_p = 2", lambda: fisher_mask(_Tiny(), BATCHES, _loss, 2.0), ValueError,
            r"expected reserve_p <= 1\.0, got 2\.0"),
        Bad(fm, "unknown scope", lambda: fisher_mask(_Tiny(), BATCHES, _loss, 0.5, scope="layer"), ValueError,
            r"expected scope to be one of \['global', 'per_tensor'\], got 'layer'"),
        Bad(fm, "an empty loader", lambda: fisher_mask(_Tiny(), [], _loss, 0.5), ValueError,
            r"expected a loader that yields batches, got one that yielded none"),
        Bad(fm, "a nan loss (the mask would be empty)",
            lambda: fisher_mask(_Tiny(), BATCHES, lambda m, b: _loss(m, b) * NAN, 0.5), ValueError,
            r"expected finite Fisher information, got non-finite scores for 'lin\.weight'"),
    ]


def _release_rows() -> list[Bad]:
    name = "kexue.optim.GradientRelease"
    return [
        Bad(name, "a torch optimizer", lambda: GradientRelease(torch.optim.Adam([_p(2)]), []), TypeError,
            r"expected optimizer to be an AccumSGDM, AccumAdam or AccumAdamW .*got Adam"),
        Bad(name, "handles not a list", lambda: GradientRelease(AccumAdam([_p(2)]), 3), TypeError,
            r"expected handles to be a list of the hook handles release_gradients\(\) registered, got 3"),
    ]


def _axes_rows() -> list[Bad]:
    name = "kexue.optim.factored_axes"
    return [
        Bad(name, "min_dim_size_to_factor negative", lambda: factored_axes((4, 4), -1, "largest"), ValueError,
            r"expected min_dim_size_to_factor >= 0, got -1"),
        Bad(name, "min_dim_size_to_factor a float", lambda: factored_axes((4, 4), 1.5, "largest"), TypeError,
            r"expected min_dim_size_to_factor to be an integer, got 1\.5"),
        Bad(name, "unknown factor_dims", lambda: factored_axes((4, 4), 1, "first"), ValueError,
            r"expected factor_dims to be one of \['largest', 'last'\], got 'first'"),
        Bad(name, "a negative size", lambda: factored_axes((4, -4), 1, "last"), ValueError,
            r"expected shape\[1\] >= 0, got -4"),
        Bad(name, "shape a string", lambda: factored_axes("ab", 1, "last"), TypeError,
            r"expected shape to be a tuple of sizes, got str"),
    ]


def _schedule_rows() -> list[Bad]:
    wl, wlf = "kexue.optim.warmup_linear", "kexue.optim.warmup_linear_factor"
    pl, plf = "kexue.optim.piecewise_linear", "kexue.optim.piecewise_linear_factor"

    def opt() -> AccumAdamW:
        return AccumAdamW([_p(2)])

    return [
        Bad(wl, "optimizer not an optimizer", lambda: warmup_linear(3, 1, 10), TypeError,
            r"expected optimizer to be a torch\.optim\.Optimizer, got int"),
        Bad(wl, "warmup_steps negative", lambda: warmup_linear(opt(), -1, 10), ValueError,
            r"expected warmup_steps >= 0, got -1"),
        Bad(wl, "warmup_steps a float", lambda: warmup_linear(opt(), 1.5, 10), TypeError,
            r"expected warmup_steps to be an integer, got 1\.5"),
        Bad(wl, "total_steps = warmup_steps", lambda: warmup_linear(opt(), 10, 10), ValueError,
            r"expected total_steps > warmup_steps, got total_steps=10, warmup_steps=10"),
        Bad(wl, "final_factor nan", lambda: warmup_linear(opt(), 1, 10, NAN), ValueError,
            r"expected final_factor to be finite, got nan"),
        Bad(wlf, "step negative", lambda: warmup_linear_factor(-3, 2, 10), ValueError,
            r"expected step >= 0\.0, got -3"),
        Bad(wlf, "step nan", lambda: warmup_linear_factor(NAN, 2, 10), ValueError,
            r"expected step to be finite, got nan"),
        Bad(wlf, "warmup_steps negative", lambda: warmup_linear_factor(3, -1, 10), ValueError,
            r"expected warmup_steps >= 0, got -1"),
        Bad(wlf, "total_steps < warmup_steps", lambda: warmup_linear_factor(3, 10, 5), ValueError,
            r"expected total_steps > warmup_steps, got total_steps=5, warmup_steps=10"),
        Bad(wlf, "final_factor nan", lambda: warmup_linear_factor(3, 2, 10, NAN), ValueError,
            r"expected final_factor to be finite, got nan"),
        Bad(pl, "optimizer not an optimizer", lambda: piecewise_linear(3, {1: 1.0}), TypeError,
            r"expected optimizer to be a torch\.optim\.Optimizer, got int"),
        Bad(pl, "empty schedule", lambda: piecewise_linear(opt(), {}), ValueError,
            r"expected schedule to be a non-empty \{step: factor\} dict, got \{\}"),
        Bad(pl, "a nan factor", lambda: piecewise_linear(opt(), {1: NAN}), ValueError,
            r"expected schedule\[1\] to be finite, got nan"),
        Bad(pl, "a negative factor", lambda: piecewise_linear(opt(), {1: -1.0}), ValueError,
            r"expected schedule\[1\] >= 0\.0, got -1\.0"),
        Bad(pl, "a negative step", lambda: piecewise_linear(opt(), {-1: 1.0}), ValueError,
            r"expected schedule step >= 0, got -1"),
        Bad(pl, "from_zero a string", lambda: piecewise_linear(opt(), {1: 1.0}, from_zero="no"), TypeError,
            r"expected from_zero to be a bool, got 'no'"),
        Bad(plf, "empty schedule", lambda: piecewise_linear_factor(3, {}), ValueError,
            r"expected schedule to be a non-empty \{step: factor\} dict, got \{\}"),
        Bad(plf, "schedule a list", lambda: piecewise_linear_factor(3, [(1, 1.0)]), TypeError,
            r"expected schedule to be a \{step: factor\} dict, got list"),
        Bad(plf, "a fractional step in the schedule", lambda: piecewise_linear_factor(3, {1.5: 1.0}), TypeError,
            r"expected schedule step to be an integer, got 1\.5"),
        Bad(plf, "step negative", lambda: piecewise_linear_factor(-4, {1: 1.0, 5: 0.1}), ValueError,
            r"expected step >= 0\.0, got -4"),
        Bad(plf, "step nan", lambda: piecewise_linear_factor(NAN, {1: 1.0, 5: 0.1}), ValueError,
            r"expected step to be finite, got nan"),
    ]


ROWS = [row for cls in ACCUM for row in _accum_rows(cls)] + _ada_rows() + _child_rows() + _fisher_rows() \
    + _release_rows() + _axes_rows() + _schedule_rows()


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_refuses(row):
    check(row)
