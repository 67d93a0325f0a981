"""Recompute (activation checkpointing): the kexue Transformer's two policies, and a per-block wrapper for any model.

Post: 节省显存的重计算技巧也有了Keras版了 (2020-04-29, https://kexue.fm/archives/7367).

For a checkpointed piece f, the forward keeps only f's inputs (and the RNG state) instead of its internal activations;
the backward re-runs f from them and back-propagates through it. Memory: O(blocks × block-input size) plus one
block's internals, for about one extra forward pass (Su: ~3× the batch for BERT base, ~4× for large, ~+25 % time per
sample). Checkpoint *every* block: one checkpoint around the whole model saves nothing.

The kexue Transformer switches it on at run time, ``model.gradient_checkpointing_enable(policy)`` (as transformers'
models do; the config, and so ``config.json``, is untouched), with one of two policies (:func:`_run_blocks`):

- ``"block"`` (the post's): a checkpoint around each block; it keeps each block's input.
- ``"tail_once"`` (the default): a checkpoint per block whose end moves from the block's end to its FFN down
  projection's output f (and, in a post-norm stack, the block's second norm moves to the start of the next block's
  checkpoint). Outside the checkpoint runs the tail s = h + α'·dropout(f), which keeps nothing for backward: the
  residual sum keeps nothing, and the dropout is :func:`kexue.nn.dropout.seeded_dropout`, which draws its mask again
  in backward from a seed instead of keeping it (the kexue block uses it for f in every mode, so a recomputed model
  draws the same masks as a plain one). Each checkpoint then keeps one tensor, s (the pre-norm sum instead of the
  normed output: the same bytes as the post's), and its recompute stops once the down projection's input is rebuilt
  (torch's early stop): the down projection (a third of a block's projection FLOPs), its dropout and the residual
  sum run once. The last block of a post-norm stack is checkpointed whole, with the previous block's norm (its own
  norm would keep its input outside every checkpoint: one tensor more than the post's recompute keeps).
  The seeded dropout is what keeps the tail free: kexue's ordinary dropout would keep a 1-byte mask per element of
  f, a quarter more than the float32 tensor each checkpoint keeps. On CUDA (torch's dropout, which keeps its mask)
  that mask is kept. Measured (benchmarks/recompute.py, 12 layers, d 256, batch 8 × 256, dropout 0.1, one CPU
  thread, two runs on a loaded machine): 7.0x less activation memory than without recompute at +26 to +31 % time,
  where the post's policy (7.2x less) took +40 to +45 %.

Other models (transformers' BERT, GPT-2, a list of one's own blocks): :func:`enable_recompute` wraps each block's
``forward`` in a checkpoint (:func:`recompute`); :func:`disable_recompute` undoes it and the kexue switch alike.

Built on ``torch.utils.checkpoint.checkpoint`` with ``use_reentrant=False`` (the reentrant form returns no gradient
when a block's inputs do not require grad, e.g. a frozen embedding) and ``preserve_rng_state=True`` (the recomputed
dropout masks equal the forward's; bert4keras's recompute does not save the RNG state, which we do not copy).
Skipped in eval mode, when autograd is off and for calls with a key/value cache (a recompute would extend it twice).
Blocks with BatchNorm running statistics are refused (recompute would update them twice).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal, get_args

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .._validate import check_choice, check_int

if TYPE_CHECKING:
    from .transformer import Block

Policy = Literal["tail_once", "block"]
POLICIES: tuple[Policy, ...] = get_args(Policy)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside ``DistributedDataParallel`` / ``DataParallel`` (``.module``) and ``torch.compile``
    (``._orig_mod``) wrappers."""
    from torch.nn.parallel import DataParallel, DistributedDataParallel

    while True:
        if isinstance(model, (DistributedDataParallel, DataParallel)):
            model = model.module
        elif isinstance(inner := getattr(model, "_orig_mod", None), nn.Module):
            model = inner  # torch.compile's OptimizedModule
        else:
            return model


# ----------------------------------------------------------------------------- the kexue Transformer's policies
def _run_blocks(blocks: Sequence[Block], policy: Policy, x: Tensor, mask: Tensor | None, key_padding: Tensor | None,
               causal: bool, carry_scores: bool, hidden: list[Tensor] | None) -> Tensor:
    """The output of ``blocks`` on ``x`` under ``policy``, each block's output appended to ``hidden`` (when a list);
    ``carry_scores``: pass each block's pre-softmax scores to the next (residual attention)."""
    if policy == "block":
        scores: Tensor | None = None
        for block in blocks:
            x, scores = checkpoint(block, x, mask, scores if carry_scores else None, key_padding, causal,
                                   use_reentrant=False, preserve_rng_state=True)
            if hidden is not None:
                hidden.append(x)
        return x
    return _run_tail_once(blocks, x, mask, key_padding, causal, carry_scores, hidden)


def _up_to_down_projection(block: Block, s: Tensor, prev_norm: nn.Module | None, mask: Tensor | None,
                           scores: Tensor | None, key_padding: Tensor | None,
                           causal: bool) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """One ``tail_once`` checkpoint: the previous post-norm block's second norm (``prev_norm``; None for the first
    block and in pre/none stacks), then ``block`` up to its FFN down projection's output: (x, h, f, scores), x the
    block's input, h its FFN branch's residual input, f = FFN(h) before its dropout."""
    x = s if prev_norm is None else prev_norm(s)
    h, scores = block.attn_residual(x, mask, scores, key_padding, causal)
    return x, h, block.ffn_out(h), scores


def _whole_block(block: Block, s: Tensor, prev_norm: nn.Module | None, mask: Tensor | None, scores: Tensor | None,
                 key_padding: Tensor | None, causal: bool) -> tuple[Tensor, Tensor, Tensor | None]:
    """The previous block's second norm and all of ``block``: (x, y, scores), x the block's input."""
    x = s if prev_norm is None else prev_norm(s)
    y, scores = block(x, mask, scores, key_padding, causal)
    return x, y, scores


def _run_tail_once(blocks: Sequence[Block], x: Tensor, mask: Tensor | None, key_padding: Tensor | None, causal: bool,
                   carry_scores: bool, hidden: list[Tensor] | None) -> Tensor:
    """``"tail_once"`` (see the module docstring): s is the running pre-norm sum, its norm applied by the next
    checkpoint."""
    s, prev_norm = x, None
    scores: Tensor | None = None
    last = len(blocks) - 1
    for i, block in enumerate(blocks):
        carried = scores if carry_scores else None
        if i == last and block.placement == "post":
            x, s, scores = checkpoint(_whole_block, block, s, prev_norm, mask, carried, key_padding, causal,
                                      use_reentrant=False, preserve_rng_state=True)
        else:
            x, h, f, scores = checkpoint(_up_to_down_projection, block, s, prev_norm, mask, carried, key_padding,
                                         causal, use_reentrant=False, preserve_rng_state=True)
            s = block.ffn_residual(h, f)  # keeps nothing for backward
            prev_norm = block.ffn_norm if block.placement == "post" else None
        if hidden is not None and i > 0:
            hidden.append(x)  # the previous block's output, normed inside this checkpoint
    if hidden is not None:
        hidden.append(s)  # a post-norm stack's last block ran whole; a pre/none block ends with its tail
    return s


# ----------------------------------------------------------------------------- any model: a checkpoint per block
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
    """A ValueError if ``module`` holds a BatchNorm with running statistics (a recompute would update them twice)."""
    for name, sub in module.named_modules():
        if isinstance(sub, nn.modules.batchnorm._BatchNorm) and sub.track_running_stats:
            where = f" ({name})" if name else ""
            raise ValueError(f"expected {type(module).__name__} without BatchNorm running statistics (recompute "
                             f"would update them twice per step), got a BatchNorm with them{where}: freeze them "
                             f"(track_running_stats=False or eval mode for that layer) or leave this block out")


def _modules(name: str, model: Any) -> list[nn.Module]:
    """``model`` as a list of modules (itself, or the items of a ModuleList or a list of modules), else a TypeError
    naming it."""
    if isinstance(model, nn.Module) and not isinstance(model, nn.ModuleList):
        return [model]
    if isinstance(model, (str, bytes)) or not isinstance(model, Iterable):
        raise TypeError(f"expected {name} to be an nn.Module or a sequence of nn.Modules, got {type(model).__name__}")
    items = list(model)
    for i, m in enumerate(items):
        if not isinstance(m, nn.Module):
            raise TypeError(f"expected {name} to be an nn.Module or a sequence of nn.Modules, got "
                            f"{type(m).__name__} at index {i}")
    return items


def is_recomputed(module: nn.Module) -> bool:
    """Whether ``module``'s forward is wrapped by :func:`recompute`."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"expected module to be an nn.Module, got {type(module).__name__}")
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
        m.__dict__["forward"] = _RecomputedForward(m, m.__dict__.get("forward"), use_reentrant, preserve_rng_state)
        return m
    if not callable(module_or_fn):
        raise TypeError(f"expected module_or_fn to be an nn.Module or a callable, got {type(module_or_fn).__name__}")
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


def find_blocks(model: nn.Module | Sequence[nn.Module], block_types: Sequence[type] | None = None) -> list[nn.Module]:
    """The blocks :func:`enable_recompute` wraps: the modules of ``block_types`` (outermost), else a kexue
    Transformer's ``blocks``, else every outermost ``nn.ModuleList`` of ≥ 2 modules of one class (BERT's
    ``encoder.layer``, GPT-2's ``h``, ...). Found by module type and structure, not by names."""
    from .transformer import Transformer

    if isinstance(model, nn.Module):
        model = unwrap(model)
    if not isinstance(model, nn.Module) or isinstance(model, nn.ModuleList):
        return _modules("model", model)
    if block_types:
        types = tuple(block_types)
        out: list[nn.Module] = []
        inside: set[int] = set()
        for m in model.modules():
            if id(m) not in inside and isinstance(m, types):
                out.append(m)
                inside.update(id(s) for s in m.modules())
        if not out:
            raise ValueError(f"expected a module of type {', '.join(t.__name__ for t in types)} in "
                             f"{type(model).__name__}, found none")
        return out
    kexue = [m for m in model.modules() if isinstance(m, Transformer)]
    if kexue:
        return [b for t in kexue for b in t.blocks]
    lists = _homogeneous_lists(model)
    if not lists:
        raise ValueError(f"expected a stack of blocks in {type(model).__name__} (a ModuleList of ≥ 2 modules of one "
                         f"class), found none: pass the module list or block_types")
    return [b for lst in lists for b in lst]


def _hf_flag(model: object) -> str:
    """The name of transformers' checkpointing flag (transformers >= 5 renamed ``is_gradient_checkpointing``)."""
    new = "is_activation_checkpointing"
    return new if hasattr(model, new) else "is_gradient_checkpointing"


def enable_recompute(model: nn.Module | Sequence[nn.Module], block_types: Sequence[type] | None = None,
                     every: int = 1, use_reentrant: bool = False, preserve_rng_state: bool = True,
                     policy: Policy | None = None) -> list[nn.Module]:
    """Recompute every ``every``-th block of ``model`` in backward (kexue.fm/archives/7367); returns those blocks.

    ``model``: a module list (or list) of blocks, or a model whose blocks :func:`find_blocks` finds (kexue
    Transformer, transformers models, DDP-wrapped). For a kexue Transformer with ``every=1`` and no ``block_types``
    this is ``model.gradient_checkpointing_enable(policy or "tail_once")`` (``policy``: "tail_once" or "block", see
    the module docstring); other models are checkpointed around each block (``policy`` None or "block").
    Only training-mode forwards with autograd on are checkpointed. Undo with :func:`disable_recompute`.
    """
    from .transformer import Transformer

    check_int("every", every, 1)
    if policy is not None:
        check_choice("policy", policy, Policy)
    target = unwrap(model) if isinstance(model, nn.Module) else model
    if isinstance(target, Transformer):
        if every == 1 and not block_types:
            target.gradient_checkpointing_enable(policy or "tail_once")
            return list(target.blocks)
        if target.is_gradient_checkpointing:
            raise ValueError("expected a kexue Transformer without its own checkpointing for every > 1 or "
                             "block_types, got one with it on: model.gradient_checkpointing_disable() first")
    elif getattr(target, _hf_flag(target), False) is True:
        raise ValueError("expected a model without transformers' own gradient checkpointing (use one of the two: "
                         "model.gradient_checkpointing_disable() first), got one with it on")
    if policy == "tail_once":
        raise ValueError("expected policy 'block' or None for this model, got 'tail_once': it is a kexue "
                         "Transformer's own (every=1, no block_types)")
    chosen = find_blocks(target, block_types)[::every]
    for b in chosen:
        _check_no_batchnorm(b)
    for b in chosen:
        recompute(b, use_reentrant=use_reentrant, preserve_rng_state=preserve_rng_state)
    return chosen


def disable_recompute(model: nn.Module | Iterable[nn.Module]) -> int:
    """Undo :func:`enable_recompute` / :func:`recompute` on every module of ``model``; returns how many blocks it
    unwrapped (a kexue Transformer's switch counts as its blocks)."""
    from .transformer import Transformer

    mods = [s for m in _modules("model", model) for s in unwrap(m).modules()]
    n = 0
    for m in mods:
        if isinstance(m, Transformer) and m.is_gradient_checkpointing:
            m.gradient_checkpointing_disable()
            n += len(m.blocks)
        fwd = m.__dict__.get("forward")
        if isinstance(fwd, _RecomputedForward):
            if fwd.inner is None:
                del m.__dict__["forward"]
            else:
                m.__dict__["forward"] = fwd.inner
            n += 1
    return n


__all__ = [
    "POLICIES",
    "Policy",
    "disable_recompute",
    "enable_recompute",
    "find_blocks",
    "is_recomputed",
    "recompute",
    "unwrap",
]
