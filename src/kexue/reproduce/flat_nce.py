"""Reproduction: FlatNCE — is floating-point error why small-batch contrastive learning does poorly?
(kexue.fm/archives/8586, 2021-07-26)

InfoNCE is log(1 + ξ), ξ = Σ_{i≠t} e^{s_i − s_t}. With easy negatives ξ → 0; once ξ is below half of float32's
machine epsilon (2⁻²⁴), 1 + ξ rounds to 1, so the float32 loss and the positive's gradient p_t − 1 become exactly 0
while the negatives' gradients do not: the update is rounding noise. FlatNCE, log Σ_{i≠t} e^{s_i} − s_t = log ξ,
has gradient −1 on the positive and the softmax over the negatives elsewhere, exact at any ξ.

Kind: empirical. Two parts.

1. The float32 mechanism (a precondition, checked numerically against float64): τ = 0.05, positive cosine 0.95, 15
   negatives with cosine drawn from U(−0.2, 0.1), 20,000 draws; about one in ten has ξ < 2⁻²⁴.
2. The training claim, in a regime where float32 underflow happens: SimCLR on ``load_digits`` with **a low
   temperature (τ = 0.02) and easy positives (the only augmentation is Gaussian noise σ = 0.05)**; MLP 64→256→128
   with a projection to 64, Adam 1e−3, batch 16 (30 negatives per anchor). With the spec's augmentations (±1-pixel
   shifts, noise σ = 0.1, 20 % pixel dropout) ξ stays near 1 at every τ we tried (0.1 to 0.02: the model keeps the
   loss where it is by shrinking its cosines), so no anchor underflows there; that setting runs in full mode as
   context. During training we record, per step, the share of anchors with ξ < 2⁻²⁴ (ξ in float64 from the float32
   logits) and, for InfoNCE, the share whose float32 positive-logit gradient is exactly 0. The metric is 5-NN
   accuracy of the 128-d features on a 30 % held-out split; InfoNCE and FlatNCE runs of one seed share the split, the
   initialisation and every augmentation draw, so their difference is paired.

Quick: 3 seeds, 4 epochs, batch 16. Full: 3 seeds, 20 epochs, batches 16 and 256, and the spec's setting as context.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..losses import flat_nce, info_nce, simclr_logits
from .common import pyplot
from .result import Post, Result, Table, Verdict
from .rules import estimate, learned, not_learned_reason, paired, superiority

POST = Post(
    title="FlatNCE：小批次对比学习效果差的原因竟是浮点误差？",
    gloss="FlatNCE: is floating-point error why small-batch contrastive learning does poorly?",
    date="2021-07-26",
    url="https://kexue.fm/archives/8586",
)

TAU_MECH, POS_COS, N_NEG, N_DRAWS = 0.05, 0.95, 15, 20_000
HALF_EPS32 = 2.0**-24
#: The underflow regime: temperature and the noise of the only augmentation.
TAU_U, NOISE_U = 0.02, 0.05
#: The premise of the training claim: at least this share of InfoNCE anchors (mean over seeds) underflows.
MIN_UNDERFLOW = 0.01


def _draws(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    neg = torch.rand(N_DRAWS, N_NEG, generator=g, dtype=torch.float64) * 0.3 - 0.2
    cos = torch.cat([torch.full((N_DRAWS, 1), POS_COS, dtype=torch.float64), neg], dim=1)
    return cos / TAU_MECH


def _grads(s: torch.Tensor, loss_fn: Callable[..., torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    x = s.clone().requires_grad_(True)
    t = torch.zeros(len(s), dtype=torch.long)
    loss = loss_fn(x, t, reduction="none")
    (grad,) = torch.autograd.grad(loss.sum(), x)
    return loss.detach(), grad


class Mechanism(TypedDict):
    """What :func:`mechanism` measures: per draw ξ, whether ξ < 2⁻²⁴ (``tiny``) and the float32 relative errors of
    the positive gradient (``rel_ce``, ``rel_fl``); the named checks on the tiny draws; FlatNCE's median loss."""

    xi: np.ndarray
    tiny: np.ndarray
    checks: dict[str, bool]
    rel_ce: np.ndarray
    rel_fl: np.ndarray
    flat_loss_median: float


def mechanism() -> Mechanism:
    """The float32 checks on the draws with ξ < 2⁻²⁴, and the positive gradient's relative error for every draw."""
    s64 = _draws()
    xi = (s64[:, 1:] - s64[:, :1]).exp().sum(1)
    t = xi < HALF_EPS32
    s32 = s64.float()
    ce32, gce32 = _grads(s32, info_nce)
    _, gce64 = _grads(s64, info_nce)
    fl32, gfl32 = _grads(s32, flat_nce)
    _, gfl64 = _grads(s64, flat_nce)
    checks = {
        "CE loss exactly 0": bool((ce32[t] == 0).all()),
        "CE positive gradient exactly 0": bool((gce32[t, 0] == 0).all()),
        "CE negative gradients non-zero": bool((gce32[t, 1:] > 0).all()),
        "CE row gradient no longer sums to 0": bool((gce32[t].sum(1) != 0).all()),
        "FlatNCE positive gradient exactly −1": bool((gfl32[:, 0] == -1).all()),
        "FlatNCE negative gradients = float64 softmax (rel. err. < 1e-5)": bool(
            ((gfl32[:, 1:].double() - gfl64[:, 1:]).abs() / gfl64[:, 1:].abs()).max() < 1e-5),
    }
    rel_ce = ((gce32[:, 0].double() - gce64[:, 0]).abs() / gce64[:, 0].abs()).numpy()
    rel_fl = ((gfl32[:, 0].double() - gfl64[:, 0]).abs() / gfl64[:, 0].abs()).numpy()
    return Mechanism(xi=xi.numpy(), tiny=t.numpy(), checks=checks, rel_ce=rel_ce, rel_fl=rel_fl,
                     flat_loss_median=float(fl32.median()))


# ------------------------------------------------------------------ the rule
@dataclass(frozen=True)
class Measurements:
    """What the rule reads: the mechanism checks, and per seed (paired) the InfoNCE runs' underflow share and the
    5-NN accuracies of both losses at batch 16 in the underflow regime, with the majority-class rate."""

    mechanism_ok: bool
    underflow: Sequence[float]
    info: Sequence[float]
    flat: Sequence[float]
    majority: float


def decide(m: Measurements) -> tuple[Verdict, str]:
    """The verdict and its reason.

    ``does not hold`` if the float32 mechanism checks fail; ``not measured`` if either loss's 5-NN accuracy does not
    clearly beat the majority class; ``inconclusive`` if fewer than :data:`MIN_UNDERFLOW` of InfoNCE's anchors
    underflow (the regime does not test the claim); else superiority of FlatNCE − InfoNCE (paired over seeds, 2 s.e.):
    ``holds`` above 0, ``does not hold`` below 0, ``inconclusive`` across it.
    """
    if not m.mechanism_ok:
        return "does not hold", "the float32 mechanism checks failed on the draws with ξ < 2⁻²⁴"
    for name, accs in (("InfoNCE", m.info), ("FlatNCE", m.flat)):
        e = estimate(accs)
        if not learned(e, m.majority):
            return "not measured", not_learned_reason(f"{name} 5-NN accuracy", e.mean, m.majority, "majority class")
    u = estimate(m.underflow)
    if not u.mean >= MIN_UNDERFLOW:
        return "inconclusive", (f"only {100 * u.mean:.3g} % of InfoNCE's anchors had ξ < 2⁻²⁴ during training (the "
                                f"premise needs ≥ {100 * MIN_UNDERFLOW:.0f} %): this regime does not test the claim")
    d = paired(m.flat, m.info)
    verdict = superiority(d)
    where = {"holds": "above 0", "does not hold": "below 0", "inconclusive": "across 0"}[verdict]
    return verdict, (f"with ξ < 2⁻²⁴ on {100 * u.mean:.3g} % of InfoNCE's anchors, FlatNCE − InfoNCE 5-NN accuracy "
                     f"= {d}: the 2-s.e. interval lies {where}")


# ------------------------------------------------------------------ SimCLR on digits


def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """The spec's augmentation: ±1-pixel shifts (zero fill), Gaussian noise σ = 0.1, 20 % pixel dropout, on (n, 64)
    images in [0, 1]."""
    n = x.shape[0]
    padded = F.pad(x.view(n, 8, 8), (1, 1, 1, 1))
    dy = torch.randint(-1, 2, (n, 1), generator=g)
    dx = torch.randint(-1, 2, (n, 1), generator=g)
    ar = torch.arange(8)
    rows = (ar + 1 - dy)[:, :, None]  # out[i, j] = img[i − dy, j − dx], zero outside
    cols = (ar + 1 - dx)[:, None, :]
    out = padded[torch.arange(n)[:, None, None], rows, cols].reshape(n, 64)
    out = out + 0.1 * torch.randn(n, 64, generator=g)
    keep = torch.rand(n, 64, generator=g) >= 0.2
    return out * keep


def _easy(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """The underflow regime's augmentation: Gaussian noise σ = 0.05 only (easy positives)."""
    return x + NOISE_U * torch.randn(x.shape, generator=g)


SETTINGS = {"underflow": (TAU_U, _easy), "spec": (0.1, _augment)}


def _knn_accuracy(ftr: np.ndarray, ytr: np.ndarray, fte: np.ndarray, yte: np.ndarray, k: int = 5) -> float:
    a = ftr / np.linalg.norm(ftr, axis=1, keepdims=True)
    b = fte / np.linalg.norm(fte, axis=1, keepdims=True)
    nn_idx = np.argsort(-(b @ a.T), axis=1)[:, :k]
    votes = ytr[nn_idx]
    pred = np.array([np.bincount(v, minlength=10).argmax() for v in votes])
    return float((pred == yte).mean())


def _simclr(loss_name: str, setting: str, batch: int, seed: int, epochs: int, data) -> dict[str, object]:
    """5-NN accuracy, and per epoch the share of anchors with ξ < 2⁻²⁴ and (InfoNCE) with a float32 positive-logit
    gradient of exactly 0."""
    tau, augment = SETTINGS[setting]
    xtr, ytr, xte, yte = data
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    enc = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 128))
    proj = nn.Sequential(nn.ReLU(), nn.Linear(128, 64))
    opt = torch.optim.Adam([*enc.parameters(), *proj.parameters()], lr=1e-3)
    loss_fn = info_nce if loss_name == "InfoNCE" else flat_nce
    x = torch.from_numpy(xtr)
    tiny, zero = [], []
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        n_tiny = n_zero = n_rows = 0
        for i in range(0, len(x) - 1, batch):
            xb = x[perm[i : i + batch]]
            if len(xb) < 2:
                continue
            z1, z2 = proj(enc(augment(xb, g))), proj(enc(augment(xb, g)))
            logits, target = simclr_logits(z1, z2, tau=tau)
            logits.retain_grad()
            loss = loss_fn(logits, target)
            opt.zero_grad()
            loss.backward()
            with torch.no_grad():
                s = logits.detach().double()
                pos = s.gather(1, target[:, None]).squeeze(1)
                xi = (torch.logsumexp(s.scatter(1, target[:, None], float("-inf")), 1) - pos).exp()
                n_tiny += int((xi < HALF_EPS32).sum())
                assert logits.grad is not None  # kept by retain_grad()
                n_zero += int((logits.grad.gather(1, target[:, None]) == 0).sum())
                n_rows += len(xi)
            opt.step()
        tiny.append(n_tiny / n_rows)
        zero.append(n_zero / n_rows)
    with torch.no_grad():
        acc = _knn_accuracy(enc(x).numpy(), ytr, enc(torch.from_numpy(xte)).numpy(), yte)
    return {"acc": acc, "tiny": tiny, "zero_grad": zero}


def _split(seed: int):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, random_state=seed, stratify=y)
    return xtr, ytr, xte, yte


def _untrained(seed: int, data) -> float:
    """5-NN accuracy of a freshly initialised encoder (the reference a trained one should approach or pass)."""
    xtr, ytr, xte, yte = data
    torch.manual_seed(seed)
    enc = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 128))
    with torch.no_grad():
        return _knn_accuracy(enc(torch.from_numpy(xtr)).numpy(), ytr, enc(torch.from_numpy(xte)).numpy(), yte)


def simclr_grid(runs: list[tuple[str, int]], seeds: list[int], epochs: int) -> dict[str, dict[str, list[dict]]]:
    """``{"setting/batch": {loss: [per-seed run]}}`` for each (setting, batch) in ``runs``."""
    out: dict[str, dict[str, list[dict]]] = {}
    for setting, batch in runs:
        for loss_name in ("InfoNCE", "FlatNCE"):
            out.setdefault(f"{setting}/{batch}", {})[loss_name] = [
                _simclr(loss_name, setting, batch, s, epochs, _split(s)) for s in seeds]
    return out


# ------------------------------------------------------------------ run


def run(quick: bool = True) -> Result:
    m = mechanism()
    checks = m["checks"]
    n_tiny = int(np.sum(m["tiny"]))
    mech_ok = n_tiny > 0 and all(checks.values())
    seeds, epochs = [0, 1, 2], (4 if quick else 20)
    runs = [("underflow", 16)] if quick else [("underflow", 16), ("underflow", 256), ("spec", 16), ("spec", 256)]
    grid = simclr_grid(runs, seeds, epochs)
    y_all = _split(0)[3]
    majority = float(np.bincount(y_all).max() / len(y_all))
    untrained = estimate(_untrained(s, _split(s)) for s in seeds)

    def acc(key: str, loss: str) -> list[float]:
        return [float(r["acc"]) for r in grid[key][loss]]

    def share(key: str, loss: str, what: str = "tiny") -> list[float]:  # per seed, over the second half of training
        return [float(np.mean(r[what][len(r[what]) // 2:])) for r in grid[key][loss]]

    meas = Measurements(mech_ok, share("underflow/16", "InfoNCE"), acc("underflow/16", "InfoNCE"),
                        acc("underflow/16", "FlatNCE"), majority)
    verdict, reason = decide(meas)

    tables = [Table(f"The float32 mechanism on the {n_tiny} of {N_DRAWS} draws with ξ < 2⁻²⁴ (τ = {TAU_MECH}, "
                    f"positive cos {POS_COS}, {N_NEG} negatives ~ U(−0.2, 0.1))",
                    ["check", "holds on every such draw"], [[k, "yes" if v else "no"] for k, v in checks.items()])]
    rows = []
    for key in grid:
        setting, batch = key.split("/")
        tau = SETTINGS[setting][0]
        d = paired(acc(key, "FlatNCE"), acc(key, "InfoNCE"))
        rows.append([setting, tau, int(batch), np.mean(acc(key, "InfoNCE")), np.mean(acc(key, "FlatNCE")), str(d),
                     100 * np.mean(share(key, "InfoNCE")), 100 * np.mean(share(key, "InfoNCE", "zero_grad")),
                     100 * np.mean(share(key, "FlatNCE"))])
    tables.append(Table(f"SimCLR on digits, 5-NN accuracy on a 30 % held-out split ({len(seeds)} seeds, {epochs} "
                        f"epochs; underflow: noise σ = {NOISE_U} only; spec: shifts, noise 0.1, 20 % dropout). Shares "
                        f"are over the second half of training", [
                            "setting", "τ", "batch", "InfoNCE", "FlatNCE", "FlatNCE − InfoNCE (paired)",
                            "InfoNCE anchors with ξ < 2⁻²⁴ (%)", "InfoNCE float32 positive gradient = 0 (%)",
                            "FlatNCE anchors with ξ < 2⁻²⁴ (%)"], rows))
    tables.append(Table("References for the learned guard", ["reference", "5-NN accuracy"],
                        [["majority class", majority], ["untrained encoder (mean over seeds)", untrained.mean]]))
    d16 = paired(meas.flat, meas.info)
    u16 = estimate(meas.underflow)
    measured = (f"float32 mechanism on {n_tiny}/{N_DRAWS} draws with ξ < 2⁻²⁴: "
                f"{'all checks pass' if mech_ok else 'a check fails'}; "
                f"SimCLR at τ = {TAU_U}, batch 16: ξ < 2⁻²⁴ on {100 * u16.mean:.3g} % of InfoNCE's anchors, "
                f"5-NN accuracy InfoNCE {np.mean(meas.info):.3f}, FlatNCE {np.mean(meas.flat):.3f} "
                f"(FlatNCE − InfoNCE {d16.mean:+.3g} ± {d16.se:.2g} s.e.)")
    numbers: dict[str, object] = {"n_draws": N_DRAWS, "n_below_half_eps": n_tiny, "checks": checks,
                                  "median_xi": float(np.median(m["xi"])), "majority": majority,
                                  "untrained_knn": untrained.mean, "simclr": grid, "epochs": epochs, "seeds": seeds}
    notes = [
        "Regime: the issue asks for ξ measured in a regime where float32 underflow happens. Lower temperature alone "
        "does not get there with the spec's augmentations (ξ's median stays 4–5 at τ = 0.1, 0.05 and 0.02 after 10 "
        "epochs); with easy positives (noise σ = 0.05 only) and τ = 0.02 a third to a half of InfoNCE's anchors "
        "underflow. More negatives would raise ξ, not lower it; bf16 logits are upcast to float32 by our losses.",
        "FlatNCE drives ξ lower than InfoNCE (its gradient does not vanish as ξ → 0), as Su says it keeps refining.",
        f"The guard is the majority class ({majority:.3f}); an untrained encoder already reaches {untrained.mean:.3f} "
        f"5-NN accuracy on digits (trained: InfoNCE {np.mean(meas.info):.3f}, FlatNCE {np.mean(meas.flat):.3f}), so "
        "this toy compares how well each loss keeps or improves near-ceiling features, not features learned from "
        "scratch.",
        "The paper's downstream gains are from its figures (no numbers quoted); the post's setting (ImageNet-scale "
        "SimCLR) cannot run here; digits with an MLP is a toy stand-in.",
        f"FlatNCE's loss (log ξ) is negative in the mechanism draws (median {m['flat_loss_median']:.1f}); that is "
        "normal, so never early-stop on it as on cross-entropy.",
    ]
    return Result(
        name="flat_nce",
        post=POST,
        kind="empirical",
        claim="When small-batch contrastive training drives ξ = Σ_{i≠t} e^{s_i−s_t} below float32's resolution, "
              "cross-entropy's positive gradient rounds to 0 and its update becomes rounding noise; FlatNCE "
              "(log Σ_{i≠t} e^{s_i} − s_t) keeps an exact gradient and learns better.",
        post_figure="no figure in the post (it cites the FlatNCE paper's plots: FlatCLR ≥ SimCLR at every batch size)",
        our_figure=f"FlatNCE − InfoNCE 5-NN accuracy {d16.mean:+.3g} ± {d16.se:.2g} at batch 16, τ {TAU_U}, with "
                   f"{100 * u16.mean:.3g} % of anchors underflowing",
        setup=f"load_digits SimCLR, MLP 64-256-128 + projection 64, Adam 1e-3, τ = {TAU_U}, noise-only augmentation, "
              f"batch 16, {len(seeds)} seeds × {epochs} epochs per loss"
              + ("" if quick else "; also batch 256 and the spec's setting (τ 0.1, strong augmentation)")
              + f"; plus {N_DRAWS} synthetic float32/float64 draws.",
        measured=measured,
        verdict=verdict,
        reason=reason,
        rule=f"does not hold if the float32 mechanism fails (on every draw with ξ < 2⁻²⁴: CE loss and positive "
             f"gradient exactly 0, negatives' gradients not, FlatNCE exact); not measured unless both losses' 5-NN "
             f"accuracy beats the majority class by 2 s.e.; inconclusive if under {100 * MIN_UNDERFLOW:.0f} % of "
             f"InfoNCE's anchors underflow at τ = {TAU_U}, batch 16; else FlatNCE − InfoNCE accuracy (paired over "
             f"seeds): holds if its 2-s.e. interval is above 0, does not hold if below, inconclusive otherwise.",
        tables=tables,
        figures=[("fp32_gradient_error", _mechanism_figure(m)), ("underflow", _underflow_figure(grid, epochs))],
        numbers=numbers,
        notes=notes,
        quick=quick,
    )


def _mechanism_figure(m: Mechanism) -> Any:
    plt = pyplot()
    xi, rel_ce, rel_fl = m["xi"], m["rel_ce"], m["rel_fl"]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    floor = 1e-10  # exact results drawn at the floor of the log axis
    ax.scatter(xi, np.maximum(rel_ce, floor), s=2, alpha=0.4, label="InfoNCE (cross-entropy)")
    ax.scatter(xi, np.maximum(rel_fl, floor), s=2, alpha=0.4, label="FlatNCE")
    ax.axvline(HALF_EPS32, color="k", ls="--", lw=1, label="2⁻²⁴")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("ξ = Σ e^{s_i − s_t}")
    ax.set_ylabel("float32 relative error of ∂L/∂s_t")
    ax.set_title("Positive-logit gradient in float32 (vs float64)")
    ax.legend(markerscale=4, fontsize=8)
    fig.tight_layout()
    return fig


def _underflow_figure(grid: dict[str, dict[str, list[dict]]], epochs: int):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for key, by_loss in grid.items():
        for loss_name, rs in by_loss.items():
            ax.plot(np.arange(1, epochs + 1), 100 * np.mean([r["tiny"] for r in rs], 0), marker=".",
                    label=f"{loss_name}, {key}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("anchors with ξ < 2⁻²⁴ (%)")
    ax.set_title("float32 underflow during SimCLR on digits")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
