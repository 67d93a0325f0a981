"""UniVAE: a single-model, multi-scale VAE on one Transformer, with UniLM-style masks and a latent on each top layer.

Post: Su Jianlin, "UniVAE：基于Transformer的单模型、多尺度的VAE模型" (UniVAE: a single-model, multi-scale VAE built on
the Transformer), 2021-06-29, https://kexue.fm/archives/8475, and the author's code (bojone/univae, univae.py). The
latent is a von Mises–Fisher sample (post 8404, :class:`VonMisesFisherSampler`).

- Input: the text twice, [encoder segment | decoder segment], segment ids 0…0 1…1, each half padded to the fixed
  ``maxlen`` (else the decoder's start position would leak the length); positions run 0 … 2·maxlen − 1 (after the
  padding index for RoBERTa-style positions).
- Masks (:mod:`kexue.nn.masks`, s the segment ids, c = cumsum(s)): the bottom L − k layers use the independent mask
  (i sees j iff s_i = s_j and c_j ≤ c_i: encoder bidirectional, decoder causal, nothing across); the top k =
  ``num_latent_layers`` layers the UniAE mask (the same plus column 0, the encoder's [CLS]), each and'ed with the
  padding mask.
- At the input of each of the top k layers: h = x[:, 0]; z_μ = L2-normalise(Dense_{z_dim}(h)); z ~ vMF(z_μ, κ) (or
  z = μ + σ⊙ε with a Gaussian posterior); x[:, 0] ← Dense_hidden(z). Every layer has its own two Dense layers,
  initialised as the Transformer's (``config.init``, std ``initializer_range``; the author's code: truncated
  normal, std 0.02), biases 0.
  Since position 0 is replaced at the input of every layer in which the decoder can see it, the decoder reads the
  encoder only through the k latents: no other encoder information leaks (tested bit for bit).
- Loss: token cross-entropy on the decoder segment, shifted by one (decoder position t predicts token t + 1;
  padding targets ignored). With a vMF posterior of fixed κ and a uniform prior on the sphere the KL term is a
  constant, so there is none (the author's code); a Gaussian posterior adds KL(N(μ, σ²) ‖ N(0, I)).
- Prior: a Gaussian of k·z_dim dims with each z_dim block L2-normalised (uniform on each sphere) for vMF, N(0, I)
  for Gaussian; decoding from z alone by greedy or beam search (:mod:`kexue.models.decoding`).
- The post's settings: L = 12, k = 4, z_dim = 16, κ = 32, maxlen = 32.
"""

from __future__ import annotations

from typing import Literal, NamedTuple, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validate import check_bool, check_choice, check_float, check_generator, check_int
from ..models._inputs import check_inputs
from ..models.cache import KVCache
from ..models.config import TransformerConfig
from ..models.decoding import beam_search, greedy_search
from ..models.transformer import Transformer
from ..nn.init import init_weight_
from ..nn.masks import independent_mask, padding_mask, uniae_mask
from ._vmf import MAX_KAPPA, VonMisesFisherSampler, _check_kappa, _sample_vmf, vmf_mean_cosine

Posterior = Literal["vmf", "gaussian"]
POSTERIORS: tuple[Posterior, ...] = get_args(Posterior)


class UniVAEOutput(NamedTuple):
    """:meth:`UniVAE.forward`'s result: ``logits`` of the decoder segment (batch, maxlen, vocab); ``z_mu``, the
    encoder's posterior means concatenated over the latent layers, lowest first (batch, k·z_dim: the top layer's are
    the last z_dim columns; unit blocks for vMF); ``z``, the
    latents injected (the same shape); ``kl`` per row (batch,), KL(q(z|x) ‖ prior), zeros for vMF (a constant)."""

    logits: Tensor
    z_mu: Tensor
    z: Tensor
    kl: Tensor


class UniVAELoss(NamedTuple):
    """:meth:`UniVAE.loss`: ``loss`` = ``ce`` + Σ KL / number of target tokens (the negative ELBO per token);
    ``ce``, the mean token cross-entropy; ``kl``, the mean KL per row (0 for vMF); ``accuracy``, the argmax token
    accuracy (detached)."""

    loss: Tensor
    ce: Tensor
    kl: Tensor
    accuracy: Tensor


class UniVAE(nn.Module):
    """UniVAE (kexue.fm/archives/8475) on a kexue :class:`~kexue.models.Transformer` built from ``config`` (with an
    MLM head tied to the word embeddings as the LM head, unless ``config.tie_word_embeddings`` is False; no pooler or
    NSP head): the bottom ``config.num_layers − num_latent_layers`` blocks use :func:`~kexue.nn.independent_mask`,
    the top ``num_latent_layers`` :func:`~kexue.nn.uniae_mask` and carry a latent of ``z_dim`` dims each, with a
    ``posterior`` "vmf" (concentration ``kappa``, no KL) or "gaussian" (KL to N(0, I)). Texts are ``input_ids``
    (batch, ``maxlen``) with [CLS] first and right padding, ``attention_mask`` 1/0 (None: no padding).

    Sampling: :meth:`forward` and :meth:`loss` draw z in training mode and take z = z_μ in eval mode (``sample``
    overrides); :meth:`encode` returns z_μ, injecting z_μ at each latent layer as the author's encoder does.
    :meth:`from_transformer` starts from a loaded (e.g. pretrained) Transformer's weights. ``sampler`` is the
    :class:`VonMisesFisherSampler` of a vMF model (its ``mean_cosine`` = A_{z_dim}(κ)), None for a Gaussian one.
    """

    def __init__(self, config: TransformerConfig, num_latent_layers: int = 4, z_dim: int = 16, kappa: float = 32.0,
                 posterior: Posterior = "vmf", maxlen: int = 32) -> None:
        if not isinstance(config, TransformerConfig):
            raise TypeError(f"expected config to be a TransformerConfig, got {type(config).__name__}")
        check_int("num_latent_layers", num_latent_layers, 1, config.num_layers - 1)  # layer 1's [CLS] is constant
        check_choice("posterior", posterior, Posterior)
        check_int("z_dim", z_dim, 2 if posterior == "vmf" else 1)
        _check_kappa(kappa)
        check_int("maxlen", maxlen, 2)
        if config.attention != "softmax" or config.residual_attention:
            raise ValueError(f"expected softmax attention without residual_attention (UniVAE sets an n×n mask per "
                             f"layer), got attention={config.attention!r}, residual_attention="
                             f"{config.residual_attention}")
        if config.type_vocab_size < 2:
            raise ValueError(f"expected type_vocab_size >= 2 (segment 0 is the encoder, 1 the decoder), got "
                             f"type_vocab_size={config.type_vocab_size}")
        offset = config.pad_token_id + 1 if config.position_style == "roberta" else 0
        if offset + 2 * maxlen > config.max_position_embeddings:
            raise ValueError(f"expected 2·maxlen + {offset} <= max_position_embeddings = "
                             f"{config.max_position_embeddings} (the text twice), got maxlen={maxlen}")
        super().__init__()
        self.transformer = Transformer(config.replace(with_mlm=True, with_pooler=False, with_nsp=False,
                                                      mask_type="bidirectional"))
        self.config = self.transformer.config
        self.num_latent_layers, self.z_dim, self.kappa = num_latent_layers, z_dim, float(kappa)
        self.posterior: Posterior = posterior
        self.maxlen = maxlen
        self._offset = offset
        self._first_latent = config.num_layers - num_latent_layers
        h = config.hidden_size
        self.z_in = nn.ModuleList(nn.Linear(h, z_dim) for _ in range(num_latent_layers))
        self.z_log_var = (nn.ModuleList(nn.Linear(h, z_dim) for _ in range(num_latent_layers))
                          if posterior == "gaussian" else None)
        self.z_out = nn.ModuleList(nn.Linear(z_dim, h) for _ in range(num_latent_layers))
        self.sampler = VonMisesFisherSampler(z_dim, kappa) if posterior == "vmf" else None
        self._init_latent_layers()

    @torch.no_grad()
    def _init_latent_layers(self) -> None:
        """The latent Dense layers as the Transformer's own Linear layers (``config.init`` with std
        ``config.initializer_range``), biases 0: the author's code gives these Dense layers the model's initializer
        (``kernel_initializer=self.initializer``, bert4keras' TruncatedNormal(stddev=0.02), the ``bert_tf`` scheme;
        not Keras's glorot_uniform default). From scratch this makes Dense_hidden(z) ~50× smaller than the
        LayerNorm'd state it replaces, and the decoder learns to read z slowly; a caller may re-draw them."""
        layers = [*self.z_in, *self.z_out, *(self.z_log_var or [])]
        for lin in layers:
            assert isinstance(lin, nn.Linear)
            init_weight_(lin.weight, self.config.init, self.config.initializer_range)
            nn.init.zeros_(lin.bias)

    @classmethod
    def from_transformer(cls, transformer: Transformer, num_latent_layers: int = 4, z_dim: int = 16,
                         kappa: float = 32.0, posterior: Posterior = "vmf", maxlen: int = 32) -> UniVAE:
        """A UniVAE whose Transformer (embeddings, blocks and, when ``transformer`` has one, the MLM head) is a copy
        of ``transformer``'s weights, e.g. ``load_pretrained(kexue.env.minilm_path())``; an absent MLM head is made
        new (initialised as ``config.init`` says, tied to the word embeddings). Same device, dtype and train/eval
        mode as ``transformer``, which is left unchanged."""
        if not isinstance(transformer, Transformer):
            raise TypeError(f"expected transformer to be a kexue Transformer (kexue.models.load_pretrained loads "
                            f"one), got {type(transformer).__name__}")
        p = next(transformer.parameters())
        model = cls(transformer.config, num_latent_layers, z_dim, kappa, posterior, maxlen).to(p.device, p.dtype)
        ours = model.transformer.state_dict()
        theirs = {k: v for k, v in transformer.state_dict().items() if k in ours}
        result = model.transformer.load_state_dict(theirs, strict=False)
        left = [k for k in result.missing_keys if not k.startswith("mlm.")]
        if left:  # only the MLM head may be new; anything else means an unexpected architecture
            raise ValueError(f"expected a Transformer with every weight of its config, got one without {left}")
        return model.train(transformer.training)

    # -- the pieces ---------------------------------------------------------------------------------------------

    def _check_text(self, input_ids: Tensor, attention_mask: Tensor | None, ids_name: str = "input_ids",
                    mask_name: str = "attention_mask") -> Tensor | None:
        """Check the texts (as the Transformer checks its inputs, plus the fixed length and right padding with the
        first token real); the 1/0 mask as a long tensor, or None when there is no padding."""
        try:
            check_inputs(self.transformer.config, input_ids, attention_mask, None, None)  # types, shapes, ids, 1/0
        except (TypeError, ValueError) as e:  # the Transformer's messages name input_ids and attention_mask
            if ids_name == "input_ids":
                raise
            message = str(e).replace("input_ids", ids_name).replace("attention_mask", mask_name)
            raise type(e)(message) from None
        if input_ids.shape[1] != self.maxlen:
            raise ValueError(f"expected {ids_name} of shape (batch, maxlen={self.maxlen}) (pad every text to maxlen, "
                             f"else the decoder's start position leaks the length), got {tuple(input_ids.shape)}")
        if attention_mask is None:
            return None
        keep = attention_mask.long()
        if not bool((keep.cumprod(dim=1) == keep).all()) or not bool(keep[:, 0].all()):
            raise ValueError(f"expected {mask_name} right-padded with the first token real (rows of the form "
                             f"1…1 0…0), got a row that is not")
        return None if bool(keep.all()) else keep

    def _check_z(self, z: object, batch: int | None) -> Tensor:
        width = self.num_latent_layers * self.z_dim
        if not isinstance(z, Tensor):
            raise TypeError(f"expected z to be a torch.Tensor, got {type(z).__name__}")
        if not z.is_floating_point():
            raise TypeError(f"expected z to be a floating-point tensor, got {z.dtype}")
        if z.dim() != 2 or z.shape[1] != width or (batch is not None and z.shape[0] != batch) or z.shape[0] == 0:
            want = f"({batch if batch is not None else 'batch'}, num_latent_layers·z_dim = {width})"
            raise ValueError(f"expected z of shape {want}, got {tuple(z.shape)}")
        if not bool(torch.isfinite(z).all()):
            raise ValueError("expected z to be finite, got nan or inf")
        w = self.transformer.embeddings.word.weight
        return z.to(w.device, w.dtype)

    def _embed(self, ids: Tensor, segments: Tensor, positions: Tensor) -> Tensor:
        return self.transformer.embeddings(ids, segments, positions + self._offset)

    def _masks(self, segments: Tensor, keep: Tensor | None) -> tuple[Tensor, Tensor]:
        """(independent, UniAE) masks of segment ids (1, seq), and'ed with the padding mask of ``keep``."""
        ind, uni = independent_mask(segments), uniae_mask(segments)
        if keep is not None:
            pad = padding_mask(keep)
            ind, uni = ind & pad, uni & pad
        return ind, uni

    def _latent(self, j: int, h: Tensor, given: Tensor | None, sample: bool,
                generator: torch.Generator | None) -> tuple[Tensor, Tensor, Tensor]:
        """(z_μ, z, KL per row) of latent layer ``j`` from its [CLS] input ``h`` (batch, hidden)."""
        mean = self.z_in[j](h)
        g = given[:, j * self.z_dim:(j + 1) * self.z_dim] if given is not None else None
        if self.z_log_var is None:  # vMF: KL to the uniform prior is a constant, left out
            mu = F.normalize(mean, dim=-1)
            z = g if g is not None else _sample_vmf(mu, self.kappa, generator) if sample else mu
            return mu, z, torch.zeros(h.shape[0], dtype=h.dtype, device=h.device)
        log_var = self.z_log_var[j](h)
        kl = 0.5 * (mean.square() + log_var.exp() - 1.0 - log_var).sum(-1)
        if g is None and sample:
            eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
            g = mean + (0.5 * log_var).exp() * eps
        return mean, (g if g is not None else mean), kl

    def _blocks(self, x: Tensor, masks: tuple[Tensor, Tensor], given: Tensor | None, sample: bool,
                generator: torch.Generator | None, cache: KVCache | None = None,
                inject: bool = True) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
        """Run the blocks, each with its mask, injecting the latents at position 0 of the top layers (``inject``):
        (hidden states, z_μ, z, KL per row); the last three None without injection."""
        mus, zs, kls = [], [], []
        for i, block in enumerate(self.transformer.blocks):
            latent = i >= self._first_latent
            if latent and inject:
                mu, z, kl = self._latent(i - self._first_latent, x[:, 0], given, sample, generator)
                mus.append(mu)
                zs.append(z)
                kls.append(kl)
                x = torch.cat([self.z_out[i - self._first_latent](z)[:, None], x[:, 1:]], dim=1)
            x, _ = block(x, masks[1] if latent else masks[0], None, None, False,
                         cache.layers[i] if cache is not None else None)
        if self.transformer.final_norm is not None:
            x = self.transformer.final_norm(x)
        if not inject:
            return x, None, None, None
        return x, torch.cat(mus, -1), torch.cat(zs, -1), torch.stack(kls).sum(0)

    def _logits(self, hidden: Tensor) -> Tensor:
        mlm = self.transformer.mlm
        assert mlm is not None  # built with with_mlm=True
        return mlm(hidden, self.transformer.embeddings.word.weight)

    # -- the public methods -------------------------------------------------------------------------------------

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, z: Tensor | None = None,
                generator: torch.Generator | None = None, sample: bool | None = None,
                encoder_ids: Tensor | None = None, encoder_mask: Tensor | None = None) -> UniVAEOutput:
        """The text twice through the model: the decoder segment's logits, the encoder's z_μ, the latents used and
        the KL per row. ``z`` (batch, k·z_dim), when given, is injected instead of the encoder's latents (its blocks
        taken as they are: pass unit blocks for vMF); else z is drawn with ``generator`` when ``sample`` (default:
        ``self.training``), z = z_μ otherwise. z_μ of layer j + 1 is computed with layer j's injected z.
        ``encoder_ids``/``encoder_mask``: a different text for the encoder segment (default: ``input_ids`` and
        ``attention_mask``; ``encoder_mask`` None then means no padding), e.g. to show that with ``z`` given the
        encoder's tokens cannot change the logits."""
        keep = self._check_text(input_ids, attention_mask)
        if encoder_ids is None:
            if encoder_mask is not None:
                raise ValueError("expected encoder_mask=None without encoder_ids (attention_mask masks both "
                                 "segments), got a tensor")
            encoder_ids, enc_keep = input_ids, keep
        else:
            enc_keep = self._check_text(encoder_ids, encoder_mask, "encoder_ids", "encoder_mask")
            if encoder_ids.shape != input_ids.shape or encoder_ids.device != input_ids.device:
                raise ValueError(f"expected encoder_ids of input_ids' shape {tuple(input_ids.shape)} on "
                                 f"{input_ids.device}, got {tuple(encoder_ids.shape)} on {encoder_ids.device}")
        b, n = input_ids.shape
        given = self._check_z(z, b) if z is not None else None
        check_generator("generator", generator)
        draw = self.training if sample is None else check_bool("sample", sample)
        dev = input_ids.device
        segments = torch.cat([torch.zeros(1, n, dtype=torch.long, device=dev),
                              torch.ones(1, n, dtype=torch.long, device=dev)], dim=1)
        x = self._embed(torch.cat([encoder_ids, input_ids], 1), segments, torch.arange(2 * n, device=dev)[None])
        if keep is None and enc_keep is None:
            both = None
        else:
            ones = torch.ones_like(input_ids)
            both = torch.cat([enc_keep if enc_keep is not None else ones, keep if keep is not None else ones], 1)
        x, mu, zs, kl = self._blocks(x, self._masks(segments, both), given, draw, generator)
        assert mu is not None and zs is not None and kl is not None
        return UniVAEOutput(self._logits(x[:, n:]), mu, zs, kl)

    def loss(self, input_ids: Tensor, attention_mask: Tensor | None = None,
             generator: torch.Generator | None = None) -> UniVAELoss:
        """The training loss on a batch (z drawn in training mode, z = z_μ in eval mode): the cross-entropy of
        decoder position t's logits against token t + 1 over the real (unpadded) targets, plus for a Gaussian
        posterior Σ_rows KL / number of targets."""
        out = self(input_ids, attention_mask, generator=generator)
        logits, target = out.logits[:, :-1], input_ids[:, 1:]
        valid = attention_mask[:, 1:] != 0 if attention_mask is not None else torch.ones_like(target, dtype=torch.bool)
        count = valid.sum()
        if not bool(count):
            raise ValueError("expected at least one target token (a row of two or more real tokens), got "
                             "attention_mask with one real token per row")
        nll = F.cross_entropy(logits.float().flatten(0, 1), target.flatten(), reduction="none").view_as(target)
        ce = (nll * valid).sum() / count
        accuracy = ((logits.detach().argmax(-1) == target) & valid).sum() / count
        return UniVAELoss(ce + out.kl.float().sum() / count, ce, out.kl.float().mean(), accuracy.float())

    def encode(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """z_μ (batch, k·z_dim), the posterior means concatenated (unit blocks for vMF), from the encoder segment
        alone (it never attends to the decoder), with z_μ injected at each latent layer (as the author's encoder)."""
        keep = self._check_text(input_ids, attention_mask)
        n = input_ids.shape[1]
        segments = torch.zeros(1, n, dtype=torch.long, device=input_ids.device)
        x = self._embed(input_ids, segments, torch.arange(n, device=input_ids.device)[None])
        _, mu, _, _ = self._blocks(x, self._masks(segments, keep), None, False, None)
        assert mu is not None
        return mu

    def prior_sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` latents (n, k·z_dim) from the prior: Gaussian with each z_dim block L2-normalised (uniform on each
        sphere) for vMF, N(0, I) for Gaussian; on the model's device and dtype."""
        check_int("n", n, 1)
        check_generator("generator", generator)
        w = self.transformer.embeddings.word.weight
        z = torch.randn(n, self.num_latent_layers, self.z_dim, generator=generator, dtype=w.dtype, device=w.device)
        if self.posterior == "vmf":
            z = F.normalize(z, dim=-1)
        return z.flatten(1)

    @torch.no_grad()
    def decode(self, z: Tensor, max_len: int | None = None, beam_size: int = 1, *, bos_id: int, eos_id: int,
               pad_id: int = 0, length_penalty: float = 0.0) -> list[list[int]]:
        """Texts from latents alone (model in eval mode): per row of ``z`` (batch, k·z_dim), the token ids generated
        after ``bos_id`` (the decoder's [CLS]), EOS stripped, up to ``max_len`` tokens (default and largest
        maxlen − 1, what the decoder segment holds). Greedy for ``beam_size`` 1, else
        :func:`~kexue.models.beam_search` (best hypothesis; ``length_penalty`` as there). The encoder segment is a
        dummy [bos_id, pad_id, …] of maxlen tokens (only its position 0 is visible, and it is replaced by z)."""
        if self.training:
            raise ValueError("expected the model in eval mode (call model.eval(): dropout would make decoding "
                             "random), got it in training mode")
        given = self._check_z(z, None)
        limit = self.maxlen - 1
        max_len = limit if max_len is None else check_int("max_len", max_len, 1, limit)
        check_int("beam_size", beam_size, 1)
        for name, value in (("bos_id", bos_id), ("eos_id", eos_id), ("pad_id", pad_id)):
            check_int(name, value, 0, self.config.vocab_size - 1)
        check_float("length_penalty", length_penalty)
        step = _LatentStep(self, given, bos_id, pad_id)
        if beam_size == 1:
            best = greedy_search(step, given.shape[0], eos_id, max_len)
        else:
            best = [h[0] for h in beam_search(step, given.shape[0], eos_id, beam_size, max_len, length_penalty)]
        return [h.tokens[:-1] if h.finished else h.tokens for h in best]


class _LatentStep:
    """The :data:`~kexue.models.StepFn` of :meth:`UniVAE.decode`, with a key/value cache. The first call runs the
    dummy encoder segment and the decoder's [CLS] with the latents injected; each later call feeds one token per
    row at the next decoder position, which sees the decoder so far (bottom layers) plus column 0 (top layers)."""

    def __init__(self, model: UniVAE, z: Tensor, bos_id: int, pad_id: int) -> None:
        self.model, self.z, self.bos_id, self.pad_id = model, z, bos_id, pad_id
        self.cache = KVCache(model.config.num_layers)
        self.length = 0  # decoder tokens fed so far

    def __call__(self, tokens: Tensor | None, parents: Tensor) -> Tensor:
        m, n, dev = self.model, self.model.maxlen, self.z.device
        parents = parents.to(dev)
        if tokens is None:
            b = self.z.shape[0]
            ids = torch.full((b, n + 1), self.pad_id, dtype=torch.long, device=dev)
            ids[:, 0] = ids[:, n] = self.bos_id
            segments = (torch.arange(n + 1, device=dev) >= n).long()[None]
            keep = torch.zeros(1, n + 1, dtype=torch.long, device=dev)
            keep[:, 0] = keep[:, n] = 1
            x = m._embed(ids, segments, torch.arange(n + 1, device=dev)[None])
            x = m._blocks(x, m._masks(segments, keep), self.z, False, None, self.cache)[0]
        else:
            if parents.shape[0] != self.cache.batch_size or not bool((parents == torch.arange(
                    parents.shape[0], device=dev)).all()):
                self.cache._reorder(parents)
            ind = torch.zeros(1, 1, 1, n + self.length + 1, dtype=torch.bool, device=dev)
            ind[..., n:] = True
            uni = ind.clone()
            uni[..., 0] = True
            pos = torch.full((1, 1), n + self.length, dtype=torch.long, device=dev)
            x = m._embed(tokens.to(dev)[:, None], torch.ones(1, 1, dtype=torch.long, device=dev), pos)
            x = m._blocks(x, (ind, uni), None, False, None, self.cache, inject=False)[0]
        self.length += 1
        log_probs = F.log_softmax(m._logits(x[:, -1]).float(), dim=-1)
        if tokens is None:
            self.cache._reorder(parents)
            return log_probs[parents]
        return log_probs


__all__ = ["MAX_KAPPA", "POSTERIORS", "Posterior", "UniVAE", "UniVAELoss", "UniVAEOutput", "VonMisesFisherSampler",
           "vmf_mean_cosine"]
