"""A small masked-LM pre-training run on real sentences, shared by the RealFormer and talking-heads reproductions.

Corpus: SST-2 training sentences (../shared/data/sst2), tokenised with all-MiniLM-L6-v2's WordPiece tokenizer; the
vocabulary is cut to the most frequent pieces (the rest become [UNK]) so a tiny model's softmax stays cheap.
Masking: 15 % of the real tokens (never [CLS]/[SEP]) become [MASK]; the loss is cross-entropy on them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch

from ..data.classification import sst2
from ..env import minilm_path
from ..models import Tokenizer, Transformer, TransformerConfig

PAD, MASK, UNK, CLS, SEP = 0, 1, 2, 3, 4


@dataclass
class Corpus:
    train: torch.Tensor  # (N, seq_len) token ids, PAD-padded
    eval: torch.Tensor
    vocab_size: int


@lru_cache(maxsize=2)
def corpus(seq_len: int = 24, vocab: int = 1000, n_eval: int = 512) -> Corpus:
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


def pretrain(seed: int, lr: float, steps: int, batch: int = 32, **config: Any) -> dict[str, Any]:
    """Train a 4-layer, d = 64 MLM (Adam, no warm-up) and return the loss curve and the held-out MLM loss
    (NaN if training diverged). Runs are cached by their arguments within a process: the reproductions that share a
    baseline (same seed, lr, steps and config) train it once."""
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
    curve = []
    for _ in range(steps):
        idx = torch.randint(0, len(data.train), (batch,), generator=g)
        ids = data.train[idx]
        x, y = mask_tokens(ids, g)
        logits = model(x, attention_mask=(ids != PAD).long()).mlm_logits
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        opt.step()
        curve.append(loss.item())
    model.eval()
    with torch.no_grad():
        x, y = mask_tokens(data.eval, torch.Generator().manual_seed(123))
        logits = model(x, attention_mask=(data.eval != PAD).long()).mlm_logits
        ev = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=-100).item()
    return {"curve": curve, "eval_loss": ev}


def smooth(curve: list[float], k: int = 20) -> list[float]:
    out, acc = [], 0.0
    for i, v in enumerate(curve):
        acc += v
        if i >= k:
            acc -= curve[i - k]
        out.append(acc / min(i + 1, k))
    return out


def compare(configs: dict[str, dict[str, Any]], lrs: tuple[float, ...], steps: int, seeds: int) -> dict[str, Any]:
    """Run every configuration at every learning rate and seed: {(name, lr): {"eval": [...], "curves": [...]}}."""
    out: dict[str, Any] = {}
    for name, cfg in configs.items():
        for lr in lrs:
            runs = [pretrain(s, lr, steps, **cfg) for s in range(seeds)]
            out[(name, lr)] = {"eval": [r["eval_loss"] for r in runs], "curves": [r["curve"] for r in runs]}
    return out


def verdict(results: dict[str, Any], ours: str, base: str, lrs: tuple[float, ...], margin: float = 0.01) -> str:
    """'holds' if ``ours`` has the lower mean held-out loss than ``base`` at every lr by more than ``margin``,
    'does not hold' if higher at every lr by more than ``margin``, else 'inconclusive'."""
    def mean(key: tuple[str, float]) -> float:
        v = results[key]["eval"]
        return sum(v) / len(v)

    diffs = [mean((ours, lr)) - mean((base, lr)) for lr in lrs]
    if any(d != d for d in diffs):  # NaN: a diverged run
        return "inconclusive"
    if all(d < -margin for d in diffs):
        return "holds"
    if all(d > margin for d in diffs):
        return "does not hold"
    return "inconclusive"


def summary_rows(results: dict[str, Any]) -> list[list[Any]]:
    """[name, lr, mean, min, max] of the held-out losses of each (configuration, lr)."""
    return [[n, lr, sum(r["eval"]) / len(r["eval"]), min(r["eval"]), max(r["eval"])] for (n, lr), r in results.items()]


def mean_eval(results: dict[str, Any], name: str, lr: float) -> float:
    v = results[(name, lr)]["eval"]
    return sum(v) / len(v)


def curves_figure(results: dict[str, Any], names: Any, lrs: tuple[float, ...]) -> Any:
    """Smoothed training curves (seed 0), one panel per learning rate."""
    from .common import pyplot

    plt = pyplot()
    fig, axes = plt.subplots(1, len(lrs), figsize=(10, 3.4), sharey=True)
    for ax, lr in zip(axes, lrs):
        for name in names:
            ax.plot(smooth(results[(name, lr)]["curves"][0]), label=name)
        ax.set_title(f"lr {lr:g}")
        ax.set_xlabel("step")
    axes[0].set_ylabel("training MLM loss (smoothed, seed 0)")
    axes[0].legend()
    fig.tight_layout()
    return fig
