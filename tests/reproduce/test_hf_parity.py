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
    assert r.verdict == "verified" and r.kind == "mechanics"
    assert [stem for stem, _ in r.figures] == ["parity"]


@pytest.mark.slow
def test_hf_parity_without_data_checks_the_forward(monkeypatch):
    """With no STS data the entry still compares tokenization and the forward, and names what it skipped."""
    from kexue.data import datasets
    from kexue.data.registry import MissingData
    from kexue.reproduce import hf_parity

    def missing(name, split="test", root=None):
        raise MissingData("stsb_en", "/nowhere")

    monkeypatch.setattr(datasets, "load_sts", missing)
    r = hf_parity.run(quick=True)
    assert r.numbers["spearman"] == {} and r.numbers["token_mismatches"] == 0
    assert r.verdict == "verified"
    assert len(r.skipped) == 1 and "kexue data fetch stsb_en" in r.skipped[0]
