"""Reproduction: does logistic regression have an analytic solution? (kexue.fm/archives/8578)

The post: under class-conditional Gaussians with a shared covariance the softmax classifier has a closed form
(w_i = μ_iΣ⁻¹, b_i = ln p_i − ½μ_iΣ⁻¹μ_iᵀ, computed after whitening); on fixed sentence vectors it generalises
better than gradient descent with little data (1k-sample subsets: SENTIMENT 66.79 → 73.24 test, TNEWS 22.47 →
26.74, SHOPPING 49.82 → 65.49) and is close with full data, where GD fits the training set better.

Quick: the bundled breast-cancer, digits, wine and iris sets (standardised; 30 % test), trained on 30 samples per
class and on the full training split, 3 random splits; and all-MiniLM-L6-v2 mean-pooled vectors of SST-2 (1,000
training sentences, 3 GD seeds; the 872 test sentences). Compared: the analytic solution (whitened, within-class Σ),
the post's GD baseline (softmax regression, Adam 1e−3, batch 32, 10 epochs but at least 500 steps, no
regularisation) and scikit-learn's ``LogisticRegression`` (L2, C = 1). A sanity check on synthetic shared-covariance
Gaussians (N = 50,000) compares the analytic weights with the maximum-likelihood logistic regression's. Full: 10
splits, GD at 10 and 100 epochs, 100 per class, and MiniLM on SST-2 (a 10k training pool, 872 test) and AG News (a
3,000-row pool of dev.tsv, 1,500 test rows: a CPU budget), each at 1k subsets (3 seeds) and the whole pool (3 GD
seeds). The verdict is :func:`decide`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..classify.logistic import AnalyticLogisticRegression
from ..data.classification import LabelledSet
from ..data.registry import MissingData
from ._paired import accuracy, paired_examples, paired_split_runs, pooled
from .result import Post, Result, Table, Verdict
from .rules import Estimate, all_of, learned, non_inferiority, not_learned_reason, superiority

POST = Post(
    title="概率视角下的线性模型：逻辑回归有解析解吗？",
    gloss="Linear models from a probabilistic viewpoint: does logistic regression have an analytic solution?",
    date="2021-07-22",
    url="https://kexue.fm/archives/8578",
)

POST_TABLE = [
    ["SENTIMENT (full)", "92.26 / 91.14 / 91.14", "91.79 / 90.81 / 91.57"],
    ["IFLYTEK (full)", "93.43 / 51.14", "71.70 / 56.44"],
    ["TNEWS (full)", "59.62 / 53.35", "56.12 / 54.20"],
    ["SHOPPING (full)", "91.63 / 86.98", "87.89 / 86.38"],
    ["SENTIMENT-1K", "99.90 / 66.08 / 66.79", "100 / 72.67 / 73.24"],
    ["IFLYTEK-1K", "99.47 / 15.43", "99.47 / 15.70"],
    ["TNEWS-1K", "100 / 22.47", "100 / 26.74"],
    ["SHOPPING-1K", "100 / 49.82", "100 / 65.49"],
]


#: GD gets at least this many Adam steps: the post's 10 epochs of batch 32 were on ≥ 1k samples (≥ 320 steps);
#: on a 90-sample set 10 epochs are 30 steps, which would compare the closed form with an untrained model.
MIN_GD_STEPS = 500
#: The synthetic check: cosine of the analytic and the maximum-likelihood weights must exceed this (the spec's bar).
COS_MIN = 0.99
#: "Close with plenty of data": the analytic solution may trail GD on the whole pools by at most this (accuracy);
#: the post's largest full-data deficit is 0.6 points (SHOPPING 86.98 → 86.38).
FULL_MARGIN = 0.01


def _gd(xtr: np.ndarray, ytr: np.ndarray, k: int, seed: int, epochs: int) -> torch.nn.Linear:
    """The post's baseline: one linear layer + softmax, Adam 1e−3, batch 32, no regularisation; ``epochs`` epochs
    but at least :data:`MIN_GD_STEPS` steps."""
    torch.manual_seed(seed)
    lin = torch.nn.Linear(xtr.shape[1], k)
    opt = torch.optim.Adam(lin.parameters(), lr=1e-3)
    x, y = torch.from_numpy(xtr).float(), torch.from_numpy(ytr).long()
    g = torch.Generator().manual_seed(seed)
    steps_per_epoch = -(-len(x) // 32)
    epochs = max(epochs, -(-MIN_GD_STEPS // steps_per_epoch))
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), 32):
            idx = perm[i : i + 32]
            loss = F.cross_entropy(lin(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return lin


Correct = dict[str, tuple[np.ndarray, np.ndarray]]  # {method: (train correct, test correct)}, per example


def _accs(xtr, ytr, xte, yte, seed: int, gd_epochs: tuple[int, ...]) -> Correct:
    """{method: (per-example train correctness, per-example test correctness)}."""
    from sklearn.linear_model import LogisticRegression

    k = int(max(ytr.max(), yte.max())) + 1
    out: Correct = {}
    for name, model in (("analytic", AnalyticLogisticRegression()),
                        ("analytic Σ = I", AnalyticLogisticRegression(sigma="identity")),
                        ("sklearn LR (C=1)", LogisticRegression(C=1.0, max_iter=5000))):
        model.fit(xtr, ytr)
        out[name] = (model.predict(xtr) == ytr, model.predict(xte) == yte)
    for ep in gd_epochs:
        lin = _gd(xtr, ytr, k, seed, ep)
        with torch.no_grad():
            ptr = lin(torch.from_numpy(xtr).float()).argmax(1).numpy()
            pte = lin(torch.from_numpy(xte).float()).argmax(1).numpy()
        out[f"GD Adam ({ep} ep)"] = (ptr == ytr, pte == yte)
    return {m: out[m] for m in ("analytic", "analytic Σ = I", *[f"GD Adam ({ep} ep)" for ep in gd_epochs],
                                "sklearn LR (C=1)")}


def _subsample_per_class(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    idx = [rng.choice(np.flatnonzero(y == c), size=min(n, int((y == c).sum())), replace=False)
           for c in np.unique(y)]
    return np.sort(np.concatenate(idx))


@dataclass
class Runs:
    """The runs of one (data set, training size): per run the methods' per-example correctness; ``shared_test``
    when every run scores the same test examples (seeds of one split) rather than its own random split."""

    majority: float
    shared_test: bool
    runs: list[Correct] = field(default_factory=list)


def _bundled(splits: int, sizes: tuple[int | None, ...], gd_epochs: tuple[int, ...]) -> dict[tuple[str, str], Runs]:
    from sklearn import datasets
    from sklearn.model_selection import train_test_split

    out: dict[tuple[str, str], Runs] = {}
    for name in ("breast_cancer", "digits", "wine", "iris"):
        x, y = getattr(datasets, f"load_{name}")(return_X_y=True)
        for s in range(splits):
            xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, random_state=s, stratify=y)
            rng = np.random.default_rng(s)
            for n in sizes:
                idx = _subsample_per_class(ytr, n, rng) if n else np.arange(len(ytr))
                mu, sd = xtr[idx].mean(0), xtr[idx].std(0)
                sd = np.where(sd > 0, sd, 1.0)
                res = _accs((xtr[idx] - mu) / sd, ytr[idx], (xte - mu) / sd, yte, s, gd_epochs)
                runs = out.setdefault((name, f"{n}/class" if n else "full"),
                                      Runs(float(np.bincount(yte).max() / len(yte)), shared_test=False))
                runs.runs.append(res)
    return out


def _minilm(name: LabelledSet, train_split: str, test_split: str, sizes: tuple[int | None, ...], seeds: int,
            pool: int | None, n_test: int | None, gd_epochs: tuple[int, ...]) -> dict[tuple[str, str], Runs]:
    """MiniLM sentence vectors: per size, ``seeds`` runs (a fresh subsample of the ``pool`` training rows and GD
    seed each; for the whole pool, the GD seed only), all scored on one test set."""
    from ._minilm import embed, labelled

    train = labelled(name, train_split, pool, seed=0)
    test = labelled(name, test_split, n_test, seed=0)
    xtr_all = embed(f"{name}-{train_split}", train.texts)["mean"].astype(np.float64)
    xte = embed(f"{name}-{test_split}", test.texts)["mean"].astype(np.float64)
    ytr_all, yte = np.asarray(train.labels), np.asarray(test.labels)
    majority = float(np.bincount(yte).max() / len(yte))
    out: dict[tuple[str, str], Runs] = {}
    for n in sizes:
        key = (f"{name} (MiniLM)", f"{n}" if n else f"full ({len(ytr_all)})")
        for s in range(seeds):
            idx = (np.sort(np.random.default_rng(s).choice(len(ytr_all), size=n, replace=False))
                   if n and n < len(ytr_all) else np.arange(len(ytr_all)))
            out.setdefault(key, Runs(majority, shared_test=True)).runs.append(
                _accs(xtr_all[idx], ytr_all[idx], xte, yte, s, gd_epochs))
    return out


def _synthetic_check() -> float:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    d, n = 10, 50_000
    a = rng.standard_normal((d, d))
    chol = np.linalg.cholesky(a @ a.T / d + 0.5 * np.eye(d))
    mu0, mu1 = 0.5 * rng.standard_normal(d), 0.5 * rng.standard_normal(d)
    y = (rng.random(n) < 0.4).astype(int)
    x = np.where(y[:, None] == 1, mu1, mu0) + rng.standard_normal((n, d)) @ chol.T
    mle = LogisticRegression(C=1e6, max_iter=5000).fit(x, y).coef_[0]
    ana = AnalyticLogisticRegression().fit(x, y)
    w = ana.coef_[1] - ana.coef_[0]
    return float(w @ mle / np.linalg.norm(w) / np.linalg.norm(mle))


# ------------------------------------------------------------------ the rule
def _effect(runs: Runs, ours: str, base: str, part: int) -> Estimate:
    """Paired per-example difference ours − base on the test (``part`` = 1) or training (0) examples."""
    a = [r[ours][part].astype(float) for r in runs.runs]
    b = [r[base][part].astype(float) for r in runs.runs]
    if part == 1 and runs.shared_test:
        return paired_examples(a, b)
    return paired_split_runs(a, b)


def _test_accuracy(runs: Runs, method: str) -> Estimate:
    a = [r[method][1].astype(float) for r in runs.runs]
    return accuracy(a) if runs.shared_test else paired_split_runs(a, [np.zeros_like(x) for x in a])


def decide(small: Mapping[str, Runs], full: Mapping[str, Runs], cosine: float, gd: str) -> tuple[Verdict, str]:
    """The verdict and its reason (2-s.e. intervals; effects pooled over data sets with equal weight).

    ``does not hold`` if the synthetic weights miss the maximum-likelihood ones (cosine ≤ :data:`COS_MIN`); ``not
    measured`` if on any judged set the analytic solution or GD does not clearly beat the majority class; then, on
    the small training sets, superiority of analytic − GD test accuracy and of GD's train−test gap minus the analytic
    one (paired per example: :mod:`kexue.reproduce._paired`), and on the whole pools (full mode) non-inferiority of
    analytic − GD test accuracy with margin :data:`FULL_MARGIN`. All parts hold: holds; any does not: does not hold.
    """
    if not cosine > COS_MIN:
        return "does not hold", f"the closed form misses the maximum-likelihood weights: cosine {cosine:.5f}"
    for name, runs in (*small.items(), *full.items()):
        for method in ("analytic", gd):
            acc = _test_accuracy(runs, method)
            if not learned(acc, runs.majority):
                return "not measured", not_learned_reason(f"{method} test accuracy on {name}", acc.mean,
                                                          runs.majority, "majority class")
    if not small:
        return "inconclusive", "no small-data set ran"
    test = pooled([_effect(r, "analytic", gd, 1) for r in small.values()])
    train = pooled([_effect(r, gd, "analytic", 0) for r in small.values()])
    gap = Estimate(train.mean + test.mean, math.hypot(train.se, test.se), test.n)  # gap_GD − gap_analytic
    parts = [superiority(test), superiority(gap)]
    why = [f"small data ({', '.join(small)}): analytic − GD test accuracy {_pts(test)} ({parts[0]}), GD's "
           f"train−test gap minus the analytic one {_pts(gap)} ({parts[1]})"]
    if full:
        whole = pooled([_effect(r, "analytic", gd, 1) for r in full.values()])
        parts.append(non_inferiority(whole, FULL_MARGIN))
        why.append(f"whole pools ({', '.join(full)}): analytic − GD {_pts(whole)} against a −{FULL_MARGIN * 100:g}"
                   f"-point margin ({parts[-1]})")
    return all_of(*parts), "; ".join(why)


def _pts(e: Estimate) -> str:
    return f"{e.mean * 100:+.3g} ± {e.se * 100:.2g} points"


# ------------------------------------------------------------------ run
def run(quick: bool = True) -> Result:
    gd_epochs = (10,) if quick else (10, 100)
    results = _bundled(3 if quick else 10, (30, None) if quick else (30, 100, None), gd_epochs)
    skipped: list[str] = []
    # (set, train split, test split, training sizes, seeds, training pool, test rows) of each MiniLM run
    minilm_sets: list[tuple[LabelledSet, str, str, tuple[int | None, ...], int, int, int | None]] = (
        [("sst2", "train", "test", (1000,), 3, 1000, None)] if quick else
        [("sst2", "train", "test", (1000, None), 3, 10_000, None),
         ("agnews", "dev", "test", (1000, None), 3, 3000, 1500)])
    for set_name, train_split, test_split, sizes, seeds, pool, n_test in minilm_sets:
        try:
            results.update(_minilm(set_name, train_split, test_split, sizes, seeds, pool, n_test, gd_epochs))
        except MissingData as e:
            skipped.append(f"{set_name} (MiniLM vectors): {e}")
    cos = _synthetic_check()
    gd = f"GD Adam ({gd_epochs[0]} ep)"
    methods = list(next(iter(results.values())).runs[0])
    rows = []
    for (name, size), runs in results.items():
        row: list[object] = [name, size, len(runs.runs)]
        for m in methods:
            tr = np.mean([r[m][0].mean() for r in runs.runs]) * 100
            te = np.mean([r[m][1].mean() for r in runs.runs]) * 100
            row.append(f"{tr:.1f} / {te:.1f}")
        rows.append(row)
    tables = [Table("Accuracy ×100, train / test (mean over splits or seeds)",
                    ["data", "training size", "runs", *methods], rows),
              Table("The post's table (RoFormer-Sim-FT vectors; train / valid / test or train / valid)",
                    ["task", "GD", "analytic"], POST_TABLE)]
    # The post's setting: fixed sentence vectors, 1k training samples. The bundled sets (30 per class) are the
    # spec's quick mechanism check and are reported beside it; they decide only if no MiniLM set could be run.
    encoder = {f"{a} {b}": r for (a, b), r in results.items() if "MiniLM" in a and b == "1000"}
    small = encoder or {a: r for (a, b), r in results.items() if b == "30/class"}
    full = {f"{a} {b}": r for (a, b), r in results.items() if "MiniLM" in a and b.startswith("full (")}
    verdict, why = decide(small, full, cos, gd)
    diffs = {k: _effect(r, "analytic", gd, 1) for k, r in small.items()}
    measured = ("analytic − GD test accuracy at small training sizes: "
                + ", ".join(f"{k} {_pts(e)}" for k, e in diffs.items())
                + "".join(f"; {k}: {_pts(_effect(r, 'analytic', gd, 1))}" for k, r in full.items())
                + f"; synthetic Gaussians: cos(analytic w, MLE w) = {cos:.5f}")
    main = next(iter(encoder), None)
    our = (f"{main}: GD {100 * _test_accuracy(encoder[main], gd).mean:.1f} → analytic "
           f"{100 * _test_accuracy(encoder[main], 'analytic').mean:.1f} test accuracy ({_pts(diffs[main])})"
           if main else "bundled sets at 30/class: analytic − GD " + _pts(pooled(list(diffs.values()))))
    notes = [
        "Analytic = whitened, within-class Σ (the library default; the released binary script's Σ = I is "
        "sigma='identity'); directions of zero variance (digits' constant pixels) are dropped before whitening.",
        f"GD = the post's baseline (softmax regression, Adam 1e−3, batch 32, no regularisation), given at least "
        f"{MIN_GD_STEPS} steps so that tiny sets are not simply under-trained; scikit-learn's "
        "L2-regularised LogisticRegression is shown as a third, stronger reference the post did not use.",
        "Features are standardised on the training rows; MiniLM vectors are frozen mean-pooled sentence vectors "
        "(the post used RoFormer-Sim-FT vectors of Chinese sets; no Chinese encoder is available offline).",
    ]
    return Result(
        name="analytic_logreg",
        post=POST,
        claim="Assuming class-conditional Gaussians with a shared covariance gives logistic/softmax regression a "
              "closed form, which generalises better than gradient descent with little data (smaller train/test "
              "gap) and is close to it with plenty of data.",
        measured=measured,
        verdict=verdict,
        rule=f"Judged on the post's setting, 1,000-sentence training sets of MiniLM vectors (the bundled sets at 30 "
             f"per class only if no MiniLM set ran), against {gd}: does not hold if the synthetic analytic weights "
             f"miss the MLE's (cosine ≤ {COS_MIN}); not measured if either method fails to beat the majority class by "
             f"2 s.e.; else, with 2-s.e. intervals of paired per-example differences (the larger of the test-sample "
             f"and the seed s.e.), the analytic test accuracy must beat GD's and GD's train−test gap must exceed the "
             f"analytic one, and (full mode) on the whole pools the analytic solution must trail GD by less than "
             f"{FULL_MARGIN * 100:g} point. Holds if every part holds, does not hold if any part does not, else "
             f"inconclusive.",
        kind="empirical",
        post_figure="1k-sample training sets, GD → analytic test accuracy: SENTIMENT 66.79 → 73.24, TNEWS 22.47 → "
                    "26.74, SHOPPING 49.82 → 65.49 (IFLYTEK 15.43 → 15.70)",
        our_figure=our,
        setup=f"Bundled breast-cancer/digits/wine/iris ({3 if quick else 10} random splits, 30/class"
              f"{'' if quick else ', 100/class'} and full); "
              + ("frozen all-MiniLM-L6-v2 mean-pooled vectors of SST-2 (1,000 training sentences, 3 GD seeds; 872 "
                 "test)" if quick else "MiniLM vectors of SST-2 (10k pool, 872 test) and AG News (3,000 pool, 1,500 "
                 "test): 1k subsets × 3 seeds and the whole pools × 3 GD seeds")
              + f"; GD = Adam 1e−3, batch 32, {' and '.join(map(str, gd_epochs))} epochs (≥ {MIN_GD_STEPS} steps).",
        reason=why,
        tables=tables,
        numbers={"results": {f"{a}/{b}": {m: [[float(r[m][0].mean()), float(r[m][1].mean())] for r in runs.runs]
                                          for m in methods} for (a, b), runs in results.items()},
                 "synthetic_cosine": cos, "effects": {k: [e.mean, e.se] for k, e in diffs.items()}},
        notes=notes,
        skipped=skipped,
        quick=quick,
    )
