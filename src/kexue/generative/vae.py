"""A VAE as an importance sampler: the ELBO, the importance-weighted bound (IWAE) for any number of samples K, and a
chunked log-likelihood estimator with many samples.

Post: "变分自编码器（八）：估计样本概率密度" (Variational autoencoders (8): estimating the density of samples),
2021-12-09, https://kexue.fm/archives/8791; IWAE is Burda, Grosse & Salakhutdinov, "Importance Weighted
Autoencoders" (arXiv 1509.00519).

Notation here is the usual one: p_θ(x|z) the decoder, p(z) = N(0, I) the prior, q_φ(z|x) the encoder (the proposal).
The post swaps the letters (its q is the generative side and its p the encoder); the formulas are the same.

- Density as a continuous mixture, estimated by importance sampling with the encoder as the proposal:
  p(x) = ∫p(x|z)p(z)dz = E_{z~q(z|x)}[w], w = p(x|z)p(z)/q(z|x).
- Log importance weights: log w_k = log p(x|z_k) + log p(z_k) − log q(z_k|x), z_k = μ(x) + σ(x)⊙ε_k, ε_k ~ N(0, I)
  (reparameterised, so every term is differentiable in θ and φ). All three log densities keep their normalising
  constants (2π, σ), so the weights are densities of x, comparable across models.
- IWAE_K(x) = logsumexp_k(log w_k) − log K, computed with logsumexp (averaging raw weights underflows). K = 1 is the
  ordinary VAE objective, the ELBO. Jensen gives E[IWAE_K] ≤ log p(x), and E[IWAE_K] increases with K towards it;
  ELBO ≤ E[IWAE_K] for every K. Minimising −IWAE_K is the post's "NLL of the importance-sampled estimate": the VAE
  loss at K = 1 and IWAE at K > 1, with no ELBO derivation.
- The value at K = 1 is an upper bound on −log p(x), never a likelihood to report; report
  :meth:`VAE.log_likelihood` with many samples (the IWAE paper uses 5,000).
- Known and not fixed here: the encoder's gradient gets noisier relative to its size as K grows (Rainforth et al.,
  arXiv 1802.04537); doubly reparameterised gradients (DReG, Tucker et al., arXiv 1810.04152) are the remedy.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validate import check_bool, check_choice, check_float, check_generator, check_int

Likelihood = Literal["bernoulli", "gaussian"]
LIKELIHOODS: tuple[Likelihood, ...] = get_args(Likelihood)

_LOG_2PI = math.log(2 * math.pi)
#: Noise is drawn in blocks of this many samples, so a sample's noise does not depend on how the samples are
#: chunked: ``log_likelihood(x, K, chunk=c)`` sees the same z_k for every c (and the same as
#: ``log_importance_weights(x, K)``) given the same generator state.
_NOISE_BLOCK = 32


class Proposal(NamedTuple):
    """The encoder's diagonal Gaussian q(z|x) = N(mean, diag(exp(log_std))²), each of shape (batch, latent_dim)."""

    mean: Tensor
    log_std: Tensor


class ImportanceWeights(NamedTuple):
    """K samples z_k ~ q(z|x) per row of x and their log densities, each of shape (K, batch) (``z``:
    (K, batch, latent_dim)): ``log_w`` = ``log_px_z`` + ``log_pz`` − ``log_qz``."""

    log_w: Tensor
    log_px_z: Tensor
    log_pz: Tensor
    log_qz: Tensor
    z: Tensor


class LogLikelihood(NamedTuple):
    """The estimate log p̂(x) = logsumexp_k(log w_k) − log K per row (shape (batch,)), with two diagnostics of the
    proposal: ``ess`` = (Σw)²/Σw², the effective sample size (K for an exact posterior), and ``stderr``, the
    delta-method Monte Carlo standard error of log p̂, √((K/ess − 1)/(K − 1)) (the sample std of w over √K, divided
    by its mean; NaN for K = 1, where no spread can be measured). log p̂ is biased low by about stderr²/2."""

    log_px: Tensor
    ess: Tensor
    stderr: Tensor


def _check_module(name: str, m: object) -> nn.Module:
    if not isinstance(m, nn.Module):
        raise TypeError(f"expected {name} to be a torch.nn.Module, got {type(m).__name__}")
    return m


def _check_generator(value: object, device: torch.device) -> torch.Generator | None:
    generator = check_generator("generator", value)
    if generator is None:
        return None
    if generator.device.type != device.type:
        raise ValueError(f"expected generator on x's device {device.type}, got {generator.device.type}")
    return generator


def _call(name: str, module: nn.Module, arg: Tensor, arg_name: str) -> Tensor:
    """``module(arg)``, with a failure inside it (most often a width or dtype the module does not take) reported as
    a ``ValueError`` naming the argument, its shape and dtype, and the module's own message."""
    try:
        return module(arg)
    except torch.OutOfMemoryError:
        raise
    except RuntimeError as e:
        raise ValueError(f"expected {arg_name} that the {name} takes, got shape {tuple(arg.shape)} and "
                         f"{arg.dtype}; the {name} raised: {e}") from e


def _check_finite(what: str, t: Tensor) -> None:
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"expected {what} to be finite, got {int((~torch.isfinite(t)).sum())} NaN or infinite "
                         f"entries")


def _diag_normal_log_prob(x: Tensor, mean: Tensor, log_std: Tensor) -> Tensor:
    """Σ_d log N(x_d; mean_d, exp(log_std_d)²) over the last dimension, normalising constant included."""
    return -0.5 * (((x - mean) * torch.exp(-log_std)) ** 2 + _LOG_2PI).sum(-1) - log_std.sum(-1)


class _Noise:
    """ε ~ N(0, I) of shape (n, batch, latent_dim), drawn in blocks of ``_NOISE_BLOCK`` samples (module constant)."""

    def __init__(self, batch: int, dim: int, like: Tensor, generator: torch.Generator | None) -> None:
        self.shape = (_NOISE_BLOCK, batch, dim)
        self.like = like
        self.generator = generator
        self.buffer = like.new_empty((0, batch, dim))

    def take(self, n: int) -> Tensor:
        parts = [self.buffer]
        have = self.buffer.shape[0]
        while have < n:
            block = torch.randn(self.shape, generator=self.generator, dtype=self.like.dtype, device=self.like.device)
            parts.append(block)
            have += _NOISE_BLOCK
        out = torch.cat(parts) if len(parts) > 1 else self.buffer
        self.buffer = out[n:]
        return out[:n]


class VAE(nn.Module):
    """A VAE with a diagonal Gaussian encoder, a standard normal prior and a Bernoulli or Gaussian decoder, read as
    an importance sampler of p(x) (kexue.fm/archives/8791; formulas in the module docstring).

    ``encoder``: maps x of shape (batch, x_dim) to (batch, 2·latent_dim), the proposal's mean and log std side by
    side. ``decoder``: maps z of shape (n, latent_dim) to (n, x_dim): Bernoulli logits (``likelihood="bernoulli"``,
    log p(x|z) = Σ_d x_d·l_d − softplus(l_d), for x in {0, 1}) or the Gaussian mean (``likelihood="gaussian"``,
    log p(x|z) = Σ_d log N(x_d; m_d, σ²), one σ for all dimensions: ``sigma``, default 1, learned when
    ``learn_sigma``; stored as the parameter ``log_sigma``). :func:`vae_encoder` and :func:`vae_decoder` build small
    MLPs for 8×8 digits. Sampling uses a ``torch.Generator`` when given one, so estimates repeat exactly.

    The estimator assumes deterministic encoder and decoder: put modules with dropout or batch statistics in eval
    mode before :meth:`log_likelihood`. ``log_sigma`` is made in the default dtype, so ``VAE(...).double()`` keeps
    σ to float32 precision: set it again (or build under a float64 default dtype) where that matters.

    Example (binarised 8×8 digits)::

        vae = VAE(vae_encoder(64, 128, 8), vae_decoder(8, 128, 64), likelihood="bernoulli")
        loss = vae.loss(x, n_samples=5)  # IWAE with K = 5; n_samples=1 is the VAE loss (−ELBO)
        est = vae.eval().log_likelihood(x_test, n_samples=5000, chunk=250, generator=torch.Generator().manual_seed(0))
        est.log_px.mean(), est.ess.median()
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, likelihood: Likelihood = "bernoulli",
                 sigma: float | None = None, learn_sigma: bool = False) -> None:
        super().__init__()
        self.encoder = _check_module("encoder", encoder)
        self.decoder = _check_module("decoder", decoder)
        self.likelihood: Likelihood = check_choice("likelihood", likelihood, Likelihood)
        learn_sigma = check_bool("learn_sigma", learn_sigma)
        if likelihood == "bernoulli":
            if sigma is not None or learn_sigma:
                raise ValueError(f"expected sigma=None and learn_sigma=False with likelihood='bernoulli' (it has no "
                                 f"noise scale), got sigma={sigma!r}, learn_sigma={learn_sigma}")
            self.log_sigma: nn.Parameter | None = None
        else:
            s = 1.0 if sigma is None else check_float("sigma", sigma, low=0.0, low_open=True)
            self.log_sigma = nn.Parameter(torch.tensor(math.log(s)), requires_grad=learn_sigma)

    # -- the pieces --------------------------------------------------------------------------------------------

    def _check_x(self, x: object) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"expected x to be a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"expected x to be a floating-point tensor, got {x.dtype}")
        if x.dim() != 2 or x.numel() == 0:
            raise ValueError(f"expected x of shape (batch, x_dim), non-empty, got shape {tuple(x.shape)}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"expected x to be finite, got {int((~torch.isfinite(x)).sum())} NaN or infinite entries")
        if self.likelihood == "bernoulli":
            other = (x != 0) & (x != 1)
            if bool(other.any()):
                raise ValueError(f"expected x with values 0 or 1 for likelihood='bernoulli' (binarise it, or use a "
                                 f"dequantised Gaussian), got {int(other.sum())} other values, e.g. "
                                 f"{float(x[other][0]):g}")
        return x

    def encode(self, x: Tensor) -> Proposal:
        """The proposal q(z|x) for each row of ``x`` (batch, x_dim): the encoder's output split into mean and log
        std."""
        x = self._check_x(x)
        return self._encode(x)

    def _encode(self, x: Tensor) -> Proposal:
        h = _call("encoder", self.encoder, x, "x")
        if not isinstance(h, Tensor) or h.dim() != 2 or h.shape[0] != x.shape[0] or h.shape[1] % 2 or not h.shape[1]:
            got = tuple(h.shape) if isinstance(h, Tensor) else type(h).__name__
            raise ValueError(f"expected the encoder to return shape ({x.shape[0]}, 2·latent_dim) (mean and log std), "
                             f"got {got}")
        _check_finite("the encoder's output", h)
        mean, log_std = h.chunk(2, dim=-1)
        return Proposal(mean, log_std)

    def _decode(self, z: Tensor, x_dim: int) -> Tensor:
        """The decoder's output (logits or mean) for z of shape (K, batch, latent_dim), as (K, batch, x_dim)."""
        k, b, d = z.shape
        out = _call("decoder", self.decoder, z.reshape(k * b, d), "z (from the encoder)")
        if not isinstance(out, Tensor) or tuple(out.shape) != (k * b, x_dim):
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"expected the decoder to return shape ({k * b}, {x_dim}) for z of shape ({k * b}, {d}), "
                             f"got {got}")
        _check_finite("the decoder's output", out)
        return out.reshape(k, b, x_dim)

    def decode(self, z: Tensor) -> Tensor:
        """The mean of p(x|z) for ``z`` of shape (n, latent_dim): sigmoid of the logits (Bernoulli) or the Gaussian
        mean, shape (n, x_dim)."""
        if not isinstance(z, Tensor):
            raise TypeError(f"expected z to be a torch.Tensor, got {type(z).__name__}")
        if not z.is_floating_point():
            raise TypeError(f"expected z to be a floating-point tensor, got {z.dtype}")
        if z.dim() != 2:
            raise ValueError(f"expected z of shape (n, latent_dim), got shape {tuple(z.shape)}")
        out = _call("decoder", self.decoder, z, "z")
        return torch.sigmoid(out) if self.likelihood == "bernoulli" else out

    def _log_px_z(self, x: Tensor, out: Tensor) -> Tensor:
        if self.likelihood == "bernoulli":
            return (x * out - F.softplus(out)).sum(-1)
        assert self.log_sigma is not None
        return _diag_normal_log_prob(x, out, self.log_sigma.expand_as(out))

    def _weights(self, x: Tensor, q: Proposal, eps: Tensor) -> ImportanceWeights:
        z = q.mean + torch.exp(q.log_std) * eps
        log_px_z = self._log_px_z(x, self._decode(z, x.shape[1]))
        log_pz = -0.5 * (z**2 + _LOG_2PI).sum(-1)
        log_qz = -0.5 * (eps**2 + _LOG_2PI).sum(-1) - q.log_std.sum(-1)  # log N(z; mean, std²) with z − mean = std·ε
        return ImportanceWeights(log_px_z + log_pz - log_qz, log_px_z, log_pz, log_qz, z)

    def _prepare(self, x: object, n_samples: object, generator: object) -> tuple[Tensor, int, _Noise, Proposal]:
        x = self._check_x(x)
        k = check_int("n_samples", n_samples, minimum=1)
        gen = _check_generator(generator, x.device)
        q = self._encode(x)
        return x, k, _Noise(x.shape[0], q.mean.shape[1], q.mean, gen), q

    # -- the objectives ----------------------------------------------------------------------------------------

    def log_importance_weights(self, x: Tensor, n_samples: int = 1,
                               generator: torch.Generator | None = None) -> ImportanceWeights:
        """log w_k = log p(x|z_k) + log p(z_k) − log q(z_k|x) for K = ``n_samples`` reparameterised draws
        z_k = μ(x) + σ(x)⊙ε_k per row of ``x`` (batch, x_dim); differentiable; memory O(K·batch) (use
        :meth:`log_likelihood` for large K)."""
        x, k, noise, q = self._prepare(x, n_samples, generator)
        return self._weights(x, q, noise.take(k))

    def elbo(self, x: Tensor, n_samples: int = 1, generator: torch.Generator | None = None) -> Tensor:
        """The ELBO E_q[log w] estimated as the mean of log w_k over K = ``n_samples`` draws, per row (batch,);
        unbiased for the ELBO and, draw by draw, ≤ :meth:`iwae_bound` on the same draws (Jensen)."""
        return self.log_importance_weights(x, n_samples, generator).log_w.mean(0)

    def iwae_bound(self, x: Tensor, n_samples: int = 1, generator: torch.Generator | None = None) -> Tensor:
        """IWAE_K = logsumexp_k(log w_k) − log K per row (batch,), K = ``n_samples`` (Burda et al. 2015; the post's
        importance-sampled estimate). K = 1 is the single-sample ELBO; E[IWAE_K] ≤ log p(x) and rises with K."""
        log_w = self.log_importance_weights(x, n_samples, generator).log_w
        return torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])

    def loss(self, x: Tensor, n_samples: int = 1, generator: torch.Generator | None = None) -> Tensor:
        """−IWAE_K averaged over the batch (a 0-dim tensor), in nats per example: the VAE loss (negative ELBO) at
        ``n_samples`` = 1 and the IWAE loss at K > 1 (kexue.fm/archives/8791). An upper bound on −log p(x), not the
        NLL."""
        return -self.iwae_bound(x, n_samples, generator).mean()

    @torch.no_grad()
    def log_likelihood(self, x: Tensor, n_samples: int = 1000, chunk: int = 100,
                       generator: torch.Generator | None = None) -> LogLikelihood:
        """The test-time estimate log p̂(x) = logsumexp_k(log w_k) − log K with K = ``n_samples`` (the IWAE paper
        uses 5,000), drawn ``chunk`` samples at a time so memory is O(chunk·batch) for any K: the logsumexps of
        log w and 2·log w are carried from chunk to chunk. Without gradients. The draws do not depend on ``chunk``
        (noise comes in fixed blocks), so with one generator seed every chunk size gives the same estimate. Returns
        :class:`LogLikelihood` (estimate, effective sample size, Monte Carlo standard error) per row."""
        x, k, noise, q = self._prepare(x, n_samples, generator)
        c = check_int("chunk", chunk, minimum=1)
        lse1 = x.new_full((x.shape[0],), -math.inf)
        lse2 = lse1.clone()
        for start in range(0, k, c):
            log_w = self._weights(x, q, noise.take(min(c, k - start))).log_w
            lse1 = torch.logaddexp(lse1, torch.logsumexp(log_w, dim=0))
            lse2 = torch.logaddexp(lse2, torch.logsumexp(2 * log_w, dim=0))
        ess = torch.exp(2 * lse1 - lse2)
        if k == 1:
            stderr = torch.full_like(ess, math.nan)
        else:
            stderr = torch.sqrt(torch.clamp(k / ess - 1, min=0) / (k - 1))
        return LogLikelihood(lse1 - math.log(k), ess, stderr)


def vae_encoder(in_dim: int = 64, hidden_dim: int = 128, latent_dim: int = 8) -> nn.Sequential:
    """An MLP encoder for :class:`VAE`: Linear(in→hidden) → tanh → Linear(hidden→hidden) → tanh →
    Linear(hidden→2·latent) (mean and log std), the IWAE paper's one-stochastic-layer shape (tanh, two hidden
    layers) scaled to 8×8 digits."""
    in_dim, hidden_dim, latent_dim = (check_int(n, v, minimum=1) for n, v in
                                      (("in_dim", in_dim), ("hidden_dim", hidden_dim), ("latent_dim", latent_dim)))
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.Tanh(), nn.Linear(hidden_dim, hidden_dim), nn.Tanh(),
                         nn.Linear(hidden_dim, 2 * latent_dim))


def vae_decoder(latent_dim: int = 8, hidden_dim: int = 128, out_dim: int = 64) -> nn.Sequential:
    """An MLP decoder for :class:`VAE`: Linear(latent→hidden) → tanh → Linear(hidden→hidden) → tanh →
    Linear(hidden→out) (Bernoulli logits or the Gaussian mean)."""
    latent_dim, hidden_dim, out_dim = (check_int(n, v, minimum=1) for n, v in
                                       (("latent_dim", latent_dim), ("hidden_dim", hidden_dim), ("out_dim", out_dim)))
    return nn.Sequential(nn.Linear(latent_dim, hidden_dim), nn.Tanh(), nn.Linear(hidden_dim, hidden_dim), nn.Tanh(),
                         nn.Linear(hidden_dim, out_dim))


__all__ = ["LIKELIHOODS", "ImportanceWeights", "Likelihood", "LogLikelihood", "Proposal", "VAE", "vae_decoder",
           "vae_encoder"]
