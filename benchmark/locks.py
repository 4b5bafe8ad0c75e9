"""Run locks: "this run is being trained right now", on one host and across hosts.

A process training a run holds two things under ``_locks/``:
  <run_id>.lock        an flock with the owner's pid inside: exclusion between processes of one
                       host, dropped by the kernel when the owner dies (SIGKILL included);
  <run_id>.lease.<g>   the lease of generation g (JSON: host, boot id, pid, Slurm job id and
                       restart count, heartbeat time): exclusion across hosts on a shared file
                       system, where flocks and pids mean nothing.
The holder of a run's lease is the record of the highest generation present. A generation is
claimed by creating its file exclusively (a hard link of a complete temporary file, atomic on
local file systems and NFS), so two claimants of one generation never both succeed: at most
one holder at any time. The holder rewrites its record every LEASE_HEARTBEAT_S seconds (a
daemon thread); a reader judges a lease stale when its heartbeat is older than LEASE_STALE_S
(by the reader's clock: hosts need clocks within a minute of each other, as NTP gives), and a
new owner then claims the next generation. Sooner than that, a lease is taken over when its
holder is known to be dead: on the same host (this process holds the host's flock), or an
earlier instance of the same Slurm job (a requeued job: Slurm runs one instance at a time). A
holder whose lease was taken over (it froze longer than LEASE_STALE_S) sees the higher
generation at its next heartbeat and stops its run. Releasing rewrites the record as released
(it is kept, so generations only grow) and removes lower generations.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.store import LOCK_DIR, lock_path

LEASE_HEARTBEAT_S = 30.0  # seconds between two heartbeats of a held lease
LEASE_STALE_S = 300.0  # a lease whose heartbeat is older than this is stale (10 missed beats)
# a status probe (``_flock_holder``) holds a shared flock for a moment: a worker that meets one
# tries again this many times, this far apart (s), before it calls the run busy
PROBE_RETRIES, PROBE_WAIT_S = 5, 0.01


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class Holder:
    """Who holds (or held) a lease: host and boot id, pid, and the Slurm job when inside one."""

    host: str
    pid: int
    boot: str = ""
    job: str | None = None
    restarts: int = 0

    @staticmethod
    def this_process() -> Holder:
        """This process: hostname, boot id, pid, and ``SLURM_JOB_ID`` / ``SLURM_RESTART_COUNT``."""
        import socket

        job = os.environ.get("SLURM_JOB_ID") or None
        try:
            restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0"))
        except ValueError:
            restarts = 0
        return Holder(socket.gethostname(), os.getpid(), _boot_id(), job, restarts)

    def same_host(self, other: Holder) -> bool:
        return self.host == other.host and self.boot == other.boot

    def describe(self) -> str:
        job = f", slurm job {self.job}" if self.job else ""
        return f"process {self.pid} on {self.host}{job}"


@dataclass(frozen=True)
class Lease:
    """One lease record as read from ``_locks/<run_id>.lease.<gen>``."""

    run_id: str
    gen: int
    holder: Holder
    heartbeat: float
    released: bool

    def stale(self, now: float, stale_s: float = LEASE_STALE_S) -> bool:
        return now - self.heartbeat > stale_s


def lease_paths(runs_dir: str | os.PathLike[str], run_id: str) -> list[tuple[int, Path]]:
    """The lease generations of ``run_id`` on disk, lowest first."""
    out = []
    for p in (Path(runs_dir) / LOCK_DIR).glob(f"{run_id}.lease.*"):
        suffix = p.name.rsplit(".", 1)[1]
        if suffix.isdigit():
            out.append((int(suffix), p))
    return sorted(out)


def _read_lease(run_id: str, gen: int, path: Path) -> Lease | None:
    """The record at ``path``; None if it vanished; an unreadable one counts as released."""
    try:
        data = json.loads(path.read_text())
        h = data["holder"]
        holder = Holder(str(h["host"]), int(h["pid"]), str(h.get("boot", "")),
                        h.get("job"), int(h.get("restarts", 0)))
        return Lease(run_id, gen, holder, float(data["heartbeat"]), bool(data.get("released")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return Lease(run_id, gen, Holder("?", 0), 0.0, True)


def read_lease(runs_dir: str | os.PathLike[str], run_id: str) -> Lease | None:
    """The record of the highest lease generation of ``run_id``, or None if it never had one."""
    for _ in range(20):  # a generation removed between listing and reading: list again
        paths = lease_paths(runs_dir, run_id)
        if not paths:
            return None
        gen, path = paths[-1]
        lease = _read_lease(run_id, gen, path)
        if lease is not None:
            return lease
    return None


def lease_holder(runs_dir: str | os.PathLike[str], run_id: str, *, now: float | None = None,
                 stale_s: float = LEASE_STALE_S) -> Holder | None:
    """Who is training ``run_id`` now according to its lease (any host), or None.

    A lease of this host counts only while its flock is held (the kernel says whether its holder
    lives); one of another host counts until it is stale.
    """
    lease = read_lease(runs_dir, run_id)
    if lease is None or lease.released:
        return None
    if lease.holder.same_host(Holder.this_process()):
        return lease.holder if _flock_holder(lock_path(runs_dir, run_id)) is not None else None
    return None if lease.stale(time.time() if now is None else now, stale_s) else lease.holder


class RunBusyError(RuntimeError):
    """Another live process (on this host or another) holds the lock of this run id."""

    def __init__(self, run_id: str, pid: int | None, holder: Holder | None = None):
        where = holder.describe() if holder is not None else f"process {pid or '?'}"
        super().__init__(f"run {run_id} is busy: {where} is training it")
        self.run_id = run_id
        self.pid = pid
        self.holder = holder


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _flock_holder(path: Path) -> int | None:
    """The pid in the lock file at ``path`` if a live process of this host holds its flock
    (0 if not yet written), else None."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_pid(path) or 0
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _flock_exclusive(fd: int) -> bool:
    """Take the exclusive flock of ``fd`` without blocking; False if a holder keeps it through
    the retries (a status probe's shared flock lasts microseconds; a worker's, its run)."""
    for attempt in range(PROBE_RETRIES + 1):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if attempt < PROBE_RETRIES:
                time.sleep(PROBE_WAIT_S)
    return False


def lock_owner(runs_dir: str | os.PathLike[str], run_id: str) -> int | None:
    """The pid of the live process that holds the lock of ``run_id`` (0 if not yet written), or None.

    A process of this host is found by its flock; one of another host by a lease that is not
    stale (its pid is then a pid of that host).
    """
    pid = _flock_holder(lock_path(runs_dir, run_id))
    if pid is not None:
        return pid
    holder = lease_holder(runs_dir, run_id)
    return None if holder is None else holder.pid


class RunLock:
    """An exclusive lock on one run id, held by this process until ``release()``, across hosts.

    ``acquire()`` takes the host's flock on ``_locks/<run_id>.lock`` (pid inside), then claims
    the run's lease (see above), and starts a daemon thread that renews the lease every
    ``heartbeat_s`` seconds while the lock is held. RunBusyError if a live process holds either.

    For tests, ``clock`` (wall seconds), ``holder`` (who this lock claims to be), ``stale_s``,
    ``heartbeat=False`` (no thread: call ``refresh()``) and ``local=False`` (no flock: a
    simulated other host) can be injected. ``on_lost`` is called (from the heartbeat thread)
    if another host took the lease over; by default it warns and interrupts the main thread
    (KeyboardInterrupt), so that the run stops as it does on Ctrl-C.
    """

    def __init__(self, runs_dir: str | os.PathLike[str], run_id: str, *,
                 clock: Any = None, holder: Holder | None = None,
                 heartbeat_s: float = LEASE_HEARTBEAT_S, stale_s: float = LEASE_STALE_S,
                 heartbeat: bool = True, local: bool = True, on_lost: Any = None):
        self.runs_dir = Path(runs_dir)
        self.run_id = run_id
        self.path = lock_path(runs_dir, run_id)
        self.clock = clock or time.time
        self.holder = holder or Holder.this_process()
        self.heartbeat_s = heartbeat_s
        self.stale_s = stale_s
        self.local = local
        self.on_lost = on_lost
        self._heartbeat = heartbeat
        self._fd: int | None = None
        self.gen: int | None = None
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._main = False

    # ---- the host's flock

    def _lock_host(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if not _flock_exclusive(fd):
                os.close(fd)
                raise RunBusyError(self.run_id, _read_pid(self.path))
            try:
                same_file = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same_file = False
            if not same_file:  # the owner released (unlinked) it while we waited: start over
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            self._fd = fd
            return

    def _unlock_host(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.close(self._fd)
        self._fd = None

    # ---- the lease

    def _gen_path(self, gen: int) -> Path:
        return self.path.parent / f"{self.run_id}.lease.{gen}"

    def _record(self, released: bool = False) -> dict[str, Any]:
        h = self.holder
        return {"run_id": self.run_id, "gen": self.gen, "released": released,
                "heartbeat": float(self.clock()),
                "holder": {"host": h.host, "pid": h.pid, "boot": h.boot, "job": h.job,
                           "restarts": h.restarts}}

    def _temp(self, record: dict[str, Any]) -> Path:
        import uuid

        tmp = self.path.parent / f".{self.run_id}.lease.{uuid.uuid4().hex}.tmp"
        tmp.write_text(json.dumps(record, sort_keys=True))
        return tmp

    def _create(self, gen: int) -> bool:
        """Create generation ``gen`` exclusively with our record; False if it exists."""
        self.gen = gen
        tmp = self._temp(self._record())
        try:
            os.link(tmp, self._gen_path(gen))
            return True
        except FileExistsError:
            self.gen = None
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def _taken_over_from(self, lease: Lease) -> bool:
        """Whether this lock may take ``lease`` over: released, dead holder, or stale."""
        if lease.released:
            return True
        if lease.holder.same_host(self.holder):
            # the host's flock, which this process holds now, says the holder is gone
            return self.local
        h = lease.holder
        if h.job is not None and h.job == self.holder.job and h.restarts < self.holder.restarts:
            return True  # an earlier instance of this (requeued) Slurm job
        return lease.stale(self.clock(), self.stale_s)

    def _claim(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(100):
            lease = read_lease(self.runs_dir, self.run_id)
            if lease is not None and not self._taken_over_from(lease):
                raise RunBusyError(self.run_id, lease.holder.pid, lease.holder)
            if self._create(1 if lease is None else lease.gen + 1):
                self._drop_below(self.gen)
                return
            # another claimant won this generation: look again (it is live, so we are busy)
        raise RunBusyError(self.run_id, None)

    def _drop_below(self, gen: int) -> None:
        for g, p in lease_paths(self.runs_dir, self.run_id):
            if g < gen:
                p.unlink(missing_ok=True)

    def _superseded(self) -> bool:
        return any(g > (self.gen or 0) for g, _ in lease_paths(self.runs_dir, self.run_id))

    def _rewrite(self, released: bool = False) -> None:
        tmp = self._temp(self._record(released))
        try:
            os.replace(tmp, self._gen_path(self.gen))
        finally:
            tmp.unlink(missing_ok=True)

    def refresh(self) -> bool:
        """Renew the lease (the heartbeat); False, and ``lost`` set, if another took it over."""
        if self.gen is None or self.lost:
            return False
        if self._superseded():
            self.lost = True
            return False
        self._rewrite()
        return True

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                alive = self.refresh()
            except OSError:  # a file-system hiccup: try again at the next beat
                continue
            if not alive:
                self._lost()
                return

    def _lost(self) -> None:
        if self.on_lost is not None:
            self.on_lost(self)
            return
        import sys

        print(f"warning: the lease of run {self.run_id} was taken over by another process "
              f"(this one missed its heartbeats for {self.stale_s:.0f} s); stopping this run",
              file=sys.stderr)
        if self._main:
            import _thread

            _thread.interrupt_main()

    # ---- public

    @property
    def held(self) -> bool:
        return self.gen is not None

    def acquire(self) -> RunLock:
        """Take the lock; RunBusyError if a live process (here or on another host) holds it."""
        if self.gen is not None or self._fd is not None:
            raise RuntimeError(f"lock of run {self.run_id} is already held by this object")
        if self.local:
            self._lock_host()
        try:
            self._claim()
        except BaseException:
            self._unlock_host()
            raise
        self.lost = False
        self._main = threading.current_thread() is threading.main_thread()
        if self._heartbeat:
            self._stop.clear()
            self._thread = threading.Thread(target=self._beat, name=f"lease-{self.run_id}",
                                            daemon=True)
            self._thread.start()
        return self

    def release(self) -> None:
        """Stop the heartbeat, mark the lease released, drop the flock (no-op if not held)."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=10)
            self._thread = None
        if self.gen is not None:
            with contextlib.suppress(OSError):
                if not self._superseded():
                    self._rewrite(released=True)
                    self._drop_below(self.gen)
            self.gen = None
        self._unlock_host()

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
