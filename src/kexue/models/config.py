"""TransformerConfig: every architecture switch of the kexue Transformer, named once and checked once."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .._validate import check_choice, check_float, check_int
from ..nn.activations import Activation
from ..nn.attention import AttentionImpl, AttentionKind, check_attention
from ..nn.init import InitScheme
from ._files import read_json_object

#: Checkpoint family: the Hugging Face key table and position-id convention on save.
Family = Literal["bert", "roberta"]
#: "bert": positions 0..T-1. "roberta": positions counted over non-padding tokens from pad_token_id + 1.
PositionStyle = Literal["bert", "roberta"]
#: Where a block's norms sit: "post" (BERT), "pre" (with a final norm), "none" (for residual gates).
NormPlacement = Literal["post", "pre", "none"]
#: "layernorm", or "rmsnorm" (x/√(mean(x²) + ε)·γ, no centring, no bias).
NormKind = Literal["layernorm", "rmsnorm"]
#: Residual gate x + α·f(x): "none", "rezero" (α learned from 0), "ramp" (α raised by a fixed step from 0 to 1).
ResidualGate = Literal["none", "rezero", "ramp"]
#: "bidirectional" (BERT), "lm" (causal), "unilm" (prefix from segment ids: segment 0 source, 1 target).
MaskType = Literal["bidirectional", "lm", "unilm"]
#: Q/K initialisation for unscaled attention: "default" (as ``init``), "t5_hf", "t5_sym".
QKInit = Literal["default", "t5_hf", "t5_sym"]
#: Hugging Face ``model_type`` -> the family kexue loads it as.
_HF_FAMILIES: dict[str, Family] = {"bert": "bert", "roberta": "roberta", "xlm-roberta": "roberta",
                                   "camembert": "roberta"}
#: The ``config.json`` keys :meth:`TransformerConfig.from_hf` cannot do without (the others have BERT's defaults).
_HF_REQUIRED = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
#: :func:`kexue.nn.attention.check_attention`'s arguments under the names of this config's fields.
_ATTENTION_FIELDS = {"dropout": "attention_dropout", "key_size": "attention_key_size", "kind": "attention",
                     "impl": "attn_impl", "feature_order": "linear_attention_order",
                     "num_features": "performer_features"}
#: Former fields, now switches on the model (kexue.models.recompute): refused with a message that says so.
_RUN_TIME_SWITCHES = ("gradient_checkpointing", "recompute_policy")


@dataclass
class TransformerConfig:
    """Architecture of a BERT-family encoder.

    The defaults are BERT-base. Hugging Face ``config.json`` names map onto these through :meth:`from_hf`.
    """

    vocab_size: int = 30522
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    #: A Hugging Face ``hidden_act`` name, see :data:`kexue.nn.activations.ACTIVATIONS`.
    hidden_act: Activation = "gelu"
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    max_position_embeddings: int = 512
    #: Number of segment (token type) embeddings; 0 means the model has none.
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    #: Standard deviation of the normal initialisation (BERT's 0.02; not truncated, as HF BERT does).
    initializer_range: float = 0.02
    pad_token_id: int = 0
    #: Checkpoint family: decides the Hugging Face key table and position-id convention on save.
    family: Family = "bert"
    #: "bert": positions 0..T-1. "roberta": positions counted over non-padding tokens from pad_token_id + 1.
    position_style: PositionStyle = "bert"
    #: "post": x + f(x) then LayerNorm (BERT). "pre": x + f(LayerNorm(x)), with a final LayerNorm. "none": x + f(x)
    #: (for residual gates, as ReZero).
    norm: NormPlacement = "post"
    #: "layernorm" or "rmsnorm" (x/√(mean(x²) + ε)·γ, no centring, no bias).
    norm_kind: NormKind = "layernorm"
    #: Residual gate x + α·f(x), α from 0 in every block (post 8620): "none", "rezero" (α learned), "ramp" (α not
    #: trained, raised by 1/residual_gate_ramp_steps per optimizer step up to 1: Su's preference).
    residual_gate: ResidualGate = "none"
    #: Optimizer steps for the ramp to reach 1 (required with residual_gate="ramp"; the post gives no number).
    residual_gate_ramp_steps: int | None = None
    #: "bidirectional" (BERT), "lm" (causal), "unilm" (prefix from segment ids: segment 0 source, 1 target).
    mask_type: MaskType = "bidirectional"
    with_pooler: bool = True
    with_mlm: bool = False
    with_nsp: bool = False
    #: Activation of the MLM head's transform; None means ``hidden_act`` (RoBERTa's head always uses exact gelu).
    mlm_hidden_act: Activation | None = None
    #: The MLM decoder reuses the word-embedding matrix.
    tie_word_embeddings: bool = True
    # -- attention variants (see kexue.nn.attention) -----------------------------------------------------------
    #: "softmax", or a linear-attention kernel: "linear" (elu+1), "performer", "taylor", "exp_limit".
    attention: AttentionKind = "softmax"
    #: Q/K size per head; None means head_size (hidden_size / num_heads). Scale is 1/√attention_key_size.
    attention_key_size: int | None = None
    #: Divide the logits by √key_size (BERT). False is T5's convention: pair it with qk_init="t5_hf" or "t5_sym".
    attention_scale: bool = True
    #: Talking-heads attention: learned head mixing of the logits before the softmax (identity at init).
    talking_heads: bool = False
    #: Also mix the probabilities after the softmax (the paper's second matrix; identity at init).
    talking_heads_post_softmax: bool = False
    #: RealFormer: carry the running sum of pre-softmax scores from layer to layer (the paper's form).
    residual_attention: bool = False
    #: "auto" (SDPA where no score matrix is needed), "sdpa" (refused when one is), "math" (always explicit).
    attn_impl: AttentionImpl = "auto"
    #: Order of the "taylor" and "exp_limit" feature maps (even).
    linear_attention_order: int = 2
    #: Number of Performer random features.
    performer_features: int = 256
    # -- initialisation (see kexue.nn.init) --------------------------------------------------------------------
    #: "bert_hf" (normal(initializer_range), as transformers), "bert_tf" (TF's uncorrected truncated normal),
    #: "trunc_normal" (variance-corrected), or a fan mode: "fan_in", "fan_out", "fan_avg", "fan_geo", "fan_ch".
    init: InitScheme = "bert_hf"
    #: Q/K projections for unscaled attention: "default" (as ``init``), "t5_hf" (W_q std (d·d_k)^−½, W_k and W_v
    #: std d^−½, as transformers' T5), "t5_sym" (W_q and W_k std (d·√d_k)^−½ each, Su's symmetric form).
    qk_init: QKInit = "default"

    def __new__(cls, *args: Any, **kwargs: Any) -> TransformerConfig:
        # before the generated __init__, which would only say "unexpected keyword argument"
        moved = [name for name in _RUN_TIME_SWITCHES if name in kwargs]
        if moved:
            raise TypeError(f"expected no {' or '.join(moved)} in a TransformerConfig, got {moved[0]}="
                            f"{kwargs[moved[0]]!r}: recompute is a run-time switch on the model, "
                            f"model.gradient_checkpointing_enable(policy='tail_once' or 'block'), not a config field")
        return super().__new__(cls)

    def __post_init__(self) -> None:
        """Every field checked once, each error naming the field: "expected FIELD ..., got ..."."""
        for name in ("vocab_size", "num_layers", "intermediate_size", "max_position_embeddings"):
            check_int(name, getattr(self, name), 1)
        check_int("type_vocab_size", self.type_vocab_size, 0)
        # hidden_size, num_heads and the attention fields: the rules Attention itself checks, named as here
        check_attention(self.hidden_size, self.num_heads, self.attention_dropout, key_size=self.attention_key_size,
                        talking_heads=self.talking_heads, talking_heads_post_softmax=self.talking_heads_post_softmax,
                        residual_attention=self.residual_attention, kind=self.attention, impl=self.attn_impl,
                        feature_order=self.linear_attention_order, num_features=self.performer_features,
                        names=_ATTENTION_FIELDS)
        check_float("hidden_dropout", self.hidden_dropout, 0.0, 1.0, high_open=True)
        check_float("layer_norm_eps", self.layer_norm_eps, 0.0, low_open=True)
        check_float("initializer_range", self.initializer_range, 0.0, low_open=True)
        check_choice("hidden_act", self.hidden_act, Activation)
        if self.mlm_hidden_act is not None:
            check_choice("mlm_hidden_act", self.mlm_hidden_act, Activation)
        check_choice("family", self.family, Family)
        check_choice("position_style", self.position_style, PositionStyle)
        check_choice("norm", self.norm, NormPlacement)
        check_choice("norm_kind", self.norm_kind, NormKind)
        check_choice("residual_gate", self.residual_gate, ResidualGate)
        check_choice("mask_type", self.mask_type, MaskType)
        check_choice("init", self.init, InitScheme)
        check_choice("qk_init", self.qk_init, QKInit)
        check_int("pad_token_id", self.pad_token_id, 0)
        self._check_combinations()

    def _check_combinations(self) -> None:
        """The rules between fields (those of the attention options alone are :func:`check_attention`'s)."""
        if self.pad_token_id >= self.vocab_size:
            raise ValueError(f"expected pad_token_id < vocab_size ({self.vocab_size}), got {self.pad_token_id}")
        if self.position_style == "roberta" and self.pad_token_id + 1 >= self.max_position_embeddings:
            raise ValueError(f"expected max_position_embeddings > pad_token_id + 1 = {self.pad_token_id + 1} with "
                             f"position_style='roberta' (its positions start there), got max_position_embeddings="
                             f"{self.max_position_embeddings}")
        if self.mask_type == "unilm" and self.type_vocab_size < 2:
            raise ValueError(f"expected type_vocab_size >= 2 with mask_type='unilm' (segment 0 is the source, 1 the "
                             f"target), got type_vocab_size={self.type_vocab_size}")
        if self.mask_type == "unilm" and self.attention != "softmax":
            raise ValueError(f"expected mask_type 'bidirectional' or 'lm' with attention={self.attention!r} (linear "
                             f"attention takes padding and causal masks only), got mask_type='unilm'")
        if self.residual_gate == "ramp":
            if self.residual_gate_ramp_steps is None:
                raise ValueError("expected residual_gate_ramp_steps, a positive integer, with residual_gate='ramp' "
                                 "(the post gives no step count), got None")
            check_int("residual_gate_ramp_steps", self.residual_gate_ramp_steps, 1)
        if self.qk_init != "default" and self.attention_scale:
            raise ValueError(f"expected attention_scale=False with qk_init={self.qk_init!r} (it folds the attention "
                             f"scale into the init), got attention_scale=True")
        if self.with_nsp and not self.with_pooler:
            raise ValueError("expected with_pooler=True with with_nsp=True (the NSP head reads the pooled [CLS] "
                             "vector), got with_pooler=False")

    @property
    def is_standard_attention(self) -> bool:
        """Softmax attention with key_size = head_size and the 1/√d scale: what Hugging Face BERT computes."""
        return (self.attention == "softmax" and self.attention_key_size in (None, self.head_size)
                and self.attention_scale and not self.talking_heads and not self.residual_attention)

    @property
    def key_size(self) -> int:
        return self.attention_key_size if self.attention_key_size is not None else self.head_size

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_heads

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TransformerConfig:
        """A copy with ``changes`` applied (and checked)."""
        return dataclasses.replace(self, **changes)

    # -- Hugging Face config.json -------------------------------------------------------------------------------

    @classmethod
    def from_hf(cls, path_or_dict: str | Path | dict[str, Any], **overrides: Any) -> TransformerConfig:
        """Build from a Hugging Face ``config.json`` (a folder, the file, or its parsed dict).

        Supported: ``model_type`` "bert" and "roberta" (and ones built like them: "xlm-roberta", "camembert")
        with absolute position embeddings, encoder only. Anything else raises ``ValueError`` naming it (a value
        that does not fit a field raises as the field's check does).
        ``overrides`` replace fields afterwards (e.g. ``hidden_dropout=0.0``).
        """
        source = "the given dict"
        if isinstance(path_or_dict, dict):
            hf = dict(path_or_dict)
        elif isinstance(path_or_dict, (str, os.PathLike)):
            p = Path(path_or_dict)
            if p.is_dir():
                p = p / "config.json"
            if not p.exists():
                raise FileNotFoundError(f"expected a config.json at {p}, found none")
            hf, source = read_json_object(p), str(p)
        else:
            raise TypeError(f"expected path_or_dict to be a folder, a config.json path or a dict, got "
                            f"{type(path_or_dict).__name__}")
        model_type = hf.get("model_type")
        if model_type not in _HF_FAMILIES:
            raise ValueError(f"expected model_type to be one of {list(_HF_FAMILIES)} (kexue loads BERT and RoBERTa "
                             f"encoders), got {model_type!r} (architectures={hf.get('architectures')})")
        family = _HF_FAMILIES[model_type]
        pos = hf.get("position_embedding_type", "absolute")
        if pos != "absolute":
            raise ValueError(f"expected position_embedding_type='absolute' (the only one built), got "
                             f"position_embedding_type={pos!r}")
        if hf.get("is_decoder") or hf.get("add_cross_attention"):
            raise ValueError(f"expected an encoder (cross-attention decoders are not built), got is_decoder="
                             f"{hf.get('is_decoder')!r}, add_cross_attention={hf.get('add_cross_attention')!r}")
        missing = [key for key in _HF_REQUIRED if key not in hf]
        if missing:
            raise ValueError(f"expected {', '.join(missing)} in the Hugging Face config ({source}), got a config "
                             f"without {'them' if len(missing) > 1 else 'it'}")
        kw: dict[str, Any] = dict(
            vocab_size=hf["vocab_size"],
            hidden_size=hf["hidden_size"],
            num_layers=hf["num_hidden_layers"],
            num_heads=hf["num_attention_heads"],
            intermediate_size=hf["intermediate_size"],
            hidden_act=hf.get("hidden_act", "gelu"),
            hidden_dropout=hf.get("hidden_dropout_prob", 0.1),
            attention_dropout=hf.get("attention_probs_dropout_prob", 0.1),
            max_position_embeddings=hf.get("max_position_embeddings", 512),
            type_vocab_size=hf.get("type_vocab_size", 2),
            layer_norm_eps=hf.get("layer_norm_eps", 1e-12),
            initializer_range=hf.get("initializer_range", 0.02),
            pad_token_id=hf["pad_token_id"] if hf.get("pad_token_id") is not None else int(family == "roberta"),
            family=family,
            position_style="roberta" if family == "roberta" else "bert",
            mlm_hidden_act="gelu" if family == "roberta" else None,
            tie_word_embeddings=hf.get("tie_word_embeddings", True),
        )
        kw.update(overrides)
        return cls(**kw)

    def to_hf(self) -> dict[str, Any]:
        """The Hugging Face ``config.json`` dict for this architecture (``architectures`` is set by the saver)."""
        if not self.is_standard_attention:
            raise ValueError(
                "expected standard softmax attention (what Hugging Face BERT/RoBERTa computes), got "
                f"attention={self.attention!r}, attention_key_size={self.attention_key_size}, "
                f"attention_scale={self.attention_scale}, talking_heads={self.talking_heads}, "
                f"residual_attention={self.residual_attention}"
            )
        if self.norm_kind != "layernorm" or self.residual_gate != "none":
            raise ValueError(f"expected LayerNorm and no residual gate (as Hugging Face BERT/RoBERTa has), got "
                             f"norm_kind={self.norm_kind!r}, residual_gate={self.residual_gate!r}")
        if self.norm != "post" or self.mask_type != "bidirectional":
            raise ValueError(f"expected a post-norm bidirectional encoder (as Hugging Face BERT/RoBERTa is), got "
                             f"norm={self.norm!r}, mask_type={self.mask_type!r}")
        if self.family == "roberta" and self.with_nsp:
            raise ValueError("expected with_nsp=False with family='roberta' (RoBERTa checkpoints have no NSP head), "
                             "got with_nsp=True")
        return {
            "model_type": self.family,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "intermediate_size": self.intermediate_size,
            "hidden_act": self.hidden_act,
            "hidden_dropout_prob": self.hidden_dropout,
            "attention_probs_dropout_prob": self.attention_dropout,
            "max_position_embeddings": self.max_position_embeddings,
            "type_vocab_size": self.type_vocab_size,
            "layer_norm_eps": self.layer_norm_eps,
            "initializer_range": self.initializer_range,
            "pad_token_id": self.pad_token_id,
            "position_embedding_type": "absolute",
            "tie_word_embeddings": self.tie_word_embeddings,
        }


__all__ = [
    "Family",
    "MaskType",
    "NormKind",
    "NormPlacement",
    "PositionStyle",
    "QKInit",
    "ResidualGate",
    "TransformerConfig",
]
