"""The two experiments of the `adversarial` reproduction (:mod:`kexue.reproduce.adversarial`, which judges them).

1. :func:`equivalence`: FGM's gradient against the gradient with its matching penalty on a float64
   Embedding → mean-pool → MLP toy with repeated tokens, for the weight, output and mixed scopes.
2. :func:`finetune_experiment`: all-MiniLM-L6-v2 + a linear head fine-tuned on SST-2 plain, with FGM and with the
   gradient penalty (:func:`train_one`), scored clean and under an embedding-space attack (:func:`evaluate`).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any, TypedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..models import Transformer
from ..nn.padding import pad
from ..train import FGM, fgm_step, gradient_penalty_loss, input_grad_penalty, record_output

EQUIV_EPS = (1e-3, 1e-2, 1e-1)

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (ids, mask, labels)


# ----------------------------------------------------------------------------------------- 1. equivalence
class _Bag(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(30, 8)
        self.mlp = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))

    def head(self, e: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1).to(e.dtype)
        return self.mlp((e * m).sum(1) / m.sum(1))


class EquivalenceRow(TypedDict):
    """One scope and ε of :func:`equivalence`: the cosine and the norm of the difference between the FGM gradient
    and the penalty gradient, and that norm relative to the penalty's own contribution ‖∇(L + penalty) − ∇L‖."""

    scope: str
    epsilon: float
    cosine: float
    diff: float
    rel_to_penalty_part: float


def equivalence(seed: int = 0) -> list[EquivalenceRow]:
    """For each scope and ε: cosine and relative difference of the FGM gradient and the penalty gradient."""
    torch.manual_seed(seed)
    model = _Bag().double()
    g = torch.Generator().manual_seed(seed + 1)
    ids = torch.randint(0, 30, (8, 10), generator=g)
    ids[:, 5] = ids[:, 2]  # repeated tokens (within and across rows)
    ids[1::2, :3] = ids[0::2, :3]
    mask = torch.ones(8, 10, dtype=torch.long)
    mask[::3, 7:] = 0
    y = torch.randint(0, 3, (8,), generator=g)
    params = list(model.parameters())

    def loss_at(delta_w: torch.Tensor | None = None, delta_e: torch.Tensor | None = None) -> torch.Tensor:
        w = model.emb.weight + (delta_w if delta_w is not None else 0)
        e = F.embedding(ids, w) + (delta_e if delta_e is not None else 0)
        return F.cross_entropy(model.head(e, mask), y)

    def flat(ts: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return torch.cat([t.reshape(-1) for t in ts])

    base = flat(torch.autograd.grad(loss_at(), params))
    rows: list[EquivalenceRow] = []
    for scope in ("weight", "output", "mixed"):
        e_out = F.embedding(ids, model.emb.weight)
        loss = F.cross_entropy(model.head(e_out, mask), y)
        target = model.emb.weight if scope in ("weight", "mixed") else e_out
        G = torch.autograd.grad(loss, target, retain_graph=True)[0].detach()
        for eps in EQUIV_EPS:
            # the FGM gradient: weight scope (and "mixed") moves the matrix, output scope the embedding outputs
            if scope == "output":
                fgm = flat(torch.autograd.grad(loss_at(delta_e=eps * G), params))
            else:
                fgm = flat(torch.autograd.grad(loss_at(delta_w=eps * G), params))
            # the penalty: on the matrix gradient for the weight scope, on the output gradient otherwise ("mixed":
            # the matrix perturbation against Su's output penalty, not equivalent when tokens repeat)
            e2 = F.embedding(ids, model.emb.weight)
            l2 = F.cross_entropy(model.head(e2, mask), y)
            wrt = model.emb.weight if scope == "weight" else e2
            pen = flat(torch.autograd.grad(l2 + input_grad_penalty(l2, wrt, weight=eps / 2), params))
            diff = float((fgm - pen).norm())
            rows.append(EquivalenceRow(scope=scope, epsilon=eps, cosine=float(F.cosine_similarity(fgm, pen, dim=0)),
                                       diff=diff, rel_to_penalty_part=diff / float((pen - base).norm())))
    return rows


def difference_order(rows: list[EquivalenceRow], scope: str) -> float:
    """The log-log slope of ‖difference‖ against ε in ``scope`` (2 for a difference of O(ε²))."""
    r = [x for x in rows if x["scope"] == scope]
    return float(np.polyfit(np.log([x["epsilon"] for x in r]), np.log([x["diff"] for x in r]), 1)[0])


# ----------------------------------------------------------------------------------------- 2. fine-tuning
class Classifier(nn.Module):
    """A kexue Transformer, mean pooling over real tokens, a linear head."""

    def __init__(self, encoder: Transformer, num_classes: int, seed: int) -> None:
        super().__init__()
        self.encoder = encoder
        torch.manual_seed(seed)
        self.head = nn.Linear(encoder.config.hidden_size, num_classes)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.encoder(ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).to(x.dtype)
        return self.head((x * m).sum(1) / m.sum(1))


def classifier_loss(model: nn.Module, batch: Batch) -> torch.Tensor:
    """Cross-entropy of ``model(ids, mask)`` against the batch's labels."""
    ids, mask, y = batch
    return F.cross_entropy(model(ids, mask), y)


def encode_texts(tokenizer: Any, texts: list[str], max_length: int) -> list[list[int]]:
    """Token ids of each text (special tokens included, no padding), cut to ``max_length``."""
    enc = tokenizer(texts, max_length=max_length)
    return [row[: int(m.sum())].tolist() for row, m in zip(enc["input_ids"], enc["attention_mask"])]


def length_batches(seqs: list[list[int]], labels: np.ndarray, batch: int, gen: torch.Generator | None) -> list[Batch]:
    """Length buckets: shuffled (with ``gen``) in chunks of 4 batches, sorted by length inside a chunk."""
    order = torch.randperm(len(seqs), generator=gen).tolist() if gen is not None else list(range(len(seqs)))
    out: list[Batch] = []
    for c in range(0, len(order), 4 * batch):
        chunk = sorted(order[c:c + 4 * batch], key=lambda i: len(seqs[i]))
        for s in range(0, len(chunk), batch):
            idx = chunk[s:s + batch]
            ids, mask = pad([seqs[i] for i in idx])
            out.append((ids, mask, torch.as_tensor(labels[idx], dtype=torch.long)))
    if gen is not None:
        perm = torch.randperm(len(out), generator=gen).tolist()
        out = [out[i] for i in perm]
    return out


def prune_vocabulary(encoder: Transformer, seqs: list[list[int]]) -> dict[int, int]:
    """Keep only the word-embedding rows of the tokens in ``seqs`` (and the padding id 0); return old → new ids."""
    used = sorted({0, *(t for s in seqs for t in s)})
    remap = {old: new for new, old in enumerate(used)}
    word = encoder.embeddings.word
    small = nn.Embedding(len(used), word.embedding_dim, padding_idx=0)
    with torch.no_grad():
        small.weight.copy_(word.weight[torch.as_tensor(used)])
    encoder.embeddings.word = small
    return remap


def train_one(variant: str, encoder: Transformer, train: tuple[list[list[int]], np.ndarray], seed: int, epochs: int,
              batch: int = 16) -> tuple[Classifier, float]:
    """Fine-tune a copy of ``encoder`` + a new head; returns the model and the training seconds."""
    model = Classifier(copy.deepcopy(encoder), 2, seed).train()
    # few steps on a CPU budget: a larger lr than BERT's usual 2e-5, and 1e-2 for the new head
    opt = torch.optim.AdamW([{"params": model.encoder.parameters(), "lr": 1e-4},
                             {"params": model.head.parameters(), "lr": 1e-2}], weight_decay=0.01)
    fgm = None
    if variant == "FGM (post)":
        fgm = FGM.preset("post", model)
    elif variant == "FGM (clean+adv)":
        fgm = FGM.preset("pytorch", model, epsilon=0.5)
    gen = torch.Generator().manual_seed(1000 + seed)
    torch.manual_seed(2000 + seed)  # dropout
    t0 = time.process_time()
    for _ in range(epochs):
        for b in length_batches(*train, batch, gen):
            if fgm is not None:
                fgm_step(model, b, classifier_loss, opt, fgm)
            elif variant == "gradient penalty":
                total, _, _ = gradient_penalty_loss(model, b, classifier_loss, epsilon=1.0, mask=b[1])
                opt.zero_grad()
                total.backward()
                opt.step()
            else:
                opt.zero_grad()
                classifier_loss(model, b).backward()
                opt.step()
    return model.eval(), time.process_time() - t0


def evaluate(model: Classifier, test: tuple[list[list[int]], np.ndarray], eps_list: tuple[float, ...],
             per_example: dict[str, np.ndarray] | None = None) -> dict[str, float]:
    """Clean accuracy and accuracy under the embedding attack: each real token's word-embedding output moved by
    ε_att·g_i/‖g_i‖, g_i = ∂(summed cross-entropy)/∂e_i (each sentence's own gradient; one step, true labels).

    ``per_example``, when given, receives {key: 0/1 correctness per test example}, in one fixed order (the unshuffled
    length buckets), so two models' outcomes pair example by example."""
    word = model.encoder.embeddings.word
    hits: dict[str, list[np.ndarray]] = {"clean": [], **{f"attack {e:g}": [] for e in eps_list}}
    for ids, mask, y in length_batches(*test, 64, None):
        with record_output(word) as rec:
            logits = model(ids, mask)
        hits["clean"].append((logits.argmax(-1) == y).numpy())
        (g,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), rec.output)
        g = g * mask.unsqueeze(-1)
        unit = g / g.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        for e in eps_list:
            handle = word.register_forward_hook(_shift_output((e * unit).detach()))
            try:
                with torch.no_grad():
                    hits[f"attack {e:g}"].append((model(ids, mask).argmax(-1) == y).numpy())
            finally:
                handle.remove()
    flat = {k: np.concatenate(v).astype(float) for k, v in hits.items()}
    if per_example is not None:
        per_example.update(flat)
    return {k: float(v.mean()) for k, v in flat.items()}


def _shift_output(delta: torch.Tensor) -> Callable[[nn.Module, Any, torch.Tensor], torch.Tensor]:
    """A forward hook that adds ``delta`` to the module's output."""

    def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        return output + delta

    return hook


def finetune_experiment(quick: bool) -> dict[str, Any]:
    """Fine-tune plain, FGM (post) and the gradient penalty for each seed; per-seed results, the setup and the
    (seeds, test examples) correctness of each variant, clean and under each attack."""
    from ..data.classification import load
    from ..env import minilm_path
    from ..models import Tokenizer, load_pretrained

    n_layers, n_train, n_test, epochs, seeds = (3, 192, 128, 1, 3) if quick else (6, 600, 300, 1, 3)
    eps_list = (0.02,) if quick else (0.02, 0.05)
    variants = ["plain", "FGM (post)", "gradient penalty"]
    path = minilm_path()
    tokenizer = Tokenizer.from_pretrained(path)
    encoder = load_pretrained(path)
    if n_layers < len(encoder.blocks):
        import dataclasses

        encoder.blocks = encoder.blocks[:n_layers]
        encoder.config = dataclasses.replace(encoder.config, num_layers=n_layers)
    encoder.pooler = None
    tr = load("sst2", "train").subsample(n_train, seed=0)
    te = load("sst2", "test").subsample(n_test, seed=0)
    tr_seqs, te_seqs = encode_texts(tokenizer, tr.texts, 32), encode_texts(tokenizer, te.texts, 32)
    remap = prune_vocabulary(encoder, tr_seqs + te_seqs)
    tr_seqs = [[remap[t] for t in s] for s in tr_seqs]
    te_seqs = [[remap[t] for t in s] for s in te_seqs]
    results: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    outcomes: dict[str, dict[str, list[np.ndarray]]] = {v: {} for v in variants}
    for seed in range(seeds):
        for v in variants:
            model, secs = train_one(v, encoder, (tr_seqs, tr.labels), seed, epochs)
            per: dict[str, np.ndarray] = {}
            res = evaluate(model, (te_seqs, te.labels), eps_list, per)
            res["train_cpu_s"] = secs
            results[v].append(res)
            for k, x in per.items():
                outcomes[v].setdefault(k, []).append(x)
    setup = {"layers": n_layers, "train": n_train, "test": n_test, "epochs": epochs, "seeds": seeds,
             "eps_attack": list(eps_list), "vocab_rows": len(remap),
             "majority": float(np.bincount(te.labels).max() / len(te.labels))}
    return {"results": results, "setup": setup,
            "outcomes": {v: {k: np.array(x) for k, x in o.items()} for v, o in outcomes.items()}}
