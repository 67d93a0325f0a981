"""The README's tour runs: its Python blocks execute in order in one namespace (later blocks use the model and
tokenizer of the first), against the installed kexue, so a rename that the README missed fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_the_tour_has_python_blocks():
    assert len(_blocks()) >= 3


@pytest.mark.data
def test_the_tour_runs(tmp_path, monkeypatch, capsys, data_root):
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    outputs = []
    for i, code in enumerate(_blocks()):
        code = code.replace('"/tmp/', f'"{tmp_path}/')  # where the tour saves, e.g. /tmp/minilm-copy
        exec(compile(code, f"README.md python block {i + 1}", "exec"), namespace)
        outputs.append((code, capsys.readouterr().out))
    assert "torch.Size([2," in outputs[0][1]  # the first block's shapes
    sts = [out for code, out in outputs if "evaluate(model, tok, load_sts(" in code]
    assert len(sts) == 1
    rho = float(sts[0].strip().splitlines()[-1])
    assert 0.80 < rho < 0.84  # the STS block prints MiniLM's STS-B Spearman (0.8203 as sentence-transformers)
