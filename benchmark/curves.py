"""Per-run numbers measured on the per-epoch curves (``metrics.json``), joined onto ``Results``
as columns so that claims and tables pair them over seeds like any result column.

- ``with_active_epochs``: the zig-zag metrics over BLAQ's active (two-stage) epochs alone,
  ``<metric>_active``; a LAQ run gets the mean over the same epochs, those of the BLAQ run of its
  task, bit width and seed (BLAQ against LAQ in the epochs where BLAQ acts).
- ``with_convergence``: the convergence measures of a LAQ/BLAQ pair (same task, bit width and
  seed), ``conv_*``:
  - ``conv_target``: the lowest training loss LAQ reaches in its run (both runs of a pair);
  - ``conv_epochs``: LAQ: the first epoch at its lowest loss; BLAQ: the first epoch at which its
    training loss is at or below LAQ's lowest (a run that never gets there counts as needing one
    epoch more than it ran: a bound in BLAQ's favour; ``conv_reached`` says which);
  - ``conv_seconds``: the wall-clock time (``wall_time``, cumulative training time) at that epoch
    (a BLAQ run that never gets there: its whole time plus one mean epoch);
  - ``conv_auc``: the area under the run's own training-loss curve (trapezoids over epochs)
    divided by the epoch span: the curve's mean height, in loss units (lower: faster descent).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from benchmark.errors import UserError
from benchmark.results import Results
from benchmark.runsdb import load_metrics

CONVERGENCE_COLUMNS = ("conv_target", "conv_epochs", "conv_seconds", "conv_reached", "conv_auc")


def curves(results: Results, metrics: list[str]) -> dict[str, pd.DataFrame]:
    """The per-epoch metrics of each completed run: run id -> frame indexed by epoch (1-based)."""
    done = results.frame[results.frame.status == "completed"]
    if done.empty:
        return {}
    long = load_metrics(results.runs_dir, done.run_id, metrics)
    out = {}
    for rid, rows in long.groupby("run_id", sort=False):
        wide = rows.pivot_table(index="step", columns="metric", values="value").sort_index()
        wide.index = wide.index.astype(int)
        out[str(rid)] = wide
    return out


def _runs_by(results: Results, method: str) -> dict[tuple[Any, Any, Any], str]:
    """(task, bits, seed) -> the run id of the completed run of ``method`` there; UserError if a
    table has two entries of the method there (which one pairs with the other side would be a
    guess: such a table must put each pair in its own spec)."""
    f = results.frame
    done = f[(f.status == "completed") & (f.method == method)]
    out: dict[tuple[Any, Any, Any], str] = {}
    for _, r in done.iterrows():
        key = (r.task, int(r.bits), int(r.seed))
        if key in out and out[key] != str(r.run_id):
            raise UserError(
                f"{results.spec.key}: two {method} runs for task {key[0]}, {key[1]} bits, seed "
                f"{key[2]} ({out[key]}, {r.run_id}); the curve measures pair one LAQ with one "
                "BLAQ run per task, bit width and seed")
        out[key] = str(r.run_id)
    return out


def with_active_epochs(results: Results, metrics: tuple[str, ...]) -> Results:
    """``results`` with ``<metric>_active`` columns: each run's mean of ``metric`` over the
    epochs in which the BLAQ run of its task, bit width and seed ran its two-stage step."""
    data = curves(results, [*metrics, "blaq_active"])
    blaq = _runs_by(results, "blaq")
    active: dict[tuple[Any, Any, Any], list[int]] = {}
    for key, rid in blaq.items():
        wide = data.get(rid)
        if wide is not None and "blaq_active" in wide:
            active[key] = [int(s) for s in wide.index[wide["blaq_active"] > 0.5]]
    rows = {}
    f = results.frame
    for _, r in f[f.status == "completed"].iterrows():
        epochs = active.get((r.task, int(r.bits), int(r.seed)))
        wide = data.get(str(r.run_id))
        if not epochs or wide is None:
            continue
        picked = wide.loc[wide.index.isin(epochs)]
        rows[str(r.run_id)] = {f"{m}_active": float(picked[m].mean()) if m in picked and
                               picked[m].notna().any() else np.nan for m in metrics}
        rows[str(r.run_id)]["active_epochs"] = " ".join(map(str, epochs))
    columns = pd.DataFrame.from_dict(rows, orient="index")
    if columns.empty:
        columns = pd.DataFrame(columns=[*(f"{m}_active" for m in metrics), "active_epochs"])
    return results.with_columns(columns)


def _epochs(loss: np.ndarray, epochs: np.ndarray | None) -> np.ndarray:
    return np.arange(1, loss.size + 1, dtype=float) if epochs is None else np.asarray(epochs, float)


def auc(loss: np.ndarray, epochs: np.ndarray | None = None) -> float:
    """Mean height of a per-epoch curve: trapezoid area over epochs / epoch span. ``epochs``
    (1-based, ascending; default 1, 2, ...) places the points: an epoch missing from the curve
    is bridged by its neighbours' trapezoid."""
    loss = np.asarray(loss, dtype=float)
    if loss.size == 1:
        return float(loss[0])
    x = _epochs(loss, epochs)
    return float(np.sum(np.diff(x) * (loss[1:] + loss[:-1]) / 2) / (x[-1] - x[0]))


def reach(loss: np.ndarray, wall: np.ndarray, target: float,
          epochs: np.ndarray | None = None) -> tuple[int, float, bool]:
    """The first epoch (1-based; ``epochs`` numbers the points, default 1, 2, ...) at which
    ``loss`` is at or below ``target`` and the wall time then; a curve that never gets there:
    one epoch more than its last, and its whole time plus one mean epoch (``reached`` False)."""
    loss, wall = np.asarray(loss, dtype=float), np.asarray(wall, dtype=float)
    x = _epochs(loss, epochs)
    hit = np.flatnonzero(loss <= target)
    if hit.size:
        return int(x[hit[0]]), float(wall[hit[0]]), True
    last = int(x[-1])
    return last + 1, float(wall[-1] * (last + 1) / last), False


def with_convergence(results: Results) -> Results:
    """``results`` with the ``conv_*`` columns (module docstring) for every LAQ/BLAQ pair."""
    data = curves(results, ["train_loss", "wall_time"])
    laq, blaq = _runs_by(results, "laq"), _runs_by(results, "blaq")
    rows: dict[str, dict[str, Any]] = {}

    def curve(rid: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(loss, wall time, epoch numbers) of the epochs that have both values."""
        wide = data.get(rid)
        if wide is None or "train_loss" not in wide or "wall_time" not in wide:
            return None
        ok = wide.dropna(subset=["train_loss", "wall_time"])
        if not len(ok):
            return None
        return ok.train_loss.to_numpy(), ok.wall_time.to_numpy(), ok.index.to_numpy()

    for key, lid in laq.items():
        lc = curve(lid)
        if lc is None:
            continue
        target = float(lc[0].min())
        e, s, _ = reach(lc[0], lc[1], target, lc[2])
        rows[lid] = {"conv_target": target, "conv_epochs": e, "conv_seconds": s,
                     "conv_reached": True, "conv_auc": auc(lc[0], lc[2])}
        bid = blaq.get(key)
        bc = curve(bid) if bid else None
        if bc is not None:
            e, s, reached = reach(bc[0], bc[1], target, bc[2])
            rows[bid] = {"conv_target": target, "conv_epochs": e, "conv_seconds": s,
                         "conv_reached": reached, "conv_auc": auc(bc[0], bc[2])}
    columns = pd.DataFrame.from_dict(rows, orient="index")
    if columns.empty:
        columns = pd.DataFrame(columns=list(CONVERGENCE_COLUMNS))
    return results.with_columns(columns)
