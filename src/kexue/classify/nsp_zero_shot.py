"""NSP-BERT zero-shot classification with BERT's next-sentence-prediction head.

Post: "曾被嫌弃的预训练任务NSP，做出了优秀的Zero Shot效果" (The once-disparaged NSP pre-training task gives excellent
zero-shot results), 2021-09-10, https://kexue.fm/archives/8671; the method is NSP-BERT (Sun et al., arXiv
2109.03564).

Each label y is rendered as a prompt p_y from a template ("It was [label]", "The above news is about [label]").
The input is paired with every prompt as ``[CLS] A [SEP] B [SEP]`` — prompt first (A = prompt, B = text) or text
first, depending on the data set — and scored by the NSP head:

    s_y = P(IsNext | A, B) = softmax(nsp_logits)[0],        ŷ = argmax_y s_y.

Index 0 is "B follows A" in Google's and Hugging Face's BERT. Several templates are ensembled by averaging s_y.
Sentence-pair tasks score the pair directly and cut the dev scores into quantile bins, one per label, in ascending
order (label 0 gets the lowest IsNext scores); that assumes the label prior (balanced by default).

**A checkpoint with an NSP head is required** (``cls.seq_relationship`` in a Hugging Face BERT, e.g.
``bert-base-uncased``, or a kexue ``Transformer`` with ``with_nsp=True``). RoBERTa-style checkpoints have none and
are refused. The offline all-MiniLM-L6-v2 has none either, so with the models available here the mechanics can be
tested (against ``transformers``) but the post's accuracy cannot be measured. NSP is length-sensitive: compare
templates by accuracy, not raw probabilities across prompts of different lengths.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor

from .._validate import check_int

LABEL_SLOT = "[label]"

_ModelKind = Literal["kexue", "hf"]


class SentencePairs(NamedTuple):
    """Segments A and B of the pairs ``[CLS] a [SEP] b [SEP]`` (unpacks as ``a, b = ...``)."""

    a: list[str]
    b: list[str]


def _check_model(model: Any) -> _ModelKind:
    """Which forward the model has; raises if the model has no NSP head."""
    cfg = getattr(model, "config", None)
    family = getattr(cfg, "family", None) or getattr(cfg, "model_type", None)
    if family is not None and "roberta" in str(family).lower():
        raise ValueError(f"expected a model with an NSP head, got {type(model).__name__}, a RoBERTa-style model "
                         f"({family}), which has none")
    if hasattr(model, "nsp") and hasattr(model, "blocks"):  # a kexue Transformer
        if model.nsp is None:
            raise ValueError("expected a model with an NSP head, got a kexue Transformer without one "
                             "(config.with_nsp is False; the checkpoint has no cls.seq_relationship, as "
                             "all-MiniLM-L6-v2 has none)")
        return "kexue"
    cls = getattr(model, "cls", None)
    if cls is not None and hasattr(cls, "seq_relationship"):
        return "hf"
    raise ValueError(f"expected a model with an NSP head (transformers' BertForNextSentencePrediction or "
                     f"BertForPreTraining, or a kexue Transformer loaded from a checkpoint with cls.seq_relationship), "
                     f"got {type(model).__name__}, which has none")


def _check_tokenizer(tokenizer: Any) -> None:
    if not ((hasattr(tokenizer, "encode_raw") and hasattr(tokenizer, "collate")) or callable(tokenizer)):
        raise TypeError(f"expected tokenizer to be a kexue Tokenizer or a Hugging Face tokenizer, got "
                        f"{type(tokenizer).__name__}")


def _check_texts(name: str, texts: Any) -> None:
    """A sequence of ``str`` (not one ``str``), else a ``TypeError`` naming ``name`` and the first bad item."""
    if isinstance(texts, str):
        raise TypeError(f"expected {name} to be a sequence of texts (wrap a single text in a list), got a string")
    if not (hasattr(texts, "__len__") and hasattr(texts, "__getitem__")):  # a list, tuple, numpy array, Series
        raise TypeError(f"expected {name} to be a sequence of str, got {type(texts).__name__}")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"expected {name} to be a sequence of str, got {t!r} at index {i}")


def _encode(tokenizer: Any, a: Sequence[str], b: Sequence[str], max_len: int) -> dict[str, Tensor]:
    if hasattr(tokenizer, "encode_raw") and hasattr(tokenizer, "collate"):  # kexue Tokenizer
        return tokenizer.collate(tokenizer.encode_raw(list(a), list(b), max_length=max_len))
    enc = tokenizer(list(a), list(b), padding=True, truncation=True, max_length=max_len, return_tensors="pt")
    return {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}


@torch.no_grad()
def _nsp_logits(model: Any, kind: _ModelKind, batch: dict[str, Tensor]) -> Tensor:
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items()}
    # Keyword arguments only: token_type_ids passed positionally where attention_mask is expected is a known trap
    # (transformers #1788).
    if kind == "kexue":
        out = model(batch["input_ids"], attention_mask=batch["attention_mask"],
                    token_type_ids=batch.get("token_type_ids"))
        return out.nsp_logits
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                token_type_ids=batch.get("token_type_ids"))
    logits = getattr(out, "seq_relationship_logits", None)
    return out.logits if logits is None else logits


def pair_scores(
    model: Any,
    tokenizer: Any,
    a: Sequence[str],
    b: Sequence[str],
    *,
    max_len: int = 128,
    batch_size: int = 32,
) -> np.ndarray:
    """P(IsNext | A, B) = softmax(nsp_logits)[:, 0] for each pair ``[CLS] a [SEP] b [SEP]``, float64 (N,).

    ``tokenizer`` is a kexue :class:`~kexue.models.Tokenizer` or a Hugging Face tokenizer; pairs longer than
    ``max_len`` tokens are truncated longest-first. The model runs as it is (call ``model.eval()`` first).
    """
    if isinstance(a, str) or isinstance(b, str):
        raise TypeError("expected a and b to be sequences of texts, got a single string")
    _check_texts("a", a)
    _check_texts("b", b)
    if len(a) != len(b):
        raise ValueError(f"expected a and b of one length, got {len(a)} and {len(b)}")
    _check_sizes(max_len, batch_size)
    _check_tokenizer(tokenizer)
    return _pair_scores(model, _check_model(model), tokenizer, a, b, max_len, batch_size)


def _pair_scores(model: Any, kind: _ModelKind, tokenizer: Any, a: Sequence[str], b: Sequence[str], max_len: int,
                 batch_size: int) -> np.ndarray:
    """:func:`pair_scores` of checked arguments."""
    out = np.empty(len(a), dtype=np.float64)
    for s in range(0, len(a), batch_size):
        logits = _nsp_logits(model, kind, _encode(tokenizer, a[s : s + batch_size], b[s : s + batch_size], max_len))
        out[s : s + batch_size] = torch.softmax(logits.double(), dim=-1)[:, 0].cpu().numpy()
    return out


def _check_sizes(max_len: int, batch_size: int) -> None:
    check_int("max_len", max_len, minimum=3)
    check_int("batch_size", batch_size, minimum=1)


class NSPZeroShot:
    """Zero-shot classification with the NSP head (see the module docstring).

    Args (keyword-only after ``model, tokenizer``):
        templates: one template or several, each containing ``[label]`` (e.g. ``"It was [label]"``).
        label_words: one word (or phrase) per label, in label order (e.g. ``["terrible", "great"]``).
        prompt_first: True puts the prompt in segment A and the text in B; False (default) the reverse.
        max_len: the pair's token budget (the paper uses 128; the English runs of its code 512).
        batch_size: pairs per forward pass.

    ``scores(texts)`` → (N, C) IsNext probabilities (averaged over the templates when there are several),
    ``predict(texts)`` → (N,) label indices, ``ensemble(texts, templates)`` → the mean over the given templates.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        templates: str | Sequence[str],
        label_words: Sequence[str],
        prompt_first: bool = False,
        max_len: int = 128,
        batch_size: int = 32,
    ) -> None:
        self.kind = _check_model(model)
        _check_tokenizer(tokenizer)
        self.model, self.tokenizer = model, tokenizer
        self.templates = self._check_templates(templates)
        if isinstance(label_words, str) or len(label_words) < 2:
            raise ValueError(f"expected label_words to list at least 2 labels, got {label_words!r}")
        self.label_words = [str(w) for w in label_words]
        self.prompt_first = bool(prompt_first)
        _check_sizes(max_len, batch_size)
        self.max_len, self.batch_size = max_len, batch_size

    @staticmethod
    def _check_template(template: Any) -> str:
        if not isinstance(template, str):
            raise TypeError(f"expected template to be a str, got {type(template).__name__}")
        if LABEL_SLOT not in template:
            raise ValueError(f"expected every template to hold the {LABEL_SLOT} slot, got {template!r}")
        return template

    @staticmethod
    def _check_templates(templates: str | Sequence[str]) -> list[str]:
        ts = [templates] if isinstance(templates, str) else list(templates)
        if not ts:
            raise ValueError("expected templates to name at least one template, got none")
        return [NSPZeroShot._check_template(t) for t in ts]

    def prompts(self, template: str) -> list[str]:
        """The prompt sentence of every label for one template."""
        return self._prompts(self._check_template(template))

    def _prompts(self, template: str) -> list[str]:
        return [template.replace(LABEL_SLOT, w) for w in self.label_words]

    def pairs(self, texts: Sequence[str], template: str) -> SentencePairs:
        """Segments A and B for every (text, label), text-major: row i·C + y pairs text i with label y."""
        _check_texts("texts", texts)
        return self._pairs(texts, self._check_template(template))

    def _pairs(self, texts: Sequence[str], template: str) -> SentencePairs:
        prompts = self._prompts(template)
        tx = [t for t in texts for _ in prompts]
        pr = [p for _ in texts for p in prompts]
        return SentencePairs(pr, tx) if self.prompt_first else SentencePairs(tx, pr)

    def _one_template(self, texts: Sequence[str], template: str) -> np.ndarray:
        a, b = self._pairs(texts, template)
        s = _pair_scores(self.model, self.kind, self.tokenizer, a, b, self.max_len, self.batch_size)
        return s.reshape(len(texts), len(self.label_words))

    def scores(self, texts: Sequence[str], *, template: str | None = None) -> np.ndarray:
        """(N, C) P(IsNext) of each text with each label's prompt; the mean over all templates unless one is
        given."""
        _check_texts("texts", texts)
        if template is not None:
            return self._one_template(texts, self._check_template(template))
        return self._ensemble(texts, self.templates)

    def ensemble(self, texts: Sequence[str], templates: Sequence[str] | None = None) -> np.ndarray:
        """The mean of the (N, C) scores over ``templates`` (default: the configured ones)."""
        _check_texts("texts", texts)
        return self._ensemble(texts, self.templates if templates is None else self._check_templates(templates))

    def _ensemble(self, texts: Sequence[str], templates: list[str]) -> np.ndarray:
        return np.mean([self._one_template(texts, t) for t in templates], axis=0)

    def predict(self, texts: Sequence[str], *, template: str | None = None) -> np.ndarray:
        """argmax_y s_y for each text."""
        return self.scores(texts, template=template).argmax(axis=1)


def nsp_zero_shot(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    templates: str | Sequence[str],
    label_words: Sequence[str],
    prompt_first: bool = False,
    max_len: int = 128,
    batch_size: int = 32,
) -> np.ndarray:
    """Predicted label indices for ``texts``: :class:`NSPZeroShot` in one call."""
    clf = NSPZeroShot(model, tokenizer, templates=templates, label_words=label_words, prompt_first=prompt_first,
                      max_len=max_len, batch_size=batch_size)
    return clf.predict(texts)


def quantile_thresholds(dev_scores: Any, n_labels: int, prior: Any = None) -> np.ndarray:
    """Thresholds that cut the sorted dev scores into ``n_labels`` bins holding ``prior`` fractions (equal counts
    by default), for sentence-pair tasks. Label 0 gets the lowest scores, so label ids must run from least to
    most "continuous". Returns the ``n_labels − 1`` ascending thresholds; threshold j is the lowest score of bin
    j + 1 (see :func:`assign_by_thresholds`)."""
    check_int("n_labels", n_labels, minimum=2)
    s = np.sort(np.asarray(dev_scores, dtype=np.float64).ravel())
    if s.size == 0 or not np.isfinite(s).all():
        raise ValueError(f"expected dev_scores to be a non-empty array of finite scores, got {s.size} scores"
                         f"{'' if s.size == 0 else ' with NaN or infinity'}")
    if n_labels > s.size:
        raise ValueError(f"expected at least n_labels = {n_labels} dev scores (one per bin), got {s.size}")
    p = np.full(n_labels, 1.0 / n_labels) if prior is None else np.asarray(prior, dtype=np.float64)
    if p.shape != (n_labels,) or not np.isfinite(p).all() or (p <= 0).any():
        raise ValueError(f"expected prior to hold {n_labels} positive values, got {p.tolist()}")
    cum = np.cumsum(p / p.sum())[:-1]
    idx = np.clip(np.round(cum * s.size).astype(int), 0, s.size - 1)
    return s[idx]


def assign_by_thresholds(scores: Any, thresholds: Any) -> np.ndarray:
    """Label of each score: the number of thresholds it reaches (score ≥ threshold)."""
    t = np.asarray(thresholds, dtype=np.float64)
    if t.ndim != 1 or (np.diff(t) < 0).any():
        raise ValueError(f"expected thresholds to be a 1-D ascending array, got {t.tolist()}")
    if not np.isfinite(t).all():
        raise ValueError(f"expected thresholds to be finite, got {t.tolist()}")
    s = np.asarray(scores, dtype=np.float64)
    bad = ~np.isfinite(s)
    if bad.any():  # NaN would sort past every threshold and get the top label
        where = np.argwhere(bad)[0]
        raise ValueError(f"expected scores to be finite, got {float(s[tuple(where)])!r} at index "
                         f"{int(where[0]) if where.size == 1 else tuple(int(i) for i in where)}")
    return np.searchsorted(t, s, side="right")


__all__ = ["LABEL_SLOT", "NSPZeroShot", "SentencePairs", "assign_by_thresholds", "nsp_zero_shot", "pair_scores",
           "quantile_thresholds"]
