"""Input preprocessing of the small datasets: mean-centring, global contrast normalisation, ZCA whitening.

Statistics that are fitted (the mean image, the ZCA transform) are fitted on the training split
only and then applied unchanged to validation and test.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

GCN_SCALE = 55.0  # every image is rescaled to this L2 norm (the pylearn2 CIFAR-10 recipe)
ZCA_BIAS = 0.1    # added to the covariance eigenvalues before whitening (regularises small ones)


def mean_centre(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """Subtract the per-pixel mean of ``train`` from every split (train first in the result)."""
    mean = train.mean(dim=0, keepdim=True)
    return [t - mean for t in (train, *others)]


def global_contrast_normalize(x: torch.Tensor, scale: float = GCN_SCALE,
                              min_norm: float = 1e-8, chunk: int = 65536) -> torch.Tensor:
    """Per image: subtract its mean, then rescale to L2 norm ``scale`` (a flat image stays 0).

    Float32 result on the input's device, computed ``chunk`` images at a time (SVHN's 600k
    images would otherwise need several float copies at once).
    """
    flat_in = x.reshape(len(x), -1)
    out = torch.empty(flat_in.shape, dtype=torch.float32, device=x.device)
    for i in range(0, len(x), chunk):
        flat = flat_in[i:i + chunk].to(torch.float32)
        flat = flat - flat.mean(dim=1, keepdim=True)
        out[i:i + chunk] = scale * flat / flat.norm(dim=1, keepdim=True).clamp_min(min_norm)
    return out.reshape(x.shape)


@dataclass
class ZCA:
    """Zero-phase whitening x -> (x - mean) @ W, W = V diag(1/sqrt(lambda + bias)) V^T of the training covariance.

    Fitted through the smaller of the Gram matrix (n x n) and the covariance (d x d), so a
    split with fewer images than pixels costs O(n^2 d), not O(d^3); directions outside the
    training span get the gain 1/sqrt(bias).
    """

    mean: torch.Tensor        # (d,)
    basis: torch.Tensor       # (d, k): eigenvectors of the covariance with non-zero eigenvalues
    gains: torch.Tensor       # (k,): 1/sqrt(lambda + bias) - 1/sqrt(bias)
    floor: float              # 1/sqrt(bias): the gain of every other direction

    @classmethod
    def fit(cls, train: torch.Tensor, bias: float = ZCA_BIAS) -> ZCA:
        """Fit on the training images (any shape (n, ...)); the covariance divides by n."""
        if bias <= 0:
            raise ValueError(f"ZCA bias must be positive, not {bias}")
        x = train.reshape(len(train), -1).to(torch.float64)
        mean = x.mean(dim=0)
        xc = x - mean
        if len(x) < x.shape[1]:
            sq, u = torch.linalg.eigh(xc @ xc.T)  # squared singular values, left vectors
            keep = sq > sq.max().clamp_min(1e-300) * 1e-12
            sq, basis = sq[keep], (xc.T @ u[:, keep]) / sq[keep].sqrt()
        else:
            sq, basis = torch.linalg.eigh(xc.T @ xc)
            sq = sq.clamp_min(0)
        floor = bias ** -0.5
        gains = (sq / len(x) + bias).rsqrt() - floor
        return cls(mean=mean, basis=basis.contiguous(), gains=gains, floor=floor)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Whiten images of the fitted shape; float32 result of the input's shape."""
        flat = x.reshape(len(x), -1).to(torch.float64) - self.mean
        out = flat * self.floor + ((flat @ self.basis) * self.gains) @ self.basis.T
        return out.to(torch.float32).reshape(x.shape)


def upsample(images: torch.Tensor, channels: int, size: int) -> torch.Tensor:
    """Grey images (n, h, w) -> (n, channels, size, size) by bilinear resizing and channel copies."""
    x = images.to(torch.float32).unsqueeze(1)
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.expand(-1, channels, -1, -1).contiguous()
