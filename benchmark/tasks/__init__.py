"""The tasks: datasets (loading, preprocessing), models, losses, lr schedules, profiles, and their registry.

A task bundles a dataset loader, a model builder, a loss, named lr schedules and the three
profiles ``paper``, ``quick`` and ``smoke``. Registering your own takes a few lines, e.g. the
MNIST data with a smaller network::

    import dataclasses
    from torch import nn
    from benchmark.tasks import get_task, register_task

    def tiny_mlp(profile):
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 64, bias=False), nn.BatchNorm1d(64),
                             nn.ReLU(), nn.Linear(64, 10, bias=False), nn.BatchNorm1d(10))

    register_task(dataclasses.replace(get_task("mnist-mlp"), name="mnist-tiny",
                                      label="MNIST tiny MLP", model=tiny_mlp))

A task on your own tensors gives ``data`` a function
``(profile, data_root, download, device, seed) -> Data``, e.g. one returning
``Data.from_tensors((x_tr, y_tr), (x_va, y_va), (x_te, y_te), profile.batch_size, device, seed)``,
and its own ``Profile`` per profile name (``Task(name=..., profiles={"paper": Profile("paper",
epochs=..., batch_size=..., lr=...), "quick": ..., "smoke": ...}, ...)``).
"""

from benchmark.tasks import builtin as _builtin  # noqa: F401  (registers the paper's tasks)
from benchmark.tasks.batches import Data, DeviceLoader, TensorBatches
from benchmark.tasks.losses import accuracy, count_correct, cross_entropy, get_loss, squared_hinge
from benchmark.tasks.registry import (
    DATA_ROOT_ENV,
    PROFILE_NAMES,
    TASKS,
    Profile,
    Task,
    get_task,
    register_task,
    resolve_data_root,
)
from benchmark.tasks.schedules import Schedule, exponential, step_at, step_every

__all__ = [
    "DATA_ROOT_ENV",
    "PROFILE_NAMES",
    "TASKS",
    "Data",
    "DeviceLoader",
    "Profile",
    "Schedule",
    "Task",
    "TensorBatches",
    "accuracy",
    "count_correct",
    "cross_entropy",
    "exponential",
    "get_loss",
    "get_task",
    "register_task",
    "resolve_data_root",
    "squared_hinge",
    "step_at",
    "step_every",
]
