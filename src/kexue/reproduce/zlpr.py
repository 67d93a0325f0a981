"""Reproduction: generalizing "softmax + cross-entropy" to multi-label classification (ZLPR;
kexue.fm/archives/7359).

The post: per-label sigmoid + BCE is imbalanced when few of many labels are positive and needs a tuned threshold;
ZLPR, L = log(1 + Σ_neg e^{s_i}) + log(1 + Σ_pos e^{−s_j}) with the fixed decision s > 0, gets most of the
performance with no tuning. There are no tables; the caveat is that there is no guaranteed gain where imbalance is
already handled.

Compared: BCE at 0.5, BCE with the best global threshold on the validation split, BCE with pos_weight = neg/pos (full
mode), and ZLPR at 0. Every method trains for at most ``epochs`` epochs (Adam 3e−3) and keeps the epoch its own
validation micro-F1 picks (early stopping, the same tuning for all; tuned BCE picks epoch and threshold together).

Quick: ``make_multilabel_classification`` (6,000 samples, 60 features, C ∈ {20, 100} labels, 2 per sample on
average), split 4k/1k/1k, MLP 60→256→C, batch 256, at most 30 epochs, 1 seed; GoEmotions is not measured in quick
mode (a linear head on 800 MiniLM vectors barely beats predicting "neutral" for everything: micro-F1 0.31).
Full: C ∈ {20, 100, 300} and 3 seeds, plus GoEmotions (28 labels): frozen all-MiniLM-L6-v2 mean-pooled vectors, a
10k training subsample, 2,000 dev comments for early stopping and tuning, the full test split (5,427), a linear head,
3 seeds, at most 60 epochs of batch 128; and, reported beside the rule, a more informative synthetic variant
(200 words per sample instead of 50; C ∈ {20, 100}; BCE and ZLPR only).

What we found (full mode, 3 seeds): ZLPR with a tuned threshold is within ≈ 1 point of tuned BCE everywhere, so the
loss trains as good a scorer; at the fixed threshold 0 it is 4.6–6.8 micro-F1 points below tuned BCE on the spec's
noisy synthetic sets and 2.9 below on GoEmotions, so the spec's "within about 1 point of tuned BCE" does not hold:
micro-F1's best threshold lies away from the fixed one. Its gain over BCE@0.5 does grow with C (−2.3 points at
C = 20, +2.0 at C = 300, +4.5 on GoEmotions). On the informative variant ZLPR@0 comes within 0.8–2.1 points.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..losses import zlpr
from .result import Post, Result, Table, Verdict
from .rules import Estimate, all_of, estimate, learned, non_inferiority, not_learned_reason, superiority

POST = Post(
    title="将\"Softmax+交叉熵\"推广到多标签分类问题",
    gloss="Generalizing \"softmax + cross-entropy\" to multi-label classification",
    date="2020-04-25",
    url="https://kexue.fm/archives/7359",
)

METHODS = ("BCE @ 0.5", "BCE @ tuned threshold", "BCE pos_weight @ 0.5", "ZLPR @ 0", "ZLPR @ tuned threshold")
#: "Within about 1 F1 point" (the spec's reading of "matches"): the equivalence margin, in micro-F1 (fraction).
MARGIN = 0.01
LR = 3e-3
N_BOOT = 1000
GRID = np.linspace(0.05, 0.95, 91)
LOGIT_GRID = np.linspace(-3.0, 3.0, 61)  # ZLPR's diagnostic threshold grid (logits)


# ------------------------------------------------------------------ the rule
@dataclass(frozen=True)
class Setting:
    """One data setting's measurements: paired micro-F1 differences (fractions) with their standard errors, the best
    method's micro-F1 and the best constant predictor's (the same top-m most frequent labels for every sample)."""

    name: str
    zlpr_vs_half: Estimate  # ZLPR @ 0 − BCE @ 0.5
    zlpr_vs_tuned: Estimate  # ZLPR @ 0 − BCE @ tuned threshold
    best: Estimate  # the best method's micro-F1
    constant: float  # micro-F1 of the best constant label set


def decide(settings: Sequence[Setting], trend: Estimate | None, *, margin: float = MARGIN) -> tuple[Verdict, str]:
    """The verdict and its reason (2-s.e. intervals).

    1. Guard: a setting whose best method does not clearly beat the constant predictor is left out ("did not
       learn"); none left: ``not measured``.
    2. Each remaining setting: ZLPR@0 no worse than BCE@0.5 and no worse than tuned BCE, each by non-inferiority
       with the margin (``does not hold`` when the interval lies below −margin: ZLPR clearly below).
    3. Trend (synthetic, when ≥ 2 label counts ran): the gain over BCE@0.5 at the largest C minus at the smallest,
       by superiority (grows: holds; shrinks: does not hold).
    The verdict is all of 2–3.
    """
    kept = [s for s in settings if learned(s.best, s.constant)]
    dropped = [not_learned_reason(f"{s.name}: best micro-F1", s.best.mean, s.constant, "constant label set")
               for s in settings if s not in kept]
    if not kept:
        return "not measured", "; ".join(dropped) or "no setting ran"
    decisions, parts = [], []
    for s in kept:
        a, b = non_inferiority(s.zlpr_vs_half, margin), non_inferiority(s.zlpr_vs_tuned, margin)
        decisions += [a, b]
        parts.append(f"{s.name}: vs BCE@0.5 {a} ({_pts(s.zlpr_vs_half)}), vs tuned BCE {b} ({_pts(s.zlpr_vs_tuned)})")
    if trend is not None:
        t = superiority(trend)
        decisions.append(t)
        parts.append(f"gain over BCE@0.5 grows with C: {t} ({_pts(trend)})")
    parts += [f"left out, {d}" for d in dropped]
    return all_of(*decisions), "; ".join(parts)


def _pts(e: Estimate) -> str:
    return f"{e.mean * 100:+.3g} ± {e.se * 100:.2g} points"


# ------------------------------------------------------------------ measurements
def _counts(y: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample true positives and wrong cells (FP + FN): micro-F1 = 2ΣTP / (2ΣTP + Σwrong)."""
    pos = y == 1
    return np.logical_and(pred, pos).sum(1).astype(np.float64), (pred != pos).sum(1).astype(np.float64)


def _micro_f1(y: np.ndarray, pred: np.ndarray) -> float:
    """2TP / (2TP + FP + FN) over all (sample, label) cells: sklearn's micro-F1, fast enough for a grid search."""
    tp = float(np.logical_and(pred, y == 1).sum())
    wrong = float((pred != (y == 1)).sum())
    return 2 * tp / (2 * tp + wrong) if tp or wrong else 0.0


def _macro_f1(y: np.ndarray, pred: np.ndarray) -> float:
    pos = y == 1
    tp = np.logical_and(pred, pos).sum(0)
    wrong = (pred != pos).sum(0)
    return float(np.mean(np.where(tp + wrong > 0, 2 * tp / np.maximum(2 * tp + wrong, 1), 0.0)))


def boot_micro_f1(y: np.ndarray, preds: dict[str, np.ndarray], n_boot: int = N_BOOT, seed: int = 0
                  ) -> dict[str, np.ndarray]:
    """Micro-F1 of each method on ``n_boot`` bootstrap resamples of the test samples, the same resamples for every
    method (so differences are paired)."""
    n = len(y)
    w = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)
    out = {}
    for name, p in preds.items():
        tp, wrong = _counts(y, p)
        two_tp = 2 * (w @ tp)
        out[name] = two_tp / np.maximum(two_tp + w @ wrong, 1e-12)
    return out


def combine(observed: Sequence[float], boot_se: Sequence[float]) -> Estimate:
    """Mean over seeds, with the larger of the test-sample s.e. (√(mean bootstrap variance / seeds)) and the seed
    s.e. (when ≥ 2 seeds): a few seeds that happen to agree do not make the interval narrower than the test set
    allows."""
    seeds = estimate(observed)
    sample_se = math.sqrt(float(np.mean(np.square(boot_se))) / len(boot_se))
    se = max(sample_se, seeds.se) if math.isfinite(seeds.se) else sample_se
    return Estimate(seeds.mean, se, len(observed))


def _train(x: np.ndarray, y: np.ndarray, loss: str, seed: int, hidden: int | None, epochs: int, batch: int,
           evaluate: Callable[[nn.Module], None], pos_weight: np.ndarray | None = None) -> None:
    """Train with Adam, calling ``evaluate(model)`` (in eval mode, no grad) after every epoch."""
    torch.manual_seed(seed)
    d, c = x.shape[1], y.shape[1]
    model = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, c)) if hidden else nn.Linear(d, c)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    xt, yt = torch.from_numpy(x).float(), torch.from_numpy(y).float()
    pw = torch.from_numpy(pos_weight).float() if pos_weight is not None else None
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), batch):
            idx = perm[i : i + batch]
            logits = model(xt[idx])
            if loss == "zlpr":
                value = zlpr(logits, yt[idx])
            else:
                value = F.binary_cross_entropy_with_logits(logits, yt[idx], pos_weight=pw)
            opt.zero_grad()
            value.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            evaluate(model)


def compare(xtr, ytr, xva, yva, xte, yte, seed: int, hidden: int | None, epochs: int, batch: int,
            with_pos_weight: bool = True) -> dict[str, Any]:
    """Test predictions of every method at the epoch (and, for tuned BCE, the threshold) its validation micro-F1
    picks; also the constant predictor's, and the chosen epochs."""
    xv, xt = torch.from_numpy(xva).float(), torch.from_numpy(xte).float()
    best: dict[str, tuple[float, np.ndarray, int, float]] = {}  # method -> (val F1, test pred, epoch, threshold)
    epoch = [0]

    def keep(method: str, val_f1: float, test_pred: np.ndarray, threshold: float) -> None:
        if method not in best or val_f1 > best[method][0]:
            best[method] = (val_f1, test_pred, epoch[0], threshold)

    def bce_eval(prefix: str, tune: bool) -> Callable[[nn.Module], None]:
        def ev(model: nn.Module) -> None:
            epoch[0] += 1
            pv, pt = torch.sigmoid(model(xv)).numpy(), torch.sigmoid(model(xt)).numpy()
            keep(f"{prefix} @ 0.5", _micro_f1(yva, pv > 0.5), pt > 0.5, 0.5)
            if tune:
                scores = [_micro_f1(yva, pv > t) for t in GRID]
                t = float(GRID[int(np.argmax(scores))])
                keep(f"{prefix} @ tuned threshold", max(scores), pt > t, t)
        return ev

    def zlpr_eval(model: nn.Module) -> None:
        epoch[0] += 1
        sv, st = model(xv).numpy(), model(xt).numpy()
        keep("ZLPR @ 0", _micro_f1(yva, sv > 0), st > 0, 0.0)
        scores = [_micro_f1(yva, sv > t) for t in LOGIT_GRID]  # a diagnostic, not in the rule
        t = float(LOGIT_GRID[int(np.argmax(scores))])
        keep("ZLPR @ tuned threshold", max(scores), st > t, t)

    _train(xtr, ytr, "bce", seed, hidden, epochs, batch, bce_eval("BCE", True))
    if with_pos_weight:
        pos = ytr.sum(0)
        epoch[0] = 0
        _train(xtr, ytr, "bce", seed, hidden, epochs, batch, bce_eval("BCE pos_weight", False),
               pos_weight=(len(ytr) - pos) / np.maximum(pos, 1))
    epoch[0] = 0
    _train(xtr, ytr, "zlpr", seed, hidden, epochs, batch, zlpr_eval)
    order = np.argsort(-ytr.sum(0), kind="stable")
    m_best = max(range(1, ytr.shape[1] + 1), key=lambda m: _micro_f1(yva, np.isin(np.arange(ytr.shape[1]),
                                                                                   order[:m])[None, :]))
    const = np.broadcast_to(np.isin(np.arange(ytr.shape[1]), order[:m_best])[None, :], yte.shape)
    return {"y": yte, "preds": {m: v[1] for m, v in best.items()}, "epochs": {m: v[2] for m, v in best.items()},
            "threshold": {m: best[m][3] for m in ("BCE @ tuned threshold", "ZLPR @ tuned threshold")},
            "constant": _micro_f1(yte, const)}


def _synthetic(c: int, seed: int, epochs: int, with_pos_weight: bool, length: int = 50) -> dict[str, Any]:
    """The spec's set (``length`` = 50 words per sample, scikit-learn's default: a noisy task, best micro-F1 ≈ 0.3–0.56)
    or a more informative variant (``length`` = 200)."""
    from sklearn.datasets import make_multilabel_classification

    x, y = make_multilabel_classification(n_samples=6000, n_features=60, n_classes=c, n_labels=2, length=length,
                                          allow_unlabeled=False, random_state=seed)
    x = x.astype(np.float64)
    mu, sd = x[:4000].mean(0), x[:4000].std(0) + 1e-9
    x = (x - mu) / sd
    return compare(x[:4000], y[:4000], x[4000:5000], y[4000:5000], x[5000:], y[5000:], seed, 256, epochs, 256,
                   with_pos_weight)


def _goemotions(seeds: Sequence[int]) -> tuple[list[dict[str, Any]], str]:
    """Full mode only; raises MissingData (a FileNotFoundError) when GoEmotions is absent."""
    from ._minilm import embed, labelled

    train = labelled("goemotions", "train", 10_000, seed=0)
    dev = labelled("goemotions", "dev", 2_000, seed=0)
    test = labelled("goemotions", "test")
    xtr = embed("goemotions-train", train.texts)["mean"]
    xva = embed("goemotions-dev", dev.texts)["mean"]
    xte = embed("goemotions-test", test.texts)["mean"]
    runs = [compare(xtr, train.labels, xva, dev.labels, xte, test.labels, s, None, 60, 128) for s in seeds]
    return runs, f"{len(xtr)} train / {len(xva)} dev / {len(xte)} test"


def summarize(name: str, runs: list[dict[str, Any]]) -> tuple[Setting, dict[str, Any]]:
    """The rule's measurements of one setting from its per-seed runs, and the table's numbers."""
    obs: dict[str, list[float]] = {"half": [], "tuned": [], "best": []}
    bse: dict[str, list[float]] = {"half": [], "tuned": [], "best": []}
    f1s: dict[str, list[tuple[float, float]]] = {}
    for i, r in enumerate(runs):
        boot = boot_micro_f1(r["y"], r["preds"], seed=i)
        micro = {m: _micro_f1(r["y"], p) for m, p in r["preds"].items()}
        for m, p in r["preds"].items():
            f1s.setdefault(m, []).append((micro[m], _macro_f1(r["y"], p)))
        z = "ZLPR @ 0"
        for key, base in (("half", "BCE @ 0.5"), ("tuned", "BCE @ tuned threshold")):
            obs[key].append(micro[z] - micro[base])
            bse[key].append(float(np.std(boot[z] - boot[base], ddof=1)))
        top = max(micro, key=micro.__getitem__)
        obs["best"].append(micro[top])
        bse["best"].append(float(np.std(boot[top], ddof=1)))
    setting = Setting(name, combine(obs["half"], bse["half"]), combine(obs["tuned"], bse["tuned"]),
                      combine(obs["best"], bse["best"]), float(np.mean([r["constant"] for r in runs])))
    extra = {"f1": {m: [list(v) for v in vs] for m, vs in f1s.items()},
             "epochs": [r["epochs"] for r in runs], "thresholds": [r["threshold"] for r in runs],
             "constant": [r["constant"] for r in runs]}
    return setting, extra


def run(quick: bool = True) -> Result:
    seeds = [0] if quick else [0, 1, 2]
    cs = (20, 100) if quick else (20, 100, 300)
    epochs = 30 if quick else 40
    settings: list[Setting] = []
    numbers: dict[str, Any] = {}
    skipped: list[str] = []
    notes: list[str] = []
    for c in cs:
        s, extra = summarize(f"synthetic C={c}", [_synthetic(c, sd, epochs, not quick) for sd in seeds])
        settings.append(s)
        numbers[s.name] = extra
    syn = settings[:]
    trend = Estimate(syn[-1].zlpr_vs_half.mean - syn[0].zlpr_vs_half.mean,
                     math.hypot(syn[-1].zlpr_vs_half.se, syn[0].zlpr_vs_half.se), len(seeds))
    go_desc = "not measured in quick mode"
    if quick:
        notes.append("GoEmotions is not measured in quick mode: a linear head on 800 MiniLM vectors reaches "
                     "micro-F1 ≈ 0.31–0.35, barely above predicting 'neutral' for every comment (0.31); full mode "
                     "trains on 10,000.")
    else:
        try:
            runs, go_desc = _goemotions(seeds)
            s, extra = summarize("GoEmotions (28 labels)", runs)
            settings.append(s)
            numbers[s.name] = extra
        except FileNotFoundError as e:  # MissingData, or a loader not yet converted to it
            skipped.append(f"GoEmotions (28 labels, frozen MiniLM + linear head): {e}")
            go_desc = "skipped (data missing)"
    verdict, reason = decide(settings, trend)
    variant: list[Setting] = []
    if not quick:  # reported beside the rule, not judged: the same comparison on a less noisy task
        for c in (20, 100):
            v, extra = summarize(f"variant C={c}, 200 words", [_synthetic(c, sd, epochs, False, 200) for sd in seeds])
            variant.append(v)
            numbers[v.name] = extra

    rows = []
    for s in settings + variant:
        f1 = numbers[s.name]["f1"]
        for m in METHODS:
            if m in f1:
                rows.append([s.name, m, round(float(np.mean([v[0] for v in f1[m]])) * 100, 2),
                             round(float(np.mean([v[1] for v in f1[m]])) * 100, 2)])
        rows.append([s.name, "constant label set", round(s.constant * 100, 2), ""])
    table = Table(f"Test F1 ×100 (mean over {len(seeds)} seed{'s' if len(seeds) > 1 else ''}; each method at the "
                  f"epoch its validation micro-F1 picks); GoEmotions: {go_desc}",
                  ["setting", "method", "micro-F1", "macro-F1"], rows)
    def tuned_gap(name: str) -> str:  # diagnostic: is the gap the loss or the threshold?
        f1 = numbers[name]["f1"]
        z, b = (np.mean([v[0] for v in f1[m]]) for m in ("ZLPR @ tuned threshold", "BCE @ tuned threshold"))
        return f"{(z - b) * 100:+.3g}"

    diffs = Table("ZLPR @ 0 minus BCE, micro-F1 points (± s.e.: the larger of the bootstrap over test samples "
                  "and the seeds); last column: ZLPR with a tuned threshold minus tuned BCE (a diagnostic)",
                  ["setting", "vs BCE @ 0.5", "vs tuned BCE", "best method", "constant", "ZLPR tuned − BCE tuned"],
                  [[s.name + (" (not judged)" if s in variant else ""), _pts(s.zlpr_vs_half), _pts(s.zlpr_vs_tuned),
                    f"{s.best.mean * 100:.3g}", f"{s.constant * 100:.3g}", tuned_gap(s.name)]
                   for s in settings + variant])
    measured = "; ".join(f"{s.name}: ZLPR@0 − BCE@0.5 {_pts(s.zlpr_vs_half)}, − tuned BCE {_pts(s.zlpr_vs_tuned)}"
                         for s in settings)
    numbers["rule"] = {s.name: {"zlpr_vs_half": [s.zlpr_vs_half.mean, s.zlpr_vs_half.se],
                                "zlpr_vs_tuned": [s.zlpr_vs_tuned.mean, s.zlpr_vs_tuned.se],
                                "best": [s.best.mean, s.best.se], "constant": s.constant} for s in settings + variant}
    numbers["trend"] = [trend.mean, trend.se]
    share = {name: float(np.mean([v[0] for v in numbers[name]["f1"]["ZLPR @ 0"]])
                         / np.mean([v[0] for v in numbers[name]["f1"]["BCE @ tuned threshold"]]))
             for name in (s.name for s in settings)}
    notes.append("ZLPR@0's micro-F1 as a share of tuned BCE's (the post's looser 'most of the performance'): "
                 + ", ".join(f"{name} {v:.0%}" for name, v in share.items()) + ".")
    notes += [
        "The post has no tables; its claim is that ZLPR at the fixed threshold 0 gets most of the performance of "
        "carefully tuned BCE without tuning, with no guaranteed gain where imbalance is already handled.",
        "Tuned BCE uses the single global probability threshold (grid 0.05…0.95) and the epoch that maximise "
        "micro-F1 on the validation split; the others pick only their epoch. Standard errors: a bootstrap over test "
        f"samples ({N_BOOT} resamples, shared by the methods, so differences are paired), or the seeds' spread if "
        "larger.",
        "The constant label set is the top-m most frequent training labels predicted for every sample (m picked on "
        "validation): the learned guard's baseline.",
        "GoEmotions features are frozen all-MiniLM-L6-v2 mean-pooled vectors, head = one linear layer; the "
        "synthetic sets use an MLP 60→256→C. Adam 3e−3 throughout.",
    ]
    return Result(
        name="zlpr",
        post=POST,
        claim="ZLPR (multi-label softmax + cross-entropy) at the fixed threshold 0 matches per-label BCE that needs "
              "tuning (weights or threshold), with the advantage over untuned BCE growing with the number of labels.",
        measured=measured,
        verdict=verdict,
        reason=reason,
        rule="learned guard: a setting whose best method does not beat the constant label set by 2 s.e. is left out; "
             f"then holds if, in every setting, ZLPR@0's micro-F1 is no worse than BCE@0.5's and than tuned BCE's "
             f"(non-inferiority, margin {MARGIN * 100:g} point, 2-s.e. intervals of the paired differences) and its "
             "gain over BCE@0.5 grows from the smallest to the largest C (superiority); does not hold if any part "
             "fails clearly; otherwise inconclusive.",
        kind="empirical",
        post_figure="no figure in the post (qualitative: matches carefully tuned BCE without tuning)",
        our_figure="; ".join(f"{s.name} ZLPR@0 − tuned BCE {s.zlpr_vs_tuned.mean * 100:+.3g} pts micro-F1"
                             for s in settings),
        setup=(f"make_multilabel_classification (6,000 samples, 60 features, C ∈ {{{', '.join(map(str, cs))}}}), "
               f"MLP 60→256→C, Adam 3e−3, ≤ {epochs} epochs with early stopping on validation, {len(seeds)} seed(s)"
               + ("" if quick else "; GoEmotions: frozen MiniLM + linear head, 10k train, ≤ 60 epochs") + "."),
        tables=[table, diffs],
        numbers=numbers,
        notes=notes,
        skipped=skipped,
        quick=quick,
    )
