"""The grid: specs -> deduplicated configs -> store status -> actions; the local executor."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from benchmark import grid
from benchmark.config import RunConfig
from benchmark.errors import UserError
from benchmark.store import list_run_dirs, open_store


@dataclass(frozen=True)
class ListSpec:
    """A spec reduced to what the grid needs: a key and its configs."""

    key: str
    items: tuple[RunConfig, ...]

    def configs(self, profile, seeds=None):
        seeds = (0,) if seeds is None else seeds
        return [RunConfig(**{**c.__dict__, "profile": profile, "seed": s})
                for s in seeds for c in self.items]


def _fake_run(store, run_id, status, result=True, config=None, seconds=1.0):
    """A run directory in the store's format with the given Sacred status."""
    d = store / run_id
    d.mkdir()
    run = {"status": status, "fail_trace": ["Traceback ...\n", "RuntimeError: loss is nan\n"]}
    if result:
        run["result"] = {"test_acc": 90.0, "train_time_s": seconds}
    (d / "run.json").write_text(json.dumps(run))
    (d / "config.json").write_text(json.dumps(config or {"task": "mnist-mlp"}))
    (d / "metrics.json").write_text(json.dumps({}))


LAQ1 = RunConfig(task="mnist-mlp", method="laq", bits=1)
BLAQ1 = RunConfig(task="mnist-mlp", method="blaq", bits=1)
BLAQ1_EXPLICIT = RunConfig(task="mnist-mlp", method="blaq", bits=1, scheme="lab", a=0.6, m=5)
FP = RunConfig(task="mnist-mlp", method="fp", bits=1)


def test_expand_takes_the_union_and_dedups_by_run_id():
    one = ListSpec("one", (LAQ1, BLAQ1, FP))
    two = ListSpec("two", (BLAQ1_EXPLICIT, RunConfig(task="mnist-mlp", method="fp", bits=32),
                           RunConfig(task="mnist-mlp", method="bwn", bits=1)))
    configs = grid.expand([one, two], "smoke", (0, 1))
    ids = [c.run_id for c in configs]
    assert len(ids) == len(set(ids)) == 2 * 4  # laq, blaq, fp, bwn for each of two seeds
    assert configs[:3] == [c.resolved() for c in one.configs("smoke", (0, 1))][:3]
    assert all(c == c.resolved() for c in configs)  # resolved: defaults are filled in
    assert {c.seed for c in configs} == {0, 1}
    assert len(grid.expand([one, one], "smoke", (0,))) == 3


def test_plan_maps_store_status_to_actions_and_retry_failed(tmp_path):
    store = open_store(tmp_path / "runs")
    configs = grid.expand([ListSpec("s", (LAQ1, BLAQ1, FP, RunConfig(method="lab", bits=1)))],
                          "smoke")
    ids = [c.run_id for c in configs]
    _fake_run(store, ids[0], "COMPLETED")
    _fake_run(store, ids[1], "FAILED", result=False)
    _fake_run(store, ids[2], "RUNNING", result=False)
    plan = grid.plan_grid(configs, store)
    assert [r.action for r in plan.runs] == ["cached", "failed", "resume", "run"]
    assert [r.status for r in plan.runs] == ["completed", "failed", "incomplete", "missing"]
    assert [r.run_id for r in plan.to_run] == [ids[2], ids[3]]
    assert plan.counts() == {"cached": 1, "run": 1, "resume": 1, "retry": 0, "failed": 1, "total": 4}
    retry = grid.plan_grid(configs, store, retry_failed=True)
    assert [r.action for r in retry.runs] == ["cached", "retry", "resume", "run"]
    assert [r.run_id for r in retry.to_run] == [ids[1], ids[2], ids[3]]
    report = grid.execute(grid.Plan(tuple(plan.with_action("cached", "failed")), store),
                          jobs=2, progress=False)
    assert report.results == []  # nothing to run: no worker is started
    assert report.failures() == [(plan.runs[1], "RuntimeError: loss is nan")]


def test_plan_of_a_missing_store_writes_nothing_and_bad_stores_are_refused(tmp_path):
    configs = grid.expand([ListSpec("s", (LAQ1, FP))], "smoke")
    plan = grid.plan_grid(configs, tmp_path / "runs")
    assert [r.action for r in plan.runs] == ["run", "run"]
    assert not (tmp_path / "runs").exists()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        grid.plan_grid(configs, tmp_path / "afile")
    other = tmp_path / "other"
    other.mkdir()
    (other / "STORE_VERSION").write_text(json.dumps({"format": 7}))
    with pytest.raises(UserError, match="format 7"):
        grid.plan_grid(configs, other)


def test_threads_divide_the_cores_among_jobs(monkeypatch):
    monkeypatch.setattr(grid, "available_cores", lambda: 8)
    assert [grid.threads_per_job(j) for j in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]
    assert grid.default_jobs("cpu") == 8
    assert grid.default_jobs("cuda") == 1
    monkeypatch.setattr(grid, "available_cores", lambda: 64)
    assert grid.default_jobs("cpu") == 8


def test_estimate_from_past_runs_else_the_task_profile(tmp_path):
    from benchmark.tasks import get_task

    store = open_store(tmp_path / "runs")
    done = grid.expand([ListSpec("s", (LAQ1,))], "quick", (0, 1))
    for c, seconds in zip(done, (10.0, 20.0), strict=True):
        _fake_run(store, c.run_id, "COMPLETED", config=c.key(), seconds=seconds)
    _fake_run(store, FP.resolved().run_id, "COMPLETED", config=FP.key(), seconds=99.0)  # quick
    todo = grid.expand([ListSpec("s", (LAQ1, FP))], "smoke", (2,)) + grid.expand(
        [ListSpec("s", (LAQ1, FP, RunConfig(method="laq", bits=2, scheme="lat-approx")))], "quick", (2,))
    plan = grid.plan_grid(todo, store)
    est = grid.estimate_seconds(plan.to_run, store)
    mlp = get_task("mnist-mlp")
    assert [est[c.run_id] for c in todo] == [
        (mlp.profile("smoke").est_seconds, "profile"),  # past runs of another profile do not count
        (mlp.profile("smoke").est_seconds, "profile"),
        (15.0, "store"),  # the mean of the runs of the same task, profile, method, bits, scheme
        (99.0, "store"),  # full precision: no scheme
        (mlp.profile("quick").est_seconds, "profile"),  # another scheme
    ]


@pytest.mark.slow
def test_a_user_error_inside_a_run_stops_the_grid(tmp_path, monkeypatch):
    """Paper profile without ImageNet on disk: the worker's UserError ends the grid, and is raised."""
    monkeypatch.setenv("BLAQ_DATA_ROOT", str(tmp_path / "nodata"))
    configs = grid.expand([ListSpec("s", (RunConfig(task="imagenet-resnet18", method="fp"),))],
                          "paper", (0, 1, 2))
    plan = grid.plan_grid(configs, tmp_path / "runs")
    with pytest.raises(UserError, match="ImageNet"):
        grid.execute(plan, jobs=1, device="cpu", progress=False)
    assert list_run_dirs(tmp_path / "runs") == []  # nothing was recorded


def test_run_labels_name_task_method_bits_and_seed():
    configs = grid.expand([ListSpec("s", (FP, BLAQ1, RunConfig(method="laq", bits=3)))], "smoke", (4,))
    labels = [r.label for r in grid.plan_grid(configs, "nowhere").runs]
    assert labels == ["mnist-mlp fp seed 4", "mnist-mlp blaq 1 bit lab a=0.6 m=5 seed 4",
                      "mnist-mlp laq 3 bits laq-linear seed 4"]


def test_fetch_data_loads_each_dataset_once_with_download(monkeypatch):
    from benchmark.tasks import Task

    calls = []
    monkeypatch.setattr(Task, "load_data", lambda self, profile, data_root=None, download=False:
                        calls.append((self.name, profile, data_root, download)))
    configs = grid.expand([ListSpec("s", (FP, BLAQ1, RunConfig(task="mnist-lenet5", method="fp")))],
                          "smoke", (0, 1))
    grid.fetch_data(grid.plan_grid(configs, "nowhere").runs, "/data")
    assert calls == [("mnist-mlp", "smoke", "/data", True), ("mnist-lenet5", "smoke", "/data", True)]
