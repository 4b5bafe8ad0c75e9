"""Table cells: the completed runs of one setting summarised as mean ± sample std and n, and
the number formats every output shares."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

DAGGER = "†"
DASH = "—"
TIE_TOL = 1e-9  # two means closer than this are equal (float noise), in ranks and in std display

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
    """Summarise the runs of one setting (rows of a Results frame) for one result column."""
    status = rows["status"].to_numpy()
    values = pd.to_numeric(rows[column], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    done = (status == "completed") & ~np.isnan(values)
    return Cell(
        values=tuple(float(v) for v in values[done]),
        n_failed=int((status == "failed").sum()),
        n_incomplete=int(((status == "incomplete") | ((status == "completed") & ~done)).sum()),
        n_missing=int((status == "missing").sum()),
        stand_in=any_stand_in(rows["stand_in"].to_numpy()[done]),
    )


def any_stand_in(flags: Any) -> bool:
    """Whether any of the store's ``stand_in`` flags is True (missing runs have none)."""
    return any(isinstance(v, (bool, np.bool_)) and bool(v) for v in flags)


def decimals_for(x: float, significant: int = 3) -> int:
    if x == 0 or not math.isfinite(x):
        return significant - 1
    return min(6, max(0, significant - 1 - math.floor(math.log10(abs(x)))))


def fmt_mean_std(mean: float, std: float | None, decimals: int | None = 2) -> str:
    """``"91.23 ± 0.45"``; ``decimals=None`` keeps three significant digits of the mean.

    The std takes the mean's decimals unless they would print a nonzero std as zero; then it
    gets two significant digits of its own (``"0.000002 ± 0.00000031"``). A std below
    ``TIE_TOL`` is float noise and prints as zero.
    """
    d = decimals_for(mean) if decimals is None else decimals
    if std is None:
        return f"{mean:.{d}f}"
    ds = d
    if std >= TIE_TOL and float(f"{std:.{d}f}") == 0:
        ds = max(d, 1 - math.floor(math.log10(std)))
    return f"{mean:.{d}f} ± {std:.{ds}f}"



def tied(x: float, y: float) -> bool:
    """Whether two numbers are equal up to float noise (``TIE_TOL``)."""
    return math.isclose(x, y, rel_tol=0, abs_tol=TIE_TOL)
