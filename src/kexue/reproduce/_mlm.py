"""A small masked-LM pre-training run on real sentences, shared by the RealFormer and talking-heads reproductions.

Corpus: SST-2 training sentences (the registered set `sst2`, from the data folder), tokenised with all-MiniLM-L6-v2's
WordPiece tokenizer; the vocabulary is cut to the most frequent pieces (the rest become [UNK]) so a tiny model's
softmax stays cheap.
Masking: 15 % of the real tokens (never [CLS]/[SEP]) become [MASK]; the loss is cross-entropy on them, and the MLM
head runs on the masked positions only (the same loss as on all positions with ``ignore_index``, at a fraction of
the vocabulary projection's cost).

The trivial baseline of the learned guard is the **unigram loss**: a model that ignores the context does best by
predicting the training frequency of each piece, and scores min(H, CE) nats, where H is the entropy of the training
unigram distribution and CE its cross-entropy on the held-out masked tokens. A run has learned only if its held-out
MLM loss is below that by more than :data:`LEARN_MARGIN` (and by 2 standard errors over seeds).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch

from ..data.classification import sst2
from ..env import minilm_path
from ..models import Tokenizer, Transformer, TransformerConfig
from . import rules
from .result import Verdict

PAD, MASK, UNK, CLS, SEP = 0, 1, 2, 3, 4
#: Nats by which the held-out MLM loss must beat the unigram loss for a run to count as having learned.
LEARN_MARGIN = 0.1
#: The smallest robustness effect the claim implies: at an lr that stalls the base, ours ends at least this many nats
#: further below the learning threshold (0.05 nats: half the learning margin).
ROBUST_MIN = 0.05
#: The seed of the held-out set's masks (the same for every run).
EVAL_MASK_SEED = 123


@dataclass
class Corpus:
    train: torch.Tensor  # (N, seq_len) token ids, PAD-padded
    eval: torch.Tensor
    vocab_size: int


@lru_cache(maxsize=2)
def corpus(seq_len: int = 24, vocab: int = 1000, n_eval: int = 2048) -> Corpus:
    texts = [t for t in sst2("train").texts if len(t.split()) >= 6]
    tok = Tokenizer.from_pretrained(minilm_path())
    encs = tok.encode_raw(texts, max_length=seq_len)
    special = {tok.token_to_id(s) for s in ("[CLS]", "[SEP]", "[PAD]")}
    counts = Counter(i for e in encs for i in e.ids if i not in special)
    keep = {old: new for new, (old, _) in enumerate(counts.most_common(vocab - 5), start=5)}
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    rows = torch.zeros(len(encs), seq_len, dtype=torch.long)
    for r, e in enumerate(encs):
        ids = [CLS if i == cls_id else SEP if i == sep_id else keep.get(i, UNK) for i in e.ids]
        rows[r, :len(ids)] = torch.tensor(ids)
    perm = torch.randperm(len(rows), generator=torch.Generator().manual_seed(0))
    rows = rows[perm]
    return Corpus(train=rows[n_eval:], eval=rows[:n_eval], vocab_size=vocab)


def mask_tokens(ids: torch.Tensor, g: torch.Generator, rate: float = 0.15) -> tuple[torch.Tensor, torch.Tensor]:
    """(masked input, labels with -100 where no loss)."""
    maskable = ids > SEP
    chosen = (torch.rand(ids.shape, generator=g) < rate) & maskable
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    return ids.masked_fill(chosen, MASK), labels


def unigram_loss(data: Corpus) -> dict[str, float]:
    """The context-free baseline: the entropy H of the training unigram distribution of maskable pieces, and its
    cross-entropy CE on the held-out masked tokens (the same masks as the evaluation); ``baseline`` = min(H, CE)."""
    train = data.train[data.train > SEP]
    p = torch.bincount(train, minlength=data.vocab_size).double()
    p = p / p.sum()
    nz = p[p > 0]
    h = float(-(nz * nz.log()).sum())
    _, y = mask_tokens(data.eval, torch.Generator().manual_seed(EVAL_MASK_SEED))
    ce = float(-p[y[y >= 0]].clamp_min(1e-12).log().mean())
    return {"entropy": h, "heldout_ce": ce, "baseline": min(h, ce)}


def _loss(model: Transformer, ids: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """MLM cross-entropy on the masked positions only."""
    hidden, _ = model.run_encoder(x, (ids != PAD).long(), None, False, None, None)
    sel = y >= 0
    assert model.mlm is not None
    logits = model.mlm(hidden[sel], model.embeddings.word.weight)
    return torch.nn.functional.cross_entropy(logits, y[sel])


def pretrain(seed: int, lr: float, steps: int, batch: int = 64, **config: Any) -> dict[str, Any]:
    """Train a 4-layer, d = 64 MLM (Adam, no warm-up) and return the loss curve and the held-out MLM loss
    (NaN if training diverged). The initialisation and the data order depend only on ``seed``, so runs of different
    configurations with one seed see the same batches and masks (paired). Runs are cached by their arguments within a
    process: the reproductions that share a baseline (same seed, lr, steps and config) train it once."""
    key = (seed, lr, steps, batch, tuple(sorted(config.items())))
    if key not in _RUNS:
        _RUNS[key] = _pretrain(seed, lr, steps, batch, **config)
    return _RUNS[key]


_RUNS: dict[tuple, dict[str, Any]] = {}


def _pretrain(seed: int, lr: float, steps: int, batch: int, **config: Any) -> dict[str, Any]:
    data = corpus()
    torch.manual_seed(seed)
    cfg = TransformerConfig(vocab_size=data.vocab_size, hidden_size=64, num_layers=4, num_heads=4,
                            intermediate_size=256, max_position_embeddings=data.train.shape[1], hidden_dropout=0.0,
                            attention_dropout=0.0, type_vocab_size=0, with_pooler=False, with_mlm=True, **config)
    model = Transformer(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    curve: list[float] = []
    for _ in range(steps):
        idx = torch.randint(0, len(data.train), (batch,), generator=g)
        ids = data.train[idx]
        x, y = mask_tokens(ids, g)
        loss = _loss(model, ids, x, y)
        if not torch.isfinite(loss):
            return {"curve": curve, "eval_loss": math.nan}
        opt.zero_grad()
        loss.backward()
        opt.step()
        curve.append(loss.item())
    model.eval()
    with torch.no_grad():
        x, y = mask_tokens(data.eval, torch.Generator().manual_seed(EVAL_MASK_SEED))
        ev = _loss(model, data.eval, x, y).item()
    return {"curve": curve, "eval_loss": ev if math.isfinite(ev) else math.nan}


def smooth(curve: list[float], k: int = 20) -> list[float]:
    out, acc = [], 0.0
    for i, v in enumerate(curve):
        acc += v
        if i >= k:
            acc -= curve[i - k]
        out.append(acc / min(i + 1, k))
    return out


def compare(configs: dict[str, dict[str, Any]], lrs: Sequence[float], steps: int, seeds: int) -> dict[Any, Any]:
    """Run every configuration at every learning rate and seed: {(name, lr): {"eval": [...], "curves": [...]}}."""
    out: dict[Any, Any] = {}
    for name, cfg in configs.items():
        for lr in lrs:
            runs = [pretrain(s, lr, steps, **cfg) for s in range(seeds)]
            out[(name, lr)] = {"eval": [r["eval_loss"] for r in runs], "curves": [r["curve"] for r in runs]}
    return out


# --- the rules: pure functions of the held-out losses -------------------------------------------------------------

Losses = dict[tuple[str, float], list[float]]  # (configuration, lr) -> held-out loss per seed (NaN: diverged)


@dataclass
class Measured:
    """One comparison's measurements: held-out losses per (configuration, lr) and seed, their means (a diverged run
    scored as ``diverged`` = log V), the unigram baseline and the raw runs (curves)."""

    losses: Losses
    mean: dict[Any, float]
    unigram: dict[str, float]
    diverged: float
    runs: dict[Any, Any]


def measure(configs: dict[str, dict[str, Any]], steps: int, seeds: int, lrs: Sequence[float]) -> Measured:
    """Train every configuration at every lr and seed (:func:`compare`) and collect what the rules read."""
    data = corpus()
    diverged = math.log(data.vocab_size)
    res = compare(configs, lrs, steps, seeds)
    losses = {k: r["eval"] for k, r in res.items()}
    mean = {k: rules.estimate(filled(v, diverged)).mean for k, v in losses.items()}
    return Measured(losses, mean, unigram_loss(data), diverged, res)


def measured_text(m: Measured, names: Sequence[str], lrs: Sequence[float]) -> str:
    """The ``measured`` sentence: mean held-out loss of each configuration at each lr, and the unigram loss."""
    return ("held-out MLM loss " + "; ".join(f"lr {lr:g}: " + ", ".join(f"{n} {m.mean[(n, lr)]:.3f}" for n in names)
                                              for lr in lrs)
            + f" (unigram loss {m.unigram['baseline']:.3f})")


def quick_reason(reason: str, verdict: str, quick: bool, full: tuple[int, int, Sequence[float]]) -> str:
    """The reason of a quick run's ``inconclusive``: one seed has no standard error, full mode decides."""
    if quick and verdict == "inconclusive":
        reason += (f"; quick mode runs 1 seed, so no standard error: the comparison is decided in full mode "
                   f"({full[1]} seeds, {full[0]:,} steps, lr {lrs_text(full[2])})")
    return reason


def filled(values: Sequence[float], diverged: float) -> list[float]:
    """The losses with a diverged run (NaN or inf) scored as ``diverged`` (log V: a uniform prediction)."""
    return [v if math.isfinite(v) else diverged for v in values]


def best_lr(losses: Losses, name: str, lrs: Sequence[float], diverged: float) -> float:
    """The learning rate with the lowest mean held-out loss of ``name`` (diverged runs scored as ``diverged``)."""
    return min(lrs, key=lambda lr: sum(filled(losses[(name, lr)], diverged)) / len(losses[(name, lr)]))


def learned_guard(losses: Losses, names: Sequence[str], lrs: Sequence[float], unigram: float,
                  diverged: float) -> str | None:
    """``None`` if every configuration in ``names`` clearly beats the unigram loss at its best lr (mean below
    ``unigram − LEARN_MARGIN`` by 2 s.e. over seeds), else the reason of a ``not measured`` verdict."""
    for name in names:
        lr = best_lr(losses, name, lrs, diverged)
        e = rules.estimate(filled(losses[(name, lr)], diverged))
        if not rules.learned(e, unigram - LEARN_MARGIN, higher_is_better=False):
            return rules.not_learned_reason(f"{name}'s held-out MLM loss (best lr {lr:g})", e.mean, unigram,
                                            f"unigram loss by {LEARN_MARGIN} nats")
    return None


def gain(losses: Losses, ours: str, base: str, lrs: Sequence[float], diverged: float) -> rules.Estimate:
    """Best lr against best lr: per seed, base's loss − ours (positive: ours is better), paired by seed (same data
    order and masks)."""
    lo, lb = best_lr(losses, ours, lrs, diverged), best_lr(losses, base, lrs, diverged)
    return rules.paired(filled(losses[(base, lb)], diverged), filled(losses[(ours, lo)], diverged))


def penalty(losses: Losses, name: str, low: float, high: float, diverged: float) -> list[float]:
    """Per seed, the loss at the high lr − the loss at the low lr (positive: raising the lr hurts)."""
    return [a - b for a, b in zip(filled(losses[(name, high)], diverged), filled(losses[(name, low)], diverged))]


def decide_gain(losses: Losses, ours: str, base: str, lrs: Sequence[float], unigram: float,
                diverged: float) -> tuple[Verdict, str]:
    """Claim "ours reaches a lower held-out MLM loss than base". ``not measured`` if either did not learn (guard);
    else :func:`rules.superiority` of the paired best-lr-against-best-lr gain."""
    why = learned_guard(losses, (ours, base), lrs, unigram, diverged)
    if why is not None:
        return "not measured", why
    e = gain(losses, ours, base, lrs, diverged)
    return rules.superiority(e), f"{base} − {ours} held-out loss at each one's best lr: {e.mean:+.3g} ({se_text(e)})"


def learned_amount(losses: Losses, name: str, lr: float, unigram: float, diverged: float) -> list[float]:
    """Per seed, how far the held-out loss ends below the learning threshold ``unigram − LEARN_MARGIN`` (0 for a
    run that did not learn, or diverged)."""
    return [max(0.0, unigram - LEARN_MARGIN - v) for v in filled(losses[(name, lr)], diverged)]


def decide_robustness(losses: Losses, ours: str, base: str, low: float, high: float, unigram: float,
                      diverged: float) -> tuple[Verdict, str]:
    """Claim "ours trains well over a wider range of learning rates than base", tested where raising the lr from
    ``low`` to ``high`` hurts base. ``not measured`` if ours or base did not learn at ``low``; ``inconclusive`` if the
    high lr does not clearly hurt base (:func:`penalty`, superiority: the range did not test robustness); else
    :func:`rules.superiority` of ours − base's :func:`learned_amount` at ``high``, paired by seed, with ``min_effect``
    ROBUST_MIN: holds if ours learns more there by 2 s.e.; does not hold if the interval lies below ROBUST_MIN (as
    when neither learns at ``high``: ours fails where base fails)."""
    for name in (ours, base):
        e = rules.estimate(filled(losses[(name, low)], diverged))
        if not rules.learned(e, unigram - LEARN_MARGIN, higher_is_better=False):
            return "not measured", rules.not_learned_reason(f"{name}'s held-out MLM loss at lr {low:g}", e.mean,
                                                            unigram, f"unigram loss by {LEARN_MARGIN} nats")
    eb = rules.estimate(penalty(losses, base, low, high, diverged))
    eo = rules.estimate(penalty(losses, ours, low, high, diverged))
    pen = f"loss penalty of lr {high:g} over {low:g}: {base} {eb}, {ours} {eo}"
    if rules.superiority(eb) != "holds":
        return "inconclusive", f"{pen}; the higher lr does not clearly hurt {base}: the range does not test robustness"
    lb = learned_amount(losses, base, high, unigram, diverged)
    lo = learned_amount(losses, ours, high, unigram, diverged)
    e = rules.paired(lo, lb)
    note = f"; neither learned at lr {high:g}" if max(lb + lo) == 0.0 else ""
    return (rules.superiority(e, min_effect=ROBUST_MIN),
            f"{pen}; nats below the learning threshold at lr {high:g}, {ours} − {base}: {e}{note}")


# --- tables and figures -----------------------------------------------------------------------------------------

def summary_rows(results: dict[Any, Any]) -> list[list[Any]]:
    """[name, lr, mean, s.e., min, max, diverged] of the held-out losses of each (configuration, lr)."""
    rows = []
    for (n, lr), r in results.items():
        ok = [v for v in r["eval"] if math.isfinite(v)]
        e = rules.estimate(ok)
        rows.append([n, lr, e.mean, e.se, min(ok, default=math.nan), max(ok, default=math.nan),
                     len(r["eval"]) - len(ok)])
    return rows


def se_text(e: rules.Estimate) -> str:
    """"s.e. 0.012, 3 seeds", or "1 seed, no s.e."."""
    return f"s.e. {e.se:.2g}, {e.n} seeds" if math.isfinite(e.se) else f"{e.n} seed, no s.e."


def lrs_text(lrs: Sequence[float]) -> str:
    return " and ".join(f"{x:g}" for x in lrs)


def setup_text(steps: int, seeds: int, lrs: Sequence[float], n_eval: int) -> str:
    """The ``setup`` line of the entries built on this run."""
    return (f"MLM on SST-2 training sentences (WordPiece, 1,000-piece vocabulary, 24 tokens, 15 % masked), 4 layers, "
            f"d = 64, 4 heads, Adam without warm-up, batch 64, {steps:,} steps at lr {lrs_text(lrs)}, {seeds} seed(s) "
            f"paired by data order and masks; held-out loss on the masked tokens of {n_eval:,} sentences.")


def loss_table(results: dict[Any, Any], steps: int, seeds: int, uni: dict[str, float], first: str) -> Any:
    """The table of held-out losses per (configuration, lr), with the unigram baseline in its title."""
    from .result import Table

    return Table(f"Held-out MLM loss after {steps:,} steps ({seeds} seed(s)); unigram entropy {uni['entropy']:.3f}, "
                 f"unigram cross-entropy on the held-out masks {uni['heldout_ce']:.3f}",
                 [first, "lr", "mean", "s.e.", "min", "max", "diverged"], summary_rows(results))


def curves_figure(results: dict[Any, Any], names: Any, lrs: Sequence[float], unigram: float) -> Any:
    """Smoothed training curves (seed 0), one panel per learning rate, with the unigram loss as a line."""
    from .common import pyplot

    plt = pyplot()
    fig, axes = plt.subplots(1, len(lrs), figsize=(3.6 * len(lrs), 3.4), sharey=True, squeeze=False)
    for ax, lr in zip(axes[0], lrs):
        for name in names:
            ax.plot(smooth(results[(name, lr)]["curves"][0]), label=name)
        ax.axhline(unigram, color="grey", ls=":", label="unigram loss")
        ax.set_title(f"lr {lr:g}")
        ax.set_xlabel("step")
    axes[0][0].set_ylabel("training MLM loss (smoothed, seed 0)")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return fig
