"""Table and figure specs -> run configs -> run ids -> a local executor over the run store.

A grid is the union of the run configs of the requested specs, deduplicated by run id. Each run
id is looked up in the store: completed runs are reused ("cached"), missing ones run, incomplete
ones (interrupted or killed) resume from their last checkpoint, and failed ones are kept as
failed unless ``retry_failed`` is set (a failure such as a diverging loss is deterministic for a
config and a seed, so retrying it by default would only repeat it).

The executor runs the configs in ``jobs`` long-lived worker processes (spawned, so each has its
own torch with ``threads`` intra-op threads, and training imports are paid once per worker, not
once per run). The parent owns Ctrl-C: it stops the workers, each of which interrupts its run the
way Ctrl-C interrupts a single run (the run store marks it interrupted and keeps its checkpoint),
so a second invocation reuses what completed and resumes what was interrupted. A worker also
stops its run when its parent dies (Linux), so a killed grid leaves no orphan training behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing import connection, get_context
from pathlib import Path
from typing import Any, Protocol

from benchmark.config import RunConfig
from benchmark.errors import UserError
from benchmark.store import check_store, open_store, run_status

STOP_GRACE_S = 60.0  # how long a stopped worker may take to record its interrupted run


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


def default_jobs(device: str) -> int:
    """Parallel runs by default: one per core on the CPU (at most 8), one on a GPU."""
    if device == "cuda":
        return 1
    if device == "auto":
        import torch

        if torch.cuda.is_available():
            return 1
    return min(available_cores(), 8)


def threads_per_job(jobs: int) -> int:
    """Intra-op threads of each run so that ``jobs`` parallel runs do not fight over the cores."""
    return max(1, available_cores() // jobs)


# --------------------------------------------------------------------------------------------
# execution


@dataclass(frozen=True)
class RunResult:
    """What happened to one run the executor started: completed, cached, failed or busy."""

    run: GridRun
    status: str
    reason: str | None
    seconds: float


@dataclass
class GridReport:
    """The executor's account of a grid: results of the runs it started, and the time it took."""

    plan: Plan
    results: list[RunResult] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    def failures(self) -> list[tuple[GridRun, str]]:
        """Every run of the grid that is failed now, with its reason (new failures and kept ones)."""
        out = [(r.run, r.reason or "no reason recorded") for r in self.results if r.status == "failed"]
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


def fetch_data(runs: Iterable[GridRun], data_root: str | Path | None = None) -> None:
    """Download each dataset the runs need, once, in this process, before the workers start.

    Parallel workers downloading the same archive at once would corrupt it; loading the data here
    also fills the tasks' preprocessing cache, which the workers then read.
    """
    from benchmark.tasks import get_task

    for task, profile in dict.fromkeys((r.config.task, r.config.profile) for r in runs):
        get_task(task).load_data(profile, data_root, download=True)


def execute(
    plan: Plan,
    *,
    jobs: int,
    threads: int | None = None,
    data_root: str | Path | None = None,
    device: str = "auto",
    download: bool = False,
    progress: bool = True,
) -> GridReport:
    """Run the plan's missing, incomplete (and retried) runs in ``jobs`` worker processes.

    With ``download``, the datasets are fetched first, here (see ``fetch_data``). With ``progress``, a tqdm bar over the grid and one line per finished run go to stderr.
    Ctrl-C (KeyboardInterrupt) stops the workers, whose runs are recorded as interrupted and
    resume on the next call, and is re-raised.
    """
    from tqdm import tqdm

    todo = deque(plan.to_run)
    report = GridReport(plan)
    start = time.monotonic()
    if not todo:
        return report
    open_store(plan.runs_dir, create=True)
    if download:
        fetch_data(todo, data_root)
    threads = threads if threads is not None else threads_per_job(jobs)
    run_kwargs = {"runs_dir": str(plan.runs_dir), "data_root": None if data_root is None else str(data_root),
                  "device": device, "download": False}
    counts = plan.counts()
    total = len(todo)
    bar = tqdm(total=total, desc="runs", unit="run", file=sys.stderr, disable=not progress,
               dynamic_ncols=True, mininterval=0.5)

    def postfix() -> str:
        return (f"done {report.count('completed')}, cached {counts['cached'] + report.count('cached')}, "
                f"failed {report.count('failed') + counts['failed']}")

    bar.set_postfix_str(postfix())

    def note(result: RunResult) -> None:
        report.results.append(result)
        bar.set_postfix_str(postfix(), refresh=False)
        bar.update(1)
        if progress:
            why = f"  ({result.reason})" if result.reason and result.status != "completed" else ""
            tqdm.write(f"[{len(report.results):>{len(str(total))}}/{total}] {result.status:<9} "
                       f"{result.run.run_id}  {result.run.label}  {result.seconds:.1f} s{why}",
                       file=sys.stderr)

    pool = _WorkerPool(threads, run_kwargs)
    try:
        pool.run(min(jobs, total), todo, note)
        pool.close()
    except BaseException:
        pool.stop()
        raise
    finally:
        bar.close()
        report.seconds = time.monotonic() - start
    return report


@dataclass
class _Worker:
    process: Any
    conn: connection.Connection
    ready: bool = False
    run: GridRun | None = None
    started: float = 0.0


class _WorkerPool:
    """Long-lived spawned worker processes, each running one config at a time.

    Protocol on each worker's pipe: the parent sends a RunConfig (or None: exit); the worker
    sends ``{"ready": True}`` once it has imported the run module, then one dict per config:
    ``{"status", "reason"}`` (completed | cached | failed | busy), or ``{"user_error": msg}``
    for bad input, which stops the grid; ``{"error": msg}`` if it cannot start at all.
    """

    def __init__(self, threads: int, run_kwargs: dict[str, Any]) -> None:
        self.ctx = get_context("spawn")
        self.threads = threads
        self.run_kwargs = run_kwargs
        self.workers: list[_Worker] = []

    def _start(self) -> _Worker:
        parent_end, child_end = self.ctx.Pipe()
        process = self.ctx.Process(
            target=_worker_main, args=(child_end, os.getpid(), self.threads, self.run_kwargs),
            name="blaq-grid-worker", daemon=False)
        with _sigint_ignored():  # the child starts with Ctrl-C ignored: it is the parent's to handle
            process.start()
        child_end.close()
        return _Worker(process, parent_end)

    def run(self, size: int, todo: deque[GridRun], note: Any) -> None:
        """Start ``size`` workers and hand out configs until all are done, calling ``note(RunResult)``."""
        for _ in range(size):
            self.workers.append(self._start())
            self._assign(self.workers[-1], todo)
        while any(w.run is not None for w in self.workers):
            busy = [w for w in self.workers if w.run is not None]
            ready = connection.wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
            for w in busy:
                msg = _receive(w.conn) if w.conn in ready else None
                if msg is None and w.process.sentinel in ready:
                    msg = _receive(w.conn)  # a message sent just before it exited comes first
                if msg is not None:
                    self._handle(w, msg, todo, note)
                elif w.process.sentinel in ready:
                    self._died(w, todo, note)

    def _handle(self, w: _Worker, msg: dict[str, Any], todo: deque[GridRun], note: Any) -> None:
        if "ready" in msg:
            w.ready = True
            w.started = time.monotonic()  # a run's time does not include its worker's start-up
        elif "error" in msg:
            raise UserError(f"a grid worker could not start: {msg['error']}")
        elif "user_error" in msg:
            raise UserError(msg["user_error"])
        else:
            note(RunResult(w.run, msg["status"], msg.get("reason"), time.monotonic() - w.started))
            self._assign(w, todo)

    def _died(self, w: _Worker, todo: deque[GridRun], note: Any) -> None:
        w.process.join()
        how = _describe_exit(w.process.exitcode)
        w.conn.close()
        if not w.ready:
            raise UserError(
                f"a grid worker process exited while starting ({how}); a script that calls "
                "benchmark.grid.execute must guard its entry point with `if __name__ == '__main__':`")
        note(RunResult(w.run, "failed", f"worker process died ({how})", time.monotonic() - w.started))
        if todo:  # replace it and carry on with the rest of the grid
            self.workers[self.workers.index(w)] = nw = self._start()
            self._assign(nw, todo)
        else:
            w.run = None

    def _assign(self, w: _Worker, todo: deque[GridRun]) -> None:
        w.run = todo.popleft() if todo else None
        w.started = time.monotonic()
        # a worker that died meanwhile closed its pipe: its sentinel reports it, with this run
        with contextlib.suppress(OSError):
            w.conn.send(None if w.run is None else w.run.config)

    def close(self) -> None:
        """Wait for the idle workers to exit (each was sent None)."""
        for w in self.workers:
            w.process.join(timeout=STOP_GRACE_S)
            if w.process.is_alive():
                w.process.kill()
                w.process.join()

    def stop(self) -> None:
        """Interrupt every worker's run (recorded as interrupted, resumable) and wait for them."""
        for w in self.workers:
            if w.process.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(w.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        try:
            for w in self.workers:
                w.process.join(timeout=max(0.0, deadline - time.monotonic()))
        finally:
            for w in self.workers:
                if w.process.is_alive():
                    w.process.kill()
                    w.process.join()


def _receive(conn: connection.Connection) -> dict[str, Any] | None:
    """The next message on a worker's pipe, or None when there is none (or the pipe closed)."""
    try:
        return conn.recv() if conn.poll() else None
    except (EOFError, OSError):
        return None


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Ignore SIGINT while a child is spawned, so it inherits the ignored disposition."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to send this process SIGTERM when its parent dies (best effort elsewhere)."""
    with contextlib.suppress(Exception):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        raise KeyboardInterrupt


def _worker_main(conn: connection.Connection, parent_pid: int, threads: int,
                 run_kwargs: dict[str, Any]) -> None:
    """A worker process: run the configs the parent sends, one at a time, and send back outcomes.

    Its output goes to /dev/null (each run's own output is captured in its run directory).
    SIGTERM, from the parent or from the parent's death, interrupts the run in progress.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _interrupt)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    from tqdm import tqdm

    # tqdm's default lock is a named semaphore (a resource the exit below would leak); a worker
    # shares no progress bar with other processes, so a thread lock does
    tqdm.set_lock(threading.RLock())
    try:
        _die_with_parent(parent_pid)
        try:
            from benchmark.run import run_config
        except Exception as err:
            conn.send({"error": f"cannot import benchmark.run: {type(err).__name__}: {err}"})
            os._exit(1)
        conn.send({"ready": True})
        while (config := conn.recv()) is not None:
            try:
                out = run_config(config, threads=threads, progress=False, **run_kwargs)
                msg = {"status": out.status, "reason": out.reason}
            except UserError as err:
                msg = {"user_error": str(err)}
            except Exception as err:  # one broken run must not stop the grid: report it
                text = str(err).strip().splitlines()
                msg = {"status": "failed",
                       "reason": f"{type(err).__name__}: {text[-1] if text else ''}".rstrip(": ")}
            conn.send(msg)
    except (KeyboardInterrupt, EOFError, OSError):
        pass
    # Skip the interpreter's teardown of torch (seconds): what the runs wrote is already on disk,
    # written atomically, and nothing else in this process needs flushing.
    os._exit(0)
