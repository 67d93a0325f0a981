"""Bad-input rows: kexue.stats (multiply counts) and ``kexue flops``."""

from __future__ import annotations

import pytest
from _matrix import Bad, BadCLI, check, check_cli

from kexue.stats import crossover_lengths, linear_attention_macs, transformer_layer_macs

ROWS = [
    Bad("kexue.stats.transformer_layer_macs", "n = 0", lambda: transformer_layer_macs(0), ValueError,
        r"expected n >= 1, got 0"),
    Bad("kexue.stats.transformer_layer_macs", "heads a float", lambda: transformer_layer_macs(8, heads=2.5),
        TypeError, r"heads.*2\.5"),
    Bad("kexue.stats.transformer_layer_macs", "unknown ffn_kind", lambda: transformer_layer_macs(8, ffn_kind="moe"),
        ValueError, r"expected ffn_kind to be one of .*got 'moe'"),
    Bad("kexue.stats.crossover_lengths", "ffn_mult = 0", lambda: crossover_lengths(ffn_mult=0), ValueError,
        r"ffn_mult.*got 0"),
    Bad("kexue.stats.crossover_lengths", "head_size nan", lambda: crossover_lengths(head_size=float("nan")),
        TypeError, r"head_size.*nan"),
    Bad("kexue.stats.linear_attention_macs", "n negative", lambda: linear_attention_macs(-3), ValueError,
        r"expected n >= 1, got -3"),
    Bad("kexue.stats.linear_attention_macs", "head_mult infinite",
        lambda: linear_attention_macs(8, head_mult=float("inf")), ValueError, r"head_mult.*inf"),
]

CLI_ROWS = [
    BadCLI("kexue flops", "--seq 0", lambda d: ["flops", "--seq", "0"], 2, r"kexue flops: .*--seq.*0"),
    BadCLI("kexue flops", "--hidden not divisible by --heads", lambda d: ["flops", "--hidden", "100", "--heads", "3"],
           2, r"kexue flops: .*100.*3"),
]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_refuses(row):
    check(row)


@pytest.mark.parametrize("row", CLI_ROWS, ids=lambda r: r.id)
def test_cli_refuses(row, tmp_path):
    check_cli(row, tmp_path)

