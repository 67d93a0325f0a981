"""Bad-input rows: kexue.models (the Transformer and its config, checkpoints, the tokenizer, decoding, recompute).

Rows that touch files run in a scratch folder (the autouse fixture below), so their paths are relative: ``ckpt``
is a small saved checkpoint that a row may spoil before loading it.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from _matrix import Bad, check
from safetensors.torch import load_file, save_file
from torch import nn

from kexue.env import minilm_path
from kexue.models import (
    CheckpointError,
    KVCache,
    Tokenizer,
    Transformer,
    TransformerConfig,
    UniLMStep,
    beam_search,
    disable_recompute,
    enable_recompute,
    find_blocks,
    generate,
    greedy_search,
    is_recomputed,
    load_pretrained,
    load_pretrained_with_report,
    pad_encodings,
    save_pretrained,
)

SMALL = dict(vocab_size=20, hidden_size=8, num_heads=2, num_layers=1, intermediate_size=8, max_position_embeddings=16)


def _model(**kw: Any) -> Transformer:
    """A one-block Transformer, vocabulary 20, 16 positions, in eval mode."""
    return Transformer(TransformerConfig(**{**SMALL, **kw})).eval()


def _unilm() -> Transformer:
    return _model(mask_type="unilm", with_mlm=True, with_pooler=False)


def _ids(*shape: int) -> torch.Tensor:
    return torch.ones(*(shape or (2, 5)), dtype=torch.long)


@functools.cache
def _tok() -> Tokenizer:
    """all-MiniLM-L6-v2's tokenizer (vocabulary 30522)."""
    return Tokenizer.from_pretrained(minilm_path())


def _ckpt(spoil: Callable[[Path], object] | None = None) -> Path:
    """``ckpt``: a saved small checkpoint in the scratch folder, spoiled by ``spoil(folder)`` when given."""
    folder = Path("ckpt")
    save_pretrained(_model(), folder)
    if spoil is not None:
        spoil(folder)
    return folder


def _edit_weights(fn: Callable[[dict[str, torch.Tensor]], object]) -> Callable[[Path], None]:
    def spoil(folder: Path) -> None:
        state = load_file(str(folder / "model.safetensors"))
        fn(state)
        save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return spoil


def _write(name: str, data: str | bytes) -> Callable[[Path], None]:
    def spoil(folder: Path) -> None:
        p = folder / name
        p.write_bytes(data) if isinstance(data, bytes) else p.write_text(data)
    return spoil


def _truncate(folder: Path) -> None:
    st = folder / "model.safetensors"
    st.write_bytes(st.read_bytes()[:-100])


def _config_without(key: str) -> Callable[[Path], None]:
    def spoil(folder: Path) -> None:
        cfg = json.loads((folder / "config.json").read_text())
        del cfg[key]
        (folder / "config.json").write_text(json.dumps(cfg))
    return spoil


def _unwritable() -> Path:
    """A folder this process cannot write to: read-only permissions, or for root (which ignores them) /proc/self."""
    if os.geteuid() == 0:
        return Path("/proc/self")
    folder = Path(tempfile.mkdtemp(dir="."))
    folder.chmod(0o555)
    return folder


def _tok_folder(**files: str) -> Path:
    folder = Path("tok")
    folder.mkdir()
    for name, text in files.items():
        (folder / name.replace("__", ".")).write_text(text)
    return folder


def _enter(cm: Any) -> None:
    with cm:
        pass


def _wrapped_blocks() -> Transformer:
    m = _model()
    enable_recompute(m, every=2)  # wraps block 0 with recompute()
    return m


def _ramp_target() -> None:
    m = _model(residual_gate="ramp", residual_gate_ramp_steps=3, norm="none")
    m.attach_ramp([p for p in m.parameters()])


def _step(rows: int, vocab: int = 4) -> Callable[[Any, torch.Tensor], torch.Tensor]:
    """A step function that returns uniform log-probabilities for ``rows`` rows, whatever it is asked."""
    return lambda tokens, parents: torch.full((rows, vocab), -1.3863)


def _unilm_step() -> UniLMStep:
    return UniLMStep(_unilm(), torch.tensor([[1, 3, 4], [1, 5, 0]]), torch.tensor([[1, 1, 1], [1, 1, 0]]))


def _after_first(step: UniLMStep) -> UniLMStep:
    step(None, torch.arange(2))
    return step


def _filled_cache(rows: int = 2) -> KVCache:
    cache = KVCache(1)
    cache.layers[0]["k"] = torch.zeros(rows, 2, 3, 4)
    cache.layers[0]["v"] = torch.zeros(rows, 2, 3, 4)
    return cache


def _training_unilm() -> Transformer:
    return _unilm().train()


class _Stack(nn.Module):
    def __init__(self, *blocks: nn.Module) -> None:
        super().__init__()
        self.layers = nn.ModuleList(blocks)


T = "kexue.models.Transformer"
C = "kexue.models.TransformerConfig"
TOK = "kexue.models.Tokenizer"
HF = {"model_type": "bert", "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
      "intermediate_size": 8}

ROWS = [
    # -- the Transformer ----------------------------------------------------------------------------------------------
    Bad(T, "config a dict", lambda: Transformer({"vocab_size": 20}), TypeError,
        r"^expected config to be a TransformerConfig, got dict$"),
    Bad(T, "config a folder name", lambda: Transformer("bert-base"), TypeError,
        r"expected config to be a TransformerConfig, got str \(load_pretrained\(folder\) loads a checkpoint\)"),
    Bad(T, "config None", lambda: Transformer(None), TypeError,
        r"expected config to be a TransformerConfig, got NoneType"),
    Bad(f"{T}.forward", "input_ids a list", lambda: _model()([[1, 2]]), TypeError,
        r"^expected input_ids to be a Tensor, got list$"),
    Bad(f"{T}.forward", "input_ids 1-D", lambda: _model()(_ids(5)), ValueError,
        r"^expected input_ids of shape \(batch, seq\), got \(5,\)$"),
    Bad(f"{T}.forward", "input_ids float", lambda: _model()(_ids().float()), TypeError,
        r"^expected input_ids of dtype int64 or int32, got torch\.float32$"),
    Bad(f"{T}.forward", "an id = vocab_size", lambda: _model()(_ids() * 20), ValueError,
        r"^expected input_ids in \[0, vocab_size=20\), got 20$"),
    Bad(f"{T}.forward", "a negative id", lambda: _model()(-_ids()), ValueError,
        r"^expected input_ids in \[0, vocab_size=20\), got -1$"),
    Bad(f"{T}.forward", "no positions", lambda: _model()(_ids(2, 0)), ValueError,
        r"^expected input_ids with at least one position, got shape \(2, 0\)$"),
    Bad(f"{T}.forward", "attention_mask of another shape", lambda: _model()(_ids(), attention_mask=_ids(2, 4)),
        ValueError, r"^expected attention_mask of input_ids' shape \(2, 5\), got \(2, 4\)$"),
    Bad(f"{T}.forward", "an additive attention_mask",
        lambda: _model()(_ids(), attention_mask=torch.tensor([[0.0] * 5, [0.0, 0.0, 0.0, -1e4, -1e4]])), ValueError,
        r"^expected attention_mask values 1 \(token\) and 0 \(padding\), got -10000\.0 \(an additive mask\? pass "
        r"the 1/0 mask\)$"),
    Bad(f"{T}.forward", "an attention_mask of 2s", lambda: _model()(_ids(), attention_mask=_ids() * 2), ValueError,
        r"^expected attention_mask values 1 \(token\) and 0 \(padding\), got 2 "),
    Bad(f"{T}.forward", "token_type_ids of another shape", lambda: _model()(_ids(), token_type_ids=_ids(2, 6)),
        ValueError, r"^expected token_type_ids of input_ids' shape \(2, 5\), got \(2, 6\)$"),
    Bad(f"{T}.forward", "a segment id = type_vocab_size", lambda: _model()(_ids(), token_type_ids=_ids() * 2),
        ValueError, r"^expected token_type_ids in \[0, type_vocab_size=2\), got 2$"),
    Bad(f"{T}.forward", "position_ids of another length",
        lambda: _model()(_ids(), position_ids=torch.arange(3)[None]), ValueError,
        r"^expected position_ids of shape \(2 or 1, 5\) for input_ids of shape \(2, 5\), got \(1, 3\)$"),
    Bad(f"{T}.forward", "a negative position", lambda: _model()(_ids(), position_ids=torch.arange(-1, 4)[None]),
        ValueError, r"^expected position_ids >= 0, got -1$"),
    Bad(f"{T}.forward", "longer than max_position_embeddings", lambda: _model()(_ids(1, 17)), ValueError,
        r"^expected positions < max_position_embeddings = 16, got position 16 \(a sequence of length 17\)$"),
    Bad(f"{T}.forward", "a cache of another layer count",
        lambda: _model(mask_type="lm")(_ids(), cache=KVCache(3)), ValueError,
        r"^expected a cache of the model's 1 layers \(model\.new_cache\(\)\), got 3 layers$"),
    Bad(f"{T}.forward", "a cache with a bidirectional model", lambda: _model()(_ids(), cache=KVCache(1)), ValueError,
        r"^expected mask_type 'lm' or 'unilm' with a key/value cache .*got mask_type='bidirectional'$"),
    Bad(f"{T}.forward", "unilm without token_type_ids", lambda: _unilm()(_ids()), ValueError,
        r"^expected token_type_ids with mask_type='unilm' \(0 = source, 1 = target\), got None$"),
    Bad(f"{T}.run_encoder", "input_ids 3-D", lambda: _model().run_encoder(_ids(2, 5, 1)), ValueError,
        r"^expected input_ids of shape \(batch, seq\), got \(2, 5, 1\)$"),
    Bad(f"{T}.run_encoder", "input_ids int16", lambda: _model().run_encoder(_ids().short()), TypeError,
        r"^expected input_ids of dtype int64 or int32, got torch\.int16$"),
    Bad(f"{T}.run_encoder", "an id past the vocabulary", lambda: _model().run_encoder(_ids() + 99), ValueError,
        r"^expected input_ids in \[0, vocab_size=20\), got 100$"),
    Bad(f"{T}.run_encoder", "token_type_ids float",
        lambda: _model().run_encoder(_ids(), token_type_ids=torch.zeros(2, 5)), TypeError,
        r"^expected token_type_ids to be an integer tensor, got torch\.float32$"),
    Bad(f"{T}.attention_mask", "input_ids 1-D", lambda: _model().attention_mask(_ids(5), None, None), ValueError,
        r"^expected input_ids of shape \(batch, seq\), got \(5,\)$"),
    Bad(f"{T}.attention_mask", "attention_mask of another shape",
        lambda: _model().attention_mask(_ids(), _ids(1, 5), None), ValueError,
        r"^expected attention_mask of input_ids' shape \(2, 5\), got \(1, 5\)$"),
    Bad(f"{T}.attention_mask", "unilm without token_type_ids", lambda: _unilm().attention_mask(_ids(), None, None),
        ValueError, r"expected token_type_ids with mask_type='unilm'"),
    Bad(f"{T}.attention_mask", "a cache with a bidirectional model",
        lambda: _model().attention_mask(_ids(), None, None, KVCache(1)), ValueError,
        r"expected mask_type 'lm' or 'unilm' with a key/value cache"),
    Bad(f"{T}.fast_inference", "unknown kernel", lambda: _enter(_model().fast_inference("cuda")),
        ValueError, r"^expected kernel to be one of \['auto', 'torch', 'onednn'\], got 'cuda'$"),
    Bad(f"{T}.fast_inference", "kernel None", lambda: _enter(_model().fast_inference(None)),
        ValueError, r"^expected kernel to be one of \[.*\], got None$"),
    Bad(f"{T}.fast_inference", "onednn on float64 weights",
        lambda: _enter(_model().double().fast_inference("onednn")), ValueError,
        r"expected fp32 CPU weights for kernel='onednn', got torch\.float64 on cpu"),
    Bad(f"{T}.attach_ramp", "a model without a ramp",
        lambda: _model().attach_ramp(torch.optim.SGD(_model().parameters(), lr=0.1)), ValueError,
        r"^expected a model with residual_gate='ramp' for attach_ramp, got residual_gate='none'$"),
    Bad(f"{T}.attach_ramp", "a list of parameters for the optimizer", _ramp_target, TypeError,
        r"^expected optimizer to be a torch\.optim\.Optimizer, got list$"),
    Bad(f"{T}.attach_ramp", "no optimizer", lambda: _model().attach_ramp(None), TypeError,
        r"^expected optimizer to be a torch\.optim\.Optimizer, got NoneType$"),
    Bad(f"{T}.gradient_checkpointing_enable", "unknown policy",
        lambda: _model().gradient_checkpointing_enable("all"), ValueError,
        r"^expected policy to be one of \['tail_once', 'block'\], got 'all'$"),
    Bad(f"{T}.gradient_checkpointing_enable", "policy None",
        lambda: _model().gradient_checkpointing_enable(None), ValueError,
        r"^expected policy to be one of \['tail_once', 'block'\], got None$"),
    Bad(f"{T}.gradient_checkpointing_enable", "blocks already wrapped by enable_recompute",
        lambda: _wrapped_blocks().gradient_checkpointing_enable(), ValueError,
        r"^expected blocks without a recompute\(\) wrapper, got blocks \[0\] wrapped by enable_recompute\(\)"),
    # -- the config ---------------------------------------------------------------------------------------------------
    Bad(C, "num_layers 0", lambda: TransformerConfig(num_layers=0), ValueError, r"^expected num_layers >= 1, got 0$"),
    Bad(C, "num_heads a float", lambda: TransformerConfig(hidden_size=8, num_heads=2.0), TypeError,
        r"^expected num_heads to be an integer, got 2\.0 \(float\)$"),
    Bad(C, "hidden_size not divisible by num_heads", lambda: TransformerConfig(hidden_size=384, num_heads=5),
        ValueError, r"expected hidden_size divisible by num_heads \(384 % 5 = 4\)"),
    Bad(C, "unknown norm", lambda: TransformerConfig(norm="sandwich"), ValueError,
        r"^expected norm to be one of \['post', 'pre', 'none'\], got 'sandwich'$"),
    Bad(C, "unknown attention", lambda: TransformerConfig(attention="flash"), ValueError,
        r"^expected attention to be one of \['softmax', .*\], got 'flash'$"),
    Bad(C, "hidden_dropout 1", lambda: TransformerConfig(hidden_dropout=1.0), ValueError,
        r"^expected hidden_dropout < 1\.0, got 1\.0$"),
    Bad(C, "pad_token_id past the vocabulary", lambda: TransformerConfig(vocab_size=30, pad_token_id=99), ValueError,
        r"^expected pad_token_id < vocab_size \(30\), got 99$"),
    Bad(C, "ramp without a step count", lambda: TransformerConfig(residual_gate="ramp"), ValueError,
        r"^expected residual_gate_ramp_steps, a positive integer, with residual_gate='ramp' .*got None$"),
    Bad(C, "unilm with one segment", lambda: TransformerConfig(mask_type="unilm", type_vocab_size=1), ValueError,
        r"expected type_vocab_size >= 2 with mask_type='unilm' .*got type_vocab_size=1$"),
    Bad(C, "qk_init with the attention scale", lambda: TransformerConfig(qk_init="t5_hf"), ValueError,
        r"^expected attention_scale=False with qk_init='t5_hf' .*got attention_scale=True$"),
    Bad(C, "the run-time switch as a field", lambda: TransformerConfig(gradient_checkpointing=True), TypeError,
        r"^expected no gradient_checkpointing in a TransformerConfig, got gradient_checkpointing=True"),
    Bad(C, "a misspelt field", lambda: TransformerConfig(hiden_size=8), TypeError,
        r"unexpected keyword argument 'hiden_size'"),
    Bad(f"{C}.from_hf", "no config.json", lambda: TransformerConfig.from_hf("nope"), FileNotFoundError,
        r"^expected a config\.json at nope, found none$"),
    Bad(f"{C}.from_hf", "malformed config.json", lambda: TransformerConfig.from_hf(_ckpt(_write("config.json", "{x"))),
        CheckpointError, r"^expected JSON in ckpt/config\.json, got Expecting property name .* at line 1 column 2$"),
    Bad(f"{C}.from_hf", "model_type gpt2", lambda: TransformerConfig.from_hf({**HF, "model_type": "gpt2"}),
        ValueError, r"^expected model_type to be one of \['bert', 'roberta', 'xlm-roberta', 'camembert'\] .*got "
                    r"'gpt2'"),
    Bad(f"{C}.from_hf", "relative positions",
        lambda: TransformerConfig.from_hf({**HF, "position_embedding_type": "relative_key"}), ValueError,
        r"^expected position_embedding_type='absolute' .*got position_embedding_type='relative_key'$"),
    Bad(f"{C}.from_hf", "a decoder", lambda: TransformerConfig.from_hf({**HF, "is_decoder": True}), ValueError,
        r"^expected an encoder .*got is_decoder=True"),
    Bad(f"{C}.from_hf", "no vocab_size",
        lambda: TransformerConfig.from_hf({k: v for k, v in HF.items() if k != "vocab_size"}),
        ValueError, r"^expected vocab_size in the Hugging Face config \(the given dict\), got a config without it$"),
    Bad(f"{C}.from_hf", "a number for the path", lambda: TransformerConfig.from_hf(5), TypeError,
        r"^expected path_or_dict to be a folder, a config\.json path or a dict, got int$"),
    Bad(f"{C}.from_hf", "unknown hidden_act", lambda: TransformerConfig.from_hf({**HF, "hidden_act": "gelu_magic"}),
        ValueError, r"^expected hidden_act to be one of \[.*\], got 'gelu_magic'$"),
    Bad(f"{C}.replace", "a misspelt field", lambda: TransformerConfig().replace(num_head=4), TypeError,
        r"unexpected keyword argument 'num_head'"),
    Bad(f"{C}.replace", "num_heads 0", lambda: TransformerConfig().replace(num_heads=0), ValueError,
        r"^expected num_heads >= 1, got 0$"),
    Bad(f"{C}.replace", "the run-time switch", lambda: TransformerConfig().replace(recompute_policy="block"),
        TypeError, r"^expected no recompute_policy in a TransformerConfig, got recompute_policy='block'"),
    Bad(f"{C}.replace", "linear attention with a unilm mask",
        lambda: TransformerConfig(mask_type="unilm").replace(attention="linear"), ValueError,
        r"^expected mask_type 'bidirectional' or 'lm' with attention='linear' .*got mask_type='unilm'$"),
    # -- checkpoints --------------------------------------------------------------------------------------------------
    Bad("kexue.models.load_pretrained", "no such folder", lambda: load_pretrained("nope"), FileNotFoundError,
        r"^expected a model folder, got nope$"),
    Bad("kexue.models.load_pretrained", "the config file for the folder",
        lambda: load_pretrained(_ckpt() / "config.json"), FileNotFoundError,
        r"^expected a model folder, got ckpt/config\.json$"),
    Bad("kexue.models.load_pretrained", "path None", lambda: load_pretrained(None), TypeError,
        r"^expected path to be a model folder \(a str or Path\), got None \(NoneType\)$"),
    Bad("kexue.models.load_pretrained", "malformed config.json",
        lambda: load_pretrained(_ckpt(_write("config.json", '{"model_type": "bert",\n "vocab_size": ,}'))),
        CheckpointError, r"^expected JSON in ckpt/config\.json, got Expecting value at line 2 column 16$"),
    Bad("kexue.models.load_pretrained", "config.json a list", lambda: load_pretrained(_ckpt(_write("config.json",
                                                                                                     "[1]"))),
        CheckpointError, r"^expected a JSON object in ckpt/config\.json, got a list$"),
    Bad("kexue.models.load_pretrained", "config.json not UTF-8",
        lambda: load_pretrained(_ckpt(_write("config.json", b'{"model_type": "\xff"}'))), CheckpointError,
        r"^expected UTF-8 JSON in ckpt/config\.json, got .*byte 0xff"),
    Bad("kexue.models.load_pretrained", "truncated model.safetensors", lambda: load_pretrained(_ckpt(_truncate)),
        CheckpointError, r"^expected a readable safetensors file at ckpt/model\.safetensors, got SafetensorError"),
    Bad("kexue.models.load_pretrained", "garbage pytorch_model.bin",
        lambda: load_pretrained(_ckpt(lambda f: ((f / "model.safetensors").unlink(),
                                                 (f / "pytorch_model.bin").write_bytes(b"not a checkpoint")))),
        CheckpointError, r"^expected a readable PyTorch checkpoint at ckpt/pytorch_model\.bin, got UnpicklingError"),
    Bad("kexue.models.load_pretrained", "no weights file",
        lambda: load_pretrained(_ckpt(lambda f: (f / "model.safetensors").unlink())), FileNotFoundError,
        r"^expected model\.safetensors or pytorch_model\.bin in ckpt, found neither$"),
    Bad("kexue.models.load_pretrained", "a missing tensor",
        lambda: load_pretrained(_ckpt(_edit_weights(lambda s: s.pop("pooler.dense.bias")))), CheckpointError,
        r"^expected the tensors of a bert model in ckpt, got missing tensors \(1\): pooler\.dense\.bias$"),
    Bad("kexue.models.load_pretrained", "a mis-shaped tensor",
        lambda: load_pretrained(_ckpt(_edit_weights(lambda s: s.__setitem__("pooler.dense.bias", torch.zeros(7))))),
        CheckpointError, r"mis-shaped tensors \(1\): pooler\.dense\.bias \(7,\) \(expected \(8,\)\)$"),
    Bad("kexue.models.load_pretrained", "an int64 tensor for a float parameter",
        lambda: load_pretrained(_ckpt(_edit_weights(
            lambda s: s.__setitem__("pooler.dense.bias", torch.ones(8, dtype=torch.int64))))),
        CheckpointError, r"mistyped tensors \(1\): pooler\.dense\.bias int64 \(expected a floating dtype for "
                         r"float32\)$"),
    Bad("kexue.models.load_pretrained", "NaN weights",
        lambda: load_pretrained(_ckpt(_edit_weights(
            lambda s: s.__setitem__("pooler.dense.bias", torch.full((8,), float("nan")))))),
        CheckpointError, r"^expected finite weights in ckpt/model\.safetensors, got non-finite values in "
                         r"pooler\.dense\.bias \(8 of 8\); pass allow_non_finite=True"),
    Bad("kexue.models.load_pretrained", "model_type gpt2",
        lambda: load_pretrained(_ckpt(_write("config.json", json.dumps({**HF, "model_type": "gpt2"})))), ValueError,
        r"^expected model_type to be one of \['bert', .*got 'gpt2'"),
    Bad("kexue.models.load_pretrained", "a misspelt config override",
        lambda: load_pretrained(_ckpt(), hiden_dropout=0.0), TypeError, r"unexpected keyword argument 'hiden_dropout'"),
    Bad("kexue.models.load_pretrained_with_report", "no such folder", lambda: load_pretrained_with_report("nope"),
        FileNotFoundError, r"^expected a model folder, got nope$"),
    Bad("kexue.models.load_pretrained_with_report", "path a number",
        lambda: load_pretrained_with_report(3), TypeError,
        r"^expected path to be a model folder \(a str or Path\), got 3 \(int\)$"),
    Bad("kexue.models.load_pretrained_with_report", "malformed config.json",
        lambda: load_pretrained_with_report(_ckpt(_write("config.json", "{"))), CheckpointError,
        r"^expected JSON in ckpt/config\.json, got "),
    Bad("kexue.models.load_pretrained_with_report", "config.json without num_hidden_layers",
        lambda: load_pretrained_with_report(_ckpt(_config_without("num_hidden_layers"))), ValueError,
        r"^expected num_hidden_layers in the Hugging Face config \(ckpt/config\.json\), got a config without it$"),
    Bad("kexue.models.load_pretrained_with_report", "truncated model.safetensors",
        lambda: load_pretrained_with_report(_ckpt(_truncate)), CheckpointError,
        r"^expected a readable safetensors file at ckpt/model\.safetensors"),
    Bad("kexue.models.load_pretrained_with_report", "infinite weights",
        lambda: load_pretrained_with_report(_ckpt(_edit_weights(
            lambda s: s["embeddings.LayerNorm.weight"].__setitem__(0, float("inf"))))),
        CheckpointError, r"non-finite values in embeddings\.LayerNorm\.weight \(1 of 8\)"),
    Bad("kexue.models.save_pretrained", "the target is a file",
        lambda: save_pretrained(_model(), (Path("f").write_text("x"), Path("f"))[1]), NotADirectoryError,
        r"^expected a folder to save the checkpoint in, got f, which is a file$"),
    Bad("kexue.models.save_pretrained", "the target is under a file",
        lambda: save_pretrained(_model(), (Path("f").write_text("x"), Path("f/sub"))[1]), NotADirectoryError,
        r"expected a folder that can be made at f/sub, got Not a directory$"),
    Bad("kexue.models.save_pretrained", "an unwritable folder", lambda: save_pretrained(_model(), _unwritable()),
        PermissionError, r"^expected a writable folder to save the checkpoint in, got .*, which is not$"),
    Bad("kexue.models.save_pretrained", "not a kexue Transformer",
        lambda: save_pretrained(nn.Linear(2, 2), "out"), TypeError,
        r"^expected model to be a kexue Transformer, got Linear$"),
    Bad("kexue.models.save_pretrained", "a pre-norm model", lambda: save_pretrained(_model(norm="pre"), "out"),
        ValueError, r"^expected a post-norm bidirectional encoder .*got norm='pre'"),
    # -- the tokenizer ------------------------------------------------------------------------------------------------
    Bad(TOK, "a folder name for the tokenizer", lambda: Tokenizer("bert-base-uncased"), TypeError,
        r"^expected tokenizer to be a tokenizers\.Tokenizer \(Tokenizer\.from_pretrained\(folder\) loads one from a "
        r"folder\), got str$"),
    Bad(TOK, "pad_token outside the vocabulary", lambda: Tokenizer(_tok()._tok, pad_token="<pad>"), ValueError,
        r"^expected pad_token in the vocabulary, got '<pad>', which is not$"),
    Bad(TOK, "max_length 0", lambda: Tokenizer(_tok()._tok, max_length=0), ValueError,
        r"^expected max_length >= 1, got 0$"),
    Bad(f"{TOK}.from_pretrained", "no such folder", lambda: Tokenizer.from_pretrained("nope"), FileNotFoundError,
        r"^expected a tokenizer folder, got nope$"),
    Bad(f"{TOK}.from_pretrained", "a folder without tokenizer files",
        lambda: Tokenizer.from_pretrained(_tok_folder(readme__md="x")), FileNotFoundError,
        r"^expected tokenizer\.json or vocab\.txt in tok, found neither$"),
    Bad(f"{TOK}.from_pretrained", "garbage tokenizer.json",
        lambda: Tokenizer.from_pretrained(_tok_folder(tokenizer__json="{x")), CheckpointError,
        r"^expected a readable tokenizer\.json at tok/tokenizer\.json, got "),
    Bad(f"{TOK}.from_pretrained", "malformed tokenizer_config.json",
        lambda: Tokenizer.from_pretrained(_tok_folder(vocab__txt="[PAD]\na\n", tokenizer_config__json="{x")),
        CheckpointError, r"^expected JSON in tok/tokenizer_config\.json, got .* at line 1 column 2$"),
    Bad(f"{TOK}.from_pretrained", "path None", lambda: Tokenizer.from_pretrained(None), TypeError,
        r"^expected path to be a tokenizer folder \(a str or Path\), got None \(NoneType\)$"),
    Bad(f"{TOK}.from_pretrained", "max_seq_length 0 in sentence_bert_config.json",
        lambda: Tokenizer.from_pretrained(_tok_folder(vocab__txt="[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\na\n",
                                                      sentence_bert_config__json='{"max_seq_length": 0}')),
        CheckpointError, r"^expected max_seq_length in tok/sentence_bert_config\.json to be a positive integer, got "
                         r"0$"),
    Bad(f"{TOK}.__call__", "a single str", lambda: _tok()("one text"), TypeError,
        r"^expected texts to be a sequence of str, got a single str; wrap it in a list$"),
    Bad(f"{TOK}.__call__", "None among the texts", lambda: _tok()(["a", None]), TypeError,
        r"^expected texts to be a sequence of str, got None at index 1$"),
    Bad(f"{TOK}.__call__", "fewer pairs than texts", lambda: _tok()(["a", "b"], ["c"]), ValueError,
        r"^expected as many pairs as texts \(2\), got 1 pairs$"),
    Bad(f"{TOK}.__call__", "None among the pairs", lambda: _tok()(["a"], [None]), TypeError,
        r"^expected pairs to be a sequence of str, got None at index 0$"),
    Bad(f"{TOK}.__call__", "max_length 0", lambda: _tok()(["hello world"], max_length=0), ValueError,
        r"^expected max_length >= 1, got 0$"),
    Bad(f"{TOK}.__call__", "max_length negative", lambda: _tok()(["hello"], max_length=-1), ValueError,
        r"^expected max_length >= 1, got -1$"),
    Bad(f"{TOK}.encode_raw", "a single bytes", lambda: _tok().encode_raw(b"text"), TypeError,
        r"^expected texts to be a sequence of str, got a single bytes; wrap it in a list$"),
    Bad(f"{TOK}.encode_raw", "a number among the texts", lambda: _tok().encode_raw(["a", "b", 3]),
        TypeError, r"^expected texts to be a sequence of str, got int at index 2$"),
    Bad(f"{TOK}.encode_raw", "pairs a single str", lambda: _tok().encode_raw(["a"], "b"), TypeError,
        r"^expected pairs to be a sequence of str, got a single str; wrap it in a list$"),
    Bad(f"{TOK}.encode_raw", "too long without truncation",
        lambda: _tok().encode_raw(["short", "a b c d e f g"], max_length=5, truncation=False), ValueError,
        r"^expected at most max_length=5 tokens per text, got 9 in text 1 \(pass truncation=True to cut it\)$"),
    Bad(f"{TOK}.encode_raw", "max_length a float", lambda: _tok().encode_raw(["a"], max_length=8.5),
        TypeError, r"^expected max_length to be an integer, got 8\.5 \(float\)$"),
    Bad(f"{TOK}.collate", "lists of ids", lambda: _tok().collate([[101, 102]]), TypeError,
        r"^expected encodings to be a sequence of tokenizers\.Encoding \(Tokenizer\.encode_raw gives them\), got "
        r"list at index 0$"),
    Bad(f"{TOK}.collate", "the dict __call__ returns", lambda: _tok().collate(_tok()(["a"])), TypeError,
        r"^expected encodings to be a sequence of tokenizers\.Encoding .*got dict$"),
    Bad(f"{TOK}.collate", "one Encoding", lambda: _tok().collate(_tok().encode_raw(["a"])[0]), TypeError,
        r"^expected encodings to be a sequence of tokenizers\.Encoding .*got Encoding$"),
    Bad(f"{TOK}.decode", "a 2-D tensor", lambda: _tok().decode(torch.ones(2, 3, dtype=torch.long)), TypeError,
        r"^expected ids to be a 1-D integer tensor or a sequence of ints, got shape \(2, 3\) of torch\.int64$"),
    Bad(f"{TOK}.decode", "a negative id", lambda: _tok().decode([101, -1]), ValueError,
        r"^expected ids in \[0, vocab_size=30522\), got -1 at index 1$"),
    Bad(f"{TOK}.decode", "an id past the vocabulary", lambda: _tok().decode([101, 30522]), ValueError,
        r"^expected ids in \[0, vocab_size=30522\), got 30522 at index 1$"),
    Bad(f"{TOK}.decode", "a float id", lambda: _tok().decode([1.5]), TypeError,
        r"^expected ids to be a sequence of ints, got 1\.5 \(float\) at index 0$"),
    Bad(f"{TOK}.decode", "a str", lambda: _tok().decode("hello"), TypeError,
        r"^expected ids to be a sequence of ints, got str$"),
    Bad(f"{TOK}.decode_batch", "a 1-D tensor", lambda: _tok().decode_batch(torch.ones(3, dtype=torch.long)),
        ValueError, r"^expected ids of shape \(batch, seq\), got \(3,\)$"),
    Bad(f"{TOK}.decode_batch", "a negative id in row 1", lambda: _tok().decode_batch([[101], [7, -1]]), ValueError,
        r"^expected ids\[1\] in \[0, vocab_size=30522\), got -1 at index 1$"),
    Bad(f"{TOK}.decode_batch", "a row that is a number", lambda: _tok().decode_batch([[101], 5]),
        TypeError, r"^expected ids\[1\] to be a sequence of ints, got int$"),
    Bad(f"{TOK}.token_to_id", "a number", lambda: _tok().token_to_id(5), TypeError,
        r"^expected token to be a str, got 5 \(int\)$"),
    Bad(f"{TOK}.token_to_id", "None", lambda: _tok().token_to_id(None), TypeError,
        r"^expected token to be a str, got None \(NoneType\)$"),
    Bad(f"{TOK}.tokenize", "None", lambda: _tok().tokenize(None), TypeError,
        r"^expected text to be a str, got NoneType$"),
    Bad(f"{TOK}.tokenize", "a list of texts", lambda: _tok().tokenize(["a", "b"]), TypeError,
        r"^expected text to be a str, got list$"),
    Bad("kexue.models.pad_encodings", "pad_id negative", lambda: pad_encodings(_tok().encode_raw(["a", "b c"]), -1),
        ValueError, r"^expected pad_id >= 0, got -1$"),
    Bad("kexue.models.pad_encodings", "pad_id a str", lambda: pad_encodings(_tok().encode_raw(["a"]), "[PAD]"),
        TypeError, r"^expected pad_id to be an integer, got '\[PAD\]' \(str\)$"),
    Bad("kexue.models.pad_encodings", "lists of ids", lambda: pad_encodings([[1, 2], [3]], 0),
        TypeError, r"^expected encodings to be a sequence of tokenizers\.Encoding .*got list at index 0$"),
    # -- decoding -----------------------------------------------------------------------------------------------------
    Bad("kexue.models.KVCache", "num_layers 0", lambda: KVCache(0), ValueError, r"^expected num_layers >= 1, got 0$"),
    Bad("kexue.models.KVCache", "num_layers negative", lambda: KVCache(-1), ValueError,
        r"^expected num_layers >= 1, got -1$"),
    Bad("kexue.models.KVCache", "num_layers a str", lambda: KVCache("2"), TypeError,
        r"^expected num_layers to be an integer, got '2' \(str\)$"),
    Bad("kexue.models.KVCache.reorder", "a row past the batch", lambda: _filled_cache().reorder(torch.tensor([0, 5])),
        ValueError, r"^expected index in \[0, 2\) \(the cached rows\), got 5$"),
    Bad("kexue.models.KVCache.reorder", "a float index", lambda: _filled_cache().reorder(torch.tensor([0.0])),
        TypeError, r"^expected index to be a 1-D integer Tensor, got shape \(1,\) of torch\.float32$"),
    Bad("kexue.models.KVCache.reorder", "a list", lambda: _filled_cache().reorder([0, 1]),
        TypeError, r"^expected index to be a 1-D integer Tensor, got list$"),
    Bad("kexue.models.KVCache.reorder", "a 2-D index", lambda: _filled_cache().reorder(torch.zeros(2, 1).long()),
        TypeError, r"^expected index to be a 1-D integer Tensor, got shape \(2, 1\) of torch\.int64$"),
    Bad("kexue.models.UniLMStep", "a bidirectional model", lambda: UniLMStep(_model(), _ids()), ValueError,
        r"^expected a kexue Transformer with mask_type='unilm', got mask_type='bidirectional'$"),
    Bad("kexue.models.UniLMStep", "no MLM head",
        lambda: UniLMStep(_model(mask_type="unilm"), _ids()), ValueError,
        r"^expected a model with an MLM head \(with_mlm=True"),
    Bad("kexue.models.UniLMStep", "source_ids 1-D", lambda: UniLMStep(_unilm(), _ids(5)), ValueError,
        r"^expected source_ids of shape \(batch, seq\), got \(5,\)$"),
    Bad("kexue.models.UniLMStep", "source_mask of another shape", lambda: UniLMStep(_unilm(), _ids(), _ids(2, 4)),
        ValueError, r"^expected source_mask of source_ids' shape \(2, 5\), got \(2, 4\)$"),
    Bad("kexue.models.UniLMStep", "left-padded sources",
        lambda: UniLMStep(_unilm(), _ids(1, 3), torch.tensor([[0, 1, 1]])), ValueError,
        r"^expected right-padded sources with at least one real token each"),
    Bad("kexue.models.UniLMStep", "target_start negative", lambda: UniLMStep(_unilm(), _ids(), target_start=-1),
        ValueError, r"^expected target_start >= 0, got -1$"),
    Bad("kexue.models.UniLMStep.__call__", "tokens before the first call",
        lambda: _unilm_step()(torch.tensor([3, 3]), torch.arange(2)), ValueError,
        r"^expected a first call with tokens=None \(it runs the sources\), got tokens first$"),
    Bad("kexue.models.UniLMStep.__call__", "a parent past the rows",
        lambda: _after_first(_unilm_step())(torch.tensor([3, 3]), torch.tensor([0, 2])), ValueError,
        r"^expected parents in \[0, 2\) \(the cached rows\), got 2$"),
    Bad("kexue.models.UniLMStep.__call__", "fewer tokens than parents",
        lambda: _after_first(_unilm_step())(torch.tensor([3]), torch.arange(2)), ValueError,
        r"^expected tokens of parents' shape \(2,\), one token per row, got \(1,\)$"),
    Bad("kexue.models.UniLMStep.__call__", "float parents", lambda: _unilm_step()(None, torch.zeros(2)), TypeError,
        r"^expected parents to be a 1-D integer Tensor, got shape \(2,\) of torch\.float32$"),
    Bad("kexue.models.beam_search", "beam_size 0", lambda: beam_search(_step(1), 1, 0, 0, 3), ValueError,
        r"^expected beam_size >= 1, got 0$"),
    Bad("kexue.models.beam_search", "max_len 0", lambda: beam_search(_step(1), 1, 0, 2, 0), ValueError,
        r"^expected max_len >= 1, got 0$"),
    Bad("kexue.models.beam_search", "batch_size 0", lambda: beam_search(_step(1), 0, 0, 2, 3), ValueError,
        r"^expected batch_size >= 1, got 0$"),
    Bad("kexue.models.beam_search", "length_penalty nan",
        lambda: beam_search(_step(1), 1, 0, 2, 3, length_penalty=float("nan")), ValueError,
        r"^expected length_penalty to be finite, got nan$"),
    Bad("kexue.models.beam_search", "step not callable", lambda: beam_search(5, 1, 0, 2, 3),
        TypeError, r"^expected step to be a callable step\(tokens, parents\) -> log_probs, got int$"),
    Bad("kexue.models.beam_search", "step returns rows for another batch", lambda: beam_search(_step(3), 2, 0, 2, 3),
        ValueError, r"^expected step to return log-probabilities of shape \(2, vocab\), one row per parent, got "
                    r"\(3, 4\)$"),
    Bad("kexue.models.beam_search", "eos_id past the vocabulary", lambda: beam_search(_step(1), 1, 4, 2, 3),
        ValueError, r"^expected eos_id < 4, the vocabulary of step's log-probabilities, got 4$"),
    Bad("kexue.models.greedy_search", "max_len 0", lambda: greedy_search(_step(1), 1, 0, 0), ValueError,
        r"^expected max_len >= 1, got 0$"),
    Bad("kexue.models.greedy_search", "eos_id negative", lambda: greedy_search(_step(1), 1, -1, 3), ValueError,
        r"^expected eos_id >= 0, got -1$"),
    Bad("kexue.models.greedy_search", "eos_id a str", lambda: greedy_search(_step(1), 1, "2", 3),
        TypeError, r"^expected eos_id to be an integer, got '2' \(str\)$"),
    Bad("kexue.models.greedy_search", "step not callable", lambda: greedy_search(None, 1, 0, 3),
        TypeError, r"^expected step to be a callable .*got NoneType$"),
    Bad("kexue.models.greedy_search", "step returns a 1-D tensor",
        lambda: greedy_search(lambda t, p: torch.zeros(4), 1, 0, 3), ValueError,
        r"^expected step to return log-probabilities of shape \(1, vocab\), one row per parent, got \(4,\)$"),
    Bad("kexue.models.greedy_search", "eos_id past the vocabulary", lambda: greedy_search(_step(2), 2, 9, 3),
        ValueError, r"^expected eos_id < 4, the vocabulary of step's log-probabilities, got 9$"),
    Bad("kexue.models.generate", "a model in training mode", lambda: generate(_training_unilm(), _ids(), None, 2),
        ValueError, r"^expected the model in eval mode \(call model\.eval\(\)"),
    Bad("kexue.models.generate", "beam_size 0", lambda: generate(_unilm(), _ids(), None, 2, beam_size=0), ValueError,
        r"^expected beam_size >= 1, got 0$"),
    Bad("kexue.models.generate", "max_len 0", lambda: generate(_unilm(), _ids(), None, 2, max_len=0), ValueError,
        r"^expected max_len >= 1, got 0$"),
    Bad("kexue.models.generate", "eos_id past the vocabulary", lambda: generate(_unilm(), _ids(), None, 20),
        ValueError, r"^expected eos_id < 20, the vocabulary of step's log-probabilities, got 20$"),
    Bad("kexue.models.generate", "a bidirectional model", lambda: generate(_model(), _ids(), None, 2), ValueError,
        r"^expected a kexue Transformer with mask_type='unilm', got mask_type='bidirectional'$"),
    Bad("kexue.models.generate", "a source id past the vocabulary", lambda: generate(_unilm(), _ids() * 30, None, 2),
        ValueError, r"^expected input_ids in \[0, vocab_size=20\), got 30$"),
    # -- recompute ----------------------------------------------------------------------------------------------------
    Bad("kexue.models.enable_recompute", "every 0", lambda: enable_recompute(_model(), every=0), ValueError,
        r"^expected every >= 1, got 0$"),
    Bad("kexue.models.enable_recompute", "unknown policy",
        lambda: enable_recompute(_model(), policy="all"), ValueError,
        r"^expected policy to be one of \['tail_once', 'block'\], got 'all'$"),
    Bad("kexue.models.enable_recompute", "tail_once on another model",
        lambda: enable_recompute(nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2)]), policy="tail_once"), ValueError,
        r"^expected policy 'block' or None for this model, got 'tail_once'"),
    Bad("kexue.models.enable_recompute", "blocks with BatchNorm statistics",
        lambda: enable_recompute(_Stack(nn.BatchNorm1d(2), nn.BatchNorm1d(2))), ValueError,
        r"^expected BatchNorm1d without BatchNorm running statistics \(recompute would update them twice"),
    Bad("kexue.models.enable_recompute", "a number for the model", lambda: enable_recompute(5),
        TypeError, r"^expected model to be an nn\.Module or a sequence of nn\.Modules, got int$"),
    Bad("kexue.models.enable_recompute", "a model without a stack of blocks",
        lambda: enable_recompute(nn.Linear(2, 2)), ValueError,
        r"^expected a stack of blocks in Linear \(a ModuleList of ≥ 2 modules of one class\), found none"),
    Bad("kexue.models.disable_recompute", "a number for the model", lambda: disable_recompute(5),
        TypeError, r"^expected model to be an nn\.Module or a sequence of nn\.Modules, got int$"),
    Bad("kexue.models.disable_recompute", "a list holding a str",
        lambda: disable_recompute([nn.Linear(2, 2), "block"]), TypeError,
        r"^expected model to be an nn\.Module or a sequence of nn\.Modules, got str at index 1$"),
    Bad("kexue.models.is_recomputed", "a number", lambda: is_recomputed(5), TypeError,
        r"^expected module to be an nn\.Module, got int$"),
    Bad("kexue.models.is_recomputed", "None", lambda: is_recomputed(None), TypeError,
        r"^expected module to be an nn\.Module, got NoneType$"),
    Bad("kexue.models.is_recomputed", "a list of blocks", lambda: is_recomputed([nn.Linear(2, 2)]), TypeError,
        r"^expected module to be an nn\.Module, got list$"),
    Bad("kexue.models.disable_recompute", "a model name", lambda: disable_recompute("bert"), TypeError,
        r"^expected model to be an nn\.Module or a sequence of nn\.Modules, got str$"),
    Bad("kexue.models.find_blocks", "a number", lambda: find_blocks(3), TypeError,
        r"^expected model to be an nn\.Module or a sequence of nn\.Modules, got int$"),
    Bad("kexue.models.find_blocks", "no stack of blocks", lambda: find_blocks(nn.Sequential(nn.Linear(2, 2))),
        ValueError, r"^expected a stack of blocks in Sequential .*found none"),
    Bad("kexue.models.find_blocks", "block_types absent", lambda: find_blocks(_model(), [nn.Conv1d]), ValueError,
        r"^expected a module of type Conv1d in Transformer, found none$"),
]


@pytest.fixture(autouse=True)
def _scratch(tmp_path, monkeypatch):
    """Each row runs in its own empty folder (the checkpoints and tokenizer folders rows make go there)."""
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_refuses(row):
    check(row)
