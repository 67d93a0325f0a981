"""Reproduction: does logistic regression have an analytic solution? (kexue.fm/archives/8578)

The post: under class-conditional Gaussians with a shared covariance the softmax classifier has a closed form
(w_i = μ_iΣ⁻¹, b_i = ln p_i − ½μ_iΣ⁻¹μ_iᵀ, computed after whitening); on fixed sentence vectors it generalises
better than gradient descent with little data (1k-sample subsets: SENTIMENT 66.79 → 73.24 test, TNEWS 22.47 →
26.74, SHOPPING 49.82 → 65.49) and is close with full data, where GD fits the training set better.

Quick: the bundled breast-cancer, digits, wine and iris sets (standardised; 30 % test), trained on 30 samples per
class and on the full training split, 3 random splits; and all-MiniLM-L6-v2 mean-pooled vectors of SST-2 (1,000
training sentences; the 872 test sentences). Compared: the analytic solution (whitened, within-class Σ),
the post's GD baseline (softmax regression, Adam 1e−3, batch 32, 10 epochs but at least 500 steps, no regularisation) and scikit-learn's
``LogisticRegression`` (L2, C = 1). A sanity check on synthetic shared-covariance Gaussians (N = 50,000) compares the
analytic weights with the maximum-likelihood logistic regression's. Full: 10 splits, GD at 10 and 100 epochs, 100
per class, and MiniLM on SST-2 (10k training subsample) and AG News (dev.tsv 10,001 → test 7,600), full and
1k subsets.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..classify.logistic import AnalyticLogisticRegression
from .result import Post, Result, Table

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


def _accs(xtr, ytr, xte, yte, seed: int, gd_epochs: tuple[int, ...]) -> dict[str, tuple[float, float]]:
    """{method: (train accuracy, test accuracy)}."""
    from sklearn.linear_model import LogisticRegression

    k = int(max(ytr.max(), yte.max())) + 1
    out = {}
    ana = AnalyticLogisticRegression().fit(xtr, ytr)
    out["analytic"] = (ana.score(xtr, ytr), ana.score(xte, yte))
    ident = AnalyticLogisticRegression(sigma="identity").fit(xtr, ytr)
    out["analytic Σ = I"] = (ident.score(xtr, ytr), ident.score(xte, yte))
    for ep in gd_epochs:
        lin = _gd(xtr, ytr, k, seed, ep)
        with torch.no_grad():
            ptr = lin(torch.from_numpy(xtr).float()).argmax(1).numpy()
            pte = lin(torch.from_numpy(xte).float()).argmax(1).numpy()
        out[f"GD Adam ({ep} ep)"] = (float((ptr == ytr).mean()), float((pte == yte).mean()))
    sk = LogisticRegression(C=1.0, max_iter=5000).fit(xtr, ytr)
    out["sklearn LR (C=1)"] = (sk.score(xtr, ytr), sk.score(xte, yte))
    return out


def _subsample_per_class(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    idx = [rng.choice(np.flatnonzero(y == c), size=min(n, int((y == c).sum())), replace=False)
           for c in np.unique(y)]
    return np.sort(np.concatenate(idx))


def _bundled(splits: int, sizes: tuple[int | None, ...], gd_epochs: tuple[int, ...]):
    from sklearn import datasets
    from sklearn.model_selection import train_test_split

    out: dict[tuple[str, str], list[dict[str, tuple[float, float]]]] = {}
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
                out.setdefault((name, f"{n}/class" if n else "full"), []).append(res)
    return out


def _minilm(name: str, train_split: str, test_split: str, sizes: tuple[int | None, ...], seeds: int,
            cap: int | None, gd_epochs: tuple[int, ...]):
    from ._minilm import embed, labelled

    train = labelled(name, train_split, cap, seed=0)
    test = labelled(name, test_split)
    xtr_all = embed(f"{name}-{train_split}", train.texts)["mean"].astype(np.float64)
    xte = embed(f"{name}-{test_split}", test.texts)["mean"].astype(np.float64)
    ytr_all, yte = np.asarray(train.labels), np.asarray(test.labels)
    out: dict[tuple[str, str], list[dict[str, tuple[float, float]]]] = {}
    for n in sizes:
        for s in range(seeds if n else 1):
            idx = (np.sort(np.random.default_rng(s).choice(len(ytr_all), size=n, replace=False)) if n
                   else np.arange(len(ytr_all)))
            out.setdefault((f"{name} (MiniLM)", f"{n}" if n else f"full ({len(ytr_all)})"), []).append(
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


def run(quick: bool = True) -> Result:
    gd_epochs = (10,) if quick else (10, 100)
    results = _bundled(3 if quick else 10, (30, None) if quick else (30, 100, None), gd_epochs)
    notes: list[str] = []
    try:
        if quick:  # one 1,000-sentence subsample (the one ``can`` uses too, so a full run encodes it once)
            results.update(_minilm("sst2", "train", "test", (None,), 1, 1000, gd_epochs))
        else:
            results.update(_minilm("sst2", "train", "test", (1000, None), 3, 10_000, gd_epochs))
            results.update(_minilm("agnews", "dev", "test", (1000, None), 3, None, gd_epochs))
    except FileNotFoundError as e:
        notes.append(f"MiniLM sets skipped: {e}")
    cos = _synthetic_check()
    methods = list(next(iter(results.values()))[0])
    rows = []
    for (name, size), runs in results.items():
        row: list[object] = [name, size, len(runs)]
        for m in methods:
            tr = np.mean([r[m][0] for r in runs]) * 100
            te = np.mean([r[m][1] for r in runs]) * 100
            row.append(f"{tr:.1f} / {te:.1f}")
        rows.append(row)
    table = Table("Accuracy ×100, train / test (mean over splits or seeds)", ["data", "training size", "runs",
                                                                              *methods], rows)
    tables = [table, Table("The post's table (RoFormer-Sim-FT vectors; train / valid / test or train / valid)",
                           ["task", "GD", "analytic"], POST_TABLE)]
    gd = f"GD Adam ({gd_epochs[0]} ep)"

    def diff_and_gaps(keys):
        d = np.array([np.mean([r["analytic"][1] - r[gd][1] for r in results[k]]) for k in keys])
        ga = np.array([np.mean([r["analytic"][0] - r["analytic"][1] for r in results[k]]) for k in keys])
        gg = np.array([np.mean([r[gd][0] - r[gd][1] for r in results[k]]) for k in keys])
        return d, ga, gg

    # The post's setting: fixed sentence vectors, 1k training samples. The bundled sets (30 per class) are the
    # spec's quick mechanism check and are reported beside it; they decide only if no MiniLM set could be run.
    encoder = [k for k in results if "MiniLM" in k[0] and k[1] in ("1000", "full (1000)")]
    bundled = [k for k in results if k[1] == "30/class"]
    judged = encoder or bundled
    diffs, gaps_ana, gaps_gd = diff_and_gaps(judged)
    mean_diff = float(diffs.mean())
    smaller_gap = float(gaps_ana.mean()) < float(gaps_gd.mean())
    if cos <= 0.99 or mean_diff < -0.01:
        verdict = "does not hold"
    elif mean_diff > 0 and smaller_gap:
        verdict = "holds"
    else:
        verdict = "inconclusive"
    bd, _, _ = diff_and_gaps(bundled)
    measured = (f"1k-sample sets of sentence vectors ({', '.join(a for a, _ in judged)}): analytic − GD test "
                f"accuracy {mean_diff * 100:+.2f} points (" + ", ".join(f"{d * 100:+.2f}" for d in diffs) + "); "
                f"train−test gap {gaps_ana.mean() * 100:.1f} (analytic) vs {gaps_gd.mean() * 100:.1f} (GD); "
                f"bundled sets at 30 per class: " + ", ".join(f"{a} {d * 100:+.1f}" for (a, _), d in zip(bundled, bd))
                + f"; synthetic Gaussians: cos(analytic w, MLE w) = {cos:.5f}")
    notes += [
        "Analytic = whitened, within-class Σ (the library default; the released binary script's Σ = I is "
        "sigma='identity'); directions of zero variance (digits' constant pixels) are dropped before whitening.",
        f"GD = the post's baseline (softmax regression, Adam 1e−3, batch 32, no regularisation), given at least "
        f"{MIN_GD_STEPS} steps so that tiny sets are not simply under-trained; scikit-learn's "
        "L2-regularised LogisticRegression is shown as a third, stronger reference the post did not use.",
        "Features are standardised on the training rows; MiniLM vectors are frozen mean-pooled sentence vectors "
        "(the post used RoFormer-Sim-FT vectors of Chinese sets, not available offline).",
    ]
    return Result(
        name="analytic_logreg",
        post=POST,
        claim="Assuming class-conditional Gaussians with a shared covariance gives logistic/softmax regression a "
              "closed form, which generalises better than gradient descent with little data (smaller train/test "
              "gap) and is close to it with plenty of data.",
        measured=measured,
        verdict=verdict,
        rule=f"Judged on the post's setting, the 1,000-sample subsets of MiniLM sentence vectors (the bundled "
             f"sets at 30 per class only if no MiniLM set ran): holds if the analytic solution's test accuracy beats "
             f"{gd} on average and its mean train−test gap is smaller; does not hold if GD is ahead by more than 1 "
             "point on average or the synthetic weights miss the MLE's (cosine ≤ 0.99); otherwise inconclusive.",
        tables=tables,
        numbers={"results": {f"{a}/{b}": {m: [list(r[m]) for r in runs] for m in methods}
                             for (a, b), runs in results.items()}, "synthetic_cosine": cos},
        notes=notes,
        quick=quick,
    )
