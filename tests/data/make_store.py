"""Regenerate the miniature run store ``tests/data/store`` from real smoke runs, and the golden
tables ``tests/data/golden`` rendered from it.

    python tests/data/make_store.py             # train the store's runs, then the goldens
    python tests/data/make_store.py --goldens   # only re-render the goldens from the store

Rerun it when a change alters the smoke runs' run ids or numbers (task profiles, defaults, the
training path) or the layout of the tables, and review the diff of ``tests/data/golden``.

The store holds the runs of every spec's smoke grid for seeds 0 and 1 (``SEEDS``), trained by the
real runner (``benchmark.run.run_config``), with two deliberate defects so that the goldens
show the cells for them:
- ``MISSING``: one run is not trained (its cell says "missing 1/2");
- ``FAILED``: one run trains with a loss that is NaN from the first step, so the runner stops it
  and records it FAILED with its reason (its cell says "failed 1/2").
Store folders that readers do not use (Sacred's ``_sources``, ``_locks``, ``_checkpoints``) are
removed to keep the test data small.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from unittest import mock

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from benchmark.config import RunConfig  # noqa: E402
from benchmark.run import run_config  # noqa: E402
from benchmark.specs import SPECS  # noqa: E402
from benchmark.tasks.registry import Task  # noqa: E402

STORE = HERE / "store"
GOLDEN = HERE / "golden"
PROFILE = "smoke"
SEEDS = (0, 1)
MISSING = RunConfig(task="mnist-lenet5", method="fp", bits=32, profile=PROFILE, seed=1)
FAILED = RunConfig(task="mnist-lenet5", method="lab", bits=1, profile=PROFILE, seed=1)
GOLDEN_SUFFIXES = (".md", ".csv", ".tex")


def _nan_loss(self: Task, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return logits.sum() * float("nan")


def make_store() -> None:
    """Train every smoke-grid run of every spec (except MISSING; FAILED with a NaN loss)."""
    shutil.rmtree(STORE, ignore_errors=True)
    configs = {c.run_id: c for spec in SPECS.values() for c in spec.configs(PROFILE, SEEDS)}
    if MISSING.run_id not in configs or FAILED.run_id not in configs:
        raise SystemExit("MISSING and FAILED must be runs of the smoke grids; update them")
    for i, (rid, config) in enumerate(configs.items(), 1):
        if rid == MISSING.run_id:
            continue
        if rid == FAILED.run_id:
            with mock.patch.object(Task, "loss_fn", _nan_loss):
                outcome = run_config(config, STORE, device="cpu", threads=1)
            expected = "failed"
        else:
            outcome = run_config(config, STORE, device="cpu", threads=1)
            expected = "completed"
        if outcome.status != expected:
            raise SystemExit(f"run {rid} ended {outcome.status}, not {expected}: {outcome.reason}")
        print(f"[{i}/{len(configs)}] {rid} {config.task} {config.method} {config.bits} bit(s) "
              f"seed {config.seed}: {outcome.status}", flush=True)
    for folder in ("_sources", "_locks", "_checkpoints"):
        shutil.rmtree(STORE / folder, ignore_errors=True)


def render_goldens() -> None:
    """Render every table from the store as the tests do (runs dir named ``store``)."""
    import os

    GOLDEN.mkdir(exist_ok=True)
    cwd = os.getcwd()
    os.chdir(HERE)
    try:
        with tempfile.TemporaryDirectory() as out:
            for spec in SPECS.values():
                if spec.kind != "table":
                    continue
                rendered = spec.render("store", PROFILE, SEEDS, out_root=out)
                for path in rendered.paths:
                    shutil.copyfile(path, GOLDEN / path.name)
                print(rendered.text)
    finally:
        os.chdir(cwd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--goldens", action="store_true",
                        help="only re-render the golden tables from the existing store")
    args = parser.parse_args()
    if not args.goldens:
        make_store()
    render_goldens()


if __name__ == "__main__":
    main()
