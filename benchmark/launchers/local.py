"""The ``local`` launcher: long-lived spawned worker processes on this machine.

Each worker is spawned (its own torch with ``threads`` intra-op threads; the training imports
are paid once per worker, not once per run) and runs one config after another. The parent owns
Ctrl-C: it stops the workers, each of which interrupts its run the way Ctrl-C interrupts a single
run (the run store marks it interrupted and keeps its checkpoint), so a second invocation reuses
what completed and resumes what was interrupted. A worker also stops its run when its parent
dies (Linux), so a killed grid leaves no orphan training behind.

On a machine with GPUs (and a device other than ``cpu``), worker ``i`` sees only the GPU
``gpus[i % K]`` (``CUDA_VISIBLE_DEVICES``), so ``--jobs N`` places the workers on the K GPUs
round-robin; ``--runs-per-gpu R`` makes the default ``--jobs`` K x R, packing R small runs on
each GPU.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing import connection, get_context
from typing import TYPE_CHECKING, Any

from benchmark.errors import UserError
from benchmark.launchers import Launcher, LaunchOptions

if TYPE_CHECKING:
    from benchmark.grid import GridRun, LaunchContext

STOP_GRACE_S = 60.0  # how long a stopped worker may take to record its interrupted run
START_RETRIES = 2  # a run whose worker is killed before the run starts goes to a new worker


def visible_gpus(device: str = "auto") -> tuple[str, ...]:
    """The GPUs workers may be placed on: ``CUDA_VISIBLE_DEVICES``' entries, else torch's count;
    none for ``device="cpu"`` or without CUDA."""
    if device == "cpu":
        return ()
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    import torch

    if not torch.cuda.is_available():
        return ()
    count = torch.cuda.device_count()
    if env is not None and env.strip():
        return tuple(e.strip() for e in env.split(",") if e.strip())[:count]
    return tuple(str(i) for i in range(count))


def worker_gpus(jobs: int, gpus: Sequence[str]) -> list[str | None]:
    """The GPU of each of ``jobs`` workers: round-robin over ``gpus`` (None each without GPUs)."""
    if not gpus:
        return [None] * jobs
    return [gpus[i % len(gpus)] for i in range(jobs)]


class LocalLauncher(Launcher):
    """Spawned worker processes on this machine; see the module doc."""

    name = "local"

    def __init__(self, options: LaunchOptions | None = None) -> None:
        super().__init__(options)
        if self.options.runs_per_gpu < 1:
            raise UserError(f"--runs-per-gpu must be at least 1, not {self.options.runs_per_gpu}")
        self._gpus = self.options.gpus

    @property
    def gpus(self) -> tuple[str, ...]:
        if self._gpus is None:
            self._gpus = visible_gpus(self.options.device)
        return self._gpus

    def jobs(self) -> int:
        """Workers: --jobs, else one per GPU x runs per GPU, else one per core (at most 8)."""
        from benchmark.grid import available_cores

        if self.options.jobs is not None:
            return self.options.jobs
        if self.gpus:
            return len(self.gpus) * self.options.runs_per_gpu
        return min(available_cores(), 8)

    def slots(self, runs: Sequence[GridRun]) -> int:
        return max(1, min(self.jobs(), len(runs)))

    def threads(self, runs: Sequence[GridRun]) -> int:
        from benchmark.grid import threads_per_job

        return self.options.threads or threads_per_job(self.jobs())

    def describe(self, runs: Sequence[GridRun]) -> str:
        n, t = self.slots(runs), self.threads(runs)
        where = ""
        if self.gpus:
            per = -(-n // len(self.gpus))
            where = (f" on {len(self.gpus)} GPU{'s' if len(self.gpus) > 1 else ''} round-robin "
                     f"(up to {per} per GPU)")
        return f"local: {n} worker{'s' if n > 1 else ''} x {t} thread{'s' if t > 1 else ''}{where}"

    def placement(self, runs: Sequence[GridRun]) -> dict[str, str]:
        n = self.slots(runs)
        gpus = worker_gpus(n, self.gpus)
        out = {}
        for k, run in enumerate(runs):
            w = k % n
            where = f"worker {w}" + (f" GPU {gpus[w]}" if gpus[w] is not None else " cpu")
            out[run.run_id] = where if k < n else f"{where} (or the next free one)"
        return out

    def launch(self, runs: Sequence[GridRun], ctx: LaunchContext) -> None:
        todo = deque(runs)
        run_kwargs = {"runs_dir": str(ctx.runs_dir),
                      "data_root": None if ctx.data_root is None else str(ctx.data_root),
                      "device": ctx.device, "download": False}
        pool = _WorkerPool(self.threads(runs), run_kwargs, worker_gpus(self.slots(runs), self.gpus))
        try:
            pool.run(todo, ctx)
            pool.close()
        except BaseException:
            pool.stop()
            raise


@dataclass
class _Worker:
    process: Any
    conn: connection.Connection
    gpu: str | None = None
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

    def __init__(self, threads: int, run_kwargs: dict[str, Any], gpus: list[str | None]) -> None:
        self.ctx = get_context("spawn")
        self.threads = threads
        self.run_kwargs = run_kwargs
        self.gpus = gpus
        self.workers: list[_Worker] = []
        self.start_deaths: dict[str, int] = {}  # run id -> workers killed before it started

    def _start(self, gpu: str | None) -> _Worker:
        parent_end, child_end = self.ctx.Pipe()
        process = self.ctx.Process(
            target=_worker_main, args=(child_end, os.getpid(), self.threads, self.run_kwargs, gpu),
            name="blaq-grid-worker", daemon=False)
        with _sigint_ignored():  # the child starts with Ctrl-C ignored: it is the parent's to handle
            process.start()
        child_end.close()
        return _Worker(process, parent_end, gpu)

    def _status(self, todo: deque[GridRun], ctx: LaunchContext) -> None:
        ctx.status(running=sum(w.run is not None for w in self.workers), pending=len(todo))

    def run(self, todo: deque[GridRun], ctx: LaunchContext) -> None:
        """Start one worker per entry of ``gpus`` and hand out configs until all are done."""
        for gpu in self.gpus[:len(todo)]:
            self.workers.append(self._start(gpu))
            self._assign(self.workers[-1], todo)
        self._status(todo, ctx)
        while any(w.run is not None for w in self.workers):
            busy = [w for w in self.workers if w.run is not None]
            ready = connection.wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
            for w in busy:
                msg = _receive(w.conn) if w.conn in ready else None
                if msg is None and w.process.sentinel in ready:
                    msg = _receive(w.conn)  # a message sent just before it exited comes first
                if msg is not None:
                    self._handle(w, msg, todo, ctx)
                elif w.process.sentinel in ready:
                    self._died(w, todo, ctx)
            self._status(todo, ctx)

    def _handle(self, w: _Worker, msg: dict[str, Any], todo: deque[GridRun], ctx: LaunchContext) -> None:
        if "ready" in msg:
            w.ready = True
            w.started = time.monotonic()  # a run's time does not include its worker's start-up
            if msg.get("visible") != w.gpu:
                raise UserError(f"a grid worker placed on GPU {w.gpu} sees "
                                f"CUDA_VISIBLE_DEVICES={msg.get('visible')!r}")
        elif "error" in msg:
            raise UserError(f"a grid worker could not start: {msg['error']}")
        elif "user_error" in msg:
            raise UserError(msg["user_error"])
        else:
            ctx.finished(w.run, msg["status"], msg.get("reason"),
                         seconds=time.monotonic() - w.started, where=self._where(w))
            self._assign(w, todo)

    @staticmethod
    def _where(w: _Worker) -> str:
        return f"GPU {w.gpu}" if w.gpu is not None else ""

    def _died(self, w: _Worker, todo: deque[GridRun], ctx: LaunchContext) -> None:
        w.process.join()
        how = _describe_exit(w.process.exitcode)
        w.conn.close()
        if not w.ready and (w.process.exitcode or 0) >= 0:  # it exited by itself, unready
            raise UserError(
                f"a grid worker process exited while starting ({how}); a script that calls "
                "benchmark.grid.execute must guard its entry point with `if __name__ == '__main__':`")
        if not w.ready and w.run is not None:
            # killed by a signal (the OOM killer, a user) before its run started: the run is
            # handed to a new worker, up to START_RETRIES times, then counted as failed
            tries = self.start_deaths[w.run.run_id] = self.start_deaths.get(w.run.run_id, 0) + 1
            if tries <= START_RETRIES:
                todo.appendleft(w.run)
                w.run = None
            else:
                ctx.finished(w.run, "failed", f"worker process died while starting ({how}), "
                             f"{tries} times", seconds=0.0, where=self._where(w))
        else:
            ctx.finished(w.run, "failed", f"worker process died ({how})",
                         seconds=time.monotonic() - w.started, where=self._where(w))
        if todo:  # replace it and carry on with the rest of the grid
            self.workers[self.workers.index(w)] = nw = self._start(w.gpu)
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
                 run_kwargs: dict[str, Any], gpu: str | None = None) -> None:
    """A worker process: run the configs the parent sends, one at a time, and send back outcomes.

    Its output goes to /dev/null (each run's own output is captured in its run directory).
    SIGTERM, from the parent or from the parent's death, interrupts the run in progress. A
    worker placed on a GPU sees that GPU alone (set before CUDA is first used).
    """
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
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
        conn.send({"ready": True, "visible": os.environ.get("CUDA_VISIBLE_DEVICES") if gpu else None})
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
