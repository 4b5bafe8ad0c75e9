"""Training losses of the tasks (the L2-SVM squared hinge of the small models, cross-entropy) and accuracy."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from benchmark.errors import UserError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def squared_hinge(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """L2-SVM loss with targets +-1, the loss of the LAB/LAQ/BLAQ small models.

    With t[i, c] = +1 if c == y[i] else -1, for N rows and C classes:
    ``loss = (1 / (N * C)) * sum_i sum_c max(0, 1 - t[i, c] * logits[i, c]) ** 2``.
    """
    targets = F.one_hot(y, logits.shape[1]).to(logits.dtype) * 2 - 1
    return torch.clamp(1 - targets * logits, min=0).square().mean()


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy, mean over the batch (the ImageNet loss)."""
    return F.cross_entropy(logits, y)


LOSSES: dict[str, LossFn] = {"squared_hinge": squared_hinge, "cross_entropy": cross_entropy}


def get_loss(name: str) -> LossFn:
    """The loss function registered under ``name``; UserError naming the choices otherwise."""
    try:
        return LOSSES[name]
    except KeyError:
        raise UserError(f"unknown loss {name!r}; choose one of {', '.join(sorted(LOSSES))}") from None


def count_correct(logits: torch.Tensor, y: torch.Tensor) -> int:
    """Number of rows whose arg-max class equals the label (sum it over batches for an accuracy)."""
    return int((logits.argmax(dim=1) == y).sum())


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy in percent over one batch of logits."""
    if y.numel() == 0:
        raise ValueError("accuracy of an empty batch is undefined")
    return 100.0 * count_correct(logits, y) / y.numel()
