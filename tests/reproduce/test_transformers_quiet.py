"""reproduce.common.transformers_quiet: transformers' progress bars (its "Loading weights" bar) are off when stderr is
not a terminal, so the main job's logs hold no bar redraws, and left alone on a terminal."""

from __future__ import annotations

import pytest

from kexue.reproduce import common

transformers = pytest.importorskip("transformers")


@pytest.mark.parametrize("terminal", [False, True])
def test_bars_follow_the_terminal(monkeypatch, terminal):
    logging = transformers.utils.logging
    logging.enable_progress_bar()
    monkeypatch.setattr("kexue.env.interactive", lambda: terminal)
    try:
        assert common.transformers_quiet() is transformers
        assert logging.is_progress_bar_enabled() is terminal
    finally:
        logging.enable_progress_bar()
