"""The task registry: the built-in tasks, profiles as data, user-registered tasks, the data root."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest
import torch

import benchmark.tasks as tasks_pkg
from benchmark.config import RunConfig
from benchmark.errors import UserError
from benchmark.tasks import (
    TASKS,
    Data,
    Profile,
    Task,
    get_task,
    register_task,
    resolve_data_root,
    step_every,
)

BUILTIN = ("mnist-mlp", "mnist-lenet5", "cifar10-vgg", "svhn-net", "imagenet-resnet18")


def test_builtin_tasks_and_their_defaults() -> None:
    assert set(BUILTIN) <= set(TASKS)
    for name in BUILTIN:
        task = get_task(name)
        assert task.name == name and set(task.profiles) == {"paper", "quick", "smoke"}
        big = name == "imagenet-resnet18"
        assert (task.default_a, task.default_m) == ((0.9, 10) if big else (0.6, 5))
        assert task.loss == ("cross_entropy" if big else "squared_hinge")


@pytest.mark.parametrize("name", BUILTIN)
def test_profiles_fit_their_purpose(name: str) -> None:
    task = get_task(name)
    paper, quick, smoke = (task.profile(p) for p in ("paper", "quick", "smoke"))
    assert paper.width == 1.0 and paper.n_train is None and paper.epoch_scale == 1.0
    # quick: enough epochs for BLAQ's period to give active epochs, and the first part of the
    # paper's schedule, at most all of it (a quick run never decays faster than the paper's)
    assert quick.epochs >= 10 and quick.epochs % task.default_m == 0
    assert quick.epochs / paper.epochs <= quick.epoch_scale <= 1.0
    assert smoke.epochs < quick.epochs < paper.epochs
    for p in (quick, smoke):
        assert p.width < 1.0 and p.n_train is not None and p.n_train <= 3500
        assert p.est_seconds is not None and p.est_seconds > 0
    assert quick.est_seconds <= 40 and smoke.est_seconds <= 3
    assert paper.est_seconds is not None and paper.est_seconds > quick.est_seconds


def test_paper_settings_match_the_spec() -> None:
    rows = {"mnist-mlp": (50, 100, 0.005), "mnist-lenet5": (20, 128, 0.005),
            "cifar10-vgg": (100, 100, 0.02), "svhn-net": (50, 50, 0.001),
            "imagenet-resnet18": (175, 256, 2e-4)}
    for name, (epochs, batch, lr) in rows.items():
        p = get_task(name).profile("paper")
        assert (p.epochs, p.batch_size, p.lr) == (epochs, batch, lr)


def test_unknown_task_and_profile_are_user_errors() -> None:
    with pytest.raises(UserError, match="unknown task 'mnist'.*mnist-mlp"):
        get_task("mnist")
    with pytest.raises(UserError, match="paper"):
        get_task("mnist-mlp").profile("full")


def test_run_config_resolves_against_the_registry() -> None:
    key = RunConfig(task="cifar10-vgg", method="blaq", profile="quick").key()
    task = get_task("cifar10-vgg")
    assert (key["a"], key["m"], key["epochs"]) == (0.6, 5, task.profile("quick").epochs)
    assert key["lr_schedule"] == "step15x0.5"
    key = RunConfig(task="imagenet-resnet18", method="blaq", profile="paper").key()
    assert (key["a"], key["m"], key["epochs"], key["lr_schedule"]) == (0.9, 10, 175, "exp0.95")


def test_the_docstring_example_registers_a_task(monkeypatch) -> None:
    monkeypatch.setattr(tasks_pkg.registry, "TASKS", dict(TASKS))
    block = []
    for line in tasks_pkg.__doc__.split("::\n", 1)[1].splitlines():
        if line.strip() and not line.startswith("    "):
            break
        block.append(line)
    exec(textwrap.dedent("\n".join(block)), {})  # the module's own example, as a user runs it
    task = tasks_pkg.registry.get_task("mnist-tiny")
    assert task.label == "MNIST tiny MLP" and task.dataset == "MNIST"
    model = task.build_model("smoke")
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    assert "mnist-tiny" not in TASKS  # the real registry is untouched by this test


def test_a_user_task_on_own_tensors_round_trips(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(tasks_pkg.registry, "TASKS", dict(TASKS))
    g = torch.Generator().manual_seed(0)

    def toy_data(profile: Profile, root: Path, download: bool, device: torch.device, seed: int) -> Data:
        x = torch.randn(60, 4, generator=g)
        y = (x[:, 0] > 0).long()
        return Data.from_tensors((x[:40], y[:40]), (x[40:50], y[40:50]), (x[50:], y[50:]),
                                 profile.batch_size, device, seed, dataset="toy", source=str(root))

    profiles = {n: Profile(n, epochs=e, batch_size=8, lr=0.01) for n, e in
                (("paper", 20, ), ("quick", 10), ("smoke", 2))}
    task = register_task(Task(
        name="toy", label="Toy", dataset="toy", loss="squared_hinge",
        model=lambda p: torch.nn.Sequential(torch.nn.Linear(4, 2, bias=False), torch.nn.BatchNorm1d(2)),
        data=toy_data, profiles=profiles, schedules=(step_every("flat", 1000, 0.1),)))
    got = tasks_pkg.registry.get_task("toy")
    assert got is task and got.lr_schedules == ("flat",)
    data = got.load_data("quick", tmp_path, seed=3)
    assert data.info["source"] == str(tmp_path) and data.info["n_train"] == 40
    x, y = next(iter(data.train))
    loss = got.loss_fn(got.build_model("quick")(x), y)
    assert loss.ndim == 0 and loss.item() > 0
    # the run config sees it too
    assert RunConfig(task="toy", method="lab", profile="smoke").key()["epochs"] == 2


@pytest.mark.parametrize("change,message", [
    ({"name": ""}, "non-empty name"),
    ({"profiles": {}}, "lacks profile"),
    ({"loss": "hinge"}, "unknown loss"),
    ({"schedules": ()}, "at least one lr schedule"),
    ({"schedules": (step_every("default", 1, 0.1),)}, "not 'default'"),
])
def test_register_task_checks_the_task(change: dict, message: str) -> None:
    bad = dataclasses.replace(get_task("mnist-mlp"), **change)
    with pytest.raises(UserError, match=message):
        register_task(bad)


def test_a_profile_stored_under_another_name_is_refused() -> None:
    task = get_task("mnist-mlp")
    profiles = {**task.profiles, "quick": task.profile("smoke")}
    with pytest.raises(UserError, match="profile 'quick' is named 'smoke'"):
        register_task(dataclasses.replace(task, name="x", profiles=profiles))


def test_data_root_resolution(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("BLAQ_DATA_ROOT", raising=False)
    assert resolve_data_root() == Path("data")
    monkeypatch.setenv("BLAQ_DATA_ROOT", str(tmp_path))
    assert resolve_data_root() == tmp_path
    assert resolve_data_root(tmp_path / "x") == tmp_path / "x"
