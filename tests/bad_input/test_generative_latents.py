"""Bad-input rows: kexue.generative's latent sampling (the hubness prior and the truncation trick;
kexue.fm/archives/9147)."""

from __future__ import annotations

import pytest
import torch
from _matrix import Bad, check

from kexue.generative import hub_filtered_latents, standard_normal, truncation

NAN = float("nan")
Z = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
ZN = Z.clone()
ZN[2, 1] = NAN


def _returns(value: object):
    return lambda n, generator=None: value


def _hub(**kw):
    args = {"sample_fn": 8, "size": 5, "pool": 100, "threshold": 10, **kw}
    return lambda: hub_filtered_latents(**args)


ROWS = [
    # hub_filtered_latents
    Bad("kexue.generative.hub_filtered_latents", "sample_fn a string", _hub(sample_fn="normal"), TypeError,
        r"expected sample_fn to be a callable \(n, generator\) -> Tensor of shape \(n, d\), or an int latent "
        r"dimension for N\(0, I\), got str"),
    Bad("kexue.generative.hub_filtered_latents", "sample_fn = 0 (a dimension)", _hub(sample_fn=0), ValueError,
        r"expected sample_fn \(as a latent dimension\) >= 1, got 0"),
    Bad("kexue.generative.hub_filtered_latents", "size = 0", _hub(size=0), ValueError, r"expected size >= 1, got 0"),
    Bad("kexue.generative.hub_filtered_latents", "size a float", _hub(size=5.0), TypeError,
        r"expected size to be an integer, got 5\.0"),
    Bad("kexue.generative.hub_filtered_latents", "k = 0", _hub(k=0), ValueError, r"expected k >= 1, got 0"),
    Bad("kexue.generative.hub_filtered_latents", "pool not above k", _hub(pool=5), ValueError,
        r"expected pool >= 6, got 5"),
    Bad("kexue.generative.hub_filtered_latents", "threshold negative", _hub(threshold=-1), ValueError,
        r"expected threshold >= 0\.0, got -1"),
    Bad("kexue.generative.hub_filtered_latents", "threshold nan", _hub(threshold=NAN), ValueError,
        r"expected threshold to be finite, got nan"),
    Bad("kexue.generative.hub_filtered_latents", "threshold a string", _hub(threshold="50"), TypeError,
        r"expected threshold to be a real number, got '50'"),
    Bad("kexue.generative.hub_filtered_latents", "threshold no pool can clear", _hub(threshold=99), ValueError,
        r"expected threshold < pool − 1 = 99 \(the largest hub value a pool of 100 can give\), got 99"),
    Bad("kexue.generative.hub_filtered_latents", "chunk = 0", _hub(chunk=0), ValueError,
        r"expected chunk >= 1, got 0"),
    Bad("kexue.generative.hub_filtered_latents", "max_rounds = 0", _hub(max_rounds=0), ValueError,
        r"expected max_rounds >= 1, got 0"),
    Bad("kexue.generative.hub_filtered_latents", "generator a seed", _hub(generator=0), TypeError,
        r"expected generator to be a torch\.Generator or None, got int"),
    Bad("kexue.generative.hub_filtered_latents", "sample_fn returning a list", _hub(sample_fn=_returns([0.0])),
        TypeError, r"expected sample_fn to return a floating torch\.Tensor, got list"),
    Bad("kexue.generative.hub_filtered_latents", "sample_fn returning integers",
        _hub(sample_fn=_returns(torch.zeros(100, 4, dtype=torch.long))), TypeError,
        r"expected sample_fn to return a floating torch\.Tensor, got torch\.int64"),
    Bad("kexue.generative.hub_filtered_latents", "sample_fn returning another number of rows",
        _hub(sample_fn=_returns(torch.zeros(99, 4))), ValueError,
        r"expected sample_fn\(pool, generator\) to return shape \(100, d\), got \(99, 4\)"),
    Bad("kexue.generative.hub_filtered_latents", "sample_fn returning 1-D",
        _hub(sample_fn=_returns(torch.zeros(100))), ValueError,
        r"expected sample_fn\(pool, generator\) to return shape \(100, d\), got \(100,\)"),
    Bad("kexue.generative.hub_filtered_latents", "sample_fn returning NaN",
        _hub(sample_fn=_returns(torch.full((100, 4), NAN))), ValueError,
        r"expected sample_fn to return finite latents, got 400 NaN or infinite entries"),
    Bad("kexue.generative.hub_filtered_latents", "too few hubs within max_rounds (d = 2, t = 40)",
        _hub(sample_fn=2, threshold=40, max_rounds=3, generator=torch.Generator().manual_seed(0)), RuntimeError,
        r"expected 5 latents with hub value > 40 within max_rounds = 3 pools of 100, got 0 \(acceptance rate 0; .*"
        r"no latent cleared it\): lower threshold or raise max_rounds"),
    # standard_normal
    Bad("kexue.generative.standard_normal", "dim = 0", lambda: standard_normal(0), ValueError,
        r"expected dim >= 1, got 0"),
    Bad("kexue.generative.standard_normal", "dim a float", lambda: standard_normal(16.0), TypeError,
        r"expected dim to be an integer, got 16\.0"),
    Bad("kexue.generative.standard_normal", "an integer dtype", lambda: standard_normal(4, dtype=torch.int64),
        TypeError, r"expected dtype to be a floating torch\.dtype or None, got torch\.int64"),
    Bad("kexue.generative.standard_normal", "dtype a string", lambda: standard_normal(4, dtype="float32"), TypeError,
        r"expected dtype to be a floating torch\.dtype or None, got 'float32'"),
    # truncation
    Bad("kexue.generative.truncation", "z a list", lambda: truncation([[0.0, 1.0]], 0.5), TypeError,
        r"expected z to be a floating torch\.Tensor, got list"),
    Bad("kexue.generative.truncation", "integer z", lambda: truncation(Z.long(), 0.5), TypeError,
        r"expected z to be a floating torch\.Tensor, got torch\.int64"),
    Bad("kexue.generative.truncation", "0-dim z", lambda: truncation(Z[0, 0], 0.5), ValueError,
        r"expected z of shape \(\.\.\., d\), got shape \(\)"),
    Bad("kexue.generative.truncation", "z with NaN", lambda: truncation(ZN, 0.5), ValueError,
        r"expected z to be finite, got 1 NaN or infinite entries"),
    Bad("kexue.generative.truncation", "psi = 0", lambda: truncation(Z, 0.0), ValueError,
        r"expected psi > 0\.0, got 0\.0"),
    Bad("kexue.generative.truncation", "psi above 1", lambda: truncation(Z, 1.5), ValueError,
        r"expected psi <= 1\.0, got 1\.5"),
    Bad("kexue.generative.truncation", "psi nan", lambda: truncation(Z, NAN), ValueError,
        r"expected psi to be finite, got nan"),
    Bad("kexue.generative.truncation", "mean of another width", lambda: truncation(Z, 0.5, mean=torch.zeros(4)),
        ValueError, r"expected mean of shape \(3,\) \(one latent\), got \(4,\)"),
    Bad("kexue.generative.truncation", "mean a list", lambda: truncation(Z, 0.5, mean=[0.0, 0.0, 0.0]), TypeError,
        r"expected mean to be a floating torch\.Tensor or None, got list"),
    Bad("kexue.generative.truncation", "mean with inf", lambda: truncation(Z, 0.5, mean=torch.tensor([0, 1, 1e999])),
        ValueError, r"expected mean to be finite, got NaN or infinite entries"),
]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_refuses(row):
    check(row)
