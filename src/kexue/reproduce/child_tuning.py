"""Reproduction: ChildTuning, what if we put dropout on the gradient? (kexue.fm/archives/8764, 2021-11-22).

Kind: empirical. Su's reading has two parts, each judged against an explicit equivalence margin with the 2-s.e.
interval of the measurement: Adam's long-run step under gradient dropout is √p times the plain step (margin 5 %, the
spec's), and ChildTuning's fine-tuning effect is small (margin: 1 accuracy point, the size of most of Su's CLUE
differences, or 2 seed standard deviations of AdamW where that is larger: the noise of one fine-tuning run).

Quick:
1. the √p claim: Adam (β = (0.9, 0.999), lr 1e-3) fed stationary gradients g ~ N(0.1, 1) per coordinate, d = 4000,
   3k steps; the mean update over the last 2k steps with ChildTuning-F gradient dropout at p ∈ {0.1, 0.25, 0.5}
   against none; and the SGD view: the masked gradient's mean (≈ μ) and variance (σ² + (1−p)/p·(μ² + σ²));
2. fine-tuning all-MiniLM-L6-v2 on SST-2 (64 training sentences, 160 test sentences from the GLUE dev set): its top
   block and a new linear head on mean pooling train (the five lower blocks are frozen and their outputs computed
   once, to fit a CPU budget), AdamW (block lr 1e-4, head 1e-3, 3 epochs, batch 16) against ChildTuning-F (p = 0.3)
   and ChildTuning-D (p = 0.2, Fisher on the training sentences) on the block's parameters, 3 seeds.
Full: d = 1000 and 20k steps (last 10k) for the √p check; the top two blocks, 400 training and all 872 test sentences,
4 seeds, and also F on the increment (p = 0.3), F at p = 0.2 and AdamW with lr·√0.3 (Su's equivalence).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from ..models import Transformer
from ..nn.padding import pad
from ..optim import ChildTuning, fisher_mask
from .common import pyplot
from .result import Post, Result, Table, Verdict
from .rules import Estimate, all_of, equivalence, estimate, learned, not_learned_reason, paired

POST = Post(title="ChildTuning：试试把Dropout加到梯度上去？",
            gloss="ChildTuning: what if we put dropout on the gradient?", date="2021-11-22",
            url="https://kexue.fm/archives/8764")

P_VALUES = (0.1, 0.25, 0.5)
SQRT_P_TOLERANCE = 0.05
#: The smallest equivalence margin for fine-tuning accuracy (1 point: most of Su's CLUE differences are within it).
MIN_MARGIN = 0.01
BASELINE, LR_SQRT = "AdamW", "AdamW, lr·√0.3"


# ------------------------------------------------------------------------------------------- 1. the √p claim
def sqrt_p_adam(steps: int, last: int, d: int = 1000, mu: float = 0.1, sigma: float = 1.0,
                seed: int = 0) -> dict[float, tuple[float, float]]:
    """Mean Adam update per step over the last ``last`` steps, without dropout (key 1.0) and at each p: (mean over the
    d coordinates, its standard error; coordinates are independent, as Adam and the masks are element-wise)."""
    out = {}
    for p in (1.0, *P_VALUES):
        w = nn.Parameter(torch.zeros(d, dtype=torch.float64))
        base = torch.optim.Adam([w], lr=1e-3, betas=(0.9, 0.999))
        opt = base if p == 1.0 else ChildTuning(base, reserve_p=p, generator=torch.Generator().manual_seed(seed + 1))
        g = torch.Generator().manual_seed(seed)
        start = w.detach().clone()  # replaced at step steps − last
        for t in range(steps):
            if t == steps - last:
                start = w.detach().clone()
            w.grad = mu + sigma * torch.randn(d, generator=g, dtype=torch.float64)
            opt.step()
        u = -(w.detach() - start) / last  # descent: θ moves against the mean gradient
        out[p] = (float(u.mean()), float(u.std() / math.sqrt(d)))
    return out


def sqrt_p_deviation(updates: dict[float, tuple[float, float]]) -> dict[float, Estimate]:
    """ratio/√p − 1 for each p, ratio = mean update at p / without dropout, with the delta-method standard error
    (the two means treated as independent, which overstates it: they share the gradient noise)."""
    m1, s1 = updates[1.0]
    out = {}
    for p, (mp, sp) in updates.items():
        if p == 1.0:
            continue
        r = mp / m1
        se = abs(r) * math.sqrt((sp / mp) ** 2 + (s1 / m1) ** 2)
        out[p] = Estimate(r / math.sqrt(p) - 1, se / math.sqrt(p), 2)
    return out


def sgd_view(p: float, mu: float = 0.1, sigma: float = 1.0, d: int = 1000, steps: int = 100,
             seed: int = 0) -> tuple[float, float, float, float]:
    """Monte Carlo of the masked gradient g·ε/p through ChildTuning + SGD(lr = 1): mean, variance, and their closed
    forms μ and σ² + (1 − p)/p·(μ² + σ²)."""
    g = torch.Generator().manual_seed(seed)
    samples = []
    for _ in range(steps):
        w = nn.Parameter(torch.zeros(d, dtype=torch.float64))
        opt = ChildTuning(torch.optim.SGD([w], lr=1.0), reserve_p=p, generator=g)
        w.grad = mu + sigma * torch.randn(d, generator=g, dtype=torch.float64)
        opt.step()
        samples.append(-w.detach())
    x = torch.cat(samples)
    return float(x.mean()), float(x.var()), mu, sigma**2 + (1 - p) / p * (mu**2 + sigma**2)


# ------------------------------------------------------------------------------------------- 2. fine-tuning
class _CachedInput(nn.Module):
    """Stands in for the embeddings of the top-block model: returns the frozen lower blocks' output for the batch."""

    def __init__(self) -> None:
        super().__init__()
        self.current: torch.Tensor | None = None

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        assert self.current is not None
        return self.current


class TopClassifier(nn.Module):
    """The top ``n_top`` blocks of a kexue Transformer (fed cached hidden states) + a linear head on mean pooling."""

    def __init__(self, model: Transformer, n_top: int, num_classes: int, seed: int) -> None:
        super().__init__()
        # the embeddings are replaced by the cache: a one-token vocabulary saves initialising a 30522-row table
        cfg = dataclasses.replace(model.config, num_layers=n_top, vocab_size=1, pad_token_id=0, with_pooler=False,
                                  with_mlm=False, with_nsp=False)
        self.top = Transformer(cfg)
        self.top.blocks.load_state_dict(model.blocks[len(model.blocks) - n_top:].state_dict())
        self.cache = _CachedInput()
        self.top.add_module("embeddings", self.cache)  # the top blocks read the cached hidden states
        torch.manual_seed(seed)
        self.head = nn.Linear(cfg.hidden_size, num_classes)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        self.cache.current = hidden
        x, _ = self.top.run_encoder(torch.zeros_like(mask), mask)
        self.cache.current = None
        m = mask.unsqueeze(-1).to(x.dtype)
        return self.head((x * m).sum(1) / m.sum(1))


def _cache(model: Transformer, tokenizer: Any, texts: list[str], n_frozen: int, max_length: int,
           batch: int = 32) -> list[torch.Tensor]:
    """The output of the embeddings and the first ``n_frozen`` blocks for each text, unpadded."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out: dict[int, torch.Tensor] = {}
    with torch.no_grad():
        for s in range(0, len(texts), batch):
            idx = order[s:s + batch]
            enc = tokenizer([texts[i] for i in idx], max_length=max_length)
            _, hidden = model.run_encoder(enc["input_ids"], enc["attention_mask"], output_hidden_states=True)
            assert hidden is not None  # asked for with output_hidden_states=True
            h = hidden[n_frozen]
            for j, i in enumerate(idx):
                out[i] = h[j, : int(enc["attention_mask"][j].sum())].clone()
    return [out[i] for i in range(len(texts))]


def _batches(xs: list[torch.Tensor], ys: np.ndarray, batch: int, order: list[int]):
    for s in range(0, len(order), batch):
        idx = order[s:s + batch]
        h, mask = pad([xs[i] for i in idx])
        yield h, mask, torch.as_tensor(ys[idx])


def _loss(model: nn.Module, b: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
    h, mask, y = b
    return nn.functional.cross_entropy(model(h, mask), y)


def fine_tune(variant: str, base_model: Transformer, n_top: int, train: tuple[list[torch.Tensor], np.ndarray],
              test: tuple[list[torch.Tensor], np.ndarray], seed: int, epochs: int = 3, batch: int = 16,
              block_lr: float = 1e-4, head_lr: float = 1e-3) -> float:
    """Test accuracy of one fine-tuning run."""
    clf = TopClassifier(base_model, n_top, 2, seed)
    blocks = list(clf.top.parameters())
    block_ids = {id(p) for p in blocks}
    lr_scale = math.sqrt(0.3) if variant == "AdamW, lr·√0.3" else 1.0
    base = torch.optim.AdamW([{"params": blocks, "lr": block_lr * lr_scale},
                              {"params": list(clf.head.parameters()), "lr": head_lr * lr_scale}], weight_decay=0.01)
    gen = torch.Generator().manual_seed(10_000 + seed)

    def only_blocks(name: str, p: torch.Tensor) -> bool:  # ChildTuning scores the encoder only
        return id(p) in block_ids

    if variant.startswith("ChildTuning-F"):
        p = 0.2 if "p=0.2" in variant else 0.3
        opt: torch.optim.Optimizer = ChildTuning(base, "F", reserve_p=p, param_filter=only_blocks, generator=gen,
                                                 mask_on="update" if "increment" in variant else "grad")
    elif variant.startswith("ChildTuning-D"):
        xs, ys = train
        masks = fisher_mask(clf, list(_batches(xs, ys, batch, list(range(len(ys))))), _loss, 0.2,
                            param_filter=lambda n, p: n.startswith("top."))
        opt = ChildTuning(base, "D", reserve_p=0.2, masks=masks)
    else:
        opt = base
    xs, ys = train
    torch.manual_seed(20_000 + seed)  # dropout and shuffling
    clf.train()
    for _ in range(epochs):
        order = torch.randperm(len(ys)).tolist()
        for b in _batches(xs, ys, batch, order):
            opt.zero_grad()
            _loss(clf, b).backward()
            opt.step()
    clf.eval()
    xs, ys = test
    correct = 0
    with torch.no_grad():
        order = sorted(range(len(ys)), key=lambda i: xs[i].shape[0])
        for h, mask, y in _batches(xs, ys, 64, order):
            correct += int((clf(h, mask).argmax(-1) == y).sum())
    return correct / len(ys)


def finetune_experiment(quick: bool) -> tuple[dict[str, list[float]], dict[str, Any]]:
    from ..data.classification import load
    from ..env import minilm_path
    from ..models import Tokenizer, load_pretrained

    n_train, n_test, n_top, seeds = (64, 160, 1, 3) if quick else (400, 872, 2, 4)
    tr = load("sst2", "train").subsample(n_train, seed=0)  # the data first: a missing set fails before the model loads
    te = load("sst2", "test").subsample(n_test, seed=0)
    path = minilm_path()
    model = load_pretrained(path)
    tokenizer = Tokenizer.from_pretrained(path)
    variants = [BASELINE, "ChildTuning-F (grad, p=0.3)", "ChildTuning-D (p=0.2)"]
    if not quick:
        variants += ["ChildTuning-F (grad, p=0.2)", "ChildTuning-F (increment, p=0.3)", LR_SQRT]
    n_frozen = len(model.blocks) - n_top
    train = (_cache(model, tokenizer, tr.texts, n_frozen, 32), tr.labels)
    test = (_cache(model, tokenizer, te.texts, n_frozen, 32), te.labels)
    frozen = copy.deepcopy(model).eval()
    scores = {v: [fine_tune(v, frozen, n_top, train, test, seed) for seed in range(seeds)] for v in variants}
    majority = float(np.bincount(np.asarray(te.labels)).max() / len(te.labels))
    setup = {"task": "SST-2", "train": n_train, "test": n_test, "trainable_blocks": n_top, "seeds": seeds,
             "majority": majority}
    return scores, setup


# ------------------------------------------------------------------------------------------- the rule
def ft_margin(baseline: list[float]) -> float:
    """The fine-tuning equivalence margin: 2 seed standard deviations of AdamW's accuracy, at least MIN_MARGIN."""
    sd = float(np.std(baseline, ddof=1)) if len(baseline) > 1 else math.nan
    return max(MIN_MARGIN, 2 * sd) if math.isfinite(sd) else MIN_MARGIN


def decide(deviation: dict[float, Estimate], scores: dict[str, list[float]] | None,
           majority: float) -> tuple[Verdict, str]:
    """The verdict and its reason, from the √p deviations (ratio/√p − 1 with standard errors) and the fine-tuning
    accuracies per seed (``None`` when the fine-tuning part was skipped).

    √p part: :func:`equivalence` of each deviation with margin ``SQRT_P_TOLERANCE``; ``does not hold`` ends it.
    Fine-tuning: ``not measured`` if skipped or if AdamW does not beat the majority class by 2 s.e.; else each
    ChildTuning variant − AdamW (paired by seed) and, where run, F (grad, p = 0.3) − AdamW at lr·√0.3, by
    :func:`equivalence` with :func:`ft_margin`. All parts combine by :func:`all_of`.
    """
    sqrt_parts = {p: equivalence(e, SQRT_P_TOLERANCE) for p, e in deviation.items()}
    sqrt_v = all_of(*sqrt_parts.values())
    sqrt_txt = "√p: " + ", ".join(f"p={p} ratio/√p − 1 = {e.mean:+.3g} ± {e.se:.2g} ({sqrt_parts[p]})"
                                  for p, e in deviation.items())
    if sqrt_v == "does not hold":
        return sqrt_v, sqrt_txt
    if scores is None:
        return "not measured", f"the fine-tuning part was skipped (its data or model is missing); {sqrt_txt}"
    base = estimate(scores[BASELINE])
    if not learned(base, majority):
        return "not measured", not_learned_reason("AdamW test accuracy", base.mean, majority, "majority class")
    margin = ft_margin(scores[BASELINE])
    pairs = [(v, BASELINE) for v in scores if v not in (BASELINE, LR_SQRT)]
    if LR_SQRT in scores:
        pairs.append(("ChildTuning-F (grad, p=0.3)", LR_SQRT))
    parts = {f"{a} − {b}": (paired(scores[a], scores[b]), equivalence(paired(scores[a], scores[b]), margin))
             for a, b in pairs}
    verdict = all_of(sqrt_v, *(v for _, v in parts.values()))
    return verdict, (f"{sqrt_txt}; fine-tuning, margin ±{margin:.3g} accuracy: "
                     + "; ".join(f"{k} = {d} ({v})" for k, (d, v) in parts.items()))


# ------------------------------------------------------------------------------------------- run
def run(quick: bool = True) -> Result:
    t0 = time.perf_counter()
    steps, last, dim = (3000, 2000, 4000) if quick else (20000, 10000, 1000)
    updates = sqrt_p_adam(steps, last, d=dim)
    dev = sqrt_p_deviation(updates)
    ratios = {p: updates[p][0] / updates[1.0][0] for p in P_VALUES}
    sgd = {p: sgd_view(p) for p in P_VALUES}
    skipped: list[str] = []
    scores: dict[str, list[float]] | None
    try:
        scores, setup = finetune_experiment(quick)
    except (FileNotFoundError, ModuleNotFoundError) as e:  # MissingData is a FileNotFoundError
        scores, setup = None, {}
        skipped.append(f"the fine-tuning part: {e}")
    verdict, reason = decide(dev, scores, setup.get("majority", math.nan))

    tables = [
        Table(f"Adam with gradient dropout: mean update over the last {last} of {steps} steps, g ~ N(0.1, 1), "
              f"d = {dim}", ["p", "mean update", "ratio to no dropout", "√p", "ratio / √p − 1 (± s.e.)",
                            f"within ±{100 * SQRT_P_TOLERANCE:.0f} %"],
              [[1.0, updates[1.0][0], 1.0, 1.0, "—", "—"]]
              + [[p, updates[p][0], ratios[p], math.sqrt(p), f"{dev[p].mean:+.3g} ± {dev[p].se:.2g}",
                  equivalence(dev[p], SQRT_P_TOLERANCE)] for p in P_VALUES]),
        Table("SGD view: the masked gradient g·ε/p (Monte Carlo, 100k draws) against the closed forms",
              ["p", "mean", "μ", "variance", "σ² + (1−p)/p·(μ²+σ²)"],
              [[p, m, mu, v, cv] for p, (m, v, mu, cv) in sgd.items()]),
    ]
    r_txt = ", ".join(f"p={p}: {ratios[p]:.3f} (√p {math.sqrt(p):.3f})" for p in P_VALUES)
    measured = f"Adam update ratios {r_txt}"
    our_figure = "ratio/√p − 1: " + ", ".join(f"{100 * dev[p].mean:+.2g} %" for p in P_VALUES)
    numbers: dict[str, Any] = {"adam_mean_update": {str(k): v for k, v in updates.items()},
                               "ratios": {str(k): v for k, v in ratios.items()},
                               "sqrt_p_deviation": {str(p): {"mean": e.mean, "se": e.se} for p, e in dev.items()},
                               "sgd_view": {str(p): {"mean": m, "var": v, "mu": mu, "var_closed_form": cv}
                                            for p, (m, v, mu, cv) in sgd.items()}}
    if scores is not None:
        margin = ft_margin(scores[BASELINE])
        ft_rows = []
        for v, sc in scores.items():
            d = paired(sc, scores[BASELINE])
            ft_rows.append([v, float(np.mean(sc)), float(np.std(sc, ddof=1)),
                            "—" if v == BASELINE else str(d), "—" if v == BASELINE else equivalence(d, margin)])
        tables.append(Table(
            f"Fine-tuning all-MiniLM-L6-v2 on {setup['task']} ({setup['train']} train / {setup['test']} test "
            f"sentences, top {setup['trainable_blocks']} block(s) + head, {setup['seeds']} seeds; majority class "
            f"{setup['majority']:.3f}): test accuracy", ["variant", "mean", "std over seeds", "− AdamW (paired)",
                                                         f"within ±{margin:.3g}"], ft_rows))
        gaps = {v: paired(sc, scores[BASELINE]).mean for v, sc in scores.items() if v != BASELINE}
        measured += "; fine-tuning accuracy " + "; ".join(
            f"{v} {100 * np.mean(sc):.1f} ± {100 * np.std(sc, ddof=1):.1f}" for v, sc in scores.items())
        our_figure += "; fine-tuning − AdamW: " + ", ".join(f"{100 * g:+.2g} pts" for g in gaps.values())
        numbers["finetune"] = {"setup": setup, "accuracy": scores, "margin": margin}
    notes = [
        "Su's reading: under Adam, gradient dropout scales the long-run step by √p (a smaller lr), not a larger "
        "variance; in fine-tuning, effects are small and mixed (his CLUE table: ±1 point, either sign).",
        "ChildTuning masks the trainable encoder block(s) only (as the official code scores encoder layers); the head "
        "updates normally. D mode divides by p as the post does (the official code does not).",
        "CPU budget: the lower blocks are frozen and their outputs cached; the post fine-tunes whole BERT/RoBERTa "
        "models on CLUE, which cannot run here (no Chinese model offline).",
        f"Took {time.perf_counter() - t0:.1f} s.",
    ]
    ft_setup = ("" if scores is None else
                f"; all-MiniLM-L6-v2 top {setup['trainable_blocks']} block(s) + head on SST-2 ({setup['train']} "
                f"train / {setup['test']} test), AdamW 3 epochs, {setup['seeds']} seeds per variant")
    return Result(
        name="child_tuning",
        post=POST,
        kind="empirical",
        claim="Under Adam, gradient dropout with keep probability p scales the long-run update by √p (Adam with "
              "lr·√p), rather than adding variance as in SGD; ChildTuning's fine-tuning gains are small and mixed.",
        post_figure="CLUE dev, grad-drop − baseline: BERT −2.63 … +0.95, RoBERTa −2.96 … +0.23 points (7 tasks)",
        our_figure=our_figure,
        setup=f"Adam on synthetic gradients g ~ N(0.1, 1), d = {dim}, {steps} steps (last {last}){ft_setup}.",
        measured=measured,
        verdict=verdict,
        reason=reason,
        rule=f"Each part is an equivalence: holds if the 2-s.e. interval lies inside ±margin, does not hold if it "
             f"lies wholly outside, inconclusive otherwise. √p: ratio/√p − 1 with margin {SQRT_P_TOLERANCE:.0%} "
             f"(standard error over the d coordinates); does not hold ends the rule. Fine-tuning: not measured if "
             f"skipped or if AdamW does not beat the majority class by 2 s.e.; each ChildTuning variant − AdamW "
             f"(paired by seed; in full mode also F − AdamW at lr·√0.3) with margin max({MIN_MARGIN:g}, 2 seed-std "
             f"of AdamW). The verdict combines every part: holds if all hold, does not hold if any does not.",
        tables=tables,
        figures=[("child_tuning", _figure(ratios, scores or {}))],
        numbers=numbers,
        notes=notes,
        skipped=skipped,
        quick=quick,
    )


def _figure(ratios: dict[float, float], scores: dict[str, list[float]]):
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10.5, 3.8), gridspec_kw={"width_ratios": [1, 1.6]})
    ps = np.linspace(0.05, 1, 100)
    ax1.plot(ps, np.sqrt(ps), "k--", lw=1, label="√p")
    ax1.plot(list(ratios), list(ratios.values()), "o", label="measured (Adam)")
    ax1.set_xlabel("keep probability p")
    ax1.set_ylabel("mean update / no dropout")
    ax1.set_title("Gradient dropout under Adam")
    ax1.legend()
    names = list(scores)
    for i, v in enumerate(names):
        ax2.scatter(np.full(len(scores[v]), i), scores[v], alpha=0.6)
        ax2.errorbar(i + 0.15, np.mean(scores[v]), yerr=np.std(scores[v], ddof=1), fmt="k_", capsize=3)
    ax2.set_xticks(range(len(names)), [n.replace(" (", "\n(") for n in names], fontsize=7)
    ax2.set_ylabel("test accuracy")
    ax2.set_title("Fine-tuning all-MiniLM-L6-v2 on SST-2 (seeds, mean ± std)")
    fig.tight_layout()
    return fig
