"""Finding a model's input embedding by module reference, recording a module's output, autocast by model device.

Private module: :func:`find_input_embedding`, :func:`record_output` and :class:`Recorded` are exported by
:mod:`kexue.train`; :func:`autocast_for` serves the package's step functions.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..models.recompute import unwrap
from ._checks import check_module


def _kexue_word(model: nn.Module) -> nn.Embedding | None:
    from ..models.transformer import Transformer

    return model.embeddings.word if isinstance(model, Transformer) else None


def _is_hf_model(model: nn.Module) -> bool:
    try:
        from transformers import PreTrainedModel
    except ImportError:  # transformers is optional
        return False
    return isinstance(model, PreTrainedModel)


def _hf_input_embedding(model: nn.Module) -> nn.Embedding | None:
    if not _is_hf_model(model):
        return None
    get_input_embeddings = getattr(model, "get_input_embeddings", None)
    emb = get_input_embeddings() if callable(get_input_embeddings) else None
    if not isinstance(emb, nn.Embedding):
        raise ValueError(f"expected the input embedding of {type(model).__name__} to be an nn.Embedding, got "
                         f"{type(emb).__name__}: pass the embedding module explicitly")
    return emb


def find_input_embedding(model: nn.Module) -> nn.Embedding:
    """The token (word) embedding module of ``model``, found by module reference, never by parameter names.

    ``model`` may be a kexue :class:`~kexue.models.Transformer` (its ``embeddings.word``), a ``transformers``
    ``PreTrainedModel`` (``get_input_embeddings()``), an ``nn.Embedding`` itself, a DDP / ``torch.compile``
    wrapper of one of these, or any module that contains exactly one kexue Transformer or ``PreTrainedModel`` (the
    outermost one found), or else exactly one ``nn.Embedding``. Anything else is refused: pass the embedding
    explicitly.
    """
    return _find_input_embedding(model, "model")


def _find_input_embedding(model: nn.Module, name: str) -> nn.Embedding:
    """:func:`find_input_embedding` of the argument ``name`` (checked to be a module, once, here)."""
    model = unwrap(check_module(name, model))
    if isinstance(model, nn.Embedding):
        return model
    for finder in (_kexue_word, _hf_input_embedding):
        emb = finder(model)
        if emb is not None:
            return emb
    from ..models.transformer import Transformer

    backbones: list[nn.Module] = []
    skip: set[int] = set()
    for m in model.modules():
        if id(m) in skip:
            continue
        if isinstance(m, Transformer) or _is_hf_model(m):
            backbones.append(m)
            skip.update(id(s) for s in m.modules())
    if len(backbones) == 1:
        return _find_input_embedding(backbones[0], name)
    if len(backbones) > 1:
        raise ValueError(f"expected one backbone in {type(model).__name__}, got {len(backbones)} "
                         f"({', '.join(type(b).__name__ for b in backbones)}): pass the embedding module explicitly")
    embeddings = [m for m in model.modules() if isinstance(m, nn.Embedding)]
    if len(embeddings) == 1:
        return embeddings[0]
    raise ValueError(f"expected one nn.Embedding in {type(model).__name__} (it holds no kexue Transformer or "
                     f"transformers model), got {len(embeddings)}: pass the embedding module explicitly")


@dataclass
class Recorded:
    """Outputs of a module, in call order (see :func:`record_output`)."""

    outputs: list[Tensor] = field(default_factory=list)

    @property
    def output(self) -> Tensor:
        """The single recorded output; an error when the module ran zero or several times."""
        if len(self.outputs) != 1:
            raise RuntimeError(f"expected the module to run once inside record_output(), got {len(self.outputs)} "
                               f"runs")
        return self.outputs[0]


@contextlib.contextmanager
def record_output(module: nn.Module) -> Iterator[Recorded]:
    """Inside the block, every output of ``module`` (e.g. the embedding outputs e for the gradient penalty) is kept
    in ``.outputs`` (``.output`` when it ran once). The forward hook is removed on exit."""
    check_module("module", module)
    rec = Recorded()

    def hook(_module: nn.Module, _inputs: tuple[Any, ...], output: Any) -> None:
        if not isinstance(output, Tensor):
            raise TypeError(f"expected {type(_module).__name__} to return a tensor inside record_output(), got "
                            f"{type(output).__name__}")
        rec.outputs.append(output)

    handle = module.register_forward_hook(hook)
    try:
        yield rec
    finally:
        handle.remove()


def autocast_for(model: nn.Module, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    """``torch.autocast`` on the device of ``model``'s parameters with ``dtype`` (None: no autocast)."""
    if dtype is None:
        return contextlib.nullcontext()
    p = next(iter(model.parameters()), None)
    device = p.device.type if p is not None else "cpu"
    return torch.autocast(device_type=device, dtype=dtype)


__all__ = ["Recorded", "autocast_for", "find_input_embedding", "record_output"]
