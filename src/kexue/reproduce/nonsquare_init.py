"""Reproduction: averaging fan-in and fan-out for non-square matrices (kexue.fm/archives/8725).

Quick: 8 pairs m→n→m (m = 64, n = 256), no activation, one shared variance t per mode and pair; over 200 random
draws, the ratio of output to input second moment (forward) and of input-gradient to output-gradient second moment
(backward), against the analytic (mn·t²)⁸. Full: a 12-block 64→256→64 bottleneck MLP on scikit-learn's digits,
SGD, 50 epochs, 3 seeds per mode (exploratory: the post makes no training claim).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..nn.init import FAN_MODES, FanMode, fan_average
from .common import digits_split, pyplot
from .result import Post, Result, Table, Verdict

POST = Post(title="初始化方法中非方阵的维度平均策略思考",
            gloss="Averaging fan-in/fan-out for non-square matrices", date="2021-10-18",
            url="https://kexue.fm/archives/8725")

M, N, PAIRS, DRAWS, BATCH = 64, 256, 8, 200, 32


def _measure(t: float, seed: int) -> tuple[float, float, float, float]:
    """Mean forward and backward second-moment ratios over DRAWS draws, with their standard errors."""
    g = torch.Generator().manual_seed(seed)
    fwd, bwd = [], []
    std = math.sqrt(t)
    for _ in range(DRAWS):
        ws = []
        for _ in range(PAIRS):
            ws.append(torch.randn(N, M, generator=g, dtype=torch.float64) * std)
            ws.append(torch.randn(M, N, generator=g, dtype=torch.float64) * std)
        x = torch.randn(BATCH, M, generator=g, dtype=torch.float64)
        y = x
        for w in ws:
            y = y @ w.T
        fwd.append((y.pow(2).sum() / x.pow(2).sum()).item())
        grad = torch.randn(BATCH, M, generator=g, dtype=torch.float64)
        gx = grad
        for w in reversed(ws):
            gx = gx @ w
        bwd.append((gx.pow(2).sum() / grad.pow(2).sum()).item())
    f, b = torch.tensor(fwd), torch.tensor(bwd)
    return f.mean().item(), (f.std() / math.sqrt(DRAWS)).item(), b.mean().item(), (b.std() / math.sqrt(DRAWS)).item()


def _train(mode: FanMode, seed: int, epochs: int) -> tuple[float, float]:
    X, y, tr, te = digits_split(standardize=True)
    torch.manual_seed(seed)
    layers: list[torch.nn.Module] = [torch.nn.Linear(64, 64)]
    for _ in range(12):
        layers += [torch.nn.Linear(64, 256), torch.nn.Tanh(), torch.nn.Linear(256, 64), torch.nn.Tanh()]
    layers.append(torch.nn.Linear(64, 10))
    net = torch.nn.Sequential(*layers)
    with torch.no_grad():
        for mod in net:
            if isinstance(mod, torch.nn.Linear):
                t = 1.0 / fan_average(mod.in_features, mod.out_features, mode)
                mod.weight.normal_(0, math.sqrt(t))
                mod.bias.zero_()
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = tr[torch.randperm(len(tr), generator=g)]
        for i in range(0, len(order), 64):
            idx = order[i:i + 64]
            loss = torch.nn.functional.cross_entropy(net(X[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        logits = net(X[te])
        accuracy = (logits.argmax(1) == y[te]).float().mean().item()
        return torch.nn.functional.cross_entropy(logits, y[te]).item(), accuracy


def run(quick: bool = True) -> Result:
    rows: list[list[Any]] = []
    numbers: dict[str, Any] = {}
    ok_all = True
    dev: dict[str, float] = {}
    for i, mode in enumerate(FAN_MODES):
        t = 1.0 / fan_average(M, N, mode)
        pair = M * N * t * t
        analytic = pair**PAIRS
        f, fse, b, bse = _measure(t, seed=10 + i)
        dev[mode] = (M * t - 1) ** 2 + (N * t - 1) ** 2
        # agreement within 4 standard errors of the Monte Carlo mean (and 10 % as a floor for tiny errors)
        ok = all(abs(v - analytic) <= 4 * se or abs(v / analytic - 1) < 0.02 for v, se in ((f, fse), (b, bse)))
        ok_all &= ok
        rows.append([mode, t, pair, analytic, f, b, f ** (1 / PAIRS), dev[mode], "yes" if ok else "no"])
        numbers[mode] = {"t": t, "pair_factor": pair, "analytic_8": analytic, "forward_8": f, "forward_se": fse,
                         "backward_8": b, "backward_se": bse, "step_deviation": dev[mode]}
    ch_best = min(dev, key=dev.__getitem__) == "fan_ch"
    chain = fan_average(M, N, "fan_ch") >= fan_average(M, N, "fan_avg") >= fan_average(M, N, "fan_geo")
    tables = [Table(f"{PAIRS} pairs {M}→{N}→{M}, no activation, {DRAWS} draws of batch {BATCH}",
                    ["mode", "variance t", "mn·t² (pair)", "(mn·t²)⁸", "measured fwd", "measured bwd",
                     "measured pair factor", "(mt−1)²+(nt−1)²", "matches"], rows)]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.4))
    xs = range(len(FAN_MODES))
    ax.bar([x - 0.2 for x in xs], [math.log10(r[3]) for r in rows], 0.4, label="analytic (mn·t²)⁸")
    ax.bar([x + 0.2 for x in xs], [math.log10(r[4]) for r in rows], 0.4, label="measured forward")
    ax.set_xticks(list(xs), FAN_MODES)
    ax.set_ylabel("log10 second-moment ratio after 8 pairs")
    ax.axhline(0, color="k", lw=0.8)
    ax.legend()
    fig.tight_layout()
    notes = ["The post runs no experiments and recommends no mode; neither do we. fan_in and fan_out blow up or "
             "shrink the moment by the pair factor mn·t² = n/m or m/n; only fan_geo keeps it at 1 end to end."]
    if not quick:
        train_rows = []
        for mode in FAN_MODES:
            res = [_train(mode, s, 50) for s in range(3)]
            losses, accs = [r[0] for r in res], [r[1] for r in res]
            train_rows.append([mode, sum(losses) / 3, min(losses), max(losses), sum(accs) / 3])
            numbers.setdefault("training", {})[mode] = {"loss": losses, "accuracy": accs}
        tables.append(Table("Exploratory: 12-block 64→256→64 tanh MLP on digits, SGD 50 epochs, 3 seeds "
                            "(tests no claim)", ["mode", "mean test loss", "min", "max", "mean accuracy"], train_rows))
    verdict: Verdict = "verified" if ok_all and ch_best and chain else "not verified"
    return Result(
        name="nonsquare_init", post=POST,
        claim="For an m→n→m pair sharing one variance t, the second moment scales by mn·t² per pair: 1 for the "
              "geometric mean √(mn), < 1 for the arithmetic (Xavier) and contraharmonic means; the contraharmonic "
              "(m²+n²)/(m+n) minimises the per-step deviations (mt−1)²+(nt−1)²; (m²+n²)/(m+n) ≥ (m+n)/2 ≥ √(mn).",
        measured="8-pair forward ratios: " + ", ".join(f"{r[0]} {r[4]:.3g} (analytic {r[3]:.3g})" for r in rows)
                 + f"; smallest step deviation: {min(dev, key=dev.__getitem__)}",
        verdict=verdict,
        kind="math",
        post_figure="no figure in the post (a derivation: mn·t² per pair; fan_geo keeps it at 1)",
        our_figure="8-pair forward ratio: " + ", ".join(f"{r[0]} {r[4]:.3g}" for r in rows),
        setup=f"{PAIRS} linear pairs {M}→{N}→{M} without activation, {DRAWS} Monte Carlo draws of batch {BATCH} per "
              "fan mode" + ("" if quick else "; exploratory: a 12-block tanh MLP on digits, 3 seeds, 50 epochs") + ".",
        rule="verified if every mode's measured forward and backward ratios agree with (mn·t²)⁸ within 4 Monte Carlo "
             "standard errors (or 2 %), fan_ch has the smallest (mt−1)²+(nt−1)², and the mean inequality holds; "
             "otherwise not verified.",
        tables=tables, figures=[("moments", fig)], numbers=numbers, notes=notes, quick=quick)
