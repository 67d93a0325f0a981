"""Training step speed: forward + backward of a MiniLM-sized encoder, kexue against transformers' BertModel.

Both models have the same weights (a random BertModel saved and loaded into kexue): 384 hidden, 6 layers,
12 heads, 1536 FFN, vocab 30522, dropout 0.1 (hidden and attention) as configured, train mode; transformers runs
with ``attn_implementation="sdpa"``. A batch of 32 x 64 tokens, a quarter of each row's tail padded at random
(lengths 40..64). The step is forward, loss = mean of the squared last hidden state over real tokens, backward, and
zeroing the gradients. Steps are interleaved in rounds and the median ms/step is reported, wall and CPU time.

    KEXUE_THREADS=1 .venv/bin/python benchmarks/train_step.py [--rounds 5] [--steps 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch

# read by the Hugging Face libraries, which main() imports
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=3, help="steps per model per round")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=64)
    args = ap.parse_args()

    import transformers

    from kexue.env import set_threads
    from kexue.models import load_pretrained

    threads = set_threads(1)
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                                  intermediate_size=1536, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
                                  attn_implementation="sdpa")
    hf = transformers.BertModel(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        hf.save_pretrained(tmp)
        kx = load_pretrained(tmp)
    hf.train()
    kx.train()
    with torch.no_grad():
        hf.eval(), kx.eval()
        probe = torch.randint(1000, 30000, (2, 16))
        diff = (hf(probe).last_hidden_state - kx(probe).last_hidden_state).abs().max().item()
        hf.train(), kx.train()

    g = torch.Generator().manual_seed(1)
    b, t = args.batch, args.seq
    ids = torch.randint(1000, 30000, (b, t), generator=g)
    lengths = torch.randint(t - t // 4 - 8, t + 1, (b,), generator=g).clamp(max=t)
    lengths[0] = t
    mask = (torch.arange(t)[None] < lengths[:, None]).long()
    ids = ids.masked_fill(mask == 0, 0)
    types = torch.zeros_like(ids)

    def step(model) -> None:
        out = model(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        m = mask.unsqueeze(-1).to(out.dtype)
        loss = (out.square() * m).sum() / (m.sum() * out.shape[-1])
        loss.backward()
        model.zero_grad(set_to_none=True)

    models = {"transformers BertModel (sdpa)": hf, "kexue Transformer": kx}
    for model in models.values():  # warm-up
        step(model)
        step(model)
    print(f"batch {b} x {t} ({int(mask.sum())} real tokens), {threads} torch thread(s), torch {torch.__version__}, "
          f"transformers {transformers.__version__}; eval-mode max |Δ| of the two models {diff:.1e}")
    wall: dict[str, list[float]] = {k: [] for k in models}
    cpu: dict[str, list[float]] = {k: [] for k in models}
    for r in range(args.rounds):
        for name, model in models.items():
            for _ in range(args.steps):
                t0, c0 = time.perf_counter(), time.process_time()
                step(model)
                wall[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
        print(f"  round {r + 1}: " + ", ".join(
            f"{k} {1e3 * statistics.median(wall[k][-args.steps:]):.0f} ms" for k in models), flush=True)
    hf_w, hf_c = (statistics.median(x["transformers BertModel (sdpa)"]) for x in (wall, cpu))
    print(f"{'':30s} {'wall ms/step':>12s} {'ratio':>6s}   {'cpu ms/step':>11s} {'ratio':>6s}")
    for name in models:
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        print(f"{name:30s} {1e3 * w:12.1f} {hf_w / w:5.2f}x   {1e3 * c:11.1f} {hf_c / c:5.2f}x")
    print("ratio = transformers time / this model's time (>= 1.0: no slower than transformers)")


if __name__ == "__main__":
    main()
