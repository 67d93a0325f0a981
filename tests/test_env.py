"""kexue.env: the refusals of the thread count, the data-folder lookup and the model-folder search."""

from __future__ import annotations

import pytest

from kexue import env


def test_set_threads_refuses_what_is_not_a_positive_integer(monkeypatch):
    monkeypatch.setenv(env.THREADS_ENV, "two")
    with pytest.raises(ValueError, match=r"^expected KEXUE_THREADS to be a positive integer, got 'two'$"):
        env.set_threads()
    monkeypatch.setenv(env.THREADS_ENV, "0")
    with pytest.raises(ValueError, match=r"^expected KEXUE_THREADS to be a positive integer, got 0$"):
        env.set_threads()
    monkeypatch.delenv(env.THREADS_ENV)
    with pytest.raises(ValueError, match=r"^expected default >= 1, got 0$"):
        env.set_threads(default=0)


def test_model_folder_search_names_the_root(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "config.json").write_text("{}")  # a config without weights is not a model folder
    with pytest.raises(FileNotFoundError, match=r"^expected a Hugging Face model folder \(config.json \+ weights\) "
                                                r"under .*, got none$"):
        env._find_model_folder(tmp_path)
    (tmp_path / "a" / "model.safetensors").write_bytes(b"")
    assert env._find_model_folder(tmp_path) == tmp_path / "a"


def test_progress_bars_only_in_a_terminal(monkeypatch):
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert env.interactive() is False  # a log file, a pipe, CI
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert env.interactive() is True
    monkeypatch.setattr(sys, "stderr", None)
    assert env.interactive() is False
