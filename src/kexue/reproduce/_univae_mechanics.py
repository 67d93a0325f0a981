"""The mechanics checks of the ``univae`` reproduction: the masks against a double loop, the vMF sampler's mean
cosine against the Bessel ratio A_d(κ), and zero leakage from the encoder tokens to the decoder with z fixed."""

from __future__ import annotations

import math
from typing import Any

import torch

from ..generative.univae import UniVAE, VonMisesFisherSampler, vmf_mean_cosine
from ..nn.masks import independent_mask, uniae_mask

#: (dim, κ) pairs for the vMF check: the spec's two settings and a low- and a high-concentration case.
VMF_CASES = ((8, 16.0), (16, 32.0), (3, 1.0), (64, 200.0))
#: A Monte Carlo mean within this many standard errors of A_d(κ) passes.
VMF_Z = 4.0


def brute_force_masks(segments: list[int]) -> tuple[list[list[bool]], list[list[bool]]]:
    """(independent, UniAE) masks by the double loop over (i, j): i sees j iff s_i = s_j and c_j ≤ c_i
    (c = cumsum(s)), and for UniAE also iff j = 0."""
    c, run = [], 0
    for s in segments:
        run += s
        c.append(run)
    n = len(segments)
    ind = [[segments[i] == segments[j] and c[j] <= c[i] for j in range(n)] for i in range(n)]
    uni = [[ind[i][j] or j == 0 for j in range(n)] for i in range(n)]
    return ind, uni


def masks_check(n_layouts: int, seed: int = 0) -> dict[str, Any]:
    """Random segment layouts, half of the post's form (0…0 1…1 of random lengths) and half arbitrary 0/1
    sequences, each of random length: the number of (i, j) entries where the library masks differ from the double
    loop."""
    g = torch.Generator().manual_seed(seed)
    wrong, cells = 0, 0
    for k in range(n_layouts):
        n = int(torch.randint(2, 40, (1,), generator=g))
        if k % 2 == 0:
            cut = int(torch.randint(1, n, (1,), generator=g))
            seg = [0] * cut + [1] * (n - cut)
        else:
            seg = torch.randint(0, 2, (n,), generator=g).tolist()
        ind, uni = brute_force_masks(seg)
        ids = torch.tensor([seg])
        for got, want in ((independent_mask(ids), ind), (uniae_mask(ids), uni)):
            wrong += int((got[0, 0] != torch.tensor(want)).sum())
            cells += n * n
    return {"layouts": n_layouts, "cells": cells, "wrong": wrong, "ok": wrong == 0}


def bessel_ratio(dim: int, kappa: float) -> float:
    """A_d(κ) = I_{d/2}(κ)/I_{d/2−1}(κ), the vMF mean cosine E[μᵀz], through scipy's scaled Bessel ``ive``."""
    from scipy.special import ive

    return float(ive(dim / 2, kappa) / ive(dim / 2 - 1, kappa))


def vmf_check(n: int, seed: int = 0) -> dict[str, Any]:
    """For each of :data:`VMF_CASES`: the Monte Carlo mean of μᵀz over ``n`` draws (random unit μ), its standard
    error, A_d(κ) from scipy and from :func:`kexue.generative.univae.vmf_mean_cosine`, and whether the draws are
    unit vectors and the mean is within :data:`VMF_Z` s.e. of A_d(κ)."""
    g = torch.Generator().manual_seed(seed)
    rows, ok = [], True
    for dim, kappa in VMF_CASES:
        mu = torch.nn.functional.normalize(torch.randn(n, dim, generator=g, dtype=torch.float64), dim=-1)
        z = VonMisesFisherSampler(dim, kappa)(mu, generator=g)
        cos = (mu * z).sum(-1)
        mean, se = float(cos.mean()), float(cos.std() / math.sqrt(n))
        exact, lib = bessel_ratio(dim, kappa), vmf_mean_cosine(dim, kappa)
        unit = float((z.norm(dim=-1) - 1).abs().max())
        passes = abs(mean - exact) <= VMF_Z * se and abs(lib - exact) <= 1e-8 and unit <= 1e-5
        ok = ok and passes
        rows.append({"dim": dim, "kappa": kappa, "mean": mean, "se": se, "exact": exact, "library": lib,
                     "z": (mean - exact) / se, "unit_error": unit, "ok": passes})
    return {"n": n, "rows": rows, "ok": ok}


@torch.no_grad()
def leakage_check(model: UniVAE, ids: torch.Tensor, pad_id: int, seed: int = 0) -> dict[str, Any]:
    """Zero leakage: with z fixed (the encoder's z_μ of the original texts), the decoder logits of texts whose
    encoder segment holds (a) random tokens and (b) another text of the batch (:meth:`UniVAE.forward`'s
    ``encoder_ids``/``encoder_mask``) must be bit-identical (``torch.equal``) to the unperturbed ones. Control: with
    z not given (so z = z_μ of the perturbed encoder) the logits do change, so the comparison can fail."""
    was_training = model.training
    model.eval()
    g = torch.Generator().manual_seed(seed)
    keep = (ids != pad_id).long()
    z = model.encode(ids, keep)
    base = model(ids, keep, z=z).logits
    noise = torch.randint(1, model.config.vocab_size, ids.shape, generator=g)
    random_enc = torch.where(keep.bool(), noise, ids)
    other = ids.roll(1, 0)
    identical, diffs = {}, {}
    for name, enc in (("random tokens", random_enc), ("another text", other)):
        got = model(ids, keep, z=z, encoder_ids=enc, encoder_mask=(enc != pad_id).long()).logits
        identical[name] = bool(torch.equal(got, base))
        diffs[name] = float((got - base).abs().max())
    # the control: z from the perturbed encoder (not fixed) does change the decoder's logits
    free = model(ids, keep, encoder_ids=random_enc, encoder_mask=keep).logits
    control = float((free - base).abs().max())
    model.train(was_training)
    ok = all(identical.values()) and control > 0
    return {"texts": int(ids.shape[0]), "identical": identical, "max_diff": diffs, "control_diff": control,
            "ok": ok}


def vmf_rate(dim: int, kappa: float) -> float:
    """KL(vMF(μ, κ) ‖ uniform on S^{d−1}) in nats, the same for every μ: κA_d(κ) + log C_d(κ) + log|S^{d−1}| with
    C_d(κ) = κ^{d/2−1}/((2π)^{d/2} I_{d/2−1}(κ)) and |S^{d−1}| = 2π^{d/2}/Γ(d/2). With a fixed κ it bounds the
    information I(x; z) one latent block can carry (the rate of the VAE: its KL term, a constant here)."""
    from scipy.special import gammaln, ive

    log_i = math.log(float(ive(dim / 2 - 1, kappa))) + kappa
    log_c = (dim / 2 - 1) * math.log(kappa) - dim / 2 * math.log(2 * math.pi) - log_i
    log_area = math.log(2) + dim / 2 * math.log(math.pi) - float(gammaln(dim / 2))
    return kappa * bessel_ratio(dim, kappa) + log_c + log_area


def leak_text(leak: dict[str, Any]) -> str:
    """One line of the report's mechanics table for a :func:`leakage_check` result."""
    diffs = ", ".join(f"{k}: {v:.1e}" for k, v in leak["max_diff"].items())
    same = "bit-identical" if all(leak["identical"].values()) else "NOT bit-identical"
    return (f"decoder logits {same}; max |Δ logits| {diffs} over {leak['texts']} texts (with z from the perturbed "
            f"encoder: {leak['control_diff']:.2g})")
