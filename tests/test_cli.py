"""The command line: arguments, errors as one line with exit status 2, --list, --dry-run, `runs`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from benchmark.cli import main, parse_seeds
from benchmark.errors import UserError
from benchmark.store import list_run_dirs, lock_owner, run_status


@pytest.mark.parametrize(
    ("text", "seeds"),
    [("3", (0, 1, 2)), ("1", (0,)), ("0,4,7", (0, 4, 7)), ("7,", (7,)), ("2-4", (2, 3, 4)),
     ("5-5", (5,)), (" 1, 2 ", (1, 2))],
)
def test_parse_seeds_count_list_and_range(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize(
    ("text", "needle"),
    [("0", "count"), ("-2", "count"), ("x", "count"), ("1,1", "repeats"), ("4-2", "no seed"),
     ("1,-1", "non-negative"), (",", "no seed"), ("1.5", "count"), ("", "count")],
)
def test_parse_seeds_rejects_bad_input(text, needle):
    with pytest.raises(UserError, match=needle):
        parse_seeds(text)


def _one_line_error(capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("reproduce.py: error:")
    assert needle in lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--table", "2", "--jobs", "0"], "--jobs: must be a positive integer, not 0"),
        (["--table", "2", "--jobs", "-3"], "--jobs: must be a positive integer, not -3"),
        (["--table", "2", "--jobs", "many"], "positive integer"),
        (["--table", "x"], "--table"),
        (["--table", "2", "--seeds", "1,1"], "repeats a seed"),
        (["--table", "2", "--seeds", "0"], "count"),
        (["--table", "2", "--profile", "huge"], "--profile"),
        (["--table", "2", "--device", "tpu"], "--device"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        ([], "nothing to rebuild"),
        (["runs"], "runs"),
        (["runs", "export"], "--csv"),
    ],
)
def test_bad_arguments_one_line_exit_2(capsys, argv, needle):
    _one_line_error(capsys, argv, needle)


def test_help_lists_examples_and_exits_0(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for needle in ("--table", "--figure", "--all", "--list", "--profile", "--seeds", "--jobs",
                   "--runs-dir", "--data-root", "--download", "--device", "--dry-run",
                   "--retry-failed", "examples:", "runs list", "exit status"):
        assert needle in out


def test_runs_dir_that_is_a_file_or_another_format_exit_2(capsys, tmp_path):
    f = tmp_path / "afile"
    f.write_text("not a store")
    _one_line_error(capsys, ["runs", "list", "--runs-dir", str(f)], "is a file")
    other = tmp_path / "old"
    other.mkdir()
    (other / "STORE_VERSION").write_text(json.dumps({"format": 0}))
    _one_line_error(capsys, ["runs", "list", "--runs-dir", str(other)], "format 0")
    _one_line_error(capsys, ["runs", "list", "--runs-dir", str(tmp_path / "none")], "no run store")


# --------------------------------------------------------------------------------------------
# the real thing: Table 3 (smoke) through the command line, from an empty store

REPRODUCE = Path(__file__).resolve().parents[1] / "reproduce.py"
SMOKE_TABLE3 = ("--table", "3", "--profile", "smoke", "--runs-dir", "runs", "--jobs", "2")


def _table3_ids() -> list[str]:
    from benchmark.specs import get_spec

    return sorted(c.run_id for c in get_spec("table", 3).configs("smoke"))


def _cli(cwd: Path, *args: str, data_root: Path, wait: bool = True, timeout: float = 300):
    """reproduce.py in a subprocess (its own session, so a test can signal it alone)."""
    env = {**os.environ, "BLAQ_DATA_ROOT": str(data_root), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, str(REPRODUCE), *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    if not wait:
        return proc
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _table_files(cwd: Path) -> dict[str, str]:
    """Table 3's files, without the footer line naming the code versions of the runs (other
    commits may land while a test runs; the numbers must not change)."""
    return {ext: "\n".join(line for line in (cwd / "tables" / "smoke" / f"table3.{ext}")
                           .read_text().splitlines() if "Code version" not in line)
            for ext in ("md", "csv", "tex")}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_root):
    """Table 3 (smoke) from an empty store, uninterrupted, then the same command again."""
    cwd = tmp_path_factory.mktemp("reference")
    first = _cli(cwd, *SMOKE_TABLE3, data_root=data_root)
    files = _table_files(cwd) if first.returncode == 0 else {}
    stamps = {p.parent.name: p.stat().st_mtime_ns for p in (cwd / "runs").glob("*/run.json")}
    second = _cli(cwd, *SMOKE_TABLE3, data_root=data_root)
    return SimpleNamespace(cwd=cwd, store=cwd / "runs", first=first, second=second, files=files,
                           stamps=stamps)


def _ids(store: Path) -> list[str]:
    return sorted(d.name for d in list_run_dirs(store))


@pytest.mark.slow
def test_smoke_table_from_an_empty_store(reference):
    first = reference.first
    assert first.returncode == 0, first.stderr
    ids = _ids(reference.store)
    n = len(ids)
    assert ids == _table3_ids() and n >= 4
    assert f"{n} runs, 0 cached, {n} to run" in first.stdout
    assert f"{n} completed, 0 failed" in first.stdout
    assert all(run_status(reference.store, i) == "completed" for i in ids)
    progress = [line for line in first.stderr.splitlines() if "completed" in line]
    for rid in ids:  # one progress line per run, with its id, task, method and status
        assert any(rid in line and "mnist-" in line for line in progress), rid
    assert set(reference.files) == {"md", "csv", "tex"}
    assert "| MNIST LeNet5 | BLAQ" in reference.files["md"]
    table = reference.files["md"].split("\n\n")[-2]  # the table body, printed and written
    assert table.count("\n") >= 7 and table in first.stdout
    assert "tables/smoke/table3.md" in first.stdout
    assert "Traceback" not in first.stderr and "Warning" not in first.stderr


@pytest.mark.slow
def test_second_invocation_is_all_cached_and_trains_nothing(reference):
    second = reference.second
    assert second.returncode == 0, second.stderr
    n = len(reference.stamps)
    assert n == len(_table3_ids())
    assert f"{n} runs, {n} cached, 0 to run" in second.stdout
    assert "completed" not in second.stderr  # no run was started
    stamps = {p.parent.name: p.stat().st_mtime_ns for p in reference.store.glob("*/run.json")}
    assert stamps == reference.stamps
    assert _table_files(reference.cwd) == reference.files


def test_dry_run_counts_and_writes_nothing(reference, tmp_path, capsys):
    assert reference.first.returncode == 0
    argv = ["--table", "3", "--profile", "smoke", "--dry-run", "--jobs", "2", "--runs-dir"]
    n = len(_table3_ids())
    assert main([*argv, str(reference.store)]) == 0
    out = capsys.readouterr().out
    assert f"{n} runs: {n} cached, 0 to run" in out
    assert sum(line.split()[1:2] == ["cached"] for line in out.splitlines()) == n
    empty = tmp_path / "new"
    assert main([*argv, str(empty), "--seeds", "0,1"]) == 0
    out = capsys.readouterr().out
    assert f"{2 * n} runs: 0 cached, {2 * n} to run" in out and "estimate:" in out
    assert not empty.exists() and not (tmp_path / "tables").exists()


def _children(pid: int) -> list[int]:
    """The pids whose parent is ``pid`` (Linux /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _start_and_stop(cwd, data_root, ids, stop):
    """Start Table 3 in a subprocess; once one more run has completed, ``stop(proc)`` it."""
    store = cwd / "runs"
    done_before = sum(run_status(store, i) == "completed" for i in ids) if store.exists() else 0
    proc = _cli(cwd, *SMOKE_TABLE3, data_root=data_root, wait=False)

    def one_more_done():
        assert proc.poll() is None, f"the grid ended before it could be stopped: {proc.stderr.read()}"
        return store.exists() and sum(run_status(store, i) == "completed" for i in ids) > done_before

    _wait_for(one_more_done, 240, "a run to complete")
    return stop(proc)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc to find the workers")
def test_interrupt_kill_and_resume_give_the_uninterrupted_table(reference, tmp_path, data_root, capsys):
    assert reference.first.returncode == 0
    ids = _ids(reference.store)
    store = tmp_path / "runs"

    def ctrl_c(proc):
        proc.send_signal(signal.SIGINT)
        return proc.communicate(timeout=120)

    out, err = _start_and_stop(tmp_path, data_root, ids, ctrl_c)
    assert err.strip().splitlines()[-1].startswith("reproduce.py: interrupted; the run store runs is intact")
    assert "Traceback" not in err
    statuses = {i: run_status(store, i) for i in ids}
    assert "failed" not in statuses.values()
    assert all(lock_owner(store, i) is None for i in ids)  # no lock is left held
    n = len(ids)
    done = sum(s == "completed" for s in statuses.values())
    assert 1 <= done < n, statuses
    # the dry run sees the store as it is: completed runs cached, the others to run or resume
    assert main(["--table", "3", "--profile", "smoke", "--dry-run", "--runs-dir", str(store)]) == 0
    resume = sum(s == "incomplete" for s in statuses.values())
    assert (f"{n} runs: {done} cached, {n - done - resume} to run, {resume} to resume"
            in capsys.readouterr().out)

    def kill_parent(proc):
        workers = _children(proc.pid)
        proc.kill()  # SIGKILL: no chance to clean up; the workers must notice and stop their runs
        proc.communicate(timeout=60)
        _wait_for(lambda: not any(_alive(w) for w in workers), 120, "the orphaned workers to stop")
        return workers

    assert len(_start_and_stop(tmp_path, data_root, ids, kill_parent)) >= 2
    assert "failed" not in {run_status(store, i) for i in ids}

    final = _cli(tmp_path, *SMOKE_TABLE3, data_root=data_root)
    assert final.returncode == 0, final.stderr
    assert all(run_status(store, i) == "completed" for i in ids)
    assert _table_files(tmp_path) == reference.files
