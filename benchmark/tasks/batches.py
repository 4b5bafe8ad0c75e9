"""What a task's data loader returns: the three splits as iterables of (x, y) batches on the run's device."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from benchmark.errors import UserError

Batch = tuple[torch.Tensor, torch.Tensor]


class TensorBatches:
    """Mini-batches of an in-memory split, by index slicing on the tensors' own device.

    With ``shuffle``, every pass draws a fresh permutation from a generator seeded once with
    ``seed``: the order changes from epoch to epoch and is the same for the same seed. With
    ``drop_last`` a final incomplete batch is skipped (training batch norm needs full batches),
    unless the split is smaller than one batch.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool = False,
                 seed: int = 0, drop_last: bool = False) -> None:
        if len(x) != len(y):
            raise ValueError(f"{len(x)} inputs but {len(y)} labels")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, not {batch_size}")
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        n, b = len(self.x), self.batch_size
        return n // b if self.drop_last and n >= b else -(-n // b)

    def __iter__(self) -> Iterator[Batch]:
        n, b = len(self.x), self.batch_size
        order = torch.randperm(n, generator=self.generator).to(self.x.device) if self.shuffle else None
        for i in range(len(self)):
            if order is None:
                yield self.x[i * b:(i + 1) * b], self.y[i * b:(i + 1) * b]
            else:
                idx = order[i * b:(i + 1) * b]
                yield self.x[idx], self.y[idx]


class DeviceLoader:
    """Wraps a DataLoader (pinned host memory) so that its batches arrive on ``device``.

    ``generator`` is the loader's own (it draws each pass's order and worker seeds), so saving
    and restoring its state resumes the order, as with ``TensorBatches``.
    """

    def __init__(self, loader: torch.utils.data.DataLoader, device: torch.device | str) -> None:
        self.loader = loader
        self.device = torch.device(device)
        self.generator: torch.Generator | None = getattr(loader, "generator", None)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Batch]:
        it = iter(self.loader)
        while True:
            try:
                x, y = next(it)
            except StopIteration:
                return
            except UserError as err:  # raised in a worker: keep only the one-line reason
                lines = [s for s in str(err).splitlines() if s.strip()]
                raise UserError(lines[-1].removeprefix("benchmark.errors.UserError: ")) from None
            yield (x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True))


@dataclass
class Data:
    """A task's data: train (reshuffled each pass, seeded), val and test batches, and a record of the source.

    ``info`` is JSON-serialisable and goes into every run record: ``dataset``, ``source``,
    ``stand_in`` (True when the data are a stand-in for a dataset that is not on disk),
    ``n_train``, ``n_val``, ``n_test``, ``note``, plus loader-specific keys.
    """

    train: Iterable[Batch]
    val: Iterable[Batch]
    test: Iterable[Batch]
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_tensors(cls, train: Batch, val: Batch, test: Batch, batch_size: int,
                     device: torch.device | str = "cpu", seed: int = 0,
                     eval_batch_size: int | None = None, **info: Any) -> Data:
        """In-memory splits moved to ``device`` once; ``info`` keywords complete the record."""
        dev = torch.device(device)
        ev = eval_batch_size or batch_size
        splits = [(x.to(dev), y.to(dev)) for x, y in (train, val, test)]
        record = {"dataset": info.pop("dataset", "custom"), "source": info.pop("source", "tensors"),
                  "stand_in": bool(info.pop("stand_in", False)),
                  "n_train": len(train[0]), "n_val": len(val[0]), "n_test": len(test[0]),
                  "note": info.pop("note", ""), **info}
        return cls(
            train=TensorBatches(*splits[0], batch_size, shuffle=True, seed=seed, drop_last=True),
            val=TensorBatches(*splits[1], ev),
            test=TensorBatches(*splits[2], ev),
            info=record,
        )
