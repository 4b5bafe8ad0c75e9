"""Launchers: how the grid's runs are started, chosen by name (``--launcher NAME``).

The grid (benchmark.grid) plans the runs and owns the progress bar and the report; a launcher
only starts the runs it is handed and reports each outcome through a ``LaunchContext``. Built in:

- ``local``  (default) long-lived spawned worker processes on this machine, placed round-robin on
  the GPUs when there are any (benchmark.launchers.local);
- ``inline`` the runs one after another in the calling process (debugging, fast tests);
- ``slurm``  one Slurm job per run through submitit, as job arrays (benchmark.launchers.slurm).

A user registers their own from their script, at import time::

    from benchmark.launchers import Launcher, register_launcher

    class Mine(Launcher):
        name = "mine"
        def launch(self, runs, ctx):
            for run in runs:
                ...                      # start it somewhere; then, per run:
                ctx.finished(run, "completed", None)

    register_launcher("mine", Mine, "my cluster")

and selects it with ``--launcher mine``. A launcher is built from the command line's options
(``LaunchOptions``) and must not train a run that another process holds: ``run_config``, which
every built-in launcher calls where the run trains, returns ``busy`` for those.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from benchmark.errors import UserError

if TYPE_CHECKING:
    from benchmark.grid import GridRun, LaunchContext


@dataclass(frozen=True)
class SlurmOptions:
    """What each Slurm job asks for; None: the default of the run's task profile (see slurm.py)."""

    partition: str | None = None
    time_min: int | None = None  # the job's time limit, minutes
    gpus_per_run: int | None = None
    cpus_per_run: int | None = None  # also the run's torch threads
    mem_gb: float | None = None
    max_parallel: int | None = None  # array parallelism (jobs of one array running at once)
    opts: tuple[tuple[str, str], ...] = ()  # any other sbatch option: (key, value)
    poll_s: float = 5.0  # seconds between two looks at the jobs' states while waiting


@dataclass(frozen=True)
class LaunchOptions:
    """The launcher options of the command line; each launcher reads the ones it needs."""

    jobs: int | None = None  # parallel runs (local: workers; None: the launcher's default)
    threads: int | None = None  # torch threads per run (None: the launcher's default)
    device: str = "auto"
    gpus: tuple[str, ...] | None = None  # local: the GPUs to place workers on (None: all visible)
    runs_per_gpu: int = 1  # local: runs that share one GPU at a time
    wait: bool = True  # slurm: wait for the jobs (False: submit and return)
    slurm: SlurmOptions = field(default_factory=SlurmOptions)
    extra: Mapping[str, Any] = field(default_factory=dict)  # for user launchers


class Launcher(abc.ABC):
    """Starts runs somewhere and reports their outcomes; see the module doc."""

    name: str = ""

    def __init__(self, options: LaunchOptions | None = None) -> None:
        self.options = options or LaunchOptions()

    def slots(self, runs: Sequence[GridRun]) -> int:
        """How many of ``runs`` train at once (for the time estimate)."""
        return 1

    def threads(self, runs: Sequence[GridRun]) -> int | None:
        """Torch threads of each run (None: torch's default)."""
        return self.options.threads

    def describe(self, runs: Sequence[GridRun]) -> str:
        """One line for the dry run and the grid's first line: the launcher and its parallelism."""
        return f"{self.name}: {self.slots(runs)} at a time"

    def placement(self, runs: Sequence[GridRun]) -> dict[str, str]:
        """Per run id, where the run goes and what it asks for (the dry run's ``where``)."""
        return {}

    def check(self, runs: Sequence[GridRun]) -> None:
        """Raise UserError if ``runs`` cannot be launched here (before anything is written)."""
        return None

    @abc.abstractmethod
    def launch(self, runs: Sequence[GridRun], ctx: LaunchContext) -> None:
        """Start ``runs`` and report each through ``ctx.finished`` (or ``ctx.left`` when not waiting).

        UserError stops the grid. KeyboardInterrupt must leave the store resumable.
        """


@dataclass(frozen=True)
class LauncherEntry:
    name: str
    factory: Callable[[LaunchOptions], Launcher]
    description: str


LAUNCHERS: dict[str, LauncherEntry] = {}


def register_launcher(name: str, factory: Callable[[LaunchOptions], Launcher],
                      description: str = "") -> None:
    """Make ``--launcher NAME`` build ``factory(options)``; a name registered again is replaced."""
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"launcher name must be a word, not {name!r}")
    LAUNCHERS[name] = LauncherEntry(name, factory, description)


def get_launcher(name: str) -> LauncherEntry:
    try:
        return LAUNCHERS[name]
    except KeyError:
        raise UserError(f"unknown launcher {name!r}; known: {', '.join(LAUNCHERS)}") from None


def make_launcher(name: str | Launcher, options: LaunchOptions | None = None) -> Launcher:
    """The launcher called ``name`` built from ``options`` (a Launcher instance is returned as is)."""
    if isinstance(name, Launcher):
        return name
    launcher = get_launcher(name).factory(options or LaunchOptions())
    if not getattr(launcher, "name", ""):
        launcher.name = name
    return launcher


def _local(options: LaunchOptions) -> Launcher:
    from benchmark.launchers.local import LocalLauncher

    return LocalLauncher(options)


def _inline(options: LaunchOptions) -> Launcher:
    from benchmark.launchers.inline import InlineLauncher

    return InlineLauncher(options)


def _slurm(options: LaunchOptions) -> Launcher:
    from benchmark.launchers.slurm import SlurmLauncher

    return SlurmLauncher(options)


register_launcher("local", _local, "spawned worker processes on this machine (GPUs round-robin)")
register_launcher("inline", _inline, "one run after another in this process (debugging)")
register_launcher("slurm", _slurm, "one Slurm job per run through submitit (job arrays)")
