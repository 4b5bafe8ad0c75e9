"""--launcher slurm on a real one-node cluster (see conftest.py): the same tables as the local
launcher, --no-wait then collect, Ctrl-C, a cancelled job, a preempted job, a failing run, two
submitters on one store. Nothing here depends on timing: the tests wait on job states (sacct)
and on files in the store, with timeouts that only bound a hang. Runs that must be stopped
mid-run use tests/slurm/suite.py's gated task, which holds its run after the first epoch until
the test opens the gate."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmark.grid import threads_per_job
from benchmark.launchers.slurm import job_results, read_records
from benchmark.locks import lock_owner
from benchmark.store import checkpoint_path, read_run, run_status

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[2]
REPRODUCE = REPO / "reproduce.py"
SUITE = REPO / "tests" / "slurm" / "suite.py"
HANG_S = 600  # bounds a hang only
TABLE1 = ("--table", "1", "--profile", "smoke")
GATED = ("--table", "98", "--profile", "smoke")
THREADS = threads_per_job(2)  # what the local launcher gives each of --jobs 2 runs here


def _env(gate: Path | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg"}
    env.pop("BLAQ_TEST_GATE", None)
    if gate is not None:
        env["BLAQ_TEST_GATE"] = str(gate)
    return env


def _cmd(script: Path, *args: str) -> list[str]:
    return [sys.executable, str(script), *args]


def _cli(cwd: Path, *args: str, script: Path = REPRODUCE, gate: Path | None = None):
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run(_cmd(script, *args), cwd=cwd, env=_env(gate), capture_output=True,
                          text=True, timeout=HANG_S, stdin=subprocess.DEVNULL)


def _slurm_args(*extra: str) -> tuple[str, ...]:
    return ("--launcher", "slurm", "--slurm-cpus-per-run", str(THREADS), *extra)


def _wait_for(predicate, what: str, timeout: float = HANG_S) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _states(job_id: str) -> list[str]:
    """Every state sacct recorded for ``job_id`` (-D: a requeued job's earlier runs too)."""
    out = subprocess.run(["sacct", "-n", "-X", "-D", "-P", "-o", "State", "-j", job_id],
                         capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _state(job_id: str) -> str:
    states = _states(job_id)
    return states[-1] if states else "UNKNOWN"


ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}


def _tables(cwd: Path, number: int) -> dict[str, bytes]:
    folder = cwd / "tables" / "smoke"
    return {p.name: p.read_bytes() for p in sorted(folder.glob(f"table{number}.*"))}


def _only_record(store: Path) -> tuple[str, str]:
    (rid, rec), = read_records(store).items()
    return rid, str(rec["job_id"])


@pytest.fixture(scope="module")
def gated_reference(tmp_path_factory):
    """Table 98 through the local launcher, uninterrupted (gate open): tables and model digest."""
    cwd = tmp_path_factory.mktemp("gated-local")
    (cwd / "open").touch()
    proc = _cli(cwd, *GATED, "--jobs", "2", script=SUITE, gate=cwd)
    assert proc.returncode == 0, proc.stderr
    (rid,) = [p.name for p in (cwd / "runs").iterdir() if not p.name.startswith(("_", "S"))]
    return _tables(cwd, 98), read_run(cwd / "runs" / rid).info["model_digest"]


def test_smoke_table_equals_the_local_one_and_no_wait_then_the_same_command_collects(
        slurm_cluster, tmp_path):
    local = _cli(tmp_path / "local", *TABLE1, "--jobs", "2")
    assert local.returncode == 0, local.stderr
    cwd = tmp_path / "slurm"
    argv = (*TABLE1, *_slurm_args("--no-wait"))
    first = _cli(cwd, *argv)
    assert first.returncode == 3, first.stderr  # submitted, nothing rendered yet
    assert "2 run(s) still queued or running (--no-wait)" in first.stdout
    records = read_records(cwd / "runs")
    assert len(records) == 2 and all(f"[slurm job {r['job_id']}]" in first.stdout
                                     for r in records.values())
    assert not (cwd / "tables").exists()
    # the same command while the jobs are live submits nothing more
    again = _cli(cwd, *argv)
    assert again.returncode in (0, 3), again.stderr
    assert read_records(cwd / "runs") == records
    for rec in records.values():
        _wait_for(lambda rec=rec: _state(str(rec["job_id"])) in ENDED, f"job {rec['job_id']}")
    last = _cli(cwd, *argv)
    assert last.returncode == 0, last.stderr
    assert "2 runs, 2 cached, 0 to run" in last.stdout
    assert read_records(cwd / "runs") == records  # collected, never submitted twice
    assert _tables(cwd, 1) == _tables(tmp_path / "local", 1) != {}
    assert [r["status"] for r in job_results(cwd / "runs")] == ["completed", "completed"]


def test_ctrl_c_leaves_the_job_and_a_cancelled_run_resumes_to_the_same_table(
        slurm_cluster, tmp_path, gated_reference):
    gate = tmp_path / "cancel"
    gate.mkdir()
    argv = (*GATED, *_slurm_args())
    proc = subprocess.Popen(_cmd(SUITE, *argv), cwd=gate, env=_env(gate), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: (gate / "held").exists(), "the run to reach its second epoch")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=HANG_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    rid, job = _only_record(gate / "runs")
    # no terminal: the job is left running, and the message says how to cancel it
    assert "left 1 Slurm job(s) running" in err and f"scancel {job}" in err, err
    assert _state(job) == "RUNNING"
    subprocess.run(["scancel", job], check=True)
    _wait_for(lambda: _state(job) == "CANCELLED", f"job {job} to be cancelled")
    # its processes outlive the CANCELLED state by Slurm's KillWait (submitit ignores SIGTERM)
    _wait_for(lambda: lock_owner(gate / "runs", rid) is None, "the cancelled run's process to end")
    assert run_status(gate / "runs", rid) == "incomplete"
    assert checkpoint_path(gate / "runs", rid).exists()
    (gate / "open").touch()
    again = _cli(gate, *argv, script=SUITE, gate=gate)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "1 to run (1 resume)" in again.stdout
    assert _only_record(gate / "runs")[1] != job  # the cancelled job's run was submitted again
    info = read_run(gate / "runs" / rid).info
    assert info["resumed_from_epoch"] == 1
    tables, digest = gated_reference
    assert info["model_digest"] == digest
    assert _tables(gate, 98) == tables


def test_a_preempted_run_is_requeued_and_resumes_bit_identical(slurm_cluster, tmp_path,
                                                               gated_reference):
    gate = tmp_path / "preempt"
    argv = (*GATED, *_slurm_args("--slurm-partition", "low"))
    first = _cli(gate, *argv, "--no-wait", script=SUITE, gate=gate)
    assert first.returncode == 3, first.stderr
    rid, job = _only_record(gate / "runs")
    _wait_for(lambda: (gate / "held").exists(), "the run to reach its second epoch")
    # a job of the high partition that needs every CPU of the node preempts the low one
    high = subprocess.run(["sbatch", "--parsable", "-p", "high", "-c", str(slurm_cluster),
                           "-o", str(gate / "high-%j.out"),
                           "--wrap", "true"], capture_output=True, text=True, check=True)
    high_id = high.stdout.strip().split(";")[0]
    _wait_for(lambda: _state(high_id) == "COMPLETED", "the high-priority job")
    (gate / "open").touch()
    again = _cli(gate, *argv, script=SUITE, gate=gate)
    assert again.returncode == 0, again.stdout + again.stderr
    assert _only_record(gate / "runs")[1] == job  # the same job, requeued: not submitted again
    assert len(_states(job)) >= 2, _states(job)  # sacct: an earlier, requeued run of the job
    info = read_run(gate / "runs" / rid).info
    assert info["resumed_from_epoch"] == 1  # resumed from the checkpoint of its first epoch
    tables, digest = gated_reference
    assert info["model_digest"] == digest  # bit-identical to the uninterrupted run
    assert _tables(gate, 98) == tables


def test_a_run_that_raises_in_its_job_is_shown_failed_with_its_reason_once(slurm_cluster, tmp_path):
    cwd = tmp_path / "broken"
    argv = ("--table", "97", "--profile", "smoke", *_slurm_args())
    proc = _cli(cwd, *argv, script=SUITE)
    assert proc.returncode == 1, proc.stderr
    assert "failed" in proc.stderr and "RuntimeError: deliberate failure inside the model" in proc.stderr
    assert "1 failed run(s)" in proc.stdout
    assert "RuntimeError: deliberate failure inside the model" in proc.stdout
    rid, job = _only_record(cwd / "runs")
    assert run_status(cwd / "runs", rid) == "failed"
    assert "deliberate failure" in read_run(cwd / "runs" / rid).run["fail_trace"][-1]
    again = _cli(cwd, *argv, script=SUITE)  # kept failed: not submitted again
    assert again.returncode == 1 and "0 to run" in again.stdout, again.stderr
    assert _only_record(cwd / "runs")[1] == job


def test_two_submitting_commands_on_one_store_never_train_a_run_twice(slurm_cluster, tmp_path):
    argv = (*TABLE1, "--seeds", "3,", *_slurm_args())
    procs = [subprocess.Popen(_cmd(REPRODUCE, *argv, "--out-dir", name), cwd=tmp_path,
                              env=_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for name in ("one", "two")]
    outs = [p.communicate(timeout=HANG_S) for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    store = tmp_path / "runs"
    assert len(read_records(store)) == 2
    results = job_results(store)
    assert [r["status"] for r in results] == ["completed", "completed"]  # two jobs trained, once
    for rid in read_records(store):
        assert read_run(store / rid).info["resumed_from_epoch"] == 0
    assert _tables(tmp_path / "one", 1) == _tables(tmp_path / "two", 1) != {}
