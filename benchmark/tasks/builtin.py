"""The paper's five tasks and their profiles (docs/spec.md section 5), registered on import.

Profiles: ``paper`` is the paper's setting; ``quick`` runs in well under a minute on one CPU
thread (narrower models, subsets, at least 10 epochs so that BLAQ's period gives active
epochs); ``smoke`` runs in seconds, for tests.

A quick profile runs the first part of the paper's schedule (``epoch_scale``): compressing all
of it into 10 epochs decayed the lr before the narrow networks had learned (binary VGG-small on
the CIFAR stand-in: test accuracy 63-88% over three seeds with the whole 100-epoch schedule,
95-96% with its first 50 epochs; SVHN and ResNet-18 gained 2-3 points with their first 20).

``est_seconds`` (for the grid's time estimates) is plain Adam, measured on the development
CPU with one thread: for quick and smoke, the CPU time of a whole full-precision run through
``benchmark.run`` with the data cache warm (process start-up and imports not included); for
paper, an extrapolation from timed Adam steps at the paper's batch size on random inputs
(data loading not included). Quantized runs cost more: measured quick LAQ 1-bit runs took
1.0-1.25x the fp time on the conv nets and 2.1x on the MLP (2-bit LAT: 1.1-1.75x, MLP 3x),
and BLAQ's active epochs take two passes.
"""

from __future__ import annotations

from benchmark.tasks import datasets, models
from benchmark.tasks.registry import Profile, Task, register_task
from benchmark.tasks.schedules import exponential, step_at, step_every


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
                est_seconds=4_400,
                note="784-2048x3-10, 50k/10k/10k"),
        Profile("quick", epochs=10, batch_size=100, lr=0.005, width=0.25, epoch_scale=10 / 50,
                est_seconds=5.5,
                n_train=3500, n_val=500, n_test=1000, note="784-512x3-10 on 3,500 images"),
        Profile("smoke", epochs=2, batch_size=50, lr=0.005, width=1 / 32, epoch_scale=2 / 50,
                est_seconds=0.2,
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
                est_seconds=520,
                note="20C5-MP2-50C5-MP2-500FC-10, 50k/10k/10k"),
        Profile("quick", epochs=10, batch_size=100, lr=0.005, width=0.5, epoch_scale=10 / 20,
                est_seconds=7.5,
                n_train=3500, n_val=500, n_test=1000, note="10C5-MP2-25C5-MP2-250FC-10 on 3,500 images"),
        Profile("smoke", epochs=2, batch_size=50, lr=0.005, width=0.25, epoch_scale=2 / 20,
                est_seconds=0.2,
                n_train=300, n_val=100, n_test=100, note="5C5-MP2-12C5-MP2-125FC-10 on 300 images"),
    ),
    schedules=(step_every("step15x0.1", 15, 0.1),),
    default_a=0.6, default_m=5,
    description="MNIST, LeNet5 20C5-MP2-50C5-MP2-500FC-10 (the appendix writes C3; we use 5x5), L2-SVM loss",
))

# quick/smoke caps of the image tasks: the digits stand-in's split (1,197/200/400), also applied
# to real data on disk, so that a quick run costs the same with or without the files
_QUICK_CAPS = {"n_train": 1200, "n_val": 200, "n_test": 400}
_SMOKE_CAPS = {"n_train": 200, "n_val": 100, "n_test": 100}

CIFAR10_VGG = register_task(Task(
    name="cifar10-vgg",
    label="CIFAR-10 VGG-small",
    dataset="CIFAR-10",
    loss="squared_hinge",
    model=lambda p: models.vgg_small(width=p.width),
    data=datasets.load_cifar10,
    profiles=_profiles(
        Profile("paper", epochs=100, batch_size=100, lr=0.02,
                est_seconds=224_000,
                note="2x128C3-MP2-2x256C3-MP2-2x512C3-MP2-2x1024FC-10, 45k/5k/10k"),
        Profile("quick", epochs=10, batch_size=50, lr=0.02, width=1 / 16, epoch_scale=10 / 50,
                est_seconds=8,
                **_QUICK_CAPS, note="VGG-small at 1/16 width (8-16-32 channels, 64 FC)"),
        Profile("smoke", epochs=2, batch_size=50, lr=0.02, width=1 / 32, epoch_scale=2 / 100,
                est_seconds=0.3,
                **_SMOKE_CAPS, note="VGG-small at 1/32 width"),
    ),
    schedules=(
        step_every("step15x0.5", 15, 0.5),  # the LAB code's decay
        step_every("step5x0.1", 5, 0.1),    # the BLAQ appendix's decay (lr ~0 after 15 epochs)
    ),
    default_a=0.6, default_m=5,
    description="CIFAR-10, VGG-small (batch norm after every layer), GCN + ZCA inputs, L2-SVM loss",
))

SVHN_NET = register_task(Task(
    name="svhn-net",
    label="SVHN net",
    dataset="SVHN",
    loss="squared_hinge",
    model=lambda p: models.svhn_net(width=p.width),
    data=datasets.load_svhn,
    profiles=_profiles(
        Profile("paper", epochs=50, batch_size=50, lr=0.001,
                est_seconds=329_000,
                note="2x64C3-MP2-2x128C3-MP2-2x256C3-MP2-2x1024FC-10, train+extra minus 6k / 6k / 26,032"),
        Profile("quick", epochs=10, batch_size=50, lr=0.001, width=0.125, epoch_scale=10 / 20,
                est_seconds=8.5,
                **_QUICK_CAPS, note="SVHN net at 1/8 width (8-16-32 channels, 128 FC)"),
        Profile("smoke", epochs=2, batch_size=50, lr=0.001, width=1 / 16, epoch_scale=2 / 50,
                est_seconds=0.3,
                **_SMOKE_CAPS, note="SVHN net at 1/16 width"),
    ),
    schedules=(step_at("multistep15-25x0.1", (15, 25), 0.1),),
    default_a=0.6, default_m=5,
    description="SVHN, 6-conv/3-FC net (batch norm after every layer), contrast-normalised inputs, L2-SVM loss",
))

IMAGENET_RESNET18 = register_task(Task(
    name="imagenet-resnet18",
    label="ImageNet ResNet-18",
    dataset="ImageNet",
    loss="cross_entropy",
    # torchvision's resnet18 at full width and size; the small-input variant otherwise
    model=lambda p: models.resnet18(width=p.width, num_classes=p.num_classes,
                                    small_input=p.width != 1.0 or (p.input_size or 224) < 64),
    data=datasets.load_imagenet,
    profiles=_profiles(
        Profile("paper", epochs=175, batch_size=256, lr=2e-4, n_val=10_000, eval_batch_size=256,
                est_seconds=31_500_000,
                input_size=224, num_classes=1000, num_workers=8,
                note="torchvision resnet18; 10 images a class held out of train for validation; "
                     "the paper usually starts from a full-precision model"),
        Profile("quick", epochs=10, batch_size=50, lr=2e-3, width=0.125, epoch_scale=10 / 20,
                est_seconds=7,
                input_size=16, **_QUICK_CAPS,
                note="ResNet-18 for 16x16 inputs at 1/8 width (8-64 channels), 10 classes, from scratch (lr x10)"),
        Profile("smoke", epochs=2, batch_size=50, lr=2e-3, width=1 / 16, epoch_scale=2 / 175,
                est_seconds=0.4,
                input_size=16, **_SMOKE_CAPS,
                note="ResNet-18 for 16x16 inputs at 1/16 width, 10 classes"),
    ),
    schedules=(exponential("exp0.95", 0.95),),
    default_a=0.9, default_m=10,
    description="ImageNet (ILSVRC12), ResNet-18 with every layer quantized, cross-entropy",
))
