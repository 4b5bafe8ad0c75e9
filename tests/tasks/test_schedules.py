"""Learning-rate schedules: the paper's decays, their compression into quick profiles, the task variants."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from benchmark.errors import UserError
from benchmark.tasks import get_task, step_at, step_every
from benchmark.tasks.schedules import exponential


def _lrs(task_name: str, profile, schedule: str = "default", epochs: int | None = None) -> list[float]:
    task = get_task(task_name)
    prof = task.profile(profile)
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=prof.lr)
    sched = task.make_scheduler(opt, prof, schedule)
    out = []
    for _ in range(epochs or prof.epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_mnist_paper_default_is_x0_1_every_15_epochs() -> None:
    lrs = _lrs("mnist-mlp", "paper")
    assert lrs[0] == pytest.approx(0.005) and lrs[14] == pytest.approx(0.005)
    assert lrs[15] == pytest.approx(5e-4) and lrs[30] == pytest.approx(5e-5) and lrs[49] == pytest.approx(5e-6)


def test_mnist_lab_variant_starts_at_0_01_and_decays_at_15_and_25() -> None:
    lrs = _lrs("mnist-mlp", "paper", "lab")
    assert lrs[0] == pytest.approx(0.01) and lrs[14] == pytest.approx(0.01)
    assert lrs[15] == pytest.approx(0.001) and lrs[24] == pytest.approx(0.001)
    assert lrs[25] == pytest.approx(1e-4) and lrs[49] == pytest.approx(1e-4)


def test_cifar_variants_lab_code_default_and_appendix() -> None:
    task = get_task("cifar10-vgg")
    assert task.lr_schedules[0] == "step15x0.5" and "step5x0.1" in task.lr_schedules
    lab = _lrs("cifar10-vgg", "paper")
    assert lab[15] == pytest.approx(0.01) and lab[29] == pytest.approx(0.01) and lab[30] == pytest.approx(0.005)
    app = _lrs("cifar10-vgg", "paper", "step5x0.1")
    assert app[4] == pytest.approx(0.02) and app[5] == pytest.approx(0.002) and app[15] == pytest.approx(2e-5)


def test_svhn_and_imagenet_paper_schedules() -> None:
    svhn = _lrs("svhn-net", "paper")
    assert svhn[14] == pytest.approx(1e-3) and svhn[15] == pytest.approx(1e-4) and svhn[25] == pytest.approx(1e-5)
    imnet = _lrs("imagenet-resnet18", "paper", epochs=4)
    assert imnet == pytest.approx([2e-4 * 0.95 ** e for e in range(4)])


def test_quick_profile_compresses_the_paper_schedule() -> None:
    # quick MNIST: 10 epochs for the paper's 50, so the decays at paper epochs 15, 30, 45 fall on 3, 6, 9
    lrs = _lrs("mnist-mlp", "quick")
    factors = [round(lr / lrs[0], 6) for lr in lrs]
    assert factors == [1, 1, 1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.001]


def test_epoch_scale_one_keeps_the_paper_epochs() -> None:
    prof = dataclasses.replace(get_task("mnist-mlp").profile("quick"), epoch_scale=1.0, epochs=20)
    lrs = _lrs("mnist-mlp", prof)
    assert lrs[14] == pytest.approx(prof.lr) and lrs[15] == pytest.approx(prof.lr / 10)


def test_schedule_factor_functions() -> None:
    assert [step_every("s", 2, 0.5).factor(t) for t in (0, 1.9, 2, 4.5)] == [1, 1, 0.5, 0.25]
    assert [step_at("m", (1, 3), 0.1, scale=2.0).factor(t) for t in (0, 1, 2.99, 3)] == pytest.approx([2, 0.2, 0.2, 0.02])
    assert exponential("e", 0.5).factor(3) == 0.125
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="epoch_scale"):
        step_every("s", 2, 0.5).make(opt, 0.0)


def test_unknown_schedule_is_user_error() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(UserError, match="step15x0.1, lab"):
        get_task("mnist-mlp").make_scheduler(opt, "quick", "cosine")
