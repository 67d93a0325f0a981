"""Reproduction: sampling GAN latents by the hubness prior (kexue.fm/archives/9147, Liang et al., ICML 2022,
arXiv 2206.06014).

The post: latents with a large hub value (many others have them among their k nearest neighbours) give better
generated images; Su's recipe draws pools of 10,000 z ~ N(0, I) and keeps those with N₅ > 50. The reason he gives: hubs
sit near the density centre, so they are typical rather than under-trained outliers, which also explains the
truncation trick. Neither the post nor the paper has numbers we can compare with: the paper shows StyleGAN2 image grids.

* **Mechanism** (z ~ N(0, I), d ∈ {16, 64, 128}, pools of 10,000, k = 5): the acceptance rate at t = 50, and the norm of
  the accepted z against the whole pool (the "near the centre" claim: clearly smaller). Where t = 50 accepts under
  0.5 % of the pool (d = 16 accepts none) t is lowered along :data:`LADDER`, and reported.
* **Decoder** (the spec's quality proxy without a GAN): a Gaussian VAE with z = 16 (:class:`kexue.generative.VAE`,
  σ = 0.1) trained on scikit-learn's digits in [0, 1]; decode ``n`` latents from N(0, I), truncated (ψ from 0.9 to
  0.3; the spec's 0.7 and 0.5 shown) and hub-filtered (:func:`kexue.generative.hub_filtered_latents`, k = 5, pool
  10,000, t lowered along :data:`LADDER` to the largest value expected to fill ``n`` within the round budget).
  Quality proxies: the confidence (largest class probability) of a logistic regression trained on the real training
  digits, and the Euclidean distance to the nearest real training digit; diversity: the entropy of the predicted
  class histogram (nats; at most ln 10 = 2.303). Each seed trains its own VAE, so seeds pair the sources.

Kind: empirical (with the mechanism as a part), decided by :func:`decide` from the spread over seeds.

Quick: 2 pools per d; 3 VAEs × 30 epochs, 1,000 latents per source, t = 15 (fills 1,000 in 3 rounds). Full: 5 pools;
5 VAEs × 100 epochs, 2,000 latents, t = 20 (about 23 rounds per VAE). Measured (one thread, on a shared 2-core machine
at load 6): quick 20 s CPU (53–75 s wall), full 86 s CPU (580 s wall). Both: accepted latents much nearer the centre;
hub-filtered samples nearer to real digits than random ones but *less* confidently classified (as truncated ones are:
latents near the centre decode to blends), with class entropy no lower than truncation's at the same distance.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from ..generative import VAE, hub_filtered_latents, standard_normal, truncation, vae_decoder, vae_encoder
from ..stats.hubness import hub_values
from .common import class_entropy, digits_split, pyplot
from .result import Post, Result, Table, Verdict
from .rules import (
    Decision,
    Estimate,
    all_of,
    estimate,
    learned,
    non_inferiority,
    not_learned_reason,
    paired,
    superiority,
)

POST = Post(
    title="“维度灾难”之Hubness现象浅析",
    gloss="The hubness phenomenon of the \"curse of dimensionality\"",
    date="2022-06-28",
    url="https://kexue.fm/archives/9147",
)

K, POOL, T_SU = 5, 10_000, 50
DIMS = (16, 64, 128)
#: Thresholds tried from Su's t = 50 down, where too few latents clear it.
LADDER = (50, 40, 30, 25, 20, 15, 10)
#: The mechanism's t: the largest on the ladder that accepts at least this share of the first pool.
MIN_MECH_RATE = 0.005
LATENT, HIDDEN, SIGMA, LR, BATCH = 16, 128, 0.1, 1e-3, 100
PSIS = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)
SHOWN_PSIS = (0.7, 0.5)
#: "A diversity cost similar to truncation's": hub-filtered entropy at most this share of truncation's cost (at
#: matched quality) below truncation's entropy; the claim's equivalence margin, relative to the measured cost.
REL_MARGIN = 0.5


@dataclass(frozen=True)
class SeedScores:
    """One trained decoder: held-out reconstruction MSE, and per source (``"random"``, ``"psi=0.9"``, ...,
    ``"hub"``) the mean classifier confidence, mean distance to the nearest real digit and class-histogram entropy."""

    recon_mse: float
    conf: Mapping[str, float]
    dist: Mapping[str, float]
    entropy: Mapping[str, float]


def _src(psi: float) -> str:
    return f"psi={psi:g}"


class Matched(NamedTuple):
    """Truncation interpolated to a target distance: its ψ, class entropy and classifier confidence; ``reached`` is
    False where no ψ on the grid reaches the target and the values are those of truncation's closest point."""

    psi: float
    entropy: float
    conf: float
    reached: bool


def matched_truncation(s: SeedScores, target: float, psis: Sequence[float] = PSIS) -> Matched:
    """Truncation at the distance ``target`` (hub-filtered quality), by linear interpolation along ψ = 1 (random) and
    ``psis`` (descending) while the distance falls; ψ = 1 when random already reaches it. Where truncation never
    reaches it (the distance stops falling first), its closest point (``reached`` False): its entropy is then an upper
    bound on truncation's at the target as long as entropy falls with ψ, so a comparison against it favours
    truncation."""
    pts = [(1.0, "random")] + [(p, _src(p)) for p in psis]
    if s.dist["random"] <= target:
        return Matched(1.0, s.entropy["random"], s.conf["random"], True)
    for (p0, a), (p1, b) in zip(pts, pts[1:]):
        d0, d1 = s.dist[a], s.dist[b]
        if d1 >= d0:  # the distance stopped falling: later crossings lie on the other branch
            return Matched(p0, s.entropy[a], s.conf[a], False)
        if d1 <= target:
            w = (d0 - target) / (d0 - d1)
            return Matched(p0 + w * (p1 - p0), s.entropy[a] + w * (s.entropy[b] - s.entropy[a]),
                           s.conf[a] + w * (s.conf[b] - s.conf[a]), True)
    p, last = pts[-1]
    return Matched(p, s.entropy[last], s.conf[last], False)


Comparison = tuple[str, Estimate, Decision]


def decide(norm_gap: Mapping[int, Sequence[float]], seeds: Sequence[SeedScores], mean_image_mse: float,
           noise_conf: float) -> tuple[Verdict, str, list[Comparison]]:
    """The verdict, its reason and the judged comparisons.

    ``norm_gap[d]``: per pool, mean ‖z‖ of the pool minus that of its accepted latents (nan when none cleared t).
    ``seeds``: one :class:`SeedScores` per trained decoder. ``mean_image_mse``: held-out MSE of the mean training
    image; ``noise_conf``: the classifier's mean confidence on uniform-noise images.

    1. Guard: the VAE reconstructs held-out digits clearly better than the mean image, and its random samples get
       clearly more confidence than noise images (over seeds, 2 s.e.), else ``not measured``.
    2. Near the centre: for each d, the norm gap over pools by superiority.
    3. Quality: hub − random confidence and random − hub distance, paired over seeds, by superiority.
    4. Diversity at matched quality: hub entropy − truncation's entropy at hub's distance (:func:`matched_truncation`),
       paired over seeds, by non-inferiority with margin ``REL_MARGIN`` × truncation's measured cost (random's
       entropy − truncation's); where truncation never reaches hub's distance, against its closest point.
    The verdict is all of 2–4.
    """
    mech = [(f"d = {d}: mean ‖z‖ of the pool − of the accepted", estimate(g), superiority(estimate(g)))
            for d, g in sorted(norm_gap.items())]
    mech_txt = "; ".join(f"{w} = {e.mean:+.3g} ± {e.se:.2g}: {dec}" for w, e, dec in mech)
    rec = estimate(s.recon_mse for s in seeds)
    conf_r = estimate(s.conf["random"] for s in seeds)
    if not learned(rec, mean_image_mse, higher_is_better=False):
        return "not measured", not_learned_reason("the VAE's held-out reconstruction MSE", rec.mean, mean_image_mse,
                                                  "mean image") + f" (mechanism: {mech_txt})", mech
    if not learned(conf_r, noise_conf):
        return "not measured", not_learned_reason("the classifier's confidence on random VAE samples", conf_r.mean,
                                                  noise_conf, "confidence on noise images") + \
            f" (mechanism: {mech_txt})", mech
    comps = list(mech)
    e = paired([s.conf["hub"] for s in seeds], [s.conf["random"] for s in seeds])
    comps.append(("confidence: hub − random", e, superiority(e)))
    e = paired([s.dist["random"] for s in seeds], [s.dist["hub"] for s in seeds])
    comps.append(("distance to the nearest real digit: random − hub", e, superiority(e)))
    matched = [matched_truncation(s, s.dist["hub"]) for s in seeds]
    short = sum(not m.reached for m in matched)
    clamp = (f"; for {short} of {len(seeds)} seeds truncation never reaches hub's distance: its closest point, which "
             "favours truncation" if short else "")
    cost = estimate(s.entropy["random"] - m.entropy for s, m in zip(seeds, matched))
    e = paired([s.entropy["hub"] for s in seeds], [m.entropy for m in matched])
    margin = REL_MARGIN * max(cost.mean, 0.0)
    comps.append((f"entropy: hub − truncation at hub's distance (margin {margin:.3g} = {REL_MARGIN:g} × truncation's "
                  f"cost {cost.mean:.3g}{clamp})", e, non_inferiority(e, margin)))
    reason = "; ".join(f"{w} = {e.mean:+.3g} ± {e.se:.2g}: {dec}" for w, e, dec in comps)
    return all_of(*(d for _, _, d in comps)), reason, comps


def _choose(h: torch.Tensor, need_rate: float) -> tuple[int, float]:
    """The largest ladder threshold whose acceptance on hub values ``h`` reaches ``need_rate`` (else the lowest)."""
    for t in LADDER:
        rate = float((h > t).double().mean())
        if rate >= need_rate:
            return t, rate
    return LADDER[-1], float((h > LADDER[-1]).double().mean())


def _mechanism(seeds: int) -> tuple[dict[int, list[float]], list[list[object]], dict[int, tuple], torch.Tensor]:
    """Per d: the norm gaps over pools, a table row, the first pool's norms (pool, accepted) for the figure; and
    the first d = 16 pool's hub values (to choose the decoder part's threshold)."""
    gaps: dict[int, list[float]] = {}
    rows: list[list[object]] = []
    shown: dict[int, tuple] = {}
    h16 = torch.empty(0)
    for d in DIMS:
        gaps[d], rates, su_rates, maxes, acc_norms, pool_norms = [], [], [], [], [], []
        t = T_SU
        for s in range(seeds):
            z = torch.randn(POOL, d, generator=torch.Generator().manual_seed(1000 * d + s))
            h = hub_values(z, K)
            if s == 0:
                t, _ = _choose(h, MIN_MECH_RATE)
                h16 = h if d == 16 else h16
            keep = h > t
            norms = z.norm(dim=1)
            gaps[d].append(float(norms.mean() - norms[keep].mean()) if bool(keep.any()) else math.nan)
            rates.append(float(keep.double().mean()))
            su_rates.append(float((h > T_SU).double().mean()))
            maxes.append(int(h.max()))
            acc_norms.append(float(norms[keep].mean()) if bool(keep.any()) else math.nan)
            pool_norms.append(float(norms.mean()))
            if s == 0:
                shown[d] = (norms, norms[keep], t)
        g = estimate(gaps[d])
        rows.append([d, f"{np.mean(su_rates):.4f}", f"{min(maxes)}–{max(maxes)}", t, f"{np.mean(rates):.4f}",
                     f"{np.mean(pool_norms):.3f}", f"{np.nanmean(acc_norms):.3f}", f"{g.mean:.3f} ± {g.se:.2g}",
                     f"{math.sqrt(d):.3f}"])
    return gaps, rows, shown, h16


def _train_vae(seed: int, epochs: int, train: torch.Tensor) -> VAE:
    torch.manual_seed(seed)
    vae = VAE(vae_encoder(64, HIDDEN, LATENT), vae_decoder(LATENT, HIDDEN, 64), likelihood="gaussian", sigma=SIGMA)
    opt = torch.optim.Adam(vae.parameters(), lr=LR)
    g = torch.Generator().manual_seed(10_000 + seed)
    for _ in range(epochs):
        order = torch.randperm(len(train), generator=g)
        for i in range(0, len(train), BATCH):
            loss = vae.loss(train[order[i:i + BATCH]], generator=g)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return vae.eval()


class _Scorer:
    """The classifier (logistic regression on the real training digits) and the nearest-real-digit distance."""

    def __init__(self, x_train: torch.Tensor, y_train: torch.Tensor) -> None:
        from sklearn.linear_model import LogisticRegression

        self.real = x_train
        self.clf = LogisticRegression(max_iter=3000).fit(x_train.numpy(), y_train.numpy())

    def confidence(self, img: torch.Tensor) -> float:
        return float(self.clf.predict_proba(img.numpy()).max(1).mean())

    def __call__(self, img: torch.Tensor) -> tuple[float, float, float]:
        p = self.clf.predict_proba(img.numpy())
        dist = torch.cdist(img.double(), self.real.double()).min(1).values
        return float(p.max(1).mean()), float(dist.mean()), class_entropy(p.argmax(1))


def _decoder_part(seeds: int, epochs: int, n: int, t: int) -> tuple[list[SeedScores], dict[str, float], dict]:
    x, y, tr, te = digits_split()
    scorer = _Scorer(x[tr], y[tr])
    extra: dict = {"hub": [], "grids": {}}
    out = []
    with torch.no_grad():
        noise = torch.rand(2000, 64, generator=torch.Generator().manual_seed(7))
        base = {"mean_image_mse": float(((x[tr].mean(0) - x[te]) ** 2).mean()), "noise_conf": scorer.confidence(noise),
                "classifier_heldout_acc": float(scorer.clf.score(x[te].numpy(), y[te].numpy()))}
    for s in range(seeds):
        vae = _train_vae(s, epochs, x[tr])
        hub = hub_filtered_latents(standard_normal(LATENT), n, k=K, pool=POOL, threshold=t,
                                   generator=torch.Generator().manual_seed(20_000 + s))
        extra["hub"].append({"acceptance_rate": hub.acceptance_rate, "rounds": hub.rounds,
                             "norm": float(hub.latents.norm(dim=1).mean())})
        with torch.no_grad():
            rec = float(((vae.decode(vae.encode(x[te]).mean) - x[te]) ** 2).mean())
            z = torch.randn(n, LATENT, generator=torch.Generator().manual_seed(30_000 + s))
            srcs = {"random": z, **{_src(p): truncation(z, p) for p in PSIS}, "hub": hub.latents}
            imgs = {k: vae.decode(v) for k, v in srcs.items()}
        scores = {k: scorer(v) for k, v in imgs.items()}
        out.append(SeedScores(rec, {k: v[0] for k, v in scores.items()}, {k: v[1] for k, v in scores.items()},
                              {k: v[2] for k, v in scores.items()}))
        if s == 0:
            extra["grids"] = {k: imgs[k][:10] for k in ("random", _src(0.5), "hub")}
    return out, base, extra


def _figures(shown: Mapping[int, tuple], grids: Mapping[str, torch.Tensor]) -> list[tuple[str, object]]:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(shown), figsize=(4 * len(shown), 3.2))
    for ax, (d, (pool, acc, t)) in zip(axes, sorted(shown.items())):
        bins = np.histogram_bin_edges(pool.numpy(), bins=60)
        ax.hist(pool.numpy(), bins=bins, density=True, alpha=0.6, label=f"pool of {POOL:,}")
        ax.hist(acc.numpy(), bins=bins, density=True, alpha=0.6, label=f"N₅ > {t} ({len(acc)})")
        ax.set_title(f"d = {d}")
        ax.set_xlabel("‖z‖")
        ax.legend(fontsize=7)
    fig.tight_layout()
    g, gax = plt.subplots(len(grids), 10, figsize=(10, 1.1 * len(grids)))
    for r, (name, imgs) in enumerate(grids.items()):
        for c in range(10):
            gax[r, c].imshow(imgs[c].reshape(8, 8).clamp(0, 1).numpy(), cmap="gray_r", vmin=0, vmax=1)
            gax[r, c].set_xticks([])
            gax[r, c].set_yticks([])
        gax[r, 0].set_ylabel(name.replace("psi=", "ψ = "), fontsize=8)
    g.tight_layout()
    return [("hubness_sampling_norms", fig), ("hubness_sampling_samples", g)]


def run(quick: bool = True) -> Result:
    t0 = time.perf_counter()
    mech_seeds, seeds, epochs, n, round_budget = (2, 3, 30, 1000, 3) if quick else (5, 5, 100, 2000, 40)
    gaps, mech_rows, shown, h16 = _mechanism(mech_seeds)
    t_dec, rate_dec = _choose(h16, n / (POOL * round_budget))
    t_mech = time.perf_counter() - t0
    scores, base, extra = _decoder_part(seeds, epochs, n, t_dec)
    verdict, reason, comps = decide(gaps, scores, base["mean_image_mse"], base["noise_conf"])

    def est(field: str, src: str) -> Estimate:
        return estimate(getattr(s, field)[src] for s in scores)

    matched = [matched_truncation(s, s.dist["hub"]) for s in scores]
    src_rows = [[name, f"{est('conf', src).mean:.3f} ± {est('conf', src).se:.2g}",
                 f"{est('dist', src).mean:.3f} ± {est('dist', src).se:.2g}",
                 f"{est('entropy', src).mean:.3f} ± {est('entropy', src).se:.2g}"]
                for name, src in [("random N(0, I)", "random"), *[(f"truncated ψ = {p}", _src(p)) for p in SHOWN_PSIS],
                                  (f"hub-filtered (t = {t_dec})", "hub")]]
    m_ent, m_psi, m_conf = (estimate(getattr(m, f) for m in matched) for f in ("entropy", "psi", "conf"))
    src_rows.append([f"truncation at hub's distance (ψ ≈ {m_psi.mean:.2f}, interpolated; reached in "
                     f"{sum(m.reached for m in matched)}/{len(matched)})",
                     f"{m_conf.mean:.3f} ± {m_conf.se:.2g}", "(matched to hub)", f"{m_ent.mean:.3f} ± {m_ent.se:.2g}"])
    acc = estimate(h["acceptance_rate"] for h in extra["hub"])
    part_rows = [[w, f"{e.mean:+.4f} ± {e.se:.2g}", d] for w, e, d in comps]
    hub_vs = {f: est(f, "hub").mean - est(f, "random").mean for f in ("conf", "dist", "entropy")}
    our = (f"accepted ‖z‖ below the pool's by {', '.join(f'{estimate(gaps[d]).mean:.2f}' for d in DIMS)} "
           f"(d = {', '.join(map(str, DIMS))}); VAE z = 16, t = {t_dec} (acceptance {acc.mean:.3f}): hub − random "
           f"confidence {hub_vs['conf']:+.3f}, distance {hub_vs['dist']:+.3f}, entropy {hub_vs['entropy']:+.3f}; "
           f"truncation at hub's distance (ψ ≈ {m_psi.mean:.2f}): entropy "
           f"{m_ent.mean - est('entropy', 'random').mean:+.3f}")
    return Result(
        name="hubness_sampling", post=POST, kind="empirical", verdict=verdict, reason=reason,
        claim="Keeping only the latents with a large hub value (N₅ > 50 in pools of 10,000 z ~ N(0, I)) gives better "
              "samples than random latents, at a diversity cost no larger than the truncation trick's, because hubs "
              "lie near the density centre.",
        measured=our,
        rule=f"learned guard: the VAE's held-out reconstruction MSE clearly below the mean image's and its random "
             f"samples' classifier confidence clearly above uniform-noise images' (2 s.e. over seeds), else not "
             f"measured; holds if, for every d, accepted latents have a smaller mean ‖z‖ than their pool (over pools, "
             f"2 s.e.), hub-filtered samples beat random ones on both quality proxies (confidence up, distance to the "
             f"nearest real digit down; paired over seeds, 2 s.e.) and their class entropy is no lower than "
             f"truncation's at the same distance by more than {REL_MARGIN:g} × truncation's entropy cost "
             f"(non-inferiority, paired over seeds); does not hold if any part's interval lies on the wrong side; "
             f"otherwise inconclusive.",
        post_figure="no numbers: the paper shows StyleGAN2 sample grids (hub-filtered images look better than "
                    "random and truncated ones); the post gives the recipe (pool 10,000, k = 5, N₅ > 50) and no "
                    "experiment",
        our_figure=our,
        setup=f"Mechanism: pools of {POOL:,} z ~ N(0, I), k = {K}, {mech_seeds} pools per d, t = {T_SU} lowered along "
              f"{LADDER} to accept ≥ {MIN_MECH_RATE:.1%}. Decoder: digits in [0, 1], 1,400 train / 397 held-out "
              f"(fixed split); Gaussian VAE (σ = {SIGMA}) 64→{HIDDEN}→{HIDDEN}→2·{LATENT}, decoder {LATENT}→{HIDDEN}→"
              f"{HIDDEN}→64 (tanh), Adam {LR:g}, batch {BATCH}, {epochs} epochs, seeds 0–{seeds - 1}; {n} latents "
              f"per source and seed; hub-filtered with k = {K}, pool {POOL:,}, t = {t_dec} (Su's t = {T_SU} accepts "
              f"nothing at d = 16; the largest ladder value expected to fill {n} within {round_budget} rounds: "
              f"{rate_dec:.4f} of the first d = 16 pool); truncation ψ ∈ {PSIS}; classifier: logistic regression on "
              f"the 1,400 training digits (held-out accuracy {base['classifier_heldout_acc']:.3f}); distance to the "
              f"nearest of them (pixels in [0, 1]); diversity: entropy of the predicted class histogram (nats).",
        tables=[Table("Parts of the claim", ["part", "estimate (mean ± s.e.)", "verdict"], part_rows),
                Table(f"Mechanism: z ~ N(0, I), pools of {POOL:,}, k = {K} (means over {mech_seeds} pools)",
                      ["d", f"acceptance at t = {T_SU}", "max N₅", "t used", "acceptance at t used", "mean ‖z‖ pool",
                       "mean ‖z‖ accepted", "gap (± s.e.)", "√d"], mech_rows),
                Table(f"Decoded samples ({n} per source and seed, mean ± s.e. over {seeds} VAEs); reconstruction "
                      f"MSE {estimate(s.recon_mse for s in scores).mean:.4f} (mean image {base['mean_image_mse']:.4f});"
                      f" noise images' confidence {base['noise_conf']:.3f}",
                      ["latents", "classifier confidence ↑", "distance to nearest real digit ↓", "class entropy ↑"],
                      src_rows)],
        figures=_figures(shown, extra["grids"]),
        numbers={"norm_gap": {str(d): g for d, g in gaps.items()}, "t_decoder": t_dec, "hub": extra["hub"],
                 "baselines": base, "seconds_mechanism": t_mech,
                 "scores": [{"recon_mse": s.recon_mse, "conf": dict(s.conf), "dist": dict(s.dist),
                             "entropy": dict(s.entropy)} for s in scores],
                 "matched": [m._asdict() for m in matched]},
        notes=["Truncation lowers the classifier's confidence here as well: the decoder outputs a mean image, and "
               "latents near the centre decode to blends of digits (blurrier, lower contrast), which a linear "
               "classifier scores with smaller logits. The two quality proxies can disagree; both are reported.",
               f"Su's t = {T_SU} is ten times the mean hub value k = {K}; at d = 16 no latent of a 10,000 pool "
               "reaches it, so the decoder part uses a lower threshold (reported). The threshold only means something "
               "relative to k and the pool size."],
        quick=quick)
