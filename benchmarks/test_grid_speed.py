"""Speed of the cached path: a table from a full store (the grid check, rendering, the whole command).

The store holds every run of the quick profile's ``--all`` grid, each a copy of one real smoke run
from ``tests/data/store`` under its own run id and config (the numbers are not the point here, the
number of run directories read is). Wall time (``time.perf_counter``): this is what a user waits.

    python -m pytest benchmarks/test_grid_speed.py --benchmark-only
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmark import grid
from benchmark.specs import SPECS, get_spec
from benchmark.store import open_store

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "tests" / "data" / "store"
pytestmark = pytest.mark.benchmark(timer=time.perf_counter, group="grid (cached)")


def _template_run() -> Path:
    """A completed quantized run of the committed store of real smoke runs."""
    for d in sorted(TEMPLATE.iterdir()):
        run = json.loads((d / "run.json").read_text()) if (d / "run.json").exists() else {}
        if run.get("status") == "COMPLETED" and "zz_cosine" in run.get("result", {}):
            return d
    raise LookupError(f"no completed quantized run in {TEMPLATE}")


@pytest.fixture(scope="module")
def full_store(tmp_path_factory):
    """Every run of ``--all --profile quick`` as a completed run directory."""
    store = open_store(tmp_path_factory.mktemp("full") / "runs")
    template = _template_run()
    run = json.loads((template / "run.json").read_text())
    for config in grid.expand(SPECS.values(), "quick"):
        d = store / config.run_id
        shutil.copytree(template, d, ignore=shutil.ignore_patterns("config.json", "run.json"))
        key = config.key()
        (d / "config.json").write_text(json.dumps(key))
        (d / "run.json").write_text(json.dumps({**run, "info": {**run["info"], "config": key,
                                                                "run_id": config.run_id}}))
    return store


def test_grid_check_of_all_specs(benchmark, full_store):
    def check():
        return grid.plan_grid(grid.expand(SPECS.values(), "quick"), full_store)

    plan = benchmark(check)
    assert plan.counts()["cached"] == plan.counts()["total"] > 100
    benchmark.extra_info["runs"] = plan.counts()["total"]


def test_render_table2_from_the_full_store(benchmark, full_store, tmp_path):
    rendered = benchmark(get_spec("table", 2).render, full_store, "quick", None, tmp_path)
    assert "missing" not in rendered.text


def test_reproduce_table2_command_on_the_full_store(benchmark, full_store, tmp_path):
    """The whole command in a fresh process, imports included (what `python reproduce.py` costs)."""
    argv = [sys.executable, str(ROOT / "reproduce.py"), "--table", "2", "--runs-dir",
            str(full_store), "--out-dir", str(tmp_path)]
    done = benchmark.pedantic(subprocess.run, (argv,), {"capture_output": True, "text": True},
                              rounds=3, iterations=1)
    assert done.returncode == 0, done.stderr
    assert "0 to run" in done.stdout
