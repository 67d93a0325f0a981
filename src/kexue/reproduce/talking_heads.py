"""Reproduction: talking-heads attention (kexue.fm/archives/7325).

The same small MLM pre-training run as ``realformer`` (SST-2 sentences, 4 layers, d = 64, 4 heads), comparing standard
multi-head attention with talking heads (pre- and post-softmax head mixing, identity at initialisation) at two learning
rates. Quick: 200 steps, 1 seed. Full: 1,500 steps, 2 seeds.
"""

from __future__ import annotations

from . import _mlm
from .result import Post, Result, Table

POST = Post(title="突破瓶颈，打造更强大的Transformer", gloss="Breaking the low-rank bottleneck: key_size and talking heads",
            date="2020-04-13", url="https://kexue.fm/archives/7325")
CONFIGS = {"standard": {"norm": "post"}, "talking heads": {"norm": "post", "talking_heads": True,
                                                          "talking_heads_post_softmax": True}}
LRS = (1e-3, 3e-3)


def run(quick: bool = True) -> Result:
    steps, seeds = (200, 1) if quick else (1500, 2)
    res = _mlm.compare(CONFIGS, LRS, steps, seeds)
    rows = _mlm.summary_rows(res)
    fig = _mlm.curves_figure(res, CONFIGS, LRS)
    mean = lambda n, lr: _mlm.mean_eval(res, n, lr)  # noqa: E731
    return Result(
        name="talking_heads", post=POST,
        claim="Mixing the attention logits across heads (talking heads) improves masked-LM pre-training at a fixed "
              "hidden size (the paper's BERT/ALBERT/T5 results, relayed by the post).",
        measured="held-out MLM loss " + "; ".join(
            f"lr {lr:g}: " + ", ".join(f"{n} {mean(n, lr):.3f}" for n in CONFIGS) for lr in LRS),
        verdict=_mlm.verdict(res, "talking heads", "standard", LRS),  # type: ignore[arg-type]
        rule="holds if talking heads' mean held-out MLM loss is below standard attention's by more than 0.01 at both "
             "learning rates; does not hold if above by more than 0.01 at both; otherwise inconclusive.",
        tables=[Table(f"Held-out MLM loss after {steps} steps ({seeds} seed(s)), 4 layers, d = 64, 4 heads",
                      ["attention", "lr", "mean", "min", "max"], rows)],
        figures=[("curves", fig)],
        numbers={f"{n}@{lr:g}": r["eval"] for (n, lr), r in res.items()},
        notes=["Quick mode (200 steps) is a smoke run: the models are still near the unigram loss and cannot be told "
               "apart; the full mode (1,500 steps, 2 seeds) is the comparison.",
               "At 4 heads the mixing matrices add 32 parameters per layer; the paper's gains grow with the head count "
               "and the scale, neither of which a quick CPU run reaches."],
        quick=quick)
