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
from benchmark.claims import paper_reference
from benchmark.formats import round_or_none, write_table
from benchmark.labels import bits_label, footer, method_label, task_label, unique
from benchmark.results import Rendered, Results

__all__ = ["ZIGZAG_COLUMNS", "render_method_table", "render_sensitivity_table",
           "render_zigzag_table", "bits_label"]


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
    """Table 1: the zig-zag metrics (means over training epochs) per method and bit width.

    A row whose runs used stand-in data carries the dagger on its method.
    """
    show_task = len(unique(results.frame.task)) > 1
    header = [*(["Task"] if show_task else []), "Method", "Bits", "Quantizer",
              *(h for _, h in ZIGZAG_COLUMNS), "Test acc. (%)", "n"]
    rows, records = [], []
    for e in range(len(results.entries)):
        s = results.setting(e)
        cells = {col: cell(results.rows(e), col) for col, _ in ZIGZAG_COLUMNS}
        acc = cell(results.rows(e))
        method = method_label(s["method"]) + (f" {DAGGER}" if acc.stand_in else "")
        rows.append([*([task_label(s["task"])] if show_task else []), method, str(s["bits"]),
                     s["scheme"] or DASH,
                     *(replace(cells[col], stand_in=False).text(None) for col, _ in ZIGZAG_COLUMNS),
                     replace(acc, stand_in=False).text(2), str(acc.n)])
        record: dict[str, Any] = {"table": results.spec.key, "task": s["task"],
                                  "method": s["method"], "bits": s["bits"], "scheme": s["scheme"]}
        for col, _ in ZIGZAG_COLUMNS:
            record[f"{col}_mean"] = round_or_none(cells[col].mean, 6)
            record[f"{col}_std"] = round_or_none(cells[col].std, 6)
        record.update(test_acc_mean=round_or_none(acc.mean), test_acc_std=round_or_none(acc.std), n=acc.n,
                      n_runs=acc.n_runs, n_failed=acc.n_failed, n_incomplete=acc.n_incomplete,
                      n_missing=acc.n_missing, stand_in=acc.stand_in,
                      run_ids=" ".join(results.rows(e).run_id))
        records.append(record)
    tasks = ", ".join(task_label(t) for t in unique(results.frame.task))
    notes = footer(results)
    periods = sorted({(s["m"], s["epochs"]) for s in map(results.setting, range(len(results.entries)))
                      if s["method"] == "blaq" and s["m"]})
    if periods:
        notes.append("BLAQ takes its two-stage step in every m-th epoch only (" + "; ".join(
            f"m={m}: {epochs // m} of {epochs} epochs" for m, epochs in periods) + "), LAQ's "
            "step in the others, so its rows differ from LAQ's through those epochs alone.")
    notes.append(
        f"Task: {tasks}. Cells: the run's mean over training epochs of each per-epoch zig-zag "
        "metric (benchmark.quant.zigzag defines them), mean ± sample std over seeds. The paper's "
        "Table 1 numbers are not available to us, so no paper column; its metric formulas are "
        "unknown, and these are the suite's own.")
    first = 4 if show_task else 3
    return write_table(results, header, rows, pd.DataFrame(records), notes,
                       set(range(first, len(header))))

