"""A method from a user's script is one registration and runs through a table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]



def readme_example() -> str:
    """The README's method example ("Adding a method, a task, or a table"), as a user copies it."""
    text = (REPO / "README.md").read_text()
    start = text.index("# my_methods.py")
    return text[start:text.index("```", start)]


USER_SCRIPT = readme_example()


@pytest.mark.slow
def test_a_method_registered_in_a_script_runs_through_a_table(tmp_path):
    script = tmp_path / "my_methods.py"
    script.write_text(USER_SCRIPT)
    env = {**os.environ, "BLAQ_DATA_ROOT": str(tmp_path / "data"), "PYTHONPATH": str(REPO)}
    argv = [sys.executable, str(script), "--table", "8", "--profile", "smoke", "--jobs", "1"]
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr

    from benchmark.runsdb import load_runs

    runs = load_runs(tmp_path / "runs")
    bc = runs[runs.method == "bc"]
    assert len(bc) == 1 and bc.status.iloc[0] == "completed"
    assert bc.scheme.isna().all() and bc.bits.iloc[0] == 1 and bc.a.isna().all()
    assert bool(bc.zz_flip_rate.notna().iloc[0])  # the meter measured the user's optimizer
    table = (tmp_path / "tables" / "smoke" / "table8.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and "BinaryConnect" in line]
    assert len(rows) == 1, table
    assert f"{bc.test_acc.iloc[0]:.2f}" in rows[0]  # the number from the store
