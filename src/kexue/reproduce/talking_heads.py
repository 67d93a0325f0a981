"""Reproduction: talking-heads attention (kexue.fm/archives/7325).

Talking heads mix the heads' pre-softmax logits with a learned h×h matrix (J⁽ⁱ⁾ = Σⱼ λᵢⱼ Q⁽ʲ⁾K⁽ʲ⁾ᵀ/√k, λ = I at
start; here also the paper's post-softmax mixing), so each head sees a mixture of low-rank maps. The post relays the
paper's BERT/ALBERT/T5 gains at fixed hidden size. The same small MLM pre-training run as ``realformer`` (``_mlm``:
SST-2 sentences, 4 layers, d = 64, 4 heads, Adam without warm-up, batch 64) compares standard multi-head attention
(the Post-LN runs, shared with ``realformer`` through ``_mlm``'s cache) with talking heads, seeds paired by data
order and masks. Quick: 600 steps, lr 1e-3, 1 seed. Full: 1,000 steps, lr 1e-3 and 3e-3, 3 seeds. The post makes
no claim about learning-rate robustness for talking heads (its spec lists none); the per-lr results are reported and
the gain is judged best lr against best lr.
"""

from __future__ import annotations

from typing import Any

from . import _mlm, rules
from .realformer import FULL, QUICK
from .result import Post, Result, Table, Verdict

POST = Post(title="突破瓶颈，打造更强大的Transformer",
            gloss="Breaking the low-rank bottleneck: key_size and talking heads", date="2020-04-13",
            url="https://kexue.fm/archives/7325")
#: Shares its Post-LN baseline runs with the other MLM entry through _mlm's cache: one worker runs both.
GROUP = "mlm"
#: TransformerConfig overrides of each compared model.
CONFIGS: dict[str, dict[str, Any]] = {"standard": {"norm": "post"},
                                      "talking heads": {"norm": "post", "talking_heads": True,
                                                        "talking_heads_post_softmax": True}}


def decide(losses: _mlm.Losses, lrs: tuple[float, ...], unigram: float, diverged: float) -> tuple[Verdict, str]:
    """``not measured`` if standard or talking-heads attention did not learn (``_mlm.learned_guard``); else
    superiority of standard − talking heads' held-out loss, best lr against best lr, paired by seed."""
    return _mlm.decide_gain(losses, "talking heads", "standard", lrs, unigram, diverged)


def run(quick: bool = True) -> Result:
    steps, seeds, lrs = QUICK if quick else FULL
    m = _mlm.measure(CONFIGS, steps, seeds, lrs)
    data, uni, diverged, res, losses = _mlm.corpus(), m.unigram, m.diverged, m.runs, m.losses
    verdict, reason = decide(losses, lrs, uni["baseline"], diverged)
    reason = _mlm.quick_reason(reason, verdict, quick, FULL)
    g = _mlm.gain(losses, "talking heads", "standard", lrs, diverged)
    per_lr = {lr: rules.paired(_mlm.filled(losses[("standard", lr)], diverged),
                               _mlm.filled(losses[("talking heads", lr)], diverged)) for lr in lrs}
    return Result(
        name="talking_heads", post=POST, kind="empirical",
        claim="Mixing the attention logits across heads (talking heads) improves masked-LM pre-training at a fixed "
              "hidden size (the paper's BERT/ALBERT/T5 results, relayed by the post).",
        measured=_mlm.measured_text(m, list(CONFIGS), lrs),
        verdict=verdict,
        reason=reason,
        rule=f"Not measured unless both beat the unigram loss by {_mlm.LEARN_MARGIN} nats (and 2 s.e.) at their best "
             "lr. Standard − talking heads' held-out loss, best lr against best lr, paired by seed: holds if above 0 "
             "by 2 s.e., does not hold if below 0 by 2 s.e., else inconclusive. A diverged run scores log V.",
        post_figure="no figure in the post",
        our_figure=f"standard − talking heads loss, best lr each: {g.mean:+.3g} nats ({_mlm.se_text(g)})",
        setup=_mlm.setup_text(steps, seeds, lrs, len(data.eval)),
        tables=[_mlm.loss_table(res, steps, seeds, uni, "attention"),
                Table("Standard − talking heads' held-out loss at each lr (paired by seed; reported, not judged)",
                      ["lr", "mean", "s.e.", "seeds"], [[lr, e.mean, e.se, e.n] for lr, e in per_lr.items()])],
        figures=[("curves", _mlm.curves_figure(res, CONFIGS, lrs, uni["baseline"]))],
        numbers={"losses": {f"{n}@{lr:g}": v for (n, lr), v in losses.items()}, "unigram": uni, "steps": steps,
                 "seeds": seeds},
        notes=["At 4 heads the mixing matrices add 32 parameters per layer; the paper's gains grow with the head count "
               "and the scale, neither of which a CPU run reaches.",
               "Quick mode (1 seed, lr 1e-3) checks that both models learn; the verdict needs the full mode's seeds.",
               "The low-rank mechanism itself is tested directly in the key_size entry (talking heads against plain "
               "heads on targets plain heads of that key size cannot fit)."],
        quick=quick)
