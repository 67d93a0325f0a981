"""Reproduction: Transformer initialisation, parametrisation and normalisation (kexue.fm/archives/8620).

Quick: (1) sampling constants: 10⁶ draws of a normal truncated at ±2σ have variance ≈ 0.7737σ² (and the corrected
sampler the asked-for σ); E[sigmoid(z)²] ≈ 0.29338. (2) Saturation: with unit-variance q, k ∈ ℝ^d, d ∈ {16, 64, 256},
n = 32, the mean maximum softmax probability and ‖∂L/∂logits‖ with and without the 1/√d scale.
Full: associative recall with scaled attention, unscaled attention with the standard init, and unscaled with
the T5-style init; and a 48-block residual MLP (width 64, no norm) on digits, Adam 1e-3, 30 epochs: Post-LN, Pre-LN,
ReZero (learned α from 0) and Su's ramp (α += 1/1000 per optimizer step, capped at 1); the post's preference for the
ramp is anecdotal.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..nn.init import trunc_normal_, truncnorm_variance_ratio
from .common import digits_split, pyplot
from .result import Post, Result, Table

POST = Post(title="浅谈Transformer的初始化、参数化与标准化",
            gloss="Transformer initialisation, parametrisation and normalisation", date="2021-08-17",
            url="https://kexue.fm/archives/8620")


def sigmoid_second_moment() -> float:
    """E[σ(z)²] for z ~ N(0,1) (≈ 0.2933790; the post's gain for a sigmoid is 1/√ of it), by Gauss–Hermite
    quadrature with 200 nodes."""
    x, w = np.polynomial.hermite_e.hermegauss(200)
    return float(np.sum(w / (1 + np.exp(-x)) ** 2) / math.sqrt(2 * math.pi))


def _saturation(d: int, scaled: bool, n: int = 32, trials: int = 500) -> dict[str, float]:
    """Softmax rows of unit-variance q·k logits (scaled by 1/√d or not): the median max probability, the share of
    one-hot rows (max p > 0.99), and the median Frobenius norm of the softmax Jacobian diag(p) − ppᵀ (the factor
    every gradient through the softmax is multiplied by)."""
    g = torch.Generator().manual_seed(d)
    q = torch.randn(trials, n, d, generator=g, dtype=torch.float64)
    k = torch.randn(trials, n, d, generator=g, dtype=torch.float64)
    p = torch.softmax(q @ k.transpose(-1, -2) / (math.sqrt(d) if scaled else 1.0), dim=-1)
    jac = torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)
    maxp = p.max(-1).values
    return {"median_max_p": maxp.median().item(), "one_hot_share": (maxp > 0.99).double().mean().item(),
            "median_jacobian": jac.flatten(-2).norm(dim=-1).median().item()}


class _ResMLP(torch.nn.Module):
    def __init__(self, kind: str, depth: int = 48, width: int = 64, ramp_step: float = 1e-3) -> None:
        super().__init__()
        self.kind = kind
        self.inp = torch.nn.Linear(64, width)
        self.blocks = torch.nn.ModuleList(
            torch.nn.Sequential(torch.nn.Linear(width, width), torch.nn.ReLU(), torch.nn.Linear(width, width))
            for _ in range(depth))
        self.norms = torch.nn.ModuleList(torch.nn.LayerNorm(width) for _ in range(depth))
        self.out = torch.nn.Linear(width, 10)
        if kind == "rezero":
            self.alpha = torch.nn.Parameter(torch.zeros(depth))
        elif kind == "ramp":
            # not trained; advanced once per optimizer step (see step_ramp), saved with the state_dict
            self.register_buffer("alpha", torch.zeros(depth))
        self.ramp_step = ramp_step

    def step_ramp(self) -> None:
        if self.kind == "ramp":
            self.alpha.add_(self.ramp_step).clamp_(max=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        for i, (f, norm) in enumerate(zip(self.blocks, self.norms)):
            if self.kind == "post":
                h = norm(h + f(h))
            elif self.kind == "pre":
                h = h + f(norm(h))
            else:
                h = h + self.alpha[i] * f(h)
        return self.out(h)


def _train_mlp(kind: str, seed: int, epochs: int = 30) -> float:
    X, y, tr, va = digits_split()
    torch.manual_seed(seed)
    net = _ResMLP(kind)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = tr[torch.randperm(len(tr), generator=g)]
        for i in range(0, len(order), 64):
            idx = order[i:i + 64]
            loss = torch.nn.functional.cross_entropy(net(X[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            net.step_ramp()
    with torch.no_grad():
        return torch.nn.functional.cross_entropy(net(X[va]), y[va]).item()


def run(quick: bool = True) -> Result:
    g = torch.Generator().manual_seed(0)
    raw = trunc_normal_(torch.empty(10**6, dtype=torch.float64), std=1.0, corrected=False, generator=g)
    fixed = trunc_normal_(torch.empty(10**6, dtype=torch.float64), std=0.02, corrected=True, generator=g)
    z = torch.randn(10**6, generator=g, dtype=torch.float64)
    sig_mc = torch.sigmoid(z).pow(2).mean().item()
    const_rows = [
        ["Var of N(0,1) truncated at ±2 (10⁶ draws)", raw.var().item(), truncnorm_variance_ratio(2.0), 0.7737413],
        ["std of the corrected sampler at σ = 0.02", fixed.std().item(), 0.02, 0.02],
        ["E[sigmoid(z)²] (10⁶ draws)", sig_mc, sigmoid_second_moment(), 0.2933790],
    ]
    consts_ok = abs(raw.var().item() - 0.7737413) < 3e-3 and abs(fixed.std().item() / 0.02 - 1) < 3e-3 \
        and abs(sig_mc - 0.2933790) < 1e-3
    sat_rows, sat = [], {}
    for d in (16, 64, 256):
        sc, un = _saturation(d, True), _saturation(d, False)
        sat[d] = {"scaled": sc, "unscaled": un}
        sat_rows.append([d, sc["median_max_p"], un["median_max_p"], un["one_hot_share"], sc["median_jacobian"],
                         un["median_jacobian"]])
    peaked = all(sat[d]["unscaled"]["median_max_p"] >= 0.85 for d in (64, 256))
    vanished = sat[256]["unscaled"]["median_jacobian"] < 0.1 * sat[256]["scaled"]["median_jacobian"]
    tables = [Table("Sampling constants", ["quantity", "measured", "closed form", "post"], const_rows),
              Table("Softmax saturation without 1/√d (n = 32 keys, unit-variance q, k; 500 rows of 32)",
                    ["d", "median max p (scaled)", "median max p (unscaled)", "one-hot rows (unscaled)",
                     "median ‖J‖ (scaled)", "median ‖J‖ (unscaled)"], sat_rows)]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ds = [16, 64, 256]
    ax.plot(ds, [sat[d]["scaled"]["median_max_p"] for d in ds], "o-", label="median max p, scaled by 1/√d")
    ax.plot(ds, [sat[d]["unscaled"]["median_max_p"] for d in ds], "s-", label="median max p, unscaled")
    ax.plot(ds, [sat[d]["unscaled"]["median_jacobian"] for d in ds], "s--", label="median ‖softmax Jacobian‖, unscaled")
    ax.plot(ds, [sat[d]["scaled"]["median_jacobian"] for d in ds], "o--", label="median ‖softmax Jacobian‖, scaled")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("d")
    ax.set_ylabel("probability / norm")
    ax.legend()
    fig.tight_layout()
    numbers: dict[str, object] = {"trunc_var": raw.var().item(), "corrected_std": fixed.std().item(),
                                  "sigmoid_sq_mc": sig_mc, "saturation": sat}
    jacobian_64 = sat[64]['unscaled']['median_jacobian'] / sat[64]['scaled']['median_jacobian']
    notes = [f"At d = 64 the unscaled rows are peaked but only {sat[64]['unscaled']['one_hot_share']:.0%} are "
             f"one-hot and the median Jacobian is {jacobian_64:.0%} "
             "of the scaled one: the vanishing gradient is partial at d = 64 with 32 keys and clear from d = 256.",
             "The post's own anecdote (a model that stopped converging without 1/√d) is explained by the saturation "
             "measured here; the model-level experiment of the spec is not run at our scale."]
    if not quick:
        res_rows = []
        for kind in ("post", "pre", "rezero", "ramp"):
            losses = [_train_mlp(kind, s) for s in range(2)]
            res_rows.append([kind, sum(losses) / len(losses), min(losses), max(losses)])
        tables.append(Table("48-block residual MLP on digits, Adam 1e-3, 30 epochs, 2 seeds: validation loss "
                            "(Su's ramp preference is an anecdote)", ["residual form", "mean", "min", "max"], res_rows))
        numbers["residual_mlp"] = res_rows
        from ._recall import recall_accuracy

        settings: dict[str, dict[str, Any]] = {
            "scaled (1/√d)": {}, "unscaled, standard init": {"attention_scale": False},
            "unscaled, T5 init (symmetric)": {"attention_scale": False, "qk_init": "t5_sym"}}
        rec_rows = []
        for name, kw in settings.items():
            accs = [recall_accuracy(seed=s, pairs=4, steps=1500, lr=2e-3, **kw) for s in range(2)]
            rec_rows.append([name, sum(accs) / 2, min(accs), max(accs)])
        tables.append(Table("Associative recall (4 pairs), 2 layers, key_size 8, 1,500 Adam steps, 2 seeds: accuracy",
                            ["attention", "mean", "min", "max"], rec_rows))
        numbers["recall"] = rec_rows
        best = min(res_rows, key=lambda r: r[1])[0]
        notes.append(f"Lowest mean validation loss: {best} (the post's anecdote favours the ramp).")
    return Result(
        name="transformer_init", post=POST,
        claim="A normal truncated at ±2σ has variance 0.7737σ² (sample with σ·1.1368 to correct it); E[sigmoid(z)²] ≈ "
              "0.29338; without the 1/√d scale, q·k has variance d, so at d ≥ 64 the softmax is nearly one-hot and "
              "its gradients vanish.",
        measured=f"truncated variance {raw.var().item():.4f}, corrected std {fixed.std().item():.5f}, "
                 f"E[sigmoid²] {sig_mc:.5f}; unscaled median max p at d = 64/256: "
                 f"{sat[64]['unscaled']['median_max_p']:.2f}/{sat[256]['unscaled']['median_max_p']:.3f} (scaled "
                 f"{sat[64]['scaled']['median_max_p']:.2f}); median softmax Jacobian at d = 256: "
                 f"{sat[256]['unscaled']['median_jacobian']:.3f} unscaled vs "
                 f"{sat[256]['scaled']['median_jacobian']:.3f}",
        verdict="verified" if consts_ok and peaked and vanished else "not verified",
        kind="math",
        post_figure="Var = 0.7737σ² (truncated at ±2σ; sample with 1.1368σ); E[sigmoid(z)²] ≈ 0.29338; no figure "
                    "for the saturation",
        our_figure=f"Var {raw.var().item():.4f}σ²; corrected std {fixed.std().item() / 0.02:.4f}σ; E[sigmoid²] "
                   f"{sig_mc:.5f}; unscaled median max p at d = 256: {sat[256]['unscaled']['median_max_p']:.3g}",
        setup="10⁶ float64 draws per constant; softmax of 500 rows of 32 unit-variance q·k logits at d = 16, 64, 256"
              + ("" if quick else "; exploratory: a 48-block residual MLP on digits (2 seeds, 30 epochs) and "
                 "associative recall (2 seeds, 1,500 steps)") + ".",
        rule="verified if the truncated variance is 0.7737 ± 0.003, the corrected std within 0.3 % of σ, E[sigmoid²] "
             "0.29338 ± 0.001, the unscaled softmax rows are peaked at d = 64 and 256 (median max p ≥ 0.85), and at "
             "d = 256 the median softmax-Jacobian norm (which multiplies every gradient through the softmax) is "
             "below a tenth of the scaled one; otherwise not verified. The full mode's training tables test no claim.",
        tables=tables, figures=[("saturation", fig)], numbers=numbers, notes=notes, quick=quick)
