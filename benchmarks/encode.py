"""Sentence encoding speed: kexue ``encode`` against sentence-transformers' ``encode``.

Both encode the 2,758 STS-B test sentences (1,379 pairs x 2, duplicates kept) with all-MiniLM-L6-v2, batch size
64, on the same number of torch threads (``KEXUE_THREADS``, default 1), producing unit vectors (the ST pipeline ends
in Normalize; kexue is called with ``normalize=True``). Runs are interleaved (ST, kexue, kexue with
``kernel="torch"``) and the median of the repeats is reported, with the largest absolute difference of the
embeddings. Each side's time includes its own tokenization. Wall time and process CPU time are both printed: on a
shared machine other jobs stretch wall time, while CPU time (one thread, no SMT) counts only this process's work.

    KEXUE_THREADS=1 .venv/bin/python benchmarks/encode.py [--repeats 3] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

# read by the Hugging Face libraries, which main() imports
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()

    from sentence_transformers import SentenceTransformer

    from kexue.data.datasets import load_sts
    from kexue.embed import encode
    from kexue.env import minilm_path, set_threads
    from kexue.models import Tokenizer, load_pretrained

    threads = set_threads(1)
    data = load_sts("stsb", "test")
    texts = data.sentences1 + data.sentences2
    path = minilm_path()
    model, tokenizer = load_pretrained(path), Tokenizer.from_pretrained(path)
    st = SentenceTransformer(str(path), device="cpu")
    bs = args.batch_size

    runs = {
        "sentence-transformers": lambda: torch.as_tensor(
            st.encode(texts, batch_size=bs, convert_to_numpy=True, show_progress_bar=False)),
        "kexue": lambda: encode(texts, model, tokenizer, batch_size=bs, normalize=True, progress=False),
        "kexue kernel=torch": lambda: encode(texts, model, tokenizer, batch_size=bs, normalize=True, progress=False,
                                             kernel="torch"),
    }
    for f in runs.values():  # warm-up: first-call allocations, oneDNN primitive creation
        f()
    print(f"{len(texts)} sentences, batch size {bs}, {threads} torch thread(s), torch {torch.__version__}")
    wall: dict[str, list[float]] = {k: [] for k in runs}
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    outputs: dict[str, torch.Tensor] = {}
    for r in range(args.repeats):
        for name, f in runs.items():
            t0, c0 = time.perf_counter(), time.process_time()
            outputs[name] = f()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
        print(f"  repeat {r + 1}: " + ", ".join(f"{k} {wall[k][-1]:.2f} s (cpu {cpu[k][-1]:.2f} s)" for k in runs),
              flush=True)

    ref = outputs["sentence-transformers"]
    base_wall = statistics.median(wall["sentence-transformers"])
    base_cpu = statistics.median(cpu["sentence-transformers"])
    print(f"{'':22s} {'wall s':>7s} {'sent/s':>7s} {'vs ST':>6s}   {'cpu s':>6s} {'sent/cpu-s':>10s} {'vs ST':>6s}"
          f"   {'max |emb - ST emb|':>18s}")
    for name in runs:
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        diff = (outputs[name] - ref).abs().max().item()
        print(f"{name:22s} {w:7.2f} {len(texts) / w:7.1f} {base_wall / w:5.2f}x   {c:6.2f} {len(texts) / c:10.1f} "
              f"{base_cpu / c:5.2f}x   {diff:18.2e}")


if __name__ == "__main__":
    main()
