"""Reproduction: CAN, a prior-based post-processing trick for classification (kexue.fm/archives/8728).

The post: re-normalising each uncertain prediction jointly with the confident ones towards the training label prior
(k = 3, τ = 0.9, one iteration) lifts CLUE accuracy by tenths of a point, more with more classes (BERT: IFLYTEK
60.06 → 60.52, TNEWS 56.80 → 56.86; RoBERTa TNEWS 58.06 → 58.00), and the confident subset is far more accurate
than the uncertain one (IFLYTEK 0.63+ vs 0.22+, TNEWS 0.58+ vs 0.23+).

Both modes run (1) the spec's mechanism: ``load_digits``, logistic regression (C = 0.01) on 200 samples, a logit
bias b ∈ {0, 1, 2} added to classes 0–2 to put the classifier at odds with the prior, 10 seeds; and (2) a real
many-class set, where the post expects a gain: FewCLUE TNEWS (15 classes), char 1–2-gram TF-IDF + logistic
regression trained on train_few_all + dev_few_all, tested on test_public (quick: one fit on all training rows, a few
seconds). Full adds IFLYTEK (119 classes) the same way, SMP2020-EWECT (6, imbalanced; train → test) and AG News
(4; word 1–2-gram TF-IDF, dev.tsv → test.tsv), 3 seeds each (a 90 % subsample of the training rows per seed), and
iters ∈ {1, 3} in the table. The rule (:func:`decide`) judges one iteration.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..classify.can import can, confident_mask, prior_from_labels
from ..data.classification import LabelledSet
from ..data.registry import MissingData
from ._paired import accuracy, paired_examples, pooled
from .result import Post, Result, Table, Verdict
from .rules import Estimate, all_of, estimate, learned, not_learned_reason, paired, superiority

POST = Post(
    title="CAN：借助先验分布提升分类性能的简单后处理技巧",
    gloss="CAN: a simple post-processing trick that uses the prior to improve classification",
    date="2021-10-22",
    url="https://kexue.fm/archives/8728",
)

POST_TABLE = [["BERT", "IFLYTEK (119)", 60.06, 60.52], ["BERT", "TNEWS (15)", 56.80, 56.86],
              ["RoBERTa", "IFLYTEK (119)", 60.64, 60.95], ["RoBERTa", "TNEWS (15)", 58.06, 58.00]]
BIASES = (0.0, 1.0, 2.0)
#: The post expects a gain on sets with many classes (its TNEWS has 15, IFLYTEK 119); the gain is judged there.
GAIN_CLASSES = 10
#: "Far more accurate": the confident subset must beat the uncertain one by more than this (the post: +35–40 points).
CONF_GAP = 0.10


# ------------------------------------------------------------------ the rule
@dataclass(frozen=True)
class Mechanism:
    """Per seed on the biased digits: accuracy before CAN at b = 0, and CAN's change at b = 0 and at b = 2 (paired:
    the same classifier and test rows); ``majority`` is the test set's majority-class rate."""

    acc_b0: Sequence[float]
    delta_b0: Sequence[float]
    delta_b2: Sequence[float]
    majority: float


@dataclass(frozen=True)
class RealSet:
    """One real classifier: per seed and test example, correct before / after CAN (1 iteration) and confident."""

    name: str
    classes: int
    majority: float
    before: np.ndarray
    after: np.ndarray
    confident: np.ndarray


def confidence_gap(s: RealSet) -> Estimate:
    """Accuracy on the confident minus the uncertain subset, pooled over seeds, with the binomial standard error of
    each subset's rate at its per-seed size."""
    b, c = np.asarray(s.before, float), np.asarray(s.confident, bool)
    seeds = b.shape[0] if b.ndim == 2 else 1
    n_c, n_u = c.sum() / seeds, (~c).sum() / seeds
    if n_c < 1 or n_u < 1:
        return Estimate(float("nan"), float("nan"), 0)
    p_c, p_u = float(b[c].mean()), float(b[~c].mean())
    se = float(np.sqrt(p_c * (1 - p_c) / n_c + p_u * (1 - p_u) / n_u))
    return Estimate(p_c - p_u, se, int(min(n_c, n_u)))


def decide(mech: Mechanism, sets: Sequence[RealSet]) -> tuple[Verdict, str]:
    """The verdict and its reason (2-s.e. intervals throughout).

    1. Guard: the digits classifier and every real classifier must clearly beat the majority class, else ``not
       measured``.
    2. Mechanism: CAN's paired gain at b = 2 over seeds > 0, and larger than at b = 0 (paired by seed).
    3. Gain, on the sets with ≥ :data:`GAIN_CLASSES` classes: the mean over those sets of the paired per-example
       change in accuracy (:func:`~kexue.reproduce._paired.paired_examples`), its s.e. the root sum of squares / m:
       superiority (above 0 holds, below 0 does not hold). No such set: inconclusive.
    4. Each real set: confident − uncertain accuracy − :data:`CONF_GAP` by superiority.
    The verdict is all of 2–4: ``does not hold`` if any part does not, ``holds`` if all do, else inconclusive.
    """
    acc0 = estimate(mech.acc_b0)
    if not learned(acc0, mech.majority):
        return "not measured", not_learned_reason("digits accuracy", acc0.mean, mech.majority, "majority class")
    for s in sets:
        a = accuracy(s.before)
        if not learned(a, s.majority):
            return "not measured", not_learned_reason(f"{s.name} accuracy", a.mean, s.majority, "majority class")
    g2, grow = estimate(mech.delta_b2), paired(mech.delta_b2, mech.delta_b0)
    mech_d = all_of(superiority(g2), superiority(grow))
    parts = [f"mechanism {mech_d} (gain at b = 2: {_pts(g2)}; b = 2 minus b = 0: {_pts(grow)})"]
    many = [s for s in sets if s.classes >= GAIN_CLASSES]
    if many:
        gain = pooled([paired_examples(s.after, s.before) for s in many])
        gain_d = superiority(gain)
        parts.append(f"gain {gain_d} ({', '.join(s.name for s in many)}: {_pts(gain)})")
    else:
        gain_d = "inconclusive"
        parts.append(f"gain inconclusive (no set with ≥ {GAIN_CLASSES} classes ran)")
    gaps = []
    for s in sets:
        gap = confidence_gap(s)
        d = superiority(Estimate(gap.mean - CONF_GAP, gap.se, gap.n))
        gaps.append(d)
        parts.append(f"{s.name} confident − uncertain {d} ({_pts(gap)} against {CONF_GAP * 100:.0f})")
    verdict = all_of(mech_d, gain_d, *gaps)
    return verdict, "; ".join(parts)


def _pts(e: Estimate) -> str:
    return f"{e.mean * 100:+.3g} ± {e.se * 100:.2g} points"


# ------------------------------------------------------------------ measurements
def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _mechanism(seeds: int) -> tuple[dict[float, dict[str, list[float]]], float]:
    """({bias: {before, after, batch, uncertain: per-seed values}}, the test sets' mean majority-class rate)."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    x, y = load_digits(return_X_y=True)
    out: dict[float, dict[str, list[float]]] = {b: {"before": [], "after": [], "batch": [], "uncertain": []}
                                                 for b in BIASES}
    majority = []
    for seed in range(seeds):
        perm = np.random.default_rng(seed).permutation(len(y))
        tr, te = perm[:200], perm[200:]
        majority.append(float(np.bincount(y[te]).max() / len(te)))
        clf = LogisticRegression(C=0.01, max_iter=2000).fit(x[tr], y[tr])
        prior = prior_from_labels(y[tr], 10)
        logits = clf.decision_function(x[te])
        for b in BIASES:
            z = logits.copy()
            z[:, :3] += b
            p = _softmax(z)
            out[b]["before"].append(float((p.argmax(1) == y[te]).mean()))
            out[b]["after"].append(float((can(p, prior).argmax(1) == y[te]).mean()))
            out[b]["batch"].append(float((can(p, prior, mode="batch").argmax(1) == y[te]).mean()))
            out[b]["uncertain"].append(float((~confident_mask(p)).mean()))
    return out, float(np.mean(majority))


def _tfidf_lr(name: LabelledSet, train_splits: tuple[str, ...], test_split: str, analyzer: str,
              seed: int | None) -> tuple[np.ndarray, ...]:
    """(test probabilities, test labels, training prior); ``seed`` draws a 90 % subsample of the training rows."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from ..data.classification import load

    parts = [load(name, s) for s in train_splits]
    texts = [t for p in parts for t in p.texts]
    labels = np.concatenate([p.labels for p in parts])
    test = load(name, test_split)
    if seed is not None:
        keep = np.sort(np.random.default_rng(seed).choice(len(labels), size=int(0.9 * len(labels)), replace=False))
        texts, labels = [texts[i] for i in keep], labels[keep]
    # The 10,000 most frequent 1–2-grams (min_df 2) and a loose tolerance keep IFLYTEK's 119-class fit to seconds
    # (all n-grams with C = 10 took over 5 minutes for the same accuracy, 55 %).
    vec = TfidfVectorizer(analyzer=analyzer, ngram_range=(1, 2), sublinear_tf=True, min_df=2, max_features=10_000)
    xtr, xte = vec.fit_transform(texts), vec.transform(test.texts)
    c = len(parts[0].label_names)
    clf = LogisticRegression(C=3.0, max_iter=300, tol=1e-3).fit(xtr, labels)
    probs = np.zeros((len(test.texts), c))
    probs[:, clf.classes_] = clf.predict_proba(xte)  # classes absent from training get probability 0
    probs = np.clip(probs, 1e-12, None)
    probs /= probs.sum(axis=1, keepdims=True)
    return probs, np.asarray(test.labels), prior_from_labels(labels, c)


#: (label, data set, training splits, test split, analyzer); quick runs the first.
REAL: list[tuple[str, LabelledSet, tuple[str, ...], str, str]] = [
    ("TNEWS", "tnews", ("train", "dev"), "test", "char"),
    ("IFLYTEK", "iflytek", ("train", "dev"), "test", "char"),
    ("SMP2020-EWECT", "smp2020_ewect", ("train",), "test", "char"),
    ("AG News", "agnews", ("dev",), "test", "word")]


def _real(label: str, name: LabelledSet, train: tuple[str, ...], test: str, analyzer: str, seeds: int,
          iters: tuple[int, ...]) -> tuple[RealSet, list[list[object]]]:
    before, after, conf, rows = [], [], [], []
    for s in range(seeds):
        probs, y, prior = _tfidf_lr(name, train, test, analyzer, None if seeds == 1 else s)
        pred = probs.argmax(1)
        before.append(pred == y)
        conf.append(confident_mask(probs))
        for it in iters:
            ok = can(probs, prior, iters=it).argmax(1) == y
            if it == 1:
                after.append(ok)
            if s == 0:
                test_prior = prior_from_labels(y, probs.shape[1])
                oracle = float((can(probs, test_prior, iters=it).argmax(1) == y).mean())
                c = conf[-1]
                rows.append([f"{label} (TF-IDF + LR)", probs.shape[1], it, round(100 * before[-1].mean(), 2),
                             round(100 * ok.mean(), 2), f"{c.mean():.1%}", round(100 * before[-1][c].mean(), 1),
                             round(100 * before[-1][~c].mean(), 1) if (~c).any() else "—",
                             round(0.5 * float(np.abs(prior - test_prior).sum()), 3),
                             round(100 * (oracle - before[-1].mean()), 2)])
    majority = float(np.bincount(y).max() / len(y))
    return RealSet(label, probs.shape[1], majority, np.array(before, float), np.array(after, float),
                   np.array(conf)), rows


# ------------------------------------------------------------------ run
def run(quick: bool = True) -> Result:
    mech, majority = _mechanism(10)
    mech_m = Mechanism(acc_b0=mech[0.0]["before"],
                       delta_b0=list(np.subtract(mech[0.0]["after"], mech[0.0]["before"])),
                       delta_b2=list(np.subtract(mech[2.0]["after"], mech[2.0]["before"])),
                       majority=majority)
    mech_rows = []
    for b, r in mech.items():
        d = estimate(np.subtract(r["after"], r["before"]))
        mech_rows.append([b, f"{np.mean(r['uncertain']):.1%}", round(np.mean(r["before"]) * 100, 2),
                          round(np.mean(r["after"]) * 100, 2), f"{d.mean * 100:+.2f} ± {d.se * 100:.2f}",
                          round(np.mean(r["batch"]) * 100, 2)])
    tables = [Table("Mechanism: digits, logistic regression (C = 0.01) on 200 samples, logit bias b on classes 0–2; "
                    "accuracy ×100, mean over 10 seeds (k = 3, τ = 0.9, 1 iteration)",
                    ["bias b", "uncertain", "before", "CAN (per sample)", "Δ ± s.e.", "CAN (batch mode)"], mech_rows)]
    seeds, iters = (1, (1,)) if quick else (3, (1, 3))
    sets: list[RealSet] = []
    rows: list[list[object]] = []
    skipped: list[str] = []
    for label, name, train, test, analyzer in REAL[:1] if quick else REAL:
        try:
            real_set, real_rows = _real(label, name, train, test, analyzer, seeds, iters)
        except MissingData as e:
            skipped.append(f"{label}: {e}")
            continue
        sets.append(real_set)
        rows += real_rows
    if rows:
        tables.append(Table(f"Real classifiers (τ = 0.9, k = 3; prior = training label frequencies); accuracy ×100, "
                            f"{'seed 0 of 3' if seeds > 1 else 'one fit'}",
                            ["classifier", "classes", "iters", "accuracy", "CAN", "confident", "acc. confident",
                             "acc. uncertain", "TV(train prior, test prior)", "Δ with the test prior (oracle)"], rows))
    tables.append(Table("The post's CLUE dev accuracy (not remeasured: no Chinese pretrained model offline)",
                        ["model", "task", "accuracy", "+ CAN"], POST_TABLE))
    verdict, why = decide(mech_m, sets)
    gains = {s.name: paired_examples(s.after, s.before) for s in sets}
    gaps = {s.name: confidence_gap(s) for s in sets}
    d0, d2 = estimate(mech_m.delta_b0), estimate(mech_m.delta_b2)
    measured = "; ".join([f"biased digits: CAN changes accuracy by {_pts(d0)} (b = 0) and {_pts(d2)} (b = 2)"] + [
                f"{s.name}: {100 * accuracy(s.before).mean:.3g} → {100 * accuracy(s.after).mean:.3g} "
                f"({_pts(gains[s.name])}), confident − uncertain {_pts(gaps[s.name])}" for s in sets])
    main = next((s for s in sets if s.classes >= GAIN_CLASSES), None)
    our = (f"{main.name} (TF-IDF + LR) {_pts(gains[main.name])}, confident − uncertain {_pts(gaps[main.name])}"
           if main else f"no set with ≥ {GAIN_CLASSES} classes ran; digits at b = 2: {_pts(d2)}")
    notes = [
        "The post fine-tuned Chinese BERT/RoBERTa on the full CLUE training sets; no Chinese pretrained model is "
        "available offline, so the real classifiers here are char 1–2-gram TF-IDF + logistic regression (the "
        "spec's full-mode classifier) on FewCLUE's few-shot splits, whose test sets are class-balanced.",
        "The prior is the training label frequencies, as in the post; CAN assumes it describes the test set. The "
        "last two table columns show how far it is from the test labels (total variation) and what CAN does with the "
        "test set's own frequencies (an oracle, for diagnosis only).",
        "Uncertainty is Su's top-k entropy renormalised to [0, 1] (not the paper's log C normalisation).",
    ]
    return Result(
        name="can",
        post=POST,
        claim="Alternating row/column normalisation of each uncertain prediction with the confident ones towards the "
              "prior improves accuracy slightly (tenths of a point, more with more classes); confident predictions "
              "are far more accurate than uncertain ones.",
        measured=measured,
        verdict=verdict,
        rule=f"Guard: every classifier must beat the majority class by 2 s.e., else not measured. Then, with 2-s.e. "
             f"intervals: CAN's paired gain on the biased digits at b = 2 must be > 0 and exceed its gain at b = 0; "
             f"the paired per-example change in accuracy (1 iteration; larger of the test-sample and seed s.e.), "
             f"averaged over the sets with ≥ {GAIN_CLASSES} classes, must be > 0 (below 0: does not hold); on every "
             f"real set the confident subset must beat the uncertain one by > {CONF_GAP * 100:.0f} points. Holds if "
             f"all parts hold, does not hold if any part does not, else inconclusive.",
        kind="empirical",
        post_figure="BERT + CAN on CLUE dev: IFLYTEK 60.06 → 60.52 (+0.46), TNEWS 56.80 → 56.86 (+0.06) points; "
                    "IFLYTEK confident 63+ vs uncertain 22+",
        our_figure=our,
        setup=f"Digits + logistic regression (200 training samples, 10 seeds, logit bias b ∈ {{0, 1, 2}}); "
              f"{', '.join(s.name for s in sets) or 'no real set'} with TF-IDF + logistic regression, "
              f"{seeds} seed(s){' (90 % training subsamples)' if seeds > 1 else ''}; k = 3, τ = 0.9, 1 iteration.",
        reason=why,
        tables=tables,
        numbers={"mechanism": {str(b): {k: float(np.mean(v)) for k, v in r.items()} for b, r in mech.items()},
                 "gain": {k: [e.mean, e.se] for k, e in gains.items()},
                 "confidence_gap": {k: [e.mean, e.se] for k, e in gaps.items()}, "real": rows},
        notes=notes,
        skipped=skipped,
        quick=quick,
    )

