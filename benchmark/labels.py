"""Labels and footers shared by tables and figures: task, bit-width and method names, the
stand-in notes, and the footer (profile, data really used, seeds, runs, code version)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.cells import DAGGER, DASH
from benchmark.methods import METHODS
from benchmark.paper import SOURCES
from benchmark.results import Results

STAND_IN_NOTE = f"{DAGGER} Stand-in data: this says nothing about the paper's claim."
STAND_IN_LABEL = f"{DAGGER} stand-in data: this says nothing about the paper's claim"
MAX_FAILURES_SHOWN = 5  # failed runs named (with their reason) under a table

def task_label(task: str) -> str:
    from benchmark.tasks import get_task  # late: the task registry imports torchvision

    return get_task(task).label


def bits_label(bits: int) -> str:
    return f"{bits} bit" if bits == 1 else f"{bits} bits"


def method_label(method: str) -> str:
    return METHODS[method].label if method in METHODS else method


def group_label(values: Mapping[str, Any]) -> str:
    parts = []
    for name, value in values.items():
        if name == "task":
            parts.append(task_label(value))
        elif name == "bits":
            parts.append(bits_label(value))
        else:
            parts.append(f"{name}={value}")
    return ", ".join(parts)


def unique(values: Sequence[Any]) -> list[Any]:
    return list(dict.fromkeys(v for v in values if v is not None and not pd.isna(v)))


def footer(results: Results, sources: Sequence[str] = ()) -> list[str]:
    """The notes under every table and figure: profile, data really used, seeds, runs, code."""
    f = results.frame
    counts = f.status.value_counts()
    tally = ", ".join(f"{counts[s]} {s}" for s in ("failed", "incomplete", "missing")
                      if counts.get(s, 0))
    done = int(counts.get("completed", 0))
    seen = f[f.status.isin(["completed", "failed"])]
    data = []
    for task in unique(f.task):
        rows = seen[seen.task == task].drop_duplicates(["dataset", "data_note", "stand_in"])
        if rows.empty:
            data.append(f"{task}: no run recorded yet")
        for _, r in rows.iterrows():
            mark = f" {DAGGER}" if r.stand_in is True else ""
            note = f" ({r.data_note})" if isinstance(r.data_note, str) and r.data_note else ""
            data.append(f"{task}: {r.dataset}{note}{mark}")
    schedules = "; ".join(
        f"{task}: {', '.join(map(str, unique(f[f.task == task].lr_schedule)))}"
        for task in unique(f.task))
    epochs = ", ".join(map(str, unique(f.epochs)))
    lines = [
        f"Profile: {results.profile} ({epochs} epochs). Seeds: "
        f"{', '.join(map(str, results.seeds))}.",
        f"Data: {'; '.join(data)}." + (f" {DAGGER} stand-in data, not the paper's data set."
                                       if (seen.stand_in == True).any() else ""),  # noqa: E712
        f"Runs: {done} of {len(f)} completed" + (f", {tally}" if tally else "")
        + f"; run ids from {shown_path(results.runs_dir)}.",
        f"Code version(s): {', '.join(map(str, unique(seen.code_version))) or DASH}.",
        f"LR schedule: {schedules}.",
    ]
    failed = f[f.status == "failed"]
    for _, r in failed.head(MAX_FAILURES_SHOWN).iterrows():
        lines.append(f"Failed run {r.run_id} ({r.task}, {r.method}, {bits_label(r.bits)}, seed {r.seed}): "
                     f"{r.fail_reason or 'no reason recorded'}.")
    if len(failed) > MAX_FAILURES_SHOWN:
        lines.append(f"... and {len(failed) - MAX_FAILURES_SHOWN} more failed runs "
                     "(`reproduce.py runs list --status failed`).")
    if sources:
        lines.append("Paper numbers: " + "; ".join(f"[{k}] {SOURCES[k]}" for k in sources) + ".")
    return lines


def shown_path(path: Path) -> str:
    """The runs directory as the user named it (relative to the working directory if inside)."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if rel.startswith("..") else rel

