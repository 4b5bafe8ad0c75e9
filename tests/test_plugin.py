"""A method from a user's script is one registration and runs through a table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# the README's example ("Adding a method, a task, or a table"), plus a smoke table that shows it
USER_SCRIPT = '''
import torch

from benchmark.cli import main
from benchmark.methods import Method, register_method
from benchmark.quant import LossAwareAdam, Scheme


def sign(w, d, bits, init):  # w_hat = sign(w): alpha = 1, b in {-1, +1}
    return w.new_ones(()), torch.where(w >= 0, 1.0, -1.0).to(w.dtype)


SIGN = Scheme("sign", (1,), False, sign, lambda bits: (1.0,))

register_method(Method(
    "bc", "BinaryConnect", bits=(1,),
    description="w_hat = sign(w); Adam on the full-precision weights (clipped to [-1, 1])",
    step=lambda model, config, lr: LossAwareAdam(
        model, SIGN, bits=1, lr=lr, zigzag=True,
        quantize_first=config.quantize_first, quantize_last=config.quantize_last)))

# a table to show it (the method registration above is all a method needs)
from benchmark.specs import Entry, Spec, register_spec
from benchmark.tables import render_method_table

register_spec(Spec(
    key="table8", kind="table", number=8, title="BinaryConnect beside LAB", paper="not in the paper",
    description="a user's method", renderer=render_method_table,
    grids={"paper": (Entry("mnist-mlp", "lab", 1), Entry("mnist-mlp", "bc", 1))}))

if __name__ == "__main__":
    raise SystemExit(main())
'''


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
