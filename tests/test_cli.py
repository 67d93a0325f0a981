"""The ``kexue`` command's own refusals: one line on standard error, "kexue CMD: expected ..., got ...", exit 2."""

from __future__ import annotations

import pytest

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



def _no_run(*args, **kwargs):
    raise AssertionError("the run started")


def test_reproduce_refuses_an_out_it_cannot_write_before_running(capsys, tmp_path, monkeypatch):
    """--out a file (or below one) was only found out when the report was written, after every reproduction ran."""
    monkeypatch.setattr("kexue.reproduce.runner.run_all", _no_run)
    (tmp_path / "report").write_text("a file")
    assert main(["reproduce", "gelu", "--quick", "--out", str(tmp_path / "report")]) == 2
    assert main(["reproduce", "gelu", "--quick", "--out", str(tmp_path / "report" / "x")]) == 2
    assert main(["reproduce", "--list", "gelu"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.splitlines() == [
        f"kexue reproduce: expected --out to be a folder it can write in, got {str(tmp_path / 'report')!r}: it is a "
        "file",
        f"kexue reproduce: expected --out to be a folder it can write in, got {str(tmp_path / 'report' / 'x')!r}: Not "
        "a directory",
        "kexue reproduce: expected no NAME with --list, got gelu"]


def test_version(capsys):
    import kexue

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out == f"kexue {kexue.__version__}\n" == "kexue 0.1.0\n"


@pytest.mark.parametrize("argv, err", [
    ([], "kexue: the following arguments are required: COMMAND (see kexue --help)\n"),
    (["nope"], "kexue: expected COMMAND to be one of ['reproduce', 'data', 'shuffle', 'flops'], got 'nope' "
               "(see kexue --help)\n"),
    (["data"], "kexue data: the following arguments are required: ACTION (see kexue data --help)\n"),
    (["reproduce", "--jobs", "0"], "kexue reproduce: argument --jobs: expected a positive integer, got 0 "
                                   "(see kexue reproduce --help)\n"),
    (["flops", "--bogus"], "kexue: unrecognized arguments: --bogus (see kexue --help)\n"),
])
def test_usage_errors_are_one_line(capsys, argv, err):
    """argparse printed the usage block and then the error; now one line naming the command, exit 2."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert capsys.readouterr() == ("", err)


def _boom(args):
    raise RuntimeError("went wrong\n  on two lines")


def _interrupted(args):
    raise KeyboardInterrupt


def test_unexpected_errors_are_one_line_unless_debug(capsys, monkeypatch):
    from kexue.stats import flops

    monkeypatch.setattr(flops, "_cmd_flops", _boom)
    assert main(["flops"]) == 1
    assert capsys.readouterr() == ("", "kexue flops: RuntimeError: went wrong on two lines\n")
    with pytest.raises(RuntimeError, match="went wrong"):
        main(["--debug", "flops"])
    monkeypatch.setattr(flops, "_cmd_flops", _interrupted)
    assert main(["flops"]) == 130
    assert capsys.readouterr() == ("", "")
    with pytest.raises(KeyboardInterrupt):
        main(["--debug", "flops"])


def _parsers(parser, name="kexue"):
    """(name, parser) for the ``kexue`` parser and every subcommand's, depth first."""
    import argparse

    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, p in action.choices.items():
                yield from _parsers(p, f"{name} {sub}")


def test_help_is_plain_text_with_each_default_once():
    """--help showed raw reST (double backticks, :func:`...`) and "(default: None)" after a stated default."""
    import re

    from kexue.cli import build_parser

    seen = []
    for name, parser in _parsers(build_parser()):
        seen.append(name)
        text = parser.format_help()
        assert "``" not in text and not re.search(r":[a-z]+:`", text), (name, text)
        assert "(default: None)" not in text and "(default: False)" not in text, (name, text)
        formatter = parser._get_formatter()
        for action in parser._actions:
            shown = formatter._get_help_string(action) or ""
            assert shown.count("default") <= 1, (name, action.dest, shown)
    assert seen == ["kexue", "kexue reproduce", "kexue data", "kexue data list", "kexue data fetch",
                    "kexue shuffle", "kexue flops"]


def test_the_command_line_starts_without_torch():
    """Building the parser (every ``kexue`` command does) imports no torch: ``kexue --help`` or a refused argument
    answers at once. kexue.stats loads its torch-based modules on first use for this."""
    import subprocess
    import sys

    code = "import sys, kexue.cli; kexue.cli.build_parser(); print(sorted(m for m in sys.modules if m == 'torch'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_stats_exports_resolve():
    import kexue.stats as stats

    assert all(getattr(stats, name) is not None for name in stats.__all__)
    assert set(stats.__all__) <= set(dir(stats))


def test_an_unknown_choice_reads_expected_one_of(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["shuffle", "in.txt", "--method", "sort"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == ("kexue shuffle: expected --method to be one of ['merge', 'scatter', 'naive'], got 'sort' "
                   "(see kexue shuffle --help)")
