"""Fixtures of the task tests: tiny datasets written in each real on-disk format, and a shared data root."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest


@pytest.fixture(scope="session")
def shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root without datasets, shared by the tests so that stand-in caches are built once."""
    return tmp_path_factory.mktemp("data-root")


def _idx(array: np.ndarray) -> bytes:
    """An idx (ubyte) file: magic 0x0000 08 <ndim>, the dimensions big-endian, then the bytes."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist(root: Path, n_train: int = 60, n_test: int = 12, gz: bool = False, seed: int = 0) -> Path:
    """MNIST idx files under ``<root>/MNIST/raw`` (gzipped when ``gz``); returns that folder."""
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28))
        labels = np.arange(n) % 10
        for name, arr in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
            blob = _idx(arr)
            if gz:
                (raw / f"{name}.gz").write_bytes(gzip.compress(blob))
            else:
                (raw / name).write_bytes(blob)
    return raw


def write_cifar10(root: Path, per_batch: int = 8, n_test: int = 10, seed: int = 0) -> Path:
    """CIFAR-10 python pickles (5 training batches, a test batch, batches.meta) under ``<root>/cifar-10-batches-py``."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for k, name in enumerate(names):
        n = n_test if name == "test_batch" else per_batch
        entry = {"data": rng.integers(0, 256, size=(n, 3072)).astype(np.uint8),
                 "labels": [int(c) for c in (np.arange(n) + k) % 10], "batch_label": name}
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, f)
    return folder


def write_svhn(root: Path, per_class: dict[str, int] | None = None, seed: int = 0) -> Path:
    """SVHN .mat files (X: 32x32x3xN uint8, y: Nx1 with 10 for the digit 0) under ``<root>/svhn``."""
    from scipy.io import savemat

    per_class = per_class or {"train": 20, "test": 3, "extra": 10}
    rng = np.random.default_rng(seed)
    folder = root / "svhn"
    folder.mkdir(parents=True, exist_ok=True)
    for split, k in per_class.items():
        y = np.tile(np.arange(1, 11), k)  # labels 1..10 as in the files
        x = rng.integers(0, 256, size=(32, 32, 3, len(y))).astype(np.uint8)
        savemat(folder / f"{split}_32x32.mat", {"X": x, "y": y.reshape(-1, 1).astype(np.uint8)})
    return folder


def write_imagenet(root: Path, classes: int = 3, train_per: int = 10, val_per: int = 2) -> Path:
    """An ImageFolder tree ``<root>/imagenet/{train,val}/<wnid>/`` of small JPEG and PNG images."""
    from PIL import Image

    rng = np.random.default_rng(0)
    base = root / "imagenet"
    for split, per in (("train", train_per), ("val", val_per)):
        for c in range(classes):
            d = base / split / f"n{c:08d}"
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per):
                img = Image.fromarray(rng.integers(0, 256, size=(20, 24, 3)).astype(np.uint8))
                img.save(d / f"img{i:03d}.{'png' if i % 2 else 'jpg'}")
    return base


def truncate(path: Path, keep: float = 0.5) -> None:
    """Cut a file to a fraction of its length (a download that stopped half way)."""
    blob = path.read_bytes()
    path.write_bytes(blob[: int(len(blob) * keep)])


@pytest.fixture
def disk() -> SimpleNamespace:
    """The writers above: ``disk.mnist(root)``, ``disk.cifar10(root)``, ``disk.svhn(root)``,
    ``disk.imagenet(root)``, ``disk.truncate(path)``."""
    return SimpleNamespace(mnist=write_mnist, cifar10=write_cifar10, svhn=write_svhn,
                           imagenet=write_imagenet, truncate=truncate)
