"""Reproduction: KL divergence, Bhattacharyya distance and W distance between two multivariate normals
(kexue.fm/archives/8512).

The post derives closed forms for KL(p‖q), the Bhattacharyya distance and W₂² between Gaussians, and proves that the
two W₂ formulas in circulation (Tr((Σ_p^½Σ_qΣ_p^½)^½) and FID's Tr((Σ_pΣ_q)^½)) are equal; it has no experiments.

Quick: three random positive definite pairs in n = 5. KL = E_p[log p − log q] and BD = −log E_p[√(q/p)] by Monte
Carlo (4·10⁵ draws each, float64) against :mod:`kexue.stats.gaussian`'s closed forms; closed-form pairs: KL against
``torch.distributions.kl_divergence``, the two W₂ forms, W₂ against POT's ``bures_wasserstein_distance`` (when POT
is installed), the symmetry of W₂ and BD, the 1-D identities (W₂² = Δμ² + Δσ², BD's 1-D form), the commuting-case
and standard-normal formulas. Beside them (not in the verdict): a rank-deficient pair (8 and 12 samples in 16 dims)
where ``scipy.linalg.sqrtm`` of the product is complex, the float32 error, and gradients at Σ = I.
Full: the same for n ∈ {2, 10, 50}, with Σ_p Wishart-like or of condition number 10³ and 10⁶ (eigenvalues
log-spaced, random rotation) and q an order-1 perturbation of p in p's own coordinates (see :func:`_pair`), and the
float32 loss of accuracy of every quantity against float64.

Kind: math. :func:`decide` verifies when every Monte Carlo estimate lies within 4 of its standard errors of the
closed form (and is informative: 4 s.e. under 5 % of max(1, |value|)) and every closed-form pair agrees to 1e-8
(relative).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor
from torch.distributions import MultivariateNormal, kl_divergence

from ..stats.gaussian import bhattacharyya_normal, frechet_distance, hellinger_normal, kl_normal, sqrtm_psd, w2_normal
from .common import pyplot
from .result import Post, Result, Table, Verdict

POST = Post(title="两个多元正态分布的KL散度、巴氏距离和W距离",
            gloss="KL divergence, Bhattacharyya distance and W distance between two multivariate normals",
            date="2021-07-08", url="https://kexue.fm/archives/8512")
F64 = torch.float64
#: Standard errors within which a Monte Carlo estimate must lie of the closed form.
MC_Z = 4.0
#: The largest 4-s.e. half-width, relative to max(1, |value|), for a Monte Carlo check to be informative.
MC_INFORMATIVE = 0.05
#: Relative tolerance of closed-form pairs (the spec's 1e-8).
CLOSED_TOL = 1e-8


class MCCheck(NamedTuple):
    """A closed form against its Monte Carlo estimate (mean and standard error)."""

    name: str
    closed: float
    mc: float
    se: float


class ClosedCheck(NamedTuple):
    """Two closed-form computations that must agree to ``tol`` relative."""

    name: str
    a: float
    b: float
    tol: float = CLOSED_TOL


def rel_gap(a: float, b: float) -> float:
    """|a − b| / max(1, |a|, |b|) (absolute near 0, relative elsewhere)."""
    return abs(a - b) / max(1.0, abs(a), abs(b))


def decide(mc: Sequence[MCCheck], closed: Sequence[ClosedCheck]) -> tuple[Verdict, str]:
    """``verified`` when every Monte Carlo check has a finite estimate within :data:`MC_Z` standard errors of the
    closed form and is informative (MC_Z·se ≤ :data:`MC_INFORMATIVE`·max(1, |closed|)), and every closed-form pair
    agrees within its relative tolerance (:func:`rel_gap`); otherwise ``not verified``, naming what failed."""
    failed = []
    for c in mc:
        values = (c.closed, c.mc, c.se)
        if not all(math.isfinite(v) for v in values) or c.se < 0:
            failed.append(f"{c.name}: not finite")
        elif abs(c.closed - c.mc) > MC_Z * c.se:
            failed.append(f"{c.name}: closed {c.closed:.6g} vs MC {c.mc:.6g} ± {c.se:.2g} "
                          f"({abs(c.closed - c.mc) / c.se:.1f} s.e.)")
        elif MC_Z * c.se > MC_INFORMATIVE * max(1.0, abs(c.closed)):
            failed.append(f"{c.name}: Monte Carlo too noisy to tell ({MC_Z:g} s.e. = {MC_Z * c.se:.2g})")
    for k in closed:
        gap = rel_gap(k.a, k.b)
        if not (math.isfinite(k.a) and math.isfinite(k.b)) or gap > k.tol:
            failed.append(f"{k.name}: {k.a:.12g} vs {k.b:.12g} (gap {gap:.2g} > {k.tol:g})")
    if not mc and not closed:
        return "not verified", "nothing was measured"
    if failed:
        return "not verified", "; ".join(failed)
    worst_z = max((abs(c.closed - c.mc) / c.se for c in mc if c.se > 0), default=0.0)
    worst_gap = max((rel_gap(k.a, k.b) for k in closed), default=0.0)
    return "verified", (f"all {len(mc)} Monte Carlo checks within {MC_Z:g} s.e. (largest {worst_z:.2f} s.e.), all "
                        f"{len(closed)} closed-form pairs within tolerance (largest gap {worst_gap:.2g})")


# -- the measurements ---------------------------------------------------------------------------------------------


def _pair(n: int, cond: float | None, seed: int, near: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """μ_p, Σ_p, μ_q, Σ_q in float64.

    Σ_p is Wishart-like (A Aᵀ/(n + 3) + 0.05 I) for ``cond`` None, else of eigenvalues log-spaced from 1 to 1/cond
    under a random rotation. ``near`` False: q is drawn the same way, independently. ``near`` True: q = Σ_p^½ ⋅
    N(δ, C) with C = V diag(e^{2z/√n}) Vᵀ and δ ~ N(0, I/(4n)), so that Σ_q is as ill-conditioned as Σ_p while KL
    and BD (invariant under the common affine map) stay of order 1 and Monte Carlo can check them: independent pairs
    in 50 dims, or ill-conditioned ones, give KL ~ 10²–10⁵ and an estimate of BD = −log E_p[√(q/p)] with no usable
    variance.
    """
    g = torch.Generator().manual_seed(seed)

    def rotation() -> Tensor:
        return torch.linalg.qr(torch.randn(n, n, generator=g, dtype=F64))[0]

    def cov() -> Tensor:
        if cond is None:
            a = torch.randn(n, n + 3, generator=g, dtype=F64)
            return a @ a.T / (n + 3) + 0.05 * torch.eye(n, dtype=F64)
        u = rotation()
        lam = torch.logspace(0, -math.log10(cond), n, dtype=F64) if n > 1 else torch.ones(1, dtype=F64)
        return u @ torch.diag(lam) @ u.T

    sp = cov()
    sp = 0.5 * (sp + sp.T)
    if not near:
        sq = cov()
        mp, mq = 0.5 * torch.randn(n, generator=g, dtype=F64), 0.5 * torch.randn(n, generator=g, dtype=F64)
        return mp, sp, mq, 0.5 * (sq + sq.T)
    lam_p, u_p = torch.linalg.eigh(sp)
    half = u_p @ torch.diag(lam_p.sqrt()) @ u_p.T
    v = rotation()
    c = v @ torch.diag(torch.exp(2.0 * torch.randn(n, generator=g, dtype=F64) / math.sqrt(n))) @ v.T
    sq = half @ c @ half
    mp = 0.5 * torch.randn(n, generator=g, dtype=F64)
    mq = mp + half @ (0.5 * torch.randn(n, generator=g, dtype=F64) / math.sqrt(n))
    return mp, sp, mq, 0.5 * (sq + sq.T)


def _monte_carlo(mp: Tensor, sp: Tensor, mq: Tensor, sq: Tensor, draws: int, seed: int) -> tuple[MCCheck, MCCheck]:
    """KL = E_p[log p − log q] and BD = −log E_p[√(q/p)] (delta method for the log: se(m̂)/m̂), with the log-densities
    from torch.distributions, in chunks of 10⁵ draws."""
    p, q = MultivariateNormal(mp, sp), MultivariateNormal(mq, sq)
    torch.manual_seed(seed)
    lr = torch.cat([p.log_prob(x) - q.log_prob(x) for x in (p.sample((min(100_000, draws - s),))
                                                           for s in range(0, draws, 100_000))])
    root = torch.exp(-0.5 * lr)
    kl = MCCheck("KL", float(kl_normal(mp, sp, mq, sq)), float(lr.mean()), float(lr.std() / math.sqrt(draws)))
    bd = MCCheck("Bhattacharyya", float(bhattacharyya_normal(mp, sp, mq, sq)), float(-root.mean().log()),
                 float(root.std() / math.sqrt(draws) / root.mean()))
    return kl, bd


def _closed_pairs(mp: Tensor, sp: Tensor, mq: Tensor, sq: Tensor) -> list[ClosedCheck]:
    out = [ClosedCheck("KL vs torch.distributions", float(kl_normal(mp, sp, mq, sq)),
                       float(kl_divergence(MultivariateNormal(mp, sp), MultivariateNormal(mq, sq)))),
           ClosedCheck("W₂² sym vs Fréchet form", float(w2_normal(mp, sp, mq, sq)),
                       float(w2_normal(mp, sp, mq, sq, form="frechet"))),
           ClosedCheck("W₂² symmetric in p, q", float(w2_normal(mp, sp, mq, sq)), float(w2_normal(mq, sq, mp, sp))),
           ClosedCheck("BD symmetric in p, q", float(bhattacharyya_normal(mp, sp, mq, sq)),
                       float(bhattacharyya_normal(mq, sq, mp, sp))),
           ClosedCheck("KL to N(0, I): ½[‖μ‖² − log det Σ + Tr Σ − n]", float(kl_normal(mp, sp)),
                       float(0.5 * (mp.square().sum() - torch.logdet(sp) + sp.trace() - len(mp)))),
           ClosedCheck("W₂² to N(0, I): ‖μ‖² + ‖Σ^½ − I‖²", float(w2_normal(mp, sp)),
                       float(mp.square().sum() + (sqrtm_psd(sp) - torch.eye(len(mp), dtype=F64)).square().sum()))]
    pot = _pot_w2(mp, sp, mq, sq)
    if pot is not None:
        out.append(ClosedCheck("W₂² vs POT bures_wasserstein_distance²", float(w2_normal(mp, sp, mq, sq)), pot))
    # commuting: Σ_q' shares Σ_p's eigenvectors
    lam, u = torch.linalg.eigh(sp)
    sc = u @ torch.diag(torch.linalg.eigvalsh(sq)) @ u.T
    sc = 0.5 * (sc + sc.T)
    out.append(ClosedCheck("commuting: ‖Δμ‖² + ‖Σ_p^½ − Σ_q^½‖² vs sym form",
                           float(w2_normal(mp, sp, mq, sc, form="commuting")), float(w2_normal(mp, sp, mq, sc))))
    return out


def _pot_w2(mp: Tensor, sp: Tensor, mq: Tensor, sq: Tensor) -> float | None:
    try:  # POT is in the test extra, not the reproduce extra (and ships no type information)
        pot_gaussian = importlib.import_module("ot.gaussian")
    except ImportError:
        return None
    return float(pot_gaussian.bures_wasserstein_distance(mp, mq, sp, sq)) ** 2


def _one_d() -> list[ClosedCheck]:
    m1, m2, s1, s2 = 0.3, -1.2, 0.6, 1.9

    def t(*a: float) -> Tensor:
        return torch.tensor(a, dtype=F64)

    bd_1d = 0.25 * (m1 - m2) ** 2 / (s1**2 + s2**2) + 0.5 * math.log((s1**2 + s2**2) / (2 * s1 * s2))
    return [ClosedCheck("1-D: W₂² = Δμ² + Δσ²", float(w2_normal(t(m1), t(s1**2)[None], t(m2), t(s2**2)[None])),
                        (m1 - m2) ** 2 + (s1 - s2) ** 2),
            ClosedCheck("1-D: BD = Δμ²/(4(σ₁²+σ₂²)) + ½ log((σ₁²+σ₂²)/(2σ₁σ₂))",
                        float(bhattacharyya_normal(t(m1), t(s1**2)[None], t(m2), t(s2**2)[None])), bd_1d)]


def _float32_rows(n: int, cond: float | None, mp: Tensor, sp: Tensor, mq: Tensor, sq: Tensor) -> list[list[object]]:
    """Each quantity in float64 and float32 and the relative error of float32."""
    rows: list[list[object]] = []
    fns: dict[str, Callable[..., Tensor]] = {
        "KL": kl_normal, "BD": bhattacharyya_normal, "H²": hellinger_normal, "W₂² sym": w2_normal,
        "W₂² Fréchet": lambda *a: w2_normal(*a, form="frechet")}
    for name, fn in fns.items():
        v64 = float(fn(mp, sp, mq, sq))
        try:
            v32 = float(fn(mp.float(), sp.float(), mq.float(), sq.float()))
        except ValueError as e:  # float32 Cholesky of a very ill-conditioned matrix can fail: refused, not wrong
            rows.append([n, "Wishart" if cond is None else f"{cond:.0e}", name, v64, "refused", str(e)[:60]])
            continue
        rows.append([n, "Wishart" if cond is None else f"{cond:.0e}", name, v64, v32,
                     abs(v32 - v64) / max(abs(v64), 1e-300)])
    return rows


def _rank_deficient() -> tuple[list[object], ClosedCheck | None]:
    """8 and 12 samples in 16 dims: scipy's sqrtm of the product is complex; ours real; POT's torch backend."""
    import numpy as np
    import scipy.linalg

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 16)), 1.5 * rng.normal(size=(12, 16)) + 0.3
    s = scipy.linalg.sqrtm(np.cov(x.T) @ np.cov(y.T))
    imag = float(np.abs(np.imag(s)).max()) if np.iscomplexobj(s) else 0.0
    ours = float(frechet_distance(torch.from_numpy(x), torch.from_numpy(y)))
    mx, my, cx, cy = (torch.from_numpy(a) for a in (x.mean(0), y.mean(0), np.cov(x.T), np.cov(y.T)))
    fre = float(w2_normal(mx, cx, my, cy, form="frechet"))
    pot = _pot_w2(mx, cx, my, cy)
    row: list[object] = ["8 and 12 samples, d = 16", imag, ours, fre, "—" if pot is None else pot]
    return row, None if pot is None else ClosedCheck("rank-deficient: ours vs POT (torch backend)", ours, pot, 1e-6)


def _grad_at_identity(n: int = 5) -> float:
    """Largest |gradient| of W₂²(N(0, I), N(1, Σ)) in Σ at Σ = I (zero: W₂² = n + ‖Σ^½ − I‖² is stationary there);
    eigh's own backward divides by 0 here."""
    s = torch.eye(n, dtype=F64, requires_grad=True)
    w2_normal(torch.zeros(n, dtype=F64), torch.eye(n, dtype=F64), torch.ones(n, dtype=F64), s).backward()
    assert s.grad is not None
    return float(s.grad.abs().max()) if bool(torch.isfinite(s.grad).all()) else math.inf


def run(quick: bool = True) -> Result:
    draws = 400_000
    cases: list[tuple[int, float | None, int]] = ([(5, None, s) for s in range(3)] if quick else
                                                  [(n, c, 10 + i) for i, (n, c) in enumerate(
                                                      (n, c) for n in (2, 10, 50) for c in (None, 1e3, 1e6))])
    mc: list[MCCheck] = []
    closed: list[ClosedCheck] = _one_d()
    mc_rows: list[list[object]] = []
    f32_rows: list[list[object]] = []
    z_scores: list[float] = []
    for n, cond, seed in cases:
        mp, sp, mq, sq = _pair(n, cond, seed, near=not quick)
        label = f"n = {n}, " + ("Wishart" if cond is None else f"cond {cond:.0e}")
        for c in _monte_carlo(mp, sp, mq, sq, draws, seed):
            mc.append(c._replace(name=f"{c.name} ({label})"))
            z_scores.append(abs(c.closed - c.mc) / c.se if c.se else 0.0)
            mc_rows.append([label, c.name, c.closed, c.mc, c.se, z_scores[-1]])
        for k in _closed_pairs(mp, sp, mq, sq):
            closed.append(k._replace(name=f"{k.name} ({label})"))
        f32_rows += _float32_rows(n, cond, mp, sp, mq, sq)
    gaps = [rel_gap(k.a, k.b) for k in closed]
    closed_rows: list[list[object]] = [[k.name, k.a, k.b, g, k.tol] for k, g in zip(closed, gaps)]
    verdict, reason = decide(mc, closed)
    rank_row, rank_check = _rank_deficient()
    grad_i = _grad_at_identity()
    f32_err = [r[5] for r in f32_rows if isinstance(r[5], float)]
    worst_f32 = max(f32_err, default=math.nan)
    by_quantity: dict[str, float] = {}
    for r in f32_rows:
        if isinstance(r[5], float):
            by_quantity[str(r[2])] = max(by_quantity.get(str(r[2]), 0.0), r[5])
    f32_summary = ", ".join(f"{k} {v:.2g}" for k, v in by_quantity.items())
    worst_z = max(z_scores, default=math.nan)
    worst_gap = max(gaps, default=math.nan)

    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax1.bar(range(len(z_scores)), z_scores, color=["C0" if c.name.startswith("KL") else "C1" for c in mc])
    ax1.axhline(MC_Z, color="red", lw=0.8, label=f"{MC_Z:g} s.e.")
    ax1.set_title("|closed − Monte Carlo| / s.e. (blue KL, orange BD)")
    ax1.set_xlabel("check")
    ax1.legend()
    ax2.semilogy(range(len(gaps)), [max(g, 1e-18) for g in gaps], "o", label="closed-form pairs, float64")
    ax2.semilogy(range(len(f32_err)), [max(e, 1e-18) for e in f32_err], "x", label="float32 vs float64")
    ax2.axhline(CLOSED_TOL, color="red", lw=0.8, label="1e-8")
    ax2.set_title("relative gaps")
    ax2.set_xlabel("check")
    ax2.legend(fontsize=8)
    fig.tight_layout()

    numbers: dict[str, object] = {"mc": [c._asdict() for c in mc], "closed": [k._asdict() for k in closed],
                                  "float32": f32_rows, "rank_deficient": rank_row, "grad_at_identity": grad_i,
                                  "worst_mc_z": worst_z, "worst_closed_gap": worst_gap, "worst_float32": worst_f32,
                                  "worst_float32_by_quantity": by_quantity}
    notes = [f"Rank-deficient covariances (not in the verdict): scipy.linalg.sqrtm of Σ_pΣ_q has imaginary parts up "
             f"to {rank_row[1]:.2g}; ours is real, {rank_row[2]:.10g}"
             + ("" if rank_check is None else f", POT's torch backend {rank_row[4]:.10g} (gap "
                                              f"{rel_gap(rank_check.a, rank_check.b):.1g}; POT keeps √ of round-off "
                                              "eigenvalues that ours zeroes)") + ".",
             f"Gradient of W₂² in Σ at Σ = I (all eigenvalues equal): largest |entry| {grad_i:.2g} (exact: 0), "
             "finite where an eigh-based backward divides by zero.",
             f"float32 against float64, largest relative error by quantity: {f32_summary}. The covariances' "
             "condition number drives it: KL and BD subtract log-determinants (Cholesky of an ill-conditioned "
             "matrix in float32), W₂² subtracts 2·Tr((Σ_p^½Σ_qΣ_p^½)^½) from Tr Σ_p + Tr Σ_q (large against W₂² "
             "for close Gaussians); the Fréchet form's eigenvalues of the non-symmetric product lose the most, the "
             "'sym' form (singular values of Σ_q^½Σ_p^½) the least. Compute in float64 for ill-conditioned "
             "covariances (as FID implementations do)."]
    if rank_check is None:
        notes.append("POT is not installed (it is in the test extra): the POT rows are left out.")
    return Result(
        name="gaussian_divergences", post=POST,
        claim="Closed forms for KL(p‖q), the Bhattacharyya distance and W₂² between multivariate normals; the "
              "two W₂ formulas in circulation, with Tr((Σ_p^½Σ_qΣ_p^½)^½) and with Tr((Σ_pΣ_q)^½), are equal "
              "(and reduce to ‖Δμ‖² + ‖Σ_p^½ − Σ_q^½‖² for commuting covariances).",
        measured=f"{reason}; float32 against float64, largest relative error: {f32_summary}",
        verdict=verdict, kind="math",
        post_figure="no figure in the post (closed forms, and a proof that the two W₂ forms are equal)",
        our_figure=f"closed vs Monte Carlo ≤ {worst_z:.3g} s.e.; closed-form pairs agree to {worst_gap:.3g}; "
                   f"float32 error ≤ {worst_f32:.3g}",
        setup=("three random positive definite pairs in n = 5" if quick else
               "n ∈ {2, 10, 50} × Σ_p Wishart-like or of condition number 10³ and 10⁶, q an order-1 perturbation "
               "of p in p's coordinates")
              + f"; Monte Carlo {draws:,} draws per pair (float64, torch.distributions log-densities); closed forms "
                "in float64, and float32 beside them.",
        rule=f"verified if every Monte Carlo estimate (KL, Bhattacharyya) lies within {MC_Z:g} standard errors of the "
             f"closed form, with {MC_Z:g} s.e. under {MC_INFORMATIVE:.0%} of max(1, |value|) (informative), and every "
             f"closed-form pair (KL vs torch.distributions, the two W₂ forms, POT, symmetries, the 1-D, commuting "
             f"and standard-normal formulas) agrees to {CLOSED_TOL:g} relative (max(1, |value|)); otherwise not "
             "verified. The rank-deficient case, float32 and gradients are reported beside it.",
        reason="" if verdict == "verified" else reason,
        tables=[Table("Closed form against Monte Carlo", ["case", "quantity", "closed form", "Monte Carlo", "s.e.",
                                                          "|gap| / s.e."], mc_rows),
                Table("Closed-form pairs (float64)", ["check", "a", "b", "relative gap", "tolerance"], closed_rows),
                Table("float32 against float64", ["n", "covariances", "quantity", "float64", "float32",
                                                  "relative error"], f32_rows),
                Table("Rank-deficient covariances (FID with fewer samples than dims)",
                      ["case", "max |imag| of scipy sqrtm(Σ_pΣ_q)", "ours (sym)", "ours (Fréchet form)",
                       "POT (torch backend)"], [rank_row])],
        figures=[("checks", fig)], numbers=numbers, notes=notes, quick=quick)
