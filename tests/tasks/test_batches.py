"""In-memory batching (seeded reshuffles, drop_last) and the DataLoader wrapper's error handling."""

from __future__ import annotations

import pytest
import torch

from benchmark.errors import UserError
from benchmark.tasks import Data, DeviceLoader, TensorBatches


def _xy(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.arange(n, dtype=torch.float32).unsqueeze(1), torch.arange(n) % 3


def test_shuffled_passes_cover_the_split_and_differ() -> None:
    x, y = _xy(23)
    b = TensorBatches(x, y, batch_size=5, shuffle=True, seed=7, drop_last=True)
    assert len(b) == 4
    passes = []
    for _ in range(3):
        batches = list(b)
        assert [len(xb) for xb, _ in batches] == [5, 5, 5, 5]
        seen = torch.cat([xb for xb, _ in batches]).flatten().long()
        assert len(set(seen.tolist())) == 20  # no repeats within a pass
        for xb, yb in batches:  # rows keep their labels
            assert torch.equal(yb, xb.flatten().long() % 3)
        passes.append(seen)
    assert not torch.equal(passes[0], passes[1])
    again = TensorBatches(x, y, batch_size=5, shuffle=True, seed=7, drop_last=True)
    assert torch.equal(torch.cat([xb for xb, _ in again]).flatten().long(), passes[0])


def test_eval_batches_are_in_order_and_keep_the_remainder() -> None:
    x, y = _xy(7)
    b = TensorBatches(x, y, batch_size=3)
    assert len(b) == 3
    assert torch.equal(torch.cat([xb for xb, _ in b]), x)


def test_drop_last_keeps_a_split_smaller_than_one_batch() -> None:
    x, y = _xy(4)
    assert [len(xb) for xb, _ in TensorBatches(x, y, 10, shuffle=True, drop_last=True)] == [4]


def test_bad_batches() -> None:
    x, y = _xy(4)
    with pytest.raises(ValueError, match="4 inputs but 3 labels"):
        TensorBatches(x, y[:3], 2)
    with pytest.raises(ValueError, match="batch_size"):
        TensorBatches(x, y, 0)


def test_data_from_tensors_record() -> None:
    data = Data.from_tensors(_xy(10), _xy(4), _xy(6), batch_size=4, seed=1, dataset="toy", note="n")
    assert data.info == {"dataset": "toy", "source": "tensors", "stand_in": False, "n_train": 10,
                         "n_val": 4, "n_test": 6, "note": "n"}
    assert len(data.train) == 2 and len(data.test) == 2


class _FailingLoader:
    """Stands in for a DataLoader whose worker raised: torch re-raises with the worker's traceback."""

    def __len__(self) -> int:
        return 2

    def __iter__(self):
        yield torch.zeros(2, 1), torch.zeros(2, dtype=torch.long)
        raise UserError("Caught UserError in DataLoader worker process 0.\nOriginal Traceback (most "
                        "recent call last):\n  File \"x.py\", line 1\nbenchmark.errors.UserError: "
                        "image /d/a.jpg is truncated or corrupt (broken data stream); replace it\n")


def test_device_loader_moves_batches_and_keeps_a_one_line_reason() -> None:
    loader = DeviceLoader(_FailingLoader(), "cpu")
    assert len(loader) == 2
    it = iter(loader)
    x, y = next(it)
    assert x.device.type == "cpu" and y.dtype == torch.long
    with pytest.raises(UserError) as err:
        next(it)
    assert str(err.value) == "image /d/a.jpg is truncated or corrupt (broken data stream); replace it"
