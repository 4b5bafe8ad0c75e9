"""The task models: shapes, the LAB/LAQ layer conventions, initialisation, determinism."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from torch import nn

from benchmark.tasks import TASKS, get_task
from benchmark.tasks.models import glorot_bound, resnet18

INPUT = {"mnist-mlp": (1, 28, 28), "mnist-lenet5": (1, 28, 28), "cifar10-vgg": (3, 32, 32),
         "svhn-net": (3, 32, 32)}
SMALL = sorted(INPUT)


def _input_shape(task_name: str, profile) -> tuple[int, ...]:
    if task_name == "imagenet-resnet18":
        return (3, profile.input_size, profile.input_size)
    return INPUT[task_name]


@pytest.mark.parametrize("profile", ["smoke", "quick", "paper"])
@pytest.mark.parametrize("task_name", sorted(TASKS.keys() & {*INPUT, "imagenet-resnet18"}))
def test_every_task_builds_every_profile_with_the_right_output(task_name: str, profile: str) -> None:
    task = get_task(task_name)
    prof = task.profile(profile)
    torch.manual_seed(0)
    model = task.build_model(prof)
    if profile == "paper":  # full size: one image through the network in eval mode
        with torch.no_grad():
            out = model.eval()(torch.randn(1, *_input_shape(task_name, prof)))
        assert out.shape == (1, prof.num_classes) and torch.isfinite(out).all()
        return
    out = model(torch.randn(2, *_input_shape(task_name, prof)))
    assert out.shape == (2, prof.num_classes)
    assert torch.isfinite(out).all()
    task.loss_fn(out, torch.tensor([0, 1])).backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("task_name", sorted(TASKS.keys() & {*INPUT, "imagenet-resnet18"}))
def test_build_is_deterministic_under_the_torch_seed(task_name: str) -> None:
    task = get_task(task_name)

    def weights(seed: int) -> list[torch.Tensor]:
        torch.manual_seed(seed)
        return list(task.build_model("smoke").state_dict().values())

    a, b, c = weights(1), weights(1), weights(2)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))


@pytest.mark.parametrize("task_name", SMALL)
@pytest.mark.parametrize("profile", ["smoke", "paper"])
def test_small_models_follow_the_lab_conventions(task_name: str, profile: str) -> None:
    model = get_task(task_name).build_model(profile)
    mods = [m for m in model.modules() if not isinstance(m, nn.Sequential)]
    weighted = [i for i, m in enumerate(mods) if isinstance(m, nn.Linear | nn.Conv2d)]
    assert weighted
    for i in weighted:
        layer = mods[i]
        assert layer.bias is None
        # batch norm (after the pooling, if any) follows every weighted layer, the output one included
        nxt = mods[i + 1] if not isinstance(mods[i + 1], nn.MaxPool2d) else mods[i + 2]
        assert isinstance(nxt, nn.BatchNorm1d | nn.BatchNorm2d) and nxt.affine
        assert nxt.num_features == layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels
    assert isinstance(mods[-1], nn.BatchNorm1d)


@pytest.mark.parametrize("task_name", SMALL)
def test_glorot_uniform_initialisation(task_name: str) -> None:
    torch.manual_seed(0)
    model = get_task(task_name).build_model("quick")
    for layer in (m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)):
        w = layer.weight
        receptive = w[0, 0].numel()
        h = math.sqrt(1.5 / ((w.shape[1] + w.shape[0]) * receptive))
        assert glorot_bound(layer) == pytest.approx(h)
        assert w.abs().max() <= h
        if w.numel() >= 2000:  # enough draws to see the uniform law: max near h, variance h^2/3
            assert w.abs().max() > 0.98 * h
            assert w.var().item() == pytest.approx(h * h / 3, rel=0.1)


def _shapes(model: nn.Module) -> list[tuple[int, ...]]:
    return [tuple(m.weight.shape) for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)]


def test_paper_architectures() -> None:
    assert _shapes(get_task("mnist-mlp").build_model("paper")) == [
        (2048, 784), (2048, 2048), (2048, 2048), (10, 2048)]
    assert _shapes(get_task("mnist-lenet5").build_model("paper")) == [
        (20, 1, 5, 5), (50, 20, 5, 5), (500, 800), (10, 500)]
    assert _shapes(get_task("cifar10-vgg").build_model("paper")) == [
        (128, 3, 3, 3), (128, 128, 3, 3), (256, 128, 3, 3), (256, 256, 3, 3), (512, 256, 3, 3),
        (512, 512, 3, 3), (1024, 8192), (1024, 1024), (10, 1024)]
    assert _shapes(get_task("svhn-net").build_model("paper")) == [
        (64, 3, 3, 3), (64, 64, 3, 3), (128, 64, 3, 3), (128, 128, 3, 3), (256, 128, 3, 3),
        (256, 256, 3, 3), (1024, 4096), (1024, 1024), (10, 1024)]
    paper = get_task("imagenet-resnet18").build_model("paper")
    assert isinstance(paper, torchvision.models.ResNet)
    assert _shapes(paper) == _shapes(torchvision.models.resnet18(num_classes=1000))


def test_quick_models_are_narrower() -> None:
    assert _shapes(get_task("mnist-mlp").build_model("quick"))[0] == (512, 784)
    quick = get_task("imagenet-resnet18").build_model("quick")
    shapes = _shapes(quick)
    assert shapes[0] == (8, 3, 3, 3) and shapes[-1] == (10, 64)
    # still ResNet-18: a stem, 8 basic blocks of 2 convs, 3 downsampling 1x1 convs, the classifier
    assert len(shapes) == 1 + 16 + 3 + 1


def test_resnet18_width_needs_the_small_input_variant() -> None:
    with pytest.raises(ValueError, match="small_input"):
        resnet18(width=0.5)
