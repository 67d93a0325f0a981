"""Reproduction: UniVAE, a single-model multi-scale VAE on the Transformer (kexue.fm/archives/8475).

The post: give a Transformer the text twice, [encoder | decoder], with UniLM-style masks; in the top layers the decoder
may see only the encoder's [CLS], which is replaced at each of those layers by Dense(z), z a von Mises–Fisher sample
around L2-normalise(Dense(h_[CLS])). Its claims are qualitative (examples, no metrics): random samples are fluent,
reconstructions near-exact, and the latent is multi-scale — replacing the first 32 of 64 dims (the lower latent
layers) keeps the topic words and changes the content, replacing the last 16 (the top layer) keeps the sentence
pattern and changes the topic.

Three parts (:mod:`._univae_mechanics`, :mod:`._univae_synthetic`, :mod:`._univae_real`):

* **mechanics**: :func:`kexue.nn.independent_mask` and :func:`~kexue.nn.uniae_mask` against a double loop on random
  segment layouts; zero leakage (encoder tokens perturbed with z fixed: decoder logits bit-identical, on the
  synthetic models and on the MiniLM-initialised one); the vMF sampler's mean cosine against A_d(κ) from
  ``scipy.special.ive``.
* **synthetic language** (:mod:`._templated_language`: 10 topics × 10 patterns, 52 words), the spec's model (4
  layers, width 64, latents on the top 2, z_dim 8) from scratch; held-out reconstruction, fluency of prior samples,
  and latent swaps: A's latent with one layer's block from B (different topic and pattern), decoded and parsed by the
  grammar into whose topic and whose pattern it has.
* **real sentences** (full mode, when STS-B/SICK are present): UniVAE from all-MiniLM-L6-v2 (latents on the top 2
  of 6 layers, the post's 4 of 12), a short fine-tune, reconstruction before and after and what each layer's swap
  changes (token overlap with A and B). Reported, not judged.

κ: the spec's κ = 16 caps the rate at 2 × 3.82 = 7.65 nats, barely above the language's entropy (7.08 nats), so the
judged model uses κ = 64 (16.5 nats) and full mode reports κ = 16 beside it.

Kind: empirical with mechanics checks, decided by :func:`decide` over training seeds of the judged model (per seed
the swap proportions; their means over seeds against 1/2 by the standard error over seeds; a single seed gives
``inconclusive``: which factor a layer takes varies between training runs, and one run cannot measure that).

Found (one thread of a busy 2-core machine): the mechanics verify in both modes. Quick (κ = 64, 450 steps, one
seed, 34 s CPU): inconclusive by construction (one training run); that run splits the factors as the post says
(swapping layer 3 keeps A's topic 1.00 and A's pattern 0.01, swapping the top layer 4 keeps A's topic 0.00 and A's
pattern 0.99), held-out teacher-forced accuracy 0.793 (unjudged). An earlier one-seed full run (3,000 steps on a
20,000-sentence corpus) reconstructed near-exactly (0.997) but its swaps were mixed (layer 3: A's topic 0.16, pattern
0.27; layer 4: 0.42, 0.34): which factor a layer takes depends on the training run, hence the seeds. Full (3 seeds
of 1,500 steps, 503 s CPU): inconclusive. Reconstruction holds (per seed 0.981, 0.931, 0.981; 0.964 ± 0.017 over
seeds, above 0.9), but only seed 1 splits the factors (layer 3 keeps A's topic 1.00 and A's pattern 0.00, the top
layer 4 keeps A's topic 0.00 and A's pattern 1.00, the post's direction); seeds 0 and 2 give mixed decodes (layer 3:
A's topic 0.26/0.28, pattern 0.23/0.30; layer 4: topic 0.23/0.22, pattern 0.38/0.27), so A's topic kept by layer 3
(0.51 ± 0.24) and A's pattern kept by layer 4 (0.55 ± 0.23) are undecided. The spec's κ = 16 (1,000 steps) reaches
0.785. MiniLM after 60 steps: accuracy 0.000 → 0.228, its decodes ignore z.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

from . import _templated_language as lang
from ._univae_mechanics import VMF_Z, leak_text, leakage_check, masks_check, vmf_check, vmf_rate
from ._univae_real import LATENT_LAYERS as REAL_LATENT
from ._univae_real import Z_DIM as REAL_Z
from ._univae_real import load_sentences, minilm_leakage, real_numbers, real_tables, run_real
from ._univae_synthetic import (
    LATENT_LAYERS,
    LAYERS,
    TEST_FRACTION,
    Z_DIM,
    Setting,
    SwapCounts,
    evaluate_synthetic,
    swap_figure,
    swap_rows,
    train_synthetic,
)
from .result import Post, Result, Table, Verdict
from .rules import (
    Decision,
    Estimate,
    all_of,
    estimate,
    learned,
    not_learned_reason,
    paired,
    superiority,
)

POST = Post(
    title="UniVAE：基于Transformer的单模型、多尺度的VAE模型",
    gloss="UniVAE: a single-model, multi-scale VAE built on the Transformer",
    date="2021-06-29",
    url="https://kexue.fm/archives/8475",
)

#: The spec's bar for "reconstruction is > 90 %": teacher-forced token accuracy with z = z_μ on held-out sentences.
RECON_TARGET = 0.9


Comparison = tuple[str, Estimate, Decision]


#: The reason the swap part of a one-seed run is inconclusive.
ONE_RUN = "one training run: the seed-to-seed spread is not measured"


def _half(what: str, rates: Sequence[float], above: bool) -> Comparison:
    """Whether a rate lies above (``above``) or below one half: its mean over seeds against 1/2 by the standard
    error over seeds (:func:`superiority`; one seed has no spread, so it is ``inconclusive``)."""
    e = estimate(rates)
    effect = Estimate(e.mean - 0.5 if above else 0.5 - e.mean, e.se, e.n)
    return f"{what} {'>' if above else '<'} 1/2", e, superiority(effect)


def _direction(swaps: Sequence[Sequence[SwapCounts]], top_controls: str) -> list[Comparison]:
    """The four (or more) judged rates, per seed the proportion of decodes, when the top latent layer controls
    ``top_controls`` (``topic`` as the post says, or ``pattern``, the reverse) and every lower latent layer the other
    factor. ``swaps``: per seed, the swap counts of each latent layer, bottom to top."""
    other = "pattern" if top_controls == "topic" else "topic"
    comps = []
    last = len(swaps[0]) - 1
    for i, s in enumerate(swaps[0]):
        changes = top_controls if i == last else other
        keeps = other if changes == top_controls else top_controls
        where = f"swap layer {s.layer}{' (top)' if i == last else ''}"
        for factor, above in ((keeps, True), (changes, False)):
            rates = [getattr(run[i], f"{factor}_a") / run[i].n for run in swaps]
            comps.append(_half(f"{where}: A's {factor} kept", rates, above))
    return comps


def decide(mechanics_ok: bool, recon: Sequence[Sequence[float]], shuffled: Sequence[Sequence[float]],
           baseline: Sequence[float], swaps: Sequence[Sequence[SwapCounts]], *, target: float | None = RECON_TARGET
           ) -> tuple[Verdict, str, list[Comparison]]:
    """The verdict, its reason and the judged comparisons, from one or more training runs (seeds) of the model.

    Per seed: ``recon``, per held-out sentence the teacher-forced token accuracy with z = z_μ; ``shuffled``, the
    same with another sentence's z_μ (what the decoder gets from the language alone); ``baseline``, the
    per-position majority-token accuracy of its corpus; ``swaps``, the swap counts of each latent layer, bottom to
    top.

    1. The mechanics (masks, zero leakage, the vMF sampler) fail: ``not measured`` (nothing measured on a model that
       leaks counts).
    2. Guards, per seed, else ``not measured``: the mean reconstruction accuracy beats ``baseline`` by 2 s.e. (over
       sentences), and the latent carries information: recon − shuffled, paired per sentence, by
       :func:`superiority` (a decoder that ignores z is a language model, not an autoencoder, and its swaps would
       say nothing).
    3. Reconstruction above ``target`` (the spec's 90 %): the mean over seeds of each seed's mean accuracy − target,
       by :func:`superiority` with the standard error over seeds; ``target`` None (quick mode, whose model is trained
       for a few hundred steps only) leaves it unjudged.
    4. The post's direction: per seed, the proportion of swapped decodes that keep A's topic and A's pattern for each
       swapped layer; each proportion's mean over seeds against 1/2 by its standard error over seeds (which layer
       takes which factor varies between training runs, so that spread, not the binomial one within a run, is the
       noise): swapping the top layer keeps A's pattern (> 1/2) and changes A's topic (< 1/2); swapping each lower
       latent layer keeps A's topic and changes A's pattern.
    The verdict is all of 3–4. With a single seed there is no spread to judge by: every part is ``inconclusive``
    (the reason says :data:`ONE_RUN`), never holds or does not hold from one run. When the reverse split holds
    instead (top: pattern, lower: topic) the reason says so.
    """
    lengths = {len(recon), len(shuffled), len(baseline), len(swaps)}
    if len(lengths) != 1 or not recon:
        raise ValueError(f"expected recon, shuffled, baseline and swaps for the same seeds (one or more), got "
                         f"{len(recon)}, {len(shuffled)}, {len(baseline)} and {len(swaps)}")
    if not mechanics_ok:
        return ("not measured", "the mechanics checks failed (masks, zero leakage or the vMF sampler): nothing "
                "measured on this model counts", [])
    seed_tag = len(recon) > 1
    for k, (rec, sh, base) in enumerate(zip(recon, shuffled, baseline)):
        tag = f"seed {k}: " if seed_tag else ""
        score = estimate(rec)
        if not learned(score, base):
            return ("not measured", tag + not_learned_reason("held-out teacher-forced token accuracy", score.mean,
                                                             base, "per-position majority token"), [])
        carried = paired(rec, sh)
        if superiority(carried) != "holds":
            return ("not measured", f"{tag}the latent carries no information: teacher-forced accuracy with z = z_μ "
                    f"{score.mean:.3f} against {estimate(sh).mean:.3f} with another sentence's z_μ (paired "
                    f"difference {carried.mean:+.3f} ± {carried.se:.2g}); the decoder learned the language, not the "
                    "sentence", [])
    comps: list[Comparison] = []
    if target is not None:
        means = estimate(estimate(r).mean for r in recon)
        rec_effect = Estimate(means.mean - target, means.se, means.n)
        comps.append((f"reconstruction token accuracy − {target:g}", rec_effect, superiority(rec_effect)))
    comps += _direction(swaps, "topic")
    verdict = all_of(*(d for _, _, d in comps))
    parts = [f"{what} ({e.mean:+.3f}" if what.startswith("reconstruction") else f"{what} ({e.mean:.3f}"
             for what, e, _ in comps]
    reason = "; ".join(f"{p} ± {e.se:.2g}): {d}" for p, (_, e, d) in zip(parts, comps))
    if len(swaps) == 1:
        reason = f"{ONE_RUN}; " + reason.replace(" ± nan", "")
    elif verdict != "holds" and all_of(*(d for _, _, d in _direction(swaps, "pattern"))) == "holds":
        reason += ("; the latent layers split the factors the other way round (the top layer controls the pattern, "
                   "the lower the topic)")
    return verdict, reason, comps


QUICK = Setting(seeds=1, sentences=5000, steps=450, other_steps=0, checkpoints=(), pairs=200, beam=1,
                kappas=(64.0,), real_steps=0, real_eval=0, real_pairs=0)
FULL = Setting(seeds=3, sentences=20000, steps=1500, other_steps=1000, checkpoints=(450,), pairs=400, beam=3,
               kappas=(64.0, 16.0), real_steps=60, real_eval=200, real_pairs=100)


def _rate(e: Estimate) -> str:
    return f"{e.mean:.3f} ± {e.se:.2g}"


def _over_seeds(values: Sequence[float]) -> str:
    e = estimate(values)
    return f"{e.mean:.3f} ± {e.se:.2g} over {e.n} seeds" if e.n > 1 else f"{e.mean:.3f} (one run)"


def run(quick: bool = True) -> Result:
    t0 = time.process_time()
    setting = QUICK if quick else FULL
    masks = masks_check(40 if quick else 400)
    vmf = vmf_check(20_000 if quick else 200_000)
    syn = []  # the judged κ's seeds first, then each other κ (seed 0)
    plan = [(setting.kappas[0], seed, setting.steps) for seed in range(setting.seeds)]
    plan += [(kappa, 0, setting.other_steps) for kappa in setting.kappas[1:]]
    for i, (kappa, seed, n_steps) in enumerate(plan):
        trained = train_synthetic(setting, kappa, n_steps, seed, checkpoints=setting.checkpoints if i == 0 else ())
        ev = evaluate_synthetic(trained, setting)
        ids = trained["tok"].encode(trained["test"][:32])
        syn.append({"kappa": kappa, "seed": seed, "eval": ev, "seconds": trained["seconds"], "steps": n_steps,
                    "leak": leakage_check(trained["model"], ids, trained["tok"].pad_id), "curve": trained["curve"],
                    "trajectory": trained["trajectory"]})
    judged = syn[:setting.seeds]
    mini_leak = minilm_leakage()
    mech_ok = masks["ok"] and vmf["ok"] and mini_leak["ok"] and all(r["leak"]["ok"] for r in syn)
    main = syn[0]["eval"]
    verdict, reason, comps = decide(mech_ok, *([r["eval"][k] for r in judged] for k in ("recon", "shuffled",
                                                                                       "baseline", "swaps")),
                                    target=None if quick else RECON_TARGET)
    skipped: list[str] = []
    real = None
    if setting.real_steps:
        train, test = load_sentences(skipped)
        if train and test:
            real = run_real(train, test, setting.real_steps, setting.real_eval, setting.real_pairs)

    n_train, n_test = (len(p) for p in lang.split(TEST_FRACTION, 0))
    tok_words = lang.WordTokenizer(11).vocab_size - 3
    entropy = math.log(n_train)
    rates = {k: LATENT_LAYERS * vmf_rate(Z_DIM, k) for k in setting.kappas}
    mech_rows = [
        ["masks = double loop (random layouts, half 0…0 1…1, half arbitrary 0/1)",
         f"{masks['wrong']} of {masks['cells']} entries differ ({masks['layouts']} layouts)", masks["ok"]],
        *[[f"zero leakage, synthetic model κ = {r['kappa']:g}, seed {r['seed']} (encoder tokens perturbed, z fixed)",
           leak_text(r["leak"]), r["leak"]["ok"]] for r in syn],
        ["zero leakage, UniVAE from all-MiniLM-L6-v2", leak_text(mini_leak), mini_leak["ok"]],
        [f"vMF mean cosine = A_d(κ) within {VMF_Z:g} s.e. ({vmf['n']:,} draws each)",
         "; ".join(f"d {r['dim']}, κ {r['kappa']:g}: {r['mean']:.4f} vs {r['exact']:.4f} (z {r['z']:+.2f})"
                   for r in vmf["rows"]), vmf["ok"]],
    ]
    swap_table = [row for r in syn for row in swap_rows(f"κ = {r['kappa']:g}, seed {r['seed']}", r["eval"]["swaps"])]
    recon_rows = []
    for r in syn:
        e = r["eval"]
        rec, sh = estimate(e["recon"]), estimate(e["shuffled"])
        recon_rows.append([f"κ = {r['kappa']:g}, seed {r['seed']}, {r['steps']} steps", f"{rates[r['kappa']]:.2f}",
                           _rate(rec), _rate(sh),
                           f"{e['baseline']:.3f}",
                           ", ".join(f"beam {b}: {c / e['n_test']:.3f}" for b, c in e["exact"].items()),
                           f"{e['fluent']}/{e['n_prior']} ({e['novel']} not in training)", f"{r['seconds']:.0f}"])
    top, lower = main["swaps"][-1], main["swaps"][0]
    acc = [estimate(r["eval"]["recon"]).mean for r in judged]

    def kept(layer: int, factor: str) -> list[float]:
        return [getattr(r["eval"]["swaps"][layer], f"{factor}_a") / r["eval"]["swaps"][layer].n for r in judged]

    def by_seed(values: Sequence[float]) -> str:
        return "/".join(f"{v:.2f}" for v in values)

    post_rows = [
        ["random samples are fluent questions", "prior samples that parse as a sentence of the language",
         ", ".join(f"{r['eval']['fluent']}/{r['eval']['n_prior']}" for r in judged)],
        ["reconstructions are near-exact", "held-out teacher-forced token accuracy (z = z_μ)", _over_seeds(acc)],
        ["replacing the first 32 dims (lower latent layers) keeps the topic words, changes the content",
         f"swap layer {lower.layer}: A's topic kept; A's pattern kept",
         f"{_over_seeds(kept(0, 'topic'))}; {_over_seeds(kept(0, 'pattern'))}"],
        ["replacing the last 16 dims (top layer) keeps the pattern, changes the topic",
         f"swap layer {top.layer}: A's pattern kept; A's topic kept",
         f"{_over_seeds(kept(-1, 'pattern'))}; {_over_seeds(kept(-1, 'topic'))}"],
    ]
    seed_rows = [[r["seed"], f"{a:.3f}", *(f"{getattr(s, f + '_a') / s.n:.2f}" for s in r["eval"]["swaps"]
                                          for f in ("topic", "pattern"))] for r, a in zip(judged, acc)]
    seed_rows.append(["mean ± s.e.", _over_seeds(acc), *(_over_seeds(kept(j, f)) for j in range(LATENT_LAYERS)
                                                         for f in ("topic", "pattern"))])
    tables = [Table("The post's claims (qualitative, with examples) beside ours (κ = "
                    f"{setting.kappas[0]:g}, judged)", ["post", "our measure", "ours"], post_rows),
              Table("Mechanics", ["check", "measured", "passes"], mech_rows),
              Table("Synthetic language: reconstruction on the held-out sentences",
                    ["model", "rate cap (nats)", "teacher-forced acc.", "with another's z", "majority baseline",
                     "exact match", "fluent prior samples", "train s"], recon_rows),
              Table(f"Per seed (κ = {setting.kappas[0]:g}, judged): held-out teacher-forced accuracy and the "
                    "fraction of swapped decodes keeping A's topic and A's pattern",
                    ["seed", "accuracy", *(f"swap layer {s.layer}: A's {f}" for s in main["swaps"]
                                           for f in ("topic", "pattern"))], seed_rows),
              Table("Latent swaps (fractions of decodes ± binomial s.e. within a run)",
                    ["model", "swapped layer", "pairs", "A's topic", "B's topic", "A's pattern", "B's pattern"],
                    swap_table),
              Table("Swap examples (judged model, seed 0)", ["A", "B", *(f"A with layer {s.layer} from B" for s in
                                                                 main["swaps"])], main["examples"])]
    trajectory = {**syn[0]["trajectory"], setting.steps: {"recon": estimate(main["recon"]).mean,
                                                          "swaps": main["swaps"]}}
    if len(trajectory) > 1:
        traj_rows = [[step, f"{t['recon']:.3f}",
                      *(f"{c / s.n:.2f}" for s in t["swaps"] for c in (s.topic_a, s.pattern_a))]
                     for step, t in sorted(trajectory.items())]
        tables.insert(5, Table(f"Over training (κ = {setting.kappas[0]:g}, seed 0): held-out teacher-forced "
                               "accuracy and what each swap keeps of A",
                               ["step", "accuracy", *(f"swap layer {s.layer}: A's {f}" for s in main["swaps"]
                                                      for f in ("topic", "pattern"))], traj_rows))
    if comps:
        tables.insert(1, Table("Judged comparisons (means over seeds ± s.e. over seeds)", ["comparison", "estimate",
                                                                                            "decision"],
                               [[w, f"{e.mean:.3f} ± {e.se:.2g}" if e.n > 1 else f"{e.mean:.3f} (one run)", d]
                                for w, e, d in comps]))
    real_text = "MiniLM fine-tune: full mode only" if quick else "MiniLM fine-tune: not run (STS-B/SICK missing)"
    if real is not None:
        tables += real_tables(real)
        b, a = estimate(real["before"]), estimate(real["after"])
        real_text = (f"MiniLM ({real['steps']} steps): teacher-forced accuracy {b.mean:.3f} → {a.mean:.3f}")
    notes = [
        f"The rate of a fixed-κ vMF latent is capped by KL(vMF ‖ uniform), {vmf_rate(Z_DIM, 16.0):.2f} nats per "
        f"{Z_DIM}-d block at the spec's κ = 16: {LATENT_LAYERS} blocks carry at most {2 * vmf_rate(Z_DIM, 16.0):.2f} "
        f"nats, barely above the language's entropy (log of the {n_train:,} distinct training "
        f"sentences = {entropy:.2f} nats), so near-exact reconstruction would need a code at capacity. The judged "
        f"model uses κ = {setting.kappas[0]:g} ({rates[setting.kappas[0]]:.2f} nats); "
        + ("the spec's κ = 16 is reported beside it." if 16.0 in setting.kappas else "full mode adds the spec's "
           "κ = 16."),
        f"The swap claim is judged over {setting.seeds} training seed(s) of the judged model (corpus draw, "
        "initialisation and batches differ; the held-out sentences and swap pairs are the same): per seed the "
        "fraction of decodes keeping A's topic and A's pattern, its mean over seeds against 1/2 by the standard error "
        "over seeds, since which factor a latent layer takes differs between trainings (while building this entry, "
        "one seed-0 run split the factors cleanly as the post says at 450 steps on a 5,000-sentence corpus, while the "
        "same seed on a 20,000-sentence corpus showed no split at step 450 nor at 3,000)."
        + (" Quick mode trains one seed (what its budget allows), so the swap part is inconclusive by construction: "
           f"{ONE_RUN}." if setting.seeds == 1 else ""),
        f"Latents on Transformer layers {LAYERS - LATENT_LAYERS + 1}–{LAYERS} of {LAYERS} (synthetic) and "
        f"{6 - REAL_LATENT + 1}–6 of 6 (MiniLM, the post's 4 of 12 scaled), z_dim {Z_DIM} and {REAL_Z}.",
    ]
    if len(trajectory) > 1:
        def kept_text(t: dict[str, Any]) -> str:
            return "; ".join(f"swap layer {w.layer} keeps A's topic {w.topic_a / w.n:.2f}, A's pattern "
                             f"{w.pattern_a / w.n:.2f}" for w in t["swaps"])

        first, last = min(trajectory), max(trajectory)
        notes.append(f"Over training (κ = {setting.kappas[0]:g}, seed 0): at step {first} (accuracy "
                     f"{trajectory[first]['recon']:.3f}) {kept_text(trajectory[first])}; at step {last} (accuracy "
                     f"{trajectory[last]['recon']:.3f}) {kept_text(trajectory[last])}.")
    if real is not None:
        outs = set(real["decoded"])
        tail = [c for c, _ in real["curve"][-20:]]
        notes.append(f"MiniLM: {real['steps']} steps of 16 sentences are far too few for the new LM head and the "
                     f"latent layers (final training cross-entropy {sum(tail) / max(1, len(tail)):.2f} nats"
                     + ("; the greedy decodes of different latents are identical, a language model ignoring z"
                        if len(outs) == 1 else "") + f"). At {real['train_seconds'] / max(1, real['steps']):.1f} s CPU "
                     "per step here, the thousands of steps such a fine-tune needs (the post: batch 128, Adam 2e-5) "
                     "take hours on one CPU thread: this part needs a GPU or a much longer run. Training only the "
                     "latent layers and the LM head's transform (embeddings, so the tied output matrix, and the bottom "
                     "4 layers frozen) at maxlen 24 halves the cost (1.0 s CPU per step), but 120 such steps reached "
                     "0.212, no better than 60 full steps (0.228), its decodes still nearly one sentence whatever z "
                     "(measured while building this entry).")
    if quick:
        notes.append("Quick mode trains the judged model only and leaves out the MiniLM fine-tune (the zero-leakage "
                     "check on the MiniLM-initialised model still runs).")
    steps = f"{setting.steps} steps" + (f" (κ = 16: {setting.other_steps})" if len(setting.kappas) > 1 else "")
    setup = (f"Synthetic: 10 topics × 3 nouns, 10 patterns, {tok_words} words; {setting.sentences:,} sentences drawn "
             f"from {n_train:,} distinct training sentences, {n_test} held out (15 % of each topic × pattern cell); "
             f"UniVAE {LAYERS} layers, width 64, 4 heads, FFN 128, latents on the top {LATENT_LAYERS}, z_dim {Z_DIM}, "
             f"κ {', '.join(f'{k:g}' for k in setting.kappas)}, maxlen 11, Adam 2e-3, batch 64, {steps}, "
             + (f"seeds 0–{setting.seeds - 1} (κ {setting.kappas[0]:g}; other κ seed 0)" if setting.seeds > 1
                else "seed 0")
             + "; latent Dense layers drawn at unit "
             "scale (std 2.83/√fan_in; the library and the author's code: truncated normal, std 0.02); "
             f"{setting.pairs} swap pairs (different topic and pattern), greedy decodes (exact match also with beam "
             f"{setting.beam}). MiniLM: "
             + (f"top {REAL_LATENT} of 6 layers, z_dim {REAL_Z}, κ 32, maxlen 32, Adam 1e-4, batch 16, "
                f"{setting.real_steps} steps on STS-B + SICK-R train sentences." if setting.real_steps else
                "full mode only."))
    seconds = time.process_time() - t0
    return Result(
        name="univae", post=POST, kind="empirical", verdict=verdict, reason=reason,
        claim="UniVAE (UniLM-style masks, latents injected at [CLS] in the top layers) is a VAE whose random samples "
              "are fluent and whose reconstructions are near-exact, and its latent is multi-scale: the top layer's "
              "block sets the topic, the lower layers' the sentence pattern and content.",
        measured=f"synthetic κ = {setting.kappas[0]:g}, {setting.seeds} seed(s), per seed: teacher-forced accuracy "
                 f"{by_seed(acc)} (majority {main['baseline']:.3f}); swap layer {lower.layer} keeps A's topic "
                 f"{by_seed(kept(0, 'topic'))}, A's pattern {by_seed(kept(0, 'pattern'))}; swap layer {top.layer} "
                 f"keeps A's topic {by_seed(kept(-1, 'topic'))}, A's pattern {by_seed(kept(-1, 'pattern'))}; "
                 f"mechanics {'verified' if mech_ok else 'NOT verified'}; {real_text} ({seconds:.0f} s CPU)",
        rule="not measured if the mechanics fail (masks ≠ double loop, any leakage, vMF mean cosine off A_d(κ)), or "
             "if for any seed the held-out teacher-forced accuracy does not beat the per-position majority token by "
             "2 s.e. or does not beat the accuracy with another sentence's z (paired per sentence, 2 s.e.). Over the "
             "seeds (2-s.e. intervals of the mean over seeds): holds if the accuracy is above "
             f"{RECON_TARGET:g} (full mode only: quick mode's model is trained for a few hundred steps, its accuracy "
             "is reported) and, each per-seed rate's mean against 1/2, swapping the top latent layer keeps A's "
             "pattern (> 1/2) and loses A's topic (< 1/2) while swapping each lower latent layer keeps A's topic and "
             "loses A's pattern; does not hold if any of these intervals lies on the wrong side; otherwise "
             f"inconclusive, and always inconclusive from a single seed ({ONE_RUN}).",
        post_figure="qualitative: fluent random samples, near-exact reconstructions; first 32 dims → content, "
                    "last 16 → topic",
        our_figure=f"acc {_over_seeds(acc)}; top swap keeps A's pattern {_over_seeds(kept(-1, 'pattern'))}, topic "
                   f"{_over_seeds(kept(-1, 'topic'))}; lower swap keeps topic {_over_seeds(kept(0, 'topic'))}, "
                   f"pattern {_over_seeds(kept(0, 'pattern'))}",
        setup=setup,
        tables=tables, figures=[("univae_swaps", swap_figure(syn))], skipped=skipped, notes=notes,
        numbers={"masks": masks, "vmf": vmf, "minilm_leakage": mini_leak, "entropy_nats": entropy,
                 "rate_cap_nats": {str(k): v for k, v in rates.items()},
                 "synthetic": [{"kappa": r["kappa"], "seed": r["seed"], "seconds": r["seconds"], "leak": r["leak"],
                                "recon": estimate(r["eval"]["recon"]).mean,
                                "shuffled": estimate(r["eval"]["shuffled"]).mean,
                                "baseline": r["eval"]["baseline"], "exact": r["eval"]["exact"],
                                "fluent": r["eval"]["fluent"], "swaps": [s._asdict() for s in r["eval"]["swaps"]],
                                "final_ce": sum(r["curve"][-50:]) / 50,
                                "trajectory": {str(k): {"recon": t["recon"], "swaps": [w._asdict() for w in t["swaps"]]}
                                               for k, t in r["trajectory"].items()}} for r in syn],
                 "real": real_numbers(real), "seconds": seconds},
        quick=quick)
