"""The spec machinery: a table or figure as data (which runs it needs, per profile), and the registry.

A spec lists its settings (task x method x bits x hyper-parameters) per profile; its grid is
those settings times the seeds, as ``RunConfig``s. Rendering selects the store's rows by the run
ids of exactly those configs, so a table never trains and a run never knows its table. Specs
share runs wherever their configs are equal (e.g. Table 1's LAQ/BLAQ runs draw Figures 3 and 4).

A user adds a table of their own in a few lines::

    from benchmark.specs import Entry, Spec, register_spec
    from benchmark.tables import render_method_table
    register_spec(Spec(
        key="table8", kind="table", number=8, title="MNIST MLP, BLAQ blend variants",
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

from benchmark.config import PROFILES, RunConfig, run_id
from benchmark.errors import UserError
from benchmark.results import SETTING_KEYS, Rendered, Results
from benchmark.runsdb import CONFIG_COLUMNS, load_runs

KINDS = ("table", "figure")
_SEEDS = {"smoke": (0,), "quick": (0, 1, 2), "paper": (0, 1, 2)}


def default_seeds(profile: str) -> tuple[int, ...]:
    """The seeds a profile runs by default: one in smoke, three in quick and in paper (a spread,
    and a t interval over two degrees of freedom, where two seeds would give one)."""
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
    renderer: Callable[[Results], Rendered]
    claims: tuple[Callable[[Results], str], ...] = ()
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

    def results(self, runs_dir: str | os.PathLike[str], profile: str,
                seeds: Sequence[int] | None = None,
                out_root: str | os.PathLike[str] = ".") -> Results:
        """The spec's settings x seeds joined with the store's rows for their run ids (status
        "missing" where the store has none): what the renderer and the claims read."""
        chosen = self.seeds(profile, seeds)
        entries = self.entries(profile)
        rows = []
        for i, entry in enumerate(entries):
            for seed in chosen:
                key = entry.config(profile, seed).key()
                rows.append({"entry": i, "run_id": run_id(key), **key})
        if not rows:  # a figure that needs no runs (e.g. the toy problem)
            empty = pd.DataFrame(columns=["entry", "seed", "run_id", "status", *SETTING_KEYS,
                                          "stand_in"])
            return Results(self, profile, chosen, Path(runs_dir), Path(out_root), entries, empty)
        planned = pd.DataFrame(rows).drop(columns=["extra"])
        for col in ("bits", "m", "epochs", "seed"):
            planned[col] = planned[col].astype("Int64")  # None for unused m: an integer column
        runs = load_runs(runs_dir, planned.run_id).drop(columns=["seed", *_CONFIG_FROM_GRID])
        frame = planned.merge(runs, on="run_id", how="left")
        frame["status"] = frame["status"].fillna("missing")
        return Results(self, profile, chosen, Path(runs_dir), Path(out_root), entries, frame)

    def render(self, runs_dir: str | os.PathLike[str], profile: str,
               seeds: Sequence[int] | None = None,
               out_root: str | os.PathLike[str] = ".") -> Rendered:
        """Draw the table or figure from the runs in the store (never trains); files and text."""
        return self.renderer(self.results(runs_dir, profile, seeds, out_root))


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
    """The table or figure of that number (the last registered, where several share it);
    UserError naming the valid numbers."""
    found = [s for s in SPECS.values() if s.kind == kind and s.number == number]
    if not found:
        valid = sorted({s.number for s in SPECS.values() if s.kind == kind})
        raise UserError(f"no {kind} {number}; choose one of {', '.join(map(str, valid))}")
    return found[-1]  # a user's spec registered under a taken number is the one served


# the paper's tables and figures register themselves (as tasks/builtin.py does for the tasks)
from benchmark import catalogue as _catalogue  # noqa: E402, F401
