"""The run store: version file, status of a run id from what is on disk, robust readers, run locks."""

import json
import os
import subprocess
import sys

import pytest

from benchmark.errors import UserError
from benchmark.locks import RunBusyError, RunLock, lock_owner
from benchmark.store import (
    STORE_FORMAT,
    check_store,
    list_run_dirs,
    lock_path,
    open_store,
    read_json,
    read_run,
    run_status,
    write_json_atomic,
)


def _write_run(store, run_id, status="COMPLETED", result=None, metrics=True, raw_run=None):
    d = store / run_id
    d.mkdir()
    run = {"status": status, "info": {"run_id": run_id}}
    if result is not None:
        run["result"] = result
    (d / "run.json").write_text(raw_run if raw_run is not None else json.dumps(run))
    (d / "config.json").write_text(json.dumps({"method": "blaq"}))
    if metrics:
        (d / "metrics.json").write_text(
            json.dumps({"val_acc": {"steps": [1, 2], "values": [50.0, 60.0], "timestamps": []}})
        )
    return d


def test_open_store_creates_folder_and_version_file(tmp_path):
    store = open_store(tmp_path / "a" / "runs")
    assert json.loads((store / "STORE_VERSION").read_text()) == {"format": STORE_FORMAT}
    assert open_store(store) == store  # opening again is fine
    assert check_store(store) is True
    assert check_store(tmp_path / "nowhere") is False


def test_open_store_refuses_file_other_format_foreign_folder_and_missing(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(UserError, match="is a file"):
        open_store(f)
    other = tmp_path / "other"
    other.mkdir()
    (other / "STORE_VERSION").write_text(json.dumps({"format": 99}))
    with pytest.raises(UserError, match="format 99"):
        open_store(other)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not a run store"):
        open_store(foreign)
    assert not (foreign / "STORE_VERSION").exists()
    with pytest.raises(UserError, match="no run store"):
        open_store(tmp_path / "missing", create=False)
    assert not (tmp_path / "missing").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert open_store(empty) == empty  # an empty folder becomes a store


def test_run_status_from_disk(tmp_path):
    store = open_store(tmp_path / "runs")
    _write_run(store, "done", result={"test_acc": 98.0})
    _write_run(store, "broken", status="FAILED")
    _write_run(store, "running", status="RUNNING")
    _write_run(store, "halfwritten", raw_run='{"status": "COMPL')
    _write_run(store, "noresult", status="COMPLETED")  # completed without a result is not a result
    d = _write_run(store, "badmetrics", result={"test_acc": 1.0})
    (d / "metrics.json").write_text('{"val_acc": {"steps": [1')
    (store / "emptydir").mkdir()
    assert run_status(store, "done") == "completed"
    assert run_status(store, "broken") == "failed"
    assert run_status(store, "running") == "incomplete"
    assert run_status(store, "halfwritten") == "incomplete"
    assert run_status(store, "noresult") == "incomplete"
    assert run_status(store, "badmetrics") == "incomplete"
    assert run_status(store, "emptydir") == "incomplete"
    assert run_status(store, "absent") == "missing"


def test_list_run_dirs_skips_store_entries(tmp_path):
    store = open_store(tmp_path / "runs")
    for name in ("b1", "a2", "_checkpoints", "_sources", ".hidden"):
        (store / name).mkdir()
    (store / "c3").write_text("not a dir")
    assert [p.name for p in list_run_dirs(store)] == ["a2", "b1"]
    assert list_run_dirs(tmp_path / "nowhere") == []


def test_read_run_record(tmp_path):
    store = open_store(tmp_path / "runs")
    _write_run(store, "done", result={"test_acc": 98.0})
    rec = read_run(store / "done")
    assert rec.status == "completed"
    assert rec.result == {"test_acc": 98.0}
    assert rec.info == {"run_id": "done"}
    assert rec.metric("val_acc") == ([1, 2], [50.0, 60.0])
    assert rec.metric("nope") == ([], [])
    _write_run(store, "broken", status="FAILED", result={"test_acc": 50.0})
    assert read_run(store / "broken").result is None  # a failed run never counts
    missing = read_run(store / "absent")
    assert (missing.status, missing.run, missing.info) == ("missing", None, {})


def test_read_json_tolerates_missing_and_truncated(tmp_path):
    p = tmp_path / "x.json"
    assert read_json(p) is None
    p.write_text("")
    assert read_json(p) is None
    p.write_text('{"a": [1, 2')
    assert read_json(p) is None
    write_json_atomic(p, {"a": [1, 2]})
    assert read_json(p) == {"a": [1, 2]}
    assert [q.name for q in tmp_path.iterdir()] == ["x.json"]  # no temporary left behind


def test_lock_is_exclusive_and_released(tmp_path):
    store = open_store(tmp_path / "runs")
    lock = RunLock(store, "r1").acquire()
    assert lock_path(store, "r1").read_text().strip() == str(os.getpid())
    assert lock_owner(store, "r1") == os.getpid()
    with pytest.raises(RunBusyError) as err:
        RunLock(store, "r1").acquire()
    assert err.value.pid == os.getpid()
    with RunLock(store, "r2"):  # another run id is independent
        assert lock_owner(store, "r2") == os.getpid()
    lock.release()
    assert not lock_path(store, "r1").exists()
    assert lock_owner(store, "r1") is None
    with RunLock(store, "r1"):
        pass


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    store = open_store(tmp_path / "runs")
    # a process that takes the lock and is then SIGKILLed leaves the file with its pid behind
    code = (
        "import os, signal, sys\n"
        "from benchmark.locks import RunLock\n"
        f"RunLock({str(store)!r}, 'r1').acquire()\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], check=False)
    assert proc.returncode == -9
    dead_pid = int(lock_path(store, "r1").read_text())
    assert dead_pid != os.getpid()
    assert lock_owner(store, "r1") is None
    with RunLock(store, "r1"):
        assert int(lock_path(store, "r1").read_text()) == os.getpid()


def test_lock_held_by_a_live_process_reports_busy(tmp_path):
    store = open_store(tmp_path / "runs")
    code = (
        "import sys, time\n"
        "from benchmark.locks import RunLock\n"
        f"RunLock({str(store)!r}, 'r1').acquire()\n"
        "print('locked', flush=True)\n"
        "sys.stdin.readline()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(RunBusyError, match="busy") as err:
            RunLock(store, "r1").acquire()
        assert err.value.pid == proc.pid
        assert lock_owner(store, "r1") == proc.pid
    finally:
        proc.communicate("\n", timeout=30)
    with RunLock(store, "r1"):
        pass
