"""Building blocks in pure torch, no I/O: activations, attention (softmax and linear), masks, initialisation, dropout,
conditional LayerNorm, the linear-chain CRF (NLL, log Z, Viterbi with BIO constraints, the transition
learning-rate group), inference snapshots of Linear layers, padding. Imports nothing of kexue but the argument
checks (``kexue._validate``).

The submodules hold the rest (e.g. :mod:`kexue.nn.linear_attention`'s feature maps and references,
:func:`kexue.nn.dropout.dropout` and :func:`~kexue.nn.dropout.seeded_dropout`, the individual GELU forms of
:mod:`kexue.nn.activations`); the names a function shares with its submodule (``dropout``, ``linear_attention``) are
not re-exported here, so ``kexue.nn.dropout`` stays the module.
"""

from .activations import ACTIVATION_NAMES, ACTIVATIONS, Activation, get_activation
from .attention import (
    ATTENTION_IMPLS,
    ATTENTION_KINDS,
    Attention,
    AttentionImpl,
    AttentionKind,
    AttentionOutput,
    check_attention,
)
from .conditional_norm import ConditionalLayerNorm
from .crf import CRF, TransitionMask, ViterbiPath, bio_transition_mask, crf_param_groups
from .dropout import Dropout, seeded_dropout
from .frozen_linear import KERNELS, FrozenLinear, Kernel, OneDNNFallbackWarning, onednn_available
from .init import (
    FAN_MODES,
    INIT_SCHEMES,
    Distribution,
    FanMode,
    InitScheme,
    bert_hf_,
    bert_tf_,
    fan_average,
    init_weight_,
    trunc_normal_,
    variance_scaling_,
)
from .masks import causal_mask, independent_mask, padding_mask, to_bias, uniae_mask, unilm_mask
from .padding import pad

__all__ = [
    "ACTIVATIONS",
    "ACTIVATION_NAMES",
    "ATTENTION_IMPLS",
    "ATTENTION_KINDS",
    "CRF",
    "FAN_MODES",
    "INIT_SCHEMES",
    "KERNELS",
    "Activation",
    "Attention",
    "AttentionImpl",
    "AttentionKind",
    "AttentionOutput",
    "ConditionalLayerNorm",
    "Distribution",
    "Dropout",
    "FanMode",
    "FrozenLinear",
    "InitScheme",
    "Kernel",
    "OneDNNFallbackWarning",
    "TransitionMask",
    "ViterbiPath",
    "bert_hf_",
    "bert_tf_",
    "bio_transition_mask",
    "causal_mask",
    "check_attention",
    "crf_param_groups",
    "fan_average",
    "get_activation",
    "independent_mask",
    "init_weight_",
    "onednn_available",
    "pad",
    "padding_mask",
    "seeded_dropout",
    "to_bias",
    "trunc_normal_",
    "uniae_mask",
    "unilm_mask",
    "variance_scaling_",
]
