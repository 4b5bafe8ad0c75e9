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

from benchmark.errors import UserError

CONFIG_COLUMNS = (
    "task", "method", "bits", "scheme", "a", "m", "blend", "keep_moments", "lr_schedule",
    "quantize_first", "quantize_last", "profile", "epochs", "seed", "extra",
)
RESULT_COLUMNS = (
    "test_acc", "final_test_acc", "best_val_acc", "best_epoch", "final_train_loss",
    "train_time_s", "zz_cosine", "zz_flip_rate", "zz_osc_freq", "zz_osc_share",
    "zz_osc_amplitude",
)
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
_STATUS = {"COMPLETED": "completed", "FAILED": "failed"}

# path -> ((mtime_ns, size) of each file read, parsed value)
_cache: dict[tuple[str, str], tuple[tuple[Any, ...], Any]] = {}


def _signature(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _read_json(path: Path) -> Any:
    """The parsed file, or None when it is missing, half-written or not JSON."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _cached(kind: str, run_dir: Path, files: tuple[str, ...], parse: Any) -> Any:
    """parse(run_dir), reused while none of ``files`` in the run directory has changed."""
    key = (kind, os.path.abspath(run_dir))
    sig = tuple(_signature(run_dir / f) for f in files)
    hit = _cache.get(key)
    if hit is not None and hit[0] == sig:
        return hit[1]
    value = parse(run_dir)
    _cache[key] = (sig, value)
    return value


def _store_path(runs_dir: str | os.PathLike[str]) -> Path:
    path = Path(runs_dir)
    if path.exists() and not path.is_dir():
        raise UserError(f"runs directory {path} is a file; pass the folder of the run store")
    return path


def run_dirs(runs_dir: str | os.PathLike[str]) -> list[Path]:
    """The run directories of a store (not its ``_checkpoints``/``_locks`` folders), by run id."""
    path = _store_path(runs_dir)
    if not path.is_dir():
        return []
    with os.scandir(path) as it:
        dirs = [Path(e.path) for e in it if e.is_dir() and not e.name.startswith((".", "_"))]
    return sorted(dirs, key=lambda p: p.name)


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


def _run_row(run_dir: Path) -> dict[str, Any]:
    """One run directory as a flat dict of RUN_COLUMNS."""
    run = _read_json(run_dir / "run.json")
    run = run if isinstance(run, dict) else {}
    info = run.get("info") if isinstance(run.get("info"), dict) else {}
    config = info.get("config")
    if not isinstance(config, dict):  # info is written after the start; config.json at once
        config = _read_json(run_dir / "config.json")
        config = config if isinstance(config, dict) else {}
    result = run.get("result") if isinstance(run.get("result"), dict) else None
    status = _STATUS.get(run.get("status"), "incomplete")
    if status == "completed" and result is None:
        status = "incomplete"  # a COMPLETED run always has its result; without it, half-written
    data = info.get("data") if isinstance(info.get("data"), dict) else {}
    env = info.get("env") if isinstance(info.get("env"), dict) else {}
    row: dict[str, Any] = {"run_id": run_dir.name, "status": status}
    for col in CONFIG_COLUMNS:
        row[col] = config.get(col)
    if isinstance(row["extra"], dict):
        row["extra"] = json.dumps(row["extra"], sort_keys=True)
    for col in RESULT_COLUMNS:
        row[col] = (result or {}).get(col) if status == "completed" else None
    row["dataset"] = data.get("dataset")
    row["stand_in"] = data.get("stand_in")
    row["data_source"] = data.get("source")
    row["data_note"] = data.get("note")
    for col in ENV_COLUMNS:
        row[col] = env.get(col)
    row["start_time"] = run.get("start_time")
    row["stop_time"] = run.get("stop_time")
    row["fail_reason"] = _fail_reason(run.get("fail_trace")) if status == "failed" else None
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
    rows = [
        _cached("run", d, ("run.json", "config.json"), _run_row)
        for d in _selected(runs_dir, run_ids)
    ]
    return _typed(rows, RUN_COLUMNS)


def _metric_rows(run_dir: Path) -> list[tuple[str, str, int, float]]:
    metrics = _read_json(run_dir / "metrics.json")
    if not isinstance(metrics, dict):
        return []
    rows = []
    for name, series in sorted(metrics.items()):
        if not isinstance(series, dict):
            continue
        steps, values = series.get("steps") or [], series.get("values") or []
        for step, value in zip(steps, values, strict=False):
            rows.append((run_dir.name, name, step, value))
    return rows


def load_metrics(
    runs_dir: str | os.PathLike[str],
    run_ids: Iterable[str] | None = None,
    metrics: Iterable[str] | None = None,
) -> pd.DataFrame:
    """The per-epoch scalars of the runs in long format: run_id, metric, step (epoch, 1-based), value."""
    rows: list[tuple[str, str, int, float]] = []
    for d in _selected(runs_dir, run_ids):
        rows.extend(_cached("metrics", d, ("metrics.json",), _metric_rows))
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
