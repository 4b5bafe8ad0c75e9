"""The ``inline`` launcher: the runs one after another in the calling process.

For debugging (a breakpoint or a traceback inside a run is right there) and for fast tests of
the grid's logic (no process is spawned). Ctrl-C interrupts the run in progress (recorded as
interrupted, resumable) and stops the grid.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from benchmark.errors import UserError
from benchmark.launchers import Launcher

if TYPE_CHECKING:
    from benchmark.grid import GridRun, LaunchContext


class InlineLauncher(Launcher):
    name = "inline"

    def threads(self, runs: Sequence[GridRun]) -> int | None:
        from benchmark.grid import available_cores

        return self.options.threads or available_cores()

    def describe(self, runs: Sequence[GridRun]) -> str:
        t = self.threads(runs)
        return f"inline: one run at a time in this process x {t} thread{'s' if t != 1 else ''}"

    def placement(self, runs: Sequence[GridRun]) -> dict[str, str]:
        return {r.run_id: "this process" for r in runs}

    def launch(self, runs: Sequence[GridRun], ctx: LaunchContext) -> None:
        from benchmark.run import run_config

        threads = self.threads(runs)
        for k, run in enumerate(runs):
            ctx.status(running=1, pending=len(runs) - k - 1)
            started = time.monotonic()
            try:
                out = run_config(run.config, ctx.runs_dir, data_root=ctx.data_root,
                                 device=ctx.device, threads=threads, progress=False)
                status, reason = out.status, out.reason
            except UserError:
                raise
            except Exception as err:  # one broken run must not stop the grid
                status, reason = "failed", f"{type(err).__name__}: {err}"
            ctx.finished(run, status, reason, seconds=time.monotonic() - started)
        ctx.status(running=0, pending=0)
