"""Shared test set-up: one torch thread (KEXUE_THREADS raises it), offline Hugging Face, data and model fixtures."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

#: The shared data folder beside the checkout (``../shared/data``), found from this file's own path. The tests read
#: it through ``$KEXUE_DATA`` when that is unset; the library itself never looks beside the checkout.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if not os.environ.get("KEXUE_DATA") and SHARED_DATA.is_dir():
    os.environ["KEXUE_DATA"] = str(SHARED_DATA)

import pytest  # noqa: E402

from kexue.env import data_dir, minilm_path, set_threads  # noqa: E402

set_threads(1)


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
