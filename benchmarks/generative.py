"""DDPM sampling throughput: kexue's sampler against diffusers' DDPMScheduler loop with the same denoiser.

    KEXUE_THREADS=1 .venv/bin/python benchmarks/generative.py [--steps 1000] [--batch 32] [--rounds 5] [--device cpu]
        [--denoisers mlp conv]

A full chain t = T..1 from x_T ~ N(0, I) (kexue.fm/archives/9119, σ_t = β_t, Su's schedule α_t = √(1 − 0.02 t/T))
for two denoisers of :mod:`kexue.generative.ddpm` with their default sizes and random weights: an ``MLPDenoiser`` on
flattened 8×8 images (64 values) and a ``ConvDenoiser`` on (1, 8, 8) images. Each denoiser is run by

- ``kexue ddpm_sample``: :func:`kexue.generative.ddpm_sample` with a :class:`~kexue.generative.Schedule`;
- ``kexue ddpm_step loop``: the same chain written by hand with :func:`kexue.generative.ddpm_step` (the form of a
  scheduler loop);
- ``diffusers loop``: ``DDPMScheduler(trained_betas=0.02·t/T, variance_type="fixed_large", clip_sample=False)``
  stepped as ``DDPMPipeline`` does (``for t in scheduler.timesteps: x = scheduler.step(model(x, t), t, x,
  generator=g).prev_sample``), diffusers' step index t being our step t + 1;
- ``denoiser alone``: the T forward passes of the chain and nothing else, the floor under every sampler.

All samplers draw x_T and every z from one seeded generator in the same order, so they do the same work; the largest
difference between their samples is printed beside the samples' largest value (with random weights the denoisers
predict no noise, so the chain amplifies x_T by up to 1/ᾱ_T ≈ 154, the samples run to hundreds or thousands and
float32 rounding grows with them). Rounds interleave the forms (each leads a round in turn); time is the median CPU
time of a chain (wall time with a synchronised GPU on ``--device cuda``), throughput is samples per second of a full
chain, and the ratio is the median over rounds of diffusers' time over ours (>= 1: ours no slower, issue 15's
target). The overhead column is (chain − floor)/T: what a sampler adds per step on top of the denoiser (with the
conv denoiser's milliseconds per call it is within the noise of a shared machine, and the ratio near 1). diffusers
is a test extra: without it the script says how to install it and measures nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch

# read by the Hugging Face libraries, which main() imports
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1000, help="T, the length of the chain")
    ap.add_argument("--batch", type=int, default=32, help="samples per chain")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--denoisers", nargs="+", choices=["mlp", "conv"], default=["mlp", "conv"])
    args = ap.parse_args()

    try:
        import diffusers
    except ImportError:
        print("diffusers (a test extra of kexue) is not installed; nothing measured. Install it with\n"
              "    pip install -e '.[test]'    (or: pip install diffusers)")
        return

    from kexue.env import set_threads
    from kexue.generative import ConvDenoiser, MLPDenoiser, Schedule, ddpm_sample, ddpm_step

    threads = set_threads(1)
    device = torch.device(args.device)
    steps, batch = args.steps, args.batch
    schedule = Schedule.su(steps)
    betas = (0.02 * torch.arange(1, steps + 1, dtype=torch.float64) / steps).numpy()  # the paper's β_t = Su's β_t²
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=steps, trained_betas=betas, variance_type="fixed_large",
                                        clip_sample=False, prediction_type="epsilon")
    scheduler.set_timesteps(steps)

    def clock() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
            return time.perf_counter()
        return time.process_time()

    def gen() -> torch.Generator:
        return torch.Generator(device=device).manual_seed(0)

    torch.manual_seed(0)
    denoisers: dict[str, tuple[torch.nn.Module, tuple[int, ...]]] = {}
    if "mlp" in args.denoisers:
        denoisers["MLPDenoiser(64)"] = (MLPDenoiser(64), (batch, 64))
    if "conv" in args.denoisers:
        denoisers["ConvDenoiser(1)"] = (ConvDenoiser(1), (batch, 1, 8, 8))
    print(f"DDPM sampling, T = {steps}, batch {batch}, sigma = beta, {threads} thread(s), device {device}, "
          f"torch {torch.__version__}, diffusers {diffusers.__version__}, {args.rounds} rounds")
    for label, (model, shape) in denoisers.items():
        model = model.to(device).eval()

        def ours_sample(model: torch.nn.Module = model, shape: tuple[int, ...] = shape) -> torch.Tensor:
            return ddpm_sample(model, schedule, shape, generator=gen(), device=device, progress=False)

        @torch.no_grad()
        def ours_steps(model: torch.nn.Module = model, shape: tuple[int, ...] = shape) -> torch.Tensor:
            g = gen()
            x = torch.randn(shape, generator=g, device=device)
            for t in range(steps, 0, -1):
                out = model(x, torch.full((batch,), t, dtype=torch.long, device=device))
                z = torch.randn(shape, generator=g, device=device) if t > 1 else None
                x = ddpm_step(out, x, t, schedule, noise=z)
            return x

        @torch.no_grad()
        def theirs(model: torch.nn.Module = model, shape: tuple[int, ...] = shape) -> torch.Tensor:
            g = gen()
            x = torch.randn(shape, generator=g, device=device)
            for t in scheduler.timesteps:
                out = model(x, torch.full((batch,), int(t) + 1, dtype=torch.long, device=device))
                x = scheduler.step(out, t, x, generator=g).prev_sample
            return x

        x_fixed = torch.randn(shape, generator=gen(), device=device)
        t_fixed = [torch.full((batch,), t, dtype=torch.long, device=device) for t in range(steps, 0, -1)]

        @torch.no_grad()
        def floor(model: torch.nn.Module = model, x: torch.Tensor = x_fixed,
                  t_all: list[torch.Tensor] = t_fixed) -> torch.Tensor:
            for t in t_all:
                out = model(x, t)
            return out

        forms: dict[str, Callable[[], torch.Tensor]] = {
            "denoiser alone": floor, "diffusers loop": theirs, "kexue ddpm_sample": ours_sample,
            "kexue ddpm_step loop": ours_steps,
        }
        times: dict[str, list[float]] = {k: [] for k in forms}
        samples: dict[str, torch.Tensor] = {}
        names = list(forms)
        for r in range(args.rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:  # each form leads a round in turn
                c0 = clock()
                samples[name] = forms[name]()
                times[name].append(clock() - c0)
        base = samples["diffusers loop"]
        diff = {name: (samples[name] - base).abs().max().item() for name in forms if name.startswith("kexue")}
        floor_t = statistics.median(times["denoiser alone"])
        print(f"\n{label}: {sum(p.numel() for p in model.parameters()):,} parameters, samples of shape {shape[1:]}; "
              f"largest |diffusers sample| {base.abs().max().item():.4g}, largest |kexue - diffusers|: ddpm_sample "
              f"{diff['kexue ddpm_sample']:.3g}, ddpm_step loop {diff['kexue ddpm_step loop']:.3g}")
        print(f"{'':22s} {'s/chain':>8s} {'samples/s':>10s} {'overhead us/step':>17s} {'ours / diffusers':>17s} "
              f"{'(min-max)':>12s}")
        for name in forms:
            t = statistics.median(times[name])
            over = f"{1e6 * (t - floor_t) / steps:17.1f}" if name != "denoiser alone" else f"{'(floor)':>17s}"
            ratio = ""
            if name.startswith("kexue"):
                r = [a / b for a, b in zip(times["diffusers loop"], times[name])]
                ratio = f"{statistics.median(r):16.2f}x {min(r):6.2f}-{max(r):.2f}"
            print(f"{name:22s} {t:8.3f} {batch / t:10.1f} {over} {ratio}")


if __name__ == "__main__":
    main()
