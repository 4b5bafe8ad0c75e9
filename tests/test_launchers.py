"""The launcher seam without a cluster: the registry, a user's launcher, the inline launcher,
GPU round-robin placement (a fake device list), the slurm launcher's resources, options, dry run
and Ctrl-C answers (the real cluster is in tests/slurm/)."""

from __future__ import annotations

import json
import subprocess

import pytest

from benchmark import grid
from benchmark.cli import main
from benchmark.config import RunConfig
from benchmark.errors import UserError
from benchmark.launchers import (
    LAUNCHERS,
    Launcher,
    LaunchOptions,
    SlurmOptions,
    make_launcher,
    register_launcher,
)
from benchmark.launchers.local import LocalLauncher, worker_gpus
from benchmark.launchers.slurm import SlurmLauncher, default_resources
from benchmark.store import open_store, read_run, run_status

FP = RunConfig(task="mnist-mlp", method="fp", profile="smoke")


def _plan(tmp_path, configs):
    return grid.plan_grid(configs, tmp_path / "runs")


def _complete(store, run_id):
    """A completed run directory in the store's format (so a worker finds it cached)."""
    d = store / run_id
    d.mkdir(parents=True)
    (d / "run.json").write_text(json.dumps({"status": "COMPLETED", "result": {"test_acc": 1.0}}))
    (d / "config.json").write_text(json.dumps({"task": "mnist-mlp"}))
    (d / "metrics.json").write_text("{}")


def test_registry_has_the_built_ins_and_refuses_unknown_names(capsys):
    assert {"local", "inline", "slurm"} <= set(LAUNCHERS)
    assert main(["--list"]) == 0
    listed = capsys.readouterr().out
    assert all(f"  {e.name:<7} {e.description}" in listed for e in LAUNCHERS.values())
    assert isinstance(make_launcher("local"), LocalLauncher)
    assert make_launcher("slurm", LaunchOptions()).name == "slurm"
    with pytest.raises(UserError, match="unknown launcher 'nope'; known: local, inline, slurm"):
        make_launcher("nope")
    assert main(["--table", "1", "--profile", "smoke", "--launcher", "nope", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown launcher 'nope'" in err[0]
    with pytest.raises(ValueError):
        register_launcher("two words", LocalLauncher)


def test_a_registered_launcher_gets_exactly_the_runs_to_train(tmp_path, capsys):
    seen = {}

    class Recording(Launcher):
        name = "recording"

        def launch(self, runs, ctx):
            seen["runs"] = [r.run_id for r in runs]
            seen["options"] = self.options
            for run in runs:
                ctx.status(running=1, pending=0)
                ctx.finished(run, "failed", "not really trained", where="nowhere")

    register_launcher("recording", Recording, "records what it is given")
    try:
        store = open_store(tmp_path / "runs")
        configs = [FP, RunConfig(task="mnist-mlp", method="fp", profile="smoke", seed=1)]
        plan = grid.plan_grid(configs, store)
        _complete(store, plan.runs[0].run_id)
        plan = grid.plan_grid(configs, store)
        report = grid.execute(plan, launcher="recording", progress=False,
                              options=LaunchOptions(jobs=7))
        assert seen["runs"] == [plan.runs[1].run_id]  # the cached one is not handed over
        assert seen["options"].jobs == 7
        assert [(r.status, r.reason, r.where) for r in report.results] == [
            ("failed", "not really trained", "nowhere")]
        assert report.launcher == "recording" and report.done
        # and from the command line, with its name in the grid's first line
        code = main(["--table", "1", "--profile", "smoke", "--runs-dir", str(tmp_path / "r2"),
                     "--out-dir", str(tmp_path / "out"), "--launcher", "recording"])
        out = capsys.readouterr().out
        assert code == 1 and "recording: 1 at a time" in out and "2 failed run(s)" in out
    finally:
        LAUNCHERS.pop("recording")


def test_inline_launcher_trains_in_this_process(tmp_path):
    plan = _plan(tmp_path, [FP])
    report = grid.execute(plan, launcher="inline", progress=False, device="cpu",
                          options=LaunchOptions(threads=1, device="cpu"))
    assert [r.status for r in report.results] == ["completed"]
    rid = plan.runs[0].run_id
    assert run_status(tmp_path / "runs", rid) == "completed"
    assert read_run(tmp_path / "runs" / rid).info["env"]["threads"] == 1


def test_gpu_round_robin_placement_with_a_fake_device_list():
    assert worker_gpus(5, ("0", "1")) == ["0", "1", "0", "1", "0"]
    assert worker_gpus(2, ()) == [None, None]
    packed = LocalLauncher(LaunchOptions(gpus=("0", "1", "2"), runs_per_gpu=3))
    assert packed.jobs() == 9  # three runs share each GPU by default
    assert LocalLauncher(LaunchOptions(gpus=("0", "1"), jobs=3)).jobs() == 3
    cpu = LocalLauncher(LaunchOptions(gpus=(), jobs=2))
    runs = grid.plan_grid([RunConfig(task="mnist-mlp", method="fp", profile="smoke", seed=s)
                           for s in range(5)], "nowhere").runs
    assert list(cpu.placement(runs).values())[:2] == ["worker 0 cpu", "worker 1 cpu"]
    launcher = LocalLauncher(LaunchOptions(gpus=("4", "7"), jobs=3))
    where = list(launcher.placement(runs).values())
    assert where[:3] == ["worker 0 GPU 4", "worker 1 GPU 7", "worker 2 GPU 4"]
    assert where[3] == "worker 0 GPU 4 (or the next free one)"
    assert "on 2 GPUs round-robin (up to 2 per GPU)" in launcher.describe(runs)
    with pytest.raises(UserError, match="runs-per-gpu"):
        LocalLauncher(LaunchOptions(runs_per_gpu=0))


def test_each_spawned_worker_sees_only_its_gpu(tmp_path):
    """Fake GPU ids: each worker's CUDA_VISIBLE_DEVICES is its own, checked by the worker itself."""
    configs = [RunConfig(task="mnist-mlp", method="fp", profile="smoke", seed=s) for s in range(4)]
    plan = _plan(tmp_path, configs)
    store = open_store(tmp_path / "runs")
    for r in plan.runs:  # done meanwhile: the workers find them cached, without training
        _complete(store, r.run_id)
    report = grid.execute(plan, launcher="local", progress=False,
                          options=LaunchOptions(jobs=2, gpus=("3", "5"), device="auto"))
    assert sorted(r.status for r in report.results) == ["cached"] * 4
    assert {r.where for r in report.results} == {"GPU 3", "GPU 5"}


@pytest.mark.cuda
def test_workers_are_placed_on_the_real_gpus(tmp_path):
    import torch

    gpus = tuple(str(i) for i in range(torch.cuda.device_count()))
    configs = [RunConfig(task="mnist-mlp", method="fp", profile="smoke", seed=s)
               for s in range(2 * len(gpus))]
    plan = _plan(tmp_path, configs)
    report = grid.execute(plan, launcher="local", progress=False,
                          options=LaunchOptions(jobs=2 * len(gpus), device="cuda"))
    assert sorted(r.status for r in report.results) == ["completed"] * len(configs)
    assert {r.where for r in report.results} == {f"GPU {g}" for g in gpus}


def test_slurm_resources_default_from_the_task_profile_and_options_override():
    conv = default_resources(RunConfig(task="cifar10-vgg", method="fp", profile="paper"))
    assert (conv.gpus, conv.cpus, conv.time_min) == (1, 4, 2880)
    mlp = default_resources(RunConfig(task="mnist-mlp", method="fp", profile="paper"))
    assert (mlp.gpus, mlp.cpus) == (0, 1) and mlp.time_min >= 60
    assert default_resources(FP).time_min == 60  # never under 60: submitit's time-out rule
    run = grid.plan_grid([RunConfig(task="cifar10-vgg", method="fp", profile="paper")], "x").runs[0]
    opts = SlurmOptions(partition="gpu", time_min=90, gpus_per_run=2, cpus_per_run=8, mem_gb=12.5)
    res = SlurmLauncher(LaunchOptions(slurm=opts)).resources(run)
    assert (res.partition, res.time_min, res.gpus, res.cpus, res.mem_gb) == ("gpu", 90, 2, 8, 12.5)
    assert res.describe() == "slurm partition gpu, 8 CPUs, 2 GPUs, 12.5 GB, 90 min"
    assert SlurmLauncher(LaunchOptions(slurm=SlurmOptions(gpus_per_run=0))).resources(run).gpus == 0
    with pytest.raises(UserError, match="at least 60"):
        SlurmLauncher(LaunchOptions(slurm=SlurmOptions(time_min=30)))


def test_dry_run_names_the_launcher_and_the_resources_of_each_run(tmp_path, capsys):
    argv = ["--table", "3", "--profile", "smoke", "--runs-dir", str(tmp_path / "runs"), "--dry-run"]
    assert main([*argv, "--launcher", "slurm", "--slurm-partition", "p1", "--slurm-mem", "3",
                 "--slurm-max-parallel", "2"]) == 0
    out = capsys.readouterr().out
    runs = [ln for ln in out.splitlines() if "  run  " in ln and "run id" not in ln]
    assert len(runs) == 6 and all("slurm partition p1, 1 CPU, 3 GB, 60 min" in ln for ln in runs)
    assert ("launcher slurm: 6 jobs (job arrays, at most 2 running per array): partition p1, "
            "1 CPU, 3 GB, 60 min") in out
    assert "2 at a time" in out
    assert main([*argv, "--jobs", "3"]) == 0
    out = capsys.readouterr().out
    assert "launcher local: 3 workers" in out and "3 at a time" in out
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(("argv", "needle"), [
    (["--slurm-time", "30"], "at least 60 minutes"),
    (["--slurm-opt", "account"], "KEY=VALUE"),
    (["--slurm-mem", "-1"], "--slurm-mem: must be a positive number"),
    (["--slurm-gpus-per-run", "x"], "non-negative integer"),
    (["--runs-per-gpu", "0"], "positive integer"),
])
def test_bad_launcher_options_are_one_line_errors(argv, needle, tmp_path, capsys):
    code = main(["--table", "1", "--profile", "smoke", "--runs-dir", str(tmp_path / "r"),
                 "--launcher", "slurm", "--dry-run", *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0], err


def test_slurm_without_sbatch_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch, no sacct
    code = main(["--table", "1", "--profile", "smoke", "--runs-dir", str(tmp_path / "r"),
                 "--out-dir", str(tmp_path), "--launcher", "slurm"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "sbatch and sacct are not on PATH" in err[0]


class _Job:
    def __init__(self, job_id):
        self.job_id = job_id


def test_ctrl_c_without_a_terminal_leaves_the_jobs_and_says_how_to_cancel(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: calls.append(a))
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    SlurmLauncher()._interrupted([_Job("12_1"), _Job("12_0"), _Job("13")])
    err = capsys.readouterr().err
    assert "left 3 Slurm job(s) running" in err and "to cancel them: scancel 12_0 12_1 13" in err
    assert calls == []


@pytest.mark.parametrize(("answer", "cancelled"), [("c", True), ("cancel", True), ("", False),
                                                   ("l", False)])
def test_ctrl_c_on_a_terminal_asks_whether_to_leave_or_cancel(answer, cancelled, monkeypatch,
                                                              capsys):
    import sys

    calls = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, **k: calls.append(cmd))
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    monkeypatch.setattr("builtins.input", lambda prompt: answer)
    SlurmLauncher()._interrupted([_Job("7")])
    err = capsys.readouterr().err
    assert calls == ([["scancel", "7"]] if cancelled else [])
    assert ("cancelled 1 Slurm job(s): 7" in err) == cancelled
    assert ("left 1 Slurm job(s) running" in err) == (not cancelled)


def test_slurm_reports_a_run_finished_since_the_plan_instead_of_submitting_it(tmp_path):
    import submitit

    store = open_store(tmp_path / "runs")
    configs = [RunConfig(task="mnist-mlp", method="fp", profile="smoke", seed=s) for s in range(3)]
    plan = grid.plan_grid(configs, store)
    done, failed, todo = plan.runs
    _complete(store, done.run_id)  # its job (or another invocation) finished it meanwhile
    (store / failed.run_id).mkdir()
    (store / failed.run_id / "run.json").write_text(json.dumps({"status": "FAILED"}))
    report = grid.GridReport(plan)
    ctx = grid.LaunchContext(plan, report, data_root=None, device="cpu", progress=False, total=3)
    launcher = SlurmLauncher()
    assert [launcher._ended_meanwhile(submitit, r, ctx) for r in plan.runs] == [True, True, False]
    assert [(r.run.run_id, r.status) for r in report.results] == [(done.run_id, "cached"),
                                                                  (failed.run_id, "failed")]
    retry = grid.plan_grid(configs, store, retry_failed=True).runs[1]
    assert retry.action == "retry" and not launcher._ended_meanwhile(submitit, retry, ctx)
