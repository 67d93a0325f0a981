"""Recompute (activation checkpointing) per block (节省显存的重计算技巧也有了Keras版了, 2020-04-29,
https://kexue.fm/archives/7367).

For each wrapped block f, the forward keeps only f's inputs (and the RNG state) instead of its internal activations;
the backward re-runs f from them and back-propagates through it. Memory: O(blocks × block-input size) plus one
block's internals, for about one extra forward pass (Su: ~3× the batch for BERT base, ~4× for large, ~+25 % time per
sample). Wrap *every* block: one checkpoint around the whole model saves nothing.

Built on ``torch.utils.checkpoint.checkpoint`` with ``use_reentrant=False`` (the reentrant form returns no gradient
when a block's inputs do not require grad, e.g. a frozen embedding) and ``preserve_rng_state=True`` (the recomputed
dropout masks equal the forward's; bert4keras's recompute does not save the RNG state, which we do not copy).
Skipped in eval mode and when autograd is off. Blocks with BatchNorm running statistics are refused (recompute would
update them twice).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ._embedding import unwrap


def _is_cache(a: Any) -> bool:
    """Mutable per-call state that a recompute would update twice: kexue's per-layer key/value cache (a dict) or a
    transformers ``Cache``. A block called with one runs plainly."""
    return isinstance(a, dict) or callable(getattr(a, "get_seq_length", None))


class _RecomputedForward:
    """Stands in for a module's ``forward`` (an instance attribute, so ``state_dict`` and hooks are unchanged)."""

    def __init__(self, module: nn.Module, inner: Callable[..., Any] | None, use_reentrant: bool,
                 preserve_rng_state: bool) -> None:
        self.module = module
        self.inner = inner  # an instance-level forward that was there before, else None (the class's forward)
        self.use_reentrant = use_reentrant
        self.preserve_rng_state = preserve_rng_state

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        m = self.module
        fn = self.inner if self.inner is not None else functools.partial(type(m).forward, m)
        if m.training and torch.is_grad_enabled() and not any(_is_cache(a) for a in (*args, *kwargs.values())):
            return checkpoint(fn, *args, use_reentrant=self.use_reentrant,
                              preserve_rng_state=self.preserve_rng_state, **kwargs)
        return fn(*args, **kwargs)


def _check_no_batchnorm(module: nn.Module) -> None:
    for name, sub in module.named_modules():
        if isinstance(sub, nn.modules.batchnorm._BatchNorm) and sub.track_running_stats:
            where = f" ({name})" if name else ""
            raise ValueError(f"{type(module).__name__} holds a BatchNorm with running statistics{where}: recompute "
                             f"would update them twice per step; freeze them (track_running_stats=False or eval "
                             f"mode for that layer) or leave this block out")


def is_recomputed(module: nn.Module) -> bool:
    """Whether ``module``'s forward is wrapped by :func:`recompute`."""
    return isinstance(module.__dict__.get("forward"), _RecomputedForward)


def recompute(module_or_fn: Any, use_reentrant: bool = False, preserve_rng_state: bool = True) -> Any:
    """Checkpoint a module (its ``forward`` is wrapped in place; the module is returned) or a function (a wrapped
    function is returned, as Su's ``recompute_grad`` decorator). In training mode with autograd on, the call runs
    under ``torch.utils.checkpoint.checkpoint``; otherwise plainly. Wrapping twice is a no-op."""
    if isinstance(module_or_fn, nn.Module):
        m = module_or_fn
        if is_recomputed(m):
            return m
        _check_no_batchnorm(m)
        wrapper = _RecomputedForward(m, m.__dict__.get("forward"), use_reentrant, preserve_rng_state)
        m.forward = wrapper  # type: ignore[method-assign]
        return m
    if not callable(module_or_fn):
        raise TypeError(f"recompute expects an nn.Module or a callable, got {type(module_or_fn).__name__}")
    fn = module_or_fn

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if torch.is_grad_enabled():
            return checkpoint(fn, *args, use_reentrant=use_reentrant, preserve_rng_state=preserve_rng_state, **kwargs)
        return fn(*args, **kwargs)

    return wrapped


def _homogeneous_lists(model: nn.Module) -> list[nn.ModuleList]:
    """The outermost ModuleLists of ≥ 2 modules of one class holding parameters: the block stacks."""
    found: list[nn.ModuleList] = []
    inside: set[int] = set()

    def visit(m: nn.Module) -> None:
        for child in m.children():
            if id(child) in inside:
                continue
            if (isinstance(child, nn.ModuleList) and len(child) >= 2 and len({type(c) for c in child}) == 1
                    and any(True for _ in child.parameters())):
                found.append(child)
                inside.update(id(s) for s in child.modules())
            else:
                visit(child)

    visit(model)
    return found


def find_blocks(model: nn.Module, block_types: Sequence[type] | None = None) -> list[nn.Module]:
    """The blocks :func:`enable_recompute` wraps: the modules of ``block_types`` (outermost), else a kexue
    Transformer's ``blocks``, else every outermost ``nn.ModuleList`` of ≥ 2 modules of one class (BERT's
    ``encoder.layer``, GPT-2's ``h``, ...). Found by module type and structure, not by names."""
    from ..models.transformer import Transformer

    model = unwrap(model)
    if isinstance(model, (nn.ModuleList, list, tuple)):
        return list(model)
    if block_types:
        types = tuple(block_types)
        out: list[nn.Module] = []
        inside: set[int] = set()
        for m in model.modules():
            if id(m) not in inside and isinstance(m, types):
                out.append(m)
                inside.update(id(s) for s in m.modules())
        if not out:
            raise ValueError(f"no module of type {', '.join(t.__name__ for t in types)} in {type(model).__name__}")
        return out
    kexue = [m for m in model.modules() if isinstance(m, Transformer)]
    if kexue:
        return [b for t in kexue for b in t.blocks]
    lists = _homogeneous_lists(model)
    if not lists:
        raise ValueError(f"found no stack of blocks in {type(model).__name__} (no ModuleList of ≥ 2 modules of one "
                         f"class): pass the module list or block_types")
    return [b for lst in lists for b in lst]


def enable_recompute(model: nn.Module | Iterable[nn.Module], block_types: Sequence[type] | None = None,
                     every: int = 1, use_reentrant: bool = False, preserve_rng_state: bool = True,
                     policy: str | None = None) -> list[nn.Module]:
    """Recompute every ``every``-th block of ``model`` in backward (kexue.fm/archives/7367); returns those blocks.

    ``model``: a module list (or list) of blocks, or a model whose blocks :func:`find_blocks` finds (kexue
    Transformer, transformers models, DDP-wrapped). For a kexue Transformer with ``every=1`` this is the model's own
    ``gradient_checkpointing`` switch (set on a copy of its config, so models sharing the config are untouched).
    Only training-mode forwards with autograd on are checkpointed. Undo with :func:`disable_recompute`.

    ``policy`` (kexue Transformer, ``every=1``): ``config.recompute_policy``, "tail_once" (the default: a checkpoint
    per block ending at the FFN down projection's output, so backward never re-runs that product; one tensor kept
    per block, as the post's) or "block" (the post's: a checkpoint around each block). Other models are checkpointed
    around each block (``policy`` None or "block").
    """
    from ..models.transformer import Transformer

    if not isinstance(every, int) or every < 1:
        raise ValueError(f"expected every >= 1, got {every!r}")
    target = unwrap(model) if isinstance(model, nn.Module) else model
    flag_name = "is_activation_checkpointing" if hasattr(target, "is_activation_checkpointing") \
        else "is_gradient_checkpointing"  # transformers >= 5 renamed it
    if getattr(target, flag_name, False) is True:
        raise ValueError("transformers' own gradient checkpointing is on for this model: use one of the two "
                         "(model.gradient_checkpointing_disable() first)")
    if policy not in (None, "tail_once", "block"):
        raise ValueError(f"unknown policy {policy!r}; expected 'tail_once' or 'block'")
    if isinstance(target, Transformer) and every == 1 and not block_types:
        for block in target.blocks:
            _check_no_batchnorm(block)
        changes: dict[str, Any] = {}
        if not target.config.gradient_checkpointing:
            changes["gradient_checkpointing"] = True
        if policy is not None and policy != target.config.recompute_policy:
            changes["recompute_policy"] = policy
        if changes:
            target.config = dataclasses.replace(target.config, **changes)
        return list(target.blocks)
    if policy == "tail_once":
        raise ValueError("policy='tail_once' is a kexue Transformer's own (every=1, no block_types); other models "
                         "are checkpointed around each block (policy='block' or None)")
    blocks = find_blocks(target, block_types)  # type: ignore[arg-type]
    for t in ([target] if isinstance(target, Transformer) else []):
        if t.config.gradient_checkpointing:
            raise ValueError("this kexue Transformer already recomputes every block (config.gradient_checkpointing)")
    chosen = blocks[::every]
    for b in chosen:
        _check_no_batchnorm(b)
    for b in chosen:
        recompute(b, use_reentrant=use_reentrant, preserve_rng_state=preserve_rng_state)
    return chosen


def disable_recompute(model: nn.Module | Iterable[nn.Module]) -> int:
    """Undo :func:`enable_recompute` / :func:`recompute` on every module of ``model``; returns how many it unwrapped
    (a kexue Transformer's config switch counts as its blocks)."""
    from ..models.transformer import Transformer

    mods = list(unwrap(model).modules()) if isinstance(model, nn.Module) else [s for m in model for s in m.modules()]
    n = 0
    for m in mods:
        if isinstance(m, Transformer) and m.config.gradient_checkpointing:
            m.config = dataclasses.replace(m.config, gradient_checkpointing=False)
            n += len(m.blocks)
        fwd = m.__dict__.get("forward")
        if isinstance(fwd, _RecomputedForward):
            if fwd.inner is None:
                del m.__dict__["forward"]
            else:
                m.forward = fwd.inner  # type: ignore[method-assign]
            n += 1
    return n

