"""Hugging Face checkpoints in and out: one explicit key table per family (BERT, RoBERTa).

A table maps each kexue parameter name to the name the Hugging Face model class stores it under. Loading reads
``config.json`` plus ``model.safetensors`` (or ``pytorch_model.bin`` through ``torch.load(weights_only=True)``:
no arbitrary unpickling), strips the base-model prefix (``bert.`` / ``roberta.``) when present, and checks the
checkpoint against the table: missing, unexpected and mis-shaped tensors are all reported in one error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from .._io import atomic_path
from .config import TransformerConfig
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


def bert_key_table(config: TransformerConfig, prefix: str = "") -> dict[str, str]:
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


def roberta_key_table(config: TransformerConfig, prefix: str = "") -> dict[str, str]:
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
        raise ValueError("RoBERTa has no NSP head (with_nsp=True)")
    return table


def key_table(config: TransformerConfig, prefix: str = "") -> dict[str, str]:
    return (bert_key_table if config.family == "bert" else roberta_key_table)(config, prefix)


class CheckpointError(ValueError):
    """A checkpoint does not fit the model: lists every missing, unexpected and mis-shaped tensor."""


@dataclass
class LoadReport:
    """What a non-strict load left out (all empty after a clean load)."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self) -> str:
        parts = []
        if self.missing:
            parts.append(f"missing tensors ({len(self.missing)}): {', '.join(self.missing)}")
        if self.unexpected:
            parts.append(f"unexpected tensors ({len(self.unexpected)}): {', '.join(self.unexpected)}")
        if self.mismatched:
            parts.append(f"mis-shaped tensors ({len(self.mismatched)}): {', '.join(self.mismatched)}")
        return "; ".join(parts) or "clean"


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The tensors of a Hugging Face model folder: model.safetensors, else pytorch_model.bin (weights only)."""
    folder = Path(path)
    st, binf = folder / "model.safetensors", folder / "pytorch_model.bin"
    if st.exists():
        return load_file(str(st))
    if binf.exists():
        obj = torch.load(str(binf), map_location="cpu", weights_only=True)
        if not isinstance(obj, dict):
            raise CheckpointError(f"{binf} does not hold a state dict (got {type(obj).__name__})")
        return obj
    sharded = [p.name for p in folder.glob("*.index.json")]
    hint = f" (sharded checkpoints such as {sharded[0]} are not supported)" if sharded else ""
    raise FileNotFoundError(f"no model.safetensors or pytorch_model.bin in {folder}{hint}")


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


def _detect_prefix(state: dict[str, Tensor], family: str) -> str:
    p = f"{family}."
    return p if any(k.startswith(p + "embeddings.") for k in state) else ""


def load_pretrained(
    path: str | Path, strict: bool = True, **config_overrides: Any
) -> Transformer | tuple[Transformer, LoadReport]:
    """Load a Hugging Face BERT or RoBERTa folder into a kexue :class:`Transformer` (eval mode).

    The pooler, MLM and NSP heads are built when the checkpoint holds their tensors. ``config_overrides`` replace
    config fields (e.g. ``hidden_dropout=0.0``). With ``strict=True`` (the default) any missing, unexpected or
    mis-shaped tensor raises :class:`CheckpointError` listing them all; with ``strict=False`` the matching tensors
    are loaded and ``(model, LoadReport)`` is returned.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"not a model folder: {folder}")
    base = TransformerConfig.from_hf(folder)
    state = _normalise_names(read_state_dict(folder))
    prefix = _detect_prefix(state, base.family)
    has = lambda *names: any(n in state for n in names)  # noqa: E731
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
        raise ValueError(f"the config overrides {sorted(config_overrides)} build a model that cannot hold a "
                         f"{config.family} checkpoint (no place for {absent[0]}, ...)")
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
        to_load[kx] = t
    known = set(table.values())
    report.unexpected = sorted(k for k in state if k not in known and k.removeprefix(prefix) not in _IGNORED
                               and k not in _IGNORED)
    if strict and not report.clean:
        raise CheckpointError(f"checkpoint {folder} does not fit the {config.family} model: {report.describe()}")
    missing_own = set(own) - set(table)
    if missing_own:  # a table that does not cover the model is a bug of ours, not of the checkpoint
        raise RuntimeError(f"kexue key table misses model parameters: {sorted(missing_own)}")
    with torch.no_grad():
        for kx, t in to_load.items():
            own[kx].copy_(t.to(own[kx].dtype))
    model.eval()
    return model if strict else (model, report)


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
    loads. Files are written to temporary names and renamed, so an interrupted save leaves no half-written file."""
    config = model.config
    hf_config = config.to_hf()
    arch, prefix = _architecture(config)
    # A pooler beside an MLM head is written too: BertForMaskedLM/RobertaForMaskedLM skip it, AutoModel loads it.
    hf_config["architectures"] = [arch]
    table = key_table(config, prefix)
    own = model.state_dict()
    tensors = {hf: own[kx].detach().to("cpu").contiguous().clone() for kx, hf in table.items()}
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "model.safetensors") as tmp:
        save_file(tensors, tmp, metadata={"format": "pt"})
    with atomic_path(folder / "config.json") as tmp:
        tmp.write_text(json.dumps(hf_config, indent=2) + "\n", encoding="utf-8")
    return folder
