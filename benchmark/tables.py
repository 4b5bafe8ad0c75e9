"""Table renderers: a spec's results -> markdown, CSV and LaTeX (booktabs) files and text.

Every cell reports the completed runs of its setting over the seeds asked for: the mean, the
sample standard deviation (ddof = 1) and n (``benchmark.cells``). Failed runs are never averaged
in; a cell says how many of its runs failed, are incomplete or are missing. Beside the
measurement stand the paper's number (``benchmark.paper``) where a source gives one and the
difference, measured - paper. Measurements on stand-in data (``Data.info["stand_in"]``) carry a
dagger. The claims above a table are in ``benchmark.claims``, labels and footers in
``benchmark.labels``, the file formats in ``benchmark.formats``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pandas as pd

from benchmark.cells import DAGGER, DASH, cell
from benchmark.claims import Beats, paper_reference
from benchmark.curves import with_active_epochs, with_convergence
from benchmark.formats import round_or_none, write_table
from benchmark.labels import footer, method_label, task_label, unique
from benchmark.results import Rendered, Results
from benchmark.stats import Verdict, number_decimals, short, signed

__all__ = ["CONVERGENCE_MEASURES", "ZIGZAG_COLUMNS", "render_convergence_table",
           "render_method_table", "render_sensitivity_table", "render_zigzag_table"]


def _accuracy_table(results: Results, keys: Sequence[str]) -> Rendered:
    """One row per entry: its setting (``keys``), the measured accuracy, n, the paper's, Δ."""
    show_task = len(unique(results.frame.task)) > 1
    names = {"task": "Task", "method": "Method", "bits": "Bits", "scheme": "Quantizer",
             "a": "a", "m": "m"}
    cols = [k for k in keys if k != "task" or show_task]
    header = [names[k] for k in cols] + ["Test acc. (%)", "n", "Paper (%)", "Δ (points)"]
    rows, records, sources = [], [], []
    for e in range(len(results.entries)):
        s = results.setting(e)
        c = cell(results.rows(e))
        ref = paper_reference(results, e)
        if ref is not None and ref.source not in sources:
            sources.append(ref.source)
        diff = None if ref is None or c.mean is None else c.mean - ref.value
        shown = {"task": task_label(s["task"]), "method": method_label(s["method"]),
                 "bits": str(s["bits"]), "scheme": s["scheme"] or DASH,
                 "a": DASH if s["a"] is None else f"{s['a']:g}",
                 "m": DASH if s["m"] is None else str(s["m"])}
        rows.append([shown[k] for k in cols] + [
            c.text(2), str(c.n),
            DASH if ref is None else f"{ref.text} [{ref.source}]",
            DASH if diff is None else f"{diff:+.2f}",
        ])
        records.append({
            "table": results.spec.key, "task": s["task"], "method": s["method"], "bits": s["bits"],
            "scheme": s["scheme"], "a": s["a"], "m": s["m"], "n": c.n, "n_runs": c.n_runs,
            "n_failed": c.n_failed, "n_incomplete": c.n_incomplete, "n_missing": c.n_missing,
            "mean": round_or_none(c.mean), "std": round_or_none(c.std),
            "paper": None if ref is None else ref.value,
            "paper_source": None if ref is None else ref.source,
            "diff": round_or_none(diff), "stand_in": c.stand_in,
            "run_ids": " ".join(results.rows(e).run_id),
        })
    notes = footer(results, sources)
    notes.append("Cells: test accuracy (%) at the epoch of best validation accuracy, mean ± "
                 "sample std over the completed runs (n); failed runs are never averaged in; "
                 "Δ = measured − paper." + (f" On stand-in data ({DAGGER}) Δ compares "
                                             "different data sets, not a reproduction."
                                             if any(r["stand_in"] for r in records) else ""))
    right = set(range(len(cols), len(header)))
    return write_table(results, header, rows, pd.DataFrame(records), notes, right)


def render_method_table(results: Results) -> Rendered:
    """Tables 2-5: one row per method and bit width (and task, when a table has several)."""
    return _accuracy_table(results, ("task", "method", "bits", "scheme"))


def render_sensitivity_table(results: Results) -> Rendered:
    """Table 6: BLAQ's accuracy per task, bit width, period m and blend coefficient a."""
    return _accuracy_table(results, ("task", "bits", "m", "a"))


ZIGZAG_COLUMNS: tuple[tuple[str, str], ...] = (
    ("zz_osc_amplitude", "Osc. amplitude (level steps)"),
    ("zz_osc_freq", "Osc. frequency (per iteration)"),
    ("zz_osc_share", "Osc. share"),
    ("zz_flip_rate", "Flip rate"),
    ("zz_cosine", "Update cosine"),
)


def render_zigzag_table(results: Results) -> Rendered:
    """Table 1: the zig-zag metrics per method and bit width, as means over all training epochs
    and, below them, over BLAQ's active (two-stage) epochs alone (``curves.with_active_epochs``:
    LAQ over the same epochs).

    A row whose runs used stand-in data carries the dagger on its method.
    """
    results = with_active_epochs(results, tuple(col for col, _ in ZIGZAG_COLUMNS))
    show_task = len(unique(results.frame.task)) > 1
    header = [*(["Task"] if show_task else []), "Method", "Bits", "Quantizer", "Epochs",
              *(h for _, h in ZIGZAG_COLUMNS), "Test acc. (%)", "n"]
    rows, records = [], []
    for active in (False, True):
        for e in range(len(results.entries)):
            row, record = _zigzag_row(results, e, active, show_task)
            if row is not None:
                rows.append(row)
                records.append(record)
    tasks = ", ".join(task_label(t) for t in unique(results.frame.task))
    notes = footer(results)
    periods = sorted({(s["m"], s["epochs"]) for s in map(results.setting,
                                                         range(len(results.entries)))
                      if s["method"] == "blaq" and s["m"]})
    if periods:
        notes.append("BLAQ takes its two-stage step in every m-th epoch only (" + "; ".join(
            f"m={m}: {epochs // m} of {epochs} epochs" for m, epochs in periods) + "), LAQ's "
            "step in the others, so over all epochs its rows differ from LAQ's through those "
            "epochs alone; the rows \"BLAQ's active\" average BLAQ's runs, and LAQ's of the "
            "same bit width and seed, over the epochs in which BLAQ's run took its two-stage "
            "step (its per-epoch blaq_active).")
    notes.append(
        f"Task: {tasks}. Cells: the run's mean over the epochs named of each per-epoch zig-zag "
        "metric (benchmark.quant.zigzag defines them), mean ± sample std over seeds; test "
        "accuracy is the run's. The paper's Table 1 numbers are not available to us, so no paper "
        "column; its metric formulas are unknown, and these are the suite's own.")
    first = 4 if show_task else 3
    return write_table(results, header, rows, pd.DataFrame(records), notes,
                       set(range(first + 1, len(header))))


def _zigzag_row(results: Results, e: int, active: bool, show_task: bool
                ) -> tuple[list[str] | None, dict[str, Any]]:
    s = results.setting(e)
    rows = results.rows(e)
    suffix = "_active" if active else ""
    cells = {col: cell(rows, col + suffix) if col + suffix in rows else None
             for col, _ in ZIGZAG_COLUMNS}
    if active and all(c is None or c.mean is None for c in cells.values()):
        return None, {}
    acc = cell(rows)
    epochs = "all"
    if active:
        found = unique(rows.get("active_epochs", pd.Series(dtype=object)))
        epochs = "BLAQ's active (" + "; ".join(str(x).replace(" ", ", ") for x in found) + ")"
    method = method_label(s["method"]) + (f" {DAGGER}" if acc.stand_in else "")
    row = [*([task_label(s["task"])] if show_task else []), method, str(s["bits"]),
           s["scheme"] or DASH, epochs,
           *(DASH if cells[col] is None else replace(cells[col], stand_in=False).text(None)
             for col, _ in ZIGZAG_COLUMNS),
           replace(acc, stand_in=False).text(2), str(acc.n)]
    record: dict[str, Any] = {"table": results.spec.key, "task": s["task"],
                              "method": s["method"], "bits": s["bits"], "scheme": s["scheme"],
                              "epochs": "active" if active else "all"}
    for col, _ in ZIGZAG_COLUMNS:
        c = cells[col]
        record[f"{col}_mean"] = None if c is None else round_or_none(c.mean, 6)
        record[f"{col}_std"] = None if c is None else round_or_none(c.std, 6)
    record.update(test_acc_mean=round_or_none(acc.mean), test_acc_std=round_or_none(acc.std),
                  n=acc.n, n_runs=acc.n_runs, n_failed=acc.n_failed,
                  n_incomplete=acc.n_incomplete, n_missing=acc.n_missing,
                  stand_in=acc.stand_in, run_ids=" ".join(rows.run_id))
    return row, record


CONVERGENCE_MEASURES: tuple[tuple[str, str, str], ...] = (  # column, unit, header
    ("conv_epochs", "epochs", "Epochs to LAQ's lowest loss"),
    ("conv_seconds", "s", "Seconds to it"),
    ("conv_auc", "", "Loss-curve mean height"),
)


def _delta(v: Verdict | None) -> str:
    if v is None or v.verdict == "no data":
        return DASH
    d = number_decimals(v, None)
    text = signed(v.mean, d)
    if v.lo is not None:
        text += f" [{signed(v.lo, d)}, {signed(v.hi, d)}]"
    return f"{text}: {short(v)}"


def render_convergence_table(results: Results) -> Rendered:
    """Table 7 (beyond the paper): per task and bit width, how fast BLAQ's training loss falls
    against LAQ's, from the per-epoch curves (``curves.with_convergence``), each measure paired
    over seeds with its verdict."""
    results = with_convergence(results)
    groups: list[tuple[Any, Any]] = []
    for e in range(len(results.entries)):
        s = results.setting(e)
        if (s["task"], s["bits"]) not in groups:
            groups.append((s["task"], s["bits"]))
    header = ["Task", "Bits", "LAQ's lowest loss", "BLAQ reached it"]
    for _, _, name in CONVERGENCE_MEASURES:
        header += [f"{name}: LAQ", "BLAQ", "Δ = LAQ − BLAQ [95% CI]: verdict"]
    header.append("n")
    rows, records = [], []
    for task, bits in groups:
        pick = {m: results.select(task=task, bits=bits, method=m) for m in ("laq", "blaq")}
        if len(pick["laq"]) != 1 or len(pick["blaq"]) != 1:
            continue
        lrows, brows = results.rows(pick["laq"][0]), results.rows(pick["blaq"][0])
        target = cell(lrows, "conv_target")
        done = brows[(brows.status == "completed") & brows["conv_reached"].notna()]
        reached = int(done["conv_reached"].astype(bool).sum())
        stand_in = cell(lrows).stand_in or cell(brows).stand_in
        row = [task_label(task) + (f" {DAGGER}" if stand_in else ""), str(bits),
               replace(target, stand_in=False).text(None),
               f"{reached}/{len(done)}" if len(done) else DASH]
        record: dict[str, Any] = {"table": results.spec.key, "task": task, "bits": bits,
                                  "laq_lowest_loss": round_or_none(target.mean, 6),
                                  "blaq_reached": reached, "blaq_runs": len(done)}
        n = 0
        for col, unit, _ in CONVERGENCE_MEASURES:
            cl, cb = cell(lrows, col), cell(brows, col)
            v = Beats("", {"task": task, "bits": bits, "method": "blaq"},
                      {"task": task, "bits": bits, "method": "laq"}, col,
                      higher_is_better=False, unit=unit).verdict(results)
            n = max(n, v.n if v else 0)
            digits = 1 if col == "conv_epochs" else None
            row += [replace(cl, stand_in=False).text(digits),
                    replace(cb, stand_in=False).text(digits), _delta(v)]
            record.update({f"{col}_laq": round_or_none(cl.mean, 6),
                           f"{col}_blaq": round_or_none(cb.mean, 6),
                           f"{col}_diff": None if v is None else round_or_none(v.mean, 6),
                           f"{col}_lo": None if v is None else round_or_none(v.lo, 6),
                           f"{col}_hi": None if v is None else round_or_none(v.hi, 6),
                           f"{col}_verdict": None if v is None else v.verdict,
                           f"{col}_seeds_needed": None if v is None else v.seeds_needed})
        row.append(str(n))
        record.update(n=n, stand_in=stand_in,
                      run_ids=" ".join([*lrows.run_id, *brows.run_id]))
        rows.append(row)
        records.append(record)
    notes = footer(results)
    notes.append(
        "Not in the paper: the measured form of its convergence claim (Figure 5). Per seed, "
        "from the runs' per-epoch training loss (mean over the epoch's mini-batches) and "
        "wall_time (cumulative training time): LAQ's lowest training loss in its run; the "
        "epochs and seconds LAQ takes to reach it and BLAQ takes to reach it in a run of the "
        "same length (a BLAQ run that never gets there counts as needing one epoch more than it "
        "ran, and its whole time plus one mean epoch: a bound in BLAQ's favour; \"BLAQ reached "
        "it\" counts the runs that did); the loss curve's mean height (area under it over the "
        "epoch span). Cells: mean ± sample std over seeds. Δ = LAQ − BLAQ, paired by seed, with "
        "its 95% Student-t interval and verdict (positive: BLAQ faster).")
    notes.append("Seconds come from a machine shared by the grid's --jobs runs: read them as "
                 "rough.")
    right = set(range(2, len(header)))
    return write_table(results, header, rows, pd.DataFrame(records), notes, right)
