"""Compare two run stores cell by cell: do a reader's reruns agree with the committed ones?

A cell is one setting: every field of the run's full config key (``info["config"]``: task,
method, bits, hyper-parameters, profile and the profile's settings) except the seed, so a cell
holds the seeds of one table cell. For each cell in both stores, on one result column (default
``test_acc``) over the completed runs:

- both sides with two or more seeds: the 95% Welch interval of the difference of the means
  (B - A; unequal variances, Welch-Satterthwaite degrees of freedom). The cells **agree within
  the seed spread** when the interval contains zero, **differ** when it does not (and a cell
  whose seeds all give one number on both sides agrees only when the numbers are equal);
- one side with a single seed, the other with two or more: whether the single value lies in
  the other side's 95% prediction interval for one new run (``mean ± t * sd * sqrt(1 + 1/n)``);
  the difference B - A is then judged against that interval, shifted;
- both sides with a single seed: no spread to judge by (**too few seeds**), shown for
  information.

Runs of the same run id in both stores (same config and seed) are also compared as runs: they
are **bit-identical** when their ``model_digest`` (sha256 of the final weights) is equal. That
holds on one machine and thread count; elsewhere the same run lands near, not on, its number.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.errors import UserError

CONFIDENCE = 0.95
AGREE, DIFFER, FEW = "agree", "differ", "too few seeds"
SHOWN = ("task", "method", "bits", "scheme", "a", "m", "profile")


@dataclass(frozen=True)
class Side:
    values: tuple[float, ...]
    run_ids: tuple[str, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.values)) if self.values else None

    @property
    def sd(self) -> float | None:
        return float(np.std(self.values, ddof=1)) if self.n >= 2 else None


@dataclass(frozen=True)
class CellComparison:
    """One cell in both stores: the values on each side, B - A, its interval and the verdict."""

    setting: dict[str, Any]
    a: Side
    b: Side
    diff: float | None
    lo: float | None
    hi: float | None
    verdict: str  # AGREE | DIFFER | FEW
    test: str = ""  # "welch" | "prediction" | ""


@dataclass(frozen=True)
class StoreComparison:
    cells: tuple[CellComparison, ...]
    only_a: int  # cells with completed runs in A alone
    only_b: int
    same_runs: int  # run ids completed in both stores
    identical_runs: int  # ... of them with equal model digests
    metric: str

    def count(self, verdict: str) -> int:
        return sum(c.verdict == verdict for c in self.cells)

    def summary(self, name_a: str = "A", name_b: str = "B") -> str:
        return (f"{len(self.cells)} cells in both stores ({self.metric}): {self.count(AGREE)} "
                f"agree within the seed spread, {self.count(DIFFER)} differ, {self.count(FEW)} "
                f"with too few seeds to tell; {self.identical_runs} of {self.same_runs} runs in "
                f"both are bit-identical; cells only in {name_a}: {self.only_a}, only in "
                f"{name_b}: {self.only_b}.")


def welch_interval(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE
                   ) -> tuple[float, float, float]:
    """mean(b) - mean(a) and its Welch t interval (both sides need two or more values)."""
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = float(b.mean() - a.mean())
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(va + vb)
    if se == 0:
        return diff, diff, diff
    df = (va + vb) ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
    return diff, diff - half, diff + half


Runs = dict[int, tuple[str, float]]  # seed -> (run id, value)


def _cells(runs_dir: Path, metric: str) -> tuple[dict[str, tuple[dict[str, Any], Runs]],
                                                 dict[str, str]]:
    """cell key -> (shown setting, {seed: (run id, value)}) over completed runs; run id -> digest."""
    from benchmark.store import list_run_dirs, read_run

    cells: dict[str, tuple[dict[str, Any], Runs]] = {}
    digests: dict[str, str] = {}
    for d in list_run_dirs(runs_dir):
        rec = read_run(d)
        result = rec.result
        if result is None or not isinstance(result.get(metric), (int, float)):
            continue
        key = dict(rec.info.get("config") or rec.config or {})
        seed = int(key.pop("seed", -1))
        cell_key = json.dumps(key, sort_keys=True, default=str)
        shown = {k: key.get(k) for k in SHOWN}
        cells.setdefault(cell_key, (shown, {}))[1][seed] = (rec.run_id, float(result[metric]))
        digest = rec.info.get("model_digest")
        if isinstance(digest, str):
            digests[rec.run_id] = digest
    return cells, digests


def compare_stores(store_a: str | os.PathLike[str], store_b: str | os.PathLike[str],
                   metric: str = "test_acc") -> StoreComparison:
    """Compare every cell of two run stores (module docstring); UserError if one is no store."""
    from benchmark.store import check_store

    for path in (store_a, store_b):
        if not check_store(path):
            raise UserError(f"{path} is not a run store (no STORE_VERSION); give two run "
                            "directories, e.g. results/runs-quick runs")
    cells_a, dig_a = _cells(Path(store_a), metric)
    cells_b, dig_b = _cells(Path(store_b), metric)
    out = []
    for key in [k for k in cells_a if k in cells_b]:
        shown, runs_a = cells_a[key]
        runs_b = cells_b[key][1]
        a, b = _side(runs_a), _side(runs_b)
        diff = float(b.mean - a.mean)
        if a.n >= 2 and b.n >= 2:
            diff, lo, hi = welch_interval(a.values, b.values)
            verdict = AGREE if lo <= 0 <= hi else DIFFER
            if lo == hi:  # no spread on either side: agree only on equal numbers
                verdict = AGREE if math.isclose(diff, 0, abs_tol=1e-9) else DIFFER
            out.append(CellComparison(shown, a, b, diff, lo, hi, verdict, "welch"))
        elif a.n >= 2 or b.n >= 2:
            lo, hi = prediction_interval(a.values if a.n >= 2 else b.values)
            one = b.values[0] if a.n >= 2 else a.values[0]
            verdict = AGREE if lo <= one <= hi or math.isclose(lo, one, abs_tol=1e-9) and \
                math.isclose(hi, one, abs_tol=1e-9) else DIFFER
            ref = a.mean if a.n >= 2 else b.mean
            # the interval of B - A that agreement allows, as B - A
            shift = (lo - ref, hi - ref) if a.n >= 2 else (ref - hi, ref - lo)
            out.append(CellComparison(shown, a, b, diff, shift[0], shift[1], verdict,
                                      "prediction"))
        else:
            out.append(CellComparison(shown, a, b, diff, None, None, FEW))
    same = sorted(set(dig_a) & set(dig_b))
    identical = sum(dig_a[r] == dig_b[r] for r in same)
    return StoreComparison(tuple(out), sum(k not in cells_b for k in cells_a),
                           sum(k not in cells_a for k in cells_b), len(same), identical, metric)


def prediction_interval(values: Sequence[float], confidence: float = CONFIDENCE
                        ) -> tuple[float, float]:
    """Where one more run should land: mean ± t(n - 1) * sd * sqrt(1 + 1/n)."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    half = float(stats.t.ppf(0.5 + confidence / 2, v.size - 1)) * float(v.std(ddof=1)) * \
        math.sqrt(1 + 1 / v.size)
    return float(v.mean() - half), float(v.mean() + half)


def _side(runs: Runs) -> Side:
    ordered = [runs[s] for s in sorted(runs)]
    return Side(tuple(v for _, v in ordered), tuple(r for r, _ in ordered))


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}" if abs(x) >= 0.1 or x == 0 else f"{x:.3g}"


def comparison_text(c: StoreComparison, name_a: str, name_b: str, only: str | None = None) -> str:
    """One line per cell (``only``: the cells of that verdict), then the summary line."""
    head = ["task", "method", "bits", "scheme", "a", "m", "profile", f"n {name_a}",
            f"{name_a} mean ± sd", f"n {name_b}", f"{name_b} mean ± sd", "B - A [95%]", "test",
            "verdict"]
    rows = [head]
    for cell in c.cells:
        if only and cell.verdict != only:
            continue
        s = cell.setting

        def side(x: Side) -> str:
            return _fmt(x.mean) + ("" if x.sd is None else f" ± {_fmt(x.sd)}")

        interval = "" if cell.lo is None else f" [{_fmt(cell.lo)}, {_fmt(cell.hi)}]"
        rows.append([str(s.get(k)) if s.get(k) is not None else "-" for k in SHOWN[:7]] + [
            str(cell.a.n), side(cell.a), str(cell.b.n), side(cell.b),
            f"{cell.diff:+.2f}{interval}", cell.test or "-", cell.verdict])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(x.ljust(w) for x, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join([*lines, c.summary(name_a, name_b)])


def add_parser(subparsers: Any, parents: Sequence[argparse.ArgumentParser] = ()
               ) -> argparse.ArgumentParser:
    """Add ``compare-stores`` to a subparsers object (e.g. ``reproduce.py runs``); its handler is
    ``args.handler`` (``handle``)."""
    p = subparsers.add_parser(
        "compare-stores", parents=list(parents),
        help="two run stores cell by cell: agree within the seed spread?",
        description=__doc__.split("\n\n")[1] if __doc__ else None)
    _arguments(p)
    p.set_defaults(handler=handle)
    return p


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store_a", metavar="STORE_A", help="a run store, e.g. results/runs-quick")
    p.add_argument("store_b", metavar="STORE_B", help="another run store, e.g. runs")
    p.add_argument("--metric", default="test_acc",
                   help="the result column to compare (default: test_acc)")
    p.add_argument("--only", choices=(AGREE, DIFFER, FEW),
                   help="list only the cells of this verdict (the summary counts all)")


def handle(args: argparse.Namespace) -> int:
    """Print the comparison; exit status 0 when no cell differs, 1 when some do."""
    from benchmark.runsdb import RESULT_COLUMNS

    if args.metric not in RESULT_COLUMNS:
        raise UserError(f"--metric {args.metric!r} is not a result column; choose one of "
                        f"{', '.join(RESULT_COLUMNS)}")
    c = compare_stores(args.store_a, args.store_b, args.metric)
    print(comparison_text(c, "A", "B", args.only))
    print(f"(A = {args.store_a}, B = {args.store_b})")
    return 1 if c.count(DIFFER) else 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmark.compare STORE_A STORE_B``; exit 2 with one line on bad input."""
    parser = argparse.ArgumentParser(prog="python -m benchmark.compare",
                                     description=__doc__.splitlines()[0])
    _arguments(parser)
    args = parser.parse_args(argv)
    try:
        return handle(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
