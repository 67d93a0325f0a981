"""The activation-memory and step-time harness of the recompute reproduction and benchmarks/recompute.py.

A kexue Transformer or a transformers ``BertModel`` with a given recompute (:func:`set_recompute`) takes forward +
backward steps of mean(last_hidden_state²) in training mode, in a fresh Python process (:func:`measure`).

How memory is measured: every configuration runs in a fresh Python process. It builds the model and the batch,
allocates the gradients, takes one warm-up step, then reads its resident set (``VmRSS``), resets the kernel's peak
counter (``echo 5 > /proc/self/clear_refs``) and takes a step; the peak resident set (``VmHWM``) minus that
baseline is the step's activation memory (plus backward's transient buffers). glibc's malloc serves every block of
64 KiB or more with mmap (``MALLOC_MMAP_THRESHOLD_=65536``), so freed tensors leave the resident set at once and the
peak tracks live tensors, not allocator caching (:func:`child`).

How time is measured (:func:`child_alternating`): one process holding the models, glibc's default allocator (the
mmap threshold would add page faults to every step), the configurations taking turns step by step, so that a slow
spell of a shared machine hits all alike; CPU time per step, one thread. Compare two configurations by the median
over rounds of the ratio of their steps in the same round.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any


def _status_bytes(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{key} not in /proc/self/status")


def build(spec: dict[str, Any]) -> Any:
    """The model of ``spec`` (``impl`` "kexue" or "hf", with ``spec["recompute"]`` switched on), in training mode."""
    import torch

    torch.manual_seed(0)
    if spec["impl"] == "kexue":
        from ..models import Transformer, TransformerConfig

        cfg = TransformerConfig(vocab_size=spec["vocab"], hidden_size=spec["hidden"], num_layers=spec["layers"],
                                num_heads=spec["heads"], intermediate_size=spec["ffn"],
                                max_position_embeddings=max(512, spec["seq"]), hidden_dropout=spec["dropout"],
                                attention_dropout=spec["dropout"], with_pooler=False)
        model: Any = Transformer(cfg)
    elif spec["impl"] == "hf":
        import transformers

        hf: dict[str, Any] = dict(vocab_size=spec["vocab"], hidden_size=spec["hidden"],
                                  num_hidden_layers=spec["layers"], num_attention_heads=spec["heads"],
                                  intermediate_size=spec["ffn"], max_position_embeddings=max(512, spec["seq"]),
                                  hidden_dropout_prob=spec["dropout"], attention_probs_dropout_prob=spec["dropout"],
                                  attn_implementation="sdpa")
        model = transformers.BertModel(transformers.BertConfig(**hf), add_pooling_layer=False)
    else:
        raise ValueError(f"unknown impl {spec['impl']!r}")
    model.train()
    set_recompute(model, spec["impl"], spec["recompute"], spec.get("every", 1))
    return model


def set_recompute(model: Any, impl: str, mode: str, every: int = 1) -> None:
    """Switch ``model``'s recompute: ``mode`` "none" (off), "kexue" (:func:`kexue.models.enable_recompute`, a kexue
    Transformer's ``tail_once`` policy), "kexue_block" (its ``block`` policy, the post's) or "hf" (transformers' own,
    non-reentrant), on every ``every``-th block."""
    from ..models import disable_recompute, enable_recompute

    disable_recompute(model)
    if impl == "hf":
        if hasattr(model, "activation_checkpointing_disable"):  # transformers >= 5
            if model.is_activation_checkpointing:
                model.activation_checkpointing_disable()
        elif model.is_gradient_checkpointing:
            model.gradient_checkpointing_disable()
    if mode in ("kexue", "kexue_block"):
        enable_recompute(model, every=every, policy="block" if mode == "kexue_block" else "tail_once")
    elif mode == "hf":
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False},
                                                  every_n_layers=every)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    elif mode != "none":
        raise ValueError(f"unknown recompute {mode!r}")


def _setup(spec: dict[str, Any], models: list[Any], device: str = "cpu"):
    """One thread, zeroed gradient buffers for ``models`` (so a step allocates none), the batch's token ids, and the
    step: forward + backward of mean(last_hidden_state²)."""
    import torch

    from ..env import set_threads

    set_threads(1)
    for model in models:
        for p in model.parameters():
            if p.requires_grad:
                p.grad = torch.zeros_like(p)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, spec["vocab"], (spec["batch"], spec["seq"]), generator=g).to(device)

    def step(model: Any) -> None:
        model(ids).last_hidden_state.float().pow(2).mean().backward()

    return step


def child_alternating(spec: dict[str, Any]) -> dict[str, Any]:
    """Time several configurations in this process, a step of each in turn: ``spec["modes"]`` is a list of
    ``[impl, recompute mode, every]`` (one model per impl, built once, its recompute switched before each step),
    ``spec["rounds"]`` the turns after one warm-up turn. A slow spell of a shared machine then hits every
    configuration alike. Returns CPU and wall seconds per step for each ``"impl/mode/every"``, in round order."""
    impls = dict.fromkeys(m[0] for m in spec["modes"])
    models = {impl: build({**spec, "impl": impl, "recompute": "none"}) for impl in impls}
    step = _setup(spec, list(models.values()))
    names = ["/".join(map(str, m)) for m in spec["modes"]]
    cpu: dict[str, list[float]] = {n: [] for n in names}
    wall: dict[str, list[float]] = {n: [] for n in names}
    for r in range(spec["rounds"] + 1):
        for name, (impl, mode, every) in zip(names, spec["modes"], strict=True):
            set_recompute(models[impl], impl, mode, every)
            t0, c0 = time.perf_counter(), time.process_time()
            step(models[impl])
            if r:  # round 0 warms every configuration up
                wall[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
    return {"spec": spec, "cpu": cpu, "wall": wall}


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """Measure one configuration in this (fresh) process: see the module docstring."""
    import gc

    import torch

    device = spec.get("device", "cpu")
    model = build(spec).to(device)
    step = _setup(spec, [model], device)
    step(model)  # warm-up: kernels, thread pools, the gradient buffers in place
    gc.collect()
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _status_bytes("VmRSS")
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset the peak-RSS counter (VmHWM) to the current RSS
            reset = True
        except OSError:
            reset = False
    wall, cpu = [], []
    for _ in range(spec["steps"]):
        t0, c0 = time.perf_counter(), time.process_time()
        step(model)
        if cuda:
            torch.cuda.synchronize()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    peak = torch.cuda.max_memory_allocated() if cuda else _status_bytes("VmHWM")
    return {"spec": spec, "baseline": base, "peak": peak, "activation": peak - base, "wall": wall, "cpu": cpu,
            "peak_reset": True if cuda else reset,
            "params": sum(p.numel() for p in model.parameters())}


def _child_main() -> None:
    spec = json.loads(sys.argv[1])
    print(json.dumps(child_alternating(spec) if "modes" in spec else child(spec)))


def measure(spec: dict[str, Any], timeout: float = 900.0) -> dict[str, Any]:
    """Run :func:`child` (or :func:`child_alternating` for a spec with ``modes``) in a fresh Python process with one
    thread and return its record.

    A memory measurement (:func:`child`) runs with glibc's mmap threshold at 64 KiB, so the peak resident set
    tracks live tensors; every fresh tensor then faults its pages in anew, which adds system time to each step
    (a third of a step here, more for a mode that allocates more), so time is measured by :func:`child_alternating`
    under glibc's default allocator, as a training run has it."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "KEXUE_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}
    env.pop("MALLOC_MMAP_THRESHOLD_", None)
    if "modes" not in spec:
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    code = "from kexue.reproduce._memory import _child_main; _child_main()"
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], env=env, capture_output=True, text=True,
                          timeout=timeout)  # a guard against a hung child, not a speed limit
    if proc.returncode != 0:
        raise RuntimeError(f"measurement child failed for {spec}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
