"""Decoding: greedy search and beam search with length normalisation over any incremental step function, and the
step function of a UniLM-masked kexue Transformer that decodes with its KV cache.

Su Jianlin, "Seq2Seq中Exposure Bias现象的浅析与对策" (Exposure bias in seq2seq: a brief analysis and remedies),
2020-03-09, https://kexue.fm/archives/7259: a model trained by teacher forcing can give high probability to
continuations of wrong prefixes, so a wider beam can return a worse sequence (the post's two-step toy: greedy keeps
(a, b) at 0.33, beam 2 returns (c, d) at 0.36). The training remedies are in :mod:`kexue.train.exposure_bias`.

:func:`beam_search` and :func:`greedy_search` work on any :data:`StepFn`; :class:`UniLMStep` is one for a
UniLM-masked kexue :class:`~kexue.models.Transformer`, decoding with its :class:`~kexue.models.KVCache`;
:func:`generate` puts the two together. Length normalisation follows Hugging Face's convention: a hypothesis's score
is Σ log p / L^α with L the number of generated tokens (EOS included) and α = ``length_penalty`` (0: plain sum of
log-probabilities, as bert4keras and the post's code decode; 1: mean log-probability).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .._validate import check_float, check_int
from .cache import KVCache, check_rows
from .transformer import Transformer

__all__ = ["Hypothesis", "StepFn", "UniLMStep", "beam_search", "generate", "greedy_search"]


#: ``step(tokens, parents) -> log_probs``. The first call gets ``tokens=None`` and ``parents = arange(batch)`` and
#: returns the first token's log-probabilities per batch row. Later calls get the chosen tokens (n,) and, for each,
#: the index of the previous call's row it continues: the step function reorders its state by ``parents`` (a beam may
#: be copied or dropped), appends ``tokens`` and returns (n, vocab) log-probabilities of the next token.
StepFn = Callable[[Tensor | None, Tensor], Tensor]


@dataclass
class Hypothesis:
    """One decoded sequence: ``tokens`` (EOS included when ``finished``), ``log_prob`` = Σ log p, and
    ``score`` = log_prob / len(tokens)^length_penalty."""

    tokens: list[int]
    log_prob: float
    score: float
    finished: bool


def _normalise(log_prob: float, length: int, length_penalty: float) -> float:
    return log_prob / (length ** length_penalty)


def _check_decode_args(step: StepFn, batch_size: int, eos_id: int, max_len: int, beam_size: int = 1,
                       length_penalty: float = 0.0) -> None:
    if not callable(step):
        raise TypeError(f"expected step to be a callable step(tokens, parents) -> log_probs, got "
                        f"{type(step).__name__}")
    check_int("batch_size", batch_size, 1)
    check_int("eos_id", eos_id, 0)
    check_int("max_len", max_len, 1)
    check_int("beam_size", beam_size, 1)
    check_float("length_penalty", length_penalty)


def _call_step(step: StepFn, tokens: Tensor | None, parents: Tensor, eos_id: int,
               vocab: int | None = None) -> Tensor:
    """``step(tokens, parents)``, checked to be (len(parents), vocab) log-probabilities with eos_id < vocab."""
    out = step(tokens, parents)
    rows = parents.shape[0]
    if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[0] != rows or (vocab and out.shape[1] != vocab):
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"expected step to return log-probabilities of shape ({rows}, {vocab or 'vocab'}), one row "
                         f"per parent, got {got}")
    if eos_id >= out.shape[1]:
        raise ValueError(f"expected eos_id < {out.shape[1]}, the vocabulary of step's log-probabilities, got {eos_id}")
    return out


@torch.no_grad()
def greedy_search(step: StepFn, batch_size: int, eos_id: int, max_len: int) -> list[Hypothesis]:
    """Argmax decoding: each row takes its most probable token until EOS or ``max_len`` tokens."""
    _check_decode_args(step, batch_size, eos_id, max_len)
    rows = torch.arange(batch_size)
    log_probs = _call_step(step, None, rows, eos_id)
    tokens: list[list[int]] = [[] for _ in range(batch_size)]
    total = torch.zeros(batch_size, dtype=torch.float64)
    done = torch.zeros(batch_size, dtype=torch.bool)
    for t in range(max_len):
        lp, tok = log_probs.max(dim=-1)
        tok, lp = tok.cpu(), lp.double().cpu()
        for r in range(batch_size):
            if not done[r]:
                tokens[r].append(int(tok[r]))
                total[r] += lp[r]
        done |= tok == eos_id
        if bool(done.all()) or t == max_len - 1:
            break
        log_probs = _call_step(step, tok.to(log_probs.device), rows.to(log_probs.device), eos_id, log_probs.shape[1])
    return [Hypothesis(tokens[r], float(total[r]), float(total[r]), bool(done[r])) for r in range(batch_size)]


@torch.no_grad()
def beam_search(step: StepFn, batch_size: int, eos_id: int, beam_size: int, max_len: int,
                length_penalty: float = 0.0) -> list[list[Hypothesis]]:
    """Beam search with length normalisation; per batch row, up to ``beam_size`` hypotheses, best first.

    Each step scores every continuation of the live beams by its summed log-probability and takes the best
    2·``beam_size``; those ending in EOS among the first ``beam_size`` become finished hypotheses, scored
    Σ log p / L^``length_penalty`` (L = tokens generated, EOS included), and the best ``beam_size`` others stay live.
    A row is done when it holds ``beam_size`` finished hypotheses and no live beam can still beat the worst of them
    (the bound uses ``max_len`` for a positive penalty, since a longer hypothesis is divided by more). At ``max_len``
    the best ``beam_size`` continuations end as hypotheses, marked unfinished unless they end in EOS. This is the
    canonical algorithm, the one Hugging Face's ``generate(num_beams=k, early_stopping="never")`` runs; with
    ``beam_size=1`` and ``length_penalty=0`` it equals :func:`greedy_search`.
    """
    _check_decode_args(step, batch_size, eos_id, max_len, beam_size, length_penalty)
    k = beam_size
    log_probs = _call_step(step, None, torch.arange(batch_size), eos_id).double()
    dev = log_probs.device
    vocab = log_probs.shape[-1]
    live = 1  # live beams per row: 1 before the first token, k after
    cum = torch.zeros(batch_size, 1, dtype=torch.float64, device=dev)
    prefixes = torch.zeros(batch_size, 0, dtype=torch.long, device=dev)
    finished: list[list[Hypothesis]] = [[] for _ in range(batch_size)]
    done = [False] * batch_size
    for t in range(max_len):
        length = t + 1
        cand = (cum[:, :, None] + log_probs.view(batch_size, live, vocab)).view(batch_size, live * vocab)
        n = min(2 * k, live * vocab)
        top, idx = cand.topk(n, dim=1)
        token, parent = idx % vocab, idx // vocab
        is_eos = token == eos_id
        top_c, token_c, parent_c, eos_c = top.cpu(), token.cpu(), parent.cpu(), is_eos.cpu()
        last = t == max_len - 1
        for b in range(batch_size):
            if done[b]:
                continue
            for j in range(min(k, n)):  # only the best k candidates may end a hypothesis, as in Hugging Face
                lp = float(top_c[b, j])
                if lp == float("-inf") or not (eos_c[b, j] or last):
                    continue
                seq = prefixes[b * live + int(parent_c[b, j])].tolist() + [int(token_c[b, j])]
                # at max_len the best live continuations compete as unfinished hypotheses
                finished[b].append(Hypothesis(seq, lp, _normalise(lp, length, length_penalty), bool(eos_c[b, j])))
            finished[b].sort(key=lambda h: h.score, reverse=True)
            del finished[b][k:]
        if last:
            break
        # the best k continuations that do not end in EOS stay live (stable sort keeps their score order)
        keep = is_eos.to(torch.int8).argsort(dim=1, stable=True)[:, :k]
        new_cum = top.gather(1, keep)
        new_cum = torch.where(is_eos.gather(1, keep), float("-inf"), new_cum)
        if keep.shape[1] < k:  # fewer candidates than beams (tiny vocabulary, first step)
            pad = k - keep.shape[1]
            keep = torch.cat([keep, keep[:, :1].expand(-1, pad)], 1)
            new_cum = torch.cat([new_cum, torch.full((batch_size, pad), float("-inf"), dtype=new_cum.dtype,
                                                     device=dev)], 1)
        parents = (parent.gather(1, keep) + torch.arange(batch_size, device=dev)[:, None] * live).view(-1)
        tokens = token.gather(1, keep).view(-1)
        prefixes = torch.cat([prefixes[parents], tokens[:, None]], dim=1)
        cum, live = new_cum, k
        best_live = cum.max(dim=1).values.cpu()
        bound_len = max_len if length_penalty > 0 else length
        for b in range(batch_size):
            if not done[b] and len(finished[b]) >= k:
                bound = _normalise(float(best_live[b]), bound_len, length_penalty)
                done[b] = bound <= finished[b][-1].score or bool(best_live[b] == float("-inf"))
        if all(done):
            break
        log_probs = _call_step(step, tokens, parents, eos_id, vocab).double()
    return finished


class UniLMStep:
    """The :data:`StepFn` of a UniLM-masked kexue Transformer, decoding incrementally with its
    :class:`~kexue.models.KVCache`.

    The first call runs the (right-padded) sources, segment 0, through the model into a fresh cache and returns
    the log-probabilities that each source's last real token (its [SEP]) gives the first target token. Later calls
    reorder the cache by ``parents`` and feed one target token per row, segment 1, at the position it would have
    in the packed layout ``[CLS] source [SEP] target`` (so padding inside a batch of sources does not shift
    positions), and return the next token's log-probabilities. Logits come from the MLM head. ``target_start``:
    the position id of the first target token when the model was trained with restarted target positions (see
    :func:`kexue.train.exposure_bias.pack_unilm`); None continues after the source.
    """

    def __init__(self, model: Transformer, source_ids: Tensor, source_mask: Tensor | None = None,
                 target_start: int | None = None) -> None:
        config = getattr(model, "config", None)
        if getattr(config, "mask_type", None) != "unilm":
            raise ValueError(f"expected a kexue Transformer with mask_type='unilm', got mask_type="
                             f"{getattr(config, 'mask_type', None)!r}")
        if getattr(model, "mlm", None) is None:
            raise ValueError("expected a model with an MLM head (with_mlm=True: UniLMStep reads next-token logits "
                             "from it), got one without")
        if source_ids.dim() != 2:
            raise ValueError(f"expected source_ids of shape (batch, seq), got {tuple(source_ids.shape)}")
        if source_mask is None:
            source_mask = torch.ones_like(source_ids)
        if source_mask.shape != source_ids.shape:
            raise ValueError(f"expected source_mask of source_ids' shape {tuple(source_ids.shape)}, got "
                             f"{tuple(source_mask.shape)}")
        lengths = source_mask.long().sum(dim=1)
        if bool((lengths == 0).any()) or bool((source_mask.long().cumprod(dim=1).sum(dim=1) != lengths).any()):
            raise ValueError("expected right-padded sources with at least one real token each (source_mask of the "
                             "form 1…1 0…0)")
        self.model = model
        self.source_ids = source_ids
        self.source_mask = source_mask.long()
        self.lengths = lengths
        if target_start is not None:
            check_int("target_start", target_start, 0)
        self.target_start = target_start
        self.cache: KVCache | None = None
        self.next_position: Tensor | None = None

    def __call__(self, tokens: Tensor | None, parents: Tensor) -> Tensor:
        model = self.model
        dev = self.source_ids.device
        rows = self.source_ids.shape[0] if self.next_position is None else self.next_position.shape[0]
        check_rows("parents", parents, rows)
        if tokens is not None and (not isinstance(tokens, Tensor) or tokens.shape != parents.shape):
            got = tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__
            raise ValueError(f"expected tokens of parents' shape {tuple(parents.shape)}, one token per row, got {got}")
        if tokens is None:
            self.cache = model.new_cache()
            out = model(self.source_ids, attention_mask=self.source_mask,
                        token_type_ids=torch.zeros_like(self.source_ids), cache=self.cache)
            last = (self.lengths - 1)[:, None]
            logits = out.mlm_logits.gather(1, last[:, :, None].expand(-1, -1, out.mlm_logits.shape[-1]))[:, 0]
            positions = model.embeddings.position_ids(self.source_ids).expand(self.source_ids.shape[0], -1)
            self.next_position = positions.gather(1, last)[:, 0] + 1
            if self.target_start is not None:
                self.next_position = torch.full_like(self.next_position, self.target_start)
            self.cache._reorder(parents.to(dev))
            self.next_position = self.next_position[parents.to(dev)]
            return F.log_softmax(logits.float(), dim=-1)[parents.to(dev)]
        if self.cache is None or self.next_position is None:
            raise ValueError("expected a first call with tokens=None (it runs the sources), got tokens first")
        parents = parents.to(dev)
        if parents.shape[0] != self.next_position.shape[0] or not bool(
                (parents == torch.arange(parents.shape[0], device=dev)).all()):
            self.cache._reorder(parents)
            self.next_position = self.next_position[parents]
        pos = self.next_position[:, None]
        out = model(tokens.to(dev)[:, None], token_type_ids=torch.ones_like(pos), position_ids=pos, cache=self.cache)
        self.next_position = self.next_position + 1
        return F.log_softmax(out.mlm_logits[:, -1].float(), dim=-1)


@torch.no_grad()
def generate(model: Transformer, source_ids: Tensor, source_mask: Tensor | None, eos_id: int, beam_size: int = 1,
             max_len: int = 32, length_penalty: float = 0.0, target_start: int | None = None) -> list[list[int]]:
    """Decode a target for each source with a UniLM-masked kexue Transformer (in eval mode): greedy for
    ``beam_size=1``, else :func:`beam_search`. Returns token lists, the EOS stripped. ``source_ids`` are packed
    as ``[CLS] source [SEP]`` (see :func:`kexue.train.exposure_bias.pack_unilm` with ``targets=None``),
    right-padded; ``target_start`` as in :class:`UniLMStep`."""
    if model.training:
        raise ValueError("expected the model in eval mode (call model.eval(): dropout would make decoding "
                         "random), got it in training mode")
    step = UniLMStep(model, source_ids, source_mask, target_start)
    b = source_ids.shape[0]
    if beam_size == 1:
        best = greedy_search(step, b, eos_id, max_len)
    else:
        best = [hyps[0] for hyps in beam_search(step, b, eos_id, beam_size, max_len, length_penalty)]
    return [h.tokens[:-1] if h.finished else h.tokens for h in best]


