"""The task losses against hand computations, and the accuracy helpers."""

from __future__ import annotations

import pytest
import torch

from benchmark.errors import UserError
from benchmark.tasks import accuracy, count_correct, cross_entropy, get_loss, squared_hinge


def test_squared_hinge_by_hand() -> None:
    logits = torch.tensor([[2.0, -0.5, 0.3], [0.0, 1.5, -2.0]])
    y = torch.tensor([0, 2])
    # targets [[+1,-1,-1],[-1,-1,+1]]; max(0, 1 - t*z)^2 per entry:
    # row 0: 1-2=-1 -> 0; 1-0.5=0.5 -> 0.25; 1+0.3=1.3 -> 1.69
    # row 1: 1+0=1 -> 1;  1+1.5=2.5 -> 6.25;  t=+1, z=-2: 1+2=3 -> 9
    expected = (0 + 0.25 + 1.69 + 1 + 6.25 + 9) / 6
    assert squared_hinge(logits, y).item() == pytest.approx(expected, rel=1e-6)


def test_squared_hinge_zero_beyond_margin_and_gradient() -> None:
    y = torch.tensor([1, 0])
    confident = torch.tensor([[-3.0, 1.0], [1.2, -1.0]], requires_grad=True)
    loss = squared_hinge(confident, y)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(confident.grad, torch.zeros(2, 2))
    z = torch.tensor([[0.5, 0.2]], requires_grad=True)
    squared_hinge(z, torch.tensor([0])).backward()
    # d/dz of mean(max(0, 1 - t z)^2) = -2 t max(0, 1 - t z) / (N C)
    assert torch.allclose(z.grad, torch.tensor([[-2 * 0.5 / 2, 2 * 1.2 / 2]]))


def test_cross_entropy_and_lookup() -> None:
    logits = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    y = torch.tensor([0, 1])
    by_hand = (torch.log(torch.tensor(2.0)) + (2 + torch.log(1 + torch.exp(torch.tensor(-2.0))))) / 2
    assert cross_entropy(logits, y).item() == pytest.approx(by_hand.item(), rel=1e-6)
    assert get_loss("squared_hinge") is squared_hinge
    with pytest.raises(UserError, match="cross_entropy, squared_hinge"):
        get_loss("hinge")


def test_accuracy_and_count_correct() -> None:
    logits = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    y = torch.tensor([1, 0, 0, 0])
    assert count_correct(logits, y) == 3
    assert accuracy(logits, y) == 75.0
    with pytest.raises(ValueError, match="empty"):
        accuracy(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long))
