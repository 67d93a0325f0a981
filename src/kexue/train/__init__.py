"""Things that change how a training step is taken: adversarial training, gradient penalties, recompute."""

from ._embedding import Recorded, autocast_for, find_input_embedding, record_output, unwrap
from .penalty import (batch_param_grad_penalty, double_backward_attention, embedding_gradient_penalty,
                      gradient_penalty_loss, input_grad_penalty, input_gradients, param_grad_penalty)
from .adversarial import FGM, FGM_PRESETS, fgm_step, perturbation
from .exposure_bias import RandomTokenReplacement, pack_unilm, penalized_unilm_loss, unilm_seq2seq_loss
from .mlm import DropToken, DroppedBatch, MLMMasking, expected_embedding_correction_
