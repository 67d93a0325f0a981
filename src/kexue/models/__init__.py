"""The kexue Transformer, its configuration, Hugging Face checkpoint I/O, the tokenizer wrapper, decoding and
recompute (the checkpointing policies and the per-block wrapper, in :mod:`kexue.models.recompute`)."""

from .cache import KVCache
from .config import (
    Family,
    MaskType,
    NormKind,
    NormPlacement,
    PositionStyle,
    QKInit,
    ResidualGate,
    TransformerConfig,
)
from .decoding import Hypothesis, StepFn, UniLMStep, beam_search, generate, greedy_search
from .hf import (
    CheckpointError,
    LoadReport,
    LoadResult,
    load_pretrained,
    load_pretrained_with_report,
    save_pretrained,
)
from .offsets import char_span, encoding_mapping, rematch, token_span
from .recompute import Policy, disable_recompute, enable_recompute, find_blocks, is_recomputed
from .tokenizer import Tokenizer, pad_encodings
from .transformer import InferenceKernel, Transformer, TransformerOutput

__all__ = [
    "CheckpointError",
    "Family",
    "Hypothesis",
    "InferenceKernel",
    "KVCache",
    "LoadReport",
    "LoadResult",
    "MaskType",
    "NormKind",
    "NormPlacement",
    "Policy",
    "PositionStyle",
    "QKInit",
    "ResidualGate",
    "StepFn",
    "Tokenizer",
    "Transformer",
    "TransformerConfig",
    "TransformerOutput",
    "UniLMStep",
    "beam_search",
    "char_span",
    "disable_recompute",
    "enable_recompute",
    "encoding_mapping",
    "find_blocks",
    "generate",
    "greedy_search",
    "is_recomputed",
    "load_pretrained",
    "load_pretrained_with_report",
    "pad_encodings",
    "rematch",
    "save_pretrained",
    "token_span",
]
