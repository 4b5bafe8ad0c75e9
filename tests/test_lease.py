"""The cross-host run lease (locks.RunLock): busy while fresh, stale after LEASE_STALE_S, taken
over, never two holders. Other hosts are simulated (``local=False``, an injected holder), and
time is an injected clock: nothing here sleeps or depends on timing."""

from __future__ import annotations

import threading

import pytest

from benchmark import locks as locks_mod
from benchmark.locks import (
    LEASE_STALE_S,
    Holder,
    RunBusyError,
    RunLock,
    lease_holder,
    lease_paths,
    lock_owner,
    read_lease,
)
from benchmark.store import open_store


class Clock:
    def __init__(self, t: float = 1_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


NODE_A = Holder("node-a", 4242, "boot-a")
NODE_B = Holder("node-b", 4242, "boot-b")  # the same pid on another host is another process
NODE_C = Holder("node-c", 7, "boot-c")


def _lock(store, who, clock, run_id="r1", **kw):
    return RunLock(store, run_id, clock=clock, holder=who, heartbeat=False, local=False, **kw)


def _holders(locks) -> list:
    """The locks whose heartbeat still succeeds: the ones that believe they hold the run."""
    return [lk for lk in locks if lk.held and lk.refresh()]


def test_a_fresh_lease_of_another_host_is_busy_until_stale_then_taken_over(tmp_path):
    store = open_store(tmp_path / "runs")
    clock = Clock()
    a = _lock(store, NODE_A, clock).acquire()
    assert read_lease(store, "r1").holder == NODE_A
    clock.t += LEASE_STALE_S  # exactly the interval: not yet stale
    b = _lock(store, NODE_B, clock)
    with pytest.raises(RunBusyError, match="process 4242 on node-a") as err:
        b.acquire()
    assert err.value.holder == NODE_A
    assert lease_holder(store, "r1", now=clock.t) == NODE_A
    clock.t += 1  # one second past: stale
    assert lease_holder(store, "r1", now=clock.t) is None
    b.acquire()
    assert read_lease(store, "r1").holder == NODE_B
    # the old holder learns it at its next heartbeat; at no point do two locks believe they hold
    assert _holders([a, b]) == [b]
    assert a.lost and not b.lost
    a.release()  # releasing a lost lease leaves the new holder's alone
    assert read_lease(store, "r1").holder == NODE_B and not read_lease(store, "r1").released
    b.release()
    lease = read_lease(store, "r1")
    assert lease.released and [g for g, _ in lease_paths(store, "r1")] == [lease.gen] == [2]


def test_heartbeats_keep_a_lease_fresh(tmp_path):
    store = open_store(tmp_path / "runs")
    clock = Clock()
    a = _lock(store, NODE_A, clock).acquire()
    for _ in range(5):  # 5 x 0.9 stale intervals: older than the interval, but renewed each time
        clock.t += 0.9 * LEASE_STALE_S
        assert a.refresh()
        with pytest.raises(RunBusyError):
            _lock(store, NODE_B, clock).acquire()
    assert read_lease(store, "r1").heartbeat == clock.t
    a.release()


def test_a_released_lease_is_taken_at_once_and_generations_only_grow(tmp_path):
    store = open_store(tmp_path / "runs")
    clock = Clock()
    gens = []
    for who in (NODE_A, NODE_B, NODE_A, NODE_C):
        with _lock(store, who, clock) as lk:
            gens.append(lk.gen)
            assert lease_holder(store, "r1", now=clock.t) == who
            with pytest.raises(RunBusyError):
                _lock(store, NODE_C if who != NODE_C else NODE_A, clock).acquire()
        assert lease_holder(store, "r1", now=clock.t) is None
        assert len(lease_paths(store, "r1")) == 1  # only the last generation is kept
    assert gens == [1, 2, 3, 4]
    assert lease_holder(store, "r2", now=clock.t) is None and read_lease(store, "r2") is None


def test_two_claimants_of_a_stale_lease_never_both_hold_it(tmp_path, monkeypatch):
    store = open_store(tmp_path / "runs")
    clock = Clock()
    _lock(store, NODE_A, clock).acquire()  # then node-a dies: its lease goes stale
    clock.t += LEASE_STALE_S + 1
    stale = read_lease(store, "r1")
    b, c = _lock(store, NODE_B, clock), _lock(store, NODE_C, clock)
    real_read = locks_mod.read_lease
    reads = []

    def c_read_first_the_stale_record(runs_dir, run_id):
        reads.append(1)
        return stale if len(reads) == 1 else real_read(runs_dir, run_id)

    b.acquire()  # b judged it stale and claimed the next generation
    # c judged it stale at the same time (it read the record before b's claim landed)
    monkeypatch.setattr(locks_mod, "read_lease", c_read_first_the_stale_record)
    with pytest.raises(RunBusyError, match="node-b"):
        c.acquire()
    assert len(reads) == 2  # c lost the race for generation 2, looked again, and found b
    monkeypatch.setattr(locks_mod, "read_lease", real_read)
    assert _holders([b, c]) == [b] and not c.held
    assert [g for g, _ in lease_paths(store, "r1")] == [2]


def test_a_requeued_slurm_job_takes_over_its_earlier_instance_at_once(tmp_path):
    store = open_store(tmp_path / "runs")
    clock = Clock()
    first = Holder("node-a", 11, "boot-a", job="812", restarts=0)
    requeued = Holder("node-b", 99, "boot-b", job="812", restarts=1)
    other_task = Holder("node-c", 12, "boot-c", job="812", restarts=0)  # same job, not an earlier one
    old = _lock(store, first, clock).acquire()
    with pytest.raises(RunBusyError, match="slurm job 812"):
        _lock(store, other_task, clock).acquire()
    new = _lock(store, requeued, clock).acquire()  # no wait for the stale interval
    assert read_lease(store, "r1").holder == requeued
    assert _holders([old, new]) == [new]


def test_on_this_host_the_flock_decides(tmp_path):
    store = open_store(tmp_path / "runs")
    here = Holder.this_process()
    with RunLock(store, "r1", heartbeat=False) as lk:
        assert lease_holder(store, "r1") == here
        assert lock_owner(store, "r1") == here.pid
        with pytest.raises(RunBusyError):
            RunLock(store, "r1", heartbeat=False).acquire()
        # this host's lease without the host's flock is a dead process's: taken over at once
        lk._unlock_host()
        assert lease_holder(store, "r1") is None and lock_owner(store, "r1") is None
        with RunLock(store, "r1", heartbeat=False) as again:
            assert again.gen == lk.gen + 1
        assert lk._superseded()


def test_the_heartbeat_thread_renews_the_lease_and_reports_a_takeover(tmp_path):
    store = open_store(tmp_path / "runs")
    clock = Clock()
    beats, lost = threading.Event(), threading.Event()
    a = RunLock(store, "r1", clock=clock, holder=NODE_A, local=False, heartbeat_s=0.001,
                on_lost=lambda lk: lost.set())
    a.acquire()
    clock.t += 10
    real_refresh = a.refresh

    def counting_refresh():
        ok = real_refresh()
        if read_lease(store, "r1").heartbeat == clock.t:
            beats.set()
        return ok

    a.refresh = counting_refresh
    assert beats.wait(60), "the heartbeat thread never renewed the lease"
    b = _lock(store, NODE_B, Clock(clock.t + LEASE_STALE_S + 60)).acquire()  # a looks frozen to b
    assert lost.wait(60), "the holder never noticed the takeover"
    assert a.lost and read_lease(store, "r1").holder == NODE_B
    a.release()
    b.release()


def test_a_status_probe_at_the_moment_of_acquiring_does_not_make_the_run_busy(tmp_path,
                                                                              monkeypatch):
    """``lock_owner`` probes with a shared flock; a worker that meets one waits it out."""
    import fcntl
    import os

    from benchmark import locks
    from benchmark.store import lock_path

    store = open_store(tmp_path / "runs")
    path = lock_path(store, "r1")
    path.parent.mkdir(parents=True, exist_ok=True)
    probe = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(probe, fcntl.LOCK_SH)  # a probe, caught holding its flock
    waits = []

    def probe_ends(seconds):  # the first retry's wait: the probe lets go
        waits.append(seconds)
        fcntl.flock(probe, fcntl.LOCK_UN)

    monkeypatch.setattr(locks.time, "sleep", probe_ends)
    try:
        with RunLock(store, "r1", heartbeat=False) as lk:
            assert lk.held and lock_owner(store, "r1") == os.getpid()
        assert waits == [locks.PROBE_WAIT_S]
        # a real holder keeps its flock through every retry: busy
        holder = RunLock(store, "r1", heartbeat=False).acquire()
        waits.clear()
        monkeypatch.setattr(locks.time, "sleep", waits.append)
        with pytest.raises(RunBusyError):
            RunLock(store, "r1", heartbeat=False).acquire()
        assert len(waits) == locks.PROBE_RETRIES
        holder.release()
    finally:
        os.close(probe)
