"""The experiments of the mlm_dropout reproduction (kexue.fm/archives/8770): the synthetic Markov language and its
MLM pre-training, the chain-classification fine-tuning, the keyword-count task, DropToken training and step timing,
the DropToken/masked-keys equivalence and the MAE Monte Carlo. The rule and the report are in :mod:`.mlm_dropout`."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models import Transformer, TransformerConfig
from ..train.mlm import DropToken, MLMMasking

PAD, MASK, CLS, SEP = 0, 1, 2, 3
SPECIALS = (PAD, MASK, CLS, SEP)
#: DropToken training: batch, Adam learning rate (10 % warm-up, linear decay), train and dev sizes.
DROP_BATCH, DROP_LR, N_TRAIN, N_DEV = 16, 3e-3, 2000, 2000

# -- models and training ------------------------------------------------------------------------------------------


class Classifier(nn.Module):
    """A kexue encoder, mean pooling over real tokens, a linear head."""

    def __init__(self, encoder: Transformer, classes: int = 2) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.config.hidden_size, classes)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, position_ids: Tensor | None = None) -> Tensor:
        h = self.encoder(input_ids, attention_mask=attention_mask, position_ids=position_ids).last_hidden_state
        m = attention_mask[..., None].to(h.dtype)
        return self.head((h * m).sum(1) / m.sum(1))


def _loss(model: Classifier, ids: Tensor, y: Tensor, drop: DropToken | None) -> Tensor:
    mask = (ids != PAD).long()
    if drop is None:
        return F.cross_entropy(model(ids, mask), y)
    out = drop(ids, mask)
    return F.cross_entropy(model(out.input_ids, out.attention_mask, out.position_ids), y)


def _fit(model: Classifier, x: Tensor, y: Tensor, steps: int, lr: float, seed: int, batch_size: int = 32,
         drop: DropToken | None = None, schedule: bool = False) -> None:
    """Adam for ``steps`` steps over reshuffled epochs (order from ``seed``); ``schedule``: linear warm-up over the
    first 10 % of the steps, then linear decay to 0."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    warm = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, (lambda s: min(1.0, (s + 1) / warm) * max(0.0, 1 - s / steps)) if schedule else (lambda s: 1.0))
    g = torch.Generator().manual_seed(seed)
    model.train()
    done = 0
    while done < steps:
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), batch_size):
            idx = perm[i:i + batch_size]
            loss = _loss(model, x[idx], y[idx], drop)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            done += 1
            if done == steps:
                break
    model.eval()


@torch.no_grad()
def _dev_accuracy(model: Classifier, x: Tensor, y: Tensor, batch_size: int = 256) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        ids = x[i:i + batch_size]
        correct += int((model(ids, (ids != PAD).long()).argmax(-1) == y[i:i + batch_size]).sum())
    return correct / len(x)


def _majority(y: Tensor) -> float:
    return float(torch.bincount(y).max()) / len(y)


# -- part 1: the embedding correction -----------------------------------------------------------------------------


def _markov(vocab: int, seed: int, mix: float, clusters: int = 20, stay: float = 0.8) -> tuple[Tensor, Tensor, Tensor]:
    """Two block-structured transition matrices over the non-special tokens.

    Tokens fall into ``clusters`` equal groups with fixed within-group frequencies (Dirichlet(1)); a step stays in
    its group with probability ``stay`` and otherwise moves by a group-transition matrix: C_A for chain A,
    (1 − mix)·C_A + mix·C_R for chain B (rows Dirichlet(0.3)). So B = (1 − mix)·A + mix·R at the token level. The
    groups make the language learnable by a tiny MLM in a few hundred steps (a token's group is visible from its
    whole context); telling A from B needs the order of group changes. The start distribution is uniform."""
    n = vocab - len(SPECIALS)
    group = (torch.arange(n) * clusters // n)
    with torch.random.fork_rng():  # torch.distributions takes no generator: seed a forked global RNG
        torch.manual_seed(seed)
        within = torch.distributions.Dirichlet(torch.ones(n)).sample()
        rows = torch.distributions.Dirichlet(torch.full((clusters,), 0.3))
        c_a, c_r = rows.sample((clusters,)), rows.sample((clusters,))
    member = F.one_hot(group, clusters).to(within.dtype)  # (n, clusters)
    emit = member * within[:, None]
    emit = emit / emit.sum(0, keepdim=True)  # (n, clusters): P(token | group)

    def tokens(c: Tensor) -> Tensor:
        moves = stay * torch.eye(clusters) + (1 - stay) * c
        return moves[group] @ emit.T  # P(next token | token) = Σ_g P(g | group(token)) P(next | g)

    a = tokens(c_a)
    return a, tokens((1 - mix) * c_a + mix * c_r), torch.full((n,), 1.0 / n)


def _sequences(trans: Tensor, start: Tensor, n: int, length: int, g: torch.Generator) -> Tensor:
    out = torch.zeros(n, length + 2, dtype=torch.long)
    out[:, 0], out[:, -1] = CLS, SEP
    state = torch.multinomial(start.expand(n, -1), 1, generator=g)[:, 0]
    for t in range(length):
        out[:, t + 1] = state + len(SPECIALS)
        state = torch.multinomial(trans[state], 1, generator=g)[:, 0]
    return out


def _mixed(task: dict[str, Any], n: int, g: torch.Generator) -> Tensor:
    half = n // 2
    return torch.cat([_sequences(task["a"], task["start"], half, task["length"], g),
                      _sequences(task["b"], task["start"], n - half, task["length"], g)])


def _pretrain(steps: int, seed: int = 0, vocab: int = 200, length: int = 32, batch: int = 64,
              mix: float = 1.0) -> tuple[Transformer, dict[str, Any]]:
    a, b, start = _markov(vocab, seed, mix)
    task = {"a": a, "b": b, "start": start, "length": length, "vocab": vocab}
    g = torch.Generator().manual_seed(seed + 1)
    torch.manual_seed(seed)
    cfg = TransformerConfig(vocab_size=vocab, hidden_size=64, num_layers=2, num_heads=4, intermediate_size=256,
                            max_position_embeddings=length + 2, hidden_dropout=0.0, attention_dropout=0.0,
                            type_vocab_size=0, with_pooler=False, with_mlm=True)
    model = Transformer(cfg)
    masking = MLMMasking(MASK, vocab, protect_ids=SPECIALS, generator=torch.Generator().manual_seed(seed + 2))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    warm = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) * max(0.05, 1 - s / steps))
    curve = []
    model.train()
    for _ in range(steps):
        x, y, _ = masking(_mixed(task, batch, g))
        loss = F.cross_entropy(model(x).mlm_logits.flatten(0, 1), y.flatten(), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        curve.append(loss.item())
    model.eval()
    task["masking"] = masking
    return model, {"curve": curve, "task": task}


@torch.no_grad()
def mlm_heldout(model: Transformer, task: dict[str, Any], n: int = 512, seed: int = 50) -> dict[str, float]:
    """Held-out MLM cross-entropy at BERT-masked positions (mean and its standard error over positions) and the
    unigram model's cross-entropy at the same positions, its frequencies (add-½) counted on 2,000 other sequences."""
    g = torch.Generator().manual_seed(seed)
    counts = torch.bincount(_mixed(task, 2000, g).flatten(), minlength=task["vocab"]).double() + 0.5
    counts[list(SPECIALS)] = 0.0
    masking = MLMMasking(MASK, task["vocab"], protect_ids=SPECIALS, generator=torch.Generator().manual_seed(seed))
    x, y, _ = masking(_mixed(task, n, g))
    sel = y != -100
    loss = F.cross_entropy(model(x).mlm_logits[sel], y[sel], reduction="none")
    unigram = -torch.log(counts / counts.sum())[y[sel]]
    return {"loss": float(loss.mean()), "se": float(loss.std() / math.sqrt(len(loss))),
            "unigram": float(unigram.mean())}


def _chain_task(task: dict[str, Any], n: int, seed: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = _mixed(task, n, g)
    y = torch.cat([torch.zeros(n // 2, dtype=torch.long), torch.ones(n - n // 2, dtype=torch.long)])
    perm = torch.randperm(n, generator=g)
    return x[perm], y[perm]


@torch.no_grad()
def _features(encoder: Transformer, x: Tensor) -> Tensor:
    return encoder(x, attention_mask=(x != PAD).long()).last_hidden_state.mean(1)


def _probe(encoder: Transformer, train: tuple[Tensor, Tensor], dev: tuple[Tensor, Tensor]) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(_features(encoder, train[0]).numpy())
    clf = LogisticRegression(max_iter=2000, C=1.0)
    clf.fit(scaler.transform(_features(encoder, train[0]).numpy()), train[1].numpy())
    return float(clf.score(scaler.transform(_features(encoder, dev[0]).numpy()), dev[1].numpy()))


def correction_experiment(cfg: Mapping[str, Any]) -> dict[str, Any]:
    model, info = _pretrain(cfg["pretrain"])
    task = info["task"]
    train, dev = _chain_task(task, 500, seed=10), _chain_task(task, 1000, seed=11)
    corrected = copy.deepcopy(model)
    task["masking"].correct_embeddings_(corrected.embeddings.word)  # specials excluded (never masked)
    w0, w1 = model.embeddings.word.weight.detach(), corrected.embeddings.word.weight.detach()
    rel_change = float(((w1 - w0).norm(dim=1) / w0.norm(dim=1))[len(SPECIALS):].mean())
    acc: dict[str, list[float]] = {"plain": [], "corrected": []}
    steps = cfg["ft_epochs"] * math.ceil(len(train[0]) / 32)
    for seed in range(cfg["ft_seeds"]):
        for name, base in (("plain", model), ("corrected", corrected)):
            torch.manual_seed(100 + seed)
            clf = Classifier(copy.deepcopy(base))
            _fit(clf, *train, steps=steps, lr=5e-4, seed=100 + seed)
            acc[name].append(_dev_accuracy(clf, *dev))
    probe = {k: _probe(m, train, dev) for k, m in (("plain", model), ("corrected", corrected))} if cfg["probe"] else {}
    return {"acc": acc, "probe": probe, "rel_change": rel_change, "curve": info["curve"],
            "mlm": mlm_heldout(model, task),
            "majority": _majority(dev[1]), "n_dev": len(dev[1]), "steps": cfg["pretrain"], "seeds": cfg["ft_seeds"],
            "epochs": cfg["ft_epochs"]}


# -- parts 2 and 3: DropToken -------------------------------------------------------------------------------------


def keyword_task(n: int, seed: int, vocab: int = 1000, length: int = 128,
                 noise: float = 0.1) -> tuple[Tensor, Tensor]:
    """Random filler with 5 keyword tokens (ids 4–8) inserted 0–4 times each; label 1 iff
    c₀ + c₁ + c₂ > c₃ + c₄ + 2 (counts c_j), then 10 % of labels flipped."""
    g = torch.Generator().manual_seed(seed)
    keywords = torch.arange(4, 9)
    x = torch.randint(9, vocab, (n, length), generator=g)
    x[:, 0], x[:, -1] = CLS, SEP
    counts = torch.randint(0, 5, (n, 5), generator=g)
    for r in range(n):
        slots = torch.randperm(length - 2, generator=g)[: int(counts[r].sum())] + 1
        x[r, slots] = keywords.repeat_interleave(counts[r])
    y = ((counts[:, :3].sum(1) - counts[:, 3:].sum(1)) > 2).long()
    flip = torch.rand(n, generator=g) < noise
    return x, torch.where(flip, 1 - y, y)


def _keyword_classifier(seed: int) -> Classifier:
    torch.manual_seed(seed)
    return Classifier(Transformer(TransformerConfig(
        vocab_size=1000, hidden_size=64, num_layers=2, num_heads=4, intermediate_size=256, max_position_embeddings=128,
        hidden_dropout=0.0, attention_dropout=0.0, type_vocab_size=0, with_pooler=False)))


def _drop(r: float, seed: int) -> DropToken | None:
    return DropToken(r, protect_ids=(CLS, SEP), generator=torch.Generator().manual_seed(seed)) if r else None


def droptoken_experiment(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Dev accuracy per ratio and seed; the runs of a seed share initialisation, data order and steps."""
    train, dev = keyword_task(N_TRAIN, seed=1), keyword_task(N_DEV, seed=2)
    acc: dict[float, list[float]] = {r: [] for r in cfg["ratios"]}
    gap = float("nan")
    for seed in range(cfg["seeds"]):
        for r in cfg["ratios"]:
            clf = _keyword_classifier(seed)
            _fit(clf, *train, steps=cfg["steps"], lr=DROP_LR, seed=seed, batch_size=DROP_BATCH, drop=_drop(r, seed),
                 schedule=True)
            acc[r].append(_dev_accuracy(clf, *dev))
            if seed == 0 and r == 0.0:
                gap = _equivalence_gap(clf.encoder, dev[0][:16])
    return {"acc": acc, "majority": _majority(dev[1]), "n_dev": N_DEV, "equivalence_max_abs": gap, **cfg}


def time_steps(ratios: Sequence[float], reps: int, batch: int = 32, seed: int = 0) -> dict[float, list[float]]:
    """CPU seconds (``time.process_time``) of one Adam training step at each ratio. Each repetition draws a new batch
    of the keyword task and runs every ratio on it, the order reversed every other repetition, so a drift in the
    machine's speed falls on all ratios alike; one warm-up step per ratio first."""
    x, y = keyword_task(batch * (reps + 1), seed=3)
    clf = _keyword_classifier(seed)
    opt = torch.optim.Adam(clf.parameters(), lr=1e-4)
    drops = {r: _drop(r, seed) for r in ratios}
    clf.train()
    out: dict[float, list[float]] = {r: [] for r in ratios}
    for i in range(reps + 1):
        ids, labels = x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch]
        for r in (ratios if i % 2 == 0 else ratios[::-1]):
            t0 = time.process_time()
            loss = _loss(clf, ids, labels, drops[r])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if i > 0:
                out[r].append(time.process_time() - t0)
    return out


@torch.no_grad()
def _equivalence_gap(encoder: Transformer, x: Tensor) -> float:
    """max |DropToken output − full sequence with the dropped keys masked in every layer| at kept positions."""
    mask = (x != PAD).long()
    out = DropToken(0.25, protect_ids=(CLS, SEP), generator=torch.Generator().manual_seed(9)).train()(x, mask)
    short = encoder(**out.model_inputs()).last_hidden_state
    full = encoder(x, attention_mask=out.kept.long()).last_hidden_state
    gap = 0.0
    for r in range(len(x)):
        n = int(out.kept[r].sum())
        gap = max(gap, float((short[r, :n] - full[r][out.kept[r]]).abs().max()))
    return gap


def mae_monte_carlo(n: int = 6, p: float = 0.75, samples: int = 200_000, seed: int = 0) -> dict[str, float]:
    """MAE as attention dropout: keep each key column with probability p (one mask shared by all rows), renormalise
    rows. Returns max |E[Norm(A⊗M̃)] − A| (Monte Carlo; the model average) and max |Norm(A⊗E[M̃]) − A| (the weight
    average, exactly 0 up to rounding)."""
    g = torch.Generator().manual_seed(seed)
    a = torch.softmax(torch.randn(n, n, generator=g, dtype=torch.float64) * 2, dim=-1)
    keep = (torch.rand(samples, 1, n, generator=g, dtype=torch.float64) < p).to(torch.float64)
    keep[keep.sum(-1)[..., 0] == 0] = 1.0  # an all-dropped draw keeps everything (probability (1-p)^n)
    masked = a * keep
    model_avg = (masked / masked.sum(-1, keepdim=True)).mean(0)
    weight_avg = (a * p) / (a * p).sum(-1, keepdim=True)
    return {"model_average_gap": float((model_avg - a).abs().max()),
            "weight_average_gap": float((weight_avg - a).abs().max()),
            "mc_std_error": float(((masked / masked.sum(-1, keepdim=True)).std(0) / math.sqrt(samples)).max())}
