"""Shared test set-up: one torch thread (KEXUE_THREADS raises it), offline Hugging Face, hypothesis profiles, the
DDP launcher, data and model fixtures."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings

from kexue.env import data_dir, minilm_path, set_threads

# Before any test imports transformers or huggingface_hub (kexue.env imports neither).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

#: The shared data folder beside the checkout (``../shared/data``), found from this file's own path. The tests read
#: it through ``$KEXUE_DATA`` when that is unset; the library itself never looks beside the checkout.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if not os.environ.get("KEXUE_DATA") and SHARED_DATA.is_dir():
    os.environ["KEXUE_DATA"] = str(SHARED_DATA)

set_threads(1)

# Hypothesis: no deadline anywhere (the machine is shared and its timings are noisy, and a test never fails on the
# wall clock). On CI (the variable CI set to anything but "", "0" or "false"; CI runners set CI=true) the "ci"
# profile derandomizes: examples are drawn from a seed derived from each test and the example database is off, so a
# CI run is the same run every time. Locally ("dev") examples are random and failures are remembered in
# .hypothesis/. Both are named here from hypothesis' own built-in profiles (its "ci" is what it loads by itself on
# detecting a CI runner), so "dev" never inherits derandomization from whatever was loaded at import. Per-test
# @settings (max_examples) apply on top; HYPOTHESIS_PROFILE or --hypothesis-profile name a profile outright.
settings.register_profile("ci", settings.get_profile("ci"), derandomize=True, database=None, deadline=None,
                          print_blob=True)
settings.register_profile("dev", settings.get_profile("default"), deadline=None)
_ON_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if _ON_CI else "dev"))

#: How long a DDP launch may take before it is taken for a hung rendezvous and killed. A guard so that a deadlocked
#: run ends with its output instead of hanging the suite, not a speed limit: the launches take seconds.
DDP_HANG_GUARD_S = 900


def _tail(text: str, n: int = 4000) -> str:
    return text if len(text) <= n else "...\n" + text[-n:]


def _descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (Linux /proc; empty elsewhere). torchrun starts each worker in a session of its
    own, so killing torchrun's process group would leave the workers running."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])  # after "pid (comm)": state, ppid, ...
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def _run_ddp(worker: str | Path, *args: object, nproc: int = 2) -> subprocess.CompletedProcess[str]:
    """Run the script ``worker`` with ``args`` in ``nproc`` CPU processes under ``torch.distributed.run``.

    The rendezvous is standalone (a free local port), each process has one thread (``OMP_NUM_THREADS=1``,
    ``KEXUE_THREADS=1``) and no GPU (``CUDA_VISIBLE_DEVICES=""``); the worker calls
    ``dist.init_process_group("gloo")`` itself. Fails the test, with the run's stdout and stderr, when the launch
    exits non-zero or outlives :data:`DDP_HANG_GUARD_S` (then torchrun and its workers are killed). The output goes
    to files, not pipes, so a worker left running can never block the read.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "KEXUE_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", str(worker),
           *map(str, args)]
    with tempfile.TemporaryFile("w+") as out_f, tempfile.TemporaryFile("w+") as err_f:
        proc = subprocess.Popen(cmd, env=env, stdout=out_f, stderr=err_f, text=True)
        try:
            proc.wait(timeout=DDP_HANG_GUARD_S)
            hung = False
        except subprocess.TimeoutExpired:
            hung, workers = True, _descendants(proc.pid)
            proc.terminate()  # torchrun's agent stops its workers on SIGTERM ...
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for pid in workers:  # ... and whatever it left is killed here
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        out_f.seek(0)
        err_f.seek(0)
        out, err = out_f.read(), err_f.read()
    report = f"--- stdout\n{_tail(out)}\n--- stderr\n{_tail(err)}"
    if hung:
        pytest.fail(f"DDP launch of {Path(worker).name} still running after {DDP_HANG_GUARD_S} s (a hung "
                    f"rendezvous?), killed\n{report}")
    name = Path(worker).name
    assert proc.returncode == 0, f"DDP launch of {name} with {nproc} processes exited {proc.returncode}\n{report}"
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.fixture
def run_ddp():
    """``run_ddp(worker_path, *args, nproc=2) -> CompletedProcess``: the one launcher of the DDP tests (see
    :func:`_run_ddp`); it fails the test with the workers' output when the run fails."""
    return _run_ddp


@pytest.fixture(scope="session")
def data_root():
    """The data folder; tests that need it skip, naming the folder, when it is absent."""
    root = data_dir()
    if not root.is_dir():
        pytest.skip(f"data folder not found at {root} (set KEXUE_DATA, or `kexue data fetch --all`)")
    return root


@pytest.fixture(scope="session")
def minilm_dir():
    return minilm_path()


@pytest.fixture(scope="session")
def minilm(minilm_dir):
    from kexue.models import load_pretrained

    return load_pretrained(minilm_dir)


@pytest.fixture(scope="session")
def minilm_tokenizer(minilm_dir):
    from kexue.models import Tokenizer

    return Tokenizer.from_pretrained(minilm_dir)


def _saved_bytes(fn) -> int:
    """Bytes of the non-parameter tensors autograd keeps for backward while ``fn`` runs (distinct storages)."""
    import torch

    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        if not (t.is_leaf and t.requires_grad):
            s = t.untyped_storage()
            seen[s.data_ptr()] = max(seen.get(s.data_ptr(), 0), s.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


@pytest.fixture
def saved_bytes():
    """``saved_bytes(fn)``: bytes of the non-parameter tensors autograd keeps for backward while ``fn`` runs."""
    return _saved_bytes


@pytest.fixture(autouse=True)
def _close_figures():
    """Close the matplotlib figures a test's reproduction run made (the report would close them once written)."""
    yield
    import sys

    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


def _unilm_model(eos_id: int = 2, **kw):
    """A small UniLM-masked Transformer with an MLM head, no dropout, seed 0; ``eos_id``'s logit bias raised so
    hypotheses end at different lengths. ``kw``: TransformerConfig overrides (e.g. ``norm="pre"``)."""
    import torch

    from kexue.models import Transformer, TransformerConfig

    torch.manual_seed(0)
    cfg = TransformerConfig(vocab_size=24, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=48,
                            max_position_embeddings=40, hidden_dropout=0.0, attention_dropout=0.0, with_mlm=True,
                            with_pooler=False, mask_type="unilm", **kw)
    model = Transformer(cfg).eval()
    with torch.no_grad():
        model.mlm.bias[eos_id] = 1.5  # make EOS plausible so hypotheses end at different lengths
    return model


@pytest.fixture
def unilm_model():
    """``unilm_model(eos_id=2, **config_overrides) -> Transformer``: the small UniLM model of the decoding and
    exposure-bias tests."""
    return _unilm_model
