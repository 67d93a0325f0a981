"""The kexue Transformer, its configuration, Hugging Face checkpoint I/O, the tokenizer wrapper and decoding."""

from .config import TransformerConfig
from .decoding import Hypothesis, StepFn, UniLMStep, beam_search, generate, greedy_search
from .hf import CheckpointError, LoadReport, load_pretrained, save_pretrained
from .recompute import disable_recompute, enable_recompute, find_blocks, is_recomputed
from .tokenizer import Tokenizer
from .transformer import KVCache, Transformer, TransformerOutput

__all__ = [
    "CheckpointError",
    "Hypothesis",
    "KVCache",
    "LoadReport",
    "StepFn",
    "Tokenizer",
    "Transformer",
    "TransformerConfig",
    "TransformerOutput",
    "UniLMStep",
    "beam_search",
    "disable_recompute",
    "enable_recompute",
    "find_blocks",
    "generate",
    "greedy_search",
    "is_recomputed",
    "load_pretrained",
    "save_pretrained",
]
