"""Reproduction: adversarial training and the gradient penalty (kexue.fm/archives/7234).

1. The equivalence (quick and full), the spec's check: an Embedding → mean-pool → MLP model on one random batch with
   repeated tokens, in float64. Each perturbation is paired with its own penalty, the perturbation held constant:
   the weight scope ∇_θ L(E + ε·G_E) against ∇_θ[L + ½ε‖G_E‖²] (G_E = ∂L/∂E, repeated tokens summed) and the output
   scope ∇_θ L(e + ε·G_e) against ∇_θ[L + ½ε‖G_e‖²] (Su's penalty, one row per position), for ε ∈ {1e-3, 1e-2,
   1e-1}: the cosine similarity should tend to 1 and the difference shrink as O(ε²). A third pairing, the matrix
   perturbation against the output penalty, shows the spec's pitfall: with repeated tokens it is not equivalent.
2. Fine-tuning all-MiniLM-L6-v2 (mean pooling + a linear head) on SST-2: plain, FGM (the post's form: ε = 0.5, the
   embedding matrix, one Frobenius norm over its gradient, the adversarial loss only) and the gradient penalty (ε = 1
   on the embedding outputs), 3 seeds; clean test accuracy and accuracy under an embedding-space attack (each real
   token's word embedding moved by ε_att along its own normalised loss gradient, true labels, one step). Quick: the
   first 3 of the 6 blocks, 192 training sentences, 128 test sentences, ε_att = 0.02. Full: all 6 blocks, 600
   training sentences, 300 test sentences, ε_att ∈ {0.02, 0.05} (cut from 1,000 training sentences, 18 minutes
   on this machine). One epoch, batch 16 in length buckets, AdamW (encoder lr 1e-4, head 1e-2), max length 32; the
   vocabulary is cut to the tokens the sentences use (unused rows have zero gradient and never enter a forward, so
   the model and FGM's whole-table norm are unchanged). FGM's PyTorch form (clean + adversarial loss) is the
   variant "FGM (clean+adv)" of :func:`~kexue.reproduce._adversarial_task.train_one`, left out of the run for time.

The two experiments live in :mod:`kexue.reproduce._adversarial_task`; the verdict is :func:`decide`. Without SST-2
only the equivalence runs (the fine-tuning part is listed as skipped).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._adversarial_task import EQUIV_EPS, EquivalenceRow, difference_order, equivalence, finetune_experiment
from ._paired import accuracy, paired_examples
from .common import pyplot
from .result import Post, Result, Table, Verdict
from .rules import Estimate, all_of, learned, non_inferiority, not_learned_reason, superiority

POST = Post(title="对抗训练浅谈：意义、方法和思考（附Keras实现）",
            gloss="Adversarial training: meaning, methods and thoughts (with a Keras implementation)",
            date="2020-03-01", url="https://kexue.fm/archives/7234")

COS_MIN = 0.999  # at the smallest ε
ORDER_MIN = 1.5  # the log-log slope of ‖difference‖ against ε (2 for O(ε²))


# ----------------------------------------------------------------------------------------- the rule
REGULARISERS = ("FGM (post)", "gradient penalty")
#: The clean-accuracy equivalence margin: a regulariser may cost at most this much clean accuracy (or the plain
#: model's seed standard deviation, if larger) and still count as "no worse".
CLEAN_MARGIN = 0.01
#: Fewer seeds leave the seed noise unmeasured (the issue's minimum).
MIN_SEEDS = 3


@dataclass(frozen=True)
class Measurements:
    """What :func:`decide` reads: the equivalence check per scope (cosine at the smallest ε, log-log slope of the
    difference), the test set's majority-class rate, and per variant the (seeds, test examples) correctness, clean
    and under the judged attack; seeds pair across variants (same data order, same head initialisation)."""

    cosine: Mapping[str, float]
    order: Mapping[str, float]
    majority: float
    clean: Mapping[str, np.ndarray]
    attack: Mapping[str, np.ndarray]


def decide(m: Measurements) -> tuple[Verdict, str]:
    """The verdict and its reason.

    ``does not hold`` if the equivalence fails (cosine < :data:`COS_MIN` or slope < :data:`ORDER_MIN` in either
    scope); ``inconclusive`` if the fine-tuning did not run (no outcomes); ``not measured`` if fewer than
    :data:`MIN_SEEDS` seeds ran or plain's clean accuracy does not clearly beat the majority class; then for FGM
    (post) and the gradient penalty against plain, paired per example and seed
    (:func:`~kexue.reproduce._paired.paired_examples`, 2 s.e.): accuracy under the attack by superiority, clean
    accuracy by non-inferiority with margin max(:data:`CLEAN_MARGIN`, plain's seed s.d.). All four hold: holds; any
    does not: does not hold; else inconclusive.
    """
    bad = [s for s in m.cosine if not (m.cosine[s] >= COS_MIN and m.order[s] >= ORDER_MIN)]
    if bad:
        return "does not hold", "the equivalence fails in the " + ", ".join(
            f"{s} scope (cosine {m.cosine[s]:.6f}, difference ∝ ε^{m.order[s]:.2f})" for s in bad)
    if not m.clean:
        return "inconclusive", ("the equivalence holds in both scopes; the fine-tuning part did not run, so the "
                                "effect on training is not judged")
    plain = np.atleast_2d(np.asarray(m.clean["plain"], float))
    if plain.shape[0] < MIN_SEEDS:
        return "not measured", f"{plain.shape[0]} seed(s): at least {MIN_SEEDS} are needed to measure the seed noise"
    acc = accuracy(plain)
    if not learned(acc, m.majority):
        return "not measured", not_learned_reason("plain clean accuracy", acc.mean, m.majority, "majority class")
    margin = max(CLEAN_MARGIN, float(plain.mean(axis=1).std(ddof=1)))
    parts, why = [], []
    for v in REGULARISERS:
        robust = paired_examples(m.attack[v], m.attack["plain"])
        clean = paired_examples(m.clean[v], m.clean["plain"])
        r, c = superiority(robust), non_inferiority(clean, margin)
        parts += [r, c]
        why.append(f"{v} − plain: under the attack {_pts(robust)} ({r}), clean {_pts(clean)} against a "
                   f"−{100 * margin:.2g}-point margin ({c})")
    return all_of(*parts), "; ".join(why)


def _pts(e: Estimate) -> str:
    return f"{e.mean * 100:+.3g} ± {e.se * 100:.2g} points"


# ----------------------------------------------------------------------------------------- run
def run(quick: bool = True) -> Result:
    from ..data.registry import MissingData

    t0 = time.perf_counter()
    eq = equivalence()
    orders = {s: difference_order(eq, s) for s in ("weight", "output")}
    cos_small = {s: next(r["cosine"] for r in eq if r["scope"] == s and r["epsilon"] == EQUIV_EPS[0])
                 for s in ("weight", "output")}
    eq_rows = [[r["scope"], r["epsilon"], r["cosine"], r["diff"], r["rel_to_penalty_part"]] for r in eq]
    tables = [Table("Equivalence (float64): FGM gradient at the moved point against the gradient with the matching "
                    "penalty", ["scope", "ε", "cosine", "‖difference‖", "difference / ‖penalty's own contribution‖"],
                    eq_rows)]
    measured = (f"equivalence: cosine {cos_small['weight']:.6f} (weight) / {cos_small['output']:.6f} (output) at "
                f"ε = {EQUIV_EPS[0]:g}, difference ∝ ε^{orders['weight']:.2f} / ε^{orders['output']:.2f}")
    att, skipped, numbers = "attack 0.02", [], {"equivalence": eq, "orders": orders}
    try:
        ft = finetune_experiment(quick)
    except MissingData as e:
        ft, skipped = None, [f"fine-tuning on SST-2: {e}"]
    res: dict[str, list[dict[str, float]]] = {}
    keys = ["clean", att]
    if ft is None:
        meas = Measurements(cos_small, orders, 0.5, {}, {})
        our = f"equivalence: cosine {min(cos_small.values()):.6f}, difference ∝ ε^{min(orders.values()):.2f}"
        setup_text = "equivalence on a float64 toy (Embedding → mean-pool → MLP); fine-tuning skipped (no SST-2)."
    else:
        res, setup, out = ft["results"], ft["setup"], ft["outcomes"]
        keys = ["clean"] + [f"attack {e:g}" for e in setup["eps_attack"]]
        meas = Measurements(cos_small, orders, setup["majority"], {v: o["clean"] for v, o in out.items()},
                            {v: o[att] for v, o in out.items()})
        stats = {v: {k: (float(np.mean([r[k] for r in runs])), float(np.std([r[k] for r in runs], ddof=1)))
                     for k in [*keys, "train_cpu_s"]} for v, runs in res.items()}
        cols = ["variant"] + [c for k in keys for c in (f"{k} acc", "± std")] + ["train CPU s"]
        tables.append(Table(
            f"Fine-tuning all-MiniLM-L6-v2 ({setup['layers']} blocks) on SST-2: {setup['train']} train / "
            f"{setup['test']} test sentences, {setup['epochs']} epoch(s), {setup['seeds']} seeds; attack: each "
            f"token's word embedding moved by ε_att along its own loss gradient", cols,
            [[v, *[x for k in keys for x in st[k]], st["train_cpu_s"][0]] for v, st in stats.items()]))
        effects = {v: (paired_examples(meas.clean[v], meas.clean["plain"]),
                       paired_examples(meas.attack[v], meas.attack["plain"])) for v in REGULARISERS}
        ratio = {v: stats[v]["train_cpu_s"][0] / stats["plain"]["train_cpu_s"][0] for v in REGULARISERS}
        measured += "; " + "; ".join(f"{v}: clean {100 * st['clean'][0]:.1f} %, {att} {100 * st[att][0]:.1f} %"
                                     for v, st in stats.items())
        measured += f"; training time FGM {ratio['FGM (post)']:.2f}x, penalty {ratio['gradient penalty']:.2f}x plain"
        our = "; ".join(f"{v} − plain: clean {_pts(c)}, {att} {_pts(a)}" for v, (c, a) in effects.items())
        setup_text = (f"all-MiniLM-L6-v2 ({setup['layers']} of 6 blocks) + linear head on SST-2, {setup['train']} "
                      f"training sentences, {setup['epochs']} epoch (batch 16, AdamW), {setup['test']} test "
                      f"sentences, {setup['seeds']} seeds; plain, FGM ε = 0.5, gradient penalty ε = 1; equivalence "
                      f"on a float64 toy.")
        numbers.update({"finetune": {"results": res, "setup": setup}, "train_time_ratio": ratio,
                        "effects": {v: {"clean": [c.mean, c.se], att: [a.mean, a.se]}
                                    for v, (c, a) in effects.items()}})
    verdict, why = decide(meas)
    notes = [
        "The post's numbers need a Chinese BERT base fine-tuned on CLUE, not available offline; here the mechanism is "
        "checked exactly and the regularisation effect measured on an English model at a CPU-sized scale.",
        "The post reports clean dev-accuracy gains; at this scale a 1–2-point clean gain is below the noise, so the "
        "rule asks for clean accuracy no worse than plain (within the margin) and higher accuracy under the attack.",
        "FGM's δ has norm 0.5 over the whole table gradient of a batch, spread over the batch's distinct tokens; "
        "word-embedding rows of MiniLM have norm ≈ 1, so each token moves far less than under the attack, which "
        "moves every token by ε_att at once (already ε_att = 0.02 costs a plain model tens of points).",
        f"Took {time.perf_counter() - t0:.1f} s.",
    ]
    return Result(
        name="adversarial",
        post=POST,
        claim="FGM on the embedding matrix is to first order the gradient penalty ½ε‖∇_eL‖²; both regularise "
              "fine-tuning about equally and help (CLUE: +2.2/+1.1 points FGM, +2.0/+1.2 gradient penalty), at "
              "about twice the cost per step for FGM.",
        measured=measured,
        verdict=verdict,
        rule=f"does not hold if the equivalence fails (cosine < {COS_MIN} at ε = {EQUIV_EPS[0]:g} or the difference "
             f"shrinks slower than ε^{ORDER_MIN}); not measured with fewer than {MIN_SEEDS} seeds or if plain does "
             f"not beat the majority class by 2 s.e.; else, paired per example and seed (2 s.e., the larger of the "
             f"test-sample and seed s.e.), FGM (post) and the gradient penalty must each beat plain under the attack "
             f"(ε_att = 0.02) and lose at most max({CLEAN_MARGIN * 100:g} point, plain's seed s.d.) of clean accuracy; "
             f"holds if all four parts hold, does not hold if any does not, else inconclusive.",
        kind="empirical",
        post_figure="BERT base, CLUE dev accuracy, plain → FGM / gradient penalty: IFLYTEK 60.29 → 62.46 / 62.31, "
                    "TNEWS 56.58 → 57.66 / 57.81",
        our_figure=our,
        setup=setup_text,
        reason=why,
        tables=tables,
        figures=[("adversarial", _figure(eq, res, keys))],
        numbers=numbers,
        notes=notes,
        skipped=skipped,
        quick=quick,
    )


def _figure(eq: list[EquivalenceRow], res: dict[str, list[dict[str, float]]], keys: list[str]) -> Any:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2 if res else 1, figsize=(10.5 if res else 5.5, 3.8), squeeze=False)
    ax1 = axes[0, 0]
    for scope in ("weight", "output", "mixed"):
        r = [x for x in eq if x["scope"] == scope]
        ax1.loglog([x["epsilon"] for x in r], [x["diff"] for x in r], "o-", label=f"{scope} scope")
    e = np.array(EQUIV_EPS)
    ref = [x["diff"] for x in eq if x["scope"] == "weight"][0]
    ax1.loglog(e, ref * (e / e[0]) ** 2, "k:", label="∝ ε²")
    ax1.set_xlabel("ε")
    ax1.set_ylabel("‖∇ FGM − ∇ penalty‖")
    ax1.set_title("FGM vs its gradient penalty (float64)")
    ax1.legend()
    if not res:
        fig.tight_layout()
        return fig
    ax2 = axes[0, 1]
    width = 0.8 / len(res)
    for i, v in enumerate(res):
        means = [np.mean([r[k] for r in res[v]]) for k in keys]
        stds = [np.std([r[k] for r in res[v]], ddof=1) if len(res[v]) > 1 else 0 for k in keys]
        ax2.bar(np.arange(len(keys)) + i * width, means, width, yerr=stds, label=v, capsize=2)
    ax2.set_xticks(np.arange(len(keys)) + 0.4 - width / 2, keys)
    ax2.set_ylabel("test accuracy")
    ax2.set_ylim(0.4, 1.0)
    ax2.set_title("SST-2: clean and under the embedding attack")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    return fig
