"""Encode sentences into vectors with a kexue Transformer: tokenize once, batch by length, pool.

The texts are tokenized in one call, sorted by token count so each batch carries almost no padding, run through
the model under ``torch.inference_mode()``, pooled (:mod:`kexue.embed.pooling`) and put back in the input order.
On the 2,758 STS-B test sentences at batch size 64 the token-count sort computes 1.04 positions per real token;
sentence-transformers' sort by character count computes 1.37.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validate import check_choice, check_int
from ..env import interactive
from ..models.tokenizer import pad_encodings
from ..models.transformer import InferenceKernel
from .pooling import Pooling, _canonical, _needs_hidden_states, pool

#: Inputs with at least this many texts get a progress bar by default, in a terminal or notebook
#: (:func:`kexue.env.interactive`).
PROGRESS_MIN_TEXTS = 1024
#: ``kernel="auto"`` packs weights for oneDNN only for inputs of at least this many tokens: packing
#: all-MiniLM-L6-v2 costs about as much as encoding 2,000 tokens, so smaller inputs run faster on the torch kernel.
AUTO_ONEDNN_MIN_TOKENS = 4096


def _forward(model: nn.Module, batch: dict[str, Tensor], want_hidden: bool,
             want_pooler: bool) -> tuple[Tensor, Sequence[Tensor] | None, Tensor | None]:
    """(last hidden state, hidden states or None, pooler output or None), skipping heads we do not need."""
    mask = batch["attention_mask"]
    # A batch without padding needs no mask, which lets attention take its unmasked path.
    attn = None if bool(mask.all()) else mask
    types = batch.get("token_type_ids")
    if types is not None and not bool(types.any()):
        types = None  # all zeros: the model adds segment 0 by itself
    run_encoder = getattr(model, "run_encoder", None)
    if run_encoder is not None:  # a kexue Transformer: run no head but the pooler, and that only when asked
        last, hidden = run_encoder(batch["input_ids"], attn, types, output_hidden_states=want_hidden)
        pooled = model.get_submodule("pooler")(last) if want_pooler else None
        return last, hidden, pooled
    out = model(batch["input_ids"], attention_mask=attn, token_type_ids=types, output_hidden_states=want_hidden)
    return out.last_hidden_state, out.hidden_states, out.pooler_output


def encode(
    texts: Sequence[str],
    model: nn.Module,
    tokenizer: Any,
    pooling: Pooling = "mean",
    batch_size: int = 64,
    normalize: bool = False,
    layers: Sequence[int] | None = None,
    *,
    max_length: int | None = None,
    progress: bool | None = None,
    kernel: InferenceKernel = "auto",
) -> Tensor:
    """Sentence vectors for ``texts``: a float32 tensor (len(texts), hidden_size) in the input order.

    ``texts`` is a sequence of str (a list, a tuple, any iterable); a single str is refused with a TypeError
    rather than wrapped (it is a sequence of characters, so wrapping would hide a mistake), and so is an item that
    is not a str, naming its index (the tokenizer's :meth:`~kexue.models.Tokenizer.encode_raw` checks them, with
    :func:`kexue.models.tokenizer.check_texts`).

    ``pooling`` is one of :data:`kexue.embed.pooling.POOLINGS` (``mean`` = masked token mean of the last layer,
    sentence-transformers' pooling; ``first_last_avg`` = mean of ``hidden_states[1]`` and ``[-1]``, as
    BERT-whitening computes it); ``layers=(i, j, ...)`` averages the token means of those ``hidden_states``
    indices instead. ``normalize`` L2-normalizes each vector. ``max_length`` defaults to the tokenizer's
    (256 for all-MiniLM-L6-v2, as sentence-transformers uses). ``progress`` shows a tqdm bar; by default only for
    inputs of at least :data:`PROGRESS_MIN_TEXTS` texts, and only in a terminal or notebook.

    ``kernel`` goes to :meth:`kexue.models.Transformer.fast_inference`: ``"auto"`` runs the blocks' Linear layers on
    oneDNN with prepacked weights on CPU (fp32) for inputs of at least :data:`AUTO_ONEDNN_MIN_TOKENS` tokens, whose
    rounding differs from the plain forward's (unit vectors move by ~4e-7 on all-MiniLM-L6-v2); ``"torch"`` (and
    ``"auto"`` on smaller inputs) gives the plain forward's bits. Models without ``fast_inference``
    (any module called as ``model(input_ids, attention_mask=..., token_type_ids=..., output_hidden_states=...)``
    returning ``last_hidden_state``/``hidden_states``/``pooler_output``) run as they are.
    ``tokenizer`` is a :class:`kexue.models.Tokenizer` (``encode_raw`` and ``pad_token_id`` are used).

    The model runs in whatever mode it is in (``load_pretrained`` returns it in eval mode); call ``model.eval()``
    for deterministic vectors from a model you have been training.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected model to be an nn.Module (a kexue Transformer, say), got {type(model).__name__}")
    if not (callable(getattr(tokenizer, "encode_raw", None)) and hasattr(tokenizer, "pad_token_id")):
        raise TypeError(f"expected tokenizer to be a kexue.models.Tokenizer (Tokenizer.from_pretrained(folder)), got "
                        f"{type(tokenizer).__name__}")
    check_int("batch_size", batch_size, minimum=1)
    check_choice("kernel", kernel, InferenceKernel)
    kind = _canonical(pooling)
    want_hidden = _needs_hidden_states(kind, layers)
    want_pooler = kind == "pooler"
    if want_pooler and getattr(model, "pooler", True) is None:
        raise ValueError("expected a model with a pooler for pooling 'pooler', got one without (with_pooler=False)")
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    encodings = tokenizer.encode_raw(texts, max_length=max_length)  # checks texts (models.tokenizer.check_texts)
    n = len(encodings)
    if not n:
        hidden_size = getattr(getattr(model, "config", None), "hidden_size", 0)
        return torch.empty(0, hidden_size, dtype=torch.float32)
    lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
    order = np.argsort(-lengths, kind="stable")  # longest first: a memory problem shows at once
    pad_id = int(tokenizer.pad_token_id)
    with_types = getattr(getattr(model, "config", None), "type_vocab_size", 1) != 0

    if progress is None:
        progress = n >= PROGRESS_MIN_TEXTS and interactive()
    starts = range(0, n, batch_size)
    batches: Any = starts
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(starts, desc="encode", unit="batch")

    out: Tensor | None = None
    fast = getattr(model, "fast_inference", None)
    if kernel == "auto" and int(lengths.sum()) < AUTO_ONEDNN_MIN_TOKENS:
        kernel = "torch"
    with torch.inference_mode(), (fast(kernel) if fast is not None else contextlib.nullcontext()):
        for start in batches:
            idx = order[start : start + batch_size]
            batch = pad_encodings([encodings[i] for i in idx], pad_id, with_types)
            batch = {k: v.to(device) for k, v in batch.items()}
            last, hidden, pooled = _forward(model, batch, want_hidden, want_pooler)
            states = hidden if want_hidden and hidden is not None else last
            vec = pool(states, batch["attention_mask"], pooling, layers=layers, pooler_output=pooled)
            vec = vec.float()
            if normalize:
                vec = F.normalize(vec, p=2.0, dim=-1)
            if out is None:
                out = torch.empty(n, vec.shape[-1], dtype=torch.float32)
            out[torch.from_numpy(idx)] = vec.cpu()
    assert out is not None  # texts is not empty: the loop ran
    return out


__all__ = ["AUTO_ONEDNN_MIN_TOKENS", "PROGRESS_MIN_TEXTS", "encode"]
