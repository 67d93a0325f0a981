"""reproduce.common.transformers_quiet: transformers' progress bars (its "Loading weights" bar) are off when stderr is
not a terminal, so the main job's logs hold no bar redraws, and left alone on a terminal."""

from __future__ import annotations

import pytest

from kexue.reproduce import common

pytest.importorskip("transformers")


@pytest.mark.parametrize("terminal", [False, True])
def test_bars_follow_the_terminal(monkeypatch, terminal):
    # the module the function returns, not one imported here: other tests may have re-imported transformers
    monkeypatch.setattr("kexue.env.interactive", lambda: terminal)
    logging = common.transformers_quiet().utils.logging
    logging.enable_progress_bar()
    try:
        transformers = common.transformers_quiet()
        assert transformers.__name__ == "transformers" and transformers.utils.logging is logging
        assert logging.is_progress_bar_enabled() is terminal
    finally:
        logging.enable_progress_bar()
