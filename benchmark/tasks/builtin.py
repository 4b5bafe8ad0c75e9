"""The paper's five tasks and their profiles (SPEC section 5), registered on import.

Profiles: ``paper`` is the paper's setting; ``quick`` runs in well under a minute on one CPU
thread (narrower models, subsets, at least 10 epochs so that BLAQ's period gives active
epochs); ``smoke`` runs in seconds, for tests. ``est_seconds`` were measured on the
development machine (one thread, plain Adam; BLAQ's active epochs cost about twice as much).
"""

from __future__ import annotations

from benchmark.tasks import datasets, models
from benchmark.tasks.registry import Profile, Task, register_task
from benchmark.tasks.schedules import step_at, step_every


def _profiles(*profiles: Profile) -> dict[str, Profile]:
    return {p.name: p for p in profiles}


MNIST_MLP = register_task(Task(
    name="mnist-mlp",
    label="MNIST MLP",
    dataset="MNIST",
    loss="squared_hinge",
    model=lambda p: models.mlp(width=p.width),
    data=datasets.load_mnist,
    profiles=_profiles(
        Profile("paper", epochs=50, batch_size=100, lr=0.005,
                note="784-2048x3-10, 50k/10k/10k"),
        Profile("quick", epochs=10, batch_size=100, lr=0.005, width=0.125, epoch_scale=10 / 50,
                n_train=3500, n_val=500, n_test=1000, note="784-256x3-10 on 3,500 images"),
        Profile("smoke", epochs=2, batch_size=50, lr=0.005, width=1 / 32, epoch_scale=2 / 50,
                n_train=300, n_val=100, n_test=100, note="784-64x3-10 on 300 images"),
    ),
    schedules=(
        step_every("step15x0.1", 15, 0.1),
        step_at("lab", (15, 25), 0.1, scale=2.0),  # LAB's MNIST setting: lr 0.01 (2 x 0.005)
    ),
    default_a=0.6, default_m=5,
    description="MNIST, MLP 784-2048-2048-2048-10 (batch norm after every layer), L2-SVM loss",
))

MNIST_LENET5 = register_task(Task(
    name="mnist-lenet5",
    label="MNIST LeNet5",
    dataset="MNIST",
    loss="squared_hinge",
    model=lambda p: models.lenet5(width=p.width),
    data=datasets.load_mnist,
    profiles=_profiles(
        Profile("paper", epochs=20, batch_size=128, lr=0.005,
                note="20C5-MP2-50C5-MP2-500FC-10, 50k/10k/10k"),
        Profile("quick", epochs=10, batch_size=100, lr=0.005, width=0.5, epoch_scale=10 / 20,
                n_train=3500, n_val=500, n_test=1000, note="10C5-MP2-25C5-MP2-250FC-10 on 3,500 images"),
        Profile("smoke", epochs=2, batch_size=50, lr=0.005, width=0.25, epoch_scale=2 / 20,
                n_train=300, n_val=100, n_test=100, note="5C5-MP2-12C5-MP2-125FC-10 on 300 images"),
    ),
    schedules=(step_every("step15x0.1", 15, 0.1),),
    default_a=0.6, default_m=5,
    description="MNIST, LeNet5 20C5-MP2-50C5-MP2-500FC-10 (the appendix writes C3; we use 5x5), L2-SVM loss",
))
