"""Reproduction: MLM and MAE from the dropout viewpoint (kexue.fm/archives/8770, 2021-11-29).

Three empirical parts, each behind a learned guard, decided by :func:`decide` (a pure function of the measurements);
two math/mechanics checks reported beside them.

1. **The expected-embedding correction** E[i] ← 0.865·E[i] + 0.12·E[mask] + 0.015·mean(E). A tiny BERT (2 layers,
   d = 64) is pre-trained with BERT's 15/80/10/10 masking on a synthetic Markov language (vocabulary 200, two chains
   mixed; see :func:`_markov`), then fine-tuned on "which chain generated this sequence" (500 labels) from the same
   checkpoint with and without the correction, the two runs of a seed sharing head initialisation and data order.
   Guard: the held-out MLM loss beats the unigram loss, and the fine-tuned model beats the majority class. The post
   found "no significant change": holds if the paired difference's interval lies inside ±(the noise of one run).
2. **DropToken accuracy.** A 2-layer, d = 64 encoder trained from scratch on a keyword-count classification
   (vocabulary 1,000, length 128, 10 % label noise, 2k train / 2k dev) with drop ratios r; runs of a seed share
   initialisation and data order. Guard: r = 0 beats the majority class. Holds if every r ∈ {0.1, 0.15} is no worse
   than r = 0 (paired, margin = the noise of one run) and r = 0.5 is worse.
3. **DropToken speed.** CPU seconds (``time.process_time``, one thread) of one training step at each r, the ratios
   interleaved on the same batch in each repetition; holds if the speed-up t(r = 0) / t(r = 0.5) exceeds 1.

Verified, not judged: DropToken equals the full sequence with the dropped keys masked in every layer (max |Δ| at the
kept positions < 1e-5), and MAE's weight average Norm(A ⊗ E[M̃]) = A exactly while the model average
E[Norm(A ⊗ M̃)] ≠ A (Monte Carlo).

Quick: 150 pre-training steps, 3 fine-tuning seeds × 2 epochs; DropToken r ∈ {0, 0.1, 0.5}, one seed of 120 steps
(its accuracy part is "not measured in quick mode": one seed has no seed noise); 10 timing repetitions.
Full: 1,000 pre-training steps, 5 seeds × 6 epochs; DropToken r ∈ {0, 0.1, 0.15, 0.25, 0.5}, 5 seeds of 150 steps
(the baseline's best budget, see ``FULL``); 30 timing repetitions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

from ._mlm_dropout_tasks import (
    DROP_BATCH,
    DROP_LR,
    N_DEV,
    N_TRAIN,
    correction_experiment,
    droptoken_experiment,
    mae_monte_carlo,
    time_steps,
)
from .common import pyplot
from .result import Post, Result, Table, Verdict
from .rules import (
    Estimate,
    all_of,
    equivalence,
    estimate,
    learned,
    non_inferiority,
    not_learned_reason,
    paired,
    superiority,
)

POST = Post(title="Dropout视角下的MLM和MAE：一些新的启发",
            gloss="MLM and MAE from the dropout viewpoint: some new insights", date="2021-11-29",
            url="https://kexue.fm/archives/8770")

RATIOS = (0.0, 0.1, 0.15, 0.25, 0.5)
#: The post's recommended ratios, judged "no worse than r = 0".
RECOMMENDED = (0.1, 0.15)
#: Fewest seeds (or timing repetitions) from which a part is judged; fewer gives "not measured".
MIN_SEEDS = 3


class Settings(TypedDict):
    """A mode's sizes: MLM pre-training steps, fine-tuning seeds and epochs and whether to probe (the correction
    experiment); DropToken ratios, seeds and steps; timing repetitions."""

    pretrain: int
    ft_seeds: int
    ft_epochs: int
    probe: bool
    ratios: tuple[float, ...]
    seeds: int
    steps: int
    reps: int


QUICK = Settings(pretrain=150, ft_seeds=3, ft_epochs=2, probe=False, ratios=(0.0, 0.1, 0.5), seeds=1, steps=120,
                 reps=10)
#: DropToken steps: the r = 0 baseline peaks near one epoch (dev accuracy over 3 seeds 0.786 at 150 steps, 0.766 at
#: 250, 0.745 at 400: it then overfits the label noise), so every ratio gets the baseline's best budget.
FULL = Settings(pretrain=1000, ft_seeds=5, ft_epochs=6, probe=True, ratios=RATIOS, seeds=5, steps=150, reps=30)
#: The post's DropToken table (BERT-base, CLUE dev, single runs): mean over IFLYTEK, TNEWS, AFQMC, OCNLI, WSC, CSL.
POST_CLUE_MEAN = {0.0: 70.958, 0.1: 70.760, 0.15: 70.737, 0.25: 70.108, 0.5: 68.480}


# -- the rule -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measurements:
    """What :func:`decide` judges. Accuracies are per seed, in the same seed order for every arm (paired);
    ``step_seconds`` per timing repetition, in the same order for every ratio (paired)."""

    mlm_loss: float  # held-out MLM cross-entropy at the masked positions (nats)
    mlm_loss_se: float  # its standard error over those positions
    unigram_loss: float  # the unigram model's cross-entropy at the same positions
    plain: Sequence[float]  # fine-tuned dev accuracy, no correction
    corrected: Sequence[float]  # the same seeds, with the correction
    chain_dev: int
    chain_majority: float
    accuracy: Mapping[float, Sequence[float]]  # DropToken dev accuracy per ratio
    drop_dev: int
    drop_majority: float
    step_seconds: Mapping[float, Sequence[float]]  # CPU seconds of one training step per ratio


@dataclass(frozen=True)
class Judgement:
    """The entry's verdict and reason, and each part's (verdict, reason)."""

    verdict: Verdict
    reason: str
    parts: dict[str, tuple[Verdict, str]] = field(default_factory=dict)


def run_noise(accs: Sequence[float], n_dev: int) -> float:
    """The noise of one run's accuracy: the larger of the seed standard deviation and the binomial standard error
    √(p(1−p)/n) of an accuracy on ``n_dev`` examples. The equivalence margin of 'no (significant) change'."""
    e = estimate(accs)
    sd = e.se * math.sqrt(e.n) if e.n >= 2 else 0.0
    return max(sd, math.sqrt(max(e.mean * (1 - e.mean), 0.0) / n_dev))


def _beats_majority(accs: Sequence[float], majority: float, n_dev: int) -> bool:
    e = estimate(accs)
    return learned(Estimate(e.mean, run_noise(accs, n_dev), e.n), majority)


def _correction(m: Measurements) -> tuple[Verdict, str]:
    mlm = Estimate(m.mlm_loss, m.mlm_loss_se, 2)  # the s.e. over masked positions is given; n is not used
    if not learned(mlm, m.unigram_loss, higher_is_better=False):
        return "not measured", not_learned_reason("held-out MLM loss", m.mlm_loss, m.unigram_loss, "unigram loss")
    if not _beats_majority(m.plain, m.chain_majority, m.chain_dev):
        return "not measured", not_learned_reason("fine-tuned accuracy", estimate(m.plain).mean, m.chain_majority,
                                                  "majority class")
    if len(m.plain) < MIN_SEEDS:
        return "not measured", f"{len(m.plain)} fine-tuning seed(s); the rule needs {MIN_SEEDS}"
    effect, margin = paired(m.corrected, m.plain), run_noise(m.plain, m.chain_dev)
    d = equivalence(effect, margin)
    return d, f"Δacc {effect} against the margin ±{margin:.3g} (one run's noise)"


def _droptoken_accuracy(m: Measurements) -> tuple[Verdict, str]:
    base = m.accuracy.get(0.0, [])
    if not base or not _beats_majority(base, m.drop_majority, m.drop_dev):
        return "not measured", not_learned_reason("r = 0 dev accuracy", estimate(base).mean, m.drop_majority,
                                                  "majority class")
    if len(base) < MIN_SEEDS:
        return "not measured", (f"not measured in quick mode: {len(base)} seed(s) give no seed noise; the rule needs "
                                f"{MIN_SEEDS}")
    margin = run_noise(base, m.drop_dev)
    parts, words = [], []
    for r in RECOMMENDED:
        if r in m.accuracy:
            effect = paired(m.accuracy[r], base)
            parts.append(non_inferiority(effect, margin))
            words.append(f"r = {r:g} − r = 0: {effect} ({parts[-1]})")
    if 0.5 in m.accuracy:
        effect = paired(base, m.accuracy[0.5])
        parts.append(superiority(effect))
        words.append(f"r = 0 − r = 0.5: {effect} ({parts[-1]})")
    if not parts:
        return "not measured", "no DropToken ratio besides r = 0 was run"
    return all_of(*parts), "; ".join(words) + f"; margin {margin:.3g} (one run's noise)"


def _speed(m: Measurements) -> tuple[Verdict, str]:
    t0, t5 = m.step_seconds.get(0.0, []), m.step_seconds.get(0.5, [])
    if min(len(t0), len(t5)) < MIN_SEEDS:
        return "not measured", f"fewer than {MIN_SEEDS} paired timings of r = 0 and r = 0.5"
    effect = estimate(math.log(a / b) for a, b in zip(t0, t5))
    lo, hi = math.exp(effect.lower()), math.exp(effect.upper())
    return superiority(effect), f"speed-up t(r = 0)/t(r = 0.5) ×{math.exp(effect.mean):.3g} [{lo:.3g}, {hi:.3g}]"


def decide(m: Measurements) -> Judgement:
    """Each part's verdict (the guards first), then the entry's: ``not measured`` if no part was measured, else
    ``does not hold`` if any part does not hold, ``holds`` if every part holds, otherwise ``inconclusive`` (a part
    not measured counts as inconclusive)."""
    parts = {"embedding correction": _correction(m), "DropToken accuracy": _droptoken_accuracy(m),
             "DropToken speed": _speed(m)}
    verdicts = [v for v, _ in parts.values()]
    reason = "; ".join(f"{k}: {v} ({why})" for k, (v, why) in parts.items())
    if all(v == "not measured" for v in verdicts):
        return Judgement("not measured", reason, parts)
    return Judgement(all_of(*(("inconclusive" if v == "not measured" else v) for v in verdicts)), reason, parts)


# -- the reproduction ---------------------------------------------------------------------------------------------


def _speedup(secs: Mapping[float, Sequence[float]], r: float) -> Estimate:
    """log(t(r = 0) / t(r)) over paired repetitions."""
    return estimate(math.log(a / b) for a, b in zip(secs[0.0], secs[r]))


def _points(e: Estimate) -> str:
    """An accuracy difference in percentage points, with its standard error where there is one."""
    return f"{100 * e.mean:+.3g} ± {100 * e.se:.2g}" if math.isfinite(e.se) else f"{100 * e.mean:+.3g}"


def _figure(corr: dict[str, Any], drop: dict[str, Any], secs: dict[float, list[float]]) -> Any:
    plt = pyplot()
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(13, 3.6))
    ax1.plot(corr["curve"], lw=0.8)
    ax1.axhline(corr["mlm"]["unigram"], color="k", ls="--", lw=0.8, label="unigram loss (held out)")
    ax1.set(title=f"MLM pre-training loss ({corr['steps']} steps)", xlabel="step")
    ax1.legend()
    for a, b in zip(corr["acc"]["plain"], corr["acc"]["corrected"]):
        ax2.plot(["plain", "corrected"], [a, b], marker="o", color="C0", alpha=0.6)
    ax2.set(title="fine-tuned dev accuracy, paired by seed")
    ratios = list(drop["acc"])
    ests = [estimate(drop["acc"][r]) for r in ratios]
    ax3.errorbar(ratios, [e.mean for e in ests], yerr=[e.se if e.se == e.se else 0 for e in ests], marker="o")
    ax3.axhline(drop["majority"], color="k", ls="--", lw=0.8)
    ax3b = ax3.twinx()
    ax3b.plot(ratios, [math.exp(_speedup(secs, r).mean) for r in ratios], marker="s", color="C3")
    ax3.set(xlabel="DropToken ratio r", title="DropToken: dev accuracy (blue), speed-up (red)")
    ax3.set_ylabel("dev accuracy", color="C0")
    ax3b.set_ylabel("CPU speed-up vs r = 0", color="C3")
    fig.tight_layout()
    return fig


def run(quick: bool = True) -> Result:
    cfg = QUICK if quick else FULL
    corr = correction_experiment(cfg)
    drop = droptoken_experiment(cfg)
    secs = time_steps(cfg["ratios"], cfg["reps"])
    mae = mae_monte_carlo(samples=50_000 if quick else 200_000)
    meas = Measurements(corr["mlm"]["loss"], corr["mlm"]["se"], corr["mlm"]["unigram"], corr["acc"]["plain"],
                        corr["acc"]["corrected"], corr["n_dev"], corr["majority"], drop["acc"], drop["n_dev"],
                        drop["majority"], secs)
    judged = decide(meas)
    equiv_ok = drop["equivalence_max_abs"] < 1e-5
    mae_ok = mae["weight_average_gap"] < 1e-12 and mae["model_average_gap"] > 10 * mae["mc_std_error"]

    d_corr = paired(corr["acc"]["corrected"], corr["acc"]["plain"])
    d_acc = {r: paired(drop["acc"][r], drop["acc"][0.0]) for r in cfg["ratios"]}
    speed = {r: _speedup(secs, r) for r in cfg["ratios"]}
    up = math.exp(speed[0.5].mean)
    ours_acc = ", ".join(f"r = {r:g} {_points(d_acc[r])}" for r in cfg["ratios"][1:]) + " points"
    post_acc = ", ".join(f"r = {r:g} {POST_CLUE_MEAN[r] - POST_CLUE_MEAN[0.0]:+.3g}" for r in RATIOS[1:]) + " points"
    our_figure = (f"correction Δacc {_points(d_corr)} points; DropToken vs r = 0: {ours_acc}; speed-up at r = 0.5 "
                  f"×{up:.3g} ± {up * speed[0.5].se:.2g} (tokens per CPU second)")
    post_figure = ("correction: 'no significant change' on CLUE (no figure); DropToken vs r = 0, mean of 6 CLUE dev "
                   f"tasks (BERT-base, single runs): {post_acc}; speed: no figure")
    parts = judged.parts
    rows = [["embedding correction: no significant change", "empirical", "no figure in the post",
             f"Δacc {_points(d_corr)} points", parts["embedding correction"][0]],
            ["DropToken: r ∈ {0.1, 0.15} no worse than r = 0, r = 0.5 worse", "empirical",
             f"{post_acc} (CLUE mean)", ours_acc, parts["DropToken accuracy"][0]],
            ["DropToken is faster (r = 0.5 against r = 0)", "empirical", "no figure in the post",
             f"×{up:.3g} tokens per CPU second", parts["DropToken speed"][0]],
            ["DropToken = dropped keys masked in every layer", "mechanics", "exact (the post's argument)",
             f"max |Δ| = {drop['equivalence_max_abs']:.2g}", "verified" if equiv_ok else "not verified"],
            ["MAE: weight average = original model, model average ≠", "math", "exact (the post's argument)",
             f"{mae['weight_average_gap']:.2g} vs {mae['model_average_gap']:.3g}",
             "verified" if mae_ok else "not verified"]]
    corr_rows = [[s, a, b, b - a] for s, (a, b) in enumerate(zip(corr["acc"]["plain"], corr["acc"]["corrected"]))]
    drop_rows = []
    for r in cfg["ratios"]:
        e, t = estimate(drop["acc"][r]), estimate(secs[r])  # timing batches are 32 × 128 tokens
        drop_rows.append([r, e.mean, e.se, 100 * d_acc[r].mean, 100 * d_acc[r].se,
                          POST_CLUE_MEAN[r] - POST_CLUE_MEAN[0.0], t.mean, 32 * 128 / t.mean, math.exp(speed[r].mean),
                          speed[r].se])
    notes = [
        f"MLM pre-training: held-out loss {corr['mlm']['loss']:.3f} ± {corr['mlm']['se']:.2g} nats against the "
        f"unigram loss {corr['mlm']['unigram']:.3f} at the same masked positions.",
        f"Correction applied once after pre-training to the token embeddings only, [PAD]/[MASK]/[CLS]/[SEP] excluded "
        f"(never masked); mean relative change of a row ‖ΔE_i‖/‖E_i‖ = {corr['rel_change']:.3f}. The random 10 % "
        "draws uniformly over the vocabulary, so the mean is the plain mean of all rows (the post's formula).",
        f"Fine-tuning: mean pooling + linear head, Adam 5e-4, {corr['epochs']} epochs on 500 labels, dev 1,000 "
        f"(majority {corr['majority']:.3f})."
        + (f" Frozen-feature logistic probe (no seed): plain {corr['probe']['plain']:.3f}, corrected "
           f"{corr['probe']['corrected']:.3f}." if corr["probe"] else ""),
        f"DropToken: {N_TRAIN} training examples, {cfg['steps']} Adam steps of {DROP_BATCH} (lr {DROP_LR:g}, 10 % "
        f"warm-up, linear decay), {cfg['seeds']} seed(s), from scratch; dev {N_DEV} (majority "
        f"{drop['majority']:.3f}); [CLS]/[SEP] protected; survivors keep their position ids. About one epoch is the "
        "r = 0 baseline's best budget (longer, it overfits the 10 % label noise: 0.745 at 400 steps). The answer "
        "depends on that regime: a full run with 3 seeds of 400 steps (earlier in this change) gave r − r = 0 of "
        "−0.03 ± 0.57 (r = 0.1), −0.48 ± 0.42 (0.15) and −1.75 ± 1.07 points (0.5), all inconclusive; DropToken costs "
        "accuracy when the baseline is not yet overfitting and little once it is.",
        f"Speed: CPU seconds of one training step (batch 32 × 128 tokens, one thread), {cfg['reps']} repetitions with "
        "the ratios interleaved on the same batch; the speed-up is exp of the mean paired log ratio, its s.e. by the "
        "delta method. CPU time on a shared 2-core machine still varies with the neighbours' load (caches).",
        "The post's setting (BERT-base and RoBERTa fine-tuned on CLUE) cannot be reached here: no offline Chinese "
        "model, CPU only; both mechanisms are measured on synthetic stand-ins.",
    ]
    return Result(
        name="mlm_dropout", post=POST, kind="empirical",
        claim="MLM is dropout on the input, so the weight-average correction E[i] ← 0.865·E[i] + 0.12·E[mask] + "
              "0.015·mean(E) should remove the pretrain/fine-tune mismatch, yet on CLUE it gave no significant "
              "change; DropToken (drop tokens, keep positions) at r = 0.1–0.15 is as good as no dropping, r = 0.5 "
              "hurts, and dropping makes training faster.",
        measured=f"{judged.reason}; DropToken = masked keys {'verified' if equiv_ok else 'not verified'}, MAE weight "
                 f"average {'verified' if mae_ok else 'not verified'}",
        verdict=judged.verdict,
        rule="guards first: MLM held-out loss below the unigram loss by 2 s.e., and every judged baseline above the "
             "majority class by 2 × one run's noise (else not measured); each part needs ≥ 3 seeds (timings). "
             "Correction: paired Δacc ± 2 s.e. inside ±(one run's noise: max of seed s.d. and binomial s.e.) → "
             "holds, wholly outside → does not hold. DropToken accuracy: r = 0.1 and 0.15 non-inferior to r = 0 "
             "with that margin and r = 0 − r = 0.5 above 0 (paired, 2 s.e.). Speed: mean log(t(0)/t(0.5)) above 0 "
             "by 2 s.e. → holds, below 0 → does not hold. Entry: all parts hold → holds; any does not hold → does "
             "not hold; else inconclusive (not measured if no part was).",
        post_figure=post_figure, our_figure=our_figure,
        setup=(f"Correction: Markov language (vocabulary 200, length 32), 2-layer d = 64 BERT, {cfg['pretrain']} MLM "
               f"steps, {cfg['ft_seeds']} fine-tuning seeds × {cfg['ft_epochs']} epochs on 500 labels. DropToken: "
               f"keyword task (vocabulary 1,000, length 128, 2k/2k), 2-layer d = 64 from scratch, r ∈ "
               f"{{{', '.join(f'{r:g}' for r in cfg['ratios'])}}}, {cfg['seeds']} seed(s) × {cfg['steps']} steps; "
               f"{cfg['reps']} interleaved step timings on one thread."),
        reason=judged.reason,
        tables=[Table("Parts of the claim", ["part", "kind", "post's figure", "our figure", "verdict"], rows),
                Table("Embedding correction: fine-tuned dev accuracy per seed", ["seed", "plain", "corrected", "Δ"],
                      corr_rows),
                Table("DropToken: dev accuracy (mean, s.e. over seeds), paired Δ vs r = 0 in points, the post's CLUE "
                      "mean Δ, CPU time per step and speed-up",
                      ["r", "acc", "s.e.", "Δ pts", "s.e.", "post Δ pts", "CPU s/step", "tokens/CPU s", "speed-up",
                       "s.e. (log)"], drop_rows)],
        figures=[("mlm_dropout", _figure(corr, drop, secs))],
        numbers={"correction": {k: v for k, v in corr.items() if k != "curve"},
                 "droptoken": {"acc": {str(r): v for r, v in drop["acc"].items()}, "majority": drop["majority"],
                               "equivalence_max_abs": drop["equivalence_max_abs"]},
                 "step_seconds": {str(r): v for r, v in secs.items()}, "mae": mae,
                 "parts": {k: {"verdict": v, "reason": why} for k, (v, why) in parts.items()}},
        notes=notes, quick=quick)
