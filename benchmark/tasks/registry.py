"""The task registry: a task is a dataset, a model, a loss, lr schedules and three profiles, as data."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from benchmark.config import PROFILES
from benchmark.errors import UserError
from benchmark.registry import Registry
from benchmark.tasks.batches import Data
from benchmark.tasks.losses import LOSSES, get_loss
from benchmark.tasks.schedules import Schedule

PROFILE_NAMES = PROFILES  # defined beside the run config, which checks them without torch
DATA_ROOT_ENV = "BLAQ_DATA_ROOT"


@dataclass(frozen=True)
class Profile:
    """One way to run a task: how long, how wide, on how much data.

    ``width`` multiplies the model's hidden widths; ``n_train``/``n_val``/``n_test`` cap the
    split sizes (None: the whole split); ``epoch_scale`` compresses the paper's lr schedule
    into ``epochs`` (see ``schedules``); ``est_seconds`` is the measured time of one run on one
    CPU thread (plain Adam, data loading included), for the grid's time estimates.
    """

    name: str
    epochs: int
    batch_size: int
    lr: float
    width: float = 1.0
    n_train: int | None = None
    n_val: int | None = None
    n_test: int | None = None
    eval_batch_size: int = 1000
    epoch_scale: float = 1.0
    input_size: int | None = None
    num_classes: int = 10
    num_workers: int = 0
    est_seconds: float | None = None
    note: str = ""

    def settings(self) -> dict[str, Any]:
        """The settings that change a run's numbers: part of the run id, so that editing a
        profile never lets the store serve runs made with the old one (epochs are in the config)."""
        skip = {"name", "epochs", "eval_batch_size", "num_workers", "est_seconds", "note"}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}


DataLoaderFn = Callable[[Profile, Path, bool, torch.device, int], Data]


@dataclass(frozen=True)
class Task:
    """A benchmark task. ``model(profile)`` builds the network; ``data(profile, root, download,
    device, seed)`` loads the splits; ``schedules`` are the named lr schedules, the first the default."""

    name: str
    label: str
    dataset: str
    loss: str
    model: Callable[[Profile], nn.Module]
    data: DataLoaderFn
    profiles: Mapping[str, Profile]
    schedules: tuple[Schedule, ...]
    default_a: float = 0.6
    default_m: int = 5
    description: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def lr_schedules(self) -> tuple[str, ...]:
        """Names of the lr schedules; the first is the default."""
        return tuple(s.name for s in self.schedules)

    def profile(self, name: str | Profile) -> Profile:
        """The profile of that name (a Profile passes through); UserError naming the choices."""
        if isinstance(name, Profile):
            return name
        try:
            return self.profiles[name]
        except KeyError:
            raise UserError(
                f"task {self.name!r} has profiles {', '.join(self.profiles)}, not {name!r}"
            ) from None

    def schedule(self, name: str = "default") -> Schedule:
        """The lr schedule of that name (``"default"``: the first)."""
        if name == "default":
            return self.schedules[0]
        for s in self.schedules:
            if s.name == name:
                return s
        raise UserError(
            f"task {self.name!r} has lr schedules {', '.join(self.lr_schedules)}, not {name!r}"
        )

    def build_model(self, profile: str | Profile) -> nn.Module:
        """The task's network for a profile; deterministic under ``torch.manual_seed``."""
        return self.model(self.profile(profile))

    def load_data(self, profile: str | Profile, data_root: str | Path | None = None,
                  download: bool = False, device: torch.device | str = "cpu", seed: int = 0) -> Data:
        """The splits for a profile, on ``device``; the train order is seeded by ``seed``."""
        return self.data(self.profile(profile), resolve_data_root(data_root), download,
                         torch.device(device), seed)

    def make_scheduler(self, optimizer: Optimizer, profile: str | Profile,
                       lr_schedule: str = "default") -> LRScheduler:
        """A torch lr scheduler for ``optimizer``, to be stepped once per epoch."""
        return self.schedule(lr_schedule).make(optimizer, self.profile(profile).epoch_scale)

    def loss_fn(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The task's training loss (mean over the batch)."""
        return get_loss(self.loss)(logits, y)


def resolve_data_root(data_root: str | Path | None = None) -> Path:
    """The data root: the argument, else ``$BLAQ_DATA_ROOT``, else ``./data``."""
    if data_root is not None and str(data_root) != "":
        return Path(data_root).expanduser()
    return Path(os.environ.get(DATA_ROOT_ENV) or "data").expanduser()


def _check_task(task: Task) -> None:
    missing = [p for p in PROFILE_NAMES if p not in task.profiles]
    if missing:
        raise UserError(f"task {task.name!r} lacks profile(s) {', '.join(missing)}; "
                        f"every task defines {', '.join(PROFILE_NAMES)}")
    for key, prof in task.profiles.items():
        if prof.name != key:
            raise UserError(f"task {task.name!r}: profile {key!r} is named {prof.name!r}")
    if task.loss not in LOSSES:
        raise UserError(f"task {task.name!r}: unknown loss {task.loss!r}; "
                        f"choose one of {', '.join(sorted(LOSSES))}")
    if not task.schedules:
        raise UserError(f"task {task.name!r} needs at least one lr schedule")
    if len(set(task.lr_schedules)) != len(task.schedules) or "default" in task.lr_schedules:
        raise UserError(f"task {task.name!r}: lr schedule names must be unique and not 'default'")


TASKS: dict[str, Task] = {}


def _registry() -> Registry[Task]:
    # a view over the module's dict as it is now (a test may swap the dict for a copy)
    return Registry("task", TASKS, item_type=Task, check=_check_task)


def register_task(task: Task) -> Task:
    """Add a task to the registry (replacing one of the same name) after checking it; returns it."""
    return _registry().register(task)


def get_task(name: str | Task) -> Task:
    """The registered task of that name (a Task passes through); UserError listing the names."""
    return _registry().get(name)
