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
from benchmark.locks import lock_owner
from benchmark.store import list_run_dirs, run_status


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
        (["--table", "2", "--seeds", "99999999999999999999"], "at most 1000 seeds"),
        (["--table", "2", "--seeds", "0-5000"], "more than 1000 seeds"),
        (["--table", "2", "--profile", "smoke", "--out-dir", "pyproject.toml"], "is a file"),
    ],
)
def test_bad_arguments_one_line_exit_2(capsys, argv, needle, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # pyproject.toml: a file, not a folder
    _one_line_error(capsys, argv, needle)


def test_a_bad_out_dir_is_refused_before_any_training(capsys, tmp_path, monkeypatch):
    (tmp_path / "tables").write_text("not a folder")
    monkeypatch.chdir(tmp_path)
    _one_line_error(capsys, ["--table", "2", "--profile", "smoke"], "tables is a file")
    assert not (tmp_path / "runs").exists()  # nothing trained, nothing written


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
SMOKE_SEEDS = (0, 1)
SMOKE_TABLE3 = ("--table", "3", "--profile", "smoke", "--seeds", str(len(SMOKE_SEEDS)),
                "--runs-dir", "runs", "--jobs", "2")


def _table3_ids() -> list[str]:
    from benchmark.specs import get_spec

    return sorted(c.run_id for c in get_spec("table", 3).configs("smoke", SMOKE_SEEDS))


def _cli(cwd: Path, *args: str, data_root: Path, wait: bool = True, timeout: float = 300,
         script: Path = REPRODUCE, env: dict[str, str] | None = None):
    """reproduce.py (or a user's script) in a subprocess (its own session, so a test can signal
    it alone)."""
    env = {**os.environ, "BLAQ_DATA_ROOT": str(data_root), "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": str(REPRODUCE.parent), **(env or {})}
    proc = subprocess.Popen([sys.executable, str(script), *args], cwd=cwd, env=env,
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
    argv = ["--table", "3", "--profile", "smoke", "--seeds", str(len(SMOKE_SEEDS)), "--dry-run",
            "--jobs", "2", "--runs-dir"]
    n = len(_table3_ids())
    per_seed = n // len(SMOKE_SEEDS)
    assert main([*argv, str(reference.store)]) == 0
    out = capsys.readouterr().out
    assert f"{n} runs: {n} cached, 0 to run" in out
    assert sum(line.split()[1:2] == ["cached"] for line in out.splitlines()) == n
    empty = tmp_path / "new"
    assert main([*argv, str(empty), "--seeds", "0,1", "--out-dir", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert f"{2 * per_seed} runs: 0 cached, {2 * per_seed} to run" in out and "estimate:" in out
    assert sorted(tmp_path.iterdir()) == []  # no store, no tables


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


# reproduce.py with a gate in the MNIST tasks' training loss: in each run the first step waits
# while $GATE holds more than $GATE_PASS tickets, until the file $GATE/open exists. The loss
# computes exactly what the task's own does (a task's loss is not part of the run id), so the
# runs and the table are those of reproduce.py.
GATED_SCRIPT = """
import dataclasses, os, time
from pathlib import Path
from benchmark.cli import main
from benchmark.tasks import get_task, register_task
from benchmark.tasks.losses import LOSSES

armed = [False]


def ticket(gate):
    for i in range(1, 10_000):
        try:
            os.close(os.open(gate / f"ticket-{i}", os.O_CREAT | os.O_EXCL))
            return i
        except FileExistsError:
            continue
    raise RuntimeError("out of tickets")


def gated(loss):
    def wait_then_loss(logits, y):
        gate = os.environ.get("GATE")
        if gate and armed[0]:
            armed[0] = False
            gate = Path(gate)
            i = ticket(gate)
            if i > int(os.environ["GATE_PASS"]):
                (gate / f"waiting-{i}").touch()  # this run is mid-training and cannot go on
                while not (gate / "open").exists():
                    time.sleep(0.05)
        return loss(logits, y)
    return wait_then_loss


def arming(data):
    def load(*args):
        armed[0] = True  # a new run: its first step takes a ticket
        return data(*args)
    return load


for name in ("mnist-mlp", "mnist-lenet5"):
    task = get_task(name)
    LOSSES["gated-" + task.loss] = gated(LOSSES[task.loss])
    register_task(dataclasses.replace(task, loss="gated-" + task.loss, data=arming(task.data)))

if __name__ == "__main__":
    raise SystemExit(main())
"""


def _start_and_stop(cwd, data_root, ids, stop):
    """Start Table 3 in a subprocess whose runs, after one more completes, all wait at a gate
    that is never opened; once one more has completed and another waits, ``stop(proc)`` it.

    So the grid is provably mid-way when ``stop`` acts, whatever the machine's speed: the
    waiting run cannot complete before the gate opens.
    """
    store = cwd / "runs"
    done_before = sum(run_status(store, i) == "completed" for i in ids) if store.exists() else 0
    script = cwd / "gated_reproduce.py"
    script.write_text(GATED_SCRIPT)
    gate = cwd / f"gate-{done_before}"
    gate.mkdir()
    proc = _cli(cwd, *SMOKE_TABLE3, data_root=data_root, wait=False, script=script,
                env={"GATE": str(gate), "GATE_PASS": "1"})

    def one_more_done_and_one_waiting():
        assert proc.poll() is None, f"the grid ended before it could be stopped: {proc.stderr.read()}"
        done = store.exists() and sum(run_status(store, i) == "completed" for i in ids) > done_before
        return done and any(gate.glob("waiting-*"))

    _wait_for(one_more_done_and_one_waiting, 240, "a run to complete and another to wait")
    assert sum(run_status(store, i) == "completed" for i in ids) == done_before + 1
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
    assert done == 1, statuses  # the gate let one run through
    assert "incomplete" in statuses.values(), statuses  # a run was interrupted mid-training
    # the dry run sees the store as it is: completed runs cached, the others to run or resume
    assert main(["--table", "3", "--profile", "smoke", "--seeds", str(len(SMOKE_SEEDS)),
                 "--dry-run", "--runs-dir", str(store)]) == 0
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


# --------------------------------------------------------------------------------------------
# --list and the `runs` subcommand


def test_list_mentions_every_table_figure_method_task_and_profile(capsys):
    from benchmark.config import PROFILES
    from benchmark.methods import METHODS
    from benchmark.specs import SPECS
    from benchmark.tasks import TASKS

    assert main(["--list", "--profile", "smoke"]) == 0
    out = capsys.readouterr().out
    for spec in SPECS.values():
        n = len(spec.configs("smoke"))
        assert f"{spec.kind} {spec.number}  [{spec.key}]  {spec.title}  ({n} runs)" in out
        assert spec.paper in out and spec.description in out
    for name in (*METHODS, *TASKS, *PROFILES):
        assert f"  {name} " in out


def _runs(capsys, *argv):
    code = main(["runs", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_runs_options_given_before_the_subcommand_are_kept(reference, capsys):
    store = str(reference.store)
    n = len(_ids(reference.store))
    code = main(["--runs-dir", store, "runs", "list"])
    out = capsys.readouterr().out
    assert code == 0 and f"{n} runs: {n} completed" in out
    assert main(["--runs-dir", store, "--profile", "paper", "runs", "list"]) == 0
    assert "no runs" in capsys.readouterr().out  # the store holds smoke runs only


def test_runs_export_to_an_impossible_path_exit_2(reference, capsys, tmp_path):
    (tmp_path / "file").write_text("")
    _one_line_error(capsys, ["runs", "export", "--runs-dir", str(reference.store), "--csv",
                             str(tmp_path / "file" / "x.csv")], "cannot write --csv")


def test_runs_list_with_filters(reference, capsys):
    store = str(reference.store)
    ids = _ids(reference.store)
    code, out, _ = _runs(capsys, "list", "--runs-dir", store)
    assert code == 0 and all(i in out for i in ids)
    assert f"{len(ids)} runs: {len(ids)} completed" in out
    code, out, _ = _runs(capsys, "list", "--runs-dir", store, "--method", "lab", "--bits", "1")
    rows = [line for line in out.splitlines() if line[:16] in ids]
    # LAB 1 bit on both MNIST tasks, each seed
    assert code == 0 and len(rows) == 2 * len(SMOKE_SEEDS) and all(" lab " in r for r in rows)
    code, out, _ = _runs(capsys, "list", "--runs-dir", store, "--task", "mnist-mlp",
                         "--profile", "smoke", "--status", "completed")
    rows = [line for line in out.splitlines() if line[:16] in ids]
    assert len(rows) == 3 * len(SMOKE_SEEDS) and all("mnist-mlp" in r for r in rows)
    code, out, _ = _runs(capsys, "list", "--runs-dir", store, "--status", "failed")
    assert code == 0 and "no runs" in out


def test_runs_show_compare_and_export(reference, capsys, tmp_path):
    import pandas as pd

    from benchmark.runsdb import load_runs

    store = str(reference.store)
    runs = load_runs(store).set_index("run_id")
    lab = runs[runs.method == "lab"].index[0]
    fp = runs[runs.method == "fp"].index[0]
    code, out, _ = _runs(capsys, "show", lab[:7], "--runs-dir", store)
    assert code == 0 and out.startswith(f"run {lab}  status completed")
    assert "method=lab" in out and f"test_acc={runs.loc[lab, 'test_acc']:.4g}" in out
    epochs = [line.split()[0] for line in out.split("metrics per epoch:\n")[1].splitlines()[1:]]
    assert epochs == [str(e) for e in range(1, runs.loc[lab, "epochs"] + 1)]

    code, out, _ = _runs(capsys, "compare", lab, fp[:8], "--runs-dir", store)
    lines = {line[2:].split()[0]: line for line in out.splitlines()[1:-1]}
    assert code == 0 and lines["method"].startswith("* ") and lines["profile"].startswith("  ")
    assert lines["method"].split()[2:] == ["lab", "fp"]

    path = tmp_path / "out" / "runs.csv"
    code, out, _ = _runs(capsys, "export", "--csv", str(path), "--runs-dir", store, "--bits", "32")
    exported = pd.read_csv(path)
    assert code == 0 and f"wrote {len(exported)} runs" in out
    assert sorted(exported.run_id) == sorted(runs[runs.bits == 32].index)
    assert exported.set_index("run_id").test_acc.to_dict() == runs[runs.bits == 32].test_acc.to_dict()


def test_runs_unknown_or_ambiguous_id_exit_2(reference, capsys):
    store = str(reference.store)
    _one_line_error(capsys, ["runs", "show", "0000nope", "--runs-dir", store], "no run")
    _one_line_error(capsys, ["runs", "compare", "", "--runs-dir", store], "runs in")


# --------------------------------------------------------------------------------------------
# errors through the whole process, failed runs, a dead worker


@pytest.mark.parametrize(
    ("argv", "needle"),
    [(["--table", "99"], "no table 99; choose one of 1, 2, 3"),
     (["--figure", "1"], "no figure 1; choose one of 3, 4, 5"),
     (["--table", "1", "--figure", "4", "--all", "--profile", "smoke", "--seeds=-1,2"],
      "non-negative")],
)
def test_unknown_table_or_figure_exit_2(capsys, argv, needle):
    _one_line_error(capsys, argv, needle)


def test_bad_runs_dir_for_the_grid_exit_2(capsys, tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    _one_line_error(capsys, ["--table", "1", "--profile", "smoke", "--runs-dir", str(f)], "is a file")
    other = tmp_path / "other"
    other.mkdir()
    (other / "STORE_VERSION").write_text(json.dumps({"format": 2}))
    argv = ["--table", "1", "--profile", "smoke", "--dry-run", "--runs-dir", str(other)]
    _one_line_error(capsys, argv, "format 2")


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_a_gpu_exit_2(capsys):
    _one_line_error(capsys, ["--table", "1", "--device", "cuda"], "no CUDA device")


@pytest.mark.parametrize(
    ("argv", "needle"),
    [(["--jobs", "0", "--table", "1"], "--jobs: must be a positive integer"),
     (["--table", "99"], "no table 99")],
)
def test_bad_arguments_through_the_process_exit_2(tmp_path, data_root, argv, needle):
    done = _cli(tmp_path, *argv, data_root=data_root)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and needle in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


USER_SCRIPT = '''
"""A user's own tasks and table, run through the command line: one run diverges, one kills its worker."""
import dataclasses
import os
import signal

from benchmark.cli import main
from benchmark.specs import Entry, Spec, register_spec
from benchmark.tables import render_method_table
from benchmark.tasks import get_task, register_task
from benchmark.tasks.losses import LOSSES


def nan_loss(logits, y):
    return logits.sum() * float("nan")


def killing_loss(logits, y):
    os.kill(os.getpid(), signal.SIGKILL)


LOSSES["nan"] = nan_loss
LOSSES["kill"] = killing_loss
mlp = get_task("mnist-mlp")
register_task(dataclasses.replace(mlp, name="diverging-mlp", label="Diverging MLP", loss="nan"))
register_task(dataclasses.replace(mlp, name="killed-mlp", label="Killed MLP", loss="kill"))
register_spec(Spec(
    key="table9", kind="table", number=9, title="Failures", paper="not in the paper",
    description="a diverging run and a run whose process dies, beside two good ones",
    grids={"paper": (Entry("mnist-mlp", "fp"), Entry("diverging-mlp", "fp"),
                     Entry("killed-mlp", "fp"), Entry("mnist-mlp", "lab", 1))},
    renderer=render_method_table))

if __name__ == "__main__":
    raise SystemExit(main())
'''


@pytest.mark.slow
def test_failed_runs_and_a_dead_worker_are_reported_and_the_table_still_renders(tmp_path, data_root):
    script = tmp_path / "my_tables.py"
    script.write_text(USER_SCRIPT)
    env = {**os.environ, "BLAQ_DATA_ROOT": str(data_root), "PYTHONPATH": str(REPRODUCE.parent)}
    argv = [sys.executable, str(script), "--table", "9", "--profile", "smoke", "--jobs", "2"]
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr  # rendered, but some runs failed
    assert "Traceback" not in done.stderr
    assert "2 completed, 1 failed, 1 incomplete" in done.stdout
    failures = done.stdout.split("1 failed run(s)")[1].split("run(s)")[0]
    assert "--retry-failed" in failures.splitlines()[0]
    stopped = done.stdout.split("1 incomplete run(s)")[1].split("\n\n")[0]
    assert "--retry-failed" not in stopped and "run the same command again" in stopped
    lines = {line.split()[0]: line for line in (failures + stopped).splitlines()
             if line.startswith("  ")}
    store = tmp_path / "runs"
    ids = {run_status(store, i): i for i in lines}
    assert set(ids) == {"failed", "incomplete"}  # diverged (recorded) and killed (left running)
    assert ids["failed"] in failures and ids["incomplete"] in stopped
    assert "diverging-mlp" in lines[ids["failed"]] and "nan" in lines[ids["failed"]].lower()
    assert "killed-mlp" in lines[ids["incomplete"]]
    assert "worker process died (killed by SIGKILL)" in lines[ids["incomplete"]]
    table = (tmp_path / "tables" / "smoke" / "table9.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ")}
    assert "failed 1/1" in rows["Diverging MLP"] and "incomplete 1/1" in rows["Killed MLP"]
    assert table.count("| MNIST MLP ") == 2 and "failed" not in rows["MNIST MLP"]

