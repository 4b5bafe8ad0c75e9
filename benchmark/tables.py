"""Table renderers: a spec's grid of runs -> markdown, CSV and LaTeX (booktabs) files and text.

Every cell reports the completed runs of its setting over the seeds asked for: the mean, the
sample standard deviation (ddof = 1) and n. Failed runs are never averaged in; a cell says how
many of its runs failed, are incomplete or are missing. Beside the measurement stand the paper's
number (``benchmark.paper``) where a source gives one and the difference, measured - paper.
Measurements on stand-in data (``Data.info["stand_in"]``) carry a dagger.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.config import config_keys
from benchmark.methods import METHODS
from benchmark.paper import SOURCES, Reference, lookup, same_paper

DAGGER = "†"
DASH = "—"
TIE_TOL = 1e-9  # two means closer than this are equal (float noise), in ranks and in std display
STAND_IN_NOTE = f"{DAGGER} Stand-in data: this says nothing about the paper's claim."
STAND_IN_LABEL = f"{DAGGER} stand-in data: this says nothing about the paper's claim"
MAX_FAILURES_SHOWN = 5  # failed runs named (with their reason) under a table


@dataclass(frozen=True)
class Rendered:
    """What rendering a spec produced: the files written and the text for the terminal."""

    paths: tuple[Path, ...]
    text: str


@dataclass(frozen=True)
class Grid:
    """A spec's grid for one profile and seeds, joined with the store's rows for its run ids.

    ``frame`` has one row per (entry, seed): ``entry`` (index into ``entries``), ``seed``,
    ``run_id``, the resolved run config, and the columns of ``runsdb.load_runs`` (``status`` is
    ``"missing"`` where the store has no directory for the run id). Treat it as read-only: the
    per-entry views are computed once.
    """

    spec: Any  # benchmark.specs.Spec (not imported: specs imports the renderers)
    profile: str
    seeds: tuple[int, ...]
    runs_dir: Path
    out_root: Path
    entries: tuple[Any, ...]
    frame: pd.DataFrame

    def out_dir(self, kind: str) -> Path:
        """Where outputs go: ``<out_root>/<kind>`` for quick, ``<out_root>/<kind>/<profile>`` else."""
        base = self.out_root / kind
        return base if self.profile == "quick" else base / self.profile

    @cached_property
    def _by_entry(self) -> dict[int, pd.DataFrame]:
        return {int(e): rows for e, rows in self.frame.groupby("entry", sort=False)}

    @cached_property
    def _settings(self) -> dict[int, dict[str, Any]]:
        first = self.frame.drop_duplicates("entry")
        return {int(row["entry"]): {k: _plain(row[k]) for k in SETTING_KEYS}
                for _, row in first.iterrows()}

    def rows(self, entry: int) -> pd.DataFrame:
        """The grid rows (one per seed) of an entry."""
        return self._by_entry.get(entry, self.frame.iloc[0:0])

    def select(self, **where: Any) -> list[int]:
        """The entries whose resolved setting has all the given values (e.g. method="blaq", bits=1)."""
        return [e for e, s in self._settings.items()
                if all(s.get(k) == v for k, v in where.items())]

    def setting(self, entry: int) -> dict[str, Any]:
        """The resolved setting of an entry (task, method, bits, scheme, a, m, ...)."""
        return self._settings[entry]


# an entry's settings: its run config's keys but those no table tells entries apart by (the seed
# spans an entry; the profile is the grid's; the rest are at their defaults in the paper's grids)
SETTING_KEYS = tuple(k for k in config_keys() if k not in (
    "seed", "profile", "extra", "quantize_first", "quantize_last", "blend", "keep_moments"))


def _plain(value: Any) -> Any:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


# ---------------------------------------------------------------------------------------------
# cells


@dataclass(frozen=True)
class Cell:
    """The runs of one setting: the completed values and how the others ended."""

    values: tuple[float, ...]
    n_failed: int = 0
    n_incomplete: int = 0
    n_missing: int = 0
    stand_in: bool = False

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def n_runs(self) -> int:
        return self.n + self.n_failed + self.n_incomplete + self.n_missing

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.values)) if self.values else None

    @property
    def std(self) -> float | None:
        """Sample standard deviation (ddof = 1); None below two values."""
        return float(np.std(self.values, ddof=1)) if self.n >= 2 else None

    def shortfall(self) -> str:
        """What is wrong with the cell, e.g. "failed 1/3, missing 1/3" ("" if nothing)."""
        parts = [f"{word} {k}/{self.n_runs}" for word, k in
                 (("failed", self.n_failed), ("incomplete", self.n_incomplete),
                  ("missing", self.n_missing)) if k]
        if parts and self.n_missing == self.n_runs:
            return "missing"
        return ", ".join(parts)

    def text(self, decimals: int | None = 2) -> str:
        """``mean ± std`` (with a dagger for stand-in data), plus the shortfall if any."""
        if self.mean is None:
            return self.shortfall() or DASH
        text = fmt_mean_std(self.mean, self.std, decimals)
        if self.stand_in:
            text += f" {DAGGER}"
        short = self.shortfall()
        return f"{text} ({short})" if short else text


def cell(rows: pd.DataFrame, column: str = "test_acc") -> Cell:
    """Summarise the runs of one setting (rows of a Grid frame) for one result column."""
    status = rows["status"].to_numpy()
    values = pd.to_numeric(rows[column], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    done = (status == "completed") & ~np.isnan(values)
    return Cell(
        values=tuple(float(v) for v in values[done]),
        n_failed=int((status == "failed").sum()),
        n_incomplete=int(((status == "incomplete") | ((status == "completed") & ~done)).sum()),
        n_missing=int((status == "missing").sum()),
        stand_in=_any_stand_in(rows["stand_in"].to_numpy()[done]),
    )


def _any_stand_in(flags: Any) -> bool:
    """Whether any of the store's ``stand_in`` flags is True (missing runs have none)."""
    return any(isinstance(v, (bool, np.bool_)) and bool(v) for v in flags)


def _decimals_for(x: float, significant: int = 3) -> int:
    if x == 0 or not math.isfinite(x):
        return significant - 1
    return min(6, max(0, significant - 1 - math.floor(math.log10(abs(x)))))


def fmt_mean_std(mean: float, std: float | None, decimals: int | None = 2) -> str:
    """``"91.23 ± 0.45"``; ``decimals=None`` keeps three significant digits of the mean.

    The std takes the mean's decimals unless they would print a nonzero std as zero; then it
    gets two significant digits of its own (``"0.000002 ± 0.00000031"``). A std below
    ``TIE_TOL`` is float noise and prints as zero.
    """
    d = _decimals_for(mean) if decimals is None else decimals
    if std is None:
        return f"{mean:.{d}f}"
    ds = d
    if std >= TIE_TOL and float(f"{std:.{d}f}") == 0:
        ds = max(d, 1 - math.floor(math.log10(std)))
    return f"{mean:.{d}f} ± {std:.{ds}f}"


# ---------------------------------------------------------------------------------------------
# claims: the sentence at the top of a table saying whether the paper's claim reproduced


def _paired(grid: Grid, a: int, b: int, metric: str) -> tuple[np.ndarray, bool]:
    """Per-seed differences a - b over the seeds where both runs completed, and whether any of
    the runs compared used stand-in data."""
    done = grid.frame[(grid.frame.status == "completed") & grid.frame[metric].notna()]
    ra = done[done.entry == a].set_index("seed")
    rb = done[done.entry == b].set_index("seed")
    common = sorted(set(ra.index) & set(rb.index))
    diff = np.array([float(ra[metric][s]) - float(rb[metric][s]) for s in common])
    stand_in = _any_stand_in([*ra.stand_in[common], *rb.stand_in[common]])
    return diff, stand_in


def _paper(grid: Grid, entry: int) -> Reference | None:
    s = grid.setting(entry)
    return lookup(s["task"], s["method"], s["bits"], s["scheme"], s["a"], s["m"])


def _published(better: Reference, worse: Reference) -> str:
    """The two published numbers, each with its source; a gap is the paper's only when one
    paper gives both (different papers ran different setups)."""
    gap = f"{better.value - worse.value:+.2f}"
    both = f"Published: {better.text} [{better.source}] vs {worse.text} [{worse.source}]"
    if same_paper(better.source, worse.source):
        return f"{both}, the paper's gap {gap}."
    return (f"{both} ({gap}, from different papers with different setups: not a gap either "
            "paper reports).")


@dataclass(frozen=True)
class Beats:
    """The claim "``better`` beats ``worse``" on one result column, judged on paired seeds.

    ``better``/``worse`` select one entry each by its resolved setting, e.g.
    ``{"task": "cifar10-vgg", "method": "blaq", "bits": 1}``.
    """

    claim: str
    better: Mapping[str, Any]
    worse: Mapping[str, Any]
    metric: str = "test_acc"
    higher_is_better: bool = True
    unit: str = "points"

    def __call__(self, grid: Grid) -> str:
        task = self.better.get("task")
        head = f"On {task_label(task)}, {self.claim}:" if task else f"{self.claim}:"
        win, lose = grid.select(**self.better), grid.select(**self.worse)
        if len(win) != 1 or len(lose) != 1:
            return f"{head} cannot tell: the {grid.profile} grid does not hold both settings."
        diff, stand_in = _paired(grid, win[0], lose[0], self.metric)
        if not self.higher_is_better:
            diff = -diff
        if diff.size == 0:
            return f"{head} cannot tell: no seed completed for both."
        mean = float(diff.mean())
        unit = f" {self.unit}" if self.unit else ""
        d = 2 if self.metric == "test_acc" else None
        if diff.size >= 2:
            std = float(diff.std(ddof=1))
            by = f"{fmt_mean_std(abs(mean), std, d)}{unit} (paired over {diff.size} seeds)"
            noise = " — within the seed spread" if abs(mean) <= std else ""
        else:
            by = f"{fmt_mean_std(abs(mean), None, d)}{unit} (1 seed, no spread)"
            noise = ""
        verdict = "no, a tie at" if _tied(mean, 0) else "yes, by" if mean > 0 else \
            "no, it trails by"
        text = f"{head} {verdict} {by}{noise}."
        if stand_in:
            text += f" {STAND_IN_NOTE}"
        if self.metric == "test_acc":
            pw, pl = _paper(grid, win[0]), _paper(grid, lose[0])
            if pw is not None and pl is not None:
                text += f" {_published(pw, pl)}"
        return text


@dataclass(frozen=True)
class Falls:
    """The claim "``metric`` falls as ``along`` grows" among the entries selected by ``where``."""

    claim: str
    where: Mapping[str, Any]
    metric: str
    along: str = "bits"

    def __call__(self, grid: Grid) -> str:
        points = []
        for e in grid.select(**self.where):
            c = cell(grid.rows(e), self.metric)
            points.append((grid.setting(e)[self.along], c.mean, c.stand_in))
        points.sort(key=lambda p: p[0])
        known = [(x, y) for x, y, _ in points if y is not None]
        stand_in = "" if not any(s for _, y, s in points if y is not None) else \
            f" {STAND_IN_NOTE}"
        head = f"{self.claim}:"
        if len(known) < 2:
            return f"{head} cannot tell: fewer than two settings have completed runs."
        ys = [y for _, y in known]
        falls = all(b < a for a, b in zip(ys, ys[1:], strict=False))
        series = ", ".join(f"{bits_label(x) if self.along == 'bits' else x}: "
                           f"{y:.{_decimals_for(y)}f}" for x, y in known)
        if falls:
            return f"{head} yes ({series}).{stand_in}"
        overall = "though lower at the end than at the start" if ys[-1] < ys[0] else \
            "not lower at the end than at the start"
        return f"{head} no, not monotonically, {overall} ({series}).{stand_in}"


@dataclass(frozen=True)
class BestSetting:
    """Where the measured best (a, m) of each task lies, against the paper's best on the same grid."""

    claim: str
    group: tuple[str, ...] = ("task", "bits")
    over: tuple[str, ...] = ("a", "m")

    def __call__(self, grid: Grid) -> str:
        first = grid.frame.drop_duplicates("entry")
        parts = []
        for key, sub in first.groupby(list(self.group), sort=False):
            label = _group_label(dict(zip(self.group, key if isinstance(key, tuple) else (key,),
                                          strict=True)))
            means: dict[tuple[Any, ...], float] = {}
            published = []
            stand_in = False
            for e in sub.entry:
                setting = tuple(grid.setting(e)[k] for k in self.over)
                c = cell(grid.rows(e))
                if c.mean is not None:
                    means[setting] = c.mean
                    stand_in |= c.stand_in
                ref = _paper(grid, e)
                if ref is not None:
                    published.append((ref.value, setting))
            if not means:
                parts.append(f"{label}: no completed runs")
                continue
            if stand_in:
                label += f" ({STAND_IN_LABEL})"
            top = max(means.values())
            leaders = [st for st, v in means.items() if _tied(v, top)]
            text = f"{label}: best " + " and ".join(_fmt_setting(self.over, st) for st in leaders)
            text += " (tied)" if len(leaders) > 1 else ""
            if published:
                paper_best = max(published)[1]
                shown = _fmt_setting(self.over, paper_best)
                if paper_best in leaders:
                    text += " (the paper's best is among them)" if len(leaders) > 1 else \
                        " (agrees with the paper)"
                elif paper_best in means:
                    mine = means[paper_best]
                    rank = 1 + sum(v > mine and not _tied(v, mine) for v in means.values())
                    ties = sum(_tied(v, mine) for v in means.values()) - 1
                    tied = f", tied with {ties} other{'s' if ties > 1 else ''}" if ties else ""
                    text += (f" (the paper's best {shown} ranks {rank} of {len(means)} here"
                             f"{tied}, {top - mine:.2f} points lower)")
                else:
                    text += f" (the paper's best {shown} has no completed run here)"
            parts.append(text)
        return f"{self.claim}: " + "; ".join(parts) + "."


def _tied(x: float, y: float) -> bool:
    return math.isclose(x, y, rel_tol=0, abs_tol=TIE_TOL)


def _group_label(values: Mapping[str, Any]) -> str:
    parts = []
    for name, value in values.items():
        if name == "task":
            parts.append(task_label(value))
        elif name == "bits":
            parts.append(bits_label(value))
        else:
            parts.append(f"{name}={value}")
    return ", ".join(parts)


def _fmt_setting(names: Sequence[str], values: Sequence[Any]) -> str:
    return ", ".join(f"{n}={v:g}" if isinstance(v, float) else f"{n}={v}"
                     for n, v in zip(names, values, strict=True))


# ---------------------------------------------------------------------------------------------
# labels, footers and the three output formats


def task_label(task: str) -> str:
    from benchmark.tasks import get_task  # late: the task registry imports torchvision

    return get_task(task).label


def bits_label(bits: int) -> str:
    return f"{bits} bit" if bits == 1 else f"{bits} bits"


def method_label(method: str) -> str:
    return METHODS[method].label if method in METHODS else method


def _unique(values: Sequence[Any]) -> list[Any]:
    return list(dict.fromkeys(v for v in values if v is not None and not pd.isna(v)))


def footer(grid: Grid, sources: Sequence[str] = ()) -> list[str]:
    """The notes under every table and figure: profile, data really used, seeds, runs, code."""
    f = grid.frame
    counts = f.status.value_counts()
    tally = ", ".join(f"{counts[s]} {s}" for s in ("failed", "incomplete", "missing")
                      if counts.get(s, 0))
    done = int(counts.get("completed", 0))
    seen = f[f.status.isin(["completed", "failed"])]
    data = []
    for task in _unique(f.task):
        rows = seen[seen.task == task].drop_duplicates(["dataset", "data_note", "stand_in"])
        if rows.empty:
            data.append(f"{task}: no run recorded yet")
        for _, r in rows.iterrows():
            mark = f" {DAGGER}" if r.stand_in is True else ""
            note = f" ({r.data_note})" if isinstance(r.data_note, str) and r.data_note else ""
            data.append(f"{task}: {r.dataset}{note}{mark}")
    schedules = "; ".join(
        f"{task}: {', '.join(map(str, _unique(f[f.task == task].lr_schedule)))}"
        for task in _unique(f.task))
    epochs = ", ".join(map(str, _unique(f.epochs)))
    lines = [
        f"Profile: {grid.profile} ({epochs} epochs). Seeds: "
        f"{', '.join(map(str, grid.seeds))}.",
        f"Data: {'; '.join(data)}." + (f" {DAGGER} stand-in data, not the paper's data set."
                                       if (seen.stand_in == True).any() else ""),  # noqa: E712
        f"Runs: {done} of {len(f)} completed" + (f", {tally}" if tally else "")
        + f"; run ids from {_shown_path(grid.runs_dir)}.",
        f"Code version(s): {', '.join(map(str, _unique(seen.code_version))) or DASH}.",
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


def _shown_path(path: Path) -> str:
    """The runs directory as the user named it (relative to the working directory if inside)."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if rel.startswith("..") else rel


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.rjust(w) if i in right else c.ljust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths, strict=True))) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if i in right else ("-" * (w + 2))
                          for i, w in enumerate(widths)) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


_TEX_SUBS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "±": r"$\pm$", DAGGER: r"$^\dagger$", DASH: "---", "−": "$-$", "Δ": r"$\Delta$",
    "≥": r"$\geq$", "×": r"$\times$",
}


def tex_escape(text: str) -> str:
    """Text made safe for LaTeX: special characters escaped, ± and friends in math mode."""
    return "".join(_TEX_SUBS.get(ch, ch) for ch in text)


def _tex_table(title: str, label: str, header: Sequence[str], rows: Sequence[Sequence[str]],
               right: set[int], notes: Sequence[str]) -> str:
    spec = "".join("r" if i in right else "l" for i in range(len(header)))
    body = [" & ".join(tex_escape(c) for c in r) + r" \\" for r in rows]
    out = [
        r"% generated by benchmark.tables; needs \usepackage{booktabs}",
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{tex_escape(title)}}}",
        rf"\label{{tab:{label}}}",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(tex_escape(h) for h in header) + r" \\",
        r"\midrule",
        *body,
        r"\bottomrule",
        r"\end{tabular}",
        r"\par\smallskip",
        r"\begin{minipage}{\linewidth}\footnotesize",
        *(tex_escape(n) + r"\par" for n in notes),
        r"\end{minipage}",
        r"\end{table}",
    ]
    return "\n".join(out) + "\n"


def write_table(grid: Grid, header: Sequence[str], rows: Sequence[Sequence[str]],
                records: pd.DataFrame, notes: Sequence[str], right: set[int]) -> Rendered:
    """Write ``<key>.md``, ``.csv`` and ``.tex`` and return them with the markdown as text."""
    spec = grid.spec
    out = grid.out_dir("tables")
    out.mkdir(parents=True, exist_ok=True)
    title = f"Table {spec.number}: {spec.title} ({grid.profile} profile)"
    claims = [claim(grid) for claim in spec.claims]
    md = "\n".join([
        f"## {title}", "",
        *(f"**Claim.** {c}" + "  " for c in claims), *([""] if claims else []),
        _md_table(header, rows, right), "",
        *(f"- {n}" for n in notes),
    ]) + "\n"
    buf = io.StringIO()
    records.to_csv(buf, index=False, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    paths = (out / f"{spec.key}.md", out / f"{spec.key}.csv", out / f"{spec.key}.tex")
    paths[0].write_text(md, encoding="utf-8")
    paths[1].write_text(buf.getvalue(), encoding="utf-8")
    caption = f"{spec.title} ({grid.profile} profile)"  # LaTeX numbers the table itself
    paths[2].write_text(_tex_table(caption, spec.key, header, rows, right,
                                   [*claims, *notes]), encoding="utf-8")
    return Rendered(paths, md)


def _round(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(x, digits)


# ---------------------------------------------------------------------------------------------
# the renderers


def _accuracy_table(grid: Grid, keys: Sequence[str]) -> Rendered:
    """One row per entry: its setting (``keys``), the measured accuracy, n, the paper's, Δ."""
    show_task = len(_unique(grid.frame.task)) > 1
    names = {"task": "Task", "method": "Method", "bits": "Bits", "scheme": "Quantizer",
             "a": "a", "m": "m"}
    cols = [k for k in keys if k != "task" or show_task]
    header = [names[k] for k in cols] + ["Test acc. (%)", "n", "Paper (%)", "Δ (points)"]
    rows, records, sources = [], [], []
    for e in range(len(grid.entries)):
        s = grid.setting(e)
        c = cell(grid.rows(e))
        ref = _paper(grid, e)
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
            "table": grid.spec.key, "task": s["task"], "method": s["method"], "bits": s["bits"],
            "scheme": s["scheme"], "a": s["a"], "m": s["m"], "n": c.n, "n_runs": c.n_runs,
            "n_failed": c.n_failed, "n_incomplete": c.n_incomplete, "n_missing": c.n_missing,
            "mean": _round(c.mean), "std": _round(c.std),
            "paper": None if ref is None else ref.value,
            "paper_source": None if ref is None else ref.source,
            "diff": _round(diff), "stand_in": c.stand_in,
            "run_ids": " ".join(grid.rows(e).run_id),
        })
    notes = footer(grid, sources)
    notes.append("Cells: test accuracy (%) at the epoch of best validation accuracy, mean ± "
                 "sample std over the completed runs (n); failed runs are never averaged in; "
                 "Δ = measured − paper." + (f" On stand-in data ({DAGGER}) Δ compares "
                                             "different data sets, not a reproduction."
                                             if any(r["stand_in"] for r in records) else ""))
    right = set(range(len(cols), len(header)))
    return write_table(grid, header, rows, pd.DataFrame(records), notes, right)


def render_method_table(grid: Grid) -> Rendered:
    """Tables 2-5: one row per method and bit width (and task, when a table has several)."""
    return _accuracy_table(grid, ("task", "method", "bits", "scheme"))


def render_sensitivity_table(grid: Grid) -> Rendered:
    """Table 6: BLAQ's accuracy per task, bit width, period m and blend coefficient a."""
    return _accuracy_table(grid, ("task", "bits", "m", "a"))


ZIGZAG_COLUMNS: tuple[tuple[str, str], ...] = (
    ("zz_osc_amplitude", "Osc. amplitude (level steps)"),
    ("zz_osc_freq", "Osc. frequency (per iteration)"),
    ("zz_osc_share", "Osc. share"),
    ("zz_flip_rate", "Flip rate"),
    ("zz_cosine", "Update cosine"),
)


def render_zigzag_table(grid: Grid) -> Rendered:
    """Table 1: the zig-zag metrics (means over training epochs) per method and bit width.

    A row whose runs used stand-in data carries the dagger on its method.
    """
    show_task = len(_unique(grid.frame.task)) > 1
    header = [*(["Task"] if show_task else []), "Method", "Bits", "Quantizer",
              *(h for _, h in ZIGZAG_COLUMNS), "Test acc. (%)", "n"]
    rows, records = [], []
    for e in range(len(grid.entries)):
        s = grid.setting(e)
        cells = {col: cell(grid.rows(e), col) for col, _ in ZIGZAG_COLUMNS}
        acc = cell(grid.rows(e))
        method = method_label(s["method"]) + (f" {DAGGER}" if acc.stand_in else "")
        rows.append([*([task_label(s["task"])] if show_task else []), method, str(s["bits"]),
                     s["scheme"] or DASH,
                     *(replace(cells[col], stand_in=False).text(None) for col, _ in ZIGZAG_COLUMNS),
                     replace(acc, stand_in=False).text(2), str(acc.n)])
        record: dict[str, Any] = {"table": grid.spec.key, "task": s["task"],
                                  "method": s["method"], "bits": s["bits"], "scheme": s["scheme"]}
        for col, _ in ZIGZAG_COLUMNS:
            record[f"{col}_mean"] = _round(cells[col].mean, 6)
            record[f"{col}_std"] = _round(cells[col].std, 6)
        record.update(test_acc_mean=_round(acc.mean), test_acc_std=_round(acc.std), n=acc.n,
                      n_runs=acc.n_runs, n_failed=acc.n_failed, n_incomplete=acc.n_incomplete,
                      n_missing=acc.n_missing, stand_in=acc.stand_in,
                      run_ids=" ".join(grid.rows(e).run_id))
        records.append(record)
    tasks = ", ".join(task_label(t) for t in _unique(grid.frame.task))
    notes = footer(grid)
    periods = sorted({(s["m"], s["epochs"]) for s in map(grid.setting, range(len(grid.entries)))
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
    return write_table(grid, header, rows, pd.DataFrame(records), notes,
                       set(range(first, len(header))))

