"""Benchmark `kexue shuffle` against GNU shuf, terashuf (if on PATH) and a plain copy, on one generated file.

    .venv/bin/python benchmarks/shuffle.py [--size 2G] [--memory 512M] [--dir DIR] [--keep]

Generates a file of variable-length lines (10-390 random lowercase bytes plus the newline, ~200 bytes on average:
about 10 million lines for 2 GB; reused when it already exists), then runs, one at a time, each as a subprocess:

* ``kexue shuffle --memory 512M`` with ``--method merge`` (the default) and ``--method scatter``;
* GNU ``shuf`` (uniform, holds the whole file in memory);
* ``terashuf`` with ``MEMORY=0.5`` (GB) if a binary is on PATH (not uniform: its merge reads fixed runs per file);
* a plain read-and-write copy in 16 MiB blocks: the I/O floor. An out-of-core shuffle reads and writes everything
  twice, so about 2x the copy is the least it can take.

For each: wall seconds, MB/s, peak RSS (VmHWM, polled), and the ratios of kexue's time to each peer's. On a busy
machine use ``--repeat 3``: the commands then run in interleaved rounds and each one's best time is used. The output
of every run is checked to hold the input's line count. kexue also fsyncs its output before renaming it into
place; the peers do not. The issue's targets: at most 0.8x terashuf's time at the same memory budget, and peak RSS
within the budget plus 100 MB.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from kexue.data.shuffle import parse_size
from kexue.reproduce.shuffle import run_measured

COPY = """
import os, sys
src, dst = os.open(sys.argv[1], os.O_RDONLY), os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
while block := os.read(src, 16 << 20):
    view = memoryview(block)
    while view:
        view = view[os.write(dst, view):]
"""


def generate(path: Path, size: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    tmp = path.with_suffix(".partial")
    with open(tmp, "wb") as f:
        written = 0
        while written < size:
            lengths = rng.integers(11, 392, size=1_000_000)  # line bytes incl. the newline: 11..391, mean ~201
            data = rng.integers(97, 123, size=int(lengths.sum()), dtype=np.uint8)
            data[np.cumsum(lengths) - 1] = 10
            block = data.tobytes()
            if written + len(block) > size:  # end on a whole line
                block = block[: block.rfind(b"\n", 0, size - written) + 1]
                if not block:
                    break
            f.write(block)
            written += len(block)
    os.replace(tmp, path)


def count_lines(path: Path) -> int:
    n = 0
    with open(path, "rb") as f:
        while block := f.read(16 << 20):
            n += block.count(b"\n")
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="2G", help="size of the generated file (default 2G)")
    ap.add_argument("--memory", default="512M", help="kexue's --memory and terashuf's MEMORY (default 512M)")
    ap.add_argument("--dir", help="where the input, outputs and temporary files go (default: a temp folder)")
    ap.add_argument("--keep", action="store_true", help="keep the generated input for the next run")
    ap.add_argument("--skip-shuf", action="store_true", help="do not run GNU shuf (it needs ~the file in RAM)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="rounds over all commands, interleaved; each command's best round is reported (default 1)")
    args = ap.parse_args()
    size, memory = parse_size(args.size), parse_size(args.memory)
    folder = Path(args.dir or os.path.join(tempfile.gettempdir(), "kexue-shuffle-bench"))
    folder.mkdir(parents=True, exist_ok=True)
    src = folder / f"lines-{size}.txt"
    if not src.exists():
        print(f"generating {src} ({size / 1e9:.2f} GB) ...", flush=True)
        generate(src, size)
    n_lines = count_lines(src)
    nbytes = src.stat().st_size
    print(f"input: {nbytes / 1e9:.2f} GB, {n_lines} lines, mean {nbytes / n_lines:.0f} bytes; "
          f"budget {args.memory}; {os.cpu_count()} CPUs", flush=True)
    out = folder / "out.txt"
    tmp = folder / "tmp"
    tmp.mkdir(exist_ok=True)

    runs: list[tuple[str, list[str], dict]] = [
        ("plain copy (read+write, 16 MiB blocks)", [sys.executable, "-c", COPY, str(src), str(out)], {}),
    ]
    kexue = [sys.executable, "-m", "kexue.cli", "shuffle", str(src), "-o", str(out), "--force", "-q",
             "--memory", args.memory, "--seed", "0", "--tmp-dir", str(tmp)]
    runs += [(f"kexue shuffle --method {m} --memory {args.memory}", [*kexue, "--method", m], {})
             for m in ("merge", "scatter")]
    if shutil.which("shuf") and not args.skip_shuf:
        runs.append(("GNU shuf (in memory)", ["shuf", str(src), "-o", str(out)], {}))
    if shutil.which("terashuf"):
        runs.append((f"terashuf MEMORY={memory / 2**30:g}", ["terashuf"],
                     {"env": {**os.environ, "MEMORY": f"{memory / 2**30:g}", "TMPDIR": str(tmp)},
                      "stdin": "src", "stdout": "out"}))
    else:
        print("terashuf: not on PATH, skipped")

    results: dict[str, tuple[float, int | None]] = {}
    for round_ in range(args.repeat):
        for name, cmd, kw in runs:
            kw = dict(kw)
            with contextlib.ExitStack() as files:  # the redirected stdin/stdout, closed after the run
                for key, path in (("stdin", src), ("stdout", out)):
                    if kw.get(key) in ("src", "out"):
                        kw[key] = files.enter_context(open(path, "rb" if key == "stdin" else "wb"))
                kw.setdefault("stderr", subprocess.DEVNULL)
                secs, rss, rc = run_measured(cmd, **kw)
            ok = rc == 0 and count_lines(out) == n_lines
            if name not in results or secs < results[name][0]:
                results[name] = (secs, rss)
            rss_s = f"{rss / 2**20:7.0f} MiB" if rss is not None else "    n/a"
            tag = f"[{round_ + 1}/{args.repeat}] " if args.repeat > 1 else ""
            print(f"{tag}{name:44s} {secs:7.2f} s {nbytes / 1e6 / secs:7.0f} MB/s  peak RSS {rss_s}"
                  f"{'' if ok else f'  FAILED (exit {rc} or wrong line count)'}", flush=True)
            out.unlink(missing_ok=True)
    if args.repeat > 1:
        print("\nbest of each:")
        for name, (secs, _) in results.items():
            print(f"{name:44s} {secs:7.2f} s {nbytes / 1e6 / secs:7.0f} MB/s")

    print()
    for name, (secs, rss) in results.items():
        if not name.startswith("kexue"):
            continue
        for peer, (psecs, _) in results.items():
            if not peer.startswith("kexue"):
                print(f"{name} / {peer}: {secs / psecs:.2f}x time")
        if rss is not None:
            limit = memory + 100 * 2**20
            print(f"{name}: peak RSS {rss / 2**20:.0f} MiB vs budget + 100 MiB = {limit / 2**20:.0f} MiB: "
                  f"{'within' if rss <= limit else 'OVER'}")
    tera = next((v for k, v in results.items() if k.startswith("terashuf")), None)
    if tera is not None:
        best = min(v[0] for k, v in results.items() if k.startswith("kexue"))
        print(f"target (<= 0.8x terashuf): {best / tera[0]:.2f}x -> {'met' if best <= 0.8 * tera[0] else 'NOT met'}")
    shutil.rmtree(tmp, ignore_errors=True)
    if not args.keep:
        src.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
