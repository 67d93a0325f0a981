"""all-MiniLM-L6-v2 sentence vectors for the reproductions, each text set encoded once per process.

One forward pass with ``output_hidden_states=True`` gives every pooling at once (:func:`kexue.embed.pooling.pool`),
and the vectors are cached in memory by (tag, texts, pooling), so a text set is encoded once per ``kexue
reproduce`` process, whichever of its reproductions (``analytic_logreg``, ``whitening``, ``zlpr``) asks again.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..embed.pooling import Pooling, pool
from ..env import interactive

if TYPE_CHECKING:
    from ..data.classification import LabelledSet, LabelledTexts
    from ..models import Tokenizer, Transformer

_CACHE: dict[tuple[str, str, str], np.ndarray] = {}


@functools.cache
def model_and_tokenizer() -> tuple[Transformer, Tokenizer]:
    """The offline all-MiniLM-L6-v2 as a kexue Transformer (eval mode) and its tokenizer, loaded once."""
    from ..env import minilm_path
    from ..models import Tokenizer, load_pretrained

    path = minilm_path()
    return load_pretrained(path), Tokenizer.from_pretrained(path)


def _digest(texts: Sequence[str]) -> str:
    h = hashlib.sha1()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


def embed(tag: str, texts: Sequence[str], poolings: Sequence[Pooling] = ("mean",), batch_size: int = 64,
          max_length: int | None = None) -> dict[Pooling, np.ndarray]:
    """{pooling: (len(texts), 384) float32 array} for ``texts``, computing only what is not cached yet.

    Poolings are names of :func:`kexue.embed.pooling.pool` (``mean``, ``emb_avg``, ``first_last_avg``, ``cls``,
    ``pooler``). ``tag`` names the text set in progress output.
    """
    texts = list(texts)
    key = _digest(texts) + f"/{max_length}"
    missing = [p for p in poolings if (tag, key, p) not in _CACHE]
    if missing:
        vecs = _encode_all(texts, missing, batch_size, max_length, tag)
        for p, v in vecs.items():
            _CACHE[(tag, key, p)] = v
    return {p: _CACHE[(tag, key, p)] for p in poolings}


def _encode_all(texts: list[str], poolings: list[Pooling], batch_size: int, max_length: int | None,
                tag: str) -> dict[Pooling, np.ndarray]:
    model, tok = model_and_tokenizer()
    encodings = tok.encode_raw(texts, max_length=max_length)
    lengths = np.array([len(e.ids) for e in encodings])
    order = np.argsort(-lengths, kind="stable")  # batches of similar length: little padding
    out = {p: np.empty((len(texts), model.config.hidden_size), dtype=np.float32) for p in poolings}
    want_hidden = any(p in ("emb_avg", "first_last_avg") for p in poolings)
    starts = range(0, len(texts), batch_size)
    if len(texts) >= 2048 and interactive():
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=f"encode {tag}", unit="batch", leave=False)
    fast = getattr(model, "fast_inference", None)
    with torch.inference_mode(), (fast() if fast is not None else contextlib.nullcontext()):
        for s in starts:
            idx = order[s : s + batch_size]
            batch = tok.collate([encodings[i] for i in idx])
            mask = batch["attention_mask"]
            attn = None if bool(mask.all()) else mask  # no padding: attention's unmasked path
            last, hidden = model.run_encoder(batch["input_ids"], attn, None, output_hidden_states=want_hidden)
            pooled = model.pooler(last) if "pooler" in poolings and model.pooler is not None else None
            states = hidden if hidden is not None else last
            for p in poolings:
                vec = pool(states, mask, p, pooler_output=pooled)
                out[p][idx] = vec.float().numpy()
    return out


def labelled(name: LabelledSet, split: str, n: int | None = None, seed: int = 0) -> LabelledTexts:
    """A classification split from :mod:`kexue.data.classification`, subsampled to ``n`` when given."""
    from ..data.classification import load

    data = load(name, split)
    return data.subsample(n, seed) if n is not None else data


def clear_cache() -> None:
    _CACHE.clear()
