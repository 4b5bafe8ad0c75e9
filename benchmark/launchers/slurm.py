"""The ``slurm`` launcher: one Slurm job per run through submitit, submitted as job arrays.

Each job calls ``benchmark.run.run_config`` for its run, with as many torch threads as it has
CPUs, into the same run store (which must be on a file system the compute nodes share). The
store is self-contained: submitit's files and the job logs live in ``<runs_dir>/_slurm/logs/``,
and ``<runs_dir>/_slurm/jobs/<run_id>.json`` records which job owns a run, so that a later
invocation (after ``--no-wait``, or a second submitter) watches that job instead of submitting
the run again. Submissions into one store are serialized by ``_slurm/submit.lock``; a run trained
by some other live process is reported busy (its lease, benchmark.locks.RunLock).

Preemption and time limits: Slurm signals the job first (submitit's USR2, ``--signal`` 90 s
before the time limit, or at preemption with ``preempt_send_user_signal``); submitit then
requeues the job (the run is ``Checkpointable``) and the requeued job resumes the run from its
last epoch checkpoint, so it ends with exactly the numbers of an uninterrupted run. A job that
times out more than ``MAX_TIMEOUTS`` times is not requeued again and its run is recorded FAILED
with that reason; a run that raises is recorded FAILED by run_config, once.

Waiting: the submitting command watches the jobs' states (from ``sacct``, as submitit does; the
cluster needs accounting) and reports each run as its job ends. Ctrl-C while waiting asks
whether to leave the jobs running or cancel them (without a terminal: leaves them and says how
to cancel them).
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmark.errors import UserError
from benchmark.launchers import Launcher, LaunchOptions
from benchmark.locks import lease_holder
from benchmark.store import read_json, write_json_atomic

if TYPE_CHECKING:
    from benchmark.config import RunConfig
    from benchmark.grid import GridRun, LaunchContext

SLURM_DIR = "_slurm"
MAX_TIMEOUTS = 3  # time limits a run may hit (each requeued, resuming) before it is failed
MIN_TIME_MIN = 60  # submitit counts every USR2 as a time-out when the limit is under 50 minutes
GPU_EST_S = 86_400  # paper-profile runs estimated above a CPU day ask for a GPU by default
LIVE = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SUSPENDED",
        "PREEMPTED", "COMPLETING", "CONFIGURING", "STAGE_OUT", "SIGNALING", "READY", "UNKNOWN"}
UNKNOWN_GRACE_S = 600.0  # a recorded job sacct never heard of this long after submission is gone


def slurm_dir(runs_dir: str | os.PathLike[str]) -> Path:
    return Path(runs_dir) / SLURM_DIR


def record_path(runs_dir: str | os.PathLike[str], run_id: str) -> Path:
    """Which Slurm job owns run ``run_id`` (written when it is submitted)."""
    return slurm_dir(runs_dir) / "jobs" / f"{run_id}.json"


@dataclass(frozen=True)
class Resources:
    """What one run's job asks for."""

    partition: str | None
    time_min: int
    cpus: int
    gpus: int
    mem_gb: float | None

    def describe(self) -> str:
        words = [f"partition {self.partition}" if self.partition else "default partition",
                 f"{self.cpus} CPU{'s' if self.cpus > 1 else ''}"]
        if self.gpus:
            words.append(f"{self.gpus} GPU{'s' if self.gpus > 1 else ''}")
        if self.mem_gb:
            words.append(f"{self.mem_gb:g} GB")
        words.append(f"{self.time_min} min")
        return "slurm " + ", ".join(words)


def default_resources(config: RunConfig) -> Resources:
    """The defaults of a run's job from its task profile.

    A paper-profile run whose single-thread estimate exceeds a CPU day (the conv nets) gets one
    GPU and 4 CPUs (more when its data loaders want them), others 1 CPU; the time limit is
    1.5 x the estimate on those CPUs (at least 60 minutes), 2 days with a GPU (a longer run is
    requeued at its time limit and resumes); memory is the cluster's default.
    """
    from benchmark.tasks import get_task

    profile = get_task(config.task).profile(config.profile)
    est = profile.est_seconds
    gpu = config.profile == "paper" and est is not None and est > GPU_EST_S
    cpus = max(4, profile.num_workers + 1) if gpu else 1
    if gpu:
        time_min = 2 * 24 * 60
    elif est is None:
        time_min = 24 * 60 if config.profile == "paper" else MIN_TIME_MIN
    else:
        time_min = max(MIN_TIME_MIN, math.ceil(1.5 * est / 60 / cpus))
    return Resources(None, time_min, cpus, 1 if gpu else 0, None)


class SlurmLauncher(Launcher):
    """One Slurm job per run; see the module doc."""

    name = "slurm"

    def __init__(self, options: LaunchOptions | None = None) -> None:
        super().__init__(options)
        s = self.options.slurm
        if s.time_min is not None and s.time_min < MIN_TIME_MIN:
            raise UserError(f"--slurm-time {s.time_min}: at least {MIN_TIME_MIN} minutes (under "
                            "50, submitit counts every preemption signal as a time-out)")

    def resources(self, run: GridRun) -> Resources:
        s = self.options.slurm
        d = default_resources(run.config)
        cpus = s.cpus_per_run or self.options.threads or d.cpus
        gpus = d.gpus if s.gpus_per_run is None else s.gpus_per_run
        time_min = s.time_min or d.time_min
        return Resources(s.partition or d.partition, time_min, cpus, gpus,
                         s.mem_gb if s.mem_gb is not None else d.mem_gb)

    def threads(self, runs: Sequence[GridRun]) -> int | None:
        return self.resources(runs[0]).cpus if runs else None

    def slots(self, runs: Sequence[GridRun]) -> int:
        return max(1, min(len(runs), self.options.slurm.max_parallel or len(runs)))

    def describe(self, runs: Sequence[GridRun]) -> str:
        kinds = sorted({self.resources(r).describe().removeprefix("slurm ") for r in runs})
        par = self.options.slurm.max_parallel
        return (f"slurm: {len(runs)} job{'s' if len(runs) != 1 else ''} (job arrays"
                + (f", at most {par} running per array" if par else "") + "): " + "; ".join(kinds))

    def placement(self, runs: Sequence[GridRun]) -> dict[str, str]:
        return {r.run_id: self.resources(r).describe() for r in runs}

    # ---- launching

    def check(self, runs: Sequence[GridRun]) -> None:
        _import_submitit()
        if shutil.which("sbatch") is None or shutil.which("sacct") is None:
            raise UserError("--launcher slurm: sbatch and sacct are not on PATH; run on a Slurm "
                            "login node (with accounting: submitit reads job states from sacct)")

    def launch(self, runs: Sequence[GridRun], ctx: LaunchContext) -> None:
        if _REPLAYING:
            raise UserError("a script that submits Slurm jobs must guard its entry point with "
                            "`if __name__ == '__main__':` (each job imports it again)")
        submitit = _import_submitit()
        root = slurm_dir(ctx.runs_dir)
        (root / "jobs").mkdir(parents=True, exist_ok=True)
        watch: dict[str, tuple[GridRun, Any]] = {}
        with _submit_lock(root / "submit.lock"):
            live = self._recorded_live_jobs(submitit, runs, ctx)
            todo = []
            for run in runs:
                if run.run_id in live:
                    watch[run.run_id] = (run, live[run.run_id])
                    continue
                if self._ended_meanwhile(submitit, run, ctx):
                    continue
                holder = lease_holder(ctx.runs_dir, run.run_id)
                if holder is not None:
                    ctx.finished(run, "busy", f"{holder.describe()} is training it")
                    continue
                todo.append(run)
            for run, job in self._submit(submitit, todo, ctx):
                watch[run.run_id] = (run, job)
        self._watch(submitit, watch, ctx)

    def _recorded_live_jobs(self, submitit: Any, runs: Sequence[GridRun],
                            ctx: LaunchContext) -> dict[str, Any]:
        """The runs whose recorded job is still live (pending, running, requeued)."""
        jobs = {}
        for run in runs:
            rec = read_json(record_path(ctx.runs_dir, run.run_id))
            if isinstance(rec, dict) and rec.get("job_id") and rec.get("folder"):
                job = submitit.SlurmJob(folder=rec["folder"], job_id=str(rec["job_id"]))
                jobs[run.run_id] = (job, float(rec.get("submitted", 0)))
        if not jobs:
            return {}
        watcher = submitit.SlurmJob.watcher
        for job, _ in jobs.values():
            watcher.register_job(job.job_id)
        watcher.update()
        now = time.time()
        live = {}
        for rid, (job, submitted) in jobs.items():
            state = _state(watcher, job.job_id)
            if job.paths.result_pickle.exists():
                continue
            if state in LIVE and not (state == "UNKNOWN" and now - submitted > UNKNOWN_GRACE_S):
                live[rid] = job
        return live

    def _ended_meanwhile(self, submitit: Any, run: GridRun, ctx: LaunchContext) -> bool:
        """Report (and return True for) a run that its recorded job finished since the plan."""
        from benchmark.store import run_status

        now = run_status(ctx.runs_dir, run.run_id)
        if now not in ("completed", "failed") or (now == "failed" and run.action == "retry"):
            return False
        rec = read_json(record_path(ctx.runs_dir, run.run_id)) or {}
        outcome = None
        if rec.get("job_id") and rec.get("folder"):
            job = submitit.SlurmJob(folder=rec["folder"], job_id=str(rec["job_id"]))
            outcome = _outcome(job, "COMPLETED") if job.paths.result_pickle.exists() else None
        if now == "completed":
            status, reason = "completed" if outcome and outcome[0] == "completed" else "cached", None
        else:
            status, reason = "failed", outcome[1] if outcome else "failed meanwhile (see runs show)"
        where = f"slurm job {rec['job_id']}" if rec.get("job_id") else ""
        ctx.finished(run, status, reason, where=where)
        return True

    def _submit(self, submitit: Any, runs: Sequence[GridRun], ctx: LaunchContext) -> list[tuple[GridRun, Any]]:
        if not runs:
            return []
        folder = str(slurm_dir(ctx.runs_dir).resolve() / "logs" / "%j")
        main_path = _main_script()
        groups: dict[Resources, list[GridRun]] = {}
        for run in runs:
            groups.setdefault(self.resources(run), []).append(run)
        out = []
        s = self.options.slurm
        for res, group in groups.items():
            ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=MAX_TIMEOUTS)
            params: dict[str, Any] = {
                "time": res.time_min, "cpus_per_task": res.cpus, "nodes": 1, "ntasks_per_node": 1,
                "job_name": f"blaq-{group[0].config.profile}",
                "array_parallelism": s.max_parallel or len(group),
            }
            if res.partition:
                params["partition"] = res.partition
            if res.gpus:
                params["gpus_per_node"] = res.gpus
            if res.mem_gb is not None:
                params["mem"] = f"{max(1, round(res.mem_gb * 1024))}MB"
            if s.opts:
                params["additional_parameters"] = dict(s.opts)
            try:
                ex.update_parameters(**params)
            except ValueError as err:
                raise UserError(f"--slurm-opt: {err}") from None
            device = ctx.device if res.gpus or ctx.device != "auto" else "cpu"
            calls = [SlurmRun(run.config, str(ctx.runs_dir), None if ctx.data_root is None
                              else str(ctx.data_root), device, res.cpus, main_path)
                     for run in group]
            try:
                with ex.batch():
                    jobs = [ex.submit(call) for call in calls]
            except subprocess.CalledProcessError as err:
                raise UserError(f"sbatch refused the jobs: {_last_line(err.output)}") from None
            except Exception as err:
                if type(err).__name__ == "FailedJobError" or "sbatch" in str(err):
                    raise UserError(f"sbatch refused the jobs: {_last_line(str(err))}") from None
                raise
            now = time.time()
            for run, job in zip(group, jobs, strict=True):
                write_json_atomic(record_path(ctx.runs_dir, run.run_id),
                                  {"job_id": job.job_id, "folder": folder, "submitted": now,
                                   "resources": res.describe()})
                out.append((run, job))
        return out

    # ---- waiting

    def _watch(self, submitit: Any, watch: dict[str, tuple[GridRun, Any]], ctx: LaunchContext) -> None:
        watcher = submitit.SlurmJob.watcher
        started = {rid: time.monotonic() for rid in watch}
        poll = max(0.2, self.options.slurm.poll_s)
        try:
            while watch:
                for _, job in watch.values():
                    watcher.register_job(job.job_id)
                watcher.update()
                running = 0
                for rid, (run, job) in list(watch.items()):
                    state = _state(watcher, job.job_id)
                    outcome = _outcome(job, state)
                    if outcome is None:
                        running += state == "RUNNING"
                        continue
                    del watch[rid]
                    status, reason = outcome
                    ctx.finished(run, status, reason, seconds=time.monotonic() - started[rid],
                                 where=f"slurm job {job.job_id}")
                ctx.status(running=running, pending=len(watch) - running)
                if not watch:
                    break
                if not self.options.wait:
                    for run, job in watch.values():
                        ctx.left(run, f"slurm job {job.job_id}")
                    return
                time.sleep(poll)
        except KeyboardInterrupt:
            self._interrupted([job for _, job in watch.values()])
            raise

    def _interrupted(self, jobs: list[Any]) -> None:
        ids = sorted({str(j.job_id) for j in jobs})
        if not ids:
            return
        cancel_cmd = "scancel " + " ".join(ids)
        answer = ""
        if sys.stdin.isatty() and sys.stderr.isatty():
            with contextlib.suppress(EOFError, KeyboardInterrupt):
                answer = input(f"\n{len(ids)} Slurm job(s) still queued or running: [l]eave them "
                               "(they keep training into the store) or [c]ancel them? [l/c] ")
        if answer.strip().lower().startswith("c"):
            subprocess.run(["scancel", *ids], check=False)
            print(f"cancelled {len(ids)} Slurm job(s): {' '.join(ids)}; their runs resume from "
                  "their last epoch when submitted again", file=sys.stderr)
        else:
            print(f"left {len(ids)} Slurm job(s) running (they keep training into the store; run "
                  f"the same command again to collect them); to cancel them: {cancel_cmd}",
                  file=sys.stderr)


class SlurmRun:
    """The callable a Slurm job runs: one run of the store (pickled by submitit).

    Requeued on preemption or at its time limit (submitit's ``checkpoint``): the requeued job
    calls it again and the run resumes from its last epoch checkpoint.
    """

    def __init__(self, config: RunConfig, runs_dir: str, data_root: str | None, device: str,
                 threads: int, main_path: str | None) -> None:
        self.config = config
        self.runs_dir = runs_dir
        self.data_root = data_root
        self.device = device
        self.threads = threads
        self.main_path = main_path

    def __call__(self) -> dict[str, Any]:
        if self.main_path:
            try:
                _replay_main(self.main_path)
            except BaseException as err:  # SystemExit included: an unguarded main() ran
                return {"status": "failed",
                        "reason": f"replaying the main script {self.main_path} (for its "
                        f"registrations) failed: {type(err).__name__}: {_last_line(err)}"}
        from benchmark.run import run_config

        _interrupt_on_requeue()
        try:
            out = run_config(self.config, self.runs_dir, data_root=self.data_root,
                             device=self.device, threads=self.threads, progress=False)
        except UserError as err:
            return {"status": "failed", "reason": f"bad input: {err}"}
        except Requeued:
            sys.exit(-1)  # what submitit's handler does after requeueing the job
        return {"status": out.status, "reason": out.reason}

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Called by submitit on preemption or time-out: requeue this same call."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


class Requeued(KeyboardInterrupt):
    """The job was requeued (preemption, time limit): its run is interrupted, not failed."""


def _interrupt_on_requeue() -> None:
    """Make submitit's requeue (its signal handler ends with sys.exit) interrupt the run.

    submitit's handler requeues the job, then raises SystemExit wherever the run is; the run
    store would record that as FAILED, and a later invocation would keep it failed while its
    requeued job trains it. Raised as ``Requeued`` (a KeyboardInterrupt), the run is recorded
    INTERRUPTED, its lock is released, and the requeued job resumes it. A handler that refuses
    to requeue (time limit hit too often) raises an ordinary exception: the run is FAILED with it.
    """
    import signal

    from submitit.core.job_environment import JobEnvironment

    sig = JobEnvironment._usr_sig()
    handler = signal.getsignal(sig)
    if not callable(handler):
        return

    def on_signal(signum: int, frame: Any) -> None:
        try:
            handler(signum, frame)
        except SystemExit:
            raise Requeued from None

    signal.signal(sig, on_signal)


def _outcome(job: Any, state: str) -> tuple[str, str | None] | None:
    """(status, reason) of a finished job, or None while it is live."""
    if job.paths.result_pickle.exists():
        try:
            result = job.result()
        except Exception as err:  # the callable raised (outside the run's own handling)
            return "failed", _last_line(str(err).split("----------------------")[1]
                                        if "----------------------" in str(err) else str(err))
        if isinstance(result, dict) and "status" in result:
            return str(result["status"]), result.get("reason")
        return "failed", f"unexpected job result {result!r}"
    if state in LIVE:
        return None
    log = job.paths.stderr
    return "failed", f"slurm job {job.job_id} ended {state} without a result (log: {log})"


def _state(watcher: Any, job_id: str) -> str:
    state = watcher.get_state(job_id, mode="cache") or "UNKNOWN"
    return state.split()[0].upper()  # "CANCELLED by 0" -> CANCELLED


def _last_line(text: Any) -> str:
    lines = [ln.strip() for ln in str(text or "").strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no message"


def _import_submitit() -> Any:
    try:
        import submitit
    except ImportError:
        raise UserError("--launcher slurm needs submitit: pip install 'blaq-benchmark[slurm]'") from None
    return submitit


@contextlib.contextmanager
def _submit_lock(path: Path) -> Iterator[None]:
    """One submitter of a store at a time (it waits for the other to finish submitting)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _main_script() -> str | None:
    """The user's script that registered tasks, methods or specs, replayed in each job.

    Like a spawned process, a job re-runs the main script (a file, not ``python -m``) with
    ``__name__ == "__mp_main__"``, so registrations outside its ``__main__`` guard reach it.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or getattr(main, "__spec__", None) is not None or not path:
        return None
    path = os.path.abspath(path)
    return path if path.endswith(".py") and os.path.exists(path) else None


_REPLAYING = False


def _replay_main(path: str) -> None:
    import runpy

    global _REPLAYING
    if any(getattr(m, "__file__", None) == path for m in list(sys.modules.values())):
        return
    sys.path.insert(0, os.path.dirname(path))
    _REPLAYING = True
    try:
        runpy.run_path(path, run_name="__mp_main__")
    finally:
        _REPLAYING = False


def read_records(runs_dir: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Every run id's submission record in a store."""
    out = {}
    for p in sorted((slurm_dir(runs_dir) / "jobs").glob("*.json")):
        rec = read_json(p)
        if isinstance(rec, dict):
            out[p.stem] = rec
    return out


def job_results(runs_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The results of every finished job of a store (its result pickles), oldest first."""
    import pickle

    out = []
    for p in sorted((slurm_dir(runs_dir) / "logs").glob("*/*_result.pkl"), key=os.path.getmtime):
        with contextlib.suppress(Exception), open(p, "rb") as f:
            outcome, value = pickle.load(f)
            out.append({"path": str(p), "outcome": outcome,
                        **(value if isinstance(value, dict) else {"value": value})})
    return out


