"""Hostile input and faults: every bad input is one line on stderr with exit status 2, no
traceback, and nothing written to the store or the output folders; faults of the machine (a
read-only or full disk, a killed worker, a stale checkpoint) never wedge a run.

Read-only and full file systems are real: a small tmpfs mounted for the test (root only; the
tests that need one skip elsewhere, with the reason).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmark.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _snapshot(*folders: Path) -> dict[str, int]:
    """Every file under the folders (relative path -> size): what a refused command must not change."""
    out: dict[str, int] = {}
    for folder in folders:
        if folder.exists():
            for p in sorted(folder.rglob("*")):
                out[str(p)] = p.stat().st_size if p.is_file() else -1
    return out


def _refused(capsys, argv: list[str], needle: str) -> str:
    """``main(argv)`` exits 2 with one line on stderr that contains ``needle``, and no traceback."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("reproduce.py: error:"), err
    assert needle in lines[0], err
    assert "Traceback" not in err
    return lines[0]


@contextlib.contextmanager
def _tmpfs(path: Path, *options: str, size: str = "256k") -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    opts = ",".join((f"size={size}",) + options)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture
def readonly(tmp_path: Path) -> Iterator[Path]:
    """An empty read-only file system (a real one: root writes through chmod 555)."""
    with _tmpfs(tmp_path / "ro", "ro") as path:
        yield path


# ------------------------------------------------------------------------ the command line


def test_a_read_only_runs_dir_is_one_line(capsys, tmp_path, readonly, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _refused(capsys, ["--table", "3", "--profile", "smoke", "--runs-dir", str(readonly)],
             "not writable")
    assert not (tmp_path / "tables").exists()


def test_a_runs_dir_below_a_read_only_folder_is_one_line(capsys, tmp_path, readonly, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _refused(capsys, ["--table", "3", "--profile", "smoke", "--runs-dir", str(readonly / "S")],
             "cannot create")
    assert not (tmp_path / "tables").exists()


def test_a_read_only_store_is_refused_once_up_front(capsys, tmp_path, monkeypatch):
    store = tmp_path / "store"
    with _tmpfs(store) as path:
        (path / "STORE_VERSION").write_text('{"format": 1}')
        subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
        monkeypatch.chdir(tmp_path)
        line = _refused(capsys, ["--table", "3", "--profile", "smoke", "--runs-dir", str(path)],
                        "not writable")
        assert str(path) in line
        assert sorted(p.name for p in path.iterdir()) == ["STORE_VERSION"]


def test_a_read_only_out_dir_is_refused_before_any_training(capsys, tmp_path, readonly,
                                                           monkeypatch):
    monkeypatch.chdir(tmp_path)
    _refused(capsys, ["--table", "3", "--profile", "smoke", "--out-dir", str(readonly)],
             "not writable")
    assert not (tmp_path / "runs").exists()


def test_a_file_where_the_profile_folder_goes_is_refused_before_any_training(capsys, tmp_path,
                                                                           monkeypatch):
    out = tmp_path / "out"
    (out / "tables").mkdir(parents=True)
    (out / "tables" / "smoke").write_text("in the way")
    monkeypatch.chdir(tmp_path)
    _refused(capsys, ["--table", "3", "--profile", "smoke", "--out-dir", str(out)], "is a file")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("profile", ["smoke", "quick"])
def test_a_data_root_that_is_a_file_is_refused_before_the_store(capsys, tmp_path, monkeypatch,
                                                                profile):
    (tmp_path / "data-file").write_text("not a folder")
    monkeypatch.chdir(tmp_path)
    _refused(capsys, ["--table", "3", "--profile", profile, "--data-root", "data-file"],
             "is a file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data-file"]


def _write_mnist(root: Path) -> Path:
    from tests.tasks.conftest import write_mnist

    return write_mnist(root)


@pytest.mark.parametrize("damage", ["missing", "file-not-folder", "truncated"])
def test_paper_data_errors_write_nothing(capsys, tmp_path, monkeypatch, damage):
    data = tmp_path / "data"
    data.mkdir()
    if damage == "file-not-folder":
        (data / "MNIST").write_text("a file where the folder goes")
    elif damage == "truncated":
        from tests.tasks.conftest import truncate

        raw = _write_mnist(data)
        truncate(raw / "train-images-idx3-ubyte")
    before = _snapshot(data)
    monkeypatch.chdir(tmp_path)
    _refused(capsys, ["--table", "3", "--profile", "paper", "--data-root", str(data)], "MNIST")
    assert not (tmp_path / "runs").exists()
    assert not (tmp_path / "tables").exists()
    assert _snapshot(data) == before  # no cache written from bad files


# ------------------------------------------------------------------- python -m benchmark.run


BAD_SETTINGS = [
    ({"a": "abc"}, "a (the BLAQ blend) must lie in [0, 1]"),
    ({"quantize_first": "maybe"}, "quantize_first must be true or false"),
    ({"quantize_last": 2}, "quantize_last must be true or false"),
    ({"quantize_last": 0.0}, "quantize_last must be true or false"),
    ({"extra": 5}, "extra must be a dict"),
    ({"extra": {"x": object()}}, "extra must hold JSON values"),
    ({"bits": 1.5}, "bits must be an integer"),
    ({"m": 2.5}, "m (the BLAQ period in epochs) must be a positive integer"),
]


@pytest.mark.parametrize(("setting", "needle"), BAD_SETTINGS)
def test_bad_run_settings_are_refused_by_the_config(setting, needle):
    from benchmark.config import RunConfig
    from benchmark.errors import UserError

    with pytest.raises(UserError) as err:
        _ = RunConfig(profile="smoke", **setting).run_id
    assert needle in str(err.value)


@pytest.mark.parametrize(("setting", "needle"), [
    ("a=abc", "a (the BLAQ blend) must lie in [0, 1]"),
    ("quantize_first=maybe", "quantize_first must be true or false"),
    ("extra=5", "extra must be a dict"),
])
def test_bad_run_settings_on_the_run_command_line_are_one_line_exit_2(tmp_path, setting, needle):
    store = tmp_path / "S"
    done = subprocess.run(
        [sys.executable, "-m", "benchmark.run", "with", setting, "profile=smoke",
         f"runs_dir={store}"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert needle in done.stderr
    assert not store.exists()


def test_booleans_are_normalised_before_the_run_id():
    from benchmark.config import RunConfig

    false = RunConfig(method="laq", bits=2, quantize_last=False, profile="smoke")
    for value in (0, False):
        assert RunConfig(method="laq", bits=2, quantize_last=value, profile="smoke").run_id \
            == false.run_id
    assert RunConfig(method="laq", bits=2, quantize_last=1, profile="smoke").run_id \
        == RunConfig(method="laq", bits=2, profile="smoke").run_id


# -------------------------------------------------------------------------- killed workers

_KILLED_AT_START = """
import os, signal
from benchmark.cli import main

# The first grid worker to start is killed by a signal while it imports this script (as the
# OOM killer or a user's kill would): no run had been handed to it yet.
if __name__ == "__mp_main__":  # the script, imported again by a spawned worker
    try:
        os.close(os.open(os.environ["KILL_MARKER"], os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        pass
    else:
        os.kill(os.getpid(), signal.SIGKILL)

if __name__ == "__main__":
    raise SystemExit(main())
"""


def test_a_worker_killed_while_starting_does_not_stop_the_grid(tmp_path):
    script = tmp_path / "killer.py"
    script.write_text(_KILLED_AT_START)
    marker = tmp_path / "killed-one"
    done = subprocess.run(
        [sys.executable, str(script), "--table", "2", "--profile", "smoke", "--jobs", "2",
         "--runs-dir", str(tmp_path / "runs"), "--out-dir", str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT), "KILL_MARKER": str(marker)},
    )
    assert marker.exists()  # a worker really was killed
    assert "guard" not in done.stderr, done.stderr  # not mistaken for a missing __main__ guard
    assert done.returncode == 0, done.stderr
    table = (tmp_path / "tables" / "smoke" / "table2.md").read_text()
    assert not re.search(r"failed \d+/\d+|missing", table), table  # every cell has its runs


# ------------------------------------------------------------------------------ checkpoints

CKPT_CONFIG = dict(task="mnist-mlp", method="laq", bits=2, profile="smoke")


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory) -> dict:
    """The smoke run trained from scratch, uninterrupted: what every fault must end with."""
    from benchmark.config import RunConfig
    from benchmark.run import run_config

    out = run_config(RunConfig(**CKPT_CONFIG), tmp_path_factory.mktemp("clean") / "runs")
    assert out.status == "completed"
    from benchmark.store import read_run

    return read_run(out.run_dir).info


def _store_with_checkpoint(root: Path, payload_for) -> tuple[Path, str, Path]:
    import torch

    from benchmark.config import RunConfig
    from benchmark.store import checkpoint_path, open_store

    config = RunConfig(**CKPT_CONFIG)
    runs = open_store(root / "runs")
    path = checkpoint_path(runs, config.run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload_for(config), path)
    return runs, config.run_id, path


def test_a_checkpoint_of_another_model_is_discarded_and_the_run_restarts(tmp_path, clean_run):
    from benchmark.checkpoint import CHECKPOINT_FORMAT, CheckpointDiscarded
    from benchmark.config import RunConfig
    from benchmark.run import run_config
    from benchmark.store import read_run
    from benchmark.tasks import get_task

    def foreign(config):  # right run id and format, tensors of an older model definition
        lenet = get_task("mnist-lenet5").build_model(get_task("mnist-lenet5").profile("smoke"))
        return {"format": CHECKPOINT_FORMAT, "run_id": config.run_id, "epoch": 1,
                "model": lenet.state_dict(), "optimizer": {}, "scheduler": {}}

    runs, rid, path = _store_with_checkpoint(tmp_path, foreign)
    for attempt in range(2):  # never wedged: the first rerun completes, the next is cached
        with pytest.warns(CheckpointDiscarded) if attempt == 0 else contextlib.nullcontext():
            out = run_config(RunConfig(**CKPT_CONFIG), runs)
        assert out.status == ("completed" if attempt == 0 else "cached"), out.reason
    info = read_run(out.run_dir).info
    assert info["resumed_from_epoch"] == 0
    assert info["model_digest"] == clean_run["model_digest"]  # exactly a run from scratch
    assert not path.exists()


def test_a_temporary_left_by_a_kill_mid_save_is_cleaned_up(tmp_path, clean_run):
    from benchmark.config import RunConfig
    from benchmark.run import run_config

    runs, rid, path = _store_with_checkpoint(tmp_path, lambda config: {"not": "a checkpoint"})
    stale = path.with_name(f".{path.name}.999999.tmp")
    stale.write_bytes(b"half a checkpoint")
    out = run_config(RunConfig(**CKPT_CONFIG), runs)
    assert out.status == "completed"
    assert not stale.exists()
    assert [p.name for p in path.parent.iterdir()] == []


def test_a_full_disk_during_a_checkpoint_leaves_the_run_incomplete_then_it_resumes(
        tmp_path, clean_run, capsys):
    from benchmark.config import RunConfig
    from benchmark.run import run_config
    from benchmark.store import CHECKPOINT_DIR, open_store, read_run, run_status

    runs = open_store(tmp_path / "runs")
    config = RunConfig(**CKPT_CONFIG)
    with _tmpfs(runs / CHECKPOINT_DIR, size="4k"):  # far smaller than one checkpoint
        out = run_config(config, runs)
        assert out.status == "incomplete", out.reason
        assert "No space left on device" in out.reason
        assert run_status(runs, config.run_id) == "incomplete"  # not failed: nothing to retry
        assert list((runs / CHECKPOINT_DIR).iterdir()) == []  # no temporary left behind
    out = run_config(config, runs)  # space freed: a plain rerun finishes it
    assert out.status == "completed", out.reason
    assert read_run(out.run_dir).info["model_digest"] == clean_run["model_digest"]


# ------------------------------------------------------------------------ atomic outputs


def test_outputs_are_written_atomically(tmp_path, monkeypatch):
    """A write that dies half-way leaves the old file whole and no temporary behind."""
    from benchmark import atomic

    target = tmp_path / "table2.md"
    target.write_text("the old table\n")

    class Dying:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            raise OSError(28, "No space left on device")

    real_open = open
    monkeypatch.setattr(atomic, "open", lambda p, mode: Dying(real_open(p, mode)), raising=False)
    with pytest.raises(OSError, match="No space"):
        atomic.write_text_atomic(target, "the new table, twice as long as the old one\n")
    assert target.read_text() == "the old table\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table2.md"]
    monkeypatch.undo()
    atomic.write_text_atomic(target, "the new table\n")
    assert target.read_text() == "the new table\n"


# ----------------------------------------------------------------------------- the data cache


def test_the_data_cache_does_not_depend_on_the_threads_of_the_process_that_built_it(tmp_path):
    """The command loads the data once before its workers start (with all cores), the workers
    read that cache (with their share): the cached bits must be those a one-thread worker makes."""
    import torch

    from benchmark.tasks import get_task

    task = get_task("cifar10-vgg")  # the stand-in's preprocessing: global contrast norm + ZCA
    threads = torch.get_num_threads()
    built = {}
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            data = task.load_data("quick", tmp_path / f"root{n}")
            assert data.info["cache_hit"] is False
            built[n] = torch.cat([x for x, _ in data.test])
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(built[1], built[2])
