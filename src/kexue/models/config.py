"""TransformerConfig: every architecture switch of the kexue Transformer, named once and checked once."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from ..nn.activations import ACTIVATIONS
from ..nn.attention import ATTENTION_KINDS
from ..nn.init import INIT_SCHEMES

Family = Literal["bert", "roberta"]
NormPlacement = Literal["post", "pre", "none"]
MaskType = Literal["bidirectional", "lm", "unilm"]
PositionStyle = Literal["bert", "roberta"]

_FAMILIES = ("bert", "roberta")
_NORMS = ("post", "pre", "none")
_MASKS = ("bidirectional", "lm", "unilm")
_POSITIONS = ("bert", "roberta")
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
    hidden_act: str = "gelu"
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
    norm_kind: str = "layernorm"
    #: Residual gate x + α·f(x), α from 0 in every block (post 8620): "none", "rezero" (α learned), "ramp" (α not
    #: trained, raised by 1/residual_gate_ramp_steps per optimizer step up to 1: Su's preference).
    residual_gate: str = "none"
    #: Optimizer steps for the ramp to reach 1 (required with residual_gate="ramp"; the post gives no number).
    residual_gate_ramp_steps: int | None = None
    #: "bidirectional" (BERT), "lm" (causal), "unilm" (prefix from segment ids: segment 0 source, 1 target).
    mask_type: MaskType = "bidirectional"
    with_pooler: bool = True
    with_mlm: bool = False
    with_nsp: bool = False
    #: Activation of the MLM head's transform; None means ``hidden_act`` (RoBERTa's head always uses exact gelu).
    mlm_hidden_act: str | None = None
    #: The MLM decoder reuses the word-embedding matrix.
    tie_word_embeddings: bool = True
    # -- attention variants (see kexue.nn.attention) -----------------------------------------------------------
    #: "softmax", or a linear-attention kernel: "linear" (elu+1), "performer", "taylor", "exp_limit".
    attention: str = "softmax"
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
    attn_impl: str = "auto"
    #: Order of the "taylor" and "exp_limit" feature maps (even).
    linear_attention_order: int = 2
    #: Number of Performer random features.
    performer_features: int = 256
    # -- initialisation (see kexue.nn.init) --------------------------------------------------------------------
    #: "bert_hf" (normal(initializer_range), as transformers), "bert_tf" (TF's uncorrected truncated normal),
    #: "trunc_normal" (variance-corrected), or a fan mode: "fan_in", "fan_out", "fan_avg", "fan_geo", "fan_ch".
    init: str = "bert_hf"
    #: Q/K projections for unscaled attention: "default" (as ``init``), "t5_hf" (W_q std (d·d_k)^−½, W_k and W_v
    #: std d^−½, as transformers' T5), "t5_sym" (W_q and W_k std (d·√d_k)^−½ each, Su's symmetric form).
    qk_init: str = "default"

    def __new__(cls, *args: Any, **kwargs: Any) -> TransformerConfig:
        # before the generated __init__, which would only say "unexpected keyword argument"
        moved = [name for name in _RUN_TIME_SWITCHES if name in kwargs]
        if moved:
            raise TypeError(f"expected no {' or '.join(moved)} in a TransformerConfig, got {moved[0]}="
                            f"{kwargs[moved[0]]!r}: recompute is a run-time switch on the model, "
                            f"model.gradient_checkpointing_enable(policy='tail_once' or 'block'), not a config field")
        return super().__new__(cls)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size",
                     "max_position_embeddings"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"expected {name} to be a positive integer, got {value!r}")
        if not isinstance(self.type_vocab_size, int) or self.type_vocab_size < 0:
            raise ValueError(f"expected type_vocab_size >= 0, got {self.type_vocab_size!r}")
        if self.hidden_size % self.num_heads != 0:
            raise ValueError(
                f"expected hidden_size divisible by num_heads "
                f"({self.hidden_size} % {self.num_heads} = {self.hidden_size % self.num_heads})"
            )
        for name in ("hidden_dropout", "attention_dropout"):
            p = getattr(self, name)
            if not 0.0 <= p < 1.0:
                raise ValueError(f"expected {name} in [0, 1), got {p!r}")
        if not self.layer_norm_eps > 0:
            raise ValueError(f"expected layer_norm_eps > 0, got {self.layer_norm_eps!r}")
        if not self.initializer_range > 0:
            raise ValueError(f"expected initializer_range > 0, got {self.initializer_range!r}")
        for name in ("hidden_act", "mlm_hidden_act"):
            act = getattr(self, name)
            if act is not None and act not in ACTIVATIONS:
                raise ValueError(f"unknown {name} {act!r}; expected one of {sorted(ACTIVATIONS)}")
        for name, allowed in (("family", _FAMILIES), ("norm", _NORMS), ("mask_type", _MASKS),
                              ("position_style", _POSITIONS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; expected one of {list(allowed)}")
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"expected 0 <= pad_token_id < vocab_size ({self.vocab_size}), got {self.pad_token_id}")
        if self.position_style == "roberta" and self.pad_token_id + 1 >= self.max_position_embeddings:
            raise ValueError(
                f"roberta positions start at pad_token_id + 1 = {self.pad_token_id + 1}, "
                f"beyond max_position_embeddings = {self.max_position_embeddings}"
            )
        if self.mask_type == "unilm" and self.type_vocab_size < 2:
            raise ValueError(f"mask_type 'unilm' needs segment ids 0 and 1, but type_vocab_size = {self.type_vocab_size}")
        self._check_attention()
        if self.norm_kind not in ("layernorm", "rmsnorm"):
            raise ValueError(f"unknown norm_kind {self.norm_kind!r}; expected 'layernorm' or 'rmsnorm'")
        if self.residual_gate not in ("none", "rezero", "ramp"):
            raise ValueError(f"unknown residual_gate {self.residual_gate!r}; expected 'none', 'rezero' or 'ramp'")
        if self.residual_gate == "ramp":
            steps = self.residual_gate_ramp_steps
            if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
                raise ValueError(f"residual_gate='ramp' needs residual_gate_ramp_steps, a positive integer "
                                 f"(the post gives no step size), got {steps!r}")
        if self.init not in INIT_SCHEMES:
            raise ValueError(f"unknown init {self.init!r}; expected one of {list(INIT_SCHEMES)}")
        if self.qk_init not in ("default", "t5_hf", "t5_sym"):
            raise ValueError(f"unknown qk_init {self.qk_init!r}; expected 'default', 't5_hf' or 't5_sym'")
        if self.with_nsp and not self.with_pooler:
            raise ValueError("with_nsp=True needs with_pooler=True: the NSP head reads the pooled [CLS] vector")

    def _check_attention(self) -> None:
        if self.attention not in ATTENTION_KINDS:
            raise ValueError(f"unknown attention {self.attention!r}; expected one of {list(ATTENTION_KINDS)}")
        if self.attn_impl not in ("auto", "sdpa", "math"):
            raise ValueError(f"unknown attn_impl {self.attn_impl!r}; expected 'auto', 'sdpa' or 'math'")
        ks = self.attention_key_size
        if ks is not None and (not isinstance(ks, int) or isinstance(ks, bool) or ks < 1):
            raise ValueError(f"expected attention_key_size to be a positive integer or None, got {ks!r}")
        needs_scores = self.talking_heads or self.residual_attention
        if needs_scores and self.attn_impl == "sdpa":
            raise ValueError("talking_heads and residual_attention need the score matrix, which fused SDPA does not "
                             "expose: use attn_impl='auto' or 'math'")
        if self.attention != "softmax":
            if needs_scores:
                raise ValueError(f"attention={self.attention!r} has no score matrix: talking_heads and "
                                 "residual_attention need softmax attention")
            if self.mask_type == "unilm":
                raise ValueError(f"attention={self.attention!r} supports padding and causal (lm) masks, not unilm")
        if self.talking_heads_post_softmax and not self.talking_heads:
            raise ValueError("talking_heads_post_softmax=True needs talking_heads=True")
        if self.attention in ("taylor", "exp_limit") and (self.linear_attention_order < 1
                                                          or self.linear_attention_order % 2):
            raise ValueError(f"linear_attention_order must be a positive even integer (odd orders make the kernel "
                             f"negative), got {self.linear_attention_order}")
        if self.performer_features < 1:
            raise ValueError(f"expected performer_features >= 1, got {self.performer_features}")
        if self.qk_init != "default" and self.attention_scale:
            raise ValueError(f"qk_init={self.qk_init!r} folds the attention scale into the init; it needs "
                             "attention_scale=False")

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

    def replace(self, **changes: Any) -> "TransformerConfig":
        """A copy with ``changes`` applied (and checked)."""
        return dataclasses.replace(self, **changes)

    # -- Hugging Face config.json -------------------------------------------------------------------------------

    @classmethod
    def from_hf(cls, path_or_dict: str | Path | dict[str, Any], **overrides: Any) -> "TransformerConfig":
        """Build from a Hugging Face ``config.json`` (a folder, the file, or its parsed dict).

        Supported: ``model_type`` "bert" and "roberta" (and ones built like them: "xlm-roberta", "camembert")
        with absolute position embeddings, encoder only. Anything else raises ``ValueError`` naming it.
        ``overrides`` replace fields afterwards (e.g. ``hidden_dropout=0.0``).
        """
        if isinstance(path_or_dict, dict):
            hf = dict(path_or_dict)
        else:
            p = Path(path_or_dict)
            if p.is_dir():
                p = p / "config.json"
            if not p.exists():
                raise FileNotFoundError(f"no config.json at {p}")
            hf = json.loads(p.read_text(encoding="utf-8"))
        model_type = hf.get("model_type")
        if model_type == "bert":
            family: Family = "bert"
        elif model_type in ("roberta", "xlm-roberta", "camembert"):
            family = "roberta"
        else:
            raise ValueError(
                f"unsupported architecture: model_type={model_type!r} "
                f"(architectures={hf.get('architectures')}); kexue loads bert and roberta checkpoints"
            )
        pos = hf.get("position_embedding_type", "absolute")
        if pos != "absolute":
            raise ValueError(f"unsupported position_embedding_type={pos!r}; only 'absolute' is supported")
        if hf.get("is_decoder") or hf.get("add_cross_attention"):
            raise ValueError("unsupported: is_decoder/add_cross_attention (cross-attention decoders) are not built")
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
            pad_token_id=hf.get("pad_token_id") if hf.get("pad_token_id") is not None else (1 if family == "roberta" else 0),
            family=family,
            position_style="roberta" if family == "roberta" else "bert",
            mlm_hidden_act="gelu" if family == "roberta" else None,
            tie_word_embeddings=hf.get("tie_word_embeddings", True),
        )
        if not isinstance(kw["hidden_act"], str):
            raise ValueError(f"unsupported hidden_act {kw['hidden_act']!r}: expected a Hugging Face activation name")
        kw.update(overrides)
        return cls(**kw)

    def to_hf(self) -> dict[str, Any]:
        """The Hugging Face ``config.json`` dict for this architecture (``architectures`` is set by the saver)."""
        if not self.is_standard_attention:
            raise ValueError(
                "Hugging Face BERT/RoBERTa has standard softmax attention; this config has "
                f"attention={self.attention!r}, attention_key_size={self.attention_key_size}, "
                f"attention_scale={self.attention_scale}, talking_heads={self.talking_heads}, "
                f"residual_attention={self.residual_attention}"
            )
        if self.norm_kind != "layernorm" or self.residual_gate != "none":
            raise ValueError(f"Hugging Face BERT/RoBERTa has LayerNorm and no residual gate; this config has "
                             f"norm_kind={self.norm_kind!r}, residual_gate={self.residual_gate!r}")
        if self.norm != "post" or self.mask_type != "bidirectional":
            raise ValueError(
                f"Hugging Face BERT/RoBERTa has post-norm bidirectional encoders; this config has "
                f"norm={self.norm!r}, mask_type={self.mask_type!r}"
            )
        if self.family == "roberta" and self.with_nsp:
            raise ValueError("RoBERTa checkpoints have no NSP head; with_nsp=True cannot be saved as roberta")
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


def config_field_names() -> list[str]:
    return [f.name for f in fields(TransformerConfig)]
