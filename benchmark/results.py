"""The results a renderer gets: a spec's settings times its seeds, joined with the run store.

``Results`` is what ``Spec.results()`` builds and every table and figure renderer reads: one
row per (entry, seed) with the resolved config, the run id and the store's columns for it.
``Rendered`` is what a renderer returns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.config import config_keys


@dataclass(frozen=True)
class Rendered:
    """What rendering a spec produced: the files written and the text for the terminal."""

    paths: tuple[Path, ...]
    text: str


@dataclass(frozen=True)
class Results:
    """A spec's results for one profile and seeds, joined with the store's rows for its run ids.

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

    def with_columns(self, columns: pd.DataFrame) -> Results:
        """A copy whose frame has ``columns`` (per-run values indexed by run id) joined on; runs
        without a row get NaN. Columns of the same name are replaced."""
        kept = self.frame.drop(columns=[c for c in columns.columns if c in self.frame])
        frame = kept.merge(columns, left_on="run_id", right_index=True, how="left")
        return replace(self, frame=frame.reset_index(drop=True))

    def rows(self, entry: int) -> pd.DataFrame:
        """The results rows (one per seed) of an entry."""
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
    "seed", "profile", "extra", "quantize_first", "quantize_last"))


def _plain(value: Any) -> Any:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value

