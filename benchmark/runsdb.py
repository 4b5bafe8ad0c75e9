"""The run store as pandas DataFrames: one row per run, metrics in long format, traces as arrays.

>>> from benchmark.runsdb import load_runs, load_metrics
>>> runs = load_runs("runs")                               # one row per run directory
>>> done = runs[runs.status == "completed"]
>>> done.groupby(["task", "method", "bits"]).test_acc.agg(["mean", "std", "count"])
>>> curves = load_metrics("runs", done.run_id)             # run_id, metric, step, value

Readers never crash on a run that is still being written or was killed half way: a run whose
``run.json`` is missing, unreadable or not finished has status ``"incomplete"``. Parsed files are
cached by path, modification time and size, so a second load of a large store is cheap and a
changed file is always read again.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.config import config_keys
from benchmark.errors import UserError
from benchmark.store import RunRecord, check_store, list_run_dirs, read_run
from benchmark.summary import RESULT_KEYS, ZIGZAG_KEYS

# the flat config's keys (RunConfig's fields with BLAQ's options; other methods' options stay in
# the run's config, not in columns) and the result's keys (the config's "epochs" is the column)
CONFIG_COLUMNS = config_keys()
RESULT_COLUMNS = (*(k for k in RESULT_KEYS if k not in CONFIG_COLUMNS), *ZIGZAG_KEYS)
DATA_COLUMNS = ("dataset", "stand_in", "data_source", "data_note")
ENV_COLUMNS = ("code_version", "device", "torch", "threads")
RUN_COLUMNS = (
    "run_id", "status", *CONFIG_COLUMNS, *RESULT_COLUMNS, *DATA_COLUMNS, *ENV_COLUMNS,
    "start_time", "stop_time", "fail_reason",
)
METRIC_COLUMNS = ("run_id", "metric", "step", "value")

_INT_COLUMNS = ("bits", "m", "epochs", "seed", "best_epoch", "threads")
_BOOL_COLUMNS = ("quantize_first", "quantize_last", "stand_in")
_FLOAT_COLUMNS = ("a", *(c for c in RESULT_COLUMNS if c != "best_epoch"))
# absolute run dir -> ((mtime_ns, size) of each file of the run, the record read from them)
_cache: dict[str, tuple[tuple[Any, ...], RunRecord]] = {}
_RUN_FILES = ("run.json", "config.json", "metrics.json")


def _signature(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _record(run_dir: Path) -> RunRecord:
    """The store's robust reading of one run, reused while none of its files has changed."""
    key = os.path.abspath(run_dir)
    sig = tuple(_signature(run_dir / f) for f in _RUN_FILES)
    hit = _cache.get(key)
    if hit is not None and hit[0] == sig:
        return hit[1]
    record = read_run(run_dir)
    _cache[key] = (sig, record)
    return record


def _store_path(runs_dir: str | os.PathLike[str]) -> Path:
    """The store folder; UserError if it is a file, a store of another format or not a store."""
    check_store(runs_dir)
    return Path(runs_dir)


def run_dirs(runs_dir: str | os.PathLike[str]) -> list[Path]:
    """The run directories of a store (not its ``_checkpoints``/``_locks`` folders), by run id."""
    return list_run_dirs(_store_path(runs_dir))


def _selected(runs_dir: str | os.PathLike[str], run_ids: Iterable[str] | None) -> list[Path]:
    if run_ids is None:
        return run_dirs(runs_dir)
    root = _store_path(runs_dir)
    return [root / rid for rid in dict.fromkeys(run_ids) if (root / rid).is_dir()]


def _fail_reason(trace: Any) -> str | None:
    if not trace:
        return None
    text = "".join(trace) if isinstance(trace, list) else str(trace)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else None


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _run_row(record: RunRecord) -> dict[str, Any]:
    """One run as a flat dict of RUN_COLUMNS."""
    run = record.run or {}
    info = record.info
    config = info.get("config")
    if not isinstance(config, dict):  # info is written after the start; config.json at once
        config = record.config or {}
    result = _as_dict(record.result)
    data, env = _as_dict(info.get("data")), _as_dict(info.get("env"))
    row: dict[str, Any] = {"run_id": record.run_id, "status": record.status}
    for col in CONFIG_COLUMNS:
        row[col] = config.get(col)
    if isinstance(row["extra"], dict):
        row["extra"] = json.dumps(row["extra"], sort_keys=True)
    for col in RESULT_COLUMNS:
        row[col] = result.get(col)
    row["dataset"] = data.get("dataset")
    row["stand_in"] = data.get("stand_in")
    row["data_source"] = data.get("source")
    row["data_note"] = data.get("note")
    for col in ENV_COLUMNS:
        row[col] = env.get(col)
    row["start_time"] = run.get("start_time")
    row["stop_time"] = run.get("stop_time")
    row["fail_reason"] = _fail_reason(run.get("fail_trace")) if record.status == "failed" else None
    return row


def _typed(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(columns))
    for col in _INT_COLUMNS:
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("Int64")
    for col in _FLOAT_COLUMNS:
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
    for col in _BOOL_COLUMNS:
        frame[col] = frame[col].astype("boolean")
    for col in ("start_time", "stop_time"):
        frame[col] = pd.to_datetime(frame[col], errors="coerce", format="ISO8601")
    return frame


def load_runs(
    runs_dir: str | os.PathLike[str], run_ids: Iterable[str] | None = None
) -> pd.DataFrame:
    """One row per run directory (or per given run id that has a directory), columns RUN_COLUMNS.

    Status is "completed", "failed" or "incomplete"; results are filled for completed runs only.
    """
    rows = [_run_row(_record(d)) for d in _selected(runs_dir, run_ids)]
    return _typed(rows, RUN_COLUMNS)


def _metric_rows(record: RunRecord) -> list[tuple[str, str, Any, Any]]:
    rows = []
    for name, series in sorted((record.metrics or {}).items()):
        if isinstance(series, dict):
            steps, values = series.get("steps") or [], series.get("values") or []
            rows.extend((record.run_id, name, st, v) for st, v in zip(steps, values, strict=False))
    return rows


def load_metrics(
    runs_dir: str | os.PathLike[str],
    run_ids: Iterable[str] | None = None,
    metrics: Iterable[str] | None = None,
) -> pd.DataFrame:
    """The per-epoch scalars of the runs in long format: run_id, metric, step (epoch, 1-based), value."""
    rows: list[tuple[str, str, Any, Any]] = []
    for d in _selected(runs_dir, run_ids):
        rows.extend(_metric_rows(_record(d)))
    frame = pd.DataFrame(rows, columns=list(METRIC_COLUMNS))
    if metrics is not None:
        frame = frame[frame.metric.isin(list(metrics))].reset_index(drop=True)
    frame["step"] = pd.to_numeric(frame["step"], errors="coerce").astype("Int64")
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce").astype("float64")
    return frame


def load_trace(runs_dir: str | os.PathLike[str], run_id: str) -> dict[str, np.ndarray]:
    """The per-iteration trace of one run (``trace.npz``); empty when the run has none yet."""
    run_dir = _store_path(runs_dir) / run_id
    if not run_dir.is_dir():
        raise UserError(f"no run {run_id!r} in {runs_dir}; list the runs with `reproduce.py runs list`")
    try:
        with np.load(run_dir / "trace.npz", allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return {}
