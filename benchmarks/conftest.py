"""Speed benchmarks: collect each step's statistics and print the ratio table after the run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from ratios import ratio_lines, steady_allocator

_ROWS = pytest.StashKey[list]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_ROWS] = []
    steady_allocator()  # see ratios.steady_allocator: steps do not pay for page faults


@pytest.fixture
def record_step(request: pytest.FixtureRequest) -> Callable[[Any], None]:
    """Record a finished benchmark (its extra_info and min/median) for the ratio table."""

    def record(benchmark: Any) -> None:
        if benchmark.stats is None:  # benchmarks disabled: nothing was timed
            return
        stats = benchmark.stats.stats
        request.config.stash[_ROWS].append(
            {**benchmark.extra_info, "min": stats.min, "median": stats.median}
        )

    return record


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    rows = config.stash.get(_ROWS, [])
    if rows:
        terminalreporter.write_sep("-", "step time ratios")
        for line in ratio_lines(rows):
            terminalreporter.write_line(line)
