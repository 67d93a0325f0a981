"""Generative and self-supervised models from the posts: DDPM's schedules, loss, sampler and denoisers
(:mod:`kexue.generative.ddpm`, kexue.fm/archives/9119); SimSiam's loss, model, collapse measure and toy dynamics
(:mod:`kexue.generative.simsiam`, kexue.fm/archives/7980); the VAE as an importance sampler: ELBO, IWAE bound and a
chunked log-likelihood estimator (:mod:`kexue.generative.vae`, kexue.fm/archives/8791); WGAN with gradient
normalisation (GN, GraN, the post's inner-product variant) and the gradient penalty, with 2-D Gaussian mixtures and
mode metrics (:mod:`kexue.generative.wgan`, kexue.fm/archives/8757); latent sampling by the hubness prior
(hub-filtered latents) and the truncation trick (:mod:`kexue.generative.latents`, kexue.fm/archives/9147).

This package may import :mod:`kexue.nn`, :mod:`kexue.models` and :mod:`kexue.stats` (and the argument checks), and
nothing above them: not :mod:`kexue.train`, :mod:`kexue.embed`, the reproductions or the CLI."""

from __future__ import annotations

from .ddpm import (
    PARAMETRIZATIONS,
    SIGMAS,
    ConvDenoiser,
    MLPDenoiser,
    PaperSchedule,
    Parametrization,
    Schedule,
    Sigma,
    SinusoidalTimeEmbedding,
    ddpm_loss,
    ddpm_sample,
    ddpm_step,
)
from .latents import HubFiltered, SampleFn, hub_filtered_latents, standard_normal, truncation
from .simsiam import (
    MAX_TOY_STEPS,
    TOY_MODES,
    SimSiam,
    SimSiamOutput,
    ToyMode,
    ToyTrajectory,
    collapse_std,
    mlp_encoder,
    mlp_predictor,
    simsiam_loss,
    toy_dynamics,
)
from .univae import (
    MAX_KAPPA,
    POSTERIORS,
    Posterior,
    UniVAE,
    UniVAELoss,
    UniVAEOutput,
    VonMisesFisherSampler,
    vmf_mean_cosine,
)
from .vae import (
    LIKELIHOODS,
    VAE,
    ImportanceWeights,
    Likelihood,
    LogLikelihood,
    Proposal,
    vae_decoder,
    vae_encoder,
)
from .wgan import (
    CRITIC_METHODS,
    CRITIC_NORMS,
    GAUSSIAN_MIXTURES,
    CriticGradient,
    CriticLoss,
    CriticMethod,
    CriticNorm,
    GaussianMixture,
    MixtureSample,
    ModeCoverage,
    WGANLosses,
    critic_gradient,
    critic_loss,
    generator_loss,
    gradient_normalized,
    gradient_penalty,
    mixture_modes,
    mlp_critic,
    mlp_generator,
    mode_coverage,
    sample_mixture,
    sample_w2,
    wgan_losses,
)

__all__ = ["PARAMETRIZATIONS", "SIGMAS", "ConvDenoiser", "MLPDenoiser", "PaperSchedule", "Parametrization", "Schedule",
           "Sigma", "SinusoidalTimeEmbedding", "ddpm_loss", "ddpm_sample", "ddpm_step",
           "HubFiltered", "SampleFn", "hub_filtered_latents", "standard_normal", "truncation",
           "MAX_TOY_STEPS", "TOY_MODES", "SimSiam", "SimSiamOutput", "ToyMode", "ToyTrajectory", "collapse_std",
           "mlp_encoder", "mlp_predictor", "simsiam_loss", "toy_dynamics",
           "LIKELIHOODS", "VAE", "ImportanceWeights", "Likelihood", "LogLikelihood", "Proposal", "vae_decoder",
           "vae_encoder",
           "MAX_KAPPA", "POSTERIORS", "Posterior", "UniVAE", "UniVAELoss", "UniVAEOutput", "VonMisesFisherSampler",
           "vmf_mean_cosine",
           "CRITIC_METHODS", "CRITIC_NORMS", "GAUSSIAN_MIXTURES", "CriticGradient", "CriticLoss", "CriticMethod",
           "CriticNorm", "GaussianMixture", "MixtureSample", "ModeCoverage", "WGANLosses", "critic_gradient",
           "critic_loss", "generator_loss", "gradient_normalized", "gradient_penalty", "mixture_modes", "mlp_critic",
           "mlp_generator", "mode_coverage", "sample_mixture", "sample_w2", "wgan_losses"]
