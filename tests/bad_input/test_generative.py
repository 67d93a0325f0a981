"""Bad-input rows: kexue.generative (SimSiam's loss, model, collapse measure and toy dynamics)."""

from __future__ import annotations

import pytest
import torch
from _matrix import Bad, check
from torch import nn

from kexue.generative import SimSiam, collapse_std, mlp_encoder, mlp_predictor, simsiam_loss, toy_dynamics

NAN = float("nan")
A = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
B = torch.randn(4, 7, generator=torch.Generator().manual_seed(1))
V = torch.randn(8)
MODEL = SimSiam(mlp_encoder(8, 16, 4), mlp_predictor(4, 2))

ROWS = [
    # simsiam_loss
    Bad("kexue.generative.simsiam_loss", "z2 of another dim", lambda: simsiam_loss(A, A, A, B), ValueError,
        r"expected p1, p2, z1, z2 of one shape, got \(4, 8\), \(4, 8\), \(4, 8\), \(4, 7\)"),
    Bad("kexue.generative.simsiam_loss", "p2 of another batch size", lambda: simsiam_loss(A, A[:3], A, A),
        ValueError, r"expected p1, p2, z1, z2 of one shape, got \(4, 8\), \(3, 8\)"),
    Bad("kexue.generative.simsiam_loss", "1-D p1", lambda: simsiam_loss(V, V, V, V), ValueError,
        r"expected p1 of shape \(batch, dim\), got shape \(8,\)"),
    Bad("kexue.generative.simsiam_loss", "integer z1", lambda: simsiam_loss(A, A, A.long(), A), TypeError,
        r"expected z1 to be a floating-point tensor, got torch\.int64"),
    Bad("kexue.generative.simsiam_loss", "p1 a list", lambda: simsiam_loss([[1.0, 2.0]], A, A, A), TypeError,
        r"expected p1 to be a torch\.Tensor, got list"),
    Bad("kexue.generative.simsiam_loss", "empty batch (else NaN)",
        lambda: simsiam_loss(*[torch.zeros(0, 8)] * 4), ValueError, r"expected p1 to be non-empty, got shape \(0, 8\)"),
    Bad("kexue.generative.simsiam_loss", "stop_grad a string (would count as True)",
        lambda: simsiam_loss(A, A, A, A, stop_grad="False"), TypeError,
        r"expected stop_grad to be a bool, got 'False'"),
    # collapse_std
    Bad("kexue.generative.collapse_std", "z with nan", lambda: collapse_std(torch.tensor([[1.0, NAN], [0.0, 1.0]])),
        ValueError, r"expected z to be finite, got 1 NaN or infinite entries"),
    Bad("kexue.generative.collapse_std", "one row (else NaN)", lambda: collapse_std(A[:1]), ValueError,
        r"expected z with at least 2 rows \(a std over samples\), got shape \(1, 8\)"),
    Bad("kexue.generative.collapse_std", "1-D z", lambda: collapse_std(V), ValueError,
        r"expected z of shape \(batch, dim\), got shape \(8,\)"),
    Bad("kexue.generative.collapse_std", "z a numpy array", lambda: collapse_std(A.numpy()), TypeError,
        r"expected z to be a torch\.Tensor, got ndarray"),
    Bad("kexue.generative.collapse_std", "boolean z", lambda: collapse_std(A > 0), TypeError,
        r"expected z to be a floating-point tensor, got torch\.bool"),
    # toy_dynamics
    Bad("kexue.generative.toy_dynamics", "unknown mode", lambda: toy_dynamics(mode="stop_grad"), ValueError,
        r"expected mode to be one of \['stopgrad', 'full', 'direct_only'\], got 'stop_grad'"),
    Bad("kexue.generative.toy_dynamics", "dt = 0", lambda: toy_dynamics(dt=0.0), ValueError,
        r"expected dt > 0\.0, got 0\.0"),
    Bad("kexue.generative.toy_dynamics", "dt negative", lambda: toy_dynamics(dt=-1e-3), ValueError,
        r"expected dt > 0\.0, got -0\.001"),
    Bad("kexue.generative.toy_dynamics", "T = 0", lambda: toy_dynamics(T=0), ValueError, r"expected T > 0\.0, got 0"),
    Bad("kexue.generative.toy_dynamics", "T infinite", lambda: toy_dynamics(T=float("inf")), ValueError,
        r"expected T to be finite, got inf"),
    Bad("kexue.generative.toy_dynamics", "phi0 nan", lambda: toy_dynamics(phi0=NAN), ValueError,
        r"expected phi0 to be finite, got nan"),
    Bad("kexue.generative.toy_dynamics", "theta0 a string", lambda: toy_dynamics(theta0="0.1"), TypeError,
        r"expected theta0 to be a real number, got '0\.1'"),
    Bad("kexue.generative.toy_dynamics", "T/dt beyond the step limit (would run for minutes)",
        lambda: toy_dynamics(T=1e4, dt=1e-6), ValueError,
        r"expected T/dt <= 10,000,000 Euler steps, got T = 10000, dt = 1e-06"),
    Bad("kexue.generative.toy_dynamics", "a step so large the flow diverges (else inf and nan)",
        lambda: toy_dynamics(phi0=100.0, theta0=100.0, dt=0.1), ValueError,
        r"expected a finite trajectory, got .* try a smaller dt"),
    # mlp_encoder, mlp_predictor
    Bad("kexue.generative.mlp_encoder", "hidden_dim 0", lambda: mlp_encoder(64, 0), ValueError,
        r"expected hidden_dim >= 1, got 0"),
    Bad("kexue.generative.mlp_encoder", "in_dim a float", lambda: mlp_encoder(64.0), TypeError,
        r"expected in_dim to be an integer, got 64\.0"),
    Bad("kexue.generative.mlp_encoder", "out_dim negative", lambda: mlp_encoder(out_dim=-2), ValueError,
        r"expected out_dim >= 1, got -2"),
    Bad("kexue.generative.mlp_predictor", "dim 0", lambda: mlp_predictor(0), ValueError, r"expected dim >= 1, got 0"),
    Bad("kexue.generative.mlp_predictor", "hidden_dim a string", lambda: mlp_predictor(64, "32"), TypeError,
        r"expected hidden_dim to be an integer, got '32'"),
    # SimSiam
    Bad("kexue.generative.SimSiam", "predictor None (use nn.Identity())", lambda: SimSiam(mlp_encoder(), None),
        TypeError, r"expected predictor to be a torch\.nn\.Module, got NoneType"),
    Bad("kexue.generative.SimSiam", "encoder a function", lambda: SimSiam(torch.tanh, nn.Identity()), TypeError,
        r"expected encoder to be a torch\.nn\.Module, got builtin_function_or_method"),
    Bad("kexue.generative.SimSiam.forward", "views of different shapes", lambda: MODEL(A, A[:3]), ValueError,
        r"expected x1 and x2 \(two views of one batch\) of one shape, got \(4, 8\) and \(3, 8\)"),
    Bad("kexue.generative.SimSiam.forward", "x2 a list", lambda: MODEL(A, A.tolist()), TypeError,
        r"expected x2 to be a torch\.Tensor, got list"),
]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_refuses(row):
    check(row)
