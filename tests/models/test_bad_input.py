"""Bad checkpoints and configs raise errors that name what is wrong."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from kexue.models import CheckpointError, Transformer, TransformerConfig, load_pretrained, save_pretrained


@pytest.fixture
def tiny_folder(tmp_path):
    cfg = TransformerConfig(vocab_size=50, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=40,
                            max_position_embeddings=16)
    save_pretrained(Transformer(cfg), tmp_path)
    return tmp_path


def _edit_weights(folder, fn):
    path = folder / "model.safetensors"
    state = load_file(str(path))
    fn(state)
    save_file(state, str(path), metadata={"format": "pt"})


def test_missing_tensor_is_named(tiny_folder):
    _edit_weights(tiny_folder, lambda s: s.pop("encoder.layer.1.attention.self.key.weight"))
    with pytest.raises(CheckpointError, match=r"missing tensors \(1\): encoder\.layer\.1\.attention\.self\.key\.weight"):
        load_pretrained(tiny_folder)


def test_wrong_shape_is_named(tiny_folder):
    def shrink(s):
        s["encoder.layer.0.intermediate.dense.weight"] = torch.zeros(39, 32)
    _edit_weights(tiny_folder, shrink)
    with pytest.raises(CheckpointError, match=r"encoder\.layer\.0\.intermediate\.dense\.weight \(39, 32\) \(expected \(40, 32\)\)"):
        load_pretrained(tiny_folder)


def test_all_problems_in_one_error(tiny_folder):
    def several(s):
        s.pop("embeddings.LayerNorm.bias")
        s["encoder.layer.0.output.dense.bias"] = torch.zeros(7)
        s["encoder.layer.9.attention.self.query.weight"] = torch.zeros(32, 32)
    _edit_weights(tiny_folder, several)
    with pytest.raises(CheckpointError) as info:
        load_pretrained(tiny_folder)
    msg = str(info.value)
    for name in ("embeddings.LayerNorm.bias", "encoder.layer.0.output.dense.bias",
                 "encoder.layer.9.attention.self.query.weight"):
        assert name in msg


def test_non_strict_loads_the_rest_and_reports(tiny_folder):
    reference = load_pretrained(tiny_folder)
    _edit_weights(tiny_folder, lambda s: (s.pop("pooler.dense.bias"), s.__setitem__("extra.thing", torch.ones(2))))
    model, report = load_pretrained(tiny_folder, strict=False)
    assert report.missing == ["pooler.dense.bias"]
    assert report.unexpected == ["extra.thing"]
    assert not report.mismatched
    assert torch.equal(model.blocks[1].ffn.up.weight, reference.blocks[1].ffn.up.weight)


def test_unsupported_architecture_is_named(tiny_folder):
    cfg = json.loads((tiny_folder / "config.json").read_text())
    cfg["model_type"] = "gpt2"
    cfg["architectures"] = ["GPT2LMHeadModel"]
    (tiny_folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"unsupported architecture: model_type='gpt2'.*GPT2LMHeadModel"):
        load_pretrained(tiny_folder)


def test_relative_positions_are_refused():
    with pytest.raises(ValueError, match="position_embedding_type='relative_key'"):
        TransformerConfig.from_hf({"model_type": "bert", "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1,
                                   "num_attention_heads": 2, "intermediate_size": 8,
                                   "position_embedding_type": "relative_key"})


def test_hidden_not_divisible_by_heads():
    with pytest.raises(ValueError, match=r"hidden_size divisible by num_heads \(384 % 5 = 4\)"):
        TransformerConfig(hidden_size=384, num_heads=5)


def test_hidden_not_divisible_from_hf_config():
    with pytest.raises(ValueError, match=r"\(100 % 3 = 1\)"):
        TransformerConfig.from_hf({"model_type": "bert", "vocab_size": 10, "hidden_size": 100,
                                   "num_hidden_layers": 1, "num_attention_heads": 3, "intermediate_size": 8})


@pytest.mark.parametrize("field,value,pattern", [
    ("num_layers", 0, "num_layers to be a positive integer, got 0"),
    ("hidden_dropout", 1.0, "hidden_dropout in \\[0, 1\\), got 1.0"),
    ("hidden_act", "gelu_magic", "unknown hidden_act 'gelu_magic'"),
    ("norm", "sandwich", "unknown norm 'sandwich'"),
    ("mask_type", "causal", "unknown mask_type 'causal'"),
    ("pad_token_id", 99, "pad_token_id < vocab_size"),
])
def test_config_names_bad_value(field, value, pattern):
    with pytest.raises(ValueError, match=pattern):
        TransformerConfig(vocab_size=30, hidden_size=8, num_heads=2, **{field: value})


def test_missing_folder_and_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a model folder"):
        load_pretrained(tmp_path / "nope")
    (tmp_path / "config.json").write_text(json.dumps(TransformerConfig(vocab_size=10, hidden_size=8, num_heads=2,
                                                                       num_layers=1, intermediate_size=8).to_hf()))
    with pytest.raises(FileNotFoundError, match="no model.safetensors or pytorch_model.bin"):
        load_pretrained(tmp_path)


def test_too_long_sequence_is_refused():
    model = Transformer(TransformerConfig(vocab_size=20, hidden_size=8, num_heads=2, num_layers=1,
                                          intermediate_size=8, max_position_embeddings=6))
    with pytest.raises(ValueError, match="length 7 needs position 6, beyond max_position_embeddings = 6"):
        model(torch.ones(1, 7, dtype=torch.long))


def test_save_leaves_no_temporary_files(tiny_folder):
    assert sorted(p.name for p in tiny_folder.iterdir()) == ["config.json", "model.safetensors"]


def test_a_save_that_fails_keeps_the_saved_model_and_no_temporary_file(tiny_folder, monkeypatch):
    from kexue.models import hf

    before = {p.name: p.read_bytes() for p in tiny_folder.iterdir()}

    def half_then_fail(tensors, path, metadata=None):
        with open(path, "wb") as f:
            f.write(b"half a checkpoint")
        raise OSError("no space left on device")

    monkeypatch.setattr(hf, "save_file", half_then_fail)
    cfg = TransformerConfig(vocab_size=50, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=40,
                            max_position_embeddings=16)
    with pytest.raises(OSError, match="no space left"):
        save_pretrained(Transformer(cfg), tiny_folder)
    assert {p.name: p.read_bytes() for p in tiny_folder.iterdir()} == before
    load_pretrained(tiny_folder)


def test_save_refuses_what_hf_cannot_hold(tmp_path):
    pre = Transformer(TransformerConfig(vocab_size=20, hidden_size=8, num_heads=2, num_layers=1,
                                        intermediate_size=8, norm="pre"))
    with pytest.raises(ValueError, match="norm='pre'"):
        save_pretrained(pre, tmp_path)
    assert not (tmp_path / "model.safetensors").exists()
