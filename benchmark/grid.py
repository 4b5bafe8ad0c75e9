"""Table and figure specs -> run configs -> run ids -> a launcher that trains what is missing.

A grid is the union of the run configs of the requested specs, deduplicated by run id. Each run
id is looked up in the store: completed runs are reused ("cached"), missing ones run, incomplete
ones (interrupted or killed) resume from their last checkpoint, and failed ones are kept as
failed unless ``retry_failed`` is set (a failure such as a diverging loss is deterministic for a
config and a seed, so retrying it by default would only repeat it).

``execute`` hands the runs to a launcher chosen by name (benchmark.launchers: ``local``, the
default, a pool of spawned workers on this machine; ``inline``; ``slurm``; or a user's own) and
owns what is common to all of them: the progress bar (done / cached / failed / running /
pending, time left), one line per finished run, and the report.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from benchmark.config import RunConfig
from benchmark.store import check_store, open_store, run_status

if TYPE_CHECKING:
    from benchmark.launchers import Launcher, LaunchOptions


class _SpecLike(Protocol):
    key: str

    def configs(self, profile: str, seeds: Sequence[int] | None = None) -> list[RunConfig]: ...


# --------------------------------------------------------------------------------------------
# planning


@dataclass(frozen=True)
class GridRun:
    """One configuration of a grid and what the store says about it when the grid was planned.

    ``action`` is what the executor will do: ``cached`` (completed: reused), ``run`` (missing),
    ``resume`` (incomplete: continues from its checkpoint), ``retry`` (failed, rerun because
    ``retry_failed``) or ``failed`` (failed and kept as failed).
    """

    config: RunConfig
    run_id: str
    status: str
    action: str

    @property
    def label(self) -> str:
        """Task, method, bits and seed in a few words, for progress lines and listings."""
        c = self.config
        words = [c.task, c.method]
        if c.scheme is not None:
            words += [f"{c.bits} bit{'s' if c.bits != 1 else ''}", c.scheme]
        if c.a is not None:
            words += [f"a={c.a:g}", f"m={c.m}"]
        return " ".join([*words, "seed", str(c.seed)])


@dataclass(frozen=True)
class Plan:
    """A deduplicated grid with the store status of every run, in the order the specs listed them."""

    runs: tuple[GridRun, ...]
    runs_dir: Path

    def with_action(self, *actions: str) -> list[GridRun]:
        return [r for r in self.runs if r.action in actions]

    @property
    def to_run(self) -> list[GridRun]:
        """The runs the executor starts: missing, incomplete, and failed ones when retried."""
        return self.with_action("run", "resume", "retry")

    def counts(self) -> dict[str, int]:
        """How many runs take each action, plus ``total``."""
        out = {a: 0 for a in ("cached", "run", "resume", "retry", "failed")}
        for r in self.runs:
            out[r.action] += 1
        out["total"] = len(self.runs)
        return out


def expand(specs: Iterable[_SpecLike], profile: str, seeds: Sequence[int] | None = None) -> list[RunConfig]:
    """The union of the specs' configs, resolved, deduplicated by run id (first occurrence kept)."""
    seen: set[str] = set()
    out: list[RunConfig] = []
    for spec in specs:
        for config in spec.configs(profile, seeds):
            resolved = config.resolved()
            rid = resolved.run_id
            if rid not in seen:
                seen.add(rid)
                out.append(resolved)
    return out


def plan_grid(configs: Iterable[RunConfig], runs_dir: str | Path, *, retry_failed: bool = False) -> Plan:
    """Look up every config's run id in the store (nothing is written; a missing store is empty).

    A ``runs_dir`` that is a file or holds a store of another format raises UserError.
    """
    runs_dir = Path(runs_dir)
    exists = check_store(runs_dir)  # a file, another format, or a non-store folder is refused
    action_of = {"completed": "cached", "missing": "run", "incomplete": "resume",
                 "failed": "retry" if retry_failed else "failed"}
    runs = []
    seen: set[str] = set()
    for config in configs:
        resolved = config.resolved()
        rid = resolved.run_id
        if rid in seen:
            continue
        seen.add(rid)
        status = run_status(runs_dir, rid) if exists else "missing"
        runs.append(GridRun(resolved, rid, status, action_of[status]))
    return Plan(tuple(runs), runs_dir)


def estimate_seconds(runs: Sequence[GridRun], runs_dir: str | Path) -> dict[str, tuple[float, str]]:
    """Per run id, the expected seconds of one run and where the number comes from.

    Past completed runs in the store with the same task, profile, method, bits and scheme give
    their mean training time ("store"); otherwise the task profile's single-thread ``est_seconds`` ("profile").
    Runs with neither are left out.
    """
    from benchmark.tasks import get_task

    past: dict[tuple, float] = {}
    if runs and Path(runs_dir).is_dir():
        import pandas as pd

        from benchmark.runsdb import load_runs

        df = load_runs(runs_dir)
        if len(df) and "train_time_s" in df:
            done = df[(df["status"] == "completed") & df["train_time_s"].notna()]
            keys = ["task", "profile", "method", "bits", "scheme"]
            means = done.groupby(keys, dropna=False)["train_time_s"].mean()
            past = {tuple(None if pd.isna(v) else v for v in k): float(t) for k, t in means.items()}
    out = {}
    for r in runs:
        c = r.config
        seconds = past.get((c.task, c.profile, c.method, c.bits, c.scheme))
        profile_seconds = get_task(c.task).profile(c.profile).est_seconds
        if seconds is not None:
            out[r.run_id] = (seconds, "store")
        elif profile_seconds is not None:
            out[r.run_id] = (float(profile_seconds), "profile")
    return out


# --------------------------------------------------------------------------------------------
# resources


def available_cores() -> int:
    """CPU cores this process may use (the affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def default_jobs(device: str, runs_per_gpu: int = 1) -> int:
    """Parallel runs of the local launcher by default: one per core on the CPU (at most 8), and
    ``runs_per_gpu`` per visible GPU on a GPU machine (``device`` cuda or auto)."""
    from benchmark.launchers.local import visible_gpus

    if device in ("cuda", "auto"):
        gpus = visible_gpus(device)
        if gpus or device == "cuda":
            return max(1, len(gpus)) * runs_per_gpu
    return min(available_cores(), 8)


def threads_per_job(jobs: int) -> int:
    """Intra-op threads of each run so that ``jobs`` parallel runs do not fight over the cores."""
    return max(1, available_cores() // jobs)


# --------------------------------------------------------------------------------------------
# execution


@dataclass(frozen=True)
class RunResult:
    """What happened to one run the executor started: completed, cached, failed or busy.

    ``where`` says where it ran when the launcher knows (a GPU, a Slurm job), else "".
    """

    run: GridRun
    status: str
    reason: str | None
    seconds: float
    where: str = ""


@dataclass
class GridReport:
    """The executor's account of a grid: results of the runs it started, and the time it took."""

    plan: Plan
    results: list[RunResult] = field(default_factory=list)
    seconds: float = 0.0
    left: list[tuple[GridRun, str]] = field(default_factory=list)  # still running (not waited for)
    launcher: str = ""

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    def _store_says_incomplete(self, result: RunResult) -> bool:
        """A run reported failed whose record stays resumable (a worker or job that died under
        it, a machine fault): it is incomplete, not failed, and a plain rerun resumes it."""
        return result.status == "failed" and \
            run_status(self.plan.runs_dir, result.run.run_id) == "incomplete"

    def failures(self) -> list[tuple[GridRun, str]]:
        """Every run of the grid that is failed now, with its reason (new failures and kept ones)."""
        out = [(r.run, r.reason or "no reason recorded") for r in self.results
               if r.status == "failed" and not self._store_says_incomplete(r)]
        kept = self.plan.with_action("failed")
        if kept:
            from benchmark.runsdb import load_runs

            rows = load_runs(self.plan.runs_dir, [r.run_id for r in kept]).set_index("run_id")
            for r in kept:
                reason = rows["fail_reason"].get(r.run_id)
                out.append((r, reason if isinstance(reason, str) else "no reason recorded"))
        return out

    def busy(self) -> list[GridRun]:
        return [r.run for r in self.results if r.status == "busy"]

    def incomplete(self) -> list[tuple[GridRun, str]]:
        """Runs that stopped for the machine's reasons (a full disk, a killed worker or job):
        they keep their last epoch and resume when the same command runs again."""
        return [(r.run, r.reason or "stopped") for r in self.results
                if r.status == "incomplete" or self._store_says_incomplete(r)]

    @property
    def done(self) -> bool:
        """True when no run of the grid is left running elsewhere (``--no-wait``)."""
        return not self.left


def fetch_data(runs: Iterable[GridRun], data_root: str | Path | None = None) -> None:
    """Download each dataset the runs need, once, in this process, before the workers start.

    Parallel workers downloading the same archive at once would corrupt it; loading the data here
    also fills the tasks' preprocessing cache, which the workers then read.
    """
    from benchmark.tasks import get_task

    for task, profile in dict.fromkeys((r.config.task, r.config.profile) for r in runs):
        get_task(task).load_data(profile, data_root, download=True)


class LaunchContext:
    """What a launcher gets from the grid: where the runs go, and where their outcomes go.

    ``finished(run, status, reason)`` reports a run's outcome (completed | cached | failed |
    busy); ``status(running=, pending=)`` the launcher's current counts for the progress bar;
    ``left(run, where)`` a run left running elsewhere (``--no-wait``), reported as still running.
    """

    def __init__(self, plan: Plan, report: GridReport, *, data_root: str | Path | None,
                 device: str, progress: bool, total: int) -> None:
        from tqdm import tqdm

        self.plan = plan
        self.runs_dir = plan.runs_dir
        self.data_root = data_root
        self.device = device
        self.report = report
        self.progress = progress
        self.total = total
        self.running = 0
        self.pending = total
        self._started: dict[str, float] = {}
        self._cached = plan.counts()["cached"]
        self._failed = plan.counts()["failed"]
        self._tqdm = tqdm
        self.bar = tqdm(total=total, desc="runs", unit="run", file=sys.stderr, disable=not progress,
                        dynamic_ncols=True, mininterval=0.5)
        self.bar.set_postfix_str(self._postfix())

    def _postfix(self) -> str:
        r = self.report
        return (f"done {r.count('completed')}, cached {self._cached + r.count('cached')}, "
                f"failed {r.count('failed') + self._failed}, running {self.running}, "
                f"pending {self.pending}")

    def status(self, *, running: int, pending: int) -> None:
        if (running, pending) != (self.running, self.pending):
            self.running, self.pending = running, pending
            self.bar.set_postfix_str(self._postfix())

    def finished(self, run: GridRun, status: str, reason: str | None, *,
                 seconds: float | None = None, where: str = "") -> None:
        result = RunResult(run, status, reason, 0.0 if seconds is None else seconds, where)
        self.report.results.append(result)
        self.bar.set_postfix_str(self._postfix(), refresh=False)
        self.bar.update(1)
        if self.progress:
            why = f"  ({reason})" if reason and status != "completed" else ""
            at = f"  [{where}]" if where else ""
            self._tqdm.write(f"[{len(self.report.results):>{len(str(self.total))}}/{self.total}] "
                             f"{status:<9} {run.run_id}  {run.label}  {result.seconds:.1f} s{at}{why}",
                             file=sys.stderr)

    def left(self, run: GridRun, where: str) -> None:
        self.report.left.append((run, where))

    def close(self) -> None:
        self.bar.close()


def make_launcher(launcher: str | Launcher = "local", options: LaunchOptions | None = None,
                  **kwargs: Any) -> Launcher:
    """The launcher named ``launcher`` (see benchmark.launchers), built from ``options`` or from
    LaunchOptions fields given as keywords (``jobs=``, ``threads=``, ``device=``, ...)."""
    from benchmark.launchers import LaunchOptions
    from benchmark.launchers import make_launcher as build

    if options is None:
        options = LaunchOptions(**kwargs)
    return build(launcher, options)


def execute(
    plan: Plan,
    *,
    jobs: int | None = None,
    threads: int | None = None,
    data_root: str | Path | None = None,
    device: str = "auto",
    download: bool = False,
    progress: bool = True,
    launcher: str | Launcher = "local",
    options: LaunchOptions | None = None,
) -> GridReport:
    """Train the plan's missing, incomplete (and retried) runs through ``launcher``.

    ``options`` (benchmark.launchers.LaunchOptions) configure the launcher; without them
    ``jobs``, ``threads`` and ``device`` do (the local launcher's worker count and threads).
    With ``download``, the datasets are fetched first, here (see ``fetch_data``). With
    ``progress``, a tqdm bar over the grid and one line per finished run go to stderr.
    Ctrl-C (KeyboardInterrupt) is the launcher's to handle (the local one stops its workers,
    whose runs are recorded as interrupted and resume on the next call), and is re-raised.
    """
    todo = list(plan.to_run)
    report = GridReport(plan)
    start = time.monotonic()
    if not todo:
        return report
    if options is None:
        launcher = make_launcher(launcher, jobs=jobs, threads=threads, device=device)
    else:
        launcher = make_launcher(launcher, options)
    report.launcher = launcher.name
    launcher.check(todo)
    open_store(plan.runs_dir, create=True)
    if download:
        fetch_data(todo, data_root)
    ctx = LaunchContext(plan, report, data_root=data_root, device=device, progress=progress,
                        total=len(todo))
    try:
        launcher.launch(todo, ctx)
    finally:
        ctx.close()
        report.seconds = time.monotonic() - start
    return report
