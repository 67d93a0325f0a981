"""Bad-input rows: kexue.env (the thread count from $KEXUE_THREADS, the missing requirements of an extra)."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from _matrix import Bad, check

from kexue.env import THREADS_ENV, missing_extra, set_threads


def with_threads_env(value: str, call: Callable[[], object]) -> Callable[[], object]:
    """``call`` run with ``$KEXUE_THREADS`` set to ``value``, the variable restored afterwards."""

    def run() -> object:
        old = os.environ.get(THREADS_ENV)
        os.environ[THREADS_ENV] = value
        try:
            return call()
        finally:
            if old is None:
                del os.environ[THREADS_ENV]
            else:
                os.environ[THREADS_ENV] = old

    return run


ROWS = [
    Bad("kexue.env.set_threads", "default 0", lambda: set_threads(0), ValueError, r"expected default >= 1, got 0"),
    Bad("kexue.env.set_threads", "default a string", lambda: set_threads("2"), TypeError,
        r"expected default to be an integer, got '2' \(str\)"),
    Bad("kexue.env.set_threads", "default a float", lambda: set_threads(1.5), TypeError,
        r"expected default to be an integer, got 1\.5"),
    Bad("kexue.env.set_threads", "$KEXUE_THREADS not a number", with_threads_env("four", set_threads), ValueError,
        r"expected KEXUE_THREADS to be a positive integer, got 'four'"),
    Bad("kexue.env.set_threads", "$KEXUE_THREADS 0", with_threads_env("0", set_threads), ValueError,
        r"expected KEXUE_THREADS to be a positive integer, got 0"),
    Bad("kexue.env.set_threads", "$KEXUE_THREADS negative", with_threads_env("-2", set_threads), ValueError,
        r"expected KEXUE_THREADS to be a positive integer, got -2"),
    Bad("kexue.env.missing_extra", "unknown extra", lambda: missing_extra("gpu"), ValueError,
        r"expected extra to be one of \[.*'hf'.*\], got 'gpu'"),
    Bad("kexue.env.missing_extra", "extra None", lambda: missing_extra(None), ValueError,
        r"expected extra to be one of \[.*\], got None"),
    Bad("kexue.env.missing_extra", "distribution not a string (was a TypeError from a regex)",
        lambda: missing_extra("hf", distribution=5), TypeError, r"expected distribution to be a string, got 5 \(int\)"),
]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_refuses(row):
    check(row)
