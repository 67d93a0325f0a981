"""Recompute (activation checkpointing) against transformers' own, on the same BERT configuration.

kexue's Transformer with ``model.gradient_checkpointing_enable(policy)`` (kexue.models.recompute; kexue's default,
``policy="tail_once"``: a checkpoint per block ending at the FFN down projection's output, so backward never re-runs
that product; and the post's, ``"block"``: a checkpoint around each block) against
transformers' ``BertModel`` (sdpa attention) with ``activation_checkpointing_enable`` (``gradient_checkpointing_enable``
before transformers 5; ``use_reentrant=False``), each also without checkpointing. A training step is forward +
backward of mean(last_hidden_state²) in training mode (dropout on).

How it is measured (kexue.reproduce._memory): memory: every configuration in a fresh process with glibc's
``MALLOC_MMAP_THRESHOLD_=65536`` (freed tensors leave the resident set at once); after a warm-up step it resets the
peak-RSS counter (``/proc/self/clear_refs``), takes a step and reports peak RSS (``VmHWM``) minus the RSS before it:
the step's activation memory (median over the rounds). Time: one process holding both models, glibc's default
allocator (the mmap threshold would add page faults to every step), the five configurations taking turns step by
step (a slow spell of the shared machine hits all alike); CPU time per step, one thread. A ratio between two
configurations is the median over rounds of the ratio of their steps in the same round.

Targets (issue 5): at least 3x less activation memory than without recompute, at no more than 35 % extra time, and
no worse than transformers' checkpointing on either figure. On CPU, torch's dropout draws its masks slowly
(``bernoulli_``, ~9 ns per element) and a recompute draws them again; kexue's dropout (kexue.nn.dropout) draws four
mask elements per 64-bit random word and keeps 1-byte masks. ``--dropout 0`` takes the masks out.

    KEXUE_THREADS=1 .venv/bin/python benchmarks/recompute.py [--rounds 6] [--batch 8] [--seq 256] [--dropout 0.1]
"""

from __future__ import annotations

import argparse
import statistics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=6, help="timing turns (after a warm-up turn)")
    ap.add_argument("--memory-rounds", type=int, default=1, help="fresh processes per configuration for memory")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--ffn", type=int, default=1024)
    ap.add_argument("--dropout", type=float, default=0.1)
    args = ap.parse_args()

    import torch
    import transformers

    from kexue.reproduce._memory import measure

    base = dict(layers=args.layers, hidden=args.hidden, heads=args.heads, ffn=args.ffn, vocab=1000,
                dropout=args.dropout, seq=args.seq, batch=args.batch)
    configs = {
        "kexue plain": ("kexue", "none"),
        "kexue recompute (tail_once)": ("kexue", "kexue"),
        "kexue recompute (per block)": ("kexue", "kexue_block"),
        "transformers plain": ("hf", "none"),
        "transformers checkpointing": ("hf", "hf"),
    }
    print(f"BERT config: {args.layers} layers, hidden {args.hidden}, {args.heads} heads, FFN {args.ffn}, dropout "
          f"{args.dropout}; batch {args.batch} x {args.seq} tokens; one thread; torch {torch.__version__}, "
          f"transformers {transformers.__version__}", flush=True)
    act: dict[str, list[float]] = {k: [] for k in configs}
    for r in range(args.memory_rounds):
        for name, (impl, mode) in configs.items():
            rec = measure({**base, "impl": impl, "recompute": mode, "steps": 1})
            act[name].append(rec["activation"] / 2**20)
            print(f"  memory, process {r + 1}: {name:30s} {act[name][-1]:8.1f} MiB", flush=True)
    print(f"  timing: {args.rounds} rounds of the five configurations in one process ...", flush=True)
    rec = measure({**base, "rounds": args.rounds, "modes": [[impl, mode, 1] for impl, mode in configs.values()]})
    cpu = {name: rec["cpu"][f"{impl}/{mode}/1"] for name, (impl, mode) in configs.items()}
    wall = {name: rec["wall"][f"{impl}/{mode}/1"] for name, (impl, mode) in configs.items()}
    a = {k: statistics.median(v) for k, v in act.items()}
    c = {k: statistics.median(v) for k, v in cpu.items()}
    w = {k: statistics.median(v) for k, v in wall.items()}

    def ratio(x: str, y: str) -> float:  # median over rounds of step(x) / step(y) in the same round
        return statistics.median(p / q for p, q in zip(cpu[x], cpu[y], strict=True))

    print(f"\n{'':30s} {'activation MiB':>14s} {'CPU ms/step':>12s} {'wall ms/step':>13s}   CPU ms per round")
    for k in configs:
        print(f"{k:30s} {a[k]:14.1f} {1e3 * c[k]:12.0f} {1e3 * w[k]:13.0f}   "
              f"{' '.join(f'{1e3 * t:.0f}' for t in cpu[k])}")

    def ok(flag: bool) -> str:
        return "meets target" if flag else "MISSES target"

    ours, post = "kexue recompute (tail_once)", "kexue recompute (per block)"
    saving = a["kexue plain"] / a[ours]
    overhead = ratio(ours, "kexue plain") - 1
    mem_vs_hf = a["transformers checkpointing"] / a[ours]
    time_vs_hf = 1 / ratio(ours, "transformers checkpointing")
    print("\nratios (kexue recompute = kexue's default, tail_once)")
    print(f"  activation memory, kexue plain / kexue recompute:          {saving:6.2f}x  (>= 3x: {ok(saving >= 3)})")
    print(f"  extra CPU time of kexue recompute over kexue plain:        {100 * overhead:+6.1f} %  (<= 35 %: "
          f"{ok(overhead <= 0.35)})")
    print(f"  activation memory, transformers ckpt / kexue recompute:   {mem_vs_hf:6.3f}x  (>= 1: "
          f"{ok(mem_vs_hf >= 1)})")
    print(f"  CPU time, transformers ckpt / kexue recompute:            {time_vs_hf:6.3f}x  (>= 1: "
          f"{ok(time_vs_hf >= 1)})")
    print("for reference")
    print(f"  the post's recompute (per block): saving {a['kexue plain'] / a[post]:.2f}x at "
          f"{100 * (ratio(post, 'kexue plain') - 1):+.1f} % time; against transformers' checkpointing: memory "
          f"{a['transformers checkpointing'] / a[post]:.3f}x, time "
          f"{1 / ratio(post, 'transformers checkpointing'):.3f}x")
    print(f"  transformers: saving {a['transformers plain'] / a['transformers checkpointing']:.2f}x at "
          f"{100 * (ratio('transformers checkpointing', 'transformers plain') - 1):+.1f} % time; plain steps, "
          f"transformers / kexue: {ratio('transformers plain', 'kexue plain'):.3f}x")


if __name__ == "__main__":
    main()
