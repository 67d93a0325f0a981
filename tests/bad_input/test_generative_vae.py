"""Bad-input rows: kexue.generative.vae (the VAE as an importance sampler and its MLP builders)."""

from __future__ import annotations

import pytest
import torch
from _matrix import Bad, check
from torch import nn

from kexue.generative import VAE, vae_decoder, vae_encoder

NAN = float("nan")
BERN = VAE(vae_encoder(8, 16, 2), vae_decoder(2, 16, 8))
GAUSS = VAE(vae_encoder(8, 16, 2), vae_decoder(2, 16, 8), likelihood="gaussian", sigma=0.5)
ODD = VAE(nn.Linear(8, 3), vae_decoder(2, 16, 8), likelihood="gaussian")  # an encoder of odd output width
SHORT = VAE(vae_encoder(8, 16, 2), vae_decoder(2, 16, 7), likelihood="gaussian")  # a decoder one column short
MISMATCH = VAE(vae_encoder(8, 16, 3), vae_decoder(2, 16, 8), likelihood="gaussian")  # latent 3 into a 2-d decoder
BLOWUP = VAE(nn.Linear(8, 4), vae_decoder(2, 16, 8), likelihood="gaussian")
with torch.no_grad():
    BLOWUP.encoder.bias.fill_(float("inf"))  # an encoder gone to inf: the weights would be NaN
BLOWDEC = VAE(vae_encoder(8, 16, 2), nn.Linear(2, 8), likelihood="gaussian")
with torch.no_grad():
    BLOWDEC.decoder.bias.fill_(float("inf"))  # a decoder gone to inf
X = (torch.rand(4, 8, generator=torch.Generator().manual_seed(1)) < 0.5).float()
XG = torch.randn(4, 8, generator=torch.Generator().manual_seed(2))
XNAN = XG.clone()
XNAN[1, 3] = NAN
GREY = X * 0.5 + 0.25  # values 0.25 and 0.75: not binary

ROWS = [
    # the constructor
    Bad("kexue.generative.VAE", "encoder a function", lambda: VAE(torch.tanh, vae_decoder()), TypeError,
        r"expected encoder to be a torch\.nn\.Module, got builtin_function_or_method"),
    Bad("kexue.generative.VAE", "decoder None", lambda: VAE(vae_encoder(), None), TypeError,
        r"expected decoder to be a torch\.nn\.Module, got NoneType"),
    Bad("kexue.generative.VAE", "unknown likelihood", lambda: VAE(vae_encoder(), vae_decoder(), likelihood="normal"),
        ValueError, r"expected likelihood to be one of \['bernoulli', 'gaussian'\], got 'normal'"),
    Bad("kexue.generative.VAE", "sigma with the Bernoulli likelihood (it would be ignored)",
        lambda: VAE(vae_encoder(), vae_decoder(), sigma=0.5), ValueError,
        r"expected sigma=None and learn_sigma=False with likelihood='bernoulli' .*got sigma=0\.5"),
    Bad("kexue.generative.VAE", "learn_sigma with the Bernoulli likelihood",
        lambda: VAE(vae_encoder(), vae_decoder(), learn_sigma=True), ValueError,
        r"expected sigma=None and learn_sigma=False with likelihood='bernoulli' .*learn_sigma=True"),
    Bad("kexue.generative.VAE", "sigma 0", lambda: VAE(vae_encoder(), vae_decoder(), "gaussian", sigma=0.0),
        ValueError, r"expected sigma > 0\.0, got 0\.0"),
    Bad("kexue.generative.VAE", "sigma negative", lambda: VAE(vae_encoder(), vae_decoder(), "gaussian", sigma=-1),
        ValueError, r"expected sigma > 0\.0, got -1"),
    Bad("kexue.generative.VAE", "sigma nan", lambda: VAE(vae_encoder(), vae_decoder(), "gaussian", sigma=NAN),
        ValueError, r"expected sigma to be finite, got nan"),
    Bad("kexue.generative.VAE", "sigma a string", lambda: VAE(vae_encoder(), vae_decoder(), "gaussian", sigma="1"),
        TypeError, r"expected sigma to be a real number, got '1'"),
    Bad("kexue.generative.VAE", "learn_sigma a string (would count as True)",
        lambda: VAE(vae_encoder(), vae_decoder(), "gaussian", learn_sigma="False"), TypeError,
        r"expected learn_sigma to be a bool, got 'False'"),
    # encode: x itself
    Bad("kexue.generative.VAE.encode", "x a list", lambda: BERN.encode(X.tolist()), TypeError,
        r"expected x to be a torch\.Tensor, got list"),
    Bad("kexue.generative.VAE.encode", "integer x", lambda: BERN.encode(X.long()), TypeError,
        r"expected x to be a floating-point tensor, got torch\.int64"),
    Bad("kexue.generative.VAE.encode", "1-D x", lambda: BERN.encode(X[0]), ValueError,
        r"expected x of shape \(batch, x_dim\), non-empty, got shape \(8,\)"),
    Bad("kexue.generative.VAE.encode", "empty batch", lambda: BERN.encode(X[:0]), ValueError,
        r"expected x of shape \(batch, x_dim\), non-empty, got shape \(0, 8\)"),
    Bad("kexue.generative.VAE.encode", "x with nan", lambda: GAUSS.encode(XNAN), ValueError,
        r"expected x to be finite, got 1 NaN or infinite entries"),
    Bad("kexue.generative.VAE.encode", "grey values under the Bernoulli likelihood (not a likelihood of x)",
        lambda: BERN.encode(GREY), ValueError,
        r"expected x with values 0 or 1 for likelihood='bernoulli' .*got 32 other values, e\.g\. 0\.(25|75)"),
    Bad("kexue.generative.VAE.encode", "x of a width the encoder does not take (was torch's 'mat1 and mat2')",
        lambda: GAUSS.encode(XG[:, :7]), ValueError,
        r"expected x that the encoder takes, got shape \(4, 7\) and torch\.float32; the encoder raised: mat1"),
    Bad("kexue.generative.VAE.encode", "float64 x for a float32 model", lambda: GAUSS.encode(XG.double()), ValueError,
        r"expected x that the encoder takes, got shape \(4, 8\) and torch\.float64"),
    Bad("kexue.generative.VAE.encode", "an encoder of odd output width", lambda: ODD.encode(XG), ValueError,
        r"expected the encoder to return shape \(4, 2·latent_dim\) \(mean and log std\), got \(4, 3\)"),
    Bad("kexue.generative.VAE.encode", "an encoder returning inf (else NaN weights)", lambda: BLOWUP.encode(XG),
        ValueError, r"expected the encoder's output to be finite, got 16 NaN or infinite entries"),
    # decode
    Bad("kexue.generative.VAE.decode", "z a numpy array", lambda: BERN.decode(XG[:, :2].numpy()), TypeError,
        r"expected z to be a torch\.Tensor, got ndarray"),
    Bad("kexue.generative.VAE.decode", "integer z", lambda: BERN.decode(X[:, :2].long()), TypeError,
        r"expected z to be a floating-point tensor, got torch\.int64"),
    Bad("kexue.generative.VAE.decode", "1-D z", lambda: BERN.decode(XG[0, :2]), ValueError,
        r"expected z of shape \(n, latent_dim\), got shape \(2,\)"),
    Bad("kexue.generative.VAE.decode", "z of a width the decoder does not take", lambda: BERN.decode(XG[:, :3]),
        ValueError, r"expected z that the decoder takes, got shape \(4, 3\) and torch\.float32; the decoder raised"),
    # log_importance_weights
    Bad("kexue.generative.VAE.log_importance_weights", "n_samples 0", lambda: BERN.log_importance_weights(X, 0),
        ValueError, r"expected n_samples >= 1, got 0"),
    Bad("kexue.generative.VAE.log_importance_weights", "n_samples a float",
        lambda: BERN.log_importance_weights(X, 5.0), TypeError, r"expected n_samples to be an integer, got 5\.0"),
    Bad("kexue.generative.VAE.log_importance_weights", "generator an int seed",
        lambda: BERN.log_importance_weights(X, 2, generator=0), TypeError,
        r"expected generator to be a torch\.Generator or None, got int"),
    Bad("kexue.generative.VAE.log_importance_weights", "grey x under the Bernoulli likelihood",
        lambda: BERN.log_importance_weights(GREY, 2), ValueError, r"expected x with values 0 or 1"),
    Bad("kexue.generative.VAE.log_importance_weights", "a decoder one column short of x",
        lambda: SHORT.log_importance_weights(XG, 3), ValueError,
        r"expected the decoder to return shape \(12, 8\) for z of shape \(12, 2\), got \(12, 7\)"),
    Bad("kexue.generative.VAE.log_importance_weights", "encoder and decoder of different latent_dim",
        lambda: MISMATCH.log_importance_weights(XG, 2), ValueError,
        r"expected z \(from the encoder\) that the decoder takes, got shape \(8, 3\)"),
    # elbo, iwae_bound, loss
    Bad("kexue.generative.VAE.elbo", "n_samples negative", lambda: BERN.elbo(X, -1), ValueError,
        r"expected n_samples >= 1, got -1"),
    Bad("kexue.generative.VAE.elbo", "x with nan", lambda: GAUSS.elbo(XNAN), ValueError,
        r"expected x to be finite, got 1 NaN"),
    Bad("kexue.generative.VAE.elbo", "generator a numpy generator",
        lambda: BERN.elbo(X, generator=__import__("numpy").random.default_rng(0)), TypeError,
        r"expected generator to be a torch\.Generator or None, got Generator"),
    Bad("kexue.generative.VAE.iwae_bound", "n_samples 0", lambda: BERN.iwae_bound(X, 0), ValueError,
        r"expected n_samples >= 1, got 0"),
    Bad("kexue.generative.VAE.iwae_bound", "n_samples a bool", lambda: BERN.iwae_bound(X, True), TypeError,
        r"expected n_samples to be an integer, got True"),
    Bad("kexue.generative.VAE.iwae_bound", "grey x under the Bernoulli likelihood", lambda: BERN.iwae_bound(GREY, 5),
        ValueError, r"expected x with values 0 or 1 for likelihood='bernoulli'"),
    Bad("kexue.generative.VAE.loss", "n_samples 0", lambda: BERN.loss(X, 0), ValueError,
        r"expected n_samples >= 1, got 0"),
    Bad("kexue.generative.VAE.loss", "empty batch (else a NaN mean)", lambda: GAUSS.loss(XG[:0]), ValueError,
        r"expected x of shape \(batch, x_dim\), non-empty, got shape \(0, 8\)"),
    Bad("kexue.generative.VAE.loss", "x of another width", lambda: GAUSS.loss(XG[:, :6], 2), ValueError,
        r"expected x that the encoder takes, got shape \(4, 6\)"),
    Bad("kexue.generative.VAE.loss", "grey x under the Bernoulli likelihood", lambda: BERN.loss(GREY), ValueError,
        r"expected x with values 0 or 1 for likelihood='bernoulli'"),
    # log_likelihood
    Bad("kexue.generative.VAE.log_likelihood", "chunk 0", lambda: BERN.log_likelihood(X, 10, chunk=0), ValueError,
        r"expected chunk >= 1, got 0"),
    Bad("kexue.generative.VAE.log_likelihood", "chunk a float", lambda: BERN.log_likelihood(X, 10, chunk=2.5),
        TypeError, r"expected chunk to be an integer, got 2\.5"),
    Bad("kexue.generative.VAE.log_likelihood", "n_samples 0", lambda: BERN.log_likelihood(X, 0), ValueError,
        r"expected n_samples >= 1, got 0"),
    Bad("kexue.generative.VAE.log_likelihood", "n_samples a string", lambda: BERN.log_likelihood(X, "1000"),
        TypeError, r"expected n_samples to be an integer, got '1000'"),
    Bad("kexue.generative.VAE.log_likelihood", "generator a seed", lambda: BERN.log_likelihood(X, 10, generator=3),
        TypeError, r"expected generator to be a torch\.Generator or None, got int"),
    Bad("kexue.generative.VAE.log_likelihood", "grey x under the Bernoulli likelihood",
        lambda: BERN.log_likelihood(GREY, 10), ValueError, r"expected x with values 0 or 1"),
    Bad("kexue.generative.VAE.log_likelihood", "x with inf", lambda: GAUSS.log_likelihood(XG / 0, 10), ValueError,
        r"expected x to be finite, got \d+ NaN or infinite entries"),
    Bad("kexue.generative.VAE.log_likelihood", "a decoder returning inf (else NaN log weights)",
        lambda: BLOWDEC.log_likelihood(XG, 10), ValueError,
        r"expected the decoder's output to be finite, got 320 NaN or infinite entries"),
    # the builders
    Bad("kexue.generative.vae_encoder", "latent_dim 0", lambda: vae_encoder(64, 128, 0), ValueError,
        r"expected latent_dim >= 1, got 0"),
    Bad("kexue.generative.vae_encoder", "in_dim a float", lambda: vae_encoder(64.0), TypeError,
        r"expected in_dim to be an integer, got 64\.0"),
    Bad("kexue.generative.vae_encoder", "hidden_dim negative", lambda: vae_encoder(hidden_dim=-8), ValueError,
        r"expected hidden_dim >= 1, got -8"),
    Bad("kexue.generative.vae_decoder", "out_dim 0", lambda: vae_decoder(out_dim=0), ValueError,
        r"expected out_dim >= 1, got 0"),
    Bad("kexue.generative.vae_decoder", "latent_dim a string", lambda: vae_decoder("8"), TypeError,
        r"expected latent_dim to be an integer, got '8'"),
    Bad("kexue.generative.vae_decoder", "hidden_dim a bool", lambda: vae_decoder(hidden_dim=True), TypeError,
        r"expected hidden_dim to be an integer, got True"),
]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_refuses(row):
    check(row)
