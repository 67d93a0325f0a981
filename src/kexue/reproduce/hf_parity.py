"""Reproduction: kexue's Transformer gives transformers' outputs on all-MiniLM-L6-v2.

Not a blog post: the foundation every other reproduction stands on. bert4keras, the blog's own library, loads
Google's BERT checkpoints into Keras; kexue loads Hugging Face checkpoints into its own PyTorch Transformer.
Measured here against ``transformers``' ``BertModel`` (SDPA attention), each side with its own tokenizer:

1. token ids of every STS-B test sentence, kexue's tokenizer against transformers' ``AutoTokenizer``;
2. the maximum absolute difference of the last hidden state (every position, padding included), of every hidden
   state and of the pooler output, on a padded batch of 64 real sentences; for the plain forward and for the
   oneDNN fast path that ``encode`` uses;
3. STS-B test Spearman of mean pooling: kexue's ``encode`` (as ``kexue.embed.sts.evaluate`` runs it) against
   transformers' BertModel with mean pooling written out here (not through kexue). Full mode adds STS-B dev and SICK-R
   test.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from ..data.registry import MissingData
from .common import pyplot
from .result import Post, Result, Table

POST = Post(
    title="bert4keras → kexue: Hugging Face parity",
    gloss="Not a blog post: the port's foundation check, kexue's Transformer against transformers' BertModel on "
          "the same checkpoint (bert4keras is the blog's own Keras library)",
    date="2026-11-21",
    url="https://github.com/bojone/bert4keras",
)

#: The verdict's tolerances.
MAX_DIFF = 1e-5
SPEARMAN_TOL = 1e-4


def _vocabulary_sentences(model_dir: Any, n: int, seed: int = 0) -> list[str]:
    """``n`` sentences of 4–20 whole-word lowercase pieces drawn from the model's own vocab.txt (a fixed seed): input
    for the tokenization and forward checks when no STS data is present."""
    words = [w for w in (model_dir / "vocab.txt").read_text(encoding="utf-8").split("\n")
             if w.isalpha() and w.islower() and len(w) > 2]
    g = np.random.default_rng(seed)
    return [" ".join(g.choice(words, size=int(g.integers(4, 21)))) for _ in range(n)]


def _hf_mean_embeddings(texts: list[str], model: Any, tokenizer: Any, batch_size: int = 64) -> torch.Tensor:
    """transformers' side: its tokenizer, its BertModel, mean pooling over the attention mask (as
    sentence-transformers' Pooling does). Batches are sorted by token count only to spend less time on padding."""
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=256)["input_ids"]]
    order = np.argsort(lengths, kind="stable")
    out = torch.empty(len(texts), model.config.hidden_size)
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            idx = order[start:start + batch_size]
            batch = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=256,
                              return_tensors="pt")
            h = model(**batch).last_hidden_state
            m = batch["attention_mask"].unsqueeze(-1).to(h.dtype)
            out[torch.from_numpy(idx)] = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return out


def _pair_cosines(texts: list[str], vecs: torch.Tensor, s1: list[str], s2: list[str]) -> np.ndarray:
    from ..embed.sts import cosine_scores

    index = {t: i for i, t in enumerate(texts)}
    a = vecs[torch.tensor([index[s] for s in s1])]
    b = vecs[torch.tensor([index[s] for s in s2])]
    return cosine_scores(a, b).numpy()


def _forward_diffs(kx: Any, hf: Any, batch: dict[str, torch.Tensor], kernel: str | None) -> dict[str, Any]:
    with torch.no_grad():
        ref = hf(**batch, output_hidden_states=True)
        if kernel is None:
            out = kx(**batch, output_hidden_states=True)
        else:
            with kx.fast_inference(kernel):
                out = kx(**batch, output_hidden_states=True)
    real = batch["attention_mask"].bool()
    d_last = (out.last_hidden_state - ref.last_hidden_state).abs()
    return {
        "last_hidden_all": d_last.max().item(),
        "last_hidden_real_tokens": d_last[real].max().item(),
        "per_layer": [(a - b).abs().max().item() for a, b in zip(out.hidden_states, ref.hidden_states)],
        "per_layer_real_tokens": [(a - b).abs()[real].max().item()
                                  for a, b in zip(out.hidden_states, ref.hidden_states)],
        "pooler": (out.pooler_output - ref.pooler_output).abs().max().item(),
        "scale": ref.last_hidden_state.abs().max().item(),
    }


def _figure(plain: dict[str, Any], fast: dict[str, Any], fast_kernel: str, cos_diff: np.ndarray):
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    x = np.arange(len(plain["per_layer"]))
    ax1.bar(x - 0.27, plain["per_layer"], width=0.27, label="plain forward, all positions")
    ax1.bar(x, fast["per_layer_real_tokens"], width=0.27, label=f"fast path ({fast_kernel}), real tokens")
    ax1.bar(x + 0.27, fast["per_layer"], width=0.27, label=f"fast path ({fast_kernel}), all positions")
    ax1.axhline(MAX_DIFF, color="k", ls="--", lw=1, label=f"{MAX_DIFF:g}")
    ax1.set_yscale("symlog", linthresh=1e-9)
    ax1.set_ylim(0, 1e-3)
    ax1.set_xticks(x, ["emb"] + [str(i) for i in range(1, len(x))])
    ax1.set_xlabel("hidden_states index")
    ax1.set_title("max |kexue − transformers|, padded batch of 64")
    if max(plain["per_layer"]) == 0.0:
        ax1.text(0.02, 0.93, "plain forward: 0 at every layer", transform=ax1.transAxes, fontsize=8)
    ax1.legend(fontsize=7, loc="lower right")
    ax2.hist(cos_diff, bins=60)
    if cos_diff.size == 0:
        ax2.text(0.5, 0.5, "no STS data: Spearman not measured", transform=ax2.transAxes, ha="center")
    ax2.set_title("STS-B test, per pair: cos(kexue) − cos(transformers)")
    ax2.set_xlabel("difference (kexue via encode's default path)")
    fig.tight_layout()
    return fig


def run(quick: bool = True) -> Result:
    from .common import transformers_quiet

    transformers = transformers_quiet()

    from ..data.datasets import STSSet, load_sts
    from ..embed import encode
    from ..embed.sts import spearman
    from ..env import minilm_path
    from ..models import Tokenizer, load_pretrained
    from ..nn.frozen_linear import onednn_available

    path = minilm_path()
    kx_model, kx_tok = load_pretrained(path), Tokenizer.from_pretrained(path)
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(path))
    hf_model = transformers.AutoModel.from_pretrained(str(path), attn_implementation="sdpa").eval()
    skipped: list[str] = []
    try:
        test = load_sts("stsb", "test")
    except MissingData as e:  # tokenization and the forward still run, on sentences drawn from the vocabulary
        test = None
        skipped.append(f"STS-B tokenization and Spearman (the forward runs on vocabulary sentences): {e}")
    source = "the STS-B test sentences" if test is not None else "256 sentences of random vocabulary words"

    # 1. tokenization
    texts = (list(dict.fromkeys(test.sentences1 + test.sentences2)) if test is not None
             else _vocabulary_sentences(path, 256))
    kx_ids = [e.ids for e in kx_tok.encode_raw(texts)]
    hf_ids = hf_tok(texts, truncation=True, max_length=256)["input_ids"]
    token_mismatches = sum(a != list(b) for a, b in zip(kx_ids, hf_ids))

    # 2. forward on a padded batch of real sentences
    sample = test.sentences1[:32] + test.sentences2[:32] if test is not None else texts[:64]
    batch = dict(hf_tok(sample, padding=True, truncation=True, max_length=256, return_tensors="pt"))
    plain = _forward_diffs(kx_model, hf_model, batch, None)
    fast_kernel = "onednn" if onednn_available() else "torch"
    fast = _forward_diffs(kx_model, hf_model, batch, fast_kernel)
    n_pad = int((batch["attention_mask"] == 0).sum())

    # 3. STS Spearman, mean pooling
    sets: list[tuple[STSSet, str]] = ([] if test is None else [("stsb", "test")] if quick else
                                      [("stsb", "test"), ("stsb", "dev"), ("sick-r", "test")])
    rows: list[list[Any]] = []
    sts_numbers: dict[str, dict[str, float]] = {}
    cos_diff = np.zeros(0)
    for name, split in sets:
        try:
            data = test if (name, split) == ("stsb", "test") else load_sts(name, split)
        except MissingData as e:
            skipped.append(f"{name} {split} Spearman: {e}")
            continue
        assert data is not None
        uniq = data.unique_sentences()
        # kexue: what kexue.embed.sts.evaluate does (each distinct sentence encoded once), kept open for the cosines
        t0 = time.perf_counter()
        kx_vecs = encode(uniq, kx_model, kx_tok, pooling="mean", progress=False)
        cos_kx = _pair_cosines(uniq, kx_vecs, data.sentences1, data.sentences2)
        rho_kx = spearman(cos_kx, data.scores)
        t_kx = time.perf_counter() - t0
        t0 = time.perf_counter()
        hf_vecs = _hf_mean_embeddings(uniq, hf_model, hf_tok)
        cos_hf = _pair_cosines(uniq, hf_vecs, data.sentences1, data.sentences2)
        rho_hf = spearman(cos_hf, data.scores)
        t_hf = time.perf_counter() - t0
        if (name, split) == ("stsb", "test"):
            cos_diff = cos_kx - cos_hf
        rows.append([f"{name} {split}", len(data), rho_kx, rho_hf, rho_kx - rho_hf, t_kx, t_hf])
        sts_numbers[f"{name}/{split}"] = {"kexue": rho_kx, "transformers": rho_hf, "pairs": len(data),
                                          "seconds_kexue": t_kx, "seconds_transformers": t_hf}

    d_rho = max((abs(r[4]) for r in rows), default=0.0)
    ok = token_mismatches == 0 and plain["last_hidden_all"] <= MAX_DIFF and d_rho <= SPEARMAN_TOL
    tables = [
        Table(f"Forward on a padded batch of 64 of {source} ({n_pad} padded positions): max |Δ|",
              ["path", "last hidden (all positions)", "last hidden (real tokens)", "any hidden state", "pooler",
               "max |value|"],
              [["plain forward", plain["last_hidden_all"], plain["last_hidden_real_tokens"], max(plain["per_layer"]),
                plain["pooler"], plain["scale"]],
               [f"fast path ({fast_kernel}), used by encode", fast["last_hidden_all"],
                fast["last_hidden_real_tokens"], max(fast["per_layer"]), fast["pooler"], fast["scale"]]]),
        Table("Spearman of cosine similarity, mean pooling (kexue: encode's default path; transformers: BertModel "
              "with mean pooling written out)",
              ["set", "pairs", "kexue", "transformers", "difference", "kexue s", "transformers s"], rows),
        Table(f"Tokenization of {source}", ["sentences", "token-id sequences that differ"],
              [[len(texts), token_mismatches]]),
    ]
    summary = (f"plain forward max |Δ| {plain['last_hidden_all']:.2e} (fast path {fast['last_hidden_all']:.2e}); "
               + (f"STS-B test Spearman kexue {rows[0][2]:.6f} vs transformers {rows[0][3]:.6f}; " if rows else "")
               + f"{token_mismatches} tokenization differences")
    notes = [
        "The fast path (Transformer.fast_inference, oneDNN matmuls with prepacked weights and one fused Q/K/V "
        "product) rounds its sums differently from MKL, so its hidden states differ from transformers by float "
        "rounding; the rule judges the plain forward, and the fast path's effect shows in the Spearman column "
        f"and in the figure (per-pair cosine differences up to {np.abs(cos_diff).max(initial=0.0):.1e}).",
        "transformers' embeddings are computed in batches sorted by token count; padding is masked out, so the "
        "order changes only rounding.",
    ]
    return Result(
        name="hf_parity",
        post=POST,
        claim="kexue reproduces transformers' outputs: the same checkpoint gives the same hidden states and the "
              "same STS-B Spearman.",
        measured=summary,
        verdict="verified" if ok else "not verified",
        kind="mechanics",
        post_figure="no figure in the post (not a blog post: bert4keras loads the same checkpoints exactly)",
        our_figure=f"max |Δ| {plain['last_hidden_all']:.3g}"
                   + (f"; STS-B Spearman {rows[0][2]:.4f} vs {rows[0][3]:.4f}" if rows else "")
                   + f"; {token_mismatches} token differences",
        setup=f"all-MiniLM-L6-v2 loaded by kexue and by transformers (BertModel, SDPA); {source}; mean pooling"
              + ("" if quick else "; full mode adds STS-B dev and SICK-R test") + ".",
        skipped=skipped,
        rule=f"verified if the plain forward's last hidden state is within {MAX_DIFF:g} of transformers at every "
             f"position of the padded batch, every Spearman agrees to {SPEARMAN_TOL:g}, and both tokenizers give "
             "the same ids; otherwise not verified.",
        tables=tables,
        figures=[("parity", _figure(plain, fast, fast_kernel, cos_diff))],
        numbers={"token_mismatches": token_mismatches, "forward_plain": plain, "forward_fast": fast,
                 "fast_kernel": fast_kernel, "padded_positions": n_pad, "spearman": sts_numbers},
        notes=notes,
        quick=quick,
    )
