"""The ``kexue`` command's own refusals: one line on standard error, "kexue CMD: expected ..., got ...", exit 2."""

from __future__ import annotations

from kexue.cli import main


def test_reproduce_without_out_is_one_line(capsys):
    assert main(["reproduce", "gelu"]) == 2
    assert capsys.readouterr().err == ("kexue reproduce: expected --out DIR (where index.html and results.json go), "
                                       "got none\n")


def test_reproduce_unknown_names_are_one_line(capsys, tmp_path):
    assert main(["reproduce", "gelu", "nope", "nada", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("kexue reproduce: expected reproductions among ")
    assert "gelu" in err and err.endswith(", got nope, nada\n")
    assert not (tmp_path / "r").exists()
