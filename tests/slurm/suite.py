"""A user's script with two extra tables, for the Slurm tests: run as ``python suite.py --table 98 ...``.

Each Slurm job replays this script (outside its ``__main__`` guard) to get the registrations.

- table 98, task ``gated-mlp``: the MNIST MLP inside a wrapper that, once the run's epoch
  checkpoint exists, holds every training step until the file ``$BLAQ_TEST_GATE/open`` exists.
  A test can so stop a job mid-run (cancel, preemption) at a known point, whatever the speed of
  the machine, then open the gate; the held step is the same step, so the numbers do not change.
- table 97, task ``broken-mlp``: the MNIST MLP whose forward pass raises: a run that fails
  inside its job.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

from torch import nn

from benchmark.cli import main
from benchmark.specs import Entry, Spec, register_spec
from benchmark.tables import render_method_table
from benchmark.tasks import get_task, register_task

MLP = get_task("mnist-mlp")
GATE_WAIT_S = 900  # bounds a hang only


class Gated(nn.Module):
    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        gate = os.environ.get("BLAQ_TEST_GATE")
        if self.training and gate:
            gate = Path(gate)
            if any(gate.glob("runs/_checkpoints/*.pt")) and not (gate / "open").exists():
                (gate / "held").touch()
                deadline = time.monotonic() + GATE_WAIT_S
                while not (gate / "open").exists() and time.monotonic() < deadline:
                    time.sleep(0.05)
        return self.inner(x)


class Broken(nn.Module):
    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        raise RuntimeError("deliberate failure inside the model")


register_task(dataclasses.replace(MLP, name="gated-mlp", label="MNIST MLP (gated)",
                                  model=lambda p: Gated(MLP.model(p))))
register_task(dataclasses.replace(MLP, name="broken-mlp", label="MNIST MLP (broken)",
                                  model=lambda p: Broken(MLP.model(p))))
for number, task in ((98, "gated-mlp"), (97, "broken-mlp")):
    register_spec(Spec(
        key=f"table{number}", kind="table", number=number, title=f"BLAQ at 1 bit on {task}",
        paper="not in the paper", description=f"one BLAQ run on {task}",
        grids={"paper": (Entry(task, "blaq", 1, m=1),)}, renderer=render_method_table))

if __name__ == "__main__":
    raise SystemExit(main())
