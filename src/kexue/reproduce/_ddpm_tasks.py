"""The empirical part of the `ddpm` reproduction (kexue.fm/archives/9119): 2-D toy data (moons, the 8-Gaussian ring)
with an MLP denoiser scored by energy distance, and scikit-learn's 8×8 digits with a convolutional denoiser scored by
a Fréchet distance in the feature space of a small digits classifier.

Every run of a seed trains the compared models from one initialisation and one data stream, and draws the compared
samplers from one x_T, so differences between them are paired.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from ..generative.ddpm import ConvDenoiser, MLPDenoiser, Schedule, Sigma, ddpm_loss, ddpm_sample
from ..generative.wgan import mixture_modes, mode_coverage, sample_mixture
from ..stats.gaussian import frechet_distance
from .common import class_entropy, digits_split

Toy = Literal["moons", "ring"]


@dataclass(frozen=True)
class Split:
    """Training and held-out points (standardised by the training set's mean and std per coordinate), the set's name
    and the standardisation (to map points back)."""

    name: Toy
    train: Tensor
    heldout: Tensor
    mean: Tensor
    std: Tensor


def toy_data(name: Toy, n_train: int, n_heldout: int) -> Split:
    """``"moons"``: scikit-learn's make_moons(noise=0.05); ``"ring"``: 8 Gaussians on the circle of radius 2,
    σ = 0.05 (:func:`kexue.generative.sample_mixture`); both standardised by the training set (the spec: x_T is
    N(0, I) whatever the data scale)."""
    if name == "moons":
        from sklearn.datasets import make_moons

        train = torch.tensor(make_moons(n_train, noise=0.05, random_state=0)[0], dtype=torch.float32)
        held = torch.tensor(make_moons(n_heldout, noise=0.05, random_state=1)[0], dtype=torch.float32)
    else:
        train = sample_mixture("8gaussians", n_train, generator=torch.Generator().manual_seed(0)).x
        held = sample_mixture("8gaussians", n_heldout, generator=torch.Generator().manual_seed(1)).x
    mu, sd = train.mean(0), train.std(0)
    return Split(name, (train - mu) / sd, (held - mu) / sd, mu, sd)


def _mean_distance(x: Tensor, y: Tensor, same: bool) -> float:
    d = torch.cdist(x.double(), y.double())
    if same:  # the U-statistic: leave out the zero diagonal
        n = len(x)
        return float(d.sum() / (n * (n - 1)))
    return float(d.mean())


def energy_distance(x: Tensor, y: Tensor) -> float:
    """The energy distance 2E‖X − Y‖ − E‖X − X′‖ − E‖Y − Y′‖ between two point sets (within-set terms as
    U-statistics, so it is unbiased and may dip below 0 for two draws of one distribution)."""
    return 2 * _mean_distance(x, y, False) - _mean_distance(x, x, True) - _mean_distance(y, y, True)


def spread(x: Tensor) -> float:
    """Diversity of a point set: the mean distance between two of its points, E‖X − X′‖."""
    return _mean_distance(x, x, True)


def train(model: nn.Module, data: Tensor, schedule: Schedule, steps: int, batch: int, lr: float, seed: int) -> float:
    """Adam with a cosine decay of the learning rate on the paper's loss ‖ε − ε̂(x_t, t)‖² (mean over the batch) with
    minibatches drawn from ``data`` by a generator seeded with ``seed``; returns the mean loss of the last tenth."""
    opt = torch.optim.Adam(model.parameters(), lr=lr, foreach=True)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    g = torch.Generator().manual_seed(1000 + seed)
    tail: list[float] = []
    for i in range(steps):
        x0 = data[torch.randint(len(data), (batch,), generator=g)]
        loss = ddpm_loss(model, x0, schedule, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if i >= steps - max(steps // 10, 1):
            tail.append(loss.item())
    return sum(tail) / len(tail)


def draw(model: nn.Module, schedule: Schedule, shape: tuple[int, ...], sigma: Sigma, seed: int) -> Tensor:
    """Samples from x_T ~ N(0, I) drawn by a generator seeded with ``seed`` (one x_T for every sampler of a seed)."""
    model.eval()
    return ddpm_sample(model, schedule, shape, sigma=sigma, generator=torch.Generator().manual_seed(2000 + seed),
                       progress=False)


@dataclass(frozen=True)
class ToySize:
    steps: int  # T of the compared schedules
    train_steps: int
    hidden: int
    depth: int
    batch: int
    lr: float
    n_samples: int


def toy_seed(data: Split, seed: int, size: ToySize) -> tuple[dict[str, float], dict[str, Tensor]]:
    """One seed on one toy set: MLP denoisers trained on the rescaled T-step schedule (ᾱ_T = e⁻⁵) and on Su's
    unrescaled α_t = √(1 − 0.02t/T) at the same T from one initialisation and data stream; samples with σ_t = β_t and
    greedy (σ_t = 0) from the rescaled model, σ_t = β_t from the unrescaled one, all from one x_T; x_T itself as the
    noise baseline and ``n_samples`` training points as the floor, each scored by energy distance to the held-out
    points, by spread (relative to the held-out spread), by the mean distance to the nearest held-out point (a
    sharper view of quality: points between the modes), and on the ring by the fraction within 3σ of a mode
    (:func:`kexue.generative.mode_coverage`, in the original scale). Returns the measurements and the points."""
    schedules = {"rescaled": Schedule.rescaled(size.steps), "unrescaled": Schedule.su(size.steps)}
    n = size.n_samples
    pts: dict[str, Tensor] = {}
    out: dict[str, float] = {}
    for name, sch in schedules.items():
        torch.manual_seed(seed)
        model = MLPDenoiser(2, hidden=size.hidden, depth=size.depth)
        out[f"loss_{name}"] = train(model, data.train, sch, size.train_steps, size.batch, size.lr, seed)
        if name == "rescaled":
            pts["stochastic"] = draw(model, sch, (n, 2), "beta", seed)
            pts["greedy"] = draw(model, sch, (n, 2), "zero", seed)
        else:
            pts[name] = draw(model, sch, (n, 2), "beta", seed)
    pts["noise"] = torch.randn(n, 2, generator=torch.Generator().manual_seed(2000 + seed))
    pick = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(3000 + seed))[:n]
    pts["floor"] = data.train[pick]
    ref = spread(data.heldout)
    for name, p in pts.items():
        out[name] = energy_distance(p, data.heldout)
        out[f"spread_{name}"] = spread(p) / ref
        out[f"nn_{name}"] = float(torch.cdist(p.double(), data.heldout.double()).min(1).values.mean())
        if data.name == "ring":
            out[f"within_{name}"] = mode_coverage(p * data.std + data.mean, mixture_modes("8gaussians")).high_quality
    return out, pts


def xT_mismatch(data: Split, schedule: Schedule, seed: int = 0) -> float:
    """How far the true q(x_T) = law of ᾱ_T x₀ + β̄_T ε (x₀ the held-out points) is from the N(0, I) that sampling
    starts from: their energy distance (one draw each)."""
    g = torch.Generator().manual_seed(4000 + seed)
    x0 = data.heldout
    x_t = schedule.alpha_bar[-1].item() * x0 + schedule.beta_bar[-1].item() * torch.randn(x0.shape, generator=g)
    return energy_distance(x_t, torch.randn(x0.shape, generator=g))


# ---- digits -------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Digits:
    """Digits in [0, 1] as (N, 1, 8, 8) images, the fixed split of :func:`kexue.reproduce.common.digits_split`."""

    train: Tensor
    heldout: Tensor
    train_labels: Tensor
    heldout_labels: Tensor


def digits() -> Digits:
    x, y, tr, te = digits_split()
    img = x.view(-1, 1, 8, 8)
    return Digits(img[tr], img[te], y[tr], y[te])


class Classifier(nn.Module):
    """The measuring instrument: an MLP 64 → 128 → ``features`` → 10 (ReLU) on digits in [0, 1]; ``features(x)`` is the
    penultimate layer, where the Fréchet distance is taken."""

    def __init__(self, features: int = 32) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, features), nn.ReLU())
        self.head = nn.Linear(features, 10)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


def classifier(data: Digits, steps: int = 400) -> tuple[Classifier, float]:
    """The digits classifier (full-batch Adam 3e-3 with weight decay 1e-4, seed 0, the same in every run), and its
    held-out accuracy."""
    torch.manual_seed(0)
    clf = Classifier()
    opt = torch.optim.Adam(clf.parameters(), lr=3e-3, weight_decay=1e-4)
    for _ in range(steps):
        loss = nn.functional.cross_entropy(clf(data.train), data.train_labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    clf.eval()
    with torch.no_grad():
        acc = float((clf(data.heldout).argmax(1) == data.heldout_labels).float().mean())
    return clf, acc


@torch.no_grad()
def digit_scores(clf: Classifier, images: Tensor, reference: Tensor) -> dict[str, float]:
    """Scores of images in [0, 1] (clipped): the Fréchet distance (:func:`kexue.stats.frechet_distance`, i.e.
    :func:`kexue.stats.w2_normal` of the feature means and covariances) to the ``reference`` images' features, the
    classifier's mean confidence (max softmax probability) and the entropy (nats) of its predicted-class histogram
    (log 10 = 2.303 when the classes are equally represented)."""
    images = images.clamp(0, 1)
    fd = float(frechet_distance(clf.features(images).double(), clf.features(reference).double()))
    probs = clf(images).softmax(-1)
    return {"fd": fd, "confidence": float(probs.max(1).values.mean()), "entropy": class_entropy(probs.argmax(1))}


@dataclass(frozen=True)
class DigitSize:
    steps: int  # T (rescaled)
    train_steps: int
    width: int
    depth: int
    batch: int
    lr: float


def digits_seed(data: Digits, clf: Classifier, seed: int, size: DigitSize, unrescaled: bool = True
                ) -> tuple[dict[str, float], dict[str, Tensor]]:
    """One seed on digits: ConvDenoisers on the rescaled T-step schedule and (``unrescaled``) on Su's α_t =
    √(1 − 0.02t/T) at the same T, from one initialisation and data stream, pixels mapped to [−1, 1]; as many samples
    as held-out digits with σ_t = β_t and greedy (rescaled model) and σ_t = β_t (unrescaled model) from one x_T,
    x_T itself (mapped back and clipped) as the noise baseline and the held-out digits as the floor, each scored by
    :func:`digit_scores` against the training digits. Returns the scores (``"<sampler>_<score>"``, and the final
    losses) and the images in [0, 1]."""
    shape = (len(data.heldout), 1, 8, 8)
    schedules = {"rescaled": Schedule.rescaled(size.steps)}
    if unrescaled:
        schedules["unrescaled"] = Schedule.su(size.steps)
    imgs: dict[str, Tensor] = {}
    out: dict[str, float] = {}
    for name, sch in schedules.items():
        torch.manual_seed(seed)
        model = ConvDenoiser(1, width=size.width, depth=size.depth)
        out[f"loss_{name}"] = train(model, data.train * 2 - 1, sch, size.train_steps, size.batch, size.lr, seed)
        if name == "rescaled":
            imgs["stochastic"] = draw(model, sch, shape, "beta", seed)
            imgs["greedy"] = draw(model, sch, shape, "zero", seed)
        else:
            imgs[name] = draw(model, sch, shape, "beta", seed)
    imgs["noise"] = torch.randn(shape, generator=torch.Generator().manual_seed(2000 + seed))
    imgs = {k: ((v + 1) / 2).clamp(0, 1) for k, v in imgs.items()}
    imgs["floor"] = data.heldout
    for name, im in imgs.items():
        for key, value in digit_scores(clf, im, data.train).items():
            out[f"{name}_{key}"] = value
    return out, imgs
