"""Extras: what `kexue reproduce` needs beyond the core, read from the installed metadata (pyproject.toml)."""

from __future__ import annotations

from importlib import metadata

import pytest

from kexue import env
from kexue.cli import main


class _FakeDist:
    """A stand-in for kexue's installed metadata: extras reproduce (two packages), hf (one), test (the others)."""

    requires = [
        "torch>=2.4",
        'jinja2>=3.1; extra == "reproduce"',
        'scikit-learn>=1.3; extra == "reproduce"',
        'accelerate>=0.26; extra == "hf"',
        'kexue[reproduce,hf]; extra == "test"',
        'pytest>=7; extra == "test"',
    ]

    class metadata:  # mimics importlib.metadata.Distribution.metadata
        @staticmethod
        def get_all(key):
            return ["reproduce", "hf", "test"] if key == "Provides-Extra" else None


def _installed(names):
    real = metadata.distribution

    def distribution(name):
        if name == "kexue":
            return _FakeDist
        if name in names:
            return real("torch")  # any installed distribution
        raise metadata.PackageNotFoundError(name)

    return distribution


def test_missing_extra_names_what_is_absent(monkeypatch):
    monkeypatch.setattr(env.metadata, "distribution", _installed({"jinja2", "pytest"}))
    assert env.missing_extra("reproduce") == ["scikit-learn"]
    assert env.missing_extra("hf") == ["accelerate"]
    assert env.missing_extra("test") == ["scikit-learn", "accelerate"]  # follows kexue[reproduce,hf]
    with pytest.raises(ValueError, match=r"expected extra to be one of \['hf', 'reproduce', 'test'\], got 'gpu'"):
        env.missing_extra("gpu")


def test_missing_extra_is_empty_here():
    """This environment was installed with the test extra, which holds every other one."""
    assert env.missing_extra("reproduce") == []
    assert env.missing_extra("test") == []


def test_reproduce_without_its_extra_names_it_in_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(env.metadata, "distribution", _installed({"jinja2"}))
    out = tmp_path / "report"
    assert main(["reproduce", "--quick", "gelu", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["kexue reproduce: expected the 'reproduce' extra installed, got scikit-learn missing: "
                   "pip install 'kexue[reproduce]'"]
    assert not out.exists()
    assert main(["reproduce", "--list"]) == 0  # listing needs no extra
