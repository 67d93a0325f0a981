"""Hugging Face checkpoints in and out: one explicit key table per family (BERT, RoBERTa).

A table maps each kexue parameter name to the name the Hugging Face model class stores it under. Loading reads
``config.json`` plus ``model.safetensors`` (or ``pytorch_model.bin`` through ``torch.load(weights_only=True)``:
no arbitrary unpickling), strips the base-model prefix (``bert.`` / ``roberta.``) when present, and checks the
checkpoint against the table: missing, unexpected, mis-shaped and mistyped tensors are all reported in one error
(:func:`load_pretrained`), or in a :class:`LoadReport` beside the model (:func:`load_pretrained_with_report`, the
counterpart of transformers' ``from_pretrained(..., output_loading_info=True)``).

Casts: a floating tensor loads into a floating parameter of any precision (float64, float16, bfloat16 -> float32 is
an ordinary rounding cast, as transformers does with ``torch_dtype``); an integer or bool tensor cannot hold a float
parameter and is reported as mistyped, never cast. Non-finite weights (NaN, inf) are refused, naming each tensor,
unless ``allow_non_finite=True``. A config.json or weights file that cannot be read raises :class:`CheckpointError`
naming the file (and, for JSON, the line and column).
"""

from __future__ import annotations

import json
import os
import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from .._io import atomic_path
from ._files import CheckpointError
from .config import Family, TransformerConfig
from .transformer import Transformer

#: Tensors a checkpoint may hold that carry no learned weight of ours (skipped without complaint).
_IGNORED = {
    "embeddings.position_ids",  # a buffer older transformers versions saved
    "embeddings.token_type_ids",
    "cls.predictions.decoder.weight",  # tied to the word embeddings
    "cls.predictions.decoder.bias",  # tied to cls.predictions.bias
    "lm_head.decoder.weight",
    "lm_head.decoder.bias",
}


def _block_table(i: int) -> dict[str, str]:
    """kexue name -> HF name for encoder block i (identical in BERT and RoBERTa)."""
    hf, kx = f"encoder.layer.{i}.", f"blocks.{i}."
    return {
        kx + "attn.q.weight": hf + "attention.self.query.weight",
        kx + "attn.q.bias": hf + "attention.self.query.bias",
        kx + "attn.k.weight": hf + "attention.self.key.weight",
        kx + "attn.k.bias": hf + "attention.self.key.bias",
        kx + "attn.v.weight": hf + "attention.self.value.weight",
        kx + "attn.v.bias": hf + "attention.self.value.bias",
        kx + "attn.o.weight": hf + "attention.output.dense.weight",
        kx + "attn.o.bias": hf + "attention.output.dense.bias",
        kx + "attn_norm.weight": hf + "attention.output.LayerNorm.weight",
        kx + "attn_norm.bias": hf + "attention.output.LayerNorm.bias",
        kx + "ffn.up.weight": hf + "intermediate.dense.weight",
        kx + "ffn.up.bias": hf + "intermediate.dense.bias",
        kx + "ffn.down.weight": hf + "output.dense.weight",
        kx + "ffn.down.bias": hf + "output.dense.bias",
        kx + "ffn_norm.weight": hf + "output.LayerNorm.weight",
        kx + "ffn_norm.bias": hf + "output.LayerNorm.bias",
    }


def _encoder_table(config: TransformerConfig, prefix: str) -> dict[str, str]:
    table = {
        "embeddings.word.weight": "embeddings.word_embeddings.weight",
        "embeddings.position.weight": "embeddings.position_embeddings.weight",
        "embeddings.norm.weight": "embeddings.LayerNorm.weight",
        "embeddings.norm.bias": "embeddings.LayerNorm.bias",
    }
    if config.type_vocab_size:
        table["embeddings.segment.weight"] = "embeddings.token_type_embeddings.weight"
    for i in range(config.num_layers):
        table.update(_block_table(i))
    if config.with_pooler:
        table["pooler.dense.weight"] = "pooler.dense.weight"
        table["pooler.dense.bias"] = "pooler.dense.bias"
    return {k: prefix + v for k, v in table.items()}


def _bert_table(config: TransformerConfig, prefix: str = "") -> dict[str, str]:
    """kexue name -> HF name for BertModel / BertForMaskedLM / BertForPreTraining (heads as the config has them).

    ``prefix`` is ``"bert."`` for the models with heads, ``""`` for a bare BertModel.
    """
    table = _encoder_table(config, prefix)
    if config.with_mlm:
        table.update({
            "mlm.dense.weight": "cls.predictions.transform.dense.weight",
            "mlm.dense.bias": "cls.predictions.transform.dense.bias",
            "mlm.norm.weight": "cls.predictions.transform.LayerNorm.weight",
            "mlm.norm.bias": "cls.predictions.transform.LayerNorm.bias",
            "mlm.bias": "cls.predictions.bias",
        })
        if not config.tie_word_embeddings:
            table["mlm.decoder.weight"] = "cls.predictions.decoder.weight"
    if config.with_nsp:
        table["nsp.weight"] = "cls.seq_relationship.weight"
        table["nsp.bias"] = "cls.seq_relationship.bias"
    return table


def _roberta_table(config: TransformerConfig, prefix: str = "") -> dict[str, str]:
    """kexue name -> HF name for RobertaModel / RobertaForMaskedLM (``prefix`` ``"roberta."`` with the head)."""
    table = _encoder_table(config, prefix)
    if config.with_mlm:
        table.update({
            "mlm.dense.weight": "lm_head.dense.weight",
            "mlm.dense.bias": "lm_head.dense.bias",
            "mlm.norm.weight": "lm_head.layer_norm.weight",
            "mlm.norm.bias": "lm_head.layer_norm.bias",
            "mlm.bias": "lm_head.bias",
        })
        if not config.tie_word_embeddings:
            table["mlm.decoder.weight"] = "lm_head.decoder.weight"
    if config.with_nsp:
        raise ValueError("expected with_nsp=False for RoBERTa (it has no NSP head), got with_nsp=True")
    return table


def key_table(config: TransformerConfig, prefix: str = "") -> dict[str, str]:
    """kexue parameter name -> the name a Hugging Face checkpoint of ``config.family`` stores it under, for the
    heads ``config`` has: BertModel / BertForMaskedLM / BertForPreTraining, RobertaModel / RobertaForMaskedLM.
    ``prefix``: the base-model prefix of the models with heads (``"bert."``, ``"roberta."``), ``""`` for a bare one."""
    return (_bert_table if config.family == "bert" else _roberta_table)(config, prefix)


@dataclass
class LoadReport:
    """What a non-strict load left out (all empty after a clean load)."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    #: Tensors whose dtype cannot hold the parameter (an integer or bool tensor for a float one), never cast.
    mistyped: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """Nothing missing, unexpected, mis-shaped or mistyped."""
        return not (self.missing or self.unexpected or self.mismatched or self.mistyped)

    def describe(self) -> str:
        """One line naming every tensor left out, or "clean"."""
        parts = []
        if self.missing:
            parts.append(f"missing tensors ({len(self.missing)}): {', '.join(self.missing)}")
        if self.unexpected:
            parts.append(f"unexpected tensors ({len(self.unexpected)}): {', '.join(self.unexpected)}")
        if self.mismatched:
            parts.append(f"mis-shaped tensors ({len(self.mismatched)}): {', '.join(self.mismatched)}")
        if self.mistyped:
            parts.append(f"mistyped tensors ({len(self.mistyped)}): {', '.join(self.mistyped)}")
        return "; ".join(parts) or "clean"


class LoadResult(NamedTuple):
    """What :func:`load_pretrained_with_report` returns (it unpacks as ``model, report = ...``)."""

    model: Transformer
    report: LoadReport


def _first_line(e: BaseException) -> str:
    """``Type: first line of the message`` (torch's load errors run to several paragraphs)."""
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


def _read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The tensors of a Hugging Face model folder: model.safetensors, else pytorch_model.bin (weights only).
    A truncated or corrupt file raises :class:`CheckpointError` naming it."""
    folder = Path(path)
    st, binf = folder / "model.safetensors", folder / "pytorch_model.bin"
    if st.exists():
        try:
            return load_file(str(st))
        except SafetensorError as e:
            raise CheckpointError(f"expected a readable safetensors file at {st}, got {_first_line(e)}") from e
    if binf.exists():
        try:
            obj = torch.load(str(binf), map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, pickle.UnpicklingError) as e:
            raise CheckpointError(f"expected a readable PyTorch checkpoint at {binf}, got {_first_line(e)}") from e
        if not isinstance(obj, dict):
            raise CheckpointError(f"expected a state dict in {binf}, got a {type(obj).__name__}")
        return obj
    sharded = [p.name for p in folder.glob("*.index.json")]
    hint = f" (sharded checkpoints such as {sharded[0]} are not supported)" if sharded else ""
    raise FileNotFoundError(f"expected model.safetensors or pytorch_model.bin in {folder}, found neither{hint}")


def _normalise_names(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Old TF-converted checkpoints name LayerNorm parameters gamma/beta; transformers renames them, so do we."""
    out = {}
    for k, v in state.items():
        if k.endswith(".gamma"):
            k = k[: -len("gamma")] + "weight"
        elif k.endswith(".beta"):
            k = k[: -len("beta")] + "bias"
        out[k] = v
    return out


def _detect_prefix(state: dict[str, Tensor], family: Family) -> str:
    p = f"{family}."
    return p if any(k.startswith(p + "embeddings.") for k in state) else ""


def _can_hold(source: torch.dtype, target: torch.dtype) -> bool:
    """Whether a tensor of dtype ``source`` may be cast into a parameter of dtype ``target``: any floating precision
    into a floating parameter (a rounding cast), floating or complex into a complex one, otherwise the same dtype."""
    if target.is_floating_point:
        return source.is_floating_point
    if target.is_complex:
        return source.is_floating_point or source.is_complex
    return source == target


def _non_finite(state: dict[str, Tensor], names: list[str]) -> list[str]:
    """``name (count of numel)`` for each named floating tensor holding a NaN or an infinity, sorted by name."""
    out = []
    for name in sorted(names):
        t = state[name]
        if t.is_floating_point() or t.is_complex():
            bad = int((~torch.isfinite(t)).sum())
            if bad:
                out.append(f"{name} ({bad} of {t.numel()})")
    return out


def load_pretrained(path: str | Path, strict: bool = True, *, allow_non_finite: bool = False,
                    **config_overrides: Any) -> Transformer:
    """Load a Hugging Face BERT or RoBERTa folder into a kexue :class:`Transformer` (eval mode).

    The pooler, MLM and NSP heads are built when the checkpoint holds their tensors. ``config_overrides`` replace
    config fields (e.g. ``hidden_dropout=0.0``). With ``strict=True`` (the default) any missing, unexpected or
    mis-shaped tensor raises :class:`CheckpointError` listing them all; with ``strict=False`` the tensors that fit
    are loaded, the others keep their initialisation, and one ``UserWarning`` names them (as transformers warns).
    :func:`load_pretrained_with_report` returns that list as a :class:`LoadReport` beside the model.
    A mistyped tensor (integer or bool for a float parameter) counts as not fitting; floating precisions are cast.
    NaN or infinite weights raise :class:`CheckpointError` naming them, whatever ``strict`` is, unless
    ``allow_non_finite=True``; so does a config.json or weights file that cannot be read (naming the file).
    """
    model, report = load_pretrained_with_report(path, allow_non_finite=allow_non_finite, **config_overrides)
    if not report.clean:
        message = f"expected the tensors of a {model.config.family} model in {Path(path)}, got {report.describe()}"
        if strict:
            raise CheckpointError(message)
        warnings.warn(message + "; the tensors left out keep their initialisation", UserWarning, stacklevel=2)
    return model


def load_pretrained_with_report(path: str | Path, *, allow_non_finite: bool = False,
                                **config_overrides: Any) -> LoadResult:
    """Load as :func:`load_pretrained` with ``strict=False``, silently: the tensors that fit are loaded, and the
    returned :class:`LoadResult` ``(model, report)`` lists the missing, unexpected, mis-shaped and mistyped ones (the
    counterpart of transformers' ``from_pretrained(..., output_loading_info=True)``). Non-finite weights and
    unreadable files raise as in :func:`load_pretrained`."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"expected path to be a model folder (a str or Path), got {path!r} ({type(path).__name__})")
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"expected a model folder, got {folder}")
    base = TransformerConfig.from_hf(folder)
    state = _normalise_names(_read_state_dict(folder))
    prefix = _detect_prefix(state, base.family)

    def has(*names: str) -> bool:
        return any(n in state for n in names)

    heads = dict(
        with_pooler=has(prefix + "pooler.dense.weight", prefix + "pooler.dense.bias"),
        with_mlm=has("cls.predictions.bias", "cls.predictions.transform.dense.weight", "lm_head.bias",
                     "lm_head.dense.weight"),
        with_nsp=has("cls.seq_relationship.weight", "cls.seq_relationship.bias"),
    )
    config = base.replace(**{**heads, **config_overrides})
    model = Transformer(config)
    table = key_table(config, prefix)
    own = model.state_dict()
    absent = [k for k in table if k not in own]
    if absent:
        raise ValueError(f"expected config overrides that build a model able to hold a {config.family} checkpoint, "
                         f"got {sorted(config_overrides)}, which leave no place for {absent[0]}, ...")
    missing_own = set(own) - set(table)
    if missing_own:  # a table that does not cover the model is a bug of ours, not of the checkpoint
        raise RuntimeError(f"kexue key table misses model parameters: {sorted(missing_own)}")
    report = LoadReport()
    to_load: dict[str, Tensor] = {}
    for kx, hf in table.items():
        if hf not in state:
            report.missing.append(hf)
            continue
        t = state[hf]
        if tuple(t.shape) != tuple(own[kx].shape):
            report.mismatched.append(f"{hf} {tuple(t.shape)} (expected {tuple(own[kx].shape)})")
            continue
        if not _can_hold(t.dtype, own[kx].dtype):
            report.mistyped.append(f"{hf} {_dtype_name(t.dtype)} (expected {_dtypes_for(own[kx].dtype)})")
            continue
        to_load[kx] = t
    if not allow_non_finite:
        bad = _non_finite(state, [table[kx] for kx in to_load])
        if bad:
            raise CheckpointError(f"expected finite weights in {_weights_file(folder)}, got non-finite values in "
                                  f"{', '.join(bad)}; pass allow_non_finite=True to load them anyway")
    known = set(table.values())
    report.unexpected = sorted(k for k in state if k not in known and k.removeprefix(prefix) not in _IGNORED
                               and k not in _IGNORED)
    with torch.no_grad():
        for kx, t in to_load.items():
            own[kx].copy_(t.to(own[kx].dtype))
    model.eval()
    return LoadResult(model, report)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _dtypes_for(target: torch.dtype) -> str:
    """The dtypes :func:`_can_hold` lets into a parameter of dtype ``target``, in words."""
    kind = "a floating" if target.is_floating_point else "a floating or complex" if target.is_complex else None
    return f"{kind} dtype for {_dtype_name(target)}" if kind else _dtype_name(target)


def _weights_file(folder: Path) -> Path:
    """The weights file :func:`_read_state_dict` reads in ``folder``."""
    st = folder / "model.safetensors"
    return st if st.exists() else folder / "pytorch_model.bin"


def _architecture(config: TransformerConfig) -> tuple[str, str]:
    """(HF class name, base-model prefix) for the heads this config has."""
    if config.family == "roberta":
        return ("RobertaForMaskedLM", "roberta.") if config.with_mlm else ("RobertaModel", "")
    if config.with_mlm and config.with_nsp:
        return "BertForPreTraining", "bert."
    if config.with_mlm:
        return "BertForMaskedLM", "bert."
    if config.with_nsp:
        return "BertForNextSentencePrediction", "bert."
    return "BertModel", ""


def save_pretrained(model: Transformer, path: str | Path) -> Path:
    """Write ``config.json`` and ``model.safetensors`` that ``transformers.AutoModel`` (and the matching head class)
    loads. Files are written to temporary names and renamed, so an interrupted save leaves no half-written file.
    ``path`` is a folder (made if missing); one that cannot be made or written to is refused, naming it, before
    anything is written."""
    if not isinstance(model, Transformer):
        raise TypeError(f"expected model to be a kexue Transformer, got {type(model).__name__}")
    config = model.config
    hf_config = config.to_hf()
    arch, prefix = _architecture(config)
    # A pooler beside an MLM head is written too: BertForMaskedLM/RobertaForMaskedLM skip it, AutoModel loads it.
    hf_config["architectures"] = [arch]
    table = key_table(config, prefix)
    own = model.state_dict()
    tensors = {hf: own[kx].detach().to("cpu").contiguous().clone() for kx, hf in table.items()}
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"expected a folder to save the checkpoint in, got {folder}, which is a file")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise type(e)(e.errno, f"expected a folder that can be made at {folder}, got {e.strerror}") from e
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"expected a writable folder to save the checkpoint in, got {folder}, which is not")
    with atomic_path(folder / "model.safetensors") as tmp:
        save_file(tensors, tmp, metadata={"format": "pt"})
    with atomic_path(folder / "config.json") as tmp:
        tmp.write_text(json.dumps(hf_config, indent=2) + "\n", encoding="utf-8")
    return folder


__all__ = [
    "CheckpointError",
    "LoadReport",
    "LoadResult",
    "key_table",
    "load_pretrained",
    "load_pretrained_with_report",
    "save_pretrained",
]
