"""The run store on disk: its layout and version file, the status of a run id, robust readers.

One folder per run, named by the run id (a Sacred FileStorageObserver directory), beside
``STORE_VERSION``, ``_checkpoints/`` and ``_locks/``; see docs/design.md ("The run store").
Readers never crash on a file half-written by a killed process: such a run reads as incomplete.
The locks that say a run is being trained (on one host and across hosts) are benchmark.locks.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.atomic import write_text_atomic
from benchmark.errors import UserError

STORE_FORMAT = 1
VERSION_FILE = "STORE_VERSION"
CHECKPOINT_DIR = "_checkpoints"
LOCK_DIR = "_locks"
RUN_STATUSES = ("completed", "failed", "incomplete", "missing")


def _store_marker(path: Path) -> dict[str, Any] | None:
    """The parsed STORE_VERSION of ``path``; UserError if it is there but unreadable or of another format."""
    marker = path / VERSION_FILE
    if not marker.exists():
        return None
    data = read_json(marker)
    if not isinstance(data, dict) or data.get("format") != STORE_FORMAT:
        found = data.get("format") if isinstance(data, dict) else "unreadable"
        raise UserError(
            f"{path} is a run store of format {found}, this version reads format {STORE_FORMAT}; "
            "use another runs directory or a matching version of the suite"
        )
    return data


def check_store(runs_dir: str | os.PathLike[str]) -> bool:
    """True if ``runs_dir`` is a run store, False if it does not exist; UserError if it cannot be one."""
    path = Path(runs_dir)
    if not path.exists():
        return False
    if not path.is_dir():
        raise UserError(f"runs directory {path} is a file; pass a folder for the run store")
    if _store_marker(path) is not None:
        return True
    if any(path.iterdir()):
        raise UserError(
            f"{path} is a non-empty folder that is not a run store (no {VERSION_FILE}); "
            "pass an empty or new folder"
        )
    return False


def open_store(runs_dir: str | os.PathLike[str], create: bool = True) -> Path:
    """The run store at ``runs_dir``, created (folder and STORE_VERSION) if missing and ``create``."""
    path = Path(runs_dir)
    if check_store(path):
        return path
    if not create:
        raise UserError(f"no run store at {path}; run some experiments first or pass --runs-dir")
    try:
        path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path / VERSION_FILE, {"format": STORE_FORMAT})
    except OSError as err:
        raise UserError(f"cannot create the run store {path}: {err.strerror or err}") from None
    return path


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to a temporary file beside ``path`` and rename it over ``path``."""
    write_text_atomic(path, json.dumps(obj, sort_keys=True, indent=2))


def read_json(path: str | os.PathLike[str]) -> Any | None:
    """Parsed JSON at ``path``, or None when it is missing, empty or half-written."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def run_dir(runs_dir: str | os.PathLike[str], run_id: str) -> Path:
    """The directory of run ``run_id`` (which may not exist)."""
    return Path(runs_dir) / run_id


def checkpoint_path(runs_dir: str | os.PathLike[str], run_id: str) -> Path:
    """Where the last epoch checkpoint of an unfinished run ``run_id`` lives."""
    return Path(runs_dir) / CHECKPOINT_DIR / f"{run_id}.pt"


def lock_path(runs_dir: str | os.PathLike[str], run_id: str) -> Path:
    """The lock file that a process training run ``run_id`` holds."""
    return Path(runs_dir) / LOCK_DIR / f"{run_id}.lock"


def list_run_dirs(runs_dir: str | os.PathLike[str]) -> list[Path]:
    """The run directories of a store, sorted by name (not the store's own ``_`` and ``.`` entries)."""
    path = Path(runs_dir)
    if not path.is_dir():
        return []
    return sorted(
        p for p in path.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))
    )


@dataclass(frozen=True)
class RunRecord:
    """What one run directory holds, read robustly: unreadable parts are None and the status says so."""

    run_id: str
    path: Path
    status: str
    run: dict[str, Any] | None
    config: dict[str, Any] | None
    metrics: dict[str, Any] | None

    @property
    def result(self) -> dict[str, Any] | None:
        """The run's result dict if it completed, else None (a failed run never counts)."""
        if self.status != "completed" or self.run is None:
            return None
        return self.run.get("result")

    @property
    def info(self) -> dict[str, Any]:
        """run.json ``info`` (run id, config key, data info, environment); empty if not yet written."""
        info = (self.run or {}).get("info")
        return info if isinstance(info, dict) else {}

    def metric(self, name: str) -> tuple[list[int], list[float]]:
        """The steps (epochs, 1-based) and values of one logged metric; empty lists if absent."""
        entry = (self.metrics or {}).get(name) or {}
        return list(entry.get("steps", [])), list(entry.get("values", []))


def _status_of(run: Any, config: Any, metrics: Any) -> str:
    if not isinstance(run, dict):
        return "incomplete"
    status = run.get("status")
    if status == "FAILED":
        return "failed"
    if (
        status == "COMPLETED"
        and isinstance(run.get("result"), dict)
        and isinstance(config, dict)
        and isinstance(metrics, dict)
    ):
        return "completed"
    return "incomplete"


def read_run(path: str | os.PathLike[str]) -> RunRecord:
    """Read one run directory (run.json, config.json, metrics.json) without ever raising on its contents."""
    path = Path(path)
    if not path.is_dir():
        return RunRecord(path.name, path, "missing", None, None, None)
    run = read_json(path / "run.json")
    config = read_json(path / "config.json")
    metrics = read_json(path / "metrics.json")
    if metrics is None and isinstance(run, dict) and run.get("status") == "COMPLETED":
        # a run that logged no metric at all has no metrics.json; only a half-written one is damage
        metrics = {} if not (path / "metrics.json").exists() else None
    return RunRecord(
        run_id=path.name,
        path=path,
        status=_status_of(run, config, metrics),
        run=run if isinstance(run, dict) else None,
        config=config if isinstance(config, dict) else None,
        metrics=metrics if isinstance(metrics, dict) else None,
    )


def run_status(runs_dir: str | os.PathLike[str], run_id: str) -> str:
    """``completed`` | ``failed`` | ``incomplete`` (running, interrupted, killed, damaged) | ``missing``."""
    return read_run(run_dir(runs_dir, run_id)).status


def iter_runs(runs_dir: str | os.PathLike[str]) -> Iterator[RunRecord]:
    """Every run of a store, read robustly, in run-id order."""
    for path in list_run_dirs(runs_dir):
        yield read_run(path)
