"""Reproduction: MLM and MAE from the dropout viewpoint (kexue.fm/archives/8770).

1. **The expected-embedding correction.** A tiny BERT (2 layers, d = 64) is pre-trained with BERT's 15/80/10/10
   masking on a synthetic Markov language (vocabulary 200, two chains mixed); it is then fine-tuned on "which chain
   generated this sequence" (500 labels; see :func:`_markov`) from the same checkpoint with and without the one-off correction
   E[i] ← 0.865·E[i] + 0.12·E[mask] + 0.015·mean(E), several seeds; a frozen-feature logistic-regression probe
   gives a second, seed-free comparison.
2. **DropToken.** A 2-layer, d = 64 encoder trained from scratch on a synthetic keyword-count classification
   (vocabulary 1,000, length 128, 10 % label noise) with drop ratios r ∈ {0, 0.1, 0.15, 0.25, 0.5}: time per epoch
   and dev accuracy. The equivalence behind it (DropToken = the dropped keys masked in every layer) is measured on
   the trained model, and the MAE weight-average argument (Norm(A ⊗ E[M̃]) = A while E[Norm(A ⊗ M̃)] ≠ A) by Monte
   Carlo.

Quick: 60 pre-training steps, 2 fine-tuning seeds; DropToken on 400 examples for 1 epoch, 1 seed (smoke runs).
Full: 1,000 pre-training steps (about a minute), 5 seeds; DropToken on 2k/2k for 3 epochs, 3 seeds.
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models import Transformer, TransformerConfig
from ..train.mlm import DropToken, MLMMasking
from .common import pyplot
from .result import Post, Result, Table

POST = Post(title="Dropout视角下的MLM和MAE：一些新的启发", gloss="MLM and MAE from the dropout viewpoint: some new insights",
            date="2021-11-29", url="https://kexue.fm/archives/8770")

PAD, MASK, CLS, SEP = 0, 1, 2, 3
SPECIALS = (PAD, MASK, CLS, SEP)
RATIOS = (0.0, 0.1, 0.15, 0.25, 0.5)


def _mean_std(xs: list[float]) -> tuple[float, float]:
    m = sum(xs) / len(xs)
    return m, (math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else float("nan"))


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


def _fit(model: Classifier, x: Tensor, y: Tensor, epochs: int, lr: float, seed: int, batch_size: int = 32,
         drop: DropToken | None = None) -> list[float]:
    """Adam fine-tuning; returns the wall seconds of each epoch."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    times = []
    model.train()
    for _ in range(epochs):
        start = time.perf_counter()
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), batch_size):
            idx = perm[i:i + batch_size]
            ids = x[idx]
            mask = (ids != PAD).long()
            if drop is not None:
                out = drop(ids, mask)
                logits = model(out.input_ids, out.attention_mask, out.position_ids)
            else:
                logits = model(ids, mask)
            loss = F.cross_entropy(logits, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - start)
    model.eval()
    return times


@torch.no_grad()
def _accuracy(model: Classifier, x: Tensor, y: Tensor, batch_size: int = 256) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        ids = x[i:i + batch_size]
        correct += int((model(ids, (ids != PAD).long()).argmax(-1) == y[i:i + batch_size]).sum())
    return correct / len(x)


# -- part 1: the embedding correction ---------------------------------------------------------------------------


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


def _pretrain(steps: int, seed: int = 0, vocab: int = 200, length: int = 32, batch: int = 64,
              mix: float = 1.0) -> tuple[Transformer, dict[str, Any]]:
    a, b, start = _markov(vocab, seed, mix)
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
        half = batch // 2
        ids = torch.cat([_sequences(a, start, half, length, g), _sequences(b, start, batch - half, length, g)])
        x, y = masking(ids)
        logits = model(x).mlm_logits
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        curve.append(loss.item())
    model.eval()
    task = {"a": a, "b": b, "start": start, "length": length, "masking": masking}
    return model, {"curve": curve, "task": task}


def _chain_task(task: dict[str, Any], n: int, seed: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    half = n // 2
    x = torch.cat([_sequences(task["a"], task["start"], half, task["length"], g),
                   _sequences(task["b"], task["start"], n - half, task["length"], g)])
    y = torch.cat([torch.zeros(half, dtype=torch.long), torch.ones(n - half, dtype=torch.long)])
    perm = torch.randperm(n, generator=g)
    return x[perm], y[perm]


@torch.no_grad()
def _features(encoder: Transformer, x: Tensor) -> Tensor:
    h = encoder(x, attention_mask=(x != PAD).long()).last_hidden_state
    return h.mean(1)


def _probe(encoder: Transformer, train: tuple[Tensor, Tensor], dev: tuple[Tensor, Tensor]) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(_features(encoder, train[0]).numpy())
    clf = LogisticRegression(max_iter=2000, C=1.0)
    clf.fit(scaler.transform(_features(encoder, train[0]).numpy()), train[1].numpy())
    return float(clf.score(scaler.transform(_features(encoder, dev[0]).numpy()), dev[1].numpy()))


def correction_experiment(quick: bool) -> dict[str, Any]:
    steps, seeds, epochs = (60, 2, 2) if quick else (1000, 5, 6)
    model, info = _pretrain(steps)
    task = info["task"]
    train = _chain_task(task, 500, seed=10)
    dev = _chain_task(task, 1000, seed=11)
    corrected = copy.deepcopy(model)
    task["masking"].correct_embeddings_(corrected.embeddings.word)  # specials excluded (never masked)
    w0, w1 = model.embeddings.word.weight.detach(), corrected.embeddings.word.weight.detach()
    rel_change = float(((w1 - w0).norm(dim=1) / w0.norm(dim=1))[len(SPECIALS):].mean())
    acc: dict[str, list[float]] = {"plain": [], "corrected": []}
    for seed in range(seeds):
        for name, base in (("plain", model), ("corrected", corrected)):
            torch.manual_seed(100 + seed)
            clf = Classifier(copy.deepcopy(base))
            _fit(clf, *train, epochs=epochs, lr=5e-4, seed=100 + seed)
            acc[name].append(_accuracy(clf, *dev))
    probe = {"plain": _probe(model, train, dev), "corrected": _probe(corrected, train, dev)}
    return {"acc": acc, "probe": probe, "rel_change": rel_change, "curve": info["curve"], "steps": steps,
            "seeds": seeds, "epochs": epochs}


# -- part 2: DropToken ------------------------------------------------------------------------------------------


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


def droptoken_experiment(quick: bool) -> dict[str, Any]:
    n_train, n_dev, epochs, seeds = (400, 400, 1, 1) if quick else (2000, 2000, 3, 3)
    train = keyword_task(n_train, seed=1)
    dev = keyword_task(n_dev, seed=2)
    out: dict[float, dict[str, list[float]]] = {r: {"acc": [], "epoch_s": []} for r in RATIOS}
    equivalence = float("nan")
    for seed in range(seeds):
        for r in RATIOS:
            torch.manual_seed(seed)
            cfg = TransformerConfig(vocab_size=1000, hidden_size=64, num_layers=2, num_heads=4, intermediate_size=256,
                                    max_position_embeddings=128, hidden_dropout=0.0, attention_dropout=0.0,
                                    type_vocab_size=0, with_pooler=False)
            clf = Classifier(Transformer(cfg))
            drop = DropToken(r, protect_ids=(CLS, SEP), generator=torch.Generator().manual_seed(seed)) if r else None
            times = _fit(clf, *train, epochs=epochs, lr=1e-3, seed=seed, drop=drop)
            out[r]["acc"].append(_accuracy(clf, *dev))
            out[r]["epoch_s"].append(sum(times) / len(times))
            if r == 0.25 and seed == 0:
                equivalence = _equivalence_gap(clf.encoder, dev[0][:16])
    return {"results": out, "equivalence_max_abs": equivalence, "epochs": epochs, "seeds": seeds,
            "n_train": n_train}


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


# -- the reproduction ---------------------------------------------------------------------------------------------


def run(quick: bool = True) -> Result:
    corr = correction_experiment(quick)
    drop = droptoken_experiment(quick)
    mae = mae_monte_carlo(samples=50_000 if quick else 200_000)

    plain_m, plain_s = _mean_std(corr["acc"]["plain"])
    corr_m, corr_s = _mean_std(corr["acc"]["corrected"])
    delta = corr_m - plain_m
    seed_std = max(plain_s, corr_s) if plain_s == plain_s else float("nan")
    corr_rows = [["plain", plain_m, plain_s, corr["probe"]["plain"]],
                 ["corrected", corr_m, corr_s, corr["probe"]["corrected"]],
                 ["Δ (corrected − plain)", delta, float("nan"), corr["probe"]["corrected"] - corr["probe"]["plain"]]]
    res = drop["results"]
    drop_rows = []
    for r in RATIOS:
        m, s = _mean_std(res[r]["acc"])
        t, _ = _mean_std(res[r]["epoch_s"])
        drop_rows.append([r, m, s, t, t / _mean_std(res[0.0]["epoch_s"])[0]])
    base_m, base_s = _mean_std(res[0.0]["acc"])
    times = [_mean_std(res[r]["epoch_s"])[0] for r in RATIOS]
    monotone = all(b < a for a, b in zip(times, times[1:]))
    rec_m = max(_mean_std(res[r]["acc"])[0] for r in (0.1, 0.15))
    half_m = _mean_std(res[0.5]["acc"])[0]

    enough = corr["seeds"] >= 2 and drop["seeds"] >= 2
    corr_ok = abs(delta) <= seed_std
    corr_bad = abs(delta) > 2 * seed_std
    drop_ok = monotone and rec_m >= base_m - base_s and half_m < base_m
    drop_bad = (not monotone) or rec_m < base_m - 2 * base_s
    if not enough:
        verdict = "inconclusive"
    elif corr_ok and drop_ok:
        verdict = "holds"
    elif corr_bad or drop_bad:
        verdict = "does not hold"
    else:
        verdict = "inconclusive"

    plt = pyplot()
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(13, 3.6))
    ax1.plot(corr["curve"])
    ax1.set_title(f"MLM pre-training loss ({corr['steps']} steps)")
    ax1.set_xlabel("step")
    for name, c in (("plain", "C0"), ("corrected", "C1")):
        ax2.scatter([name] * len(corr["acc"][name]), corr["acc"][name], color=c)
    ax2.set_title("fine-tuned dev accuracy per seed")
    ax3b = ax3.twinx()
    ax3.errorbar(RATIOS, [row[1] for row in drop_rows], yerr=[0 if row[2] != row[2] else row[2] for row in drop_rows],
                 marker="o", color="C0")
    ax3b.plot(RATIOS, [row[3] for row in drop_rows], marker="s", color="C3")
    ax3.set_xlabel("DropToken ratio r")
    ax3.set_ylabel("dev accuracy", color="C0")
    ax3b.set_ylabel("seconds per epoch", color="C3")
    ax3.set_title("DropToken: accuracy and epoch time")
    fig.tight_layout()

    summary = (f"correction: dev acc {plain_m:.3f} → {corr_m:.3f} (Δ {delta:+.3f}, seed std {seed_std:.3f}; probe "
               f"{corr['probe']['plain']:.3f} → {corr['probe']['corrected']:.3f}); DropToken acc "
               + ", ".join(f"r={row[0]:g} {row[1]:.3f}" for row in drop_rows)
               + "; time/epoch × " + ", ".join(f"{row[4]:.2f}" for row in drop_rows))
    notes = [
        f"Correction applied once after pre-training to the token embeddings only, [PAD]/[MASK]/[CLS]/[SEP] excluded "
        f"(never masked); mean relative change of a row ‖ΔE_i‖/‖E_i‖ = {corr['rel_change']:.3f}. The random 10 % "
        "draws uniformly over the vocabulary, so the mean is the plain mean of all rows (the post's formula).",
        f"Fine-tuning: mean pooling + linear head, Adam 5e-4, {corr['epochs']} epochs on 500 labels, dev 1,000; "
        "the probe is a logistic regression on frozen mean-pooled features (no seed).",
        f"DropToken: {drop['n_train']} training examples, {drop['epochs']} epoch(s), {drop['seeds']} seed(s), from "
        "scratch (2 layers, d = 64, Adam 1e-3, mean pooling); [CLS]/[SEP] protected; survivors keep their position "
        "ids. Times are wall seconds on a shared machine.",
        f"DropToken equals masking the dropped keys in every layer: max |Δ| = {drop['equivalence_max_abs']:.2e} on "
        "the trained r = 0.25 model (tests assert 1e-5).",
        f"MAE as attention dropout (n = 6, keep p = 0.75, one column mask shared by all rows, rows renormalised): "
        f"max |E[Norm(A⊗M̃)] − A| = {mae['model_average_gap']:.4f} (Monte Carlo, std error ≤ "
        f"{mae['mc_std_error']:.1e}) while max |Norm(A⊗E[M̃]) − A| = {mae['weight_average_gap']:.1e}: the weight "
        "average is the original model exactly, the model average is not.",
        "The post's numbers are CLUE dev accuracies of BERT-base (no offline Chinese model here); these are "
        "synthetic stand-ins for the two mechanisms.",
    ]
    if quick:
        notes.insert(0, "Quick mode is a smoke run (short pre-training, 2 fine-tuning seeds, 1 DropToken seed of 1 "
                        "epoch): the verdict needs the full mode.")
    return Result(
        name="mlm_dropout", post=POST,
        claim="MLM is dropout on the input, so the weight-average correction E[i] ← 0.865·E[i] + 0.12·E[mask] + "
              "0.015·mean(E) should remove the pretrain/fine-tune mismatch, yet on CLUE it gave no significant "
              "change; DropToken (drop tokens, keep positions) at r = 0.1–0.15 is as good as or better than no "
              "dropping and makes epochs faster, while r = 0.5 hurts.",
        measured=summary, verdict=verdict,  # type: ignore[arg-type]
        rule="with ≥ 2 seeds in both parts: holds if |Δacc| of the correction is within one seed std AND DropToken's "
             "epoch time falls monotonically with r, the best of r ∈ {0.1, 0.15} is within one seed std of r = 0 or "
             "better, and r = 0.5 is below r = 0; does not hold if |Δacc| exceeds two seed stds, or the epoch time "
             "does not fall, or r ∈ {0.1, 0.15} is more than two stds below r = 0; otherwise inconclusive.",
        tables=[Table("Embedding correction: dev accuracy of 'which Markov chain' after fine-tuning (mean, std over "
                      "seeds) and a frozen-feature probe", ["model", "fine-tuned mean", "std", "probe"], corr_rows),
                Table("DropToken: dev accuracy and time per epoch by drop ratio",
                      ["r", "dev acc mean", "std", "s / epoch", "× r = 0"], drop_rows)],
        figures=[("mlm_dropout", fig)],
        numbers={"correction": {k: v for k, v in corr.items() if k != "curve"}, "droptoken": {
            "results": {str(r): v for r, v in res.items()}, "equivalence_max_abs": drop["equivalence_max_abs"]},
            "mae": mae},
        notes=notes, quick=quick)
