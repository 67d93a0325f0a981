"""Bad checkpoints and configs raise errors that name what is wrong."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from kexue.models import (
    CheckpointError,
    LoadResult,
    Transformer,
    TransformerConfig,
    load_pretrained,
    load_pretrained_with_report,
    save_pretrained,
)


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
    with pytest.raises(CheckpointError,
                       match=r"missing tensors \(1\): encoder\.layer\.1\.attention\.self\.key\.weight"):
        load_pretrained(tiny_folder)


def test_wrong_shape_is_named(tiny_folder):
    def shrink(s):
        s["encoder.layer.0.intermediate.dense.weight"] = torch.zeros(39, 32)
    _edit_weights(tiny_folder, shrink)
    with pytest.raises(CheckpointError,
                       match=r"encoder\.layer\.0\.intermediate\.dense\.weight \(39, 32\) \(expected \(40, 32\)\)"):
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
    clean = load_pretrained_with_report(tiny_folder)
    assert isinstance(clean, LoadResult) and clean.report.clean and clean.report.describe() == "clean"
    _edit_weights(tiny_folder, lambda s: (s.pop("pooler.dense.bias"), s.__setitem__("extra.thing", torch.ones(2))))
    model, report = load_pretrained_with_report(tiny_folder)
    assert report.missing == ["pooler.dense.bias"]
    assert report.unexpected == ["extra.thing"]
    assert not report.mismatched
    assert torch.equal(model.blocks[1].ffn.up.weight, reference.blocks[1].ffn.up.weight)
    # load_pretrained returns the model whatever strict is: non-strict warns with the same list
    with pytest.warns(UserWarning, match=r"got missing tensors \(1\): pooler\.dense\.bias; unexpected tensors "
                                         r"\(1\): extra\.thing; the tensors left out keep their initialisation"):
        loose = load_pretrained(tiny_folder, strict=False)
    assert isinstance(loose, Transformer) and not loose.training
    assert torch.equal(loose.blocks[1].ffn.up.weight, model.blocks[1].ffn.up.weight)
    with pytest.raises(CheckpointError, match=r"expected the tensors of a bert model in .*, got missing tensors"):
        load_pretrained(tiny_folder, strict=True)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool])
def test_a_tensor_whose_dtype_cannot_hold_the_parameter_is_refused(tiny_folder, dtype):
    reference = load_pretrained(tiny_folder)

    def retype(s):
        s["encoder.layer.0.output.dense.bias"] = torch.ones(32, dtype=dtype)
    _edit_weights(tiny_folder, retype)
    name = str(dtype).removeprefix("torch.")
    with pytest.raises(CheckpointError, match=rf"mistyped tensors \(1\): encoder\.layer\.0\.output\.dense\.bias "
                                              rf"{name} \(expected a floating dtype for float32\)"):
        load_pretrained(tiny_folder)
    # non-strict: the other tensors load, the mistyped one keeps its initialisation and is named in the warning
    model, report = load_pretrained_with_report(tiny_folder)
    assert report.mistyped == [f"encoder.layer.0.output.dense.bias {name} (expected a floating dtype for float32)"]
    assert not report.clean
    with pytest.warns(UserWarning, match=r"mistyped tensors \(1\): encoder\.layer\.0\.output\.dense\.bias"):
        loose = load_pretrained(tiny_folder, strict=False)
    assert not torch.equal(loose.blocks[0].ffn.down.bias, torch.ones(32))
    assert torch.equal(loose.blocks[1].ffn.up.weight, reference.blocks[1].ffn.up.weight)


def test_floating_tensors_of_another_precision_are_cast(tiny_folder):
    wide = torch.linspace(-1, 1, 32, dtype=torch.float64) / 3

    def widen_and_narrow(s):
        s["encoder.layer.0.output.dense.bias"] = wide
        s["pooler.dense.bias"] = s["pooler.dense.bias"].bfloat16()
    _edit_weights(tiny_folder, widen_and_narrow)
    model, report = load_pretrained_with_report(tiny_folder)
    assert report.clean
    assert torch.equal(model.blocks[0].ffn.down.bias, wide.float())


def test_non_finite_weights_are_refused_unless_asked(tiny_folder):
    def spoil(s):
        s["encoder.layer.1.attention.self.key.bias"][3] = float("nan")
        s["embeddings.LayerNorm.weight"][0] = float("-inf")
    _edit_weights(tiny_folder, spoil)
    for load in (load_pretrained, load_pretrained_with_report):
        with pytest.raises(CheckpointError, match=r"expected finite weights in .*model\.safetensors, got non-finite "
                                                  r"values in embeddings\.LayerNorm\.weight \(1 of 32\), "
                                                  r"encoder\.layer\.1\.attention\.self\.key\.bias \(1 of 32\); "
                                                  r"pass allow_non_finite=True to load them anyway"):
            load(tiny_folder)
    with pytest.raises(CheckpointError, match="non-finite values"):
        load_pretrained(tiny_folder, strict=False)
    model = load_pretrained(tiny_folder, allow_non_finite=True)
    assert torch.isnan(model.blocks[1].attn.k.bias[3]) and torch.isneginf(model.embeddings.norm.weight[0])
    assert load_pretrained_with_report(tiny_folder, allow_non_finite=True).report.clean


def test_a_malformed_config_names_the_file_and_the_place(tiny_folder):
    path = tiny_folder / "config.json"
    path.write_text('{"model_type": "bert",\n  "vocab_size": ,\n}')
    with pytest.raises(CheckpointError, match=rf"expected JSON in {path}, got Expecting value at line 2 column 17"):
        load_pretrained(tiny_folder)
    path.write_text("[1, 2]")
    with pytest.raises(CheckpointError, match=rf"expected a JSON object in {path}, got a list"):
        load_pretrained(tiny_folder)
    path.write_bytes(b'{"model_type": "\xff"}')
    with pytest.raises(CheckpointError, match=rf"expected UTF-8 JSON in {path}, got .*byte 0xff in position 16"):
        load_pretrained(tiny_folder)
    assert issubclass(CheckpointError, ValueError)  # `except ValueError` around a load keeps catching these


def test_a_truncated_weights_file_is_named(tiny_folder):
    st = tiny_folder / "model.safetensors"
    data = st.read_bytes()
    for cut in (data[: len(data) - 100], data[:5]):
        st.write_bytes(cut)
        with pytest.raises(CheckpointError, match=rf"expected a readable safetensors file at {st}, got "
                                                  r"SafetensorError: Error while deserializing header"):
            load_pretrained(tiny_folder)
    st.unlink()
    binf = tiny_folder / "pytorch_model.bin"
    torch.save({"embeddings.word_embeddings.weight": torch.ones(50, 32)}, binf)
    binf.write_bytes(binf.read_bytes()[:200])
    with pytest.raises(CheckpointError, match=rf"expected a readable PyTorch checkpoint at {binf}, got RuntimeError"):
        load_pretrained(tiny_folder)
    binf.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match=rf"expected a readable PyTorch checkpoint at {binf}, got "
                                              r"UnpicklingError"):
        load_pretrained(tiny_folder)


def test_unsupported_architecture_is_named(tiny_folder):
    cfg = json.loads((tiny_folder / "config.json").read_text())
    cfg["model_type"] = "gpt2"
    cfg["architectures"] = ["GPT2LMHeadModel"]
    (tiny_folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"expected model_type to be one of \['bert', 'roberta', 'xlm-roberta', "
                                         r"'camembert'\] .*, got 'gpt2' \(architectures=\['GPT2LMHeadModel'\]\)"):
        load_pretrained(tiny_folder)


def test_relative_positions_are_refused():
    with pytest.raises(ValueError, match="expected position_embedding_type='absolute' .*, got "
                                         "position_embedding_type='relative_key'"):
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
    ("num_layers", 0, r"expected num_layers >= 1, got 0"),
    ("vocab_size", 0, r"expected vocab_size >= 1, got 0"),
    ("type_vocab_size", -1, r"expected type_vocab_size >= 0, got -1"),
    ("hidden_dropout", 1.0, r"expected hidden_dropout < 1.0, got 1.0"),
    ("layer_norm_eps", 0.0, r"expected layer_norm_eps > 0.0, got 0.0"),
    ("initializer_range", float("nan"), r"expected initializer_range to be finite, got nan"),
    ("hidden_act", "gelu_magic", r"expected hidden_act to be one of \['gelu', .*'linear'\], got 'gelu_magic'"),
    ("mlm_hidden_act", "gelu_magic", r"expected mlm_hidden_act to be one of \['gelu', .*\], got 'gelu_magic'"),
    ("hidden_act", {"name": "gelu"}, r"expected hidden_act to be one of \[.*\], got \{'name': 'gelu'\}"),
    ("norm", "sandwich", r"expected norm to be one of \['post', 'pre', 'none'\], got 'sandwich'"),
    ("norm_kind", "batchnorm", r"expected norm_kind to be one of \['layernorm', 'rmsnorm'\], got 'batchnorm'"),
    ("residual_gate", "skip", r"expected residual_gate to be one of \['none', 'rezero', 'ramp'\], got 'skip'"),
    ("mask_type", "causal", r"expected mask_type to be one of \['bidirectional', 'lm', 'unilm'\], got 'causal'"),
    ("family", "gpt2", r"expected family to be one of \['bert', 'roberta'\], got 'gpt2'"),
    ("position_style", "rope", r"expected position_style to be one of \['bert', 'roberta'\], got 'rope'"),
    ("pad_token_id", 99, r"expected pad_token_id < vocab_size \(30\), got 99"),
    ("pad_token_id", -1, r"expected pad_token_id >= 0, got -1"),
])
def test_config_names_bad_value(field, value, pattern):
    with pytest.raises(ValueError, match=pattern):
        TransformerConfig(**{"vocab_size": 30, "hidden_size": 8, "num_heads": 2, field: value})


@pytest.mark.parametrize("kw,pattern", [
    (dict(position_style="roberta", pad_token_id=15),
     r"expected max_position_embeddings > pad_token_id \+ 1 = 16 with position_style='roberta' .*got "
     r"max_position_embeddings=16"),
    (dict(mask_type="unilm", type_vocab_size=1), r"expected type_vocab_size >= 2 with mask_type='unilm' .*got "
                                                 r"type_vocab_size=1"),
    (dict(residual_gate="ramp", residual_gate_ramp_steps=0), r"expected residual_gate_ramp_steps >= 1, got 0"),
    (dict(with_nsp=True, with_pooler=False), r"expected with_pooler=True with with_nsp=True .*got with_pooler=False"),
])
def test_config_names_bad_combination(kw, pattern):
    with pytest.raises(ValueError, match=pattern):
        TransformerConfig(vocab_size=30, hidden_size=8, num_heads=2, max_position_embeddings=16, **kw)


def test_config_int_fields_refuse_non_integers():
    with pytest.raises(TypeError, match=r"expected num_heads to be an integer, got 2.0 \(float\)"):
        TransformerConfig(hidden_size=8, num_heads=2.0)
    with pytest.raises(TypeError, match=r"expected num_layers to be an integer, got True \(bool\)"):
        TransformerConfig(num_layers=True)


def test_from_hf_refuses_decoders():
    hf = {"model_type": "bert", "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
          "intermediate_size": 8}
    with pytest.raises(ValueError, match=r"expected an encoder .*, got is_decoder=True, add_cross_attention=None"):
        TransformerConfig.from_hf({**hf, "is_decoder": True})
    with pytest.raises(ValueError, match=r"expected hidden_act to be one of .*, got <built-in function abs>"):
        TransformerConfig.from_hf({**hf, "hidden_act": abs})


def test_missing_folder_and_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="expected a model folder, got .*nope"):
        load_pretrained(tmp_path / "nope")
    (tmp_path / "config.json").write_text(json.dumps(TransformerConfig(vocab_size=10, hidden_size=8, num_heads=2,
                                                                       num_layers=1, intermediate_size=8).to_hf()))
    with pytest.raises(FileNotFoundError, match="expected model.safetensors or pytorch_model.bin in .*, found neither"):
        load_pretrained(tmp_path)


def test_too_long_sequence_is_refused():
    model = Transformer(TransformerConfig(vocab_size=20, hidden_size=8, num_heads=2, num_layers=1,
                                          intermediate_size=8, max_position_embeddings=6))
    with pytest.raises(ValueError, match=r"expected positions < max_position_embeddings = 6, got position 6 \(a "
                                         r"sequence of length 7\)"):
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


def test_forward_names_mismatched_inputs():
    model = Transformer(TransformerConfig(vocab_size=20, hidden_size=8, num_heads=2, num_layers=1,
                                          intermediate_size=8))
    ids = torch.ones(2, 5, dtype=torch.long)
    with pytest.raises(ValueError, match=r"expected attention_mask of input_ids' shape \(2, 5\), got \(2, 4\)"):
        model(ids, attention_mask=torch.ones(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"expected token_type_ids of input_ids' shape \(2, 5\), got \(2, 6\)"):
        model(ids, token_type_ids=torch.zeros(2, 6, dtype=torch.long))
    with pytest.raises(ValueError, match=r"expected input_ids of shape \(batch, seq\), got \(5,\)"):
        model(ids[0])
    with pytest.raises(ValueError, match=r"expected policy to be one of \['tail_once', 'block'\], got 'all'"):
        model.gradient_checkpointing_enable(policy="all")


def test_tokenizer_names_a_pad_token_outside_the_vocabulary():
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers.models import WordLevel

    from kexue.models import Tokenizer

    inner = HFTokenizer(WordLevel({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    with pytest.raises(ValueError, match=r"expected pad_token in the vocabulary, got '\[PAD\]', which is not"):
        Tokenizer(inner)


def test_models_exports_resolve():
    import importlib

    import kexue.models

    for name in ("kexue.models", "kexue.models.config", "kexue.models.transformer", "kexue.models.layers",
                 "kexue.models.cache", "kexue.models.hf", "kexue.models.tokenizer", "kexue.models.decoding",
                 "kexue.models.recompute"):
        mod = importlib.import_module(name)
        assert mod.__all__ and all(hasattr(mod, n) for n in mod.__all__), name
    assert kexue.models.pad_encodings is kexue.models.tokenizer.pad_encodings
    assert "config_field_names" not in vars(kexue.models.config)
