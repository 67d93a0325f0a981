"""The real-sentence part of the ``univae`` reproduction: UniVAE initialised from all-MiniLM-L6-v2, fine-tuned briefly
on STS-B and SICK sentences, with reconstruction before and after and what swapping each latent layer changes.

MiniLM has 6 layers; the post puts latents on the top 4 of 12, so here the top 2 of 6 (the same ratio), with the
post's z_dim = 16, κ = 32 and maxlen = 32. MiniLM has no language-model head: :meth:`UniVAE.from_transformer` makes
one tied to the word embeddings, so "before" is the untrained head (near zero accuracy) and the change is what the
short fine-tune bought. A data set that is missing is left out and named in ``skipped`` with its fetch command.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Any

import torch

from ..data.datasets import STSSet
from ..data.registry import MissingData
from ..generative.univae import UniVAE
from ._univae_mechanics import leakage_check
from .result import Table
from .rules import Estimate, estimate

MAXLEN = 32
LATENT_LAYERS, Z_DIM, KAPPA = 2, 16, 32.0
LR, BATCH = 1e-4, 16
#: The sets whose sentences train (their train splits) and test (their test splits) the model.
SETS: tuple[tuple[STSSet, str], ...] = (("stsb", "STS-B"), ("sick-r", "SICK-R"))


def load_sentences(skipped: list[str]) -> tuple[list[str], list[str]]:
    """(train, held-out) distinct sentences of the sets present (train splits, test splits); each missing set is
    named in ``skipped`` with the command that fetches it."""
    from ..data.datasets import load_sts

    train: list[str] = []
    test: list[str] = []
    for name, label in SETS:
        try:
            tr, te = load_sts(name, "train"), load_sts(name, "test")
        except MissingData as e:
            skipped.append(f"UniVAE from MiniLM on {label} sentences: {e}")
            continue
        train += tr.unique_sentences()
        test += te.unique_sentences()
    seen = set(train)
    return list(dict.fromkeys(train)), [s for s in dict.fromkeys(test) if s not in seen]


def _encode(tok: Any, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, 1/0 mask), each (len(texts), MAXLEN): [CLS] … [SEP] cut to MAXLEN and right-padded to it."""
    ids = torch.full((len(texts), MAXLEN), tok.pad_token_id, dtype=torch.long)
    for i, e in enumerate(tok.encode_raw(list(texts), max_length=MAXLEN)):
        ids[i, : len(e.ids)] = torch.tensor(e.ids)
    return ids, (ids != tok.pad_token_id).long()


@torch.no_grad()
def _teacher_forced(model: UniVAE, ids: torch.Tensor, mask: torch.Tensor) -> list[float]:
    """Per text: the decoder's argmax token accuracy with z = z_μ (teacher forcing, targets up to [SEP])."""
    model.eval()
    out = []
    for s in range(0, len(ids), 64):
        b, m = ids[s:s + 64], mask[s:s + 64]
        pred = model(b, m, z=model.encode(b, m)).logits[:, :-1].argmax(-1)
        keep = m[:, 1:].bool()
        out += (((pred == b[:, 1:]) & keep).sum(1) / keep.sum(1)).tolist()
    return out


def _content(ids: Sequence[int], special: set[int]) -> set[int]:
    return {i for i in ids if i not in special}


def _overlap(out: set[int], ref: set[int]) -> float:
    """The fraction of the output's distinct tokens found in ``ref`` (0 for an empty output)."""
    return len(out & ref) / len(out) if out else 0.0


#: Sentences for the zero-leakage check on the MiniLM-initialised model (no data set needed).
LEAK_TEXTS = ("A man is playing a guitar.", "Two dogs run through a field of tall grass.", "The stock market fell "
              "sharply on Monday after the report.", "A woman is slicing an onion.", "Is it safe to swim here?",
              "Children are playing soccer in the park while their parents watch.")


def minilm_leakage() -> dict[str, Any]:
    """Zero leakage (:func:`leakage_check`) on UniVAE initialised from all-MiniLM-L6-v2 (untrained latent layers)."""
    from ._minilm import model_and_tokenizer

    transformer, tok = model_and_tokenizer()
    torch.manual_seed(0)
    model = UniVAE.from_transformer(transformer, num_latent_layers=LATENT_LAYERS, z_dim=Z_DIM, kappa=KAPPA,
                                    maxlen=MAXLEN)
    return leakage_check(model, _encode(tok, LEAK_TEXTS)[0], tok.pad_token_id)


def run_real(train: list[str], test: list[str], steps: int, n_eval: int, n_pairs: int,
             seed: int = 0) -> dict[str, Any]:
    """Fine-tune for ``steps`` (batch :data:`BATCH`, Adam :data:`LR`) and measure: teacher-forced accuracy on
    ``n_eval`` held-out sentences before and after, exact and token-overlap reconstruction of greedy decodes, and
    for ``n_pairs`` held-out pairs (A, B) the greedy decode of A's latent with
    one layer's block from B, scored by the fraction of its distinct tokens found in A and in B."""
    from ._minilm import model_and_tokenizer

    t0 = time.process_time()
    transformer, tok = model_and_tokenizer()
    torch.manual_seed(seed)
    model = UniVAE.from_transformer(transformer, num_latent_layers=LATENT_LAYERS, z_dim=Z_DIM, kappa=KAPPA,
                                    maxlen=MAXLEN)
    rng = random.Random(seed)
    held = rng.sample(test, min(n_eval, len(test)))
    ev_ids, ev_mask = _encode(tok, held)
    before = _teacher_forced(model, ev_ids, ev_mask)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    g = torch.Generator().manual_seed(seed)
    order = rng.sample(train, len(train))
    curve = []
    t1 = time.process_time()
    for step in range(steps):
        batch = [order[(step * BATCH + k) % len(order)] for k in range(BATCH)]
        ids, mask = _encode(tok, batch)
        loss = model.loss(ids, mask, generator=g)
        opt.zero_grad()
        loss.loss.backward()
        opt.step()
        curve.append((float(loss.ce.detach()), float(loss.accuracy)))
    train_seconds = time.process_time() - t1
    after = _teacher_forced(model, ev_ids, ev_mask)
    model.eval()
    bos, eos = int(ev_ids[0, 0]), tok.token_to_id("[SEP]")
    assert eos is not None
    special = {tok.pad_token_id, bos, eos}
    with torch.no_grad():
        z = model.encode(ev_ids, ev_mask)
        decoded = model.decode(z, bos_id=bos, eos_id=eos, pad_id=tok.pad_token_id)
        refs = [_content(r.tolist(), special) for r in ev_ids]
        exact = [d == [int(i) for i in r[1:int(m.sum()) - 1]] for d, r, m in zip(decoded, ev_ids, ev_mask)]
        recon_overlap = [_overlap(_content(d, special), r) for d, r in zip(decoded, refs)]
        pairs = [(a, b) for a, b in (rng.sample(range(len(held)), 2) for _ in range(n_pairs))]
        za, zb = z[[a for a, _ in pairs]], z[[b for _, b in pairs]]
        swaps: dict[int, dict[str, list[float]]] = {}
        examples = []
        for j in range(LATENT_LAYERS):
            zs = za.clone()
            zs[:, j * Z_DIM:(j + 1) * Z_DIM] = zb[:, j * Z_DIM:(j + 1) * Z_DIM]
            outs = model.decode(zs, bos_id=bos, eos_id=eos, pad_id=tok.pad_token_id)
            layer = transformer.config.num_layers - LATENT_LAYERS + j + 1
            swaps[layer] = {"A": [_overlap(_content(o, special), refs[a]) for o, (a, _) in zip(outs, pairs)],
                            "B": [_overlap(_content(o, special), refs[b]) for o, (_, b) in zip(outs, pairs)]}
            examples.append([tok.decode(o) for o in outs[:3]])
        own = model.decode(za, bos_id=bos, eos_id=eos, pad_id=tok.pad_token_id)
        unswapped = {"A": [_overlap(_content(o, special), refs[a]) for o, (a, _) in zip(own, pairs)],
                     "B": [_overlap(_content(o, special), refs[b]) for o, (_, b) in zip(own, pairs)]}
    shown = [[held[a], held[b], *[examples[j][k] for j in range(LATENT_LAYERS)]]
             for k, (a, b) in enumerate(pairs[:3])]
    return {"train_sentences": len(train), "held_out": len(held), "steps": steps,
            "before": before, "after": after, "exact": exact, "recon_overlap": recon_overlap, "swaps": swaps,
            "unswapped": unswapped, "curve": curve, "examples": shown,
            "decoded": [tok.decode(d) for d in decoded[:3]], "references": held[:3],
            "train_seconds": train_seconds, "seconds": time.process_time() - t0}


def _fmt(e: Estimate) -> str:
    return f"{e.mean:.3f} ± {e.se:.2g}"


def real_tables(real: dict[str, Any]) -> list[Table]:
    """The report's tables of :func:`run_real`'s result."""
    b, a = estimate(real["before"]), estimate(real["after"])
    ov = estimate(real["recon_overlap"])
    rows = [["teacher-forced token accuracy (z = z_μ)", _fmt(b), _fmt(a)],
            ["greedy decode: exact", "", f"{sum(real['exact'])}/{len(real['exact'])}"],
            ["greedy decode: share of its distinct tokens found in the input", "", _fmt(ov)]]
    swap_rows = [["none (A's own latent)", _fmt(estimate(real["unswapped"]["A"])),
                  _fmt(estimate(real["unswapped"]["B"]))]]
    for layer, d in real["swaps"].items():
        swap_rows.append([f"layer {layer} from B", _fmt(estimate(d["A"])), _fmt(estimate(d["B"]))])
    return [Table(f"UniVAE from all-MiniLM-L6-v2 on {real['held_out']} held-out STS-B/SICK sentences (before/after "
                  f"{real['steps']} steps on {real['train_sentences']:,} training sentences)",
                  ["measure", "before", "after"], rows),
            Table(f"MiniLM latent swaps ({len(real['unswapped']['A'])} pairs): share of the decode's distinct tokens "
                  "found in A and in B", ["swapped", "in A", "in B"], swap_rows),
            Table("MiniLM swap examples", ["A", "B", *(f"layer {k} from B" for k in real["swaps"])],
                  real["examples"])]


def real_numbers(real: dict[str, Any] | None) -> dict[str, Any] | None:
    """The results.json summary of :func:`run_real`'s result (None when the part did not run)."""
    if real is None:
        return None
    return {"steps": real["steps"], "before": estimate(real["before"]).mean, "after": estimate(real["after"]).mean,
            "exact": sum(real["exact"]), "recon_overlap": estimate(real["recon_overlap"]).mean,
            "swaps": {str(k): {w: estimate(v).mean for w, v in d.items()} for k, d in real["swaps"].items()},
            "unswapped": {w: estimate(v).mean for w, v in real["unswapped"].items()},
            "final_ce": sum(c for c, _ in real["curve"][-20:]) / max(1, len(real["curve"][-20:])),
            "seconds": real["seconds"], "decoded": real["decoded"], "references": real["references"]}
