"""The kexue Transformer, its configuration, Hugging Face checkpoint I/O and the tokenizer wrapper."""

from .config import TransformerConfig
from .hf import CheckpointError, LoadReport, load_pretrained, save_pretrained
from .tokenizer import Tokenizer
from .transformer import KVCache, Transformer, TransformerOutput

__all__ = [
    "CheckpointError",
    "KVCache",
    "LoadReport",
    "Tokenizer",
    "Transformer",
    "TransformerConfig",
    "TransformerOutput",
    "load_pretrained",
    "save_pretrained",
]
