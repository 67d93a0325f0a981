"""Bad-input rows: kexue.generative.univae (UniVAE, the von Mises–Fisher sampler and its mean cosine)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from _matrix import Bad, check

from kexue.generative import UniVAE, VonMisesFisherSampler, vmf_mean_cosine
from kexue.models import Transformer, TransformerConfig

NAN, INF = float("nan"), float("inf")
CFG = TransformerConfig(vocab_size=24, hidden_size=16, num_layers=3, num_heads=2, intermediate_size=32,
                        max_position_embeddings=16, hidden_dropout=0.0, attention_dropout=0.0)
MODEL = UniVAE(CFG, num_latent_layers=2, z_dim=4, kappa=8.0, maxlen=6).eval()
TRAINING = UniVAE(CFG, num_latent_layers=2, z_dim=4, kappa=8.0, maxlen=6)  # left in training mode
IDS = torch.tensor([[1, 5, 6, 7, 2, 0], [1, 8, 2, 0, 0, 0]])
MASK = (IDS != 0).long()
Z = MODEL.prior_sample(2, torch.Generator().manual_seed(0))
ZNAN = Z.clone()
ZNAN[1, 3] = NAN
MU = F.normalize(torch.randn(5, 4, generator=torch.Generator().manual_seed(1)), dim=-1)
MUNAN = MU.clone()
MUNAN[2, 1] = NAN


def univae(**kw) -> UniVAE:
    return UniVAE(**{"config": CFG, "num_latent_layers": 2, "z_dim": 4, "kappa": 8.0, "maxlen": 6, **kw})


def forward(**kw):
    return MODEL(**{"input_ids": IDS, "attention_mask": MASK, **kw})


def decode(model: UniVAE = MODEL, **kw):
    return model.decode(**{"z": Z, "bos_id": 1, "eos_id": 2, **kw})


ROWS = [
    # the constructor
    Bad("kexue.generative.UniVAE", "config a checkpoint folder", lambda: univae(config="models/minilm"), TypeError,
        r"expected config to be a TransformerConfig, got str"),
    Bad("kexue.generative.UniVAE", "num_latent_layers 0", lambda: univae(num_latent_layers=0), ValueError,
        r"expected num_latent_layers >= 1, got 0"),
    Bad("kexue.generative.UniVAE", "a latent on the first layer (its [CLS] is a constant embedding)",
        lambda: univae(num_latent_layers=3), ValueError, r"expected num_latent_layers <= 2, got 3"),
    Bad("kexue.generative.UniVAE", "num_latent_layers a float", lambda: univae(num_latent_layers=2.0), TypeError,
        r"expected num_latent_layers to be an integer, got 2\.0"),
    Bad("kexue.generative.UniVAE", "z_dim 1 with vMF (no sphere to sample)", lambda: univae(z_dim=1), ValueError,
        r"expected z_dim >= 2, got 1"),
    Bad("kexue.generative.UniVAE", "z_dim 0 with a Gaussian posterior", lambda: univae(z_dim=0, posterior="gaussian"),
        ValueError, r"expected z_dim >= 1, got 0"),
    Bad("kexue.generative.UniVAE", "kappa negative", lambda: univae(kappa=-1.0), ValueError,
        r"expected kappa >= 0\.0, got -1\.0"),
    Bad("kexue.generative.UniVAE", "kappa nan", lambda: univae(kappa=NAN), ValueError,
        r"expected kappa to be finite, got nan"),
    Bad("kexue.generative.UniVAE", "kappa beyond float64's reach", lambda: univae(kappa=1e300), ValueError,
        r"expected kappa <= 1000000000000\.0, got 1e\+300"),
    Bad("kexue.generative.UniVAE", "unknown posterior", lambda: univae(posterior="normal"), ValueError,
        r"expected posterior to be one of \['vmf', 'gaussian'\], got 'normal'"),
    Bad("kexue.generative.UniVAE", "maxlen 1 (no token after [CLS])", lambda: univae(maxlen=1), ValueError,
        r"expected maxlen >= 2, got 1"),
    Bad("kexue.generative.UniVAE", "the text twice beyond the position table", lambda: univae(maxlen=9), ValueError,
        r"expected 2·maxlen \+ 0 <= max_position_embeddings = 16 \(the text twice\), got maxlen=9"),
    Bad("kexue.generative.UniVAE", "linear attention (no n×n mask)",
        lambda: univae(config=CFG.replace(attention="linear")), ValueError,
        r"expected softmax attention without residual_attention .*got attention='linear'"),
    Bad("kexue.generative.UniVAE", "no segment embeddings", lambda: univae(config=CFG.replace(type_vocab_size=0)),
        ValueError, r"expected type_vocab_size >= 2 \(segment 0 is the encoder, 1 the decoder\), got "
        r"type_vocab_size=0"),
    # from_transformer
    Bad("kexue.generative.UniVAE.from_transformer", "a folder, not a loaded Transformer",
        lambda: UniVAE.from_transformer("models/minilm"), TypeError,
        r"expected transformer to be a kexue Transformer .*got str"),
    Bad("kexue.generative.UniVAE.from_transformer", "a config, not a Transformer",
        lambda: UniVAE.from_transformer(CFG), TypeError, r"expected transformer to be a kexue Transformer .*got "
        r"TransformerConfig"),
    Bad("kexue.generative.UniVAE.from_transformer", "more latent layers than it has",
        lambda: UniVAE.from_transformer(Transformer(CFG), num_latent_layers=4, maxlen=6), ValueError,
        r"expected num_latent_layers <= 2, got 4"),
    # forward
    Bad("kexue.generative.UniVAE.forward", "input_ids a list", lambda: forward(input_ids=IDS.tolist()), TypeError,
        r"expected input_ids to be a Tensor, got list"),
    Bad("kexue.generative.UniVAE.forward", "float input_ids", lambda: forward(input_ids=IDS.float()), TypeError,
        r"expected input_ids of dtype int64 or int32, got torch.float32"),
    Bad("kexue.generative.UniVAE.forward", "texts not padded to maxlen (the start would leak the length)",
        lambda: forward(input_ids=IDS[:, :5], attention_mask=MASK[:, :5]), ValueError,
        r"expected input_ids of shape \(batch, maxlen=6\) .*got \(2, 5\)"),
    Bad("kexue.generative.UniVAE.forward", "a token id beyond the vocabulary",
        lambda: forward(input_ids=IDS + 20), ValueError, r"expected input_ids in \[0, vocab_size=24\), got 28"),
    Bad("kexue.generative.UniVAE.forward", "an attention_mask of 2s", lambda: forward(attention_mask=MASK * 2),
        ValueError, r"expected attention_mask values 1 \(token\) and 0 \(padding\), got 2"),
    Bad("kexue.generative.UniVAE.forward", "left padding (position 0 must be the real [CLS])",
        lambda: forward(attention_mask=MASK.flip(1)), ValueError,
        r"expected attention_mask right-padded with the first token real \(rows of the form 1…1 0…0\)"),
    Bad("kexue.generative.UniVAE.forward", "attention_mask of another shape", lambda: forward(attention_mask=MASK[:1]),
        ValueError, r"expected attention_mask of input_ids' shape \(2, 6\), got \(1, 6\)"),
    Bad("kexue.generative.UniVAE.forward", "z of one layer's width", lambda: forward(z=Z[:, :4]), ValueError,
        r"expected z of shape \(2, num_latent_layers·z_dim = 8\), got \(2, 4\)"),
    Bad("kexue.generative.UniVAE.forward", "z for another batch", lambda: forward(z=Z[:1]), ValueError,
        r"expected z of shape \(2, num_latent_layers·z_dim = 8\), got \(1, 8\)"),
    Bad("kexue.generative.UniVAE.forward", "z with nan", lambda: forward(z=ZNAN), ValueError,
        r"expected z to be finite, got nan or inf"),
    Bad("kexue.generative.UniVAE.forward", "integer z", lambda: forward(z=Z.long()), TypeError,
        r"expected z to be a floating-point tensor, got torch.int64"),
    Bad("kexue.generative.UniVAE.forward", "generator a seed", lambda: forward(generator=0), TypeError,
        r"expected generator to be a torch.Generator or None, got int"),
    Bad("kexue.generative.UniVAE.forward", "sample a string (would count as True)", lambda: forward(sample="no"),
        TypeError, r"expected sample to be a bool, got 'no'"),
    Bad("kexue.generative.UniVAE.forward", "encoder_mask without encoder_ids", lambda: forward(encoder_mask=MASK),
        ValueError, r"expected encoder_mask=None without encoder_ids .*got a tensor"),
    Bad("kexue.generative.UniVAE.forward", "encoder_ids of another batch",
        lambda: forward(encoder_ids=IDS[:1], encoder_mask=MASK[:1]), ValueError,
        r"expected encoder_ids of input_ids' shape \(2, 6\) on cpu, got \(1, 6\) on cpu"),
    Bad("kexue.generative.UniVAE.forward", "encoder_ids too short (named as encoder_ids)",
        lambda: forward(encoder_ids=IDS[:, :4]), ValueError,
        r"expected encoder_ids of shape \(batch, maxlen=6\) .*got \(2, 4\)"),
    Bad("kexue.generative.UniVAE.forward", "an encoder_mask of 2s (named as encoder_mask)",
        lambda: forward(encoder_ids=IDS, encoder_mask=MASK * 2), ValueError,
        r"expected encoder_mask values 1 \(token\) and 0 \(padding\), got 2"),
    # loss
    Bad("kexue.generative.UniVAE.loss", "texts not padded to maxlen", lambda: MODEL.loss(IDS[:, :3]), ValueError,
        r"expected input_ids of shape \(batch, maxlen=6\) .*got \(2, 3\)"),
    Bad("kexue.generative.UniVAE.loss", "no target token (only [CLS] in every row)",
        lambda: MODEL.loss(IDS, torch.tensor([[1, 0, 0, 0, 0, 0]] * 2)), ValueError,
        r"expected at least one target token .*got attention_mask with one real token per row"),
    Bad("kexue.generative.UniVAE.loss", "generator a seed", lambda: MODEL.loss(IDS, MASK, generator=3), TypeError,
        r"expected generator to be a torch.Generator or None, got int"),
    Bad("kexue.generative.UniVAE.loss", "left padding", lambda: MODEL.loss(IDS, MASK.flip(1)), ValueError,
        r"expected attention_mask right-padded with the first token real"),
    # encode
    Bad("kexue.generative.UniVAE.encode", "input_ids a list", lambda: MODEL.encode(IDS.tolist()), TypeError,
        r"expected input_ids to be a Tensor, got list"),
    Bad("kexue.generative.UniVAE.encode", "texts not padded to maxlen", lambda: MODEL.encode(IDS[:, :4]), ValueError,
        r"expected input_ids of shape \(batch, maxlen=6\) .*got \(2, 4\)"),
    Bad("kexue.generative.UniVAE.encode", "left padding", lambda: MODEL.encode(IDS, MASK.flip(1)), ValueError,
        r"expected attention_mask right-padded with the first token real"),
    Bad("kexue.generative.UniVAE.encode", "1-D input_ids", lambda: MODEL.encode(IDS[0]), ValueError,
        r"expected input_ids of shape \(batch, seq\), got \(6,\)"),
    # prior_sample
    Bad("kexue.generative.UniVAE.prior_sample", "n 0", lambda: MODEL.prior_sample(0), ValueError,
        r"expected n >= 1, got 0"),
    Bad("kexue.generative.UniVAE.prior_sample", "n a float", lambda: MODEL.prior_sample(2.5), TypeError,
        r"expected n to be an integer, got 2\.5"),
    Bad("kexue.generative.UniVAE.prior_sample", "generator a seed", lambda: MODEL.prior_sample(2, generator=1),
        TypeError, r"expected generator to be a torch.Generator or None, got int"),
    # decode
    Bad("kexue.generative.UniVAE.decode", "model in training mode (dropout would make it random)",
        lambda: decode(TRAINING), ValueError, r"expected the model in eval mode \(call model.eval\(\)"),
    Bad("kexue.generative.UniVAE.decode", "z of one layer's width", lambda: decode(z=Z[:, :4]), ValueError,
        r"expected z of shape \(batch, num_latent_layers·z_dim = 8\), got \(2, 4\)"),
    Bad("kexue.generative.UniVAE.decode", "1-D z", lambda: decode(z=Z[0]), ValueError,
        r"expected z of shape \(batch, num_latent_layers·z_dim = 8\), got \(8,\)"),
    Bad("kexue.generative.UniVAE.decode", "z with nan", lambda: decode(z=ZNAN), ValueError,
        r"expected z to be finite, got nan or inf"),
    Bad("kexue.generative.UniVAE.decode", "z a list", lambda: decode(z=Z.tolist()), TypeError,
        r"expected z to be a torch.Tensor, got list"),
    Bad("kexue.generative.UniVAE.decode", "max_len 0", lambda: decode(max_len=0), ValueError,
        r"expected max_len >= 1, got 0"),
    Bad("kexue.generative.UniVAE.decode", "max_len beyond the decoder segment", lambda: decode(max_len=6), ValueError,
        r"expected max_len <= 5, got 6"),
    Bad("kexue.generative.UniVAE.decode", "beam_size 0", lambda: decode(beam_size=0), ValueError,
        r"expected beam_size >= 1, got 0"),
    Bad("kexue.generative.UniVAE.decode", "eos_id beyond the vocabulary", lambda: decode(eos_id=24), ValueError,
        r"expected eos_id <= 23, got 24"),
    Bad("kexue.generative.UniVAE.decode", "bos_id negative", lambda: decode(bos_id=-1), ValueError,
        r"expected bos_id >= 0, got -1"),
    Bad("kexue.generative.UniVAE.decode", "pad_id a float", lambda: decode(pad_id=0.0), TypeError,
        r"expected pad_id to be an integer, got 0\.0"),
    Bad("kexue.generative.UniVAE.decode", "length_penalty nan", lambda: decode(beam_size=2, length_penalty=NAN),
        ValueError, r"expected length_penalty to be finite, got nan"),
    # the vMF sampler
    Bad("kexue.generative.VonMisesFisherSampler", "dim 1", lambda: VonMisesFisherSampler(1, 8.0), ValueError,
        r"expected dim >= 2, got 1"),
    Bad("kexue.generative.VonMisesFisherSampler", "dim a float", lambda: VonMisesFisherSampler(16.0, 8.0), TypeError,
        r"expected dim to be an integer, got 16\.0"),
    Bad("kexue.generative.VonMisesFisherSampler", "kappa negative", lambda: VonMisesFisherSampler(4, -0.5),
        ValueError, r"expected kappa >= 0\.0, got -0\.5"),
    Bad("kexue.generative.VonMisesFisherSampler", "kappa inf", lambda: VonMisesFisherSampler(4, INF), ValueError,
        r"expected kappa to be finite, got inf"),
    Bad("kexue.generative.VonMisesFisherSampler", "kappa 1e300 (was a math domain error when sampling)",
        lambda: VonMisesFisherSampler(4, 1e300), ValueError, r"expected kappa <= 1000000000000\.0, got 1e\+300"),
    Bad("kexue.generative.VonMisesFisherSampler.forward", "mu a list",
        lambda: VonMisesFisherSampler(4, 8.0)(MU.tolist()), TypeError, r"expected mu to be a torch.Tensor, got list"),
    Bad("kexue.generative.VonMisesFisherSampler.forward", "integer mu",
        lambda: VonMisesFisherSampler(4, 8.0)(MU.long()), TypeError,
        r"expected mu to be a floating-point tensor, got torch.int64"),
    Bad("kexue.generative.VonMisesFisherSampler.forward", "mu of another dim",
        lambda: VonMisesFisherSampler(3, 8.0)(MU), ValueError, r"expected mu of shape \(\.\.\., dim=3\), got \(5, 4\)"),
    Bad("kexue.generative.VonMisesFisherSampler.forward", "mu not normalised (z would leave the sphere)",
        lambda: VonMisesFisherSampler(4, 8.0)(2 * MU), ValueError,
        r"expected mu of unit norm along the last dimension \(L2-normalise it\), got norms from 2 to 2"),
    Bad("kexue.generative.VonMisesFisherSampler.forward", "mu with nan",
        lambda: VonMisesFisherSampler(4, 8.0)(MUNAN), ValueError,
        r"expected mu of unit norm along the last dimension .*got norms from nan to nan"),
    Bad("kexue.generative.VonMisesFisherSampler.forward", "generator a seed",
        lambda: VonMisesFisherSampler(4, 8.0)(MU, generator=7), TypeError,
        r"expected generator to be a torch.Generator or None, got int"),
    # the mean cosine
    Bad("kexue.generative.vmf_mean_cosine", "dim 1", lambda: vmf_mean_cosine(1, 2.0), ValueError,
        r"expected dim >= 2, got 1"),
    Bad("kexue.generative.vmf_mean_cosine", "dim a string", lambda: vmf_mean_cosine("16", 2.0), TypeError,
        r"expected dim to be an integer, got '16'"),
    Bad("kexue.generative.vmf_mean_cosine", "kappa negative", lambda: vmf_mean_cosine(16, -1.0), ValueError,
        r"expected kappa >= 0\.0, got -1\.0"),
    Bad("kexue.generative.vmf_mean_cosine", "kappa 1e300 (was a silent 0.0: kappa squared overflowed)",
        lambda: vmf_mean_cosine(16, 1e300), ValueError, r"expected kappa <= 1000000000000\.0, got 1e\+300"),
    Bad("kexue.generative.vmf_mean_cosine", "kappa nan", lambda: vmf_mean_cosine(16, NAN), ValueError,
        r"expected kappa to be finite, got nan"),
]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_refuses(row):
    check(row)
