"""Adversarial training and the gradient penalty: time per training step relative to a plain step.

A MiniLM-sized kexue Transformer (384 hidden, 6 layers, 12 heads, 1536 FFN, vocab 30522, dropout 0.1, random
weights) with mean pooling and a 2-way head, batch 16 x 32 tokens (a quarter of each row's tail padded at random),
AdamW. Each step is forward, backward and the optimizer step:

- plain;
- FGM, the post's form (``FGM.preset("post")``: the embedding matrix, one norm over its gradient, adversarial loss
  only) through ``kexue.train.fgm_step``;
- FGM, the common PyTorch form (``FGM.preset("pytorch")``: clean + adversarial loss);
- FGM on the embedding output (``scope="output"``, padding masked);
- the widely copied PyTorch FGM snippet (finds the embedding by a parameter-name substring, reads ``param.grad``),
  the peer of the clean + adversarial form;
- the gradient penalty (``kexue.train.gradient_penalty_loss``, ε = 1, double backward; its forward runs on SDPA's
  math backend, which has a double backward).

Rounds interleave the variants; reported is the median CPU and wall time per step and its ratio to the plain step
(FGM needs two forward/backward passes: about 2x).

    KEXUE_THREADS=1 .venv/bin/python benchmarks/adversarial.py [--rounds 5] [--steps 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn


class SnippetFGM:
    """The PyTorch FGM copied across the web (kept as the peer, with its name-substring lookup and ``.grad`` read)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.backup: dict[str, torch.Tensor] = {}

    def attack(self, epsilon: float = 1.0, emb_name: str = "word") -> None:
        for name, param in self.model.named_parameters():
            if param.requires_grad and emb_name in name:
                self.backup[name] = param.data.clone()
                norm = torch.norm(param.grad)
                if norm != 0 and not torch.isnan(norm):
                    param.data.add_(epsilon * param.grad / norm)

    def restore(self, emb_name: str = "word") -> None:
        for name, param in self.model.named_parameters():
            if param.requires_grad and emb_name in name:
                param.data = self.backup[name]
        self.backup = {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=3, help="steps per variant per round")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=32)
    args = ap.parse_args()

    from kexue.env import set_threads
    from kexue.models import Transformer, TransformerConfig
    from kexue.train import FGM, fgm_step, gradient_penalty_loss

    threads = set_threads(1)
    torch.manual_seed(0)
    cfg = TransformerConfig(vocab_size=30522, hidden_size=384, num_layers=6, num_heads=12, intermediate_size=1536,
                            with_pooler=False)

    class Classifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = Transformer(cfg)
            self.head = nn.Linear(384, 2)

        def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            x = self.encoder(ids, attention_mask=mask).last_hidden_state
            m = mask.unsqueeze(-1).to(x.dtype)
            return self.head((x * m).sum(1) / m.sum(1))

    model = Classifier().train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    g = torch.Generator().manual_seed(1)
    b, t = args.batch, args.seq
    ids = torch.randint(1000, 30000, (b, t), generator=g)
    lengths = torch.randint(t - t // 4, t + 1, (b,), generator=g)
    mask = (torch.arange(t)[None] < lengths[:, None]).long()
    ids = ids.masked_fill(mask == 0, 0)
    y = torch.randint(0, 2, (b,), generator=g)
    batch = (ids, mask, y)

    def loss_fn(m: nn.Module, bt) -> torch.Tensor:
        return F.cross_entropy(m(bt[0], bt[1]), bt[2])

    fgm_post = FGM.preset("post", model)
    fgm_common = FGM.preset("pytorch", model)
    fgm_output = FGM(model, epsilon=0.5, scope="output")
    snippet = SnippetFGM(model)

    def plain() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(model, batch).backward()
        opt.step()

    def snippet_step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(model, batch).backward()
        snippet.attack()
        loss_fn(model, batch).backward()
        snippet.restore()
        opt.step()

    def penalty() -> None:
        opt.zero_grad(set_to_none=True)
        total, _, _ = gradient_penalty_loss(model, batch, loss_fn, epsilon=1.0, mask=mask)
        total.backward()
        opt.step()

    variants = {
        "plain": plain,
        "FGM post (adv only, matrix)": lambda: fgm_step(model, batch, loss_fn, opt, fgm_post),
        "FGM pytorch (clean+adv)": lambda: fgm_step(model, batch, loss_fn, opt, fgm_common),
        "FGM output scope": lambda: fgm_step(model, batch, loss_fn, opt, fgm_output, mask=mask),
        "copied PyTorch FGM snippet": snippet_step,
        "gradient penalty (eps=1)": penalty,
    }
    for fn in variants.values():  # warm-up
        fn()
    print(f"MiniLM-sized classifier, batch {b} x {t} ({int(mask.sum())} real tokens), {threads} torch thread(s), "
          f"torch {torch.__version__}", flush=True)
    wall: dict[str, list[float]] = {k: [] for k in variants}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    for r in range(args.rounds):
        for name, fn in variants.items():
            for _ in range(args.steps):
                t0, c0 = time.perf_counter(), time.process_time()
                fn()
                wall[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
        print(f"  round {r + 1}: " + ", ".join(f"{k} {1e3 * statistics.median(cpu[k][-args.steps:]):.0f}"
                                              for k in variants) + " ms CPU", flush=True)
    pw, pc = statistics.median(wall["plain"]), statistics.median(cpu["plain"])
    print(f"\n{'':30s} {'CPU ms/step':>11s} {'x plain':>8s} {'wall ms/step':>13s} {'x plain':>8s}")
    for name in variants:
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        print(f"{name:30s} {1e3 * c:11.0f} {c / pc:7.2f}x {1e3 * w:13.0f} {w / pw:7.2f}x")
    ours = statistics.median(cpu["FGM pytorch (clean+adv)"])
    peer = statistics.median(cpu["copied PyTorch FGM snippet"])
    print(f"\nFGM clean+adv: copied snippet / kexue CPU time = {peer / ours:.2f} (>= 1: kexue no slower than the peer)")


if __name__ == "__main__":
    main()
