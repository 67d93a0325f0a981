"""Things that change how a training step is taken: adversarial training (FGM), gradient penalties, random
replacement of decoder inputs against exposure bias, and MLM masking seen as dropout (BERT masking, DropToken).

Checkpointing (recompute) is a switch on the model: :meth:`kexue.models.Transformer.gradient_checkpointing_enable`,
or :func:`kexue.models.recompute.enable_recompute` for other models.
"""

from ._embedding import Recorded, find_input_embedding, record_output
from .adversarial import FGM, FGM_PRESETS, FGMLosses, FGMNorm, FGMPreset, FGMScope, FGMUpdate, fgm_step, perturbation
from .exposure_bias import (
    CorruptedBatch,
    RandomTokenReplacement,
    ReplacementPool,
    pack_unilm,
    penalized_unilm_loss,
    unilm_seq2seq_loss,
)
from .mlm import DroppedBatch, DropToken, MaskedBatch, MLMMasking, expected_embedding_correction_
from .penalty import (
    PenalizedLoss,
    PenaltyForm,
    batch_param_grad_penalty,
    double_backward_attention,
    embedding_gradient_penalty,
    gradient_penalty_loss,
    input_grad_penalty,
    input_gradients,
    param_grad_penalty,
)

__all__ = [
    "FGM",
    "FGM_PRESETS",
    "CorruptedBatch",
    "DropToken",
    "DroppedBatch",
    "FGMLosses",
    "FGMNorm",
    "FGMPreset",
    "FGMScope",
    "FGMUpdate",
    "MLMMasking",
    "MaskedBatch",
    "PenalizedLoss",
    "PenaltyForm",
    "RandomTokenReplacement",
    "Recorded",
    "ReplacementPool",
    "batch_param_grad_penalty",
    "double_backward_attention",
    "embedding_gradient_penalty",
    "expected_embedding_correction_",
    "fgm_step",
    "find_input_embedding",
    "gradient_penalty_loss",
    "input_grad_penalty",
    "input_gradients",
    "pack_unilm",
    "param_grad_penalty",
    "penalized_unilm_loss",
    "perturbation",
    "record_output",
    "unilm_seq2seq_loss",
]
