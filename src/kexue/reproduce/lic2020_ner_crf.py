"""Reproduction: the BIO + CRF baseline of LIC2020 and its transition learning-rate multiplier (kexue.fm/archives/7321).

The post's event-extraction baseline tags (event_type, role) arguments with BIO labels (O = 0, B = 2ℓ + 1, I = 2ℓ + 2)
by RoBERTa-base + Dense + CRF, the CRF's transitions at 100 × the fine-tuning lr (2e-5 → 2e-3). The spec's pitfall:
at a fine-tuning lr the transitions barely move without the multiplier (under Adam a parameter moves about lr per
step, while a Dense layer's output moves by lr times the ℓ1 norm of its input). No Chinese data or model here, so:

* **CoNLL-2003** English NER (4 types, 9 tags), words tagged at their first word piece; and in full mode **PHEE**
  (the closest English analogue of DuEE): flat BIO over (event_type, role) of its main arguments Subject, Treatment,
  Effect under its two event types (6 pairs, 13 tags), every word piece tagged.
* all-MiniLM-L6-v2 (uncased): embeddings and the lower blocks frozen (their output cached once,
  :mod:`kexue.reproduce._lic2020_common`), the top blocks fine-tuned with Dense(num_labels) and either a per-unit
  softmax, a CRF with the transitions at lr (×1), or at 100·lr (×100, the post's setting); the three variants of a
  seed share the Dense/CRF initialisation, the dropout and the batch order (paired).
* entity F1 = exact span match (conlleval/seqeval default mode), computed in :mod:`kexue.reproduce._ner_tagging`;
  the CRF decodes by plain Viterbi as the script does (BIO-constrained decoding is reported beside it); for PHEE
  also the post's soft LCS metric.

Rule (:func:`decide`), per data set: the learned guard (the softmax tagger's F1 above the majority-tag-per-word
baseline by 2 s.e. over seeds, else that set is ``not measured``; all-O scores 0); then (a) the CRF (×100) is
competitive with the softmax: F1 paired over seeds, non-inferiority with the margin max(softmax's seed s.d., the
test set's bootstrap s.e. of one run's F1); (b) without the multiplier the transitions barely move:
log(‖W_T − W_0‖ / ‖W_0‖) < 0 over seeds (the change stays below the random initialisation's own size), by
superiority; (c) the control: with ×100 they do move, log(‖ΔW‖ / ‖W_0‖) > 0. The verdict is all of (a)–(c) over the
measured sets. Whether F1 suffers without the multiplier (×100 − ×1, paired) is reported with its decision, not judged.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..data import MissingData, load_conll2003, load_phee
from ..nn import bio_transition_mask
from ._lic2020_common import bottom_states
from ._minilm import model_and_tokenizer
from ._ner_tagging import (
    CONLL_TYPES,
    Example,
    PheeCounts,
    bootstrap_se,
    conll_examples,
    entity_f1,
    majority_baseline,
    phee_examples,
    phee_scheme,
    predict,
    soft_event_f1,
    train,
)
from .common import pyplot
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
    title="bert4keras在手，baseline我有：百度LIC2020",
    gloss="With bert4keras in hand, baselines are easy: Baidu LIC2020",
    date="2020-04-02",
    url="https://kexue.fm/archives/7321",
)
#: One worker runs the three LIC2020 entries, so MiniLM is loaded once (kexue.reproduce._minilm caches it).
GROUP = "lic2020"

VARIANTS = ("softmax", "crf ×1", "crf ×100")
MULTIPLIER: dict[str, float | None] = {"softmax": None, "crf ×1": 1.0, "crf ×100": 100.0}
#: The post's schedule: DuEE's 11,958 training sentences, batch 32, 20 epochs at a constant 2e-5.
POST_LR, POST_STEPS = 2e-5, 20 * math.ceil(11958 / 32)


@dataclass(frozen=True)
class Setting:
    n_train: int
    n_test: int
    n_top: int  # fine-tuned top blocks of MiniLM's 6
    epochs: int
    batch: int
    lr: float
    seeds: int
    max_length: int


QUICK = {"CoNLL-2003": Setting(384, 250, 1, 1, 12, 1e-3, 3, 128)}
FULL = {"CoNLL-2003": Setting(1600, 800, 1, 2, 16, 1e-3, 3, 128),
        "PHEE": Setting(960, 500, 1, 2, 16, 1e-3, 3, 128)}


@dataclass
class SetMeasurements:
    """One data set's measurements: test F1 per variant and seed, the test set's bootstrap s.e. of one softmax
    run's F1, the majority-tag baseline's F1, and per seed the CRFs' transition change ‖W_T − W_0‖_F and
    ‖W_0‖_F (one initialisation per seed, shared by ×1 and ×100)."""

    f1: dict[str, list[float]]
    test_se: float
    baseline: float
    change: dict[str, list[float]]
    init_norm: list[float]
    extra: dict[str, Any] = field(default_factory=dict)


#: One judged or reported comparison: (data set, what, estimate, decision, part of the verdict).
Part = tuple[str, str, Estimate, Decision, bool]


def _log_ratio(num: list[float], den: list[float]) -> Estimate:
    return estimate(math.log(max(a, 1e-30) / b) for a, b in zip(num, den, strict=True))


def decide(sets: Mapping[str, SetMeasurements]) -> tuple[Verdict, str, list[Part]]:
    """The verdict, its reason and the comparisons (module docstring: the rule)."""
    parts: list[Part] = []
    skipped = []
    for name, m in sets.items():
        soft = estimate(m.f1["softmax"])
        if soft.n < 2:
            skipped.append(f"{name}: {soft.n} seed(s), the rule needs 2")
            continue
        if not learned(soft, m.baseline):
            skipped.append(f"{name}: " + not_learned_reason("the softmax tagger's entity F1", soft.mean, m.baseline,
                                                            "majority-tag-per-word baseline"))
            continue
        margin = max(float(np.std(m.f1["softmax"], ddof=1)), m.test_se)
        comp = paired(m.f1["crf ×100"], m.f1["softmax"])
        parts.append((name, f"F1 CRF ×100 − softmax (margin {margin:.3g})", comp, non_inferiority(comp, margin),
                      True))
        still = _log_ratio(m.change["crf ×1"], m.init_norm)
        parts.append((name, "log(‖ΔW‖/‖W₀‖), ×1 (< 0: barely moves)", still,
                      superiority(Estimate(-still.mean, still.se, still.n)), True))
        moved = _log_ratio(m.change["crf ×100"], m.init_norm)
        parts.append((name, "log(‖ΔW‖/‖W₀‖), ×100 (> 0: moves)", moved, superiority(moved), True))
        worse = paired(m.f1["crf ×100"], m.f1["crf ×1"])
        parts.append((name, "F1 CRF ×100 − CRF ×1 (> 0: F1 suffers without; reported)", worse, superiority(worse),
                      False))
    words = "; ".join(f"{d}: {w} = {e.mean:+.3g} ± {e.se:.2g} ({v})" for d, w, e, v, _ in parts)
    why = "; ".join(skipped)
    if not parts:
        return "not measured", why or "no data set was measured", parts
    verdict = all_of(*(v for *_, v, judged in parts if judged))
    return verdict, words + (f"; not measured: {why}" if why else ""), parts


def _subsample(items: list[Any], n: int, seed: int = 0) -> list[Any]:
    return random.Random(seed).sample(items, min(n, len(items)))


def _measure(name: str, s: Setting, train_ex: list[Example], test_ex: list[Example], base: list[Any],
             num_types: int, seeds: int) -> tuple[SetMeasurements, dict[str, Any]]:
    model, _ = model_and_tokenizer()
    t0 = time.process_time()
    frozen = 6 - s.n_top
    st_tr = bottom_states(model, [e.ids for e in train_ex], frozen)
    st_te = bottom_states(model, [e.ids for e in test_ex], frozen)
    gold = [e.gold for e in test_ex]
    f1: dict[str, list[float]] = {v: [] for v in VARIANTS}
    change: dict[str, list[float]] = {"crf ×1": [], "crf ×100": []}
    init: list[float] = []
    details: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    allowed = bio_transition_mask(num_types).allowed
    scheme = phee_scheme() if name == "PHEE" else None
    test_se = math.nan
    for seed in range(seeds):
        for v in VARIANTS:
            out = train(model, s.n_top, 2 * num_types + 1, MULTIPLIER[v], st_tr, train_ex, seed=seed,
                        epochs=s.epochs, batch=s.batch, lr=s.lr)
            decoded = predict(out.tagger, st_te, test_ex, num_types)
            pred = decoded.spans
            score = entity_f1(pred, gold)
            f1[v].append(score.f1)
            d: dict[str, Any] = {"f1": score.f1, "precision": score.precision, "recall": score.recall,
                                 "loss_last": float(np.mean(out.losses[-10:]))}
            if v == "softmax" and seed == 0:
                test_se = bootstrap_se(pred, gold)
            crf = out.tagger.crf
            if crf is not None and out.transitions0 is not None and decoded.constrained is not None:
                w = crf.transitions.detach()
                d["constrained_f1"] = entity_f1(decoded.constrained, gold).f1
                change[v].append(float((w - out.transitions0).norm()))
                d["structure"] = float(w[allowed].mean() - w[~allowed].mean())
                d["transitions"] = w.tolist()
                if v == "crf ×1":
                    init.append(float(out.transitions0.norm()))
            if scheme is not None:
                d["soft_f1"] = soft_event_f1(test_ex, pred, scheme)
            details[v].append(d)
    base_f1 = entity_f1(base, gold).f1
    m = SetMeasurements(f1, test_se, base_f1, change, init)
    info = {"details": details, "cpu_s": time.process_time() - t0, "steps": s.epochs * math.ceil(len(train_ex) /
            s.batch), "n_gold": sum(map(len, gold)), "n_train_spans": sum(len(e.gold) for e in train_ex)}
    if scheme is not None:
        info["baseline_soft_f1"] = soft_event_f1(test_ex, base, scheme)
    return m, info


def _conll(s: Setting) -> tuple[list[Example], list[Example], list[Any]]:
    tr = _subsample(load_conll2003("train"), s.n_train)  # the data first: a missing set is `not run` at once
    te = _subsample(load_conll2003("test"), s.n_test)
    _, tok = model_and_tokenizer()
    ex_tr, ex_te = conll_examples(tr, tok, s.max_length), conll_examples(te, tok, s.max_length)
    base = majority_baseline([x.tokens for x in tr], [e.tags for e in ex_tr], [x.tokens for x in te])
    return ex_tr, ex_te, base


def _phee(s: Setting) -> tuple[list[Example], list[Example], list[Any], tuple[PheeCounts, PheeCounts]]:
    tr = _subsample(load_phee("train"), s.n_train)
    te = _subsample(load_phee("test"), s.n_test)
    _, tok = model_and_tokenizer()
    (ex_tr, c_tr), (ex_te, c_te) = phee_examples(tr, tok, s.max_length), phee_examples(te, tok, s.max_length)
    base = majority_baseline([[e.ids[p] for p in e.units] for e in ex_tr], [e.tags for e in ex_tr],
                             [[e.ids[p] for p in e.units] for e in ex_te])
    return ex_tr, ex_te, base, (c_tr, c_te)


def _pm(values: list[float]) -> str:
    e = estimate(values)
    return f"{e.mean:.3f} ± {e.se:.2g}" if e.n > 1 else f"{e.mean:.3f}"


def _figure(sets: Mapping[str, SetMeasurements], infos: Mapping[str, dict[str, Any]]) -> Any:
    plt = pyplot()
    first = next(iter(infos))
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    width = 0.8 / len(sets)
    for k, (name, m) in enumerate(sets.items()):
        es = [estimate(m.f1[v]) for v in VARIANTS]
        axes[0].bar([i + k * width for i in range(len(VARIANTS))], [e.mean for e in es], width,
                    yerr=[2 * e.se if e.n > 1 else 0 for e in es], capsize=3, label=f"{name} (majority "
                    f"{m.baseline:.2f})")
    axes[0].set_xticks([i + width * (len(sets) - 1) / 2 for i in range(len(VARIANTS))], list(VARIANTS))
    axes[0].set_ylabel("test entity F1 (± 2 s.e.)")
    axes[0].legend(fontsize=7)
    ws = {v: np.array(infos[first]["details"][v][0]["transitions"]) for v in ("crf ×1", "crf ×100")}
    lim = max(max(float(np.abs(w).max()) for w in ws.values()), 1e-6)
    names = ["O", *(f"{p}-{t}" for t in CONLL_TYPES for p in "BI")] if first == "CoNLL-2003" else None
    for ax, (v, w) in zip(axes[1:], ws.items(), strict=True):
        im = ax.imshow(w, cmap="coolwarm", vmin=-lim, vmax=lim)
        ax.set_title(f"{first}, {v}: learned transitions\n(seed 0, one colour scale)", fontsize=9)
        if names is not None:
            ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
            ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set_xlabel("to tag")
        ax.set_ylabel("from tag")
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def run(quick: bool = True) -> Result:
    settings = QUICK if quick else FULL
    sets: dict[str, SetMeasurements] = {}
    infos: dict[str, dict[str, Any]] = {}
    skipped: list[str] = []
    notes: list[str] = []
    for name, s in settings.items():
        if name == "CoNLL-2003":  # a missing CoNLL folder is the whole entry's `not run`
            ex_tr, ex_te, base = _conll(s)
            num_types = len(CONLL_TYPES)
        else:
            try:
                ex_tr, ex_te, base, counts = _phee(s)
            except MissingData as e:
                skipped.append(f"the PHEE part: {e}")
                continue
            num_types = len(phee_scheme().pairs)
            notes.append(f"PHEE flat BIO (train / test subsets): {counts[0].mentions} / {counts[1].mentions} main-"
                         f"argument mentions; discontinuous, dropped: {counts[0].discontinuous} / "
                         f"{counts[1].discontinuous}; overlapping an earlier one, untagged in training and kept in "
                         f"gold (a miss for every model): {counts[0].overlapping} / {counts[1].overlapping}; cut by "
                         f"truncation: {counts[0].truncated} / {counts[1].truncated}.")
        sets[name], infos[name] = _measure(name, s, ex_tr, ex_te, base, num_types, s.seeds)
        infos[name]["setting"] = s
    verdict, reason, parts = decide(sets)

    tables = []
    for name, m in sets.items():
        info, s = infos[name], infos[name]["setting"]
        rows = []
        for v in VARIANTS:
            det = info["details"][v]
            rows.append([v, _pm(m.f1[v]), ", ".join(f"{x:.3f}" for x in m.f1[v]),
                         _pm([d["precision"] for d in det]), _pm([d["recall"] for d in det]),
                         _pm([d["constrained_f1"] for d in det]) if "constrained_f1" in det[0] else "—",
                         _pm(m.change[v]) if v in m.change else "—",
                         _pm([d["structure"] for d in det]) if "structure" in det[0] else "—",
                         _pm([d["soft_f1"] for d in det]) if "soft_f1" in det[0] else "—"])
        rows.append(["majority tag per word" if name == "CoNLL-2003" else "majority tag per word piece",
                     f"{m.baseline:.3f}", "", "", "", "", "", "", f"{info.get('baseline_soft_f1', math.nan):.3f}"
                     if name == "PHEE" else "—"])
        rows.append(["all O", "0.000", "", "", "", "", "", "", "—"])
        tables.append(Table(
            f"{name}: test entity F1 over {s.seeds} seeds (mean ± s.e.; {s.n_train} train / {s.n_test} test "
            f"sentences, {info['n_gold']} gold spans; {info['steps']} steps; ‖W₀‖ = {_pm(m.init_norm)}; one softmax "
            f"run's bootstrap s.e. {m.test_se:.3f})",
            ["tagger", "F1", "F1 per seed", "precision", "recall", "F1, BIO-constrained Viterbi", "‖W_T − W₀‖_F",
             "transitions: legal − illegal mean", "soft F1 (the post's LCS metric)"], rows))
    tables.insert(0, Table("Parts of the claim", ["data set", "comparison", "estimate (mean ± s.e. over seeds)",
                                                  "decision", "in the verdict"],
                           [[d, w, f"{e.mean:+.4f} ± {e.se:.2g}", v, "yes" if j else "reported"]
                            for d, w, e, v, j in parts]))
    ours = {n: estimate(m.f1["crf ×100"]).mean for n, m in sets.items()}
    tables.append(Table("The post's figures beside ours (not comparable: see the notes)",
                        ["what", "data, model", "F1"],
                        [["LIC2020 event extraction, BIO + CRF ×100 (script comment, first-stage test, soft LCS "
                          "F1)", "DuEE (Chinese, 65 event types), RoBERTa-wwm-ext base, 20 epochs", "0.78"],
                         ["the same, the script's first version (×1000, lr 1e-5)", "DuEE, Google BERT-base Chinese",
                          "0.73"],
                         ["bert4keras NER example with a CRF (test)", "People's Daily (Chinese), BERT base", "0.954"],
                         *[["ours: CRF ×100, exact span F1", f"{n} subset, MiniLM-L6 top block fine-tuned",
                            f"{f:.3f}"] for n, f in ours.items()],
                         *[["ours: CRF ×100, soft LCS F1", "PHEE subset, MiniLM-L6",
                            _pm([d["soft_f1"] for d in infos["PHEE"]["details"]["crf ×100"]])]
                           for _ in ["PHEE"] if "PHEE" in sets]]))
    first = next(iter(sets))
    s0 = infos[first]["setting"]
    measured = "; ".join(
        f"{n}: F1 softmax {_pm(m.f1['softmax'])}, CRF ×1 {_pm(m.f1['crf ×1'])}, CRF ×100 {_pm(m.f1['crf ×100'])} "
        f"(majority {m.baseline:.3f}); ‖ΔW‖ ×1 {_pm(m.change['crf ×1'])}, ×100 {_pm(m.change['crf ×100'])} "
        f"against ‖W₀‖ {_pm(m.init_norm)}" for n, m in sets.items())
    cpu = {n: round(i["cpu_s"], 1) for n, i in infos.items()}
    return Result(
        name="lic2020_ner_crf", post=POST, kind="empirical", verdict=verdict, reason=reason,
        claim="The BIO + CRF tagger (Dense + CRF on a pretrained encoder, transitions at 100 × the fine-tuning lr) "
              "is a competitive extraction baseline; without the ×100 multiplier the transition matrix barely moves "
              "at a fine-tuning lr.",
        measured=measured,
        rule="per data set: guard, the softmax tagger's F1 above the majority-tag baseline by 2 s.e. over seeds "
             "(else that set is not measured; all-O scores 0); (a) CRF ×100 − softmax F1, paired over seeds, "
             "non-inferior with margin max(softmax's seed s.d., one run's bootstrap s.e. over test sentences); "
             "(b) without the multiplier log(‖W_T − W₀‖/‖W₀‖) < 0 by 2 s.e. (the transitions move less than "
             "their random initialisation's size); (c) with ×100 it is > 0. Holds if (a)–(c) hold on every "
             "measured set; does not hold if any does not; else inconclusive. CRF ×100 − CRF ×1 F1 is reported "
             "with its decision, not judged.",
        post_figure="no figure in the post; the script's comment: DuEE event F1 0.78 (RoBERTa-base), 0.73 (first "
                    "BERT version); bert4keras People's Daily NER + CRF test F1 0.954",
        our_figure="; ".join(f"{n} CRF ×100 F1 {f:.3f}" for n, f in ours.items()),
        setup="; ".join(
            f"{n}: {s.n_train} train / {s.n_test} test sentences (random, seed 0), all-MiniLM-L6-v2 with the "
            f"lower {6 - s.n_top} blocks frozen (cached) and the top {s.n_top} fine-tuned + Dense, AdamW lr "
            f"{s.lr:g} (warm-up 10 %, linear decay, weight decay 0.01), CRF transitions at lr × 1 or × 100, batch "
            f"{s.batch}, {s.epochs} epoch(s), max {s.max_length} word pieces, seeds 0–{s.seeds - 1}; CPU "
            f"{cpu[n]} s" for n, s in ((n, infos[n]["setting"]) for n in sets)),
        tables=tables,
        figures=[("lic2020_ner_crf", _figure(sets, infos))],
        numbers={"sets": {n: {"f1": m.f1, "test_se": m.test_se, "baseline": m.baseline, "change": m.change,
                              "init_norm": m.init_norm, "cpu_s": infos[n]["cpu_s"],
                              "details": {v: [{k: x for k, x in d.items() if k != "transitions"} for d in ds]
                                          for v, ds in infos[n]["details"].items()}} for n, m in sets.items()}},
        notes=[*notes,
               "Tagging units: CoNLL-2003's words at their first word piece (the CRF's mask skips [CLS], [SEP], the "
               "other pieces and padding, so the chain runs over words); PHEE's word pieces, all of them (B on the "
               "first piece of an argument, I on the rest). The CRF has transitions only (bert4keras's form, no "
               "start/end scores) and decodes by plain Viterbi as the script does.",
               f"Under Adam a parameter moves about lr per step, so the transitions of the ×1 CRF can move at most "
               f"about lr × steps per entry: here {s0.lr:g} × {infos[first]['steps']} = "
               f"{s0.lr * infos[first]['steps']:.3g} on {first}; the post's schedule gives {POST_LR:g} × "
               f"{POST_STEPS} = {POST_LR * POST_STEPS:.2g}. Our lr is 50 × the post's because the budget allows "
               "a few hundred steps, not thousands; the ratio between the transitions' lr and the rest is the "
               "post's.",
               "The CRF's lead over the softmax is measured after a few hundred steps with one block fine-tuned, "
               "where the per-unit softmax fragments long spans (its precision is the lower one); these runs do not "
               "say how the gap behaves when the whole encoder is trained to convergence.",
               "Not comparable with the post's figures: another language (English against Chinese), other data "
               "(CoNLL-2003 NER and PHEE's 2 event types against DuEE's 65 and People's Daily), a 6-layer uncased "
               "MiniLM with one block fine-tuned against a 12-layer base model fully fine-tuned for 20 epochs, "
               "training subsets of a few thousand sentences or fewer, and the metric (exact spans here; DuEE's "
               "figure is the soft LCS match, which we report on PHEE)."],
        skipped=skipped, quick=quick)
