"""Preprocessing: mean-centring, global contrast normalisation, ZCA whitening, upsampling."""

from __future__ import annotations

import pytest
import torch

from benchmark.tasks.preprocess import ZCA, global_contrast_normalize, mean_centre, upsample


def _correlated(n: int, d: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g, dtype=torch.float64) * torch.linspace(0.1, 5, d, dtype=torch.float64)
    return torch.randn(n, d, generator=g, dtype=torch.float64) @ mix + 3.0


@pytest.mark.parametrize("n,d", [(4000, 12), (30, 80)])
def test_zca_whitened_train_has_identity_covariance_on_its_span(n: int, d: int) -> None:
    x = _correlated(n, d)
    zca = ZCA.fit(x, bias=1e-6)
    w = zca(x).double()
    assert w.dtype == torch.float64 and w.shape == x.shape
    cov = (w - w.mean(0)).T @ (w - w.mean(0)) / n
    if n > d:
        assert torch.allclose(cov, torch.eye(d, dtype=torch.float64), atol=2e-3)
    else:
        eig = torch.linalg.eigvalsh(cov)
        span = eig[eig > 1e-3]
        assert len(span) == n - 1 and torch.allclose(span, torch.ones_like(span), atol=2e-3)
    assert torch.allclose(w.mean(0), torch.zeros(d, dtype=torch.float64), atol=1e-6)


def test_zca_matches_the_covariance_formula_and_is_symmetric() -> None:
    x = _correlated(500, 6)
    zca = ZCA.fit(x, bias=0.1)
    xc = x - x.mean(0)
    lam, v = torch.linalg.eigh(xc.T @ xc / len(x))
    w_ref = v @ torch.diag((lam + 0.1).rsqrt()) @ v.T
    assert torch.allclose(zca(x).double(), (xc @ w_ref).float().double(), atol=1e-5)
    # zero phase: the whitening matrix is symmetric (it maps the identity to a symmetric matrix)
    w = zca(torch.eye(6, dtype=torch.float64) + x.mean(0)).double()
    assert torch.allclose(w, w.T, atol=1e-5)


def test_zca_bias_shrinks_small_directions_and_must_be_positive() -> None:
    x = _correlated(2000, 8)
    w = ZCA.fit(x, bias=10.0)(x).double()
    eig = torch.linalg.eigvalsh((w - w.mean(0)).T @ (w - w.mean(0)) / len(w))
    assert eig.max() < 1.0 and eig.min() < 0.5  # lambda / (lambda + bias) < 1
    with pytest.raises(ValueError, match="bias"):
        ZCA.fit(x, bias=0.0)


def test_gcn_zero_mean_and_fixed_norm_per_image() -> None:
    x = torch.rand(7, 3, 4, 4) * 255
    x[3] = 17.0  # a flat image has no contrast: it becomes zeros, not NaN
    y = global_contrast_normalize(x, scale=55.0)
    flat = y.reshape(7, -1)
    assert torch.allclose(flat.mean(1), torch.zeros(7), atol=1e-4)
    norms = flat.norm(dim=1)
    assert torch.allclose(norms[[0, 1, 2, 4, 5, 6]], torch.full((6,), 55.0), rtol=1e-5)
    assert torch.equal(flat[3], torch.zeros(48))
    # invariant to brightness and contrast changes of an image
    assert torch.allclose(global_contrast_normalize(2 * x[:1] + 30), y[:1], atol=1e-4)


def test_mean_centre_uses_the_training_mean() -> None:
    tr = torch.tensor([[1.0, 2.0], [3.0, 6.0]])
    te = torch.tensor([[2.0, 4.0]])
    a, b = mean_centre(tr, te)
    assert torch.equal(a, torch.tensor([[-1.0, -2.0], [1.0, 2.0]]))
    assert torch.equal(b, torch.tensor([[0.0, 0.0]]))


def test_upsample_shape_channels_and_range() -> None:
    img = torch.arange(64, dtype=torch.float32).reshape(1, 8, 8)
    up = upsample(img, channels=3, size=32)
    assert up.shape == (1, 3, 32, 32)
    assert torch.equal(up[0, 0], up[0, 2])
    assert up.min() >= 0 and up.max() <= 63
    # bilinear: the mean brightness is kept up to the border effect
    assert abs(up.mean().item() - img.mean().item()) < 1.0


def test_gcn_in_chunks_equals_one_pass() -> None:
    x = (torch.rand(10, 3, 4, 4) * 255).to(torch.uint8)
    assert torch.allclose(global_contrast_normalize(x, chunk=3), global_contrast_normalize(x), atol=1e-6)
