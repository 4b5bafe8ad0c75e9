"""The published reference numbers (top-1 accuracy, %), as data with their source.

Tables compare each measured cell with the number a paper reports for the same setting. Only
numbers that the sources give are here: a setting without one has no reference, and its table
cell shows a dash. Numbers are kept as the text the source prints (``"99.110"``), so a table
shows them at the source's precision.

Look-up key: task, method, bit width (32 for full precision), and for BLAQ the blend coefficient
``a`` and the period ``m``. A reference whose ``scheme`` is None matches any of our quantizer
schemes for that bit width (the sources do not name one).

>>> from benchmark.paper import lookup
>>> lookup("svhn-net", "blaq", 1, a=0.6, m=5).value
98.13
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SOURCES: dict[str, str] = {
    "BLAQ": "Ma et al., AAAI 2024 (BLAQ): headline results as summarised; the main text's "
    "tables were not available to us",
    "BLAQ-app": "Ma et al., AAAI 2024 (BLAQ), supplementary appendix: BLAQ sensitivity to a and m",
    "LAB": "Hou, Yao, Kwok, ICLR 2017 (LAB): test error converted to accuracy (100 - error)",
    "XNOR": "Rastegari et al., ECCV 2016 (XNOR-Net, BWN), as quoted beside BLAQ",
}
# The paper each source key stands for: a gap between two numbers is one paper's own only
# when both come from the same paper (its main text and its appendix are one paper).
PAPER_OF: dict[str, str] = {"BLAQ": "BLAQ", "BLAQ-app": "BLAQ", "LAB": "LAB", "XNOR": "XNOR"}


def same_paper(source_a: str, source_b: str) -> bool:
    """Whether two source keys (of SOURCES) are the same paper."""
    return PAPER_OF[source_a] == PAPER_OF[source_b]


@dataclass(frozen=True)
class Reference:
    """One published number: what was measured, in which setting, and where it is printed."""

    task: str
    method: str
    bits: int
    text: str  # the number as the source prints it, accuracy in %
    source: str  # a key of SOURCES
    setting: str  # the exact setting in the source
    scheme: str | None = None  # None: the source does not name the quantizer; matches any
    a: float | None = None
    m: int | None = None

    @property
    def value(self) -> float:
        return float(self.text)

    @property
    def decimals(self) -> int:
        return len(self.text.partition(".")[2])

    def matches(
        self, task: str, method: str, bits: int, scheme: str | None = None,
        a: float | None = None, m: int | None = None,
    ) -> bool:
        """Whether this number belongs to the given (resolved) setting."""
        if (self.task, self.method, self.bits) != (task, method, bits):
            return False
        if self.scheme is not None and scheme is not None and self.scheme != scheme:
            return False
        if self.a is not None and (a is None or not math.isclose(self.a, a, abs_tol=1e-9)):
            return False
        return self.m is None or self.m == m


# The appendix's grid of a (columns) and its accuracies per model, data set and period m.
APPENDIX_A = (0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)
_APPENDIX_ROWS: tuple[tuple[str, int, int, str, str], ...] = (
    # task, bits, m, the appendix row (one number per a in APPENDIX_A), the row's label
    ("cifar10-vgg", 1, 5, "90.05 90.51 90.80 91.02 91.50 90.60 90.87 90.39", "VGG-small, CIFAR-10"),
    ("cifar10-vgg", 1, 10, "89.85 89.93 90.14 90.46 90.83 91.07 90.64 89.60", "VGG-small, CIFAR-10"),
    ("mnist-mlp", 1, 5, "99.062 99.076 99.078 99.081 99.110 99.070 99.064 99.057", "MLP, MNIST"),
    ("mnist-mlp", 1, 10, "99.029 99.044 99.093 99.078 99.089 99.107 99.084 99.043", "MLP, MNIST"),
    ("mnist-lenet5", 1, 5, "99.304 99.339 99.348 99.332 99.380 99.354 99.318 99.314",
     "LeNet5, MNIST"),
    ("mnist-lenet5", 1, 10, "99.125 99.150 99.331 99.334 99.354 99.351 99.352 99.324",
     "LeNet5, MNIST"),
    ("svhn-net", 1, 5, "97.81 97.85 97.83 97.90 98.13 97.95 97.90 97.80", "SVHN net, SVHN"),
    ("svhn-net", 1, 10, "97.75 97.78 97.79 97.81 97.86 97.80 97.74 97.60", "SVHN net, SVHN"),
    ("imagenet-resnet18", 1, 5, "66.66 66.70 66.71 66.70 66.65 66.59 66.60 66.50",
     "ResNet-18, ImageNet, 1 bit"),
    ("imagenet-resnet18", 1, 10, "66.69 66.73 66.70 66.71 66.65 66.50 66.59 66.57",
     "ResNet-18, ImageNet, 1 bit"),
    ("imagenet-resnet18", 2, 5, "69.51 69.59 69.61 69.54 69.50 69.49 69.38 69.45",
     "ResNet-18, ImageNet, 2 bits"),
    ("imagenet-resnet18", 2, 10, "69.50 69.62 69.58 69.55 69.31 69.49 69.45 69.45",
     "ResNet-18, ImageNet, 2 bits"),
)
# The small models' appendix rows do not state a bit width; their a = 0.6, m = 5 entries equal
# the 1-bit headline numbers, so they are read as 1 bit.
_SMALL_MODEL_BITS_NOTE = " (bit width not stated; its a=0.6, m=5 entry equals the 1-bit headline)"


def _appendix() -> list[Reference]:
    refs = []
    for task, bits, m, row, label in _APPENDIX_ROWS:
        texts = row.split()
        note = "" if task == "imagenet-resnet18" else _SMALL_MODEL_BITS_NOTE
        for a, text in zip(APPENDIX_A, texts, strict=True):
            refs.append(Reference(
                task, "blaq", bits, text, "BLAQ-app",
                f"BLAQ sensitivity table, {label}, m={m}, a={a}{note}", a=a, m=m,
            ))
    return refs


# Headline numbers first: a look-up that matches several returns the first.
REFERENCES: tuple[Reference, ...] = (
    Reference("cifar10-vgg", "blaq", 1, "91.50", "BLAQ", "VGG-small on CIFAR-10, 1 bit, "
              "a=0.6, m=5; reported >= 1.4 above BinaryConnect, BWN and LAQ", a=0.6, m=5),
    Reference("mnist-mlp", "blaq", 1, "99.11", "BLAQ", "MLP on MNIST, 1 bit, a=0.6, m=5; "
              "reported >= 0.29 above the baselines", a=0.6, m=5),
    Reference("mnist-lenet5", "blaq", 1, "99.38", "BLAQ", "LeNet5 on MNIST, 1 bit, a=0.6, m=5",
              a=0.6, m=5),
    Reference("svhn-net", "blaq", 1, "98.13", "BLAQ", "SVHN net, 1 bit, a=0.6, m=5",
              a=0.6, m=5),
    Reference("svhn-net", "fp", 32, "97.73", "BLAQ", "SVHN net, full precision, beside BLAQ"),
    Reference("imagenet-resnet18", "blaq", 1, "66.73", "BLAQ", "ResNet-18 on ImageNet, 1 bit, "
              "a=0.9, m=10", a=0.9, m=10),
    Reference("imagenet-resnet18", "blaq", 2, "69.62", "BLAQ", "ResNet-18 on ImageNet, 2 bits, "
              "a=0.9, m=10; reported about 0.45 above OCTAV", a=0.9, m=10),
    Reference("imagenet-resnet18", "bwn", 1, "60.8", "XNOR", "ResNet-18 on ImageNet, BWN"),
    Reference("imagenet-resnet18", "fp", 32, "69.3", "XNOR", "ResNet-18 on ImageNet, full "
              "precision"),
    Reference("mnist-mlp", "fp", 32, "98.81", "LAB", "MLP on MNIST, full precision"),
    Reference("mnist-mlp", "bwn", 1, "98.80", "LAB", "MLP on MNIST, BWN"),
    Reference("mnist-mlp", "lab", 1, "98.83", "LAB", "MLP on MNIST, LAB"),
    Reference("cifar10-vgg", "fp", 32, "88.10", "LAB", "VGG-small on CIFAR-10, full precision"),
    Reference("cifar10-vgg", "bwn", 1, "88.97", "LAB", "VGG-small on CIFAR-10, BWN"),
    Reference("cifar10-vgg", "lab", 1, "89.50", "LAB", "VGG-small on CIFAR-10, LAB"),
    Reference("svhn-net", "fp", 32, "97.72", "LAB", "SVHN net, full precision"),
    Reference("svhn-net", "bwn", 1, "97.47", "LAB", "SVHN net, BWN"),
    Reference("svhn-net", "lab", 1, "97.65", "LAB", "SVHN net, LAB"),
    *_appendix(),
)


def references(
    task: str, method: str, bits: int, scheme: str | None = None,
    a: float | None = None, m: int | None = None,
) -> list[Reference]:
    """Every published number for this setting, headline numbers first."""
    return [r for r in REFERENCES if r.matches(task, method, bits, scheme, a, m)]


def lookup(
    task: str, method: str, bits: int, scheme: str | None = None,
    a: float | None = None, m: int | None = None,
) -> Reference | None:
    """The published number a table shows for this setting, or None where no source gives one."""
    found = references(task, method, bits, scheme, a, m)
    return found[0] if found else None
