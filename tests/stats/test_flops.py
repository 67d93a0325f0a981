"""FLOP counts against torch's FlopCounterMode on an explicit attention path, and the post's crossovers."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from kexue.stats import crossover_lengths, linear_attention_macs, transformer_layer_macs


def _explicit_layer(x, heads, d, ffn_mult, glu=False):
    """One BERT-like layer with q@kᵀ, softmax, p@v written out (never SDPA, which the counter may not see)."""
    n, hd = x.shape[1], heads * d

    def W(i, o):
        return torch.empty(o, i, device=x.device)

    q, k, v = (torch.nn.functional.linear(x, W(hd, hd)) for _ in range(3))
    q, k, v = (t.view(1, n, heads, d).transpose(1, 2) for t in (q, k, v))
    p = torch.softmax(q @ k.transpose(-1, -2) / d**0.5, dim=-1)
    o = (p @ v).transpose(1, 2).reshape(1, n, hd)
    h = torch.nn.functional.linear(o, W(hd, hd)) + x
    inner = int(ffn_mult * hd)
    u = torch.nn.functional.linear(h, W(hd, inner))
    if glu:
        u = u * torch.nn.functional.linear(h, W(hd, inner))
    return torch.nn.functional.linear(torch.nn.functional.gelu(u), W(inner, hd)) + h


@pytest.mark.parametrize("n", [128, 512, 1536, 4608])
def test_counts_equal_flop_counter_bert_base(n):
    x = torch.empty(1, n, 768, device="meta")
    with FlopCounterMode(display=False) as counter:
        _explicit_layer(x, 12, 64, 4)
    macs = transformer_layer_macs(n, 12, 64)
    assert counter.get_total_flops() == 2 * macs["total"] == 2 * (12 * n * 12**2 * 64**2 + 2 * n * n * 12 * 64)


@pytest.mark.parametrize("heads,d,mult,glu", [(3, 32, 2, False), (5, 16, 4, True), (8, 8, 3, False)])
def test_counts_equal_flop_counter_odd_sizes(heads, d, mult, glu):
    x = torch.empty(1, 200, heads * d, device="meta")
    with FlopCounterMode(display=False) as counter:
        _explicit_layer(x, heads, d, mult, glu=glu)
    macs = transformer_layer_macs(200, heads, d, mult, "glu" if glu else "mlp")
    assert counter.get_total_flops() == 2 * macs["total"]


def test_crossovers_are_the_posts_numbers_and_balance_points():
    x = crossover_lengths(12, 64)
    assert x == {"attention_over_ffn": 1536, "quadratic_over_linear": 4608, "linear_attention": 1024}
    at = transformer_layer_macs(4608, 12, 64)
    assert at["quadratic"] == pytest.approx(at["total"] - at["quadratic"])  # equal at the crossover

    def sa(c):
        return c["qkv"] + c["scores"] + c["weighted_sum"] + c["out_proj"]

    c = transformer_layer_macs(1536, 12, 64)
    assert sa(c) == c["ffn"]
    lin = linear_attention_macs(1024, 64)
    assert lin["softmax"] == lin["linear"]


def test_quadratic_share_closed_form():
    for n in (100, 1000, 5000):
        assert transformer_layer_macs(n)["quadratic_share"] == pytest.approx(n / (n + 6 * 768))


def test_bad_values():
    with pytest.raises(ValueError, match="expected n >= 1, got 0"):
        transformer_layer_macs(0)
    with pytest.raises(TypeError, match="expected heads to be an integer, got 1.5"):
        transformer_layer_macs(10, heads=1.5)
    with pytest.raises(ValueError, match="expected head_size >= 1, got 0"):
        transformer_layer_macs(10, head_size=0)
    with pytest.raises(ValueError, match="expected ffn_mult > 0.0, got 0"):
        transformer_layer_macs(10, ffn_mult=0)
    with pytest.raises(ValueError, match="expected ffn_kind to be one of \\['mlp', 'glu'\\], got 'moe'"):
        transformer_layer_macs(10, ffn_kind="moe")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expected ffn_kind to be one of \\['mlp', 'glu'\\], got 'moe'"):
        crossover_lengths(ffn_kind="moe")
    with pytest.raises(ValueError, match="expected head_mult > 0.0, got -1"):
        crossover_lengths(head_mult=-1)
    with pytest.raises(ValueError, match="expected head_mult > 0.0, got 0"):
        linear_attention_macs(10, head_mult=0)
    with pytest.raises(ValueError, match="expected heads >= 1, got 0"):
        linear_attention_macs(10, heads=0)


def test_cli(capsys):
    import argparse

    from kexue.stats.flops import add_parser

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["flops", "--hidden", "768", "--heads", "12", "--layers", "12", "--seq", "512"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "past n = 4608" in out and "past n = 1536" in out and "past n = 1024" in out
    assert args.func(parser.parse_args(["flops", "--hidden", "768", "--heads", "5"])) == 2
    assert capsys.readouterr() == ("", "kexue flops: expected --hidden divisible by --heads, got 768 and 5\n")


@pytest.mark.parametrize("argv, words", [
    (["--seq", "0"], "argument --seq: expected a positive integer, got 0"),
    (["--seq", "128", "-5"], "argument --seq: expected a positive integer, got -5"),
    (["--heads", "0"], "argument --heads: expected a positive integer, got 0"),
    (["--hidden", "x"], "argument --hidden: expected a positive integer, got 'x'"),
    (["--layers", "0"], "argument --layers: expected a positive integer, got 0"),
    (["--ffn-mult", "0"], "argument --ffn-mult: expected a positive finite number, got 0"),
    (["--head-mult", "nan"], "argument --head-mult: expected a positive finite number, got nan"),
])
def test_cli_refuses_bad_sizes_before_printing(capsys, argv, words):
    """`kexue flops --seq 0` printed the table header, then a traceback: now one line on stderr, exit 2, nothing
    on stdout."""
    from kexue.cli import main

    with pytest.raises(SystemExit) as e:
        main(["flops", *argv])
    assert e.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and err == f"kexue flops: {words} (see kexue flops --help)\n"
