"""The hf_parity reproduction: its verdict follows its rule on real measurements (about 30 s on one thread)."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")


@pytest.mark.slow
@pytest.mark.data
def test_hf_parity_quick_holds(data_root):
    from kexue.reproduce import hf_parity

    r = hf_parity.run(quick=True)
    n = r.numbers
    assert r.name == "hf_parity" and r.quick
    assert n["token_mismatches"] == 0
    assert n["forward_plain"]["last_hidden_all"] <= hf_parity.MAX_DIFF
    rho = n["spearman"]["stsb/test"]
    assert rho["pairs"] == 1379
    assert abs(rho["kexue"] - rho["transformers"]) <= hf_parity.SPEARMAN_TOL
    assert r.verdict == "holds"
    assert [stem for stem, _ in r.figures] == ["parity"]
